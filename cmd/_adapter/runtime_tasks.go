//go:build linux

// Shared by both daemon builds: symlinked as adapter/runtime_tasks.go into
// cmd/embedshim-containerd and cmd/embedshim-containerd-1.7. The mapping is
// one logic, but containerd 2.3 and 1.7 cannot share one go.mod, so each
// module compiles this file in its own adapter package. It names containerd's
// types and functions only through that package's containerd_types.go.
//
// What differs stays in each build's runtime.go: the runtime struct, Create
// (2.3 validates runtime features and activates the rootfs through the mount
// manager first) and deactivate (2.3 releases those mounts; 1.7 has none).

package adapter

import (
	"context"

	"github.com/embedshim/embedshim/go/core"
)

func (r *runtime) ID() string { return r.m.ID() }

// createTask creates the core task of a Create whose namespace is ns, on
// rootfs (what the build made of opts.Rootfs).
func (r *runtime) createTask(ctx context.Context, ns, id string, rootfs []mountMount, opts rtCreateOpts) (rtTask, error) {
	co := core.CreateOpts{
		Rootfs:         rootfsOf(rootfs),
		IO:             core.IO(opts.IO),
		Checkpoint:     opts.Checkpoint,
		RuntimeOptions: opts.RuntimeOptions,
		TaskOptions:    opts.TaskOptions,
	}
	if opts.Spec != nil {
		co.Spec = opts.Spec.GetValue()
	}
	t, err := r.m.Create(ctx, ns, id, co)
	if err != nil {
		return nil, err
	}
	return &task{t}, nil
}

func (r *runtime) Get(ctx context.Context, id string) (rtTask, error) {
	ns, err := namespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	t, err := r.m.Get(ns, id)
	if err != nil {
		return nil, err
	}
	return &task{t}, nil
}

func (r *runtime) Tasks(ctx context.Context, all bool) ([]rtTask, error) {
	ns, err := namespaceRequired(ctx)
	if err != nil && !all {
		return nil, err
	}
	var out []rtTask
	for _, t := range r.m.Tasks(ns, all) {
		out = append(out, &task{t})
	}
	return out, nil
}

func (r *runtime) Delete(ctx context.Context, id string) (*rtExit, error) {
	ns, err := namespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	e, err := r.m.Delete(ctx, ns, id)
	if err != nil {
		return nil, err
	}
	r.deactivate(ctx, id)
	return (*rtExit)(e), nil
}
