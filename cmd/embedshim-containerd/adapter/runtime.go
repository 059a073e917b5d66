//go:build linux

package adapter

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/mount"
	rt "github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/embedshim/embedshim/go/core"
)

// runtime is containerd 2.3's PlatformRuntime view of the core's manager.
// Like upstream's task manager it runs the rootfs through the mount manager
// before the runtime sees it.
type runtime struct {
	m      *core.Manager
	mounts mount.Manager // nil when the mount manager plugin is absent
	config *core.Config
}

var _ rt.PlatformRuntime = (*runtime)(nil)

func (r *runtime) ID() string { return r.m.ID() }

func (r *runtime) Create(ctx context.Context, id string, opts rt.CreateOpts) (_ rt.Task, retErr error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.validateRuntimeFeatures(ctx, opts); err != nil {
		return nil, fmt.Errorf("failed to validate OCI runtime features: %w", err)
	}
	rootfs, err := r.activate(ctx, id, opts.Rootfs)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			r.deactivate(context.WithoutCancel(ctx), id)
		}
	}()
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

// activate hands the rootfs to the mount manager as upstream's task manager
// does (labelled for the container's GC); what it leaves to the runtime
// (System) is mounted by the core. Without mount handlers for these types
// the manager answers NotImplemented and the mounts stay as they are.
func (r *runtime) activate(ctx context.Context, id string, rootfs []mount.Mount) ([]mount.Mount, error) {
	if r.mounts == nil {
		return rootfs, nil
	}
	ai, err := r.mounts.Activate(ctx, id, rootfs, mount.WithLabels(map[string]string{
		"containerd.io/gc.bref.container": id,
	}))
	switch {
	case err == nil:
		return ai.System, nil
	case errdefs.IsAlreadyExists(err):
		if ai, err = r.mounts.Info(ctx, id); err != nil {
			return nil, fmt.Errorf("failed to get info on already active mount: %w", err)
		}
		return ai.System, nil
	case errdefs.IsNotImplemented(err):
		return rootfs, nil
	}
	return nil, err
}

func (r *runtime) deactivate(ctx context.Context, id string) {
	if r.mounts == nil {
		return
	}
	if err := r.mounts.Deactivate(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		log.G(ctx).WithError(err).WithField("task", id).Error("embed: failed to deactivate mounts")
	}
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
	r.deactivate(ctx, id)
	return (*rt.Exit)(e), nil
}
