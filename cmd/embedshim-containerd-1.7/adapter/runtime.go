//go:build linux

package adapter

import (
	"context"

	"github.com/containerd/containerd/namespaces"
	rt "github.com/containerd/containerd/runtime"

	"github.com/embedshim/embedshim/go/core"
)

// runtime is containerd 1.7's PlatformRuntime view of the core's manager.
// ID, Get, Tasks and Delete are shared with the 2.3 build (runtime_tasks.go).
type runtime struct{ m *core.Manager }

var _ rt.PlatformRuntime = (*runtime)(nil)

func (r *runtime) Create(ctx context.Context, id string, opts rt.CreateOpts) (rt.Task, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	return r.createTask(ctx, ns, id, opts.Rootfs, opts)
}

// deactivate has nothing to release: containerd 1.7 has no mount manager,
// the rootfs is mounted and unmounted by the core alone.
func (r *runtime) deactivate(context.Context, string) {}
