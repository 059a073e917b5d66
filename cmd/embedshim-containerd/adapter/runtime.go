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
// before the runtime sees it. ID, Get, Tasks and Delete are shared with the
// 1.7 build (runtime_tasks.go).
type runtime struct {
	m      *core.Manager
	mounts mount.Manager // nil when the mount manager plugin is absent
	config *core.Config
}

var _ rt.PlatformRuntime = (*runtime)(nil)

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
	return r.createTask(ctx, ns, id, rootfs, opts)
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

// deactivate releases what activate took; Delete (runtime_tasks.go) calls it
// once the core has deleted the task.
func (r *runtime) deactivate(ctx context.Context, id string) {
	if r.mounts == nil {
		return
	}
	if err := r.mounts.Deactivate(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		log.G(ctx).WithError(err).WithField("task", id).Error("embed: failed to deactivate mounts")
	}
}
