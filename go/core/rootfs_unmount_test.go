//go:build linux

package core

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// tornMounter stands for the adapter's recursive unmount failing the way
// a torn mountinfo read makes it fail.
type tornMounter struct{ calls int }

func (m *tornMounter) Mount(context.Context, []Mount, string) error { return nil }
func (m *tornMounter) Unmount(string) error {
	m.calls++
	return errors.New("parsing mountinfo: not enough fields")
}

func mountTmpfs(t *testing.T, target string) {
	t.Helper()
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", target, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", target, err)
	}
	t.Cleanup(func() {
		for unix.Unmount(target, unix.MNT_DETACH) == nil {
		}
	})
}

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("EMBEDSHIM_REQUIRE_ALL") != "" {
			t.Fatal("needs root (mounts)")
		}
		t.Skip("needs root (mounts)")
	}
}

// A stack of mounts at the rootfs goes without the recursive unmount.
func TestUnmountRootfsStack(t *testing.T) {
	requireRoot(t)
	b := &bundle{id: "x", path: t.TempDir(), workDir: t.TempDir()}
	mountTmpfs(t, b.rootfs())
	mountTmpfs(t, b.rootfs())
	if !mountedOver(b.rootfs()) {
		t.Fatal("rootfs not seen as mounted")
	}
	if err := b.delete(); err == nil {
		t.Fatal("bundle removed with its rootfs mounted")
	}
	m := &tornMounter{}
	if err := unmountRootfs(m, b.rootfs()); err != nil {
		t.Fatal(err)
	}
	if m.calls != 0 {
		t.Errorf("recursive unmount called %d times for a plain stack", m.calls)
	}
	if mountedOver(b.rootfs()) {
		t.Fatal("rootfs still mounted")
	}
	if err := b.delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b.path); !os.IsNotExist(err) {
		t.Errorf("bundle left: %v", err)
	}
}

// A mount below the rootfs makes umount(2) of the rootfs EBUSY; when the
// recursive unmount fails too, the rootfs is detached and nothing of it
// stays reachable under the bundle.
func TestUnmountRootfsNestedRecursiveFails(t *testing.T) {
	requireRoot(t)
	b := &bundle{id: "x", path: t.TempDir(), workDir: t.TempDir()}
	mountTmpfs(t, b.rootfs())
	mountTmpfs(t, filepath.Join(b.rootfs(), "proc"))
	m := &tornMounter{}
	if err := unmountRootfs(m, b.rootfs()); err != nil {
		t.Fatal(err)
	}
	if m.calls != unmountRootfsRetries {
		t.Errorf("recursive unmount tried %d times, want %d", m.calls, unmountRootfsRetries)
	}
	if mountedOver(b.rootfs()) {
		t.Fatal("rootfs still mounted")
	}
	if err := b.delete(); err != nil {
		t.Fatal(err)
	}
}

// Nothing mounted (a task created without rootfs mounts, or a rootfs
// already gone) is no error.
func TestUnmountRootfsNothingMounted(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	m := &tornMounter{}
	for _, target := range []string{dir, filepath.Join(dir, "missing")} {
		if err := unmountRootfs(m, target); err != nil {
			t.Errorf("%s: %v", target, err)
		}
	}
	if m.calls != 0 {
		t.Errorf("recursive unmount called %d times", m.calls)
	}
}
