package exitmon

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
)

// HostBPFFS is the host's bpffs mount point. Open mounts a bpffs there if a
// pin dir below it is used and nothing is mounted yet.
const HostBPFFS = "/sys/fs/bpf"

// DefaultPinDir is where a runtime plugin whose root is pluginRoot pins its
// BPF program and maps by default: a directory of the host's bpffs named
// after the absolute plugin root, so two daemons on one host never share
// pins, a daemon restarted with the same root finds its own, and nothing of
// the plugin is mounted inside its root (which stays removable with rm -rf).
func DefaultPinDir(pluginRoot string) string {
	abs, err := filepath.Abs(pluginRoot)
	if err != nil {
		abs = filepath.Clean(pluginRoot)
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(HostBPFFS, "embedshim", hex.EncodeToString(sum[:8]))
}

// OldDefaultPinDir is where plugins before DefaultPinDir pinned by default:
// a private bpffs mounted at <plugin root>/bpf. Pass it as
// Options.TakeOver, so pins left there are taken over and removed.
func OldDefaultPinDir(pluginRoot string) string {
	return filepath.Join(pluginRoot, "bpf")
}

// RemovePins uninstalls the pins of the runtime plugin whose root is
// pluginRoot: those under pinDir (DefaultPinDir(pluginRoot) if empty) and
// any left at OldDefaultPinDir. The program is detached once no Monitor
// holds it: stop the daemon first. Every registration and exit record is
// lost. Missing pins are no error.
func RemovePins(pluginRoot, pinDir string) error {
	if pinDir == "" {
		pinDir = DefaultPinDir(pluginRoot)
	}
	err := DestroyPins(pinDir)
	if old := OldDefaultPinDir(pluginRoot); old != pinDir {
		if _, serr := os.Stat(old); serr == nil {
			err = errors.Join(err, DestroyPins(old))
		}
	}
	// The parent every default pin dir shares, once the last is gone.
	if parent := filepath.Dir(pinDir); parent == filepath.Join(HostBPFFS, "embedshim") {
		_ = os.Remove(parent)
	}
	return err
}
