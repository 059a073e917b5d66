//go:build linux

package adapter

import (
	"context"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/errdefs"
)

// containerStore answers the core's restore-time question, whether a task's
// container still exists, from containerd 1.7's metadata.
type containerStore struct{ s containers.Store }

func (c containerStore) Exists(ctx context.Context, ns, id string) (bool, error) {
	_, err := c.s.Get(namespaces.WithNamespace(ctx, ns), id)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}
