//go:build linux

package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	eventstypes "github.com/containerd/containerd/api/events"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/typeurl/v2"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// Restart tests: containerd is stopped (SIGKILL: a crash; SIGTERM: an
// orderly shutdown) while containers of both runtimes run, things happen to
// them while it is down, and after the restart a client must see on embed
// what it sees on runc.v2.

// rsStartTask creates and starts the task of c; io nil means no stdio.
func (e *env) rsStartTask(t *testing.T, c containerd.Container, creator cio.Creator) containerd.Task {
	t.Helper()
	if creator == nil {
		creator = cio.NullIO
	}
	task, err := c.NewTask(e.ctx, creator)
	if err != nil {
		t.Fatalf("new task %s: %v", c.ID(), err)
	}
	if err := task.Start(e.ctx); err != nil {
		t.Fatalf("start task %s: %v", c.ID(), err)
	}
	return task
}

// rsExec starts exec id running args in task (of container c).
func (e *env) rsExec(t *testing.T, c containerd.Container, task containerd.Task, id string, args ...string) containerd.Process {
	t.Helper()
	spec, err := c.Spec(e.ctx)
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	pspec := *spec.Process
	pspec.Args = args
	pspec.Terminal = false
	p, err := task.Exec(e.ctx, id, &pspec, cio.NullIO)
	if err != nil {
		t.Fatalf("exec %s: %v", id, err)
	}
	if err := p.Start(e.ctx); err != nil {
		t.Fatalf("exec start %s: %v", id, err)
	}
	return p
}

// rsLoadTask loads the task of container id with the current client.
func (e *env) rsLoadTask(t *testing.T, id string) containerd.Task {
	t.Helper()
	c, err := e.d.Client().LoadContainer(e.ctx, id)
	if err != nil {
		t.Fatalf("load container %s: %v", id, err)
	}
	task, err := c.Task(e.ctx, nil)
	if err != nil {
		t.Fatalf("load task %s: %v", id, err)
	}
	return task
}

// rsTryLoadTask loads the task of container id with the current client.
func (e *env) rsTryLoadTask(id string) (containerd.Task, error) {
	c, err := e.d.Client().LoadContainer(e.ctx, id)
	if err != nil {
		return nil, err
	}
	return c.Task(e.ctx, nil)
}

// rsProcExited reports whether pid has exited (gone or a zombie).
func rsProcExited(pid uint32) bool {
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

func rsWaitExited(t *testing.T, pid uint32, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !rsProcExited(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still running after %v", pid, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func rsKillPid(t *testing.T, pid uint32) {
	t.Helper()
	if pid == 0 {
		t.Fatalf("no pid to kill")
	}
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
	rsWaitExited(t, pid, 10*time.Second)
}

func rsStatus(st containerd.Status) string {
	if st.Status == containerd.Stopped {
		return fmt.Sprintf("stopped:%d", st.ExitStatus)
	}
	return string(st.Status)
}

// rsWaitCode waits on a channel obtained from Wait with a timeout.
func (e *env) rsWaitCode(t *testing.T, what string, ch <-chan containerd.ExitStatus) string {
	t.Helper()
	select {
	case st := <-ch:
		code, _, err := st.Result()
		if err != nil {
			return "error:" + err.Error()
		}
		return fmt.Sprint(code)
	case <-time.After(20 * time.Second):
		t.Errorf("%s: wait did not return", what)
		return "timeout"
	}
}

// rsListTasks is Tasks.List as the first call after a restart: name → state,
// for the containers in ids (name → container id).
func (e *env) rsListTasks(t *testing.T, ids map[string]string) map[string]string {
	t.Helper()
	resp, err := e.d.Client().TaskService().List(e.ctx, &tasksapi.ListTasksRequest{})
	if err != nil {
		t.Fatalf("Tasks.List after restart: %v", err)
	}
	byID := map[string]string{}
	for _, p := range resp.Tasks {
		s := strings.ToLower(strings.TrimPrefix(p.Status.String(), "Status_"))
		if s == "stopped" {
			s = fmt.Sprintf("stopped:%d", p.ExitStatus)
		}
		byID[p.ID] = s
	}
	out := map[string]string{}
	for name, id := range ids {
		s, ok := byID[id]
		if !ok {
			s = "missing"
		}
		out[name] = s
	}
	return out
}

// rsWaitGrows waits until b holds more than n bytes and returns its length,
// which is not more than n if nothing came within eventDeadline.
func rsWaitGrows(b *lockedBuffer, n int) int {
	deadline := time.Now().Add(eventDeadline)
	for {
		l := len(b.String())
		if l > n || time.Now().After(deadline) {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rsExitWatch collects the /tasks/exit events a client subscribed right after
// a restart receives, as "container/exec:status".
type rsExitWatch struct {
	e         *env
	mu        sync.Mutex
	seen      map[string]int
	sentinels map[string]bool
	changed   chan struct{} // closed and replaced at every event
	cancel    context.CancelFunc
}

func (e *env) rsWatchExits(t *testing.T) *rsExitWatch {
	ctx, cancel := context.WithCancel(e.ctx)
	w := &rsExitWatch{e: e, seen: map[string]int{}, sentinels: map[string]bool{}, changed: make(chan struct{}), cancel: cancel}
	ch, errs := e.d.Client().Subscribe(ctx, `topic=="/tasks/exit"`, fmt.Sprintf("topic==%q", sentinelTopic))
	go func() {
		for {
			select {
			case env := <-ch:
				v, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					continue
				}
				w.mu.Lock()
				switch x := v.(type) {
				case *eventstypes.TaskExit:
					w.seen[fmt.Sprintf("%s/%s:%d", x.ContainerID, x.ID, x.ExitStatus)]++
				case *eventstypes.ContainerCreate:
					if env.Topic == sentinelTopic {
						w.sentinels[x.ID] = true
					}
				}
				close(w.changed)
				w.changed = make(chan struct{})
				w.mu.Unlock()
			case <-errs:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(cancel)
	return w
}

// settle waits until the exit of each container/exec pair in want has been
// seen, then until a sentinel published after them arrived: whatever the
// daemon published before it (a duplicate, say) is counted too. An exit
// not seen within eventDeadline fails the test.
func (w *rsExitWatch) settle(t *testing.T, want ...[2]string) {
	t.Helper()
	wait := func(what string, cond func() bool) {
		t.Helper()
		timeout := time.After(eventDeadline)
		for {
			w.mu.Lock()
			ok, changed := cond(), w.changed
			w.mu.Unlock()
			if ok {
				return
			}
			select {
			case <-changed:
			case <-timeout:
				t.Errorf("%s not seen within %s", what, eventDeadline)
				return
			}
		}
	}
	for _, x := range want {
		wait("/tasks/exit of "+x[0]+"/"+x[1], func() bool { return w.countLocked(x[0], x[1]) > 0 })
	}
	tok := fmt.Sprintf("sentinel-exits-%d", sentinelSeq.Add(1))
	if err := w.e.d.Client().EventService().Publish(w.e.ctx, sentinelTopic, &eventstypes.ContainerCreate{ID: tok}); err != nil {
		t.Fatalf("publish sentinel: %v", err)
	}
	wait("sentinel", func() bool { return w.sentinels[tok] })
}

// count returns how often the exit of container/exec was seen (any status),
// and the statuses; an init's exec id is the container id.
func (w *rsExitWatch) count(container, exec string) (int, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.countStatuses(container, exec)
}

func (w *rsExitWatch) countLocked(container, exec string) int {
	n, _ := w.countStatuses(container, exec)
	return n
}

func (w *rsExitWatch) countStatuses(container, exec string) (int, []string) {
	n := 0
	var st []string
	for k, c := range w.seen {
		if strings.HasPrefix(k, container+"/"+exec+":") {
			n += c
			st = append(st, strings.TrimPrefix(k, container+"/"+exec+":"))
		}
	}
	sort.Strings(st)
	return n, st
}

// rsDowntimeSet is one runtime's containers of TestRestartSIGKILL.
type rsDowntimeSet struct {
	rt                string
	ids               map[string]string
	execPid           uint32 // C's exec "x"
	pids              map[string]uint32
	eOut              *lockedBuffer
	eTask             containerd.Task // E, created with the old client (for its IO)
	stoppedAt, upAt   time.Time
	downtimeExitsSeen map[string]string
}

// rsObs is what a client observes after the restart (no pids, times).
type rsObs struct {
	Listed      map[string]string // first call after restart: Tasks.List
	AExec       string            // exec in A: exit code
	APause      string            // A's status after Pause
	AResume     string            // after Resume
	AKill       string            // Wait after SIGKILL
	BStatus     string
	BExitInTime bool // B's exit time within the downtime
	BWait       string
	CExec       string // exec x: Status
	CExecWait   string
	CExecDelete string
	CInit       string
	DStatus     string
	DWait       string
	DExitInTime bool
	EFlowing    bool
	DeleteCodes map[string]string
}

// rsKeepLog copies the daemon log to /tmp/<test>.daemon.log if the test
// fails (the harness removes its temp dir).
func rsKeepLog(t *testing.T, e *env) {
	t.Cleanup(func() {
		if t.Failed() {
			name := strings.ReplaceAll(t.Name(), "/", "_")
			os.WriteFile(filepath.Join(os.TempDir(), name+".daemon.log"), []byte(e.d.Log()), 0o644)
		}
	})
}

func TestRestartSIGKILL(t *testing.T) {
	e := newEnv(t)
	rsKeepLog(t, e)
	sets := map[string]*rsDowntimeSet{}
	for _, rt := range runtimes {
		s := &rsDowntimeSet{rt: rt, ids: map[string]string{}, pids: map[string]uint32{}, eOut: &lockedBuffer{}}
		sets[rt] = s
		start := func(name string, creator cio.Creator, args ...string) (containerd.Container, containerd.Task) {
			c := e.container(t, rt, "restart-"+name, oci.WithProcessArgs(args...))
			task := e.rsStartTask(t, c, creator)
			s.ids[name] = c.ID()
			s.pids[name] = task.Pid()
			return c, task
		}
		start("A", nil, "sleep", "3600")
		start("B", nil, "sleep", "3600")
		c, ct := start("C", nil, "sleep", "3600")
		s.execPid = e.rsExec(t, c, ct, "x", "sleep", "3600").Pid()
		_, et := start("E", cio.NewCreator(cio.WithStreams(nil, s.eOut, io.Discard)),
			"sh", "-c", "while true; do echo tick; sleep 0.2; done")
		s.eTask = et
	}
	// D exits while the daemon is down: it waits for a file the test
	// writes into its root once the daemon is killed (a fixed sleep
	// raced with slow starts under load: D exited before the kill).
	for _, rt := range runtimes {
		s := sets[rt]
		c := e.container(t, rt, "restart-D", oci.WithProcessArgs("sh", "-c",
			"while [ ! -e /tmp/go-d ]; do sleep 0.05; done; exit 7"))
		task := e.rsStartTask(t, c, nil)
		s.ids["D"], s.pids["D"] = c.ID(), task.Pid()
	}
	eBefore := map[string]int{}
	for rt, s := range sets {
		eBefore[rt] = len(s.eOut.String())
	}

	stoppedAt := time.Now()
	if err := e.d.Kill(); err != nil {
		t.Fatalf("kill daemon: %v", err)
	}
	for _, s := range sets {
		rsKillPid(t, s.pids["B"])
		rsKillPid(t, s.execPid)
		if err := writeInto(s.pids["D"], "/tmp/go-d"); err != nil {
			t.Fatalf("let D exit: %v", err)
		}
		rsWaitExited(t, s.pids["D"], 15*time.Second)
	}
	// E keeps writing while the daemon is down (runc.v2: the shim; embed:
	// the FIFO is the container's own stdout).
	for rt, s := range sets {
		if n := rsWaitGrows(s.eOut, eBefore[rt]); n <= eBefore[rt] {
			t.Errorf("%s: E wrote nothing while the daemon was down (%d bytes)", shortName(rt), n)
		}
	}
	if err := e.d.Restart(syscall.SIGKILL); err != nil {
		t.Fatalf("restart: %v", err)
	}
	upAt := time.Now()
	t.Logf("downtime %v", upAt.Sub(stoppedAt))
	w := e.rsWatchExits(t)

	obs := map[string]*rsObs{}
	for _, rt := range runtimes {
		obs[rt] = &rsObs{Listed: e.rsListTasks(t, sets[rt].ids), DeleteCodes: map[string]string{}}
	}
	inDowntime := func(at time.Time) bool {
		return !at.Before(stoppedAt.Add(-time.Second)) && !at.After(upAt.Add(time.Second))
	}
	// Wait for embed's downtime exits, and for anything published before a
	// sentinel after them (a duplicate). runc.v2's shims forward the exits
	// they could not deliver when their retries (after 1s, 2s, ...) say:
	// those are only logged, as seen by then.
	es := sets[harness.EmbedPluginID]
	w.settle(t, [2]string{es.ids["B"], es.ids["B"]}, [2]string{es.ids["C"], "x"}, [2]string{es.ids["D"], es.ids["D"]})
	downtimeEvents := map[string]string{}
	for _, rt := range runtimes {
		s := sets[rt]
		for _, x := range []struct{ name, id, exec, status string }{
			{"B", s.ids["B"], s.ids["B"], "137"}, {"C/x", s.ids["C"], "x", "137"}, {"D", s.ids["D"], s.ids["D"], "7"},
		} {
			n, st := w.count(x.id, x.exec)
			downtimeEvents[shortName(rt)+" "+x.name] = fmt.Sprintf("%d %v", n, st)
			if rt == harness.EmbedPluginID && fmt.Sprint(n, st) != fmt.Sprint(1, []string{x.status}) {
				t.Errorf("embed: exit of %s (downtime) seen by a client subscribed after the restart: %d times %v, want once with %s", x.name, n, st, x.status)
			}
		}
	}
	t.Logf("/tasks/exit of downtime exits seen by a client subscribed right after the restart: %v", downtimeEvents)

	for _, rt := range runtimes {
		t.Run(shortName(rt), func(t *testing.T) {
			s, o := sets[rt], obs[rt]
			// A: fully manageable.
			ca, err := e.d.Client().LoadContainer(e.ctx, s.ids["A"])
			if err != nil {
				t.Fatal(err)
			}
			a := e.rsLoadTask(t, s.ids["A"])
			p := e.rsExec(t, ca, a, "a1", "sh", "-c", "exit 3")
			_ = p
			pl, err := a.LoadProcess(e.ctx, "a1", nil)
			if err != nil {
				t.Fatal(err)
			}
			ch, err := pl.Wait(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			o.AExec = e.rsWaitCode(t, "A exec", ch)
			if _, err := pl.Delete(e.ctx); err != nil {
				t.Errorf("A exec delete: %v", err)
			}
			if err := a.Pause(e.ctx); err != nil {
				t.Errorf("pause A: %v", err)
			}
			st, _ := a.Status(e.ctx)
			o.APause = rsStatus(st)
			if err := a.Resume(e.ctx); err != nil {
				t.Errorf("resume A: %v", err)
			}
			st, _ = a.Status(e.ctx)
			o.AResume = rsStatus(st)
			ach, err := a.Wait(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Kill(e.ctx, syscall.SIGKILL); err != nil {
				t.Errorf("kill A: %v", err)
			}
			o.AKill = e.rsWaitCode(t, "A", ach)

			// B: killed during downtime. containerd 1.7 deletes a runc.v2
			// task whose init died while it was down (loadShims cleans a
			// shim without pids as "leaked", containerd#6860): its exit is
			// lost. embed must report it.
			if b, err := e.rsTryLoadTask(s.ids["B"]); err != nil {
				o.BStatus = "not-found"
			} else {
				st, err := b.Status(e.ctx)
				if err != nil {
					t.Fatal(err)
				}
				o.BStatus = rsStatus(st)
				o.BExitInTime = inDowntime(st.ExitTime)
				if !o.BExitInTime {
					t.Logf("B exit time %v, downtime %v .. %v", st.ExitTime, stoppedAt, upAt)
				}
				bch, err := b.Wait(e.ctx)
				if err != nil {
					t.Fatal(err)
				}
				o.BWait = e.rsWaitCode(t, "B", bch)
			}

			// C: its exec killed during downtime.
			c := e.rsLoadTask(t, s.ids["C"])
			x, err := c.LoadProcess(e.ctx, "x", nil)
			if err != nil {
				t.Fatalf("load exec x: %v", err)
			}
			st, err = x.Status(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			o.CExec = rsStatus(st)
			xch, err := x.Wait(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			o.CExecWait = e.rsWaitCode(t, "C exec", xch)
			if xs, err := x.Delete(e.ctx); err != nil {
				o.CExecDelete = "error"
				t.Errorf("C exec delete: %v", err)
			} else {
				o.CExecDelete = fmt.Sprint(xs.ExitCode())
			}
			st, _ = c.Status(e.ctx)
			o.CInit = rsStatus(st)

			// D: exited by itself during downtime (runc.v2: deleted, as B).
			if d, err := e.rsTryLoadTask(s.ids["D"]); err != nil {
				o.DStatus = "not-found"
			} else {
				st, err := d.Status(e.ctx)
				if err != nil {
					t.Fatal(err)
				}
				o.DStatus = rsStatus(st)
				o.DExitInTime = inDowntime(st.ExitTime)
				dch, err := d.Wait(e.ctx)
				if err != nil {
					t.Fatal(err)
				}
				o.DWait = e.rsWaitCode(t, "D", dch)
			}

			// E: output keeps flowing.
			n0 := len(s.eOut.String())
			n1 := rsWaitGrows(s.eOut, n0)
			o.EFlowing = n1 > n0 && n0 > eBefore[rt]
			if !o.EFlowing {
				t.Errorf("E output: %d bytes before restart, %d after, %d at most %s later", eBefore[rt], n0, n1, eventDeadline)
			}

			// Delete everything; the exit codes delete returns.
			for _, name := range []string{"A", "B", "C", "D", "E"} {
				task, err := e.rsTryLoadTask(s.ids[name])
				if err != nil {
					o.DeleteCodes[name] = "not-found"
					continue
				}
				if name == "C" || name == "E" {
					ch, err := task.Wait(e.ctx)
					if err != nil {
						t.Fatal(err)
					}
					task.Kill(e.ctx, syscall.SIGKILL)
					e.rsWaitCode(t, name, ch)
				}
				es, err := task.Delete(e.ctx)
				if err != nil {
					o.DeleteCodes[name] = "error"
					t.Errorf("delete %s: %v", name, err)
					continue
				}
				o.DeleteCodes[name] = fmt.Sprint(es.ExitCode())
			}
			// E's client-side FIFOs were made with the old client.
			if pio := s.eTask.IO(); pio != nil {
				pio.Cancel()
				pio.Close()
			}
		})
	}

	want := rsObs{
		Listed: map[string]string{"A": "running", "B": "stopped:137", "C": "running",
			"D": "stopped:7", "E": "running"},
		AExec: "3", APause: "paused", AResume: "running", AKill: "137",
		BStatus: "stopped:137", BExitInTime: true, BWait: "137",
		CExec: "stopped:137", CExecWait: "137", CExecDelete: "137", CInit: "running",
		DStatus: "stopped:7", DWait: "7", DExitInTime: true, EFlowing: true,
		DeleteCodes: map[string]string{"A": "137", "B": "137", "C": "137", "D": "7", "E": "137"},
	}
	// The oracle as containerd 1.7 has it: B and D are gone after the
	// restart, everything else as on embed.
	oracle := want
	oracle.Listed = map[string]string{"A": "running", "B": "missing", "C": "running",
		"D": "missing", "E": "running"}
	oracle.BStatus, oracle.BExitInTime, oracle.BWait = "not-found", false, ""
	oracle.DStatus, oracle.DExitInTime, oracle.DWait = "not-found", false, ""
	oracle.DeleteCodes = map[string]string{"A": "137", "B": "not-found", "C": "137", "D": "not-found", "E": "137"}
	for rt, w := range map[string]rsObs{harness.EmbedPluginID: want, harness.RuncV2: oracle} {
		if got := *obs[rt]; fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", w) {
			t.Errorf("%s after SIGKILL restart:\n  got:  %+v\n  want: %+v", shortName(rt), got, w)
		}
	}
	// Where runc.v2 still has the task, embed must agree with it.
	em, rc := *obs[harness.EmbedPluginID], *obs[harness.RuncV2]
	em.Listed = map[string]string{"A": em.Listed["A"], "C": em.Listed["C"], "E": em.Listed["E"]}
	rc.Listed = map[string]string{"A": rc.Listed["A"], "C": rc.Listed["C"], "E": rc.Listed["E"]}
	for _, o := range []*rsObs{&em, &rc} {
		o.BStatus, o.BExitInTime, o.BWait, o.DStatus, o.DExitInTime, o.DWait = "", false, "", "", false, ""
		o.DeleteCodes = map[string]string{"A": o.DeleteCodes["A"], "C": o.DeleteCodes["C"], "E": o.DeleteCodes["E"]}
	}
	if a, b := fmt.Sprintf("%+v", em), fmt.Sprintf("%+v", rc); a != b {
		t.Errorf("embed and runc.v2 differ:\n  embed:   %s\n  runc.v2: %s", a, b)
	}
}

// rsManage exercises a running task after a restart: an exec, pause/resume,
// SIGKILL and wait. It returns what a client saw.
func (e *env) rsManage(t *testing.T, id string) string {
	t.Helper()
	c, err := e.d.Client().LoadContainer(e.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	task := e.rsLoadTask(t, id)
	var out []string
	var steps []string
	last := time.Now()
	step := func(name string) {
		steps = append(steps, fmt.Sprintf("%s:%v", name, time.Since(last).Round(time.Millisecond)))
		last = time.Now()
	}
	defer step("end")
	t0 := time.Now()
	defer func() {
		if d := time.Since(t0); d > 3*time.Second {
			t.Logf("managing %s took %v: %v %v", id, d, out, steps)
		}
	}()
	st, _ := task.Status(e.ctx)
	out = append(out, "status="+rsStatus(st))
	p := e.rsExec(t, c, task, "m1", "sh", "-c", "exit 3")
	ch, err := p.Wait(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, "exec="+e.rsWaitCode(t, "exec", ch))
	step("exec")
	if _, err := p.Delete(e.ctx); err != nil {
		t.Errorf("exec delete: %v", err)
	}
	if err := task.Pause(e.ctx); err != nil {
		t.Errorf("pause: %v", err)
	}
	st, _ = task.Status(e.ctx)
	out = append(out, "paused="+rsStatus(st))
	step("pause")
	if err := task.Resume(e.ctx); err != nil {
		t.Errorf("resume: %v", err)
	}
	st, _ = task.Status(e.ctx)
	out = append(out, "resumed="+rsStatus(st))
	step("resume")
	wch, err := task.Wait(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Kill(e.ctx, syscall.SIGKILL); err != nil {
		t.Errorf("kill: %v", err)
	}
	step("wait")
	tk := time.Now()
	out = append(out, "killed="+e.rsWaitCode(t, "task", wch))
	if d := time.Since(tk); d > time.Second {
		t.Logf("%s: SIGKILL to exit took %v", id, d)
	}
	step("kill")
	if es, err := task.Delete(e.ctx); err != nil {
		t.Errorf("delete: %v", err)
		out = append(out, "delete=error")
	} else {
		out = append(out, fmt.Sprintf("delete=%d", es.ExitCode()))
	}
	return strings.Join(out, " ")
}

// An orderly shutdown (SIGTERM) leaves every container running, and after
// the restart everything is manageable as before.
func TestRestartSIGTERM(t *testing.T) {
	e := newEnv(t)
	rsKeepLog(t, e)
	type set struct {
		ids           map[string]string
		eOut          *lockedBuffer
		eTask         containerd.Task
		eBefore, xPid int
	}
	sets := map[string]*set{}
	for _, rt := range runtimes {
		s := &set{ids: map[string]string{}, eOut: &lockedBuffer{}}
		sets[rt] = s
		a := e.container(t, rt, "term-A", oci.WithProcessArgs("sleep", "3600"))
		e.rsStartTask(t, a, nil)
		s.ids["A"] = a.ID()
		c := e.container(t, rt, "term-C", oci.WithProcessArgs("sleep", "3600"))
		ct := e.rsStartTask(t, c, nil)
		s.ids["C"] = c.ID()
		s.xPid = int(e.rsExec(t, c, ct, "x", "sleep", "3600").Pid())
		ec := e.container(t, rt, "term-E", oci.WithProcessArgs("sh", "-c", "while true; do echo tick; sleep 0.2; done"))
		s.eTask = e.rsStartTask(t, ec, cio.NewCreator(cio.WithStreams(nil, s.eOut, io.Discard)))
		s.ids["E"] = ec.ID()
	}
	for _, s := range sets {
		s.eBefore = rsWaitGrows(s.eOut, 0) // E has started writing
	}
	start := time.Now()
	if err := e.d.Restart(syscall.SIGTERM); err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Logf("SIGTERM restart took %v", time.Since(start))
	listed := map[string]map[string]string{}
	for _, rt := range runtimes {
		listed[rt] = e.rsListTasks(t, sets[rt].ids)
	}
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		s := sets[rt]
		obs := map[string]string{}
		obs["listed"] = fmt.Sprint(listed[rt])
		for k, v := range listed[rt] {
			if v != "running" {
				t.Errorf("%s listed as %s after SIGTERM restart", k, v)
			}
		}
		obs["A"] = e.rsManage(t, s.ids["A"])
		ct := e.rsLoadTask(t, s.ids["C"])
		x, err := ct.LoadProcess(e.ctx, "x", nil)
		if err != nil {
			t.Fatalf("load exec x: %v", err)
		}
		st, _ := x.Status(e.ctx)
		xs := []string{"status=" + rsStatus(st)}
		if r, err := e.d.Client().TaskService().Get(e.ctx, &tasksapi.GetRequest{ContainerID: s.ids["C"], ExecID: "x"}); err != nil {
			t.Errorf("Tasks.Get exec x: %v", err)
		} else if int(r.Process.Pid) != s.xPid {
			t.Errorf("exec x pid %d after restart, was %d", r.Process.Pid, s.xPid)
		}
		xch, err := x.Wait(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := x.Kill(e.ctx, syscall.SIGKILL); err != nil {
			t.Errorf("kill exec x: %v", err)
		}
		xs = append(xs, "killed="+e.rsWaitCode(t, "exec x", xch))
		if d, err := x.Delete(e.ctx); err == nil {
			xs = append(xs, fmt.Sprintf("delete=%d", d.ExitCode()))
		}
		obs["C/x"] = strings.Join(xs, " ")
		obs["C"] = e.rsManage(t, s.ids["C"])
		n0 := len(s.eOut.String())
		n1 := rsWaitGrows(s.eOut, n0)
		obs["E flowing"] = fmt.Sprint(n0 > s.eBefore && n1 > n0)
		obs["E"] = e.rsManage(t, s.ids["E"])
		if pio := s.eTask.IO(); pio != nil {
			pio.Cancel()
			pio.Close()
		}
		want := map[string]string{
			"listed":    "map[A:running C:running E:running]",
			"A":         "status=running exec=3 paused=paused resumed=running killed=137 delete=137",
			"C/x":       "status=running killed=137 delete=137",
			"E flowing": "true",
		}
		want["C"], want["E"] = want["A"], want["A"]
		if fmt.Sprint(obs) != fmt.Sprint(want) {
			t.Errorf("after SIGTERM restart:\n  got:  %v\n  want: %v", obs, want)
		}
		return obs
	})
}

// Exec records survive a restart: execs that end while containerd is down
// (killed, or exiting by themselves) and one that ended before report their
// status after it; the exits of the first two reach a client subscribed
// after the restart once.
func TestRestartExecRecords(t *testing.T) {
	e := newEnv(t)
	rsKeepLog(t, e)
	type set struct {
		id         string
		kPid, nPid uint32
	}
	sets := map[string]*set{}
	for _, rt := range runtimes {
		c := e.container(t, rt, "execrec", oci.WithProcessArgs("sleep", "3600"))
		task := e.rsStartTask(t, c, nil)
		s := &set{id: c.ID()}
		sets[rt] = s
		s.kPid = e.rsExec(t, c, task, "k", "sleep", "3600").Pid()
		z := e.rsExec(t, c, task, "z", "sh", "-c", "exit 9")
		zch, err := z.Wait(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if code := e.rsWaitCode(t, "exec z", zch); code != "9" {
			t.Errorf("%s: exec z before restart: %s", shortName(rt), code)
		}
		// n exits (5) only once the daemon is down: it waits for a file
		// the test creates then, whatever the machine's load.
		s.nPid = e.rsExec(t, c, task, "n", "sh", "-c", "while [ ! -e /tmp/go-n ]; do sleep 0.05; done; exit 5").Pid()
	}
	if err := e.d.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		rsKillPid(t, s.kPid)
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/root/tmp/go-n", s.nPid), nil, 0o644); err != nil {
			t.Fatalf("let exec n exit: %v", err)
		}
		rsWaitExited(t, s.nPid, 15*time.Second)
	}
	if err := e.d.Restart(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w := e.rsWatchExits(t)
	// embed's downtime exits (and whatever precedes a sentinel after them);
	// runc.v2's come when its shims' retries (after 1s, 2s, ...) say, and
	// are not compared.
	em := sets[harness.EmbedPluginID]
	w.settle(t, [2]string{em.id, "k"}, [2]string{em.id, "n"})
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		s := sets[rt]
		task := e.rsLoadTask(t, s.id)
		obs := map[string]string{}
		for _, id := range []string{"k", "n"} {
			n, st := w.count(s.id, id)
			obs["events "+id] = fmt.Sprint(n, st)
		}
		for _, id := range []string{"k", "n", "z"} {
			p, err := task.LoadProcess(e.ctx, id, nil)
			if err != nil {
				obs[id] = "load: " + err.Error()
				continue
			}
			st, err := p.Status(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			ch, err := p.Wait(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			code := e.rsWaitCode(t, id, ch)
			del := "error"
			if d, err := p.Delete(e.ctx); err == nil {
				del = fmt.Sprint(d.ExitCode())
			}
			obs[id] = fmt.Sprintf("status=%s wait=%s delete=%s", rsStatus(st), code, del)
		}
		obs["task"] = e.rsManage(t, s.id)
		want := map[string]string{
			"k":        "status=stopped:137 wait=137 delete=137",
			"n":        "status=stopped:5 wait=5 delete=5",
			"z":        "status=stopped:9 wait=9 delete=9",
			"task":     "status=running exec=3 paused=paused resumed=running killed=137 delete=137",
			"events k": "1 [137]",
			"events n": "1 [5]",
		}
		if rt == harness.RuncV2 {
			// Delivery of downtime exits by runc.v2 depends on its
			// shim's retry timing: not compared.
			t.Logf("runc.v2 downtime exec exits seen after restart: k %s, n %s", obs["events k"], obs["events n"])
			delete(obs, "events k")
			delete(obs, "events n")
			delete(want, "events k")
			delete(want, "events n")
		}
		if fmt.Sprint(obs) != fmt.Sprint(want) {
			t.Errorf("after restart:\n  got:  %v\n  want: %v", obs, want)
		}
		delete(obs, "events k")
		delete(obs, "events n")
		return obs
	})
}

// Registrations no task accounts for (a crash between registration and
// state.json, simulated by removing a task's state behind the daemon's back
// while it is down) are forgotten at start-up: no BPF entry stays.
func TestRestartStaleRegistrations(t *testing.T) {
	e := newEnv(t)
	rsKeepLog(t, e)
	rt := harness.EmbedPluginID
	c := e.container(t, rt, "stale", oci.WithProcessArgs("sleep", "3600"))
	task := e.rsStartTask(t, c, nil)
	keep := e.container(t, rt, "kept", oci.WithProcessArgs("sleep", "3600"))
	e.rsStartTask(t, keep, nil)
	entries, err := bpfEntries(e.d)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("BPF entries with two tasks: %v", entries)
	}
	pid := task.Pid()
	if err := e.d.Kill(); err != nil {
		t.Fatal(err)
	}
	rsKillPid(t, pid) // leaves an exit record too
	bundle := filepath.Join(e.d.State, rt, e.d.Namespace, c.ID())
	if err := syscall.Unmount(filepath.Join(bundle, "rootfs"), syscall.MNT_DETACH); err != nil {
		t.Fatalf("unmount rootfs: %v", err)
	}
	if out, err := exec.Command("runc", "--root", e.d.EmbedRuncRoot(e.d.Namespace),
		"delete", "--force", c.ID()).CombinedOutput(); err != nil {
		t.Fatalf("runc delete: %v: %s", err, out)
	}
	if err := os.RemoveAll(bundle); err != nil {
		t.Fatal(err)
	}
	if entries, err = bpfEntries(e.d); err != nil || len(entries) < 3 {
		t.Fatalf("BPF entries before restart (want 2 registrations + 1 record): %v %v", entries, err)
	}
	if err := e.d.Restart(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	listed := e.rsListTasks(t, map[string]string{"stale": c.ID(), "kept": keep.ID()})
	if fmt.Sprint(listed) != "map[kept:running stale:missing]" {
		t.Errorf("tasks after restart: %v", listed)
	}
	entries, err = bpfEntries(e.d)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("BPF entries after restart: %v, want only the kept task's registration", entries)
	}
	if got := e.rsManage(t, keep.ID()); got != "status=running exec=3 paused=paused resumed=running killed=137 delete=137" {
		t.Errorf("kept task after restart: %s", got)
	}
}
