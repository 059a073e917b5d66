//go:build linux

package core

import (
	"fmt"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	cgroupsv2 "github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/errdefs"
)

// taskCgroup is a container's cgroup, whichever hierarchy the host runs:
// what the runtime does with it (metrics, thaw, OOM events), one
// implementation per cgroup version.
type taskCgroup interface {
	// stat returns the metrics runc.v2 returns for this version
	// (io.containerd.cgroups.v1.Metrics / v2.Metrics).
	stat() (any, error)
	// thaw unfreezes the cgroup.
	thaw() error
	// watchOOM makes w publish t's OOM kills.
	watchOOM(w *oomWatcher, t *Task) error
}

// cgroupV1 is a cgroup on a v1 (or hybrid) host.
type cgroupV1 struct{ cg cgroup1.Cgroup }

func (c cgroupV1) stat() (any, error) { return c.cg.Stat(cgroup1.IgnoreNotExist) }
func (c cgroupV1) thaw() error        { return c.cg.Thaw() }
func (c cgroupV1) watchOOM(w *oomWatcher, t *Task) error {
	return w.addV1(t, c.cg)
}

// cgroupV2 is a cgroup on a unified host.
type cgroupV2 struct{ m *cgroupsv2.Manager }

func (c cgroupV2) stat() (any, error) { return c.m.Stat() }
func (c cgroupV2) thaw() error        { return c.m.Thaw() }
func (c cgroupV2) watchOOM(w *oomWatcher, t *Task) error {
	w.addV2(t, c.m)
	return nil
}

// cgroup loads the init's cgroup once, from /proc/<pid>/cgroup, as the runc
// shim does; it stays usable after the init exits.
func (t *Task) cgroup() (taskCgroup, error) {
	t.cgMu.Lock()
	defer t.cgMu.Unlock()
	if t.cg != nil {
		return t.cg, nil
	}
	pid := t.init.getPid()
	if pid == 0 {
		return nil, fmt.Errorf("cgroup does not exist: %w", errdefs.ErrNotFound)
	}
	cg, err := loadCgroup(pid)
	if err != nil {
		return nil, fmt.Errorf("cgroup does not exist: %v: %w", err, errdefs.ErrNotFound)
	}
	t.cg = cg
	return cg, nil
}

func loadCgroup(pid int) (taskCgroup, error) {
	if cgroups.Mode() == cgroups.Unified {
		g, err := cgroupsv2.PidGroupPath(pid)
		if err != nil {
			return nil, err
		}
		m, err := cgroupsv2.Load(g)
		if err != nil {
			return nil, err
		}
		return cgroupV2{m}, nil
	}
	cg, err := cgroup1.Load(cgroup1.PidPath(pid))
	if err != nil {
		return nil, err
	}
	return cgroupV1{cg}, nil
}
