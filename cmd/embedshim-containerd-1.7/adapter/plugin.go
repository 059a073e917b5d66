//go:build linux

// Package adapter registers the embed runtime (go/core) as containerd 1.7's
// runtime v1 plugin io.containerd.runtime.v1.embed and maps the core's
// manager, tasks and exec processes onto containerd 1.7's runtime
// interfaces. Nothing of the runtime's logic lives here.
package adapter

import (
	"context"

	"github.com/containerd/containerd/events/exchange"
	"github.com/containerd/containerd/metadata"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
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

// publisher puts the runtime's events into containerd's exchange.
type publisher struct{ ex *exchange.Exchange }

func (p publisher) Publish(ns, topic string, evt interface{}) error {
	return p.ex.Publish(namespaces.WithNamespace(context.Background(), ns), topic, evt)
}

// mounter mounts rootfs components with containerd 1.7's mount package.
type mounter struct{}

func (mounter) Mount(_ context.Context, ms []core.Mount, target string) error {
	out := make([]mount.Mount, 0, len(ms))
	for _, m := range ms {
		out = append(out, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	return mount.All(out, target)
}

func (mounter) Unmount(target string) error {
	return mount.UnmountRecursive(target, 0)
}
