//go:build linux

package core

import (
	"context"
	"fmt"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
)

// initState is a state of a task's init process: the task operations that
// depend on it, each done or refused (with runc.v2's words) as the state
// says. They run with the init's p.op held (Task.initOp).
type initState interface {
	procState
	start(ctx context.Context) error
	delete(ctx context.Context) (*Exit, error)
	pause(ctx context.Context) error
	resume(ctx context.Context) error
	update(ctx context.Context, resources typeurl.Any) error
	checkpoint(ctx context.Context, path string, options typeurl.Any) error
	// exec refuses adding an exec in this state.
	exec() error
}

// initOp runs op on the init's current state with the init's operation
// lock held across it.
func (t *Task) initOp(op func(initState) error) error {
	p := t.init
	p.op.Lock()
	defer p.op.Unlock()
	return op(p.initState())
}

func (p *process) initState() initState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur.(initState)
}

// initCreated: runc create ran (or a checkpoint waits to be restored at
// Start); runc-init waits on exec.fifo.
type initCreated struct{ live }

func (*initCreated) status() procStatus { return statusCreated }

// start runs runc start (or runc restore for a checkpointed task) and
// publishes /tasks/start before any exit of the init.
func (s *initCreated) start(ctx context.Context) error {
	p, t := s.p, s.p.task
	if !p.gateIn(s) {
		return p.initState().start(ctx) // lost to an exit: answer as stopped
	}
	var err error
	if t.checkpoint != "" {
		err = t.restoreCheckpoint(ctx)
	} else if err = t.startRunc(ctx); err != nil {
		err = runtimeError(t.runc, err, "OCI runtime start failed")
	}
	if err != nil {
		t.release(p)
		return err
	}
	p.transition(s, &initRunning{live{p}}) // exits are held: it is still s
	t.persist()
	t.pub.publish(t.namespace, TopicStart, &eventstypes.TaskStart{
		ContainerID: t.id,
		Pid:         uint32(p.getPid()),
	})
	t.release(p)
	t.m.watchOOM(t)
	return nil
}

// startRunc runs runc start so that nothing cuts it short: not the client
// going away, not containerd stopping or dying (no parent-death signal; the
// daemon's reaper adopts it). A runc start killed midway leaves runc-init to
// fail on its exec fifo, status 1, where runc.v2's shim would have started
// the container. One that ends after containerd died is settled by restore
// (settleCreated).
func (t *Task) startRunc(ctx context.Context) error {
	r := *t.runc
	r.PdeathSignal = 0
	return r.Start(context.WithoutCancel(ctx), t.id)
}

func (s *initCreated) delete(ctx context.Context) (*Exit, error) {
	return s.p.task.deleteCreated(ctx, s)
}

func (*initCreated) pause(context.Context) error {
	return refused(statusCreated, "cannot pause task in created state")
}

func (*initCreated) resume(context.Context) error {
	return refused(statusCreated, "cannot resume task in created state")
}

func (s *initCreated) update(ctx context.Context, r typeurl.Any) error {
	return s.p.task.update(ctx, r)
}

func (*initCreated) checkpoint(context.Context, string, typeurl.Any) error {
	return refused(statusCreated, "cannot checkpoint a task in created state")
}

func (*initCreated) exec() error { return nil }

// initRunning: runc start (or restore) succeeded.
type initRunning struct{ live }

func (*initRunning) status() procStatus { return statusRunning }

func (*initRunning) start(context.Context) error {
	return refused(statusRunning, "cannot start a running process")
}

func (*initRunning) delete(context.Context) (*Exit, error) {
	return nil, refused(statusRunning, "cannot delete a running process")
}

// pause freezes the container: pausing while runc pause runs.
func (s *initRunning) pause(ctx context.Context) error {
	p, t := s.p, s.p.task
	pausing := &initPausing{live{p}}
	if !p.transition(s, pausing) {
		return p.initState().pause(ctx) // lost to an exit
	}
	if err := t.runc.Pause(ctx, t.id); err != nil {
		p.transition(pausing, &initRunning{live{p}}) // unless exited
		return runtimeError(t.runc, err, "OCI runtime pause failed")
	}
	p.transition(pausing, &initPaused{live{p}}) // unless exited
	t.persist()
	t.pub.publish(t.namespace, TopicPaused, &eventstypes.TaskPaused{ContainerID: t.id})
	return nil
}

func (*initRunning) resume(context.Context) error {
	return refused(statusRunning, "cannot resume a running process")
}

func (s *initRunning) update(ctx context.Context, r typeurl.Any) error {
	return s.p.task.update(ctx, r)
}

func (s *initRunning) checkpoint(ctx context.Context, path string, o typeurl.Any) error {
	return s.p.task.checkpointTo(ctx, path, o)
}

func (*initRunning) exec() error { return nil }

// initPausing: runc pause runs. Operations wait for it (they need p.op),
// so only State, Kill and a task restored in this state see it.
type initPausing struct{ live }

func (*initPausing) status() procStatus { return statusPausing }

func (*initPausing) start(context.Context) error {
	return refused(statusPausing, "cannot start a paused process")
}

func (*initPausing) delete(context.Context) (*Exit, error) {
	return nil, refused(statusPausing, "cannot delete a paused process")
}

func (*initPausing) pause(context.Context) error {
	return refused(statusPausing, "cannot pause a paused container")
}

func (*initPausing) resume(context.Context) error {
	return refused(statusPausing, "cannot resume a running process")
}

func (s *initPausing) update(ctx context.Context, r typeurl.Any) error {
	return s.p.task.update(ctx, r)
}

func (s *initPausing) checkpoint(ctx context.Context, path string, o typeurl.Any) error {
	return s.p.task.checkpointTo(ctx, path, o)
}

func (*initPausing) exec() error {
	return refused(statusPausing, "cannot exec in a paused state")
}

// initPaused: the container's cgroup is frozen.
type initPaused struct{ live }

func (*initPaused) status() procStatus { return statusPaused }

func (*initPaused) start(context.Context) error {
	return refused(statusPaused, "cannot start a paused process")
}

func (*initPaused) delete(context.Context) (*Exit, error) {
	return nil, refused(statusPaused, "cannot delete a paused process")
}

func (*initPaused) pause(context.Context) error {
	return refused(statusPaused, "cannot pause a paused container")
}

// resume thaws the container. An init killed while frozen dies as soon as
// it is thawed: its exit is held until /tasks/resumed is out, so that
// clients see resumed, then the exit, as from runc.v2 (and never "running"
// after the exit).
func (s *initPaused) resume(ctx context.Context) error {
	p, t := s.p, s.p.task
	if !p.gateIn(s) {
		return p.initState().resume(ctx) // lost to an exit
	}
	if err := t.runc.Resume(ctx, t.id); err != nil {
		t.release(p)
		return runtimeError(t.runc, err, "OCI runtime resume failed")
	}
	p.transition(s, &initRunning{live{p}}) // exits are held: it is still s
	t.persist()
	t.pub.publish(t.namespace, TopicResumed, &eventstypes.TaskResumed{ContainerID: t.id})
	t.release(p)
	return nil
}

func (s *initPaused) update(ctx context.Context, r typeurl.Any) error {
	return s.p.task.update(ctx, r)
}

func (s *initPaused) checkpoint(ctx context.Context, path string, o typeurl.Any) error {
	return s.p.task.checkpointTo(ctx, path, o)
}

func (*initPaused) exec() error {
	return refused(statusPaused, "cannot exec in a paused state")
}

// initStopped: the init's exit is known (and published, or about to be).
type initStopped struct {
	p *process
	gone
}

func (*initStopped) status() procStatus { return statusStopped }

func (s *initStopped) exited(f exitFacts) procState {
	s.record(f)
	return s
}

func (*initStopped) kill(uint32) error { return finished(statusStopped) }

func (*initStopped) start(context.Context) error {
	return refused(statusStopped, "cannot start a stopped process")
}

// delete removes the task and publishes /tasks/delete with the init's exit.
func (s *initStopped) delete(ctx context.Context) (*Exit, error) {
	t := s.p.task
	if err := t.destroy(ctx); err != nil {
		return nil, err
	}
	exit := s.p.exit()
	t.publishDelete(exit)
	return exit, nil
}

func (*initStopped) pause(context.Context) error {
	return refused(statusStopped, "cannot pause a stopped container")
}

func (*initStopped) resume(context.Context) error {
	return refused(statusStopped, "cannot resume a stopped container")
}

func (*initStopped) update(context.Context, typeurl.Any) error {
	return refused(statusStopped, "cannot update a stopped container")
}

func (*initStopped) checkpoint(context.Context, string, typeurl.Any) error {
	return refused(statusStopped, "cannot checkpoint a stopped container")
}

func (*initStopped) exec() error {
	return refused(statusStopped, "cannot exec in a stopped state")
}

// initDeleted: the task was deleted. Its wording is runc.v2's deleted
// state's, but for start and delete (NotFound, which clients rely on).
type initDeleted struct {
	p *process
	gone
}

func (*initDeleted) status() procStatus { return statusDeleted }

func (s *initDeleted) exited(f exitFacts) procState {
	s.record(f)
	return s
}

func (*initDeleted) kill(uint32) error { return finished(statusDeleted) }

func (*initDeleted) start(context.Context) error {
	return refusedAs(statusDeleted, errdefs.ErrNotFound, "cannot start a deleted process")
}

func (s *initDeleted) delete(context.Context) (*Exit, error) {
	return nil, refusedAs(statusDeleted, errdefs.ErrNotFound, fmt.Sprintf("task %s", s.p.task.id))
}

func (*initDeleted) pause(context.Context) error {
	return refused(statusDeleted, "cannot pause a deleted process")
}

func (*initDeleted) resume(context.Context) error {
	return refused(statusDeleted, "cannot resume a deleted process")
}

func (*initDeleted) update(context.Context, typeurl.Any) error {
	return refused(statusDeleted, "cannot update a deleted process")
}

func (*initDeleted) checkpoint(context.Context, string, typeurl.Any) error {
	return refused(statusDeleted, "cannot checkpoint a deleted process")
}

func (s *initDeleted) exec() error {
	return refusedAs(statusDeleted, errdefs.ErrNotFound, fmt.Sprintf("task %s", s.p.task.id))
}
