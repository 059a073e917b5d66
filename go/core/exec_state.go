//go:build linux

package core

import (
	"context"
	"fmt"
	"os"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
)

// execState is a state of an exec process: its operations, each done or
// refused as the state says. They run with the exec's p.op held (execOp).
type execState interface {
	procState
	start(ctx context.Context) error
	delete(ctx context.Context) (*Exit, error)
}

// execOp runs op on the exec's current state with its operation lock held
// across it.
func (p *process) execOp(op func(execState) error) error {
	p.op.Lock()
	defer p.op.Unlock()
	return op(p.execState())
}

func (p *process) execState() execState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur.(execState)
}

// execCreated: added to the task, not started; or its start failed, which
// leaves it created with Wait returning, as on runc.v2.
type execCreated struct {
	live
	failed bool
}

func (*execCreated) status() procStatus  { return statusCreated }
func (s *execCreated) waitReturns() bool { return s.failed }

// start runs runc exec --detach under the monitor's exec helper.
//
// runc exec has no create/start split: the process may be gone before it is
// registered, and it is not our child, so its status would be lost. The
// helper (exitmon.RunDetached: this binary re-executed as a short-lived child
// subreaper around runc exec) keeps the process unreaped until the monitor
// has adopted it, so even an instant exit (`exec false`) reports its status.
func (s *execCreated) start(ctx context.Context) error {
	p, t := s.p, s.p.task
	t.mu.Lock()
	if t.initExit != nil || t.deleted {
		t.mu.Unlock()
		return fmt.Errorf("container %s init process is not running: %w", t.id, errdefs.ErrFailedPrecondition)
	}
	t.runningExecs++
	t.mu.Unlock()

	if !p.gateIn(s) {
		t.execDone()
		return p.execState().start(ctx) // lost to an exit
	}
	early, err := t.runExec(ctx, p)
	if err != nil {
		t.release(p)
		p.transition(s, &execCreated{live: s.live, failed: true})
		t.execDone()
		return err
	}
	p.transition(s, &execRunning{s.live}) // exits are held: it is still s
	t.persist()
	t.pub.publish(t.namespace, TopicExecStarted, &eventstypes.TaskExecStarted{
		ContainerID: t.id,
		ExecID:      p.id,
		Pid:         uint32(p.getPid()),
	})
	t.release(p)
	if early != nil {
		// Delivered before the route to p existed (claimExit keeps it
		// to one, should the monitor have delivered it too).
		t.onExit(p, *early)
	}
	return nil
}

func (s *execCreated) delete(context.Context) (*Exit, error) {
	return s.p.task.deleteExec(s.p), nil
}

// execRunning: runc exec succeeded.
type execRunning struct{ live }

func (*execRunning) status() procStatus { return statusRunning }

func (*execRunning) start(context.Context) error {
	return refused(statusRunning, "cannot start a running process")
}

func (*execRunning) delete(context.Context) (*Exit, error) {
	return nil, refusedAs(statusRunning, errdefs.ErrFailedPrecondition, "cannot delete a running process")
}

// execStopped: the exec's exit is known.
type execStopped struct {
	p *process
	gone
}

func (*execStopped) status() procStatus { return statusStopped }

func (s *execStopped) exited(f exitFacts) procState {
	s.record(f)
	return s
}

func (*execStopped) kill(uint32) error { return finished(statusStopped) }

func (*execStopped) start(context.Context) error {
	return refused(statusStopped, "cannot start a stopped process")
}

func (s *execStopped) delete(context.Context) (*Exit, error) {
	return s.p.task.deleteExec(s.p), nil
}

// execDeleted: removed from the task.
type execDeleted struct {
	p *process
	gone
}

func (*execDeleted) status() procStatus { return statusDeleted }

func (s *execDeleted) exited(f exitFacts) procState {
	s.record(f)
	return s
}

func (*execDeleted) kill(uint32) error { return finished(statusDeleted) }

func (*execDeleted) start(context.Context) error {
	return refused(statusDeleted, "cannot start a deleted process")
}

func (s *execDeleted) delete(context.Context) (*Exit, error) {
	return nil, refusedAs(statusDeleted, errdefs.ErrNotFound, fmt.Sprintf("process %s", s.p.id))
}

// deleteExec removes a stopped (or never started) exec. runc.v2 publishes
// no event for it.
func (t *Task) deleteExec(p *process) *Exit {
	t.mu.Lock()
	delete(t.execs, p.id)
	t.mu.Unlock()

	t.m.detach(p)
	p.toDeleted()
	p.mu.Lock()
	pio := p.io
	p.mu.Unlock()
	if pio != nil {
		pio.closeAll()
	}
	os.Remove(t.bundle.execPid(p.id))
	t.persist()
	return p.exit()
}
