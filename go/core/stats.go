//go:build linux

package core

import (
	"context"
	"fmt"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	cgroupsv2 "github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
)

// Stats returns the container's cgroup metrics, the same types runc.v2
// returns (io.containerd.cgroups.v1.Metrics / v2.Metrics).
func (t *Task) Stats(context.Context) (typeurl.Any, error) {
	cg, err := t.cgroup()
	if err != nil {
		return nil, err
	}
	var stats interface{}
	switch cg := cg.(type) {
	case cgroup1.Cgroup:
		if stats, err = cg.Stat(cgroup1.IgnoreNotExist); err != nil {
			return nil, err
		}
	case *cgroupsv2.Manager:
		if stats, err = cg.Stat(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unsupported cgroup type %T: %w", cg, errdefs.ErrNotImplemented)
	}
	return typeurl.MarshalAny(stats)
}

// cgroup loads the init's cgroup once, from /proc/<pid>/cgroup, as the runc
// shim does; it stays usable after the init exits.
func (t *Task) cgroup() (interface{}, error) {
	t.cgMu.Lock()
	defer t.cgMu.Unlock()
	if t.cg != nil {
		return t.cg, nil
	}
	pid := t.init.getPid()
	if pid == 0 {
		return nil, fmt.Errorf("cgroup does not exist: %w", errdefs.ErrNotFound)
	}
	var (
		cg  interface{}
		err error
	)
	if cgroups.Mode() == cgroups.Unified {
		var g string
		if g, err = cgroupsv2.PidGroupPath(pid); err == nil {
			cg, err = cgroupsv2.Load(g)
		}
	} else {
		cg, err = cgroup1.Load(cgroup1.PidPath(pid))
	}
	if err != nil {
		return nil, fmt.Errorf("cgroup does not exist: %v: %w", err, errdefs.ErrNotFound)
	}
	t.cg = cg
	return cg, nil
}
