//go:build linux

// Shared by both daemon builds: symlinked as adapter/services.go into
// cmd/embedshim-containerd and cmd/embedshim-containerd-1.7. The mapping is
// one logic, but containerd 2.3 and 1.7 cannot share one go.mod, so each
// module compiles this file in its own adapter package. It names containerd's
// types and functions only through that package's containerd_types.go.

package adapter

import (
	"context"

	"github.com/containerd/errdefs"

	"github.com/embedshim/embedshim/go/core"
)

// The containerd services each build's newPlugin hands to core.Open.

// publisher puts the runtime's events into containerd's exchange.
type publisher struct{ ex *exchangeExchange }

func (p publisher) Publish(ns, topic string, evt interface{}) error {
	return p.ex.Publish(withNamespace(context.Background(), ns), topic, evt)
}

// mounter mounts rootfs components with containerd's mount package.
type mounter struct{}

func (mounter) Mount(_ context.Context, ms []core.Mount, target string) error {
	out := make([]mountMount, 0, len(ms))
	for _, m := range ms {
		out = append(out, mountMount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	return mountAll(out, target)
}

func (mounter) Unmount(target string) error {
	return unmountRecursive(target)
}

// containerStore answers the core's restore-time question, whether a task's
// container still exists, from containerd's metadata.
type containerStore struct{ s containersStore }

func (c containerStore) Exists(ctx context.Context, ns, id string) (bool, error) {
	_, err := c.s.Get(withNamespace(ctx, ns), id)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}
