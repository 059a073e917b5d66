//go:build linux

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// fdSlack: a restarted daemon's fds are compared with the baseline by count
// only (connections differ); more than this many extra is a leak.
const fdSlack = 16

// goroutineSlack: the daemon's goroutines at the end, everything deleted,
// may exceed the baseline's by this many (a restarted daemon's count
// differs a little: connections, timers); more is a leak.
const goroutineSlack = 16

// runcRoots are the runtimes' runc --root dirs for the run's namespace:
// embed's own (under its state dir) and runc.v2's.
func (r *run) runcRoots() []string {
	return []string{r.d.EmbedRuncRoot(r.d.Namespace), harness.RuncV2Root(r.d.Namespace)}
}

// runcList is `runc list` on both runtime roots: container id → status.
func (r *run) runcList() (map[string]string, error) {
	out := map[string]string{}
	for _, root := range r.runcRoots() {
		if _, err := os.Stat(root); os.IsNotExist(err) {
			continue
		}
		b, err := exec.Command("runc", "--root", root, "list", "--format", "json").Output()
		if err != nil {
			return nil, fmt.Errorf("runc list %s: %w", root, err)
		}
		var l []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal(b, &l); err != nil {
			return nil, fmt.Errorf("runc list %s: %w: %s", root, err, b)
		}
		for _, c := range l {
			out[c.ID] = c.Status
		}
	}
	return out, nil
}

type listedTask struct {
	status task.Status
	pid    uint32
}

func (r *run) listTasks(ctx context.Context) (map[string]listedTask, error) {
	cl := r.d.Client()
	if cl == nil {
		return nil, fmt.Errorf("daemon not running")
	}
	resp, err := cl.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
	if err != nil {
		return nil, err
	}
	out := map[string]listedTask{}
	for _, t := range resp.Tasks {
		out[t.ID] = listedTask{t.Status, t.Pid}
	}
	return out, nil
}

// pidGone: pid does not exist or is a zombie (its exit happened).
func pidGone(pid uint32) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i > 0 && len(s) > i+2 {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

// inconsistencies compares the daemon's tasks with runc's containers and
// with the processes themselves: a runc container without a task, a task
// not STOPPED without a runc container, a task listed running whose process
// is gone.
func (r *run) inconsistencies(ctx context.Context) (map[string]string, error) {
	tasks, err := r.listTasks(ctx)
	if err != nil {
		return nil, err
	}
	rc, err := r.runcList()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for id, st := range rc {
		if _, ok := tasks[id]; !ok {
			out[id+" runc"] = fmt.Sprintf("runc container %s (%s) without a task", id, st)
		}
	}
	for id, t := range tasks {
		// A STOPPED task whose runc container is gone is one whose Delete
		// was interrupted after runc delete (the client got an error):
		// it awaits the client's next Delete, which succeeds. Any other
		// state without a runc container is wrong.
		if _, ok := rc[id]; !ok && t.status != task.Status_STOPPED {
			out[id+" task"] = fmt.Sprintf("task %s (%v) without a runc container", id, t.status)
		}
		if t.status == task.Status_RUNNING && t.pid != 0 && pidGone(t.pid) {
			out[id+" state"] = fmt.Sprintf("task %s listed RUNNING but its pid %d is gone", id, t.pid)
		}
	}
	return out, nil
}

// checkConsistency runs after a restart with no operation in flight: what
// is inconsistent twice, 3 s apart (exits being processed settle), is a
// problem.
func (r *run) checkConsistency(kind string) {
	r.gate.Lock()
	defer r.gate.Unlock()
	ctx, cancel := context.WithTimeout(r.ctx, time.Minute)
	defer cancel()
	first, err := r.inconsistencies(ctx)
	if err != nil {
		r.problem("", "after %s: %v", kind, err)
		return
	}
	if len(first) == 0 {
		return
	}
	time.Sleep(3 * time.Second)
	second, err := r.inconsistencies(ctx)
	if err != nil {
		r.problem("", "after %s: %v", kind, err)
		return
	}
	var keys []string
	for k := range second {
		if _, ok := first[k]; ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		r.problem("", "after %s: %s", kind, second[k])
	}
}

// drain ends every process of the run (SIGKILL to every task, resumed
// first if paused), waits for every Wait and exit event, then deletes every
// task and container, checking the statuses Delete returns.
func (r *run) drain() {
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Minute)
	defer cancel()
	// Let a fault's leftovers settle: the daemon runs.
	cl := r.d.Client()
	if cl == nil {
		r.t.Fatalf("daemon not running at the end")
	}
	for _, w := range r.workers {
		for _, cs := range w.ctrs {
			for _, p := range cs.procs() {
				r.m.allow(p, 137)
			}
			r.m.initEnds(cs.id)
			c, err := cl.LoadContainer(ctx, cs.id)
			if err != nil {
				continue
			}
			t, err := c.Task(ctx, nil)
			if err != nil {
				continue
			}
			if st, err := t.Status(ctx); err == nil && st.Status == containerd.Paused {
				_ = t.Resume(ctx)
			}
			_ = t.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll)
		}
	}
	done := make(chan struct{})
	go func() { r.waiters.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		r.uncertainCancel()
		select {
		case <-done:
		case <-time.After(100 * time.Second):
			r.logf("Waits not returned 2 minutes after the final kill: %v; giving up on them", r.m.unwaited())
			r.waitCancel()
			<-done
		}
	}
	r.logf("every Wait returned or gave up; waiting for exit events")
	// Exit events: embed publishes those of a restore 1 s after the
	// daemon serves; runc.v2's shims retry after 1 s, 2 s, ...
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if r.m.eventsPending() == 0 {
			break
		}
	}
	time.Sleep(time.Second) // duplicates
	for _, w := range r.workers {
		for _, cs := range append([]*ctrState(nil), w.ctrs...) {
			ok := false
			for i := 0; i < 3 && !ok; i++ {
				cs.broken = true // delete with kill
				ok = w.remove(ctx, r.d.Client(), cs)
				if !ok {
					time.Sleep(time.Second)
				}
			}
			if !ok {
				r.problem(cs.rt, "%s: could not delete at the end", cs.id)
			}
		}
	}
}

// finalChecks: nothing of the run is left (tasks, containers, runc
// containers) and the daemon holds nothing more than at the start (fds,
// goroutines, mounts, runtime dirs, processes, zombies, cgroups, BPF
// registrations and records).
func (r *run) finalChecks(baseline harness.Snapshot, baseGoroutines int64) {
	ctx, cancel := context.WithTimeout(r.ctx, 2*time.Minute)
	defer cancel()
	cl := r.d.Client()
	tasks, err := r.listTasks(ctx)
	if err != nil {
		r.problem("", "final Tasks.List: %v", err)
	}
	for id, t := range tasks {
		r.problem("", "task %s (%v) left", id, t.status)
	}
	if cs, err := cl.Containers(ctx); err == nil {
		for _, c := range cs {
			r.problem("", "container %s left", c.ID())
		}
	}
	rc, err := r.runcList()
	if err != nil {
		r.problem("", "%v", err)
	}
	for id, st := range rc {
		r.problem("", "runc container %s (%s) left in %v", id, st, r.runcRoots())
	}
	var leaks []string
	var after harness.Snapshot
	var goroutines int64
	// The host's init reaps about every 2 s: zombies need a moment.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		after = r.d.Snapshot()
		leaks = nil
		for _, l := range harness.Leaks(baseline, after) {
			if !strings.HasPrefix(l, "daemon fds:") {
				leaks = append(leaks, l)
			}
		}
		if len(after.FDs) > len(baseline.FDs)+fdSlack {
			leaks = append(leaks, fmt.Sprintf("daemon fds: %d at the start, %d at the end", len(baseline.FDs), len(after.FDs)))
		}
		g, err := r.d.Goroutines()
		switch {
		case err != nil:
			leaks = append(leaks, fmt.Sprintf("daemon goroutines: cannot read: %v", err))
		case g > baseGoroutines+goroutineSlack:
			leaks = append(leaks, fmt.Sprintf("daemon goroutines: %d at the start, %d at the end (more than %d extra)", baseGoroutines, g, goroutineSlack))
		}
		goroutines = g
		if len(leaks) == 0 || time.Now().After(deadline) {
			break
		}
	}
	r.logf("daemon fds: %d at the start, %d at the end; goroutines: %d at the start, %d at the end",
		len(baseline.FDs), len(after.FDs), baseGoroutines, goroutines)
	for _, l := range groupCgroups(leaks) {
		r.problem(leakRuntime(l), "leak: %s", l)
	}
}

// groupCgroups makes one line of a cgroup left in every hierarchy
// ("cgroup: /sys/fs/cgroup/<hierarchy>/<ns>/<id>"): one leak, not ten.
func groupCgroups(leaks []string) []string {
	var out []string
	n := map[string]int{}
	var order []string
	for _, l := range leaks {
		rest, ok := strings.CutPrefix(l, "cgroup: /sys/fs/cgroup/")
		if !ok {
			out = append(out, l)
			continue
		}
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[i:]
		}
		if n[rest] == 0 {
			order = append(order, rest)
		}
		n[rest]++
	}
	for _, c := range order {
		out = append(out, fmt.Sprintf("cgroup: %s (in %d hierarchies)", c, n[c]))
	}
	return out
}

// leakRuntime attributes a leak line: processes by their cgroup (the
// container id names the runtime), the rest by their text.
func leakRuntime(l string) string {
	var pid int
	if strings.HasPrefix(l, "process: ") || strings.HasPrefix(l, "zombie: ") {
		if _, err := fmt.Sscanf(l[strings.Index(l, "pid "):], "pid %d", &pid); err == nil {
			cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
			if strings.Contains(string(cg), "-runcv2") {
				return harness.RuncV2
			}
		}
	}
	if strings.HasPrefix(l, "bpf: ") {
		return harness.EmbedPluginID
	}
	return runtimeOf(l)
}

// bpfEntries lists the registrations and exit records in the embed plugin's
// pinned maps (with bpftool), one string per entry.
func bpfEntries(d *harness.Daemon) ([]string, error) {
	var out []string
	vdirs, _ := filepath.Glob(filepath.Join(d.PinDir, "v*"))
	for _, vdir := range vdirs {
		for _, m := range []string{"registrations", "exits"} {
			path := filepath.Join(vdir, m)
			if _, err := os.Stat(path); err != nil {
				continue
			}
			raw, err := exec.Command("bpftool", "-j", "map", "dump", "pinned", path).Output()
			if err != nil {
				return nil, fmt.Errorf("bpftool map dump %s: %w", path, err)
			}
			var entries []struct {
				Key any `json:"key"`
			}
			if err := json.Unmarshal(raw, &entries); err != nil {
				return nil, fmt.Errorf("bpftool map dump %s: %w", path, err)
			}
			for _, e := range entries {
				out = append(out, fmt.Sprintf("%s entry %v", m, e.Key))
			}
		}
	}
	return out, nil
}
