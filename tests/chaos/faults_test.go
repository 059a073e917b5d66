//go:build linux

package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// Fault kinds.
const (
	faultDaemonKill = "daemon-sigkill" // SIGKILL containerd, start it again
	faultDaemonTerm = "daemon-sigterm" // SIGTERM (orderly stop), start again
	faultKillProc   = "kill-proc"      // SIGKILL a container process from outside
	faultKillRunc   = "kill-runc"      // SIGKILL a runc the daemon (or a shim) runs
	faultRuncFail   = "runc-fail"      // the next runc call fails (wrapper)
	faultRmBundle   = "rm-bundle-file" // remove a file of a live task's bundle
	// restart with embed's capacity just above what it tracks, then back
	faultCapacityShrink = "capacity-shrink"
)

var allFaults = []string{faultDaemonKill, faultDaemonTerm, faultKillProc, faultKillRunc, faultRuncFail, faultRmBundle, faultCapacityShrink, faultStateFull}

// bundleFiles a rm-bundle-file fault picks from: the spec, the init's pid
// file and runc's log, in both runtimes' bundles (embed's own state.json is
// left alone: without it no runtime could know the task).
var bundleFiles = []string{"config.json", "init.pid", "log.json"}

func knownFault(f string) bool {
	for _, k := range allFaults {
		if k == f {
			return true
		}
	}
	return false
}

// failOnce is the runc wrapper every container of the run uses: while the
// arm file exists, the first call to remove it fails (exactly one call per
// arming, whoever makes it); every other call is runc's (exec'd, so a
// kill-runc fault finds a process named runc).
const failOnce = `#!/bin/sh
if [ -e %[2]q ] && rm %[2]q 2>/dev/null; then
	echo "chaos: injected runc failure ($*)" >&2
	exit 1
fi
exec %[1]q "$@"
`

func (r *run) writeWrapper() {
	runc, err := exec.LookPath("runc")
	if err != nil {
		r.t.Fatalf("runc: %v", err)
	}
	dir := r.t.TempDir()
	r.wrapper = filepath.Join(dir, "runc-chaos")
	r.failArm = filepath.Join(dir, "fail-next")
	if err := os.WriteFile(r.wrapper, []byte(fmt.Sprintf(failOnce, runc, r.failArm)), 0o755); err != nil {
		r.t.Fatal(err)
	}
}

// faultLoop injects a fault at random moments until ctx ends.
func (r *run) faultLoop(ctx context.Context) {
	rng := rand.New(rand.NewSource(r.k.seed ^ 0x5eed))
	for {
		span := r.k.faultMax - r.k.faultMin
		wait := r.k.faultMin
		if span > 0 {
			wait += time.Duration(rng.Int63n(int64(span)))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		kind := r.k.faults[rng.Intn(len(r.k.faults))]
		r.inject(kind, rng)
	}
}

func (r *run) inject(kind string, rng *rand.Rand) {
	r.m.fault(kind)
	r.mu.Lock()
	r.faultCount[kind]++
	n := r.faultCount[kind]
	r.mu.Unlock()
	switch kind {
	case faultDaemonKill, faultDaemonTerm:
		r.restartDaemon(kind, n, kind == faultDaemonKill, rng, nil)
	case faultCapacityShrink:
		r.capacityShrink(n, rng)
	case faultKillProc:
		r.killProc(rng)
	case faultKillRunc:
		r.killRunc(rng)
	case faultRmBundle:
		r.rmBundleFile(rng)
	case faultStateFull:
		r.stateFull(rng, n)
	case faultRuncFail:
		r.logf("fault %s #%d: the next runc call fails", kind, n)
		if err := os.WriteFile(r.failArm, nil, 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
}

// restartDaemon stops the daemon (kill: SIGKILL, else SIGTERM), leaves it
// down 0-2 s and starts it again, with change applied to its options first
// if not nil (the config rewritten), then runs the after-restart checks.
func (r *run) restartDaemon(kind string, n int, kill bool, rng *rand.Rand, change func(*harness.Options)) {
	down := time.Duration(rng.Intn(2000)) * time.Millisecond
	sig := "SIGTERM"
	if kill {
		sig = "SIGKILL"
	}
	r.logf("fault %s #%d: stopping the daemon (pid %d, %s), %v down", kind, n, r.d.Pid(), sig, down)
	var err error
	stopAt := time.Now()
	if kill {
		err = r.d.Kill()
	} else {
		err = r.d.Stop()
	}
	if err != nil {
		r.problem("", "%s: stop: %v", kind, err)
	}
	time.Sleep(down)
	if change == nil {
		err = r.d.Restart(syscall.SIGKILL)
	} else {
		// Stopped already: only the config changes.
		err = r.d.Reconfigure(syscall.SIGKILL, change)
	}
	if err != nil {
		r.t.Fatalf("%s: restart: %v", kind, err)
	}
	r.m.restarted(window{kind, stopAt, time.Now(), kill})
	r.firstList(kind)
	r.checkConsistency(kind)
}

// firstList times the first Tasks.List after a restart (the daemon must
// answer at once: measured and reported, not asserted).
func (r *run) firstList(kind string) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	defer cancel()
	_, err := r.d.Client().TaskService().List(ctx, &tasksapi.ListTasksRequest{})
	rtt := time.Since(start)
	if err != nil {
		r.problem("", "%s: first Tasks.List after restart: %v", kind, err)
		return
	}
	r.mu.Lock()
	r.restartRTT = append(r.restartRTT, rtt)
	r.mu.Unlock()
	r.logf("daemon up (pid %d), first Tasks.List in %v", r.d.Pid(), rtt.Round(time.Millisecond))
}

// killProc SIGKILLs a running container process from outside, checking
// first by its cgroup that the pid is still that container's.
func (r *run) killProc(rng *rand.Rand) {
	r.mu.Lock()
	var cands []*procPidOf
	for _, pp := range r.pids {
		cands = append(cands, pp)
	}
	r.mu.Unlock()
	rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	for _, pp := range cands {
		if r.m.isWaited(pp.p) {
			continue
		}
		cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pp.pid))
		if !strings.Contains(string(cg), "/"+r.d.Namespace+"/"+pp.p.ctr+"\n") {
			continue
		}
		r.m.allow(pp.p, 137)
		if pp.p.exec == "" {
			r.m.initEnds(pp.p.ctr)
		}
		err := syscall.Kill(int(pp.pid), syscall.SIGKILL)
		r.logf("fault %s: SIGKILL pid %d (%s %s): %v", faultKillProc, pp.pid, short(pp.p.rt), pp.p.name(), err)
		return
	}
	r.logf("fault %s: no running process to kill", faultKillProc)
}

// killRunc watches for up to 3 s for a runc run by the daemon (embed) or by
// a runc.v2 shim, and SIGKILLs the first one seen, mid-command.
func (r *run) killRunc(rng *rand.Rand) {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		daemon := r.d.Pid()
		var found []string
		procs := scanProcs()
		for pid, pr := range procs {
			if pr.comm != "runc" {
				continue
			}
			parent := procs[pr.ppid]
			switch {
			case pr.ppid == daemon:
				found = append(found, fmt.Sprintf("%d embed", pid))
			case parent.comm != "" && strings.HasPrefix(parent.comm, "containerd-shim") && strings.Contains(cmdline(pr.ppid), r.d.Dir):
				found = append(found, fmt.Sprintf("%d runcv2", pid))
			}
		}
		if len(found) > 0 {
			f := strings.Fields(found[rng.Intn(len(found))])
			pid, _ := strconv.Atoi(f[0])
			cl := cmdline(pid)
			err := syscall.Kill(pid, syscall.SIGKILL)
			r.logf("fault %s: SIGKILL %s runc pid %d %q: %v", faultKillRunc, f[1], pid, cl, err)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	r.logf("fault %s: no runc running within 3s", faultKillRunc)
}

type procInfo struct {
	comm string
	ppid int
}

func scanProcs() map[int]procInfo {
	out := map[int]procInfo{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(s[j+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		out[pid] = procInfo{comm: s[i+1 : j], ppid: ppid}
	}
	return out
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// rmBundleFile removes one file of the bundle of a task whose init runs.
func (r *run) rmBundleFile(rng *rand.Rand) {
	r.mu.Lock()
	var cands []*proc
	for _, pp := range r.pids {
		if pp.p.exec == "" {
			cands = append(cands, pp.p)
		}
	}
	r.mu.Unlock()
	sort.Slice(cands, func(i, j int) bool { return cands[i].ctr < cands[j].ctr })
	rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	file := bundleFiles[rng.Intn(len(bundleFiles))]
	for _, p := range cands {
		if r.m.isWaited(p) {
			continue
		}
		dir := "io.containerd.runtime.v1.embed"
		if p.rt != harness.EmbedPluginID {
			dir = "io.containerd.runtime.v2.task"
		}
		path := filepath.Join(r.d.State, dir, r.d.Namespace, p.ctr, file)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		err := os.Remove(path)
		r.logf("fault %s: rm %s: %v", faultRmBundle, path, err)
		return
	}
	r.logf("fault %s: no running task with a %s", faultRmBundle, file)
}
