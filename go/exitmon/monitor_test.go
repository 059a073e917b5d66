package exitmon

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openTest opens a monitor on a private pin dir that is destroyed (with its
// bpffs mount) when the test ends, even on failure.
func openTest(t *testing.T, opts Options) (*Monitor, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (bpf, bpffs)")
	}
	dir := filepath.Join(t.TempDir(), "bpf")
	m, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		m.Close()
		if err := DestroyPins(dir); err != nil {
			t.Errorf("destroy pins: %v", err)
		}
	})
	return m, dir
}

// gated starts `sh -c script` blocked on its stdin until release is called,
// so it can be registered before it runs.
type gated struct {
	cmd *exec.Cmd
	w   *os.File
}

func startGated(t *testing.T, script string) *gated {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", "read x; "+script)
	cmd.Stdin = r
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	g := &gated{cmd: cmd, w: w}
	t.Cleanup(func() { g.w.Close(); g.cmd.Process.Kill(); g.cmd.Wait() })
	return g
}

func (g *gated) release() { g.w.Write([]byte("go\n")); g.w.Close() }

// waitStatus reaps the child: the real parent's view, our oracle.
func (g *gated) waitStatus(t *testing.T) uint32 {
	g.cmd.Wait()
	return uint32(g.cmd.ProcessState.Sys().(syscall.WaitStatus))
}

func next(t *testing.T, m *Monitor) Exit {
	t.Helper()
	select {
	case e := <-m.Exits():
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no exit delivered within 10s")
	}
	return Exit{}
}

func TestExitStatusConvention(t *testing.T) {
	for _, c := range []struct {
		ws   uint32
		want uint32
	}{
		{0, 0}, {3 << 8, 3}, {255 << 8, 255},
		{uint32(unix.SIGKILL), 137}, {uint32(unix.SIGTERM), 143},
		{uint32(unix.SIGSEGV) | 0x80, 139}, // core dumped: still 128+n
	} {
		if got := ExitStatus(c.ws); got != c.want {
			t.Errorf("ExitStatus(%#x) = %d, want %d", c.ws, got, c.want)
		}
	}
}

func TestExitsMatchWaitpid(t *testing.T) {
	m, _ := openTest(t, Options{})
	for _, c := range []struct {
		script string
		want   uint32
	}{
		{"exit 0", 0}, {"exit 3", 3}, {"exit 255", 255},
		{"kill -KILL $$", 137}, {"kill -TERM $$", 143},
	} {
		g := startGated(t, c.script)
		pid := g.cmd.Process.Pid
		ident, err := m.Register(pid, 0)
		if err != nil {
			t.Fatalf("%s: register: %v", c.script, err)
		}
		before := time.Now()
		g.release()
		e := next(t, m)
		ws := g.waitStatus(t)
		if e.Pid != pid || e.Ident != ident || e.Unrecorded {
			t.Fatalf("%s: got %+v for pid %d ident %d", c.script, e, pid, ident)
		}
		if e.Status != ws || ExitStatus(e.Status) != c.want {
			t.Errorf("%s: status %#x (%d), waitpid %#x, want %d", c.script, e.Status, ExitStatus(e.Status), ws, c.want)
		}
		if e.ExitedAt.Before(before.Add(-time.Second)) || e.ExitedAt.After(time.Now().Add(time.Second)) {
			t.Errorf("%s: exit time %v not around now", c.script, e.ExitedAt)
		}
		if err := m.Forget(pid, ident); err != nil {
			t.Fatal(err)
		}
	}
	if keys, _ := m.Registered(); len(keys) != 0 || m.ExitRecords() != 0 {
		t.Errorf("left behind: %d registrations, %d records", len(keys), m.ExitRecords())
	}
}

func TestRegisterErrors(t *testing.T) {
	m, _ := openTest(t, Options{Capacity: 2})
	if m.Capacity() != 2 {
		t.Fatalf("capacity %d", m.Capacity())
	}
	// A reaped process.
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Register(cmd.Process.Pid, 0); !errors.Is(err, ErrExited) {
		t.Errorf("reaped process: %v, want ErrExited", err)
	}
	a, b, c := startGated(t, "exit 1"), startGated(t, "exit 2"), startGated(t, "exit 3")
	ia, err := m.Register(a.cmd.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Register(b.cmd.Process.Pid, ia); !errors.Is(err, ErrNotExpected) {
		t.Errorf("wrong identity: %v, want ErrNotExpected", err)
	}
	if _, err := m.Register(b.cmd.Process.Pid, 0); err != nil {
		t.Fatal(err)
	}
	_, err = m.Register(c.cmd.Process.Pid, 0)
	if !errors.Is(err, ErrCapacity) || !strings.Contains(err.Error(), "tracking capacity 2 reached") {
		t.Errorf("third registration: %v, want the capacity error", err)
	}
	for _, g := range []*gated{a, b} {
		g.release()
	}
	got := map[int]uint32{}
	for i := 0; i < 2; i++ {
		e := next(t, m)
		got[e.Pid] = ExitStatus(e.Status)
		m.Forget(e.Pid, e.Ident)
	}
	if got[a.cmd.Process.Pid] != 1 || got[b.cmd.Process.Pid] != 2 {
		t.Errorf("exits %v", got)
	}
}

// A restart: close the monitor, let registered processes exit, reopen and
// find every status; those still running are polled again.
func TestRestartKeepsRecords(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	m, dir := openTest(t, Options{})
	gs := []*gated{startGated(t, "exit 7"), startGated(t, "kill -KILL $$"), startGated(t, "exit 9")}
	idents := make([]uint64, len(gs))
	for i, g := range gs {
		var err error
		if idents[i], err = m.Register(g.cmd.Process.Pid, 0); err != nil {
			t.Fatal(err)
		}
	}
	m.Close()
	gs[0].release()
	gs[1].release()
	ws0, ws1 := gs[0].waitStatus(t), gs[1].waitStatus(t)

	m2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	for i, want := range []uint32{ws0, ws1} {
		e, err := m2.Lookup(gs[i].cmd.Process.Pid, idents[i])
		if err != nil || e == nil || e.Status != want {
			t.Fatalf("lookup %d: %+v %v, want status %#x", i, e, err, want)
		}
	}
	if e, err := m2.Lookup(gs[2].cmd.Process.Pid, idents[2]); e != nil || err != nil {
		t.Fatalf("running process: %+v %v", e, err)
	}
	gs[2].release()
	if e := next(t, m2); e.Pid != gs[2].cmd.Process.Pid || ExitStatus(e.Status) != 9 {
		t.Fatalf("re-polled exit: %+v", e)
	}
	for i, g := range gs {
		m2.Forget(g.cmd.Process.Pid, idents[i])
	}
	if keys, _ := m2.Registered(); len(keys) != 0 {
		t.Errorf("registrations left: %v", keys)
	}
	m2.Close()
	m.Close()
	time.Sleep(10 * time.Millisecond)
	if n := runtime.NumGoroutine(); n > goroutines {
		t.Errorf("goroutines: %d before, %d after", goroutines, n)
	}
}

// A reopen with another capacity applies it and keeps every registration
// and record; one below the processes tracked is refused and says so; 0
// keeps the pins' capacity. (tests/c/test_resize.c covers interrupted
// resizes.)
func TestReopenChangesCapacity(t *testing.T) {
	m, dir := openTest(t, Options{Capacity: 8})
	gs := []*gated{startGated(t, "exit 3"), startGated(t, "exit 4"), startGated(t, "exit 5")}
	idents := make([]uint64, len(gs))
	for i, g := range gs {
		var err error
		if idents[i], err = m.Register(g.cmd.Process.Pid, 0); err != nil {
			t.Fatal(err)
		}
	}
	m.Close()
	gs[0].release()
	ws0 := gs[0].waitStatus(t)

	for _, c := range []struct{ asked, want, refused uint32 }{{4, 4, 0}, {2, 4, 2}, {0, 4, 0}, {16, 16, 0}} {
		m, err := Open(dir, Options{Capacity: c.asked})
		if err != nil {
			t.Fatalf("reopen with %d: %v", c.asked, err)
		}
		asked, tracked := m.RefusedCapacity()
		if m.Capacity() != c.want || asked != c.refused || (asked != 0 && tracked != 3) {
			t.Errorf("reopen with %d: capacity %d, refused %d (tracked %d); want %d, refused %d (3)",
				c.asked, m.Capacity(), asked, tracked, c.want, c.refused)
		}
		if keys, err := m.Registered(); err != nil || len(keys) != 3 || m.ExitRecords() != 1 {
			t.Errorf("reopen with %d: registrations %v %v, records %d; want 3 and 1", c.asked, keys, err, m.ExitRecords())
		}
		if e, err := m.Lookup(gs[0].cmd.Process.Pid, idents[0]); err != nil || e == nil || e.Status != ws0 {
			t.Errorf("reopen with %d: record %+v %v, want status %#x", c.asked, e, err, ws0)
		}
		m.Close()
	}
	m, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i, g := range gs {
		m.Forget(g.cmd.Process.Pid, idents[i])
	}
}

func TestOpenErrorNamesCause(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	_, err := Open(file, Options{})
	if err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("open on a regular file: %v", err)
	}
}

// detachCmd starts `sh -c script` detached, like runc exec --detach: the
// launcher writes the pid and exits at once, leaving the process behind
// without reaping it (a shell may reap its background jobs, so perl with
// POSIX::_exit stands in for runc here).
func detachCmd(t *testing.T, pidFile, script string) *exec.Cmd {
	return exec.Command("/usr/bin/perl", "-MPOSIX", "-e", `$p = fork(); if ($p == 0) { exec("/bin/sh", "-c", "`+script+`") } open(F, ">`+pidFile+`"); print F $p; close(F); POSIX::_exit(0);`)
}

// Instant exits of detached processes, the exec race: every status must be
// right, none lost, 100 times in a row (the runtime's tests do 1 000 real
// `runc exec`s).
func TestRunDetachedInstantExits(t *testing.T) {
	m, _ := openTest(t, Options{})
	pidFile := filepath.Join(t.TempDir(), "pid")
	for i := 0; i < 100; i++ {
		want := uint32(i % 2) // false, true, false, ...
		script := "exit 0"
		if want == 1 {
			script = "exit 1"
		}
		pid, ident, err := m.RunDetached(detachCmd(t, pidFile, script), pidFile)
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		e := next(t, m)
		if e.Pid != pid || e.Ident != ident || e.Unrecorded || ExitStatus(e.Status) != want {
			t.Fatalf("run %d: %+v, want pid %d status %d", i, e, pid, want)
		}
		m.Forget(pid, ident)
	}
	if keys, _ := m.Registered(); len(keys) != 0 || m.ExitRecords() != 0 {
		t.Errorf("left behind: %d registrations, %d records", len(keys), m.ExitRecords())
	}
}

func TestRunDetachedFailureIsReported(t *testing.T) {
	m, _ := openTest(t, Options{})
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command("/bin/sh", "-c", "echo nope >&2; exit 4")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	_, _, err := m.RunDetached(cmd, pidFile)
	if err == nil || !strings.Contains(err.Error(), "exit status 4") || !strings.Contains(stderr.String(), "nope") {
		t.Fatalf("err %v, stderr %q", err, stderr.String())
	}
}

func countFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// Track registers the process behind the caller's pidfd: the identity is
// Identity's, the exit comes once, the caller's pidfd stays open, and no
// error path leaves an fd or a registration behind.
func TestTrack(t *testing.T) {
	m, _ := openTest(t, Options{})
	g := startGated(t, "exit 6")
	pid := g.cmd.Process.Pid
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	want, err := Identity(pid)
	if err != nil {
		t.Fatal(err)
	}

	fails := func(name string, pidfd, pid int, target error) {
		t.Helper()
		before := countFds(t)
		_, err := m.Track(pidfd, pid)
		if !errors.Is(err, target) {
			t.Errorf("%s: err %v, want %v", name, err, target)
		}
		if after := countFds(t); after != before {
			t.Errorf("%s: fds %d -> %d", name, before, after)
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fails("not a pidfd", int(r.Fd()), pid, unix.EBADF)
	r.Close()
	w.Close()
	fails("another pid", fd, os.Getpid(), unix.EINVAL)
	if keys, _ := m.Registered(); len(keys) != 0 {
		t.Fatalf("registrations left by failed Track: %v", keys)
	}

	got, err := m.Track(fd, pid)
	if err != nil || got != want {
		t.Fatalf("Track: %d, %v; want identity %d", got, err, want)
	}
	fails("twice", fd, pid, unix.EEXIST)
	if err := unix.PidfdSendSignal(fd, 0, nil, 0); err != nil {
		t.Fatalf("the caller's pidfd no longer works: %v", err)
	}
	g.release()
	e := next(t, m)
	if st := g.waitStatus(t); e.Pid != pid || e.Ident != want || e.Status != st {
		t.Fatalf("exit %+v, waitpid status %#x", e, st)
	}
	if err := m.Forget(pid, want); err != nil {
		t.Fatal(err)
	}
	// Reaped now: the pidfd names no process.
	fails("reaped", fd, pid, ErrExited)
}

// FindRecent gives the status of a process reaped before it was registered,
// by pid, once, and never one of an exit before the given time.
func TestFindRecent(t *testing.T) {
	m, _ := openTest(t, Options{})
	since := MonoNow()
	cmd := exec.Command("/bin/sh", "-c", "exit 7")
	if err := cmd.Run(); err == nil {
		t.Fatal("exit 7 reported success")
	}
	pid := cmd.Process.Pid
	if e, err := m.FindRecent(pid, MonoNow()); err != nil || e != nil {
		t.Fatalf("exit before since: %v, %v", e, err)
	}
	e, err := m.FindRecent(pid, since)
	if err != nil || e == nil {
		t.Fatalf("FindRecent(%d): %v, %v", pid, e, err)
	}
	if e.Pid != pid || ExitStatus(e.Status) != 7 || e.Unrecorded {
		t.Errorf("got %+v, want pid %d status 7", e, pid)
	}
	if d := time.Since(e.ExitedAt); d < 0 || d > time.Minute {
		t.Errorf("exit time %v off by %v", e.ExitedAt, d)
	}
	if e, err := m.FindRecent(pid, since); err != nil || e != nil {
		t.Errorf("found twice: %v, %v", e, err)
	}
	if _, err := m.FindRecent(0, since); err == nil {
		t.Error("pid 0 accepted")
	}
}

// Pins removed by hand are put back by Repin, and a closed Monitor refuses
// it instead of touching freed memory.
func TestRepin(t *testing.T) {
	m, dir := openTest(t, Options{})
	vdirs, _ := filepath.Glob(filepath.Join(dir, "v*"))
	if len(vdirs) != 1 {
		t.Fatalf("pin dirs: %v", vdirs)
	}
	vdir := vdirs[0]
	if got, err := m.Repin(); got != "" || err != nil {
		t.Errorf("repin of intact pins: %q %v", got, err)
	}
	for _, name := range []string{"exits", "link"} {
		if err := os.Remove(filepath.Join(vdir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := m.Repin(); got != "exits (removed), link (removed)" || err != nil {
		t.Errorf("repin: %q %v", got, err)
	}
	for _, name := range []string{"exits", "link"} {
		if _, err := os.Stat(filepath.Join(vdir, name)); err != nil {
			t.Errorf("pin %s not back: %v", name, err)
		}
	}
	m.Close()
	if _, err := m.Repin(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("repin after close: %v", err)
	}
}
