//go:build linux

package core

import (
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// The process state machine, in the style of runc.v2's (containerd's
// pkg/process): one type per state, for the init (init_state.go) and for
// execs (exec_state.go), each doing the operations its state allows and
// refusing the others with a stateError; every change of state goes through
// moveLocked, which checks it against nextStates. Unlike runc.v2's, exits
// come from our monitor and never wait for an operation (see the lock order
// on process): an operation that finds its state gone when it means to leave
// it lost to an exit, which wins.

// procStatus names a state. The names are runc.v2's state names, which
// clients see, and are persisted in state.json.
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

// nextStates lists the moves the state machine allows, in one place.
var nextStates = map[procStatus][]procStatus{
	// created -> created: an exec whose start failed stays created, with
	// Wait returning, as on runc.v2.
	statusCreated: {statusCreated, statusRunning, statusStopped, statusDeleted},
	statusRunning: {statusPausing, statusStopped},
	// pausing -> running: runc pause failed.
	statusPausing: {statusPaused, statusRunning, statusStopped},
	statusPaused:  {statusRunning, statusStopped},
	// stopped -> stopped: an exit handed on again (a restored exit whose
	// event may not have gone out).
	statusStopped: {statusStopped, statusDeleted},
	// deleted -> deleted: the exit of an init deleted before it started
	// comes after the delete.
	statusDeleted: {statusDeleted},
}

func transitionAllowed(from, to procStatus) bool {
	for _, s := range nextStates[from] {
		if s == to {
			return true
		}
	}
	return false
}

// procState is what every state of a process, init or exec, answers. Its
// methods are called with p.mu held (the operations of initState and
// execState are not: they run with p.op held).
type procState interface {
	status() procStatus
	// facts is the exit, once the process stopped (nil before, and for a
	// process deleted before it exited); written under p.mu only.
	facts() *exitFacts
	// waitReturns: Wait returns in this state.
	waitReturns() bool
	// exited is the state an exit moves to. It is never refused.
	exited(f exitFacts) procState
	kill(sig uint32) error
}

// exitFacts is what is known of an exit: the stopped (and then deleted)
// state owns it.
type exitFacts struct {
	status    uint32
	at        time.Time
	published bool // /tasks/exit was sent (persisted, to send it once)
}

// transition moves p from state from to state to and reports whether it
// did: false if p left from meanwhile (only an exit can, as operations hold
// p.op) or the move is not allowed.
func (p *process) transition(from, to procState) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != from {
		return false
	}
	return p.moveLocked(to)
}

// toDeleted moves p to its deleted state, which keeps the exit if there was
// one (Wait and Delete report it).
func (p *process) toDeleted() {
	p.mu.Lock()
	defer p.mu.Unlock()
	var g gone
	if f := p.cur.facts(); f != nil {
		ff := *f
		g.exit = &ff
	}
	if p.isInit {
		p.moveLocked(&initDeleted{p: p, gone: g})
	} else {
		p.moveLocked(&execDeleted{p: p, gone: g})
	}
}

// moveLocked changes p's state if the machine allows the move; p.mu held.
// A refused move is a bug: it is logged and p keeps its state.
func (p *process) moveLocked(to procState) bool {
	from := p.cur.status()
	if !transitionAllowed(from, to.status()) {
		log.L.WithFields(log.Fields{"id": p.task.id, "process": p.id}).
			Errorf("embed: invalid state transition %q to %q", from, to.status())
		return false
	}
	p.setStateLocked(to)
	return true
}

// setStateLocked sets p's state and wakes Wait callers, once, if it is one
// Wait returns in. The one place p.exited is closed. p.mu held.
func (p *process) setStateLocked(s procState) {
	p.cur = s
	if !s.waitReturns() {
		return
	}
	select {
	case <-p.exited:
	default:
		close(p.exited)
	}
}

// stopped is p's stopped state holding the exit f.
func (p *process) stopped(f exitFacts) procState {
	if p.isInit {
		return &initStopped{p: p, gone: gone{exit: &f}}
	}
	return &execStopped{p: p, gone: gone{exit: &f}}
}

// restoredState rebuilds a persisted state (a restart of containerd is not
// a transition); exit is the persisted exit if there is one.
func restoredState(p *process, status procStatus, exit *exitFacts) (procState, error) {
	l := live{p}
	switch status {
	case statusCreated:
		if p.isInit {
			return &initCreated{l}, nil
		}
		return &execCreated{live: l}, nil
	case statusRunning:
		if p.isInit {
			return &initRunning{l}, nil
		}
		return &execRunning{l}, nil
	case statusStopped:
		if exit == nil {
			exit = &exitFacts{}
		}
		return p.stopped(*exit), nil
	case statusDeleted:
		if p.isInit {
			return &initDeleted{p: p, gone: gone{exit: exit}}, nil
		}
		return &execDeleted{p: p, gone: gone{exit: exit}}, nil
	}
	if p.isInit {
		switch status {
		case statusPaused:
			return &initPaused{l}, nil
		case statusPausing:
			return &initPausing{l}, nil
		}
	}
	return nil, fmt.Errorf("process %s: unknown state %q", p.id, status)
}

// live is what the states before the exit share.
type live struct{ p *process }

func (live) facts() *exitFacts              { return nil }
func (live) waitReturns() bool              { return false }
func (l live) exited(f exitFacts) procState { return l.p.stopped(f) }
func (l live) kill(sig uint32) error        { return l.p.signalLocked(sig) }

// gone is what the stopped and deleted states share: the exit.
type gone struct{ exit *exitFacts }

func (g *gone) facts() *exitFacts { return g.exit }
func (g *gone) waitReturns() bool { return g.exit != nil }

// record takes the exit f, keeping whether it was published.
func (g *gone) record(f exitFacts) {
	if g.exit == nil {
		g.exit = &f
		return
	}
	g.exit.status, g.exit.at = f.status, f.at
}

// stateError refuses an operation the process's state does not allow. Its
// text is runc.v2's for the same refusal (clients see it), its class the
// errdefs error runc.v2's answer has (ErrUnknown for its plain errors: the
// same gRPC code and message as a plain error).
type stateError struct {
	state procStatus
	msg   string
	class error
}

func (e *stateError) Error() string { return e.msg }
func (e *stateError) Unwrap() error { return e.class }

// refused is runc.v2's plain-error refusal in state s.
func refused(s procStatus, msg string) error {
	return &stateError{state: s, msg: msg, class: errdefs.ErrUnknown}
}

// refusedAs is a refusal in state s of the errdefs class, worded as
// fmt.Errorf("msg: %w", class) is.
func refusedAs(s procStatus, class error, msg string) error {
	return &stateError{state: s, msg: msg + ": " + class.Error(), class: class}
}

// finished refuses to signal a process that is gone.
func finished(s procStatus) error {
	return refusedAs(s, errdefs.ErrNotFound, "process already finished")
}
