//go:build linux

package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	eventstypes "github.com/containerd/containerd/api/events"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/embedshim/embedshim/go/exitmon"
)

// Task is one container: its init process, its execs and its bundle.
type Task struct {
	id        string
	namespace string
	bundle    *bundle
	rc        *RuncConfig
	runc      *runc.Runc
	m         *Manager
	pub       *publisher
	init      *process

	// killAllOnExit: the spec has no private pid namespace, so the other
	// processes survive the init and must be killed (runc.v2's
	// ShouldKillAllOnExit).
	killAllOnExit bool
	// checkpoint is the image to restore from at Start instead of runc start.
	checkpoint string

	persistMu sync.Mutex

	mu           sync.Mutex
	execs        map[string]*process
	runningExecs int
	initExit     *exitmon.Exit // set once the init exited: no exec may start
	initExitHeld bool          // its /tasks/exit waits for running execs
	deleted      bool

	cgMu sync.Mutex
	cg   taskCgroup // loaded lazily, see cgroup()
}

func newTask(m *Manager, ns, id string, b *bundle, rc *RuncConfig, stdio stdioPaths) *Task {
	t := &Task{
		id:        id,
		namespace: ns,
		bundle:    b,
		rc:        rc,
		runc:      rc.newRunc(b),
		m:         m,
		pub:       m.pub,
		execs:     make(map[string]*process),
	}
	t.init = newProcess(t, id, true, stdio)
	return t
}

func (t *Task) isDeleted() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.deleted
}

// ID of the task (the container id).
func (t *Task) ID() string { return t.id }

// Namespace of the task.
func (t *Task) Namespace() string { return t.namespace }

// PID of the init process.
func (t *Task) PID(context.Context) (uint32, error) {
	return uint32(t.init.getPid()), nil
}

// State of the init process, from what we know: no runc state call.
func (t *Task) State(context.Context) (State, error) {
	return t.init.state(), nil
}

// Kill signals the init through its pidfd, or every process of the container
// through runc kill --all.
func (t *Task) Kill(ctx context.Context, signal uint32, all bool) error {
	if all {
		err := t.runc.Kill(ctx, t.id, int(signal), &runc.KillOpts{All: true})
		return checkKillError(err)
	}
	if err := t.init.signal(signal); err != nil {
		return err
	}
	if signal == uint32(unix.SIGKILL) {
		// As runc kill does: on cgroup v1 a SIGKILL does nothing to a
		// frozen process until it is thawed, so thaw a paused container.
		switch t.init.getStatus() {
		case statusPaused, statusPausing:
			t.thaw(ctx)
		}
	}
	return nil
}

// thaw unfreezes the container's cgroup without changing the task's status:
// the exit that follows sets it.
func (t *Task) thaw(ctx context.Context) {
	cg, err := t.cgroup()
	if err == nil {
		err = cg.thaw()
	}
	if err != nil {
		if rerr := t.runc.Resume(ctx, t.id); rerr != nil {
			log.G(ctx).WithError(rerr).WithField("id", t.id).Warn("embed: thaw after SIGKILL of a paused container")
		}
	}
}

// checkKillError maps runc kill failures the way the runc shim does, so that
// clients see NotFound for a process that already finished.
func checkKillError(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if strings.Contains(msg, "os: process already finished") ||
		strings.Contains(msg, "container not running") ||
		strings.Contains(strings.ToLower(msg), "no such process") {
		return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
	} else if strings.Contains(msg, "does not exist") {
		return fmt.Errorf("no such container: %w", errdefs.ErrNotFound)
	}
	return fmt.Errorf("unknown error after kill: %w", err)
}

// Pause freezes the container.
func (t *Task) Pause(ctx context.Context) error {
	p := t.init
	p.mu.Lock()
	switch p.status {
	case statusRunning:
	case statusCreated:
		p.mu.Unlock()
		return errors.New("cannot pause task in created state")
	case statusPaused, statusPausing:
		p.mu.Unlock()
		return errors.New("cannot pause a paused container")
	default:
		p.mu.Unlock()
		return errors.New("cannot pause a stopped container")
	}
	p.status = statusPausing
	p.mu.Unlock()

	if err := t.runc.Pause(ctx, t.id); err != nil {
		t.setStatusUnlessExited(statusRunning)
		return runtimeError(t.runc, err, "OCI runtime pause failed")
	}
	t.setStatusUnlessExited(statusPaused)
	t.persist()
	t.pub.publish(t.namespace, TopicPaused, &eventstypes.TaskPaused{ContainerID: t.id})
	return nil
}

// Resume thaws the container.
func (t *Task) Resume(ctx context.Context) error {
	switch t.init.getStatus() {
	case statusPaused:
	case statusCreated:
		return errors.New("cannot resume task in created state")
	case statusRunning, statusPausing:
		return errors.New("cannot resume a running process")
	default:
		return errors.New("cannot resume a stopped container")
	}
	// An init killed while frozen dies as soon as it is thawed: hold its
	// exit until /tasks/resumed is out, so that clients see resumed, then
	// the exit, as from runc.v2 (and never "running" after the exit).
	p := t.init
	p.gate()
	if err := t.runc.Resume(ctx, t.id); err != nil {
		t.release(p)
		return runtimeError(t.runc, err, "OCI runtime resume failed")
	}
	t.setStatusUnlessExited(statusRunning)
	t.persist()
	t.pub.publish(t.namespace, TopicResumed, &eventstypes.TaskResumed{ContainerID: t.id})
	t.release(p)
	return nil
}

// setStatusUnlessExited changes the init's status unless an exit came in
// meanwhile (which wins).
func (t *Task) setStatusUnlessExited(s procStatus) {
	p := t.init
	p.mu.Lock()
	if p.status != statusStopped && p.status != statusDeleted {
		p.status = s
	}
	p.mu.Unlock()
}

// Pids lists the container's processes, naming the exec each belongs to.
func (t *Task) Pids(ctx context.Context) ([]ProcessInfo, error) {
	pids, err := t.runc.Ps(ctx, t.id)
	if err != nil {
		return nil, runtimeError(t.runc, err, "OCI runtime ps failed")
	}
	execByPid := map[int]string{}
	t.mu.Lock()
	for id, p := range t.execs {
		if pid := p.getPid(); pid != 0 {
			execByPid[pid] = id
		}
	}
	t.mu.Unlock()
	out := make([]ProcessInfo, 0, len(pids))
	for _, pid := range pids {
		pi := ProcessInfo{Pid: uint32(pid)}
		if id, ok := execByPid[pid]; ok {
			pi.Info = &runcoptions.ProcessDetails{ExecID: id}
		}
		out = append(out, pi)
	}
	return out, nil
}

// ResizePty resizes the init's terminal.
func (t *Task) ResizePty(_ context.Context, size ConsoleSize) error {
	return t.init.resize(size)
}

// CloseIO closes the init's stdin.
func (t *Task) CloseIO(context.Context) error {
	t.init.closeStdin()
	return nil
}

// Update applies new resources with runc update.
func (t *Task) Update(ctx context.Context, resources typeurl.Any, _ map[string]string) error {
	switch t.init.getStatus() {
	case statusStopped, statusDeleted:
		return errors.New("cannot update a stopped container")
	}
	var r specs.LinuxResources
	if err := json.Unmarshal(resources.GetValue(), &r); err != nil {
		return fmt.Errorf("failed to unmarshal resources: %w", errdefs.ErrInvalidArgument)
	}
	if err := t.runc.Update(ctx, t.id, &r); err != nil {
		return runtimeError(t.runc, err, "OCI runtime update failed")
	}
	return nil
}

// Process returns an exec process of the task.
func (t *Task) Process(_ context.Context, id string) (*ExecProcess, error) {
	t.mu.Lock()
	p, ok := t.execs[id]
	t.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("process %s does not exist: %w", id, errdefs.ErrNotFound)
	}
	return &ExecProcess{p: p}, nil
}

// Wait blocks until the init has exited (and its exit was published) or ctx
// is done.
func (t *Task) Wait(ctx context.Context) (*Exit, error) {
	select {
	case <-t.init.exited:
		return t.init.exit(), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *process) resize(size ConsoleSize) error {
	p.mu.Lock()
	pio := p.io
	p.mu.Unlock()
	if pio == nil {
		return nil
	}
	return pio.resize(size.Width, size.Height)
}

func (p *process) closeStdin() {
	p.mu.Lock()
	pio := p.io
	p.mu.Unlock()
	if pio != nil {
		pio.closeStdin()
	}
}

var errExitedEarly = errors.New("process exited before it could be tracked")
