package exitmon

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultPinDir(t *testing.T) {
	a, b := DefaultPinDir("/var/lib/containerd/x"), DefaultPinDir("/var/lib/containerd2/x")
	if a == b {
		t.Fatalf("two roots share pin dir %s", a)
	}
	if a != DefaultPinDir("/var/lib/containerd/x/") || a != DefaultPinDir("/var/lib/containerd/../containerd/x") {
		t.Fatal("one root, two pin dirs")
	}
	if filepath.Dir(a) != filepath.Join(HostBPFFS, "embedshim") {
		t.Fatalf("pin dir %s not in %s/embedshim", a, HostBPFFS)
	}
	wd, _ := os.Getwd()
	if DefaultPinDir("rel") != DefaultPinDir(filepath.Join(wd, "rel")) {
		t.Fatal("relative root not made absolute")
	}
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

// A plugin root with pins at the old default location (a bpffs mounted at
// <root>/bpf, as earlier versions left it) is taken over by a Monitor at the
// new default: records and registrations kept, the old location unmounted
// and removed, so the root is plain files and directories again.
func TestTakeOverOldDefault(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (bpf, bpffs)")
	}
	root := filepath.Join(t.TempDir(), "io.containerd.runtime.v1.embed")
	old, pinDir := OldDefaultPinDir(root), DefaultPinDir(root)
	t.Cleanup(func() {
		if err := RemovePins(root, ""); err != nil {
			t.Errorf("remove pins: %v", err)
		}
		if _, err := os.Stat(pinDir); !os.IsNotExist(err) {
			t.Errorf("pin dir %s left: %v", pinDir, err)
		}
	})

	before, err := Open(old, Options{})
	if err != nil {
		t.Fatal(err)
	}
	running, exited := startGated(t, "exit 3"), startGated(t, "exit 4")
	idRun, err := before.Register(running.cmd.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	idExit, err := before.Register(exited.cmd.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	before.Close()
	exited.release()
	stExit := exited.waitStatus(t)
	if len(mountsUnder(t, root)) == 0 {
		t.Fatal("old default: no bpffs mounted under the root")
	}

	m, err := Open(pinDir, Options{TakeOver: old})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if mnt := mountsUnder(t, root); len(mnt) != 0 {
		t.Fatalf("mounts left under the root: %v", mnt)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("old pin dir %s left: %v", old, err)
	}
	if st, err := os.Stat(pinDir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("pin dir %s: %v %v", pinDir, st.Mode(), err)
	}
	e, err := m.Lookup(exited.cmd.Process.Pid, idExit)
	if err != nil || e == nil || e.Status != stExit {
		t.Fatalf("exit recorded before the move: %+v %v (waitpid %#x)", e, err, stExit)
	}
	if e, err := m.Lookup(running.cmd.Process.Pid, idRun); e != nil || err != nil {
		t.Fatalf("running process: %+v %v", e, err)
	}
	running.release()
	got := next(t, m)
	if st := running.waitStatus(t); got.Pid != running.cmd.Process.Pid || got.Status != st {
		t.Fatalf("exit after the move %+v, waitpid %#x", got, st)
	}
	m.Forget(running.cmd.Process.Pid, idRun)
	m.Forget(exited.cmd.Process.Pid, idExit)
	if err := os.RemoveAll(filepath.Dir(root)); err != nil {
		t.Fatalf("rm -rf of the root: %v", err)
	}
}
