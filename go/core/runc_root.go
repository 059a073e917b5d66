//go:build linux

package core

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/containerd/log"
)

// migrateRuncRoot moves the runc state of a task created under the default
// runc root of earlier releases (runc.v2's /run/containerd/runc/<ns>) into
// the plugin's own root, unless the plugin is configured to use the old one.
// runc keeps no path of its root in a container's state, and runc-init holds
// exec.fifo by fd, so a rename within the tmpfs carries running and created
// containers alike. It reports whether rc.Root changed (the caller persists
// it); if the rename fails the task stays where it is.
func (m *Manager) migrateRuncRoot(ctx context.Context, ns, id string, rc *RuncConfig) bool {
	old := filepath.Join(legacyRuntimeRoot, ns)
	root := filepath.Join(m.config.RuntimeRoot, ns)
	if filepath.Clean(rc.Root) != old || root == old {
		return false
	}
	l := log.G(ctx).WithFields(log.Fields{"from": old, "to": root})
	if err := os.MkdirAll(root, 0o700); err != nil {
		l.WithError(err).Warn("embed: cannot create the runc root; task keeps the old one")
		return false
	}
	err := os.Rename(filepath.Join(old, id), filepath.Join(root, id))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		l.WithError(err).Warn("embed: cannot move the task's runc state; it keeps the old root")
		return false
	}
	// Gone from the old root (or never there): the new root is right.
	l.Info("embed: moved the task's runc state to the plugin's own runc root")
	rc.Root = root
	return true
}
