//go:build linux

package adapter

import (
	"context"
	"fmt"

	apitypes "github.com/containerd/containerd/api/types"
	rt "github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"

	"github.com/embedshim/embedshim/go/core"
)

// Install wraps the upstream io.containerd.runtime.v2 "task" plugin, the one
// runtime containerd 2.3's tasks service uses, in a dispatcher: it takes the
// registered builtins, resets the registry and registers them again in the
// same order, the task plugin's init wrapped. No containerd package is
// forked or patched. The main calls it before containerd's app runs.
func Install() error {
	regs := registry.Graph(func(*plugin.Registration) bool { return false })
	found := false
	registry.Reset()
	for i := range regs {
		r := regs[i]
		if r.Type == plugins.RuntimePluginV2 && r.ID == "task" {
			found = true
			upstream := r.InitFn
			// Embed first, so the dispatcher finds it initialised.
			r.Requires = append(append([]plugin.Type(nil), r.Requires...), plugins.RuntimePlugin)
			r.InitFn = func(ic *plugin.InitContext) (interface{}, error) {
				up, err := upstream(ic)
				if err != nil {
					return nil, err
				}
				return newDispatcher(ic, up)
			}
		}
		registry.Register(&r)
	}
	if !found {
		return fmt.Errorf("embed: no %s.task plugin registered to dispatch from", plugins.RuntimePluginV2)
	}
	return nil
}

// upstreamRuntime is the upstream task manager: a PlatformRuntime with
// introspection's runtime info.
type upstreamRuntime interface {
	rt.PlatformRuntime
	PluginInfo(ctx context.Context, request any) (any, error)
}

// dispatcher is the task runtime containerd's tasks service sees. Its ID is
// the upstream one; creates are routed by runtime name, lookups go to embed
// first.
type dispatcher struct {
	upstream upstreamRuntime
	embed    *runtime // nil when the embed plugin is disabled or failed
}

func newDispatcher(ic *plugin.InitContext, up interface{}) (interface{}, error) {
	u, ok := up.(upstreamRuntime)
	if !ok {
		return nil, fmt.Errorf("embed: upstream task plugin is a %T, not a runtime", up)
	}
	d := &dispatcher{upstream: u}
	if e, err := ic.GetByID(plugins.RuntimePlugin, embedID); err == nil {
		d.embed = e.(*runtime)
	} else {
		log.G(ic.Context).WithError(err).Warn("embed: runtime unavailable; every task goes to the shims")
	}
	return d, nil
}

func (d *dispatcher) ID() string { return d.upstream.ID() }

func (d *dispatcher) Create(ctx context.Context, id string, opts rt.CreateOpts) (rt.Task, error) {
	if opts.Runtime == core.RuntimeName {
		if d.embed == nil {
			return nil, fmt.Errorf("runtime %s is not available (see the plugin's status in `ctr plugins ls`): %w",
				core.RuntimeName, errdefs.ErrUnavailable)
		}
		return d.embed.Create(ctx, id, opts)
	}
	return d.upstream.Create(ctx, id, opts)
}

func (d *dispatcher) Get(ctx context.Context, id string) (rt.Task, error) {
	if d.embed != nil {
		if t, err := d.embed.Get(ctx, id); err == nil {
			return t, nil
		}
	}
	return d.upstream.Get(ctx, id)
}

func (d *dispatcher) Tasks(ctx context.Context, all bool) ([]rt.Task, error) {
	ts, err := d.upstream.Tasks(ctx, all)
	if err != nil || d.embed == nil {
		return ts, err
	}
	es, err := d.embed.Tasks(ctx, all)
	if err != nil {
		return nil, err
	}
	return append(es, ts...), nil
}

func (d *dispatcher) Delete(ctx context.Context, id string) (*rt.Exit, error) {
	if d.embed != nil {
		if ns, err := namespaces.NamespaceRequired(ctx); err == nil {
			if _, err := d.embed.m.Get(ns, id); err == nil {
				return d.embed.Delete(ctx, id)
			}
		}
	}
	return d.upstream.Delete(ctx, id)
}

// PluginInfo answers introspection's runtime info (ctr plugins
// inspect-runtime, the Go client's RuntimeInfo, CRI's runtime features) for
// the runtime the request names.
func (d *dispatcher) PluginInfo(ctx context.Context, request any) (any, error) {
	if req, ok := request.(*apitypes.RuntimeRequest); ok && req.RuntimePath == core.RuntimeName {
		if d.embed == nil {
			return nil, fmt.Errorf("runtime %s: %w", core.RuntimeName, errdefs.ErrUnavailable)
		}
		return d.embed.runtimeInfo(ctx, req)
	}
	return d.upstream.PluginInfo(ctx, request)
}
