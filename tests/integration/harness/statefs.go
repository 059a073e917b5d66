//go:build linux

package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// mountStateTmpfs mounts a tmpfs of mib MiB at d.State (Options.StateTmpfsMiB)
// before the daemon first starts, so a test can fill the daemon's state
// filesystem (ENOSPC) without touching the host's. Mode 0711 is what
// containerd gives the state dir it creates itself.
//
// It needs no clean-up of its own: it is a mount under d.Dir, so it is in
// every Snapshot's Mounts (baseline included, never a leak), and the
// harness clean-up unmounts everything under d.Dir deepest first, this
// tmpfs after the rootfs mounts inside it, once the daemon and its
// processes are gone.
func (d *Daemon) mountStateTmpfs(mib int) error {
	if err := os.MkdirAll(d.State, 0o711); err != nil {
		return err
	}
	opts := fmt.Sprintf("size=%dm,mode=0711", mib)
	if err := unix.Mount("tmpfs", d.State, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount tmpfs (%s) at %s: %w", opts, d.State, err)
	}
	return nil
}

// FillState appends to the file name in d.State until its filesystem is
// full (ENOSPC): the daemon's writes there then fail until the file is
// removed, or until something else there is removed (a failed create
// removes its bundle): call it again to top up. It returns the file's
// path and how many bytes it wrote this time. Meant for a
// small Options.StateTmpfsMiB tmpfs; on a host filesystem it would fill
// that, so it refuses to run without one.
func (d *Daemon) FillState(name string) (path string, size int64, err error) {
	if d.opts.StateTmpfsMiB <= 0 {
		return "", 0, fmt.Errorf("fill %s: the daemon has no Options.StateTmpfsMiB tmpfs", d.State)
	}
	path = filepath.Join(d.State, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return path, 0, err
	}
	defer f.Close()
	// Large writes first, then pages: the last partial chunk fits too.
	for _, chunk := range []int{1 << 20, 4096, 1} {
		buf := make([]byte, chunk)
		for {
			n, err := f.Write(buf)
			size += int64(n)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				return path, size, fmt.Errorf("fill %s: %w", path, err)
			}
		}
	}
	return path, size, nil
}
