//go:build linux

package core

import (
	"errors"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/embedshim/embedshim/go/exitmon"
)

// process is what init and exec processes share: identity, pidfd, state,
// exit delivery and stdio. Its state (process_state.go) decides which
// operations it takes; the task holds the logic that differs.
//
// Lock order, outermost first:
//
//	p.op (one process's operation lock) > Task.persistMu > Task.mu > p.mu
//
// p.op is held across each operation on the process's state, runc calls
// included (Start, Delete, Pause, Resume, Update, Checkpoint, adding an
// exec; an exec's Start and Delete), so no operation acts on a state another
// one is changing. It is never taken with another lock held, nor by the exit
// path: the exit loop is one goroutine for every task of the daemon (a
// runc.v2 shim has one per container), so it must never wait for a runc call
// (an exit arriving while Pause runs `runc pause` is applied at once and
// wins), and an operation may wait for an exit (deleteCreated does) without
// deadlock. Kill takes p.op only to thaw a paused container (so the thaw
// follows a Pause in flight); the signal itself never waits for it.
//
// p.mu guards the fields below it and is held only briefly, never across a
// runc call or a wait.
type process struct {
	task   *Task
	id     string // the task id for init, the exec id for an exec
	isInit bool
	spec   *specs.Process // exec only

	op sync.Mutex

	mu    sync.Mutex
	pid   int
	ident uint64
	pidfd int       // -1 until attached; kept until delete to signal race-free
	cur   procState // the current state, never nil (process_state.go)
	// exited is closed when Wait returns (see setStateLocked), once.
	exited chan struct{}
	io     *processIO
	stdio  stdioPaths

	// exitClaimed: an exit was taken from the monitor (or the state file)
	// and is being acted upon; any other report of it is dropped. It is set
	// before the state is stopped: an init's exit waits for the exits of the
	// execs that were running (Task.initExited).
	exitClaimed bool

	// While gated, exits are held back: /tasks/create, /tasks/start and
	// /tasks/exec-started must reach clients before the matching
	// /tasks/exit, as in runc.v2 (its preStart/handleStarted).
	gated    bool
	held     *exitmon.Exit
	heldNote chan struct{} // closed when an exit is held
}

func newProcess(t *Task, id string, isInit bool, stdio stdioPaths) *process {
	stdio.procID, stdio.namespace = id, t.namespace
	p := &process{
		task:   t,
		id:     id,
		isInit: isInit,
		pidfd:  -1,
		exited: make(chan struct{}),
		stdio:  stdio,
	}
	if isInit {
		p.cur = &initCreated{live{p}}
	} else {
		p.cur = &execCreated{live: live{p}}
	}
	return p
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

// getStatus is the name of the process's current state.
func (p *process) getStatus() procStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur.status()
}

// gate starts holding exits back.
func (p *process) gate() {
	p.mu.Lock()
	p.gateLocked()
	p.mu.Unlock()
}

// gateIn starts holding exits back if p is still in state s (an exit may
// have moved it on since s was read) and reports whether it did.
func (p *process) gateIn(s procState) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != s {
		return false
	}
	p.gateLocked()
	return true
}

func (p *process) gateLocked() {
	p.gated = true
	p.held = nil
	p.heldNote = make(chan struct{})
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
	if p.exitClaimed {
		return false
	}
	p.exitClaimed = true
	return true
}

// setExited moves p to the state its exit leads to (stopped, or deleted
// still: the state keeps the exit), wakes waiters and closes our stdio
// handles so the client's readers get EOF. It returns the status before the
// exit and whether /tasks/exit is still to be sent: it counts as sent from
// here on (persisted, so it goes out once).
func (p *process) setExited(f exitFacts) (prev procStatus, publish bool) {
	p.mu.Lock()
	prev = p.cur.status()
	p.moveLocked(p.cur.exited(f))
	if ex := p.cur.facts(); ex != nil { // always: exited never refuses
		publish = !ex.published
		ex.published = true
	}
	pio := p.io
	p.mu.Unlock()
	if pio != nil {
		pio.closeOutputs()
	}
	return prev, publish
}

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// signal sends sig as the current state allows (kill).
func (p *process) signal(sig uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur.kill(sig)
}

// signalLocked sends sig through the pidfd: no pid-reuse race and no runc
// process started for a kill. p.mu held, which keeps the fd from being
// closed under us.
func (p *process) signalLocked(sig uint32) error {
	if p.exitClaimed {
		return errFinished
	}
	if p.pidfd < 0 {
		if p.pid == 0 {
			return fmt.Errorf("process not created: %w", errdefs.ErrFailedPrecondition)
		}
		return errFinished
	}
	if err := unix.PidfdSendSignal(p.pidfd, unix.Signal(sig), nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errFinished
		}
		return fmt.Errorf("unknown error after kill: %w", err)
	}
	return nil
}

var errFinished = fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)

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
	st := State{
		Status:   p.cur.status().status(),
		Pid:      uint32(p.pid),
		Stdin:    p.stdio.Stdin,
		Stdout:   p.stdio.Stdout,
		Stderr:   p.stdio.Stderr,
		Terminal: p.stdio.Terminal,
	}
	if f := p.cur.facts(); f != nil {
		st.ExitStatus, st.ExitedAt = f.status, f.at
	}
	return st
}

func (p *process) exit() *Exit {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := &Exit{Pid: uint32(p.pid)}
	if f := p.cur.facts(); f != nil {
		e.Status, e.Timestamp = f.status, f.at
	}
	return e
}
