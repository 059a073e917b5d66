//go:build linux

package core

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// forceDeleteTries bounds how often runc delete --force is tried: a failure
// can be transient (a full state filesystem, an OCI runtime wrapper failing
// one call) and must not leave a runc container that no task accounts for.
const forceDeleteTries = 3

// forceDelete removes a runc container whatever its state (runc-init killed,
// state dir and cgroups removed), trying again after a failure; a container
// that does not exist is no failure. The last error is logged and returned.
func forceDelete(ctx context.Context, r *runc.Runc, id string) error {
	ctx = context.WithoutCancel(ctx)
	var err error
	for i := 1; i <= forceDeleteTries; i++ {
		err = r.Delete(ctx, id, &runc.DeleteOpts{Force: true})
		if err == nil || strings.Contains(err.Error(), "does not exist") {
			return nil
		}
		if i < forceDeleteTries {
			time.Sleep(time.Duration(i) * 100 * time.Millisecond)
		}
	}
	log.G(ctx).WithError(err).WithField("id", id).Warn("embed: runc delete --force failed")
	return err
}

// sweepRuncRoot removes the runc containers of the plugin's own runc root
// that no restored task accounts for: a failed create whose clean-up failed
// every time, or a daemon that died between runc create and writing the
// task's state. Only the plugin's own root is swept; a root shared with
// other runtimes (runtime_root set to runc.v2's) holds their containers.
func (m *Manager) sweepRuncRoot(ctx context.Context) {
	root := filepath.Clean(m.config.RuntimeRoot)
	if root != filepath.Join(m.state, runcRootDir) {
		return
	}
	nsDirs, _ := os.ReadDir(root)
	for _, nsd := range nsDirs {
		if !nsd.IsDir() {
			continue
		}
		ns := nsd.Name()
		ids, _ := os.ReadDir(filepath.Join(root, ns))
		for _, idd := range ids {
			id := idd.Name()
			if !idd.IsDir() {
				continue
			}
			if _, err := m.tasks.get(ns, id); err == nil {
				continue
			}
			l := log.G(ctx).WithFields(log.Fields{"namespace": ns, "id": id})
			l.Warn("embed: removing a runc container that no task accounts for")
			r := &runc.Runc{Command: m.config.Runtime, Root: filepath.Join(root, ns), PdeathSignal: unix.SIGKILL}
			forceDelete(log.WithLogger(ctx, l), r, id)
		}
	}
}
