//go:build linux

package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

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
	// Guarded by persistMu: a failed state.json write is retried by
	// persistRetry (see persist); persistFailures counts failures since
	// the last write that succeeded.
	persistRetry    *time.Timer
	persistFailures int

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
		t.thawKilled(ctx)
	}
	return nil
}

// thawKilled thaws a paused container whose init was just SIGKILLed, as runc
// kill does: on cgroup v1 a SIGKILL does nothing to a frozen process until it
// is thawed. Under the init's operation lock, so that a thaw follows a Pause
// in flight instead of preceding its freeze; a container that is not paused
// (the usual case) is not made to wait for an operation.
func (t *Task) thawKilled(ctx context.Context) {
	frozen := func() bool {
		switch t.init.getStatus() {
		case statusPaused, statusPausing: // pausing, with p.op: restored so
			return true
		}
		return false
	}
	if !frozen() {
		return
	}
	t.init.op.Lock()
	defer t.init.op.Unlock()
	if frozen() {
		t.thaw(ctx)
	}
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

// Pause freezes the container (initRunning.pause).
func (t *Task) Pause(ctx context.Context) error {
	return t.initOp(func(s initState) error { return s.pause(ctx) })
}

// Resume thaws the container (initPaused.resume).
func (t *Task) Resume(ctx context.Context) error {
	return t.initOp(func(s initState) error { return s.resume(ctx) })
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

// Update applies new resources with runc update, in the states that allow
// it (update).
func (t *Task) Update(ctx context.Context, resources typeurl.Any, _ map[string]string) error {
	return t.initOp(func(s initState) error { return s.update(ctx, resources) })
}

func (t *Task) update(ctx context.Context, resources typeurl.Any) error {
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
