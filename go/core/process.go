//go:build linux

package core

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/embedshim/embedshim/go/exitmon"
)

// procStatus names follow the runc shim's state names, which clients see.
type procStatus string

const (
	statusCreated procStatus = "created"
	statusRunning procStatus = "running"
	statusPaused  procStatus = "paused"
	statusPausing procStatus = "pausing"
	statusStopped procStatus = "stopped"
	statusDeleted procStatus = "deleted"
)

func (s procStatus) status() Status {
	switch s {
	case statusCreated:
		return CreatedStatus
	case statusRunning:
		return RunningStatus
	case statusPaused:
		return PausedStatus
	case statusPausing:
		return PausingStatus
	case statusStopped:
		return StoppedStatus
	case statusDeleted:
		return DeletedStatus
	}
	return 0
}

// process is what init and exec processes share: identity, pidfd, status,
// exit and stdio. The task holds the logic that differs.
type process struct {
	task   *Task
	id     string // the task id for init, the exec id for an exec
	isInit bool
	spec   *specs.Process // exec only

	mu         sync.Mutex
	pid        int
	ident      uint64
	pidfd      int // -1 until attached; kept until delete to signal race-free
	status     procStatus
	exitStatus uint32
	exitedAt   time.Time
	exitSeen   bool // an exit was taken from the monitor (or the state file)
	published  bool // /tasks/exit was sent (persisted, to send it once)
	exited     chan struct{}
	io         *processIO
	stdio      stdioPaths

	// While gated, exits are held back: /tasks/create, /tasks/start and
	// /tasks/exec-started must reach clients before the matching
	// /tasks/exit, as in runc.v2 (its preStart/handleStarted).
	gated    bool
	held     *exitmon.Exit
	heldNote chan struct{} // closed when an exit is held
}

func newProcess(t *Task, id string, isInit bool, stdio stdioPaths) *process {
	stdio.procID, stdio.namespace = id, t.namespace
	return &process{
		task:   t,
		id:     id,
		isInit: isInit,
		pidfd:  -1,
		status: statusCreated,
		exited: make(chan struct{}),
		stdio:  stdio,
	}
}

func (p *process) key() exitmon.Key {
	p.mu.Lock()
	defer p.mu.Unlock()
	return exitmon.Key{Pid: p.pid, Ident: p.ident}
}

func (p *process) getPid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

func (p *process) getStatus() procStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

func (p *process) setStatus(s procStatus) {
	p.mu.Lock()
	p.status = s
	p.mu.Unlock()
}

// gate starts holding exits back.
func (p *process) gate() {
	p.mu.Lock()
	p.gated = true
	p.held = nil
	p.heldNote = make(chan struct{})
	p.mu.Unlock()
}

// ungate stops holding exits and returns the one held meanwhile. Only
// Task.release calls it: it hands that exit on, so none is dropped.
func (p *process) ungate() *exitmon.Exit {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gated = false
	e := p.held
	p.held = nil
	return e
}

// hold is called by the exit path: it keeps e if the process is gated and
// reports whether it did.
func (p *process) hold(e exitmon.Exit) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.gated {
		return false
	}
	if p.held == nil {
		p.held = &e
		close(p.heldNote)
	}
	return true
}

// claimExit makes sure one exit per process is acted upon, whichever of the
// monitor, a restore or an instant-exit path reports it first.
func (p *process) claimExit() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exitSeen {
		return false
	}
	p.exitSeen = true
	return true
}

// setExited records the exit, wakes waiters and closes our stdio handles so
// the client's readers get EOF. It returns the status before the exit.
func (p *process) setExited(status uint32, at time.Time) procStatus {
	p.mu.Lock()
	prev := p.status
	if p.status != statusDeleted {
		p.status = statusStopped
	}
	p.exitStatus = status
	p.exitedAt = at
	p.closeExitedLocked()
	pio := p.io
	p.mu.Unlock()
	if pio != nil {
		pio.closeOutputs()
	}
	return prev
}

// closeExitedLocked wakes the process's Wait callers, once; p.mu held.
func (p *process) closeExitedLocked() {
	select {
	case <-p.exited:
	default:
		close(p.exited)
	}
}

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// signal sends sig through the pidfd: no pid-reuse race and no runc process
// started for a kill. The lock keeps the fd from being closed under us.
func (p *process) signal(sig uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exitSeen || p.status == statusStopped || p.status == statusDeleted {
		return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
	}
	if p.pidfd < 0 {
		if p.pid == 0 {
			return fmt.Errorf("process not created: %w", errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
	}
	if err := unix.PidfdSendSignal(p.pidfd, unix.Signal(sig), nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
		}
		return fmt.Errorf("unknown error after kill: %w", err)
	}
	return nil
}

func (p *process) closePidfd() {
	p.mu.Lock()
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
	p.mu.Unlock()
}

func (p *process) state() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return State{
		Status:     p.status.status(),
		Pid:        uint32(p.pid),
		ExitStatus: p.exitStatus,
		ExitedAt:   p.exitedAt,
		Stdin:      p.stdio.Stdin,
		Stdout:     p.stdio.Stdout,
		Stderr:     p.stdio.Stderr,
		Terminal:   p.stdio.Terminal,
	}
}

func (p *process) exit() *Exit {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &Exit{Pid: uint32(p.pid), Status: p.exitStatus, Timestamp: p.exitedAt}
}
