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
	// stopped container (runc exec into a frozen cgroup would hang, and a
	// stopped init takes no exec).
	err := t.initOp(func(s initState) error {
		if err := s.exec(); err != nil {
			return err
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.deleted {
			return fmt.Errorf("task %s: %w", t.id, errdefs.ErrNotFound)
		}
		if _, ok := t.execs[id]; ok {
			return fmt.Errorf("id %s: %w", id, errdefs.ErrAlreadyExists)
		}
		t.execs[id] = p
		return nil
	})
	if err != nil {
		return nil, err
	}

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

// Start runs the exec (execCreated.start).
func (e *ExecProcess) Start(ctx context.Context) error {
	return e.p.execOp(func(s execState) error { return s.start(ctx) })
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

// Delete removes a stopped (or never started) exec (Task.deleteExec).
func (e *ExecProcess) Delete(ctx context.Context) (exit *Exit, err error) {
	err = e.p.execOp(func(s execState) error {
		exit, err = s.delete(ctx)
		return err
	})
	return exit, err
}
