//go:build linux

package core

import (
	"context"

	"github.com/containerd/typeurl/v2"
)

// Stats returns the container's cgroup metrics, the same types runc.v2
// returns (io.containerd.cgroups.v1.Metrics / v2.Metrics).
func (t *Task) Stats(context.Context) (typeurl.Any, error) {
	cg, err := t.cgroup()
	if err != nil {
		return nil, err
	}
	stats, err := cg.stat()
	if err != nil {
		return nil, err
	}
	return typeurl.MarshalAny(stats)
}
