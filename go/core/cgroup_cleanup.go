//go:build linux

package core

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	cgroupsv2 "github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/log"
)

// removeSpecCgroup removes the container's cgroup named by the bundle's
// spec if it is empty. It is for a container runc never finished creating
// (runc killed half-way, or containerd dying during create): runc made the
// cgroup but wrote no state, so runc delete --force does not know the
// container and leaves the cgroup behind. Nothing is killed: a cgroup with
// processes in it (one the spec named but runc did not make) stays, as do
// systemd cgroup paths (slice:prefix:name), which are systemd's.
func (b *bundle) removeSpecCgroup(ctx context.Context) {
	spec, err := b.spec()
	if err != nil || spec.Linux == nil {
		return
	}
	path := spec.Linux.CgroupsPath
	if path == "" || !filepath.IsAbs(path) || strings.Contains(path, ":") {
		return
	}
	l := log.G(ctx).WithField("cgroup", path)
	if cgroups.Mode() == cgroups.Unified {
		cg, err := cgroupsv2.Load(path)
		if err != nil {
			return
		}
		if err := retryBusy(cg.Delete); err != nil {
			l.WithError(err).Warn("embed: remove the cgroup of a container that was never created")
		}
		return
	}
	// Hybrid hosts: runc also makes the cgroup in the v2 hierarchy mounted
	// at unified/, which the v1 library does not manage.
	unified := filepath.Join("/sys/fs/cgroup/unified", path)
	if err := retryBusy(func() error { return removeIfExists(unified) }); err != nil {
		l.WithError(err).Warn("embed: remove the unified cgroup of a container that was never created")
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path))
	if err != nil {
		if !errors.Is(err, cgroup1.ErrCgroupDeleted) {
			l.WithError(err).Debug("embed: load the cgroup of a container that was never created")
		}
		return
	}
	if err := retryBusy(cg.Delete); err != nil {
		l.WithError(err).Warn("embed: remove the cgroup of a container that was never created")
	}
}

// removeIfExists removes an empty cgroup dir; a missing one is no error.
func removeIfExists(dir string) error {
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// retryBusy retries a cgroup removal while exiting processes (a killed
// runc's runc-init) are still leaving it (EBUSY), for up to a second.
func retryBusy(remove func() error) error {
	var err error
	for deadline := time.Now().Add(time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err = remove(); err == nil || time.Now().After(deadline) {
			return err
		}
	}
}
