//go:build linux

package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"golang.org/x/sys/unix"
)

// cleanup runs from t.Cleanup:
//  1. on failure, print the daemon log tail (path kept in the message);
//  2. if the daemon runs: in every namespace, kill+delete all tasks (and
//     their execs), delete all containers with their snapshots;
//  3. stop the daemon (SIGTERM, then SIGKILL);
//  4. SIGKILL any remaining process of this daemon (see Processes), wait
//     for its reapers to exit (they do once their children are reaped);
//  5. lazily unmount everything mounted under d.Dir (deepest first: the
//     rootfs mounts, then an Options.StateTmpfsMiB tmpfs at d.State);
//  6. remove cgroups /<ns>/... and /run/containerd/runc/<ns> of owned
//     namespaces;
//  7. remove d.Dir;
//  8. without a configured pin_dir, remove the embed plugin's pins at their
//     default location (outside d.Dir, under /sys/fs/bpf) with the daemon's
//     own `embedshim remove-pins`.
func (d *Daemon) cleanup() {
	t := d.t
	if t.Failed() {
		t.Logf("daemon log %s (last 300 lines):\n%s", d.LogPath, d.LogTail(300))
	}
	if c := d.Client(); c != nil && d.Running() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := deleteAll(ctx, c); err != nil {
			t.Logf("harness cleanup: delete containers: %v", err)
		}
		cancel()
	}
	if err := d.Stop(); err != nil {
		t.Logf("harness cleanup: stop daemon: %v", err)
	}
	d.killProcesses()
	d.awaitReapers()
	if err := unmountUnder(d.Dir); err != nil {
		t.Logf("harness cleanup: %v", err)
	}
	for _, ns := range d.ownedNamespaces() {
		removeCgroups(ns)
		_ = os.RemoveAll(RuncV2Root(ns))
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		// a mount we could not detach; try once more after unmounting
		_ = unmountUnder(d.Dir)
		if err := os.RemoveAll(d.Dir); err != nil {
			t.Logf("harness cleanup: remove %s: %v", d.Dir, err)
		}
	}
	if d.PinDir == "" && d.HasEmbed() {
		if out, err := d.RemovePins(); err != nil {
			t.Errorf("harness cleanup: %s embedshim remove-pins: %v: %s", d.Binary, err, out)
		}
	}
}

// RemovePins runs `<binary> embedshim remove-pins` for this daemon's root
// (and pin_dir, if configured): the uninstall of its BPF pins.
func (d *Daemon) RemovePins() (string, error) {
	args := []string{"embedshim", "remove-pins", "--root", d.Root}
	if d.PinDir != "" {
		args = append(args, "--pin-dir", d.PinDir)
	}
	out, err := exec.Command(d.Binary, args...).CombinedOutput()
	return string(out), err
}

func deleteAll(ctx context.Context, c *containerd.Client) error {
	nss, err := c.NamespaceService().List(ctx)
	if err != nil {
		return err
	}
	var errs []string
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		ctrs, err := c.Containers(nctx)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		for _, ctr := range ctrs {
			if task, err := ctr.Task(nctx, nil); err == nil {
				if st, err := task.Status(nctx); err == nil && st.Status != containerd.Stopped {
					if ch, err := task.Wait(nctx); err == nil {
						_ = task.Kill(nctx, syscall.SIGKILL, containerd.WithKillAll)
						select {
						case <-ch:
						case <-time.After(10 * time.Second):
						}
					}
				}
				if _, err := task.Delete(nctx, containerd.WithProcessKill); err != nil {
					errs = append(errs, fmt.Sprintf("%s/%s: task delete: %v", ns, ctr.ID(), err))
				}
			}
			if err := ctr.Delete(nctx, containerd.WithSnapshotCleanup); err != nil {
				errs = append(errs, fmt.Sprintf("%s/%s: container delete: %v", ns, ctr.ID(), err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// Proc is one process found by Processes.
type Proc struct {
	Pid     int
	PPid    int
	State   string // from /proc/<pid>/stat: R, S, Z, ...
	Comm    string
	Cmdline string
	Why     string // which rule matched
}

func (p Proc) String() string {
	return fmt.Sprintf("pid %d ppid %d %s [%s] %q (%s)", p.Pid, p.PPid, p.State, p.Comm, p.Cmdline, p.Why)
}

// Processes lists the processes that belong to this daemon, other than the
// daemon itself, its front and its reapers. A process belongs if any of
// these holds:
//   - it descends from the daemon (runc, the exec helper, ...) or from one
//     of its reapers (orphans: container inits, execs, runc.v2 shims);
//   - its command line mentions d.Dir (runc.v2 shims run with
//     -address <dir>/containerd.sock; runc with --log <state>/...);
//   - its root (/proc/<pid>/root) is under d.Dir (container processes: the
//     rootfs is mounted under state/);
//   - one of its cgroups is /<ns> or below, for an owned namespace (the
//     client's default spec puts containers in /<ns>/<id>).
//
// Zombies (state Z) are listed too; callers decide (see Zombies for the
// ones that count).
func (d *Daemon) Processes() []Proc {
	self := os.Getpid()
	front, _, dpid := d.tree()
	// The daemon's own tree: containerd and its reapers (current or
	// lingering), whose children are the orphans of containerd's tree
	// (container inits, exec processes, runc.v2 shims).
	roots := map[int]bool{}
	if dpid != 0 {
		roots[dpid] = true
	}
	for _, r := range d.Reapers() {
		roots[r] = true
	}
	owned := d.ownedNamespaces()
	all := listProcs()
	byPid := map[int]*Proc{}
	for i := range all {
		byPid[all[i].Pid] = &all[i]
	}
	descends := func(p *Proc) bool {
		for i := 0; i < 64 && p != nil; i++ {
			if roots[p.PPid] {
				return true
			}
			if p.PPid <= 1 {
				return false
			}
			p = byPid[p.PPid]
		}
		return false
	}
	var out []Proc
	for i := range all {
		p := &all[i]
		if p.Pid == self || p.Pid == front || roots[p.Pid] {
			continue
		}
		switch {
		case descends(p):
			p.Why = "child of daemon"
		case d.Dir != "" && strings.Contains(p.Cmdline, d.Dir+"/"):
			p.Why = "cmdline mentions " + d.Dir
		case rootUnder(p.Pid, d.Dir):
			p.Why = "root under " + d.Dir
		default:
			if cg := cgroupIn(p.Pid, owned); cg != "" {
				p.Why = "cgroup " + cg
			} else {
				continue
			}
		}
		out = append(out, *p)
	}
	return out
}

func listProcs() []Proc {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(stat)
		lp, rp := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if lp < 0 || rp < lp {
			continue
		}
		f := strings.Fields(s[rp+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, Proc{
			Pid: pid, PPid: ppid, State: f[0], Comm: s[lp+1 : rp],
			Cmdline: strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " ")),
		})
	}
	return out
}

func rootUnder(pid int, dir string) bool {
	if dir == "" {
		return false
	}
	r, err := os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
	return err == nil && strings.HasPrefix(r, dir+"/")
}

func cgroupIn(pid int, nss []string) string {
	if len(nss) == 0 {
		return ""
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, ns := range nss {
			if parts[2] == "/"+ns || strings.HasPrefix(parts[2], "/"+ns+"/") {
				return parts[2]
			}
		}
	}
	return ""
}

// killProcesses SIGKILLs the daemon's remaining processes (never the
// daemon's own pid, which Stop handled, nor this test process) and waits up
// to 5s for them to be gone or zombies.
func (d *Daemon) killProcesses() {
	deadline := time.Now().Add(5 * time.Second)
	for {
		live := 0
		for _, p := range d.Processes() {
			if p.State == "Z" {
				continue
			}
			live++
			_ = syscall.Kill(p.Pid, syscall.SIGKILL)
		}
		if live == 0 || time.Now().After(deadline) {
			if live != 0 {
				d.t.Logf("harness cleanup: %d processes still alive after SIGKILL", live)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// MountsUnder returns the mount points (from /proc/self/mountinfo) at or
// below dir, deepest first.
func MountsUnder(dir string) []string {
	if dir == "" {
		return nil
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unmountUnder(dir string) error {
	for i := 0; i < 10; i++ {
		mps := MountsUnder(dir)
		if len(mps) == 0 {
			return nil
		}
		for _, mp := range mps {
			_ = unix.Unmount(mp, unix.MNT_DETACH)
		}
	}
	if mps := MountsUnder(dir); len(mps) > 0 {
		return fmt.Errorf("still mounted under %s: %v", dir, mps)
	}
	return nil
}

// cgroupRoots are the cgroup hierarchies' mount points (v1 controllers and/or
// the v2 unified one).
func cgroupRoots() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		i := strings.Index(l, " - ")
		if i < 0 {
			continue
		}
		f, post := strings.Fields(l[:i]), strings.Fields(l[i+3:])
		if len(f) >= 5 && len(post) >= 1 && (post[0] == "cgroup" || post[0] == "cgroup2") {
			out = append(out, unescapeMount(f[4]))
		}
	}
	return out
}

// CgroupsOf lists the cgroup dirs named /<ns> (and below) in all hierarchies.
func CgroupsOf(ns string) []string {
	var out []string
	for _, root := range cgroupRoots() {
		base := filepath.Join(root, ns)
		if _, err := os.Stat(base); err != nil {
			continue
		}
		_ = filepath.WalkDir(base, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

func removeCgroups(ns string) {
	if ns == "" || strings.Contains(ns, "/") {
		return
	}
	dirs := CgroupsOf(ns)
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, p := range dirs {
		_ = unix.Rmdir(p)
	}
}

// awaitReapers waits up to 5s for every reaper of this daemon to exit (once
// the processes it reaps are gone, it does), then SIGKILLs the rest.
func (d *Daemon) awaitReapers() {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var live []int
		for _, r := range d.Reapers() {
			if !isZombie(r) {
				live = append(live, r)
			}
		}
		if len(live) == 0 {
			return
		}
		if time.Now().After(deadline) {
			d.t.Logf("harness cleanup: reapers %v still running after 5s (children %v), killed", live, childrenOf(live[0]))
			for _, r := range live {
				_ = syscall.Kill(r, syscall.SIGKILL)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
