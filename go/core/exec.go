//go:build linux

package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/embedshim/embedshim/go/exitmon"
)

// Exec adds a process to the task; it runs at Start.
func (t *Task) Exec(ctx context.Context, id string, opts ExecOpts) (*ExecProcess, error) {
	if err := validateID(id); err != nil {
		return nil, fmt.Errorf("invalid exec id: %w", err)
	}
	if opts.Spec == nil {
		return nil, fmt.Errorf("exec %s has no process spec: %w", id, errdefs.ErrInvalidArgument)
	}
	var spec specs.Process
	if err := json.Unmarshal(opts.Spec, &spec); err != nil {
		return nil, fmt.Errorf("unmarshal exec spec: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	p := newProcess(t, id, false, stdioPaths{
		Stdin:    opts.IO.Stdin,
		Stdout:   opts.IO.Stdout,
		Stderr:   opts.IO.Stderr,
		Terminal: opts.IO.Terminal,
	})
	p.spec = &spec

	// As runc.v2's init state machine: no exec is added to a paused or
	// stopped container (its plain errors: clients see Unknown). runc exec
	// into a frozen cgroup would hang, and a stopped init takes no exec.
	switch t.init.getStatus() {
	case statusPaused, statusPausing:
		return nil, errors.New("cannot exec in a paused state")
	case statusStopped:
		return nil, errors.New("cannot exec in a stopped state")
	}
	t.mu.Lock()
	if t.deleted {
		t.mu.Unlock()
		return nil, fmt.Errorf("task %s: %w", t.id, errdefs.ErrNotFound)
	}
	if _, ok := t.execs[id]; ok {
		t.mu.Unlock()
		return nil, fmt.Errorf("id %s: %w", id, errdefs.ErrAlreadyExists)
	}
	t.execs[id] = p
	t.mu.Unlock()

	t.pub.publish(t.namespace, TopicExecAdded, &eventstypes.TaskExecAdded{
		ContainerID: t.id,
		ExecID:      id,
	})
	return &ExecProcess{p: p}, nil
}

// ExecProcess is the runtime.ExecProcess view of an exec.
type ExecProcess struct {
	p *process
}

func (e *ExecProcess) ID() string { return e.p.id }

// State reports the exec's state; a paused container pauses its execs too.
func (e *ExecProcess) State(context.Context) (State, error) {
	st := e.p.state()
	switch e.p.task.init.getStatus() {
	case statusPaused:
		st.Status = PausedStatus
	case statusPausing:
		st.Status = PausingStatus
	}
	return st, nil
}

func (e *ExecProcess) Kill(_ context.Context, sig uint32, _ bool) error {
	return e.p.signal(sig)
}

func (e *ExecProcess) ResizePty(_ context.Context, size ConsoleSize) error {
	return e.p.resize(size)
}

func (e *ExecProcess) CloseIO(context.Context) error {
	e.p.closeStdin()
	return nil
}

func (e *ExecProcess) Wait(ctx context.Context) (*Exit, error) {
	select {
	case <-e.p.exited:
		return e.p.exit(), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Start runs runc exec --detach under the monitor's exec helper.
//
// runc exec has no create/start split: the process may be gone before it is
// registered, and it is not our child, so its status would be lost. The
// helper (exitmon.RunDetached: this binary re-executed as a short-lived child
// subreaper around runc exec) keeps the process unreaped until the monitor
// has adopted it, so even an instant exit (`exec false`) reports its status.
func (e *ExecProcess) Start(ctx context.Context) error {
	p, t := e.p, e.p.task
	p.mu.Lock()
	if p.status != statusCreated || p.pid != 0 {
		s := p.status
		p.mu.Unlock()
		// runc.v2's exec state machine answers with a plain error.
		return fmt.Errorf("cannot start a %s process", s)
	}
	p.mu.Unlock()

	t.mu.Lock()
	if t.initExit != nil || t.deleted {
		t.mu.Unlock()
		return fmt.Errorf("container %s init process is not running: %w", t.id, errdefs.ErrFailedPrecondition)
	}
	t.runningExecs++
	t.mu.Unlock()

	p.gate()
	early, err := t.runExec(ctx, p)
	if err != nil {
		t.release(p)
		// runc.v2 leaves a failed exec "created" with Wait returning.
		p.mu.Lock()
		p.closeExitedLocked()
		p.mu.Unlock()
		t.execDone()
		return err
	}
	p.mu.Lock()
	if p.status == statusCreated {
		p.status = statusRunning
	}
	pid := p.pid
	p.mu.Unlock()
	t.persist()
	t.pub.publish(t.namespace, TopicExecStarted, &eventstypes.TaskExecStarted{
		ContainerID: t.id,
		ExecID:      p.id,
		Pid:         uint32(pid),
	})
	t.release(p)
	if early != nil {
		// Delivered before the route to p existed (claimExit keeps it
		// to one, should the monitor have delivered it too).
		t.onExit(p, *early)
	}
	return nil
}

// runExec runs runc exec --detach through the exec helper; the process is
// registered when it returns. It returns the process's exit if that was
// delivered before the route to p existed.
func (t *Task) runExec(ctx context.Context, p *process) (*exitmon.Exit, error) {
	pio, rio, socket, err := t.prepareIO(p.stdio)
	if err != nil {
		return nil, err
	}
	if socket != nil {
		defer socket.Close()
	}
	fail := func(err error) (*exitmon.Exit, error) {
		pio.closeAll()
		return nil, err
	}

	specFile := filepath.Join(t.bundle.path, "."+p.id+".process.json")
	data, err := json.Marshal(p.spec)
	if err != nil {
		return fail(err)
	}
	if err := os.WriteFile(specFile, data, 0600); err != nil {
		return fail(err)
	}
	defer os.Remove(specFile)

	pidFile := t.bundle.execPid(p.id)
	args := []string{"exec", "--process", specFile, "--detach", "--pid-file", pidFile}
	if socket != nil {
		args = append(args, "--console-socket", socket.Path())
	}
	cmd := t.runcCommand(ctx, append(args, t.id)...)
	if rio != nil {
		rio.Set(cmd)
	}
	pid, ident, err := t.m.monitor.RunDetached(cmd, pidFile)
	if errors.Is(err, exitmon.ErrCapacity) {
		// As a create over capacity: the client may retry later.
		return fail(fmt.Errorf("embed: tracking capacity %d reached: %v: %w",
			t.m.monitor.Capacity(), err, errdefs.ErrUnavailable))
	}
	if err != nil {
		return fail(runtimeError(t.runc, err, "OCI runtime exec failed"))
	}

	// A pidfd for signals. The process may already be gone (its status is
	// safe with the monitor), in which case signals report NotFound.
	fd, ferr := unix.PidfdOpen(pid, 0)
	if ferr != nil {
		fd = -1
	}
	key := exitmon.Key{Pid: pid, Ident: ident}
	p.mu.Lock()
	p.pid, p.ident, p.pidfd = pid, ident, fd
	p.io = pio
	p.mu.Unlock()
	early := t.m.router.claim(key, p)

	if err := t.finishIO(ctx, pio, socket); err != nil {
		log.G(ctx).WithError(err).WithField("exec", p.id).Warn("embed: exec stdio")
	}
	return early, nil
}

// runcCommand builds a runc command line the way go-runc does (same global
// flags, working directory, parent-death signal and environment), for the
// calls go-runc cannot make for us.
func (t *Task) runcCommand(ctx context.Context, args ...string) *exec.Cmd {
	r := t.runc
	var global []string
	if r.Root != "" {
		global = append(global, "--root", r.Root)
	}
	if r.Debug {
		global = append(global, "--debug")
	}
	if r.Log != "" {
		global = append(global, "--log", r.Log)
	}
	if r.LogFormat != "" {
		global = append(global, "--log-format", string(r.LogFormat))
	}
	if r.SystemdCgroup {
		global = append(global, "--systemd-cgroup")
	}
	cmd := exec.CommandContext(ctx, r.Command, append(global, args...)...)
	cmd.Dir = r.WorkDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: r.PdeathSignal}
	// NOTIFY_SOCKET changes runc's behaviour; only systemd should set it.
	env := os.Environ()
	out := env[:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			out = append(out, kv)
		}
	}
	cmd.Env = out
	return cmd
}

// Delete removes a stopped (or never started) exec. runc.v2 publishes no
// event for it.
func (e *ExecProcess) Delete(ctx context.Context) (*Exit, error) {
	p, t := e.p, e.p.task
	switch s := p.getStatus(); s {
	case statusRunning:
		if !p.hasExited() {
			return nil, fmt.Errorf("cannot delete a running process: %w", errdefs.ErrFailedPrecondition)
		}
	case statusDeleted:
		return nil, fmt.Errorf("process %s: %w", p.id, errdefs.ErrNotFound)
	}
	t.mu.Lock()
	delete(t.execs, p.id)
	t.mu.Unlock()

	t.m.detach(p)
	p.mu.Lock()
	pio := p.io
	p.status = statusDeleted
	p.mu.Unlock()
	if pio != nil {
		pio.closeAll()
	}
	os.Remove(t.bundle.execPid(p.id))
	t.persist()
	return p.exit(), nil
}
