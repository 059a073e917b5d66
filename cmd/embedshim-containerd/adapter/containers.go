//go:build linux

package adapter

import (
	"context"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

// containerStore answers the core's restore-time question, whether a task's
// container still exists, from containerd 2.3's metadata.
type containerStore struct{ s containers.Store }

func (c containerStore) Exists(ctx context.Context, ns, id string) (bool, error) {
	_, err := c.s.Get(namespaces.WithNamespace(ctx, ns), id)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}
