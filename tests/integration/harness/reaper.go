//go:build linux

package harness

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The daemon runs under its reaper (go/exitmon.RunUnderReaper): the pid the
// harness starts is the front, its only child the reaper ("es-reaper"), and
// containerd proper is the reaper's child whose environment carries
// EMBEDSHIM_REAPER_CHILD. With EMBEDSHIM_REAPER=off in Options.Env, the
// started pid is containerd itself. A reaper outlives its daemon while it
// has children (containers started by that daemon), so the harness keeps
// every reaper it has seen: their trees are the daemon's too.

const reaperComm = "es-reaper"

// childrenOf lists pid's children (/proc/<pid>/task/<pid>/children).
func childrenOf(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func commOf(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] == "Z"
}

// findTree returns the reaper and daemon under front (0 if not there, or
// not there yet); without a reaper the front is the daemon.
func findTree(front int) (reaper, daemon int) {
	for _, c := range childrenOf(front) {
		if commOf(c) == reaperComm {
			reaper = c
		}
	}
	if reaper == 0 {
		return 0, front
	}
	for _, c := range childrenOf(reaper) {
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", c))
		if bytes.Contains(env, []byte("\x00EMBEDSHIM_REAPER_CHILD=1\x00")) ||
			bytes.HasPrefix(env, []byte("EMBEDSHIM_REAPER_CHILD=1\x00")) {
			return reaper, c
		}
	}
	return reaper, 0
}

// tree returns (front, reaper, daemon) of the running instance, remembering
// the reaper; zeros when the daemon is not running.
func (d *Daemon) tree() (front, reaper, daemon int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil || d.cmd.Process == nil || d.isExited() {
		return 0, 0, 0
	}
	front = d.cmd.Process.Pid
	if d.daemonPid != 0 && !isZombie(d.daemonPid) && d.reaperPid != 0 {
		return front, d.reaperPid, d.daemonPid
	}
	reaper, daemon = findTree(front)
	if reaper != 0 {
		d.reaperPid = reaper
		if !d.reapers[reaper] {
			d.reapers[reaper] = true
		}
	}
	if reaper != 0 && daemon != 0 {
		d.daemonPid = daemon
	}
	return front, reaper, daemon
}

// FrontPid is the pid the harness started (the front of the reaper, or the
// daemon itself without one), 0 if it is not running.
func (d *Daemon) FrontPid() int { f, _, _ := d.tree(); return f }

// ReaperPid is the current instance's reaper, 0 if none (not running, or
// EMBEDSHIM_REAPER=off).
func (d *Daemon) ReaperPid() int { _, r, _ := d.tree(); return r }

// Reapers lists every reaper of this daemon seen so far, current or
// lingering (a reaper stays while it has children).
func (d *Daemon) Reapers() []int {
	d.tree()
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []int
	for r := range d.reapers {
		if commOf(r) == reaperComm { // gone (and its pid maybe reused): not ours
			out = append(out, r)
		}
	}
	return out
}

// Zombies lists the zombie children of the daemon, its front and every
// reaper seen: none may pile up (a few transient ones, reaped within
// milliseconds, can be seen; callers poll).
func (d *Daemon) Zombies() []Proc {
	f, _, dm := d.tree()
	parents := map[int]bool{}
	for _, r := range d.Reapers() {
		parents[r] = true
	}
	if f != 0 {
		parents[f] = true
	}
	if dm != 0 {
		parents[dm] = true
	}
	var out []Proc
	for _, p := range listProcs() {
		if p.State == "Z" && parents[p.PPid] {
			p.Why = "zombie child of daemon/reaper"
			out = append(out, p)
		}
	}
	return out
}
