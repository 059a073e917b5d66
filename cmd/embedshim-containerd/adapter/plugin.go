//go:build linux

// Package adapter brings the embed runtime (go/core) to containerd 2.3.
//
// containerd 2.x has no runtime v1 plugin type any more: its tasks service
// takes exactly one runtime, the io.containerd.runtime.v2 "task" plugin,
// which starts a shim for every runtime name. So the embed runtime is
// registered as a plugin of its own (type io.containerd.runtime.v1, ID
// embed, which nothing else in containerd 2.3 uses: its URI is the runtime
// name and its config section keeps the 1.7 name), and Install wraps the
// upstream task plugin in a dispatcher that hands io.containerd.runtime.v1.embed
// to it and every other runtime name to the upstream task manager,
// unchanged. Nothing of the runtime's logic lives here.
package adapter

import (
	"errors"

	"github.com/containerd/containerd/v2/core/events/exchange"
	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/platforms"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/embedshim/embedshim/go/core"
)

// embedID is the plugin's ID; with plugins.RuntimePlugin as its type its
// URI is core.RuntimeName.
const embedID = "embed"

func init() {
	registry.Register(&plugin.Registration{
		Type:     plugins.RuntimePlugin,
		ID:       embedID,
		InitFn:   newPlugin,
		Requires: []plugin.Type{plugins.EventPlugin, plugins.MetadataPlugin, plugins.MountManagerPlugin},
		Config:   core.DefaultConfig(),
	})
}

func newPlugin(ic *plugin.InitContext) (interface{}, error) {
	ic.Meta.Platforms = []ocispec.Platform{platforms.DefaultSpec()}
	ep, err := ic.GetByID(plugins.EventPlugin, "exchange")
	if err != nil {
		return nil, err
	}
	var mounts mount.Manager
	if mi, err := ic.GetSingle(plugins.MountManagerPlugin); err == nil {
		mounts = mi.(mount.Manager)
	} else if !errors.Is(err, plugin.ErrPluginNotFound) {
		return nil, err
	}
	md, err := ic.GetSingle(plugins.MetadataPlugin)
	if err != nil {
		return nil, err
	}
	cfg := ic.Config.(*core.Config)
	m, err := core.Open(ic.Context, core.Options{
		Root:       ic.Properties[plugins.PropertyRootDir],
		State:      ic.Properties[plugins.PropertyStateDir],
		Address:    ic.Properties[plugins.PropertyGRPCAddress],
		Config:     cfg,
		Publisher:  publisher{ep.(*exchange.Exchange)},
		Mounter:    mounter{},
		Decoders:   decoders,
		Containers: containerStore{metadata.NewContainerStore(md.(*metadata.DB))},
	})
	if err != nil {
		return nil, err
	}
	return &runtime{m: m, mounts: mounts, config: cfg}, nil
}
