//go:build linux

package core

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// maxRootfsStack bounds the umount(2) loop: mount.All stacks each rootfs
// component at the same target, and no snapshotter makes more than a few.
const maxRootfsStack = 32

// unmountRootfsRetries is how often the adapter's recursive unmount is tried
// when the direct unmount could not clear the target.
const unmountRootfsRetries = 3

// unmountRootfs unmounts a task's rootfs so that nothing is mounted at or
// below target afterwards.
//
// The rootfs is nearly always the stack of mounts mount.All made at target
// and nothing below it, so that stack is unmounted with umount(2) until
// target is no mount point (EINVAL), without reading mountinfo. The adapter's
// recursive unmount reads /proc/thread-self/mountinfo, and with about a
// thousand mounts changing under it that read can be torn ("not enough
// fields", seen in the soak with 1000 background containers): the rootfs
// then stayed mounted and its bundle behind. Only what the direct unmount
// cannot clear (EBUSY: a mount below target) goes through the recursive
// unmount, retried. Last, a lazy detach, so that nothing stays mounted where
// the bundle's removal would walk into it.
func unmountRootfs(m Mounter, target string) error {
	err := unmountStack(target, 0)
	if err == nil {
		return nil
	}
	var rerr error
	for i := 0; i < unmountRootfsRetries; i++ {
		if rerr = m.Unmount(target); rerr == nil {
			if err = unmountStack(target, 0); err == nil {
				return nil
			}
		}
	}
	if derr := unmountStack(target, unix.MNT_DETACH); derr != nil {
		return fmt.Errorf("unmount rootfs %s: %w (recursive unmount: %v)", target, derr, rerr)
	}
	return nil
}

// unmountStack unmounts target until it is no mount point. It returns nil
// once umount(2) says EINVAL (target is not a mount point) or ENOENT
// (target is gone).
func unmountStack(target string, flags int) error {
	for i := 0; i < maxRootfsStack; i++ {
		err := unix.Unmount(target, flags)
		switch {
		case err == nil, errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		default:
			return err
		}
	}
	return fmt.Errorf("%s still mounted after %d unmounts", target, maxRootfsStack)
}

// mountedOver says whether path is the root of a mount of another
// filesystem than its parent directory's, which is how a rootfs still
// mounted shows. The bundle removal refuses to walk into it.
func mountedOver(path string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(path, &st) != nil || unix.Lstat(path+"/..", &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}
