//go:build linux

package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Snapshot is what LeakCheck compares: everything a daemon holds or leaves
// behind that a finished test should have released.
type Snapshot struct {
	// FDs are the daemon's open fds (/proc/<pid>/fd) → readlink target
	// (sockets, pipes and anon inodes as "socket:[ino]", "pipe:[ino]",
	// "anon_inode:[pidfd]", ...). Empty if the daemon is not running.
	FDs map[string]string
	// DaemonPid is the pid the FDs are of (0 if the daemon is not
	// running).
	DaemonPid int
	// Mounts are mount points under d.Dir (the embed plugin's private
	// bpffs at PinDir included: it is expected to stay and so appears in
	// both snapshots).
	Mounts []string
	// RuntimeDirs are entries left by runtimes for owned namespaces:
	//   <root|state>/io.containerd.runtime.*/<ns>/<id>
	//   /run/containerd/runc/<ns>/<id>                (runc.v2's runc --root)
	//   <state>/io.containerd.runtime.v1.embed/.runc/<ns>/<id> (embed's)
	RuntimeDirs []string
	// Processes are the daemon's non-zombie processes (see Processes).
	Processes []string
	// Zombies are zombie children of the daemon, its front or its
	// reapers (see Zombies): with the reaper, none stays.
	Zombies []string
	// Cgroups are leaf cgroups under /<ns> for owned namespaces (the
	// /<ns> parents themselves are left by runc and removed at clean-up;
	// only dirs below them count).
	Cgroups []string
	// Probes holds the results of Options.LeakProbes by name.
	Probes map[string][]string
	// ProbeErrors holds the errors of Options.LeakProbes by name. A probe
	// that cannot look sees no leak: Leaks reports every error, in either
	// snapshot, as a failure of its own.
	ProbeErrors map[string]string
}

// Snapshot takes a Snapshot of the daemon now.
func (d *Daemon) Snapshot() Snapshot {
	s := Snapshot{FDs: map[string]string{}, Probes: map[string][]string{}, ProbeErrors: map[string]string{}}
	if pid := d.Pid(); pid != 0 {
		s.DaemonPid = pid
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			target, err := os.Readlink(filepath.Join(dir, e.Name()))
			if err == nil {
				s.FDs[e.Name()] = target
			}
		}
	}
	s.Mounts = MountsUnder(d.Dir)
	sort.Strings(s.Mounts)
	for _, ns := range d.ownedNamespaces() {
		for _, base := range []string{d.Root, d.State} {
			rts, _ := filepath.Glob(filepath.Join(base, "io.containerd.runtime.*", ns, "*"))
			s.RuntimeDirs = append(s.RuntimeDirs, rts...)
		}
		for _, root := range []string{RuncV2Root(ns), d.EmbedRuncRoot(ns)} {
			rr, _ := filepath.Glob(filepath.Join(root, "*"))
			s.RuntimeDirs = append(s.RuntimeDirs, rr...)
		}
		for _, cg := range CgroupsOf(ns) {
			if filepath.Base(cg) != ns {
				s.Cgroups = append(s.Cgroups, cg)
			}
		}
	}
	sort.Strings(s.RuntimeDirs)
	sort.Strings(s.Cgroups)
	for _, p := range d.Processes() {
		if p.State != "Z" {
			s.Processes = append(s.Processes, p.String())
		}
	}
	for _, p := range d.Zombies() {
		s.Zombies = append(s.Zombies, p.String())
	}
	for name, probe := range d.opts.LeakProbes {
		items, err := probe(d)
		if err != nil {
			s.ProbeErrors[name] = err.Error()
		}
		sort.Strings(items)
		s.Probes[name] = items
	}
	return s
}

// Leaks returns what is in after but not in before, one line per item
// (empty: no leak). The daemon's fds compare by identity: for each kind of
// target (a path, "socket", "pipe", "anon_inode:[pidfd]", ...) there may be
// no more after than before, so a leaked pidfd shows even when a socket was
// closed meanwhile; the same across a restart (see newFDs).
func Leaks(before, after Snapshot) []string {
	var out []string
	if added := newFDs(before, after); len(added) > 0 {
		out = append(out, fmt.Sprintf("daemon fds: %d before, %d after; new: %s",
			len(before.FDs), len(after.FDs), strings.Join(added, ", ")))
	}
	diff := func(what string, b, a []string) {
		seen := map[string]bool{}
		for _, x := range b {
			seen[x] = true
		}
		for _, x := range a {
			if !seen[x] {
				out = append(out, what+": "+x)
			}
		}
	}
	diff("mount", before.Mounts, after.Mounts)
	diff("runtime dir", before.RuntimeDirs, after.RuntimeDirs)
	diff("process", before.Processes, after.Processes)
	diff("zombie", before.Zombies, after.Zombies)
	diff("cgroup", before.Cgroups, after.Cgroups)
	for name, items := range after.Probes {
		diff(name, before.Probes[name], items)
	}
	for _, snap := range []struct {
		when string
		errs map[string]string
	}{{"before", before.ProbeErrors}, {"after", after.ProbeErrors}} {
		names := make([]string, 0, len(snap.errs))
		for name := range snap.errs {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			out = append(out, fmt.Sprintf("%s probe failed (%s): %s", name, snap.when, snap.errs[name]))
		}
	}
	return out
}

// newFDs lists the fds of after ("fd -> target") that before has no fd of
// the same kind for. Across a restart (another daemon pid) the same holds:
// the new daemon, once its tasks are gone, may hold no kind of fd, and no
// more of a kind, than the old one did at the baseline (a fresh baseline
// per restart, with no count slack).
func newFDs(before, after Snapshot) []string {
	if len(before.FDs) == 0 {
		return nil
	}
	old := map[string]int{}
	for _, t := range before.FDs {
		old[kind(t)]++
	}
	fds := make([]string, 0, len(after.FDs))
	for fd := range after.FDs {
		fds = append(fds, fd)
	}
	sort.Strings(fds)
	var added []string
	for _, fd := range fds {
		t := after.FDs[fd]
		if old[kind(t)] > 0 {
			old[kind(t)]--
			continue
		}
		added = append(added, fd+" -> "+t)
	}
	return added
}

// kind groups fd targets so that a socket closed and another opened do not
// count as a leak: "socket", "pipe", "anon_inode:[pidfd]" (anon inodes by
// type), or the path.
func kind(target string) string {
	if strings.HasPrefix(target, "anon_inode:") {
		return target
	}
	if i := strings.Index(target, ":["); i > 0 {
		return target[:i]
	}
	return target
}

// LeakCheck snapshots the daemon now and returns a function that, called at
// the end of the test (defer it, before the harness clean-up runs), waits up
// to 10s for the daemon to release what it acquired since, then reports
// every leak with t.Errorf: new daemon fds, new mounts under the temp dir,
// runtime bundle/state dirs and runc state of owned namespaces, live
// processes of the daemon, zombies left to the daemon or its reapers,
// container cgroups, and Options.LeakProbes items.
//
// Zombie children of the daemon, its front or its reapers count as leaks
// (other zombies are the host's init's to reap). Fds compare by identity
// (see Leaks), also across restarts of the daemon.
func (d *Daemon) LeakCheck(t testing.TB) func() {
	t.Helper()
	before := d.Snapshot()
	for name, err := range before.ProbeErrors {
		t.Errorf("leak check: %s probe failed: %s", name, err)
	}
	return func() {
		t.Helper()
		var leaks []string
		deadline := time.Now().Add(10 * time.Second)
		for {
			leaks = Leaks(before, d.Snapshot())
			if len(leaks) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, l := range leaks {
			t.Errorf("leak: %s", l)
		}
	}
}
