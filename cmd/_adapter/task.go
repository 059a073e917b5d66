//go:build linux

// Shared by both daemon builds: symlinked as adapter/task.go into
// cmd/embedshim-containerd and cmd/embedshim-containerd-1.7. The mapping is
// one logic, but containerd 2.3 and 1.7 cannot share one go.mod, so each
// module compiles this file in its own adapter package. It names containerd's
// types only through the aliases of that package's containerd_types.go.

package adapter

import (
	"context"

	"github.com/containerd/typeurl/v2"

	"github.com/embedshim/embedshim/go/core"
)

// task is containerd's runtime.Task view of a core task.
type task struct{ t *core.Task }

var _ rtTask = (*task)(nil)

func (t *task) ID() string        { return t.t.ID() }
func (t *task) Namespace() string { return t.t.Namespace() }

func (t *task) PID(ctx context.Context) (uint32, error) { return t.t.PID(ctx) }

func (t *task) State(ctx context.Context) (rtState, error) {
	s, err := t.t.State(ctx)
	return stateOf(s), err
}

func (t *task) Kill(ctx context.Context, signal uint32, all bool) error {
	return t.t.Kill(ctx, signal, all)
}

func (t *task) ResizePty(ctx context.Context, size rtConsoleSize) error {
	return t.t.ResizePty(ctx, core.ConsoleSize(size))
}

func (t *task) CloseIO(ctx context.Context) error { return t.t.CloseIO(ctx) }
func (t *task) Start(ctx context.Context) error   { return t.t.Start(ctx) }
func (t *task) Pause(ctx context.Context) error   { return t.t.Pause(ctx) }
func (t *task) Resume(ctx context.Context) error  { return t.t.Resume(ctx) }

func (t *task) Wait(ctx context.Context) (*rtExit, error) {
	e, err := t.t.Wait(ctx)
	return (*rtExit)(e), err
}

func (t *task) Exec(ctx context.Context, id string, opts rtExecOpts) (rtExecProcess, error) {
	eo := core.ExecOpts{IO: core.IO(opts.IO)}
	if opts.Spec != nil {
		eo.Spec = opts.Spec.GetValue()
	}
	p, err := t.t.Exec(ctx, id, eo)
	if err != nil {
		return nil, err
	}
	return &execProcess{p}, nil
}

func (t *task) Pids(ctx context.Context) ([]rtProcessInfo, error) {
	ps, err := t.t.Pids(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]rtProcessInfo, 0, len(ps))
	for _, p := range ps {
		out = append(out, rtProcessInfo(p))
	}
	return out, nil
}

func (t *task) Checkpoint(ctx context.Context, path string, opts *typesAny) error {
	return t.t.Checkpoint(ctx, path, anyOrNil(opts))
}

func (t *task) Update(ctx context.Context, resources *typesAny, annotations map[string]string) error {
	return t.t.Update(ctx, anyOrNil(resources), annotations)
}

func (t *task) Process(ctx context.Context, id string) (rtExecProcess, error) {
	p, err := t.t.Process(ctx, id)
	if err != nil {
		return nil, err
	}
	return &execProcess{p}, nil
}

func (t *task) Stats(ctx context.Context) (*typesAny, error) {
	a, err := t.t.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return anyToProto(a), nil
}

// execProcess is containerd's runtime.ExecProcess view of a core exec.
type execProcess struct{ p *core.ExecProcess }

var _ rtExecProcess = (*execProcess)(nil)

func (e *execProcess) ID() string { return e.p.ID() }

func (e *execProcess) State(ctx context.Context) (rtState, error) {
	s, err := e.p.State(ctx)
	return stateOf(s), err
}

func (e *execProcess) Kill(ctx context.Context, signal uint32, all bool) error {
	return e.p.Kill(ctx, signal, all)
}

func (e *execProcess) ResizePty(ctx context.Context, size rtConsoleSize) error {
	return e.p.ResizePty(ctx, core.ConsoleSize(size))
}

func (e *execProcess) CloseIO(ctx context.Context) error { return e.p.CloseIO(ctx) }
func (e *execProcess) Start(ctx context.Context) error   { return e.p.Start(ctx) }

func (e *execProcess) Wait(ctx context.Context) (*rtExit, error) {
	x, err := e.p.Wait(ctx)
	return (*rtExit)(x), err
}

func (e *execProcess) Delete(ctx context.Context) (*rtExit, error) {
	x, err := e.p.Delete(ctx)
	return (*rtExit)(x), err
}

// anyOrNil keeps a nil *types.Any a nil typeurl.Any for the core.
func anyOrNil(a *typesAny) typeurl.Any {
	if a == nil {
		return nil
	}
	return a
}

// stateOf converts a core state; the status numbers are containerd's.
func stateOf(s core.State) rtState {
	return rtState{
		Status:     rtStatus(s.Status),
		Pid:        s.Pid,
		ExitStatus: s.ExitStatus,
		ExitedAt:   s.ExitedAt,
		Stdin:      s.Stdin,
		Stdout:     s.Stdout,
		Stderr:     s.Stderr,
		Terminal:   s.Terminal,
	}
}

func rootfsOf(ms []mountMount) []core.Mount {
	out := make([]core.Mount, 0, len(ms))
	for _, m := range ms {
		out = append(out, core.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	return out
}
