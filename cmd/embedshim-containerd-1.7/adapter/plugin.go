//go:build linux

// Package adapter registers the embed runtime (go/core) as containerd 1.7's
// runtime v1 plugin io.containerd.runtime.v1.embed and maps the core's
// manager, tasks and exec processes onto containerd 1.7's runtime
// interfaces. Nothing of the runtime's logic lives here.
package adapter

import (
	"github.com/containerd/containerd/events/exchange"
	"github.com/containerd/containerd/metadata"
	"github.com/containerd/containerd/plugin"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/embedshim/embedshim/go/core"
)

func init() {
	plugin.Register(&plugin.Registration{
		Type:     plugin.RuntimePlugin,
		ID:       "embed",
		InitFn:   newPlugin,
		Requires: []plugin.Type{plugin.EventPlugin, plugin.MetadataPlugin},
		Config:   core.DefaultConfig(),
	})
}

func newPlugin(ic *plugin.InitContext) (interface{}, error) {
	ic.Meta.Platforms = []ocispec.Platform{platforms.DefaultSpec()}
	ep, err := ic.GetByID(plugin.EventPlugin, "exchange")
	if err != nil {
		return nil, err
	}
	md, err := ic.Get(plugin.MetadataPlugin)
	if err != nil {
		return nil, err
	}
	m, err := core.Open(ic.Context, core.Options{
		Root:       ic.Root,
		State:      ic.State,
		Address:    ic.Address,
		Config:     ic.Config.(*core.Config),
		Publisher:  publisher{ep.(*exchange.Exchange)},
		Mounter:    mounter{},
		Decoders:   decoders,
		Containers: containerStore{metadata.NewContainerStore(md.(*metadata.DB))},
	})
	if err != nil {
		return nil, err
	}
	return &runtime{m: m}, nil
}
