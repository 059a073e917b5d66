//go:build linux

package adapter

import (
	"context"

	"github.com/containerd/containerd/namespaces"
	rt "github.com/containerd/containerd/runtime"

	"github.com/embedshim/embedshim/go/core"
)

// runtime is containerd 1.7's PlatformRuntime view of the core's manager.
type runtime struct{ m *core.Manager }

var _ rt.PlatformRuntime = (*runtime)(nil)

func (r *runtime) ID() string { return r.m.ID() }

func (r *runtime) Create(ctx context.Context, id string, opts rt.CreateOpts) (rt.Task, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	co := core.CreateOpts{
		Rootfs:         rootfsOf(opts.Rootfs),
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

func (r *runtime) Get(ctx context.Context, id string) (rt.Task, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	t, err := r.m.Get(ns, id)
	if err != nil {
		return nil, err
	}
	return &task{t}, nil
}

func (r *runtime) Tasks(ctx context.Context, all bool) ([]rt.Task, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil && !all {
		return nil, err
	}
	var out []rt.Task
	for _, t := range r.m.Tasks(ns, all) {
		out = append(out, &task{t})
	}
	return out, nil
}

func (r *runtime) Delete(ctx context.Context, id string) (*rt.Exit, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	e, err := r.m.Delete(ctx, ns, id)
	if err != nil {
		return nil, err
	}
	return (*rt.Exit)(e), nil
}
