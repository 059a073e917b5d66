//go:build linux

package core

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"

	"github.com/embedshim/embedshim/go/exitmon"
)

// Unit tests of the runtime's exit rules against a fake tracker: no daemon,
// no runc, no BPF. The same rules are checked end to end against runc.v2 by
// tests/integration (parity_*); these pin them down one by one.

// fakeTracker stands in for exitmon.Monitor: exits are fed by the test,
// Lookup answers from records the test sets.
type fakeTracker struct {
	exits   chan exitmon.Exit
	mu      sync.Mutex
	records map[exitmon.Key]exitmon.Exit
}

func newFakeTracker() *fakeTracker {
	return &fakeTracker{exits: make(chan exitmon.Exit), records: map[exitmon.Key]exitmon.Exit{}}
}

func (f *fakeTracker) Register(pid int, ident uint64) (uint64, error) { return ident, nil }
func (f *fakeTracker) Track(pidfd, pid int) (uint64, error)           { return uint64(pid) * 7, nil }
func (f *fakeTracker) RunDetached(*exec.Cmd, string) (int, uint64, error) {
	return 0, 0, errors.New("fake: no runc exec")
}
func (f *fakeTracker) Lookup(pid int, ident uint64) (*exitmon.Exit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, ok := f.records[exitmon.Key{Pid: pid, Ident: ident}]; ok {
		return &e, nil
	}
	return nil, nil
}
func (f *fakeTracker) FindRecent(int, uint64) (*exitmon.Exit, error) { return nil, nil }
func (f *fakeTracker) Forget(int, uint64) error                      { return nil }
func (f *fakeTracker) Registered() ([]exitmon.Key, error)            { return nil, nil }
func (f *fakeTracker) Capacity() uint32                              { return 16 }
func (f *fakeTracker) Repin() (string, error)                        { return "", nil }
func (f *fakeTracker) RestoredPins() string                          { return "" }
func (f *fakeTracker) Exits() <-chan exitmon.Exit                    { return f.exits }

// recorder is the event exchange: each event as "topic id status".
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) Publish(_, topic string, evt interface{}) error {
	var s string
	switch e := evt.(type) {
	case *eventstypes.TaskExit:
		s = fmt.Sprintf("%s %s %d", topic, e.ID, e.ExitStatus)
	case *eventstypes.TaskExecStarted:
		s = fmt.Sprintf("%s %s", topic, e.ExecID)
	default:
		s = topic
	}
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
	return nil
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// eventually polls cond (the exit loop runs on its own goroutine).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (r *recorder) expect(t *testing.T, want ...string) {
	t.Helper()
	eventually(t, fmt.Sprint("events ", want), func() bool { return len(r.get()) >= len(want) })
	if got := r.get(); !reflect.DeepEqual(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}

type exitHarness struct {
	m   *Manager
	ft  *fakeTracker
	rec *recorder
	dir string
}

func newHarness(t *testing.T, dir string) *exitHarness {
	h := &exitHarness{ft: newFakeTracker(), rec: &recorder{}, dir: dir}
	h.m = newManager(managerOpts{
		root:    filepath.Join(dir, "root"),
		state:   filepath.Join(dir, "state"),
		config:  &Config{Runtime: "/bin/false", RuntimeRoot: filepath.Join(dir, "runc")},
		events:  h.rec,
		monitor: h.ft,
	})
	h.m.startExitLoop()
	t.Cleanup(func() { close(h.ft.exits) })
	return h
}

// task adds a task whose init runs as pid 100+n (no process behind it).
func (h *exitHarness) task(t *testing.T, id string, status procStatus) *Task {
	t.Helper()
	b, err := newBundle(id, filepath.Join(h.m.state, "ns"), filepath.Join(h.m.root, "ns"), []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	task := newTask(h.m, "ns", id, b, &RuncConfig{Binary: "/bin/false", Root: filepath.Join(h.dir, "runc")}, stdioPaths{})
	if err := h.m.tasks.add("ns", id, task); err != nil {
		t.Fatal(err)
	}
	h.track(task.init, 100, status)
	return task
}

// exec adds a running exec with pid.
func (h *exitHarness) exec(task *Task, id string, pid int) *process {
	p := newProcess(task, id, false, stdioPaths{})
	task.mu.Lock()
	task.execs[id] = p
	task.runningExecs++
	task.mu.Unlock()
	h.track(p, pid, statusRunning)
	return p
}

func (h *exitHarness) track(p *process, pid int, status procStatus) {
	st, err := restoredState(p, status, nil)
	if err != nil {
		panic(err)
	}
	p.mu.Lock()
	p.pid, p.ident = pid, uint64(pid)*7
	p.setStateLocked(st)
	p.mu.Unlock()
	h.m.router.add(p.key(), p)
}

// kill delivers p's exit, SIGKILLed, through the monitor's stream.
func (h *exitHarness) kill(p *process) {
	k := p.key()
	h.ft.exits <- exitmon.Exit{Pid: k.Pid, Ident: k.Ident, Status: uint32(syscall.SIGKILL), ExitedAt: time.Now()}
}

func waitExit(t *testing.T, p *process) uint32 {
	t.Helper()
	select {
	case <-p.exited:
		return p.exit().Status
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no exit", p.id)
		return 0
	}
}

// An exit that comes while the event announcing the process is not out yet
// (create, start, exec start gate it) is held, and published right after
// that event.
func TestExitHeldUntilStartEvent(t *testing.T) {
	h := newHarness(t, t.TempDir())
	task := h.task(t, "c1", statusCreated)
	p := task.init
	p.gate()
	note := p.heldNote
	h.kill(p)
	<-note
	if ev := h.rec.get(); len(ev) != 0 {
		t.Fatalf("published while gated: %v", ev)
	}
	if s := p.getStatus(); s != statusCreated {
		t.Fatalf("status while held: %s", s)
	}
	h.m.pub.publish("ns", TopicStart, &eventstypes.TaskStart{ContainerID: "c1"})
	task.release(p)
	h.rec.expect(t, TopicStart, TopicExit+" c1 137")
	if got := waitExit(t, p); got != 137 {
		t.Fatalf("Wait: %d", got)
	}
}

// The same for an exec: its exit never precedes /tasks/exec-started.
func TestExecExitHeldUntilExecStarted(t *testing.T) {
	h := newHarness(t, t.TempDir())
	task := h.task(t, "c1", statusRunning)
	e := h.exec(task, "e1", 201)
	e.gate()
	note := e.heldNote
	h.kill(e)
	<-note
	h.m.pub.publish("ns", TopicExecStarted, &eventstypes.TaskExecStarted{ContainerID: "c1", ExecID: "e1"})
	task.release(e)
	h.rec.expect(t, TopicExecStarted+" e1", TopicExit+" e1 137")
	task.mu.Lock()
	n := task.runningExecs
	task.mu.Unlock()
	if n != 0 {
		t.Fatalf("running execs after the exit: %d", n)
	}
}

// The init's exit is published after the exits of the execs that were
// running when it came, as runc.v2 orders them.
func TestInitExitAfterRunningExecs(t *testing.T) {
	h := newHarness(t, t.TempDir())
	task := h.task(t, "c1", statusRunning)
	e1 := h.exec(task, "e1", 201)
	e2 := h.exec(task, "e2", 202)
	h.kill(task.init)
	eventually(t, "init exit taken", func() bool {
		task.mu.Lock()
		defer task.mu.Unlock()
		return task.initExitHeld
	})
	if ev := h.rec.get(); len(ev) != 0 {
		t.Fatalf("init exit published before the execs': %v", ev)
	}
	h.kill(e2)
	h.kill(e1)
	h.rec.expect(t, TopicExit+" e2 137", TopicExit+" e1 137", TopicExit+" c1 137")
}

// Whichever paths report an exit (the monitor, restore, an early exit from
// a start), one /tasks/exit goes out per process.
func TestOneExitPerProcess(t *testing.T) {
	h := newHarness(t, t.TempDir())
	task := h.task(t, "c1", statusRunning)
	h.kill(task.init)
	h.kill(task.init)
	k := task.init.key()
	task.onExit(task.init, exitmon.Exit{Pid: k.Pid, Ident: k.Ident, Status: 0})
	h.rec.expect(t, TopicExit+" c1 137")
	time.Sleep(20 * time.Millisecond) // a second event would be late, not absent
	if ev := h.rec.get(); len(ev) != 1 {
		t.Fatalf("events: %v", ev)
	}
	if got := waitExit(t, task.init); got != 137 {
		t.Fatalf("Wait: %d (the first exit wins)", got)
	}
}

// An operation that gated a process and then failed hands the held exit on
// (Start failing, a created task's delete failing): it is never dropped.
func TestHeldExitNotDroppedOnFailure(t *testing.T) {
	h := newHarness(t, t.TempDir())
	task := h.task(t, "c1", statusCreated)
	p := task.init
	p.gate()
	note := p.heldNote
	h.kill(p)
	<-note
	task.release(p) // the failure path
	h.rec.expect(t, TopicExit+" c1 137")
	if s := p.getStatus(); s != statusStopped {
		t.Fatalf("status: %s", s)
	}
}

// Operations a state does not allow are refused before anything runs, with
// an error naming the state.
func TestIllegalTransitionsRefused(t *testing.T) {
	h := newHarness(t, t.TempDir())
	ctx := context.Background()
	created := h.task(t, "created", statusCreated)
	running := h.task(t, "running", statusRunning)
	stopped := h.task(t, "stopped", statusStopped)
	paused := h.task(t, "paused", statusPaused)
	ex := h.exec(running, "e1", 201)

	for _, c := range []struct {
		what string
		err  error
		want string
	}{
		{"start stopped", stopped.Start(ctx), "stopped"},
		{"start paused", paused.Start(ctx), "paused"},
		{"pause created", created.Pause(ctx), "created"},
		{"pause stopped", stopped.Pause(ctx), "stopped"},
		{"pause paused", paused.Pause(ctx), "paused"},
		{"resume running", running.Resume(ctx), "running"},
		{"resume created", created.Resume(ctx), "created"},
		{"update stopped", stopped.Update(ctx, nil, nil), "stopped"},
		{"start running exec", (&ExecProcess{p: ex}).Start(ctx), "running"},
	} {
		if c.err == nil {
			t.Errorf("%s: allowed", c.what)
		} else if !containsFold(c.err.Error(), c.want) {
			t.Errorf("%s: error %q does not name %q", c.what, c.err, c.want)
		}
	}
	if _, err := running.delete(ctx); err == nil || !containsFold(err.Error(), "running") {
		t.Errorf("delete running: %v", err)
	}
	if _, err := paused.delete(ctx); err == nil || !containsFold(err.Error(), "paused") {
		t.Errorf("delete paused: %v", err)
	}
	if _, err := (&ExecProcess{p: ex}).Delete(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("delete running exec: %v, want FailedPrecondition", err)
	}
	if ev := h.rec.get(); len(ev) != 0 {
		t.Errorf("refused operations published %v", ev)
	}
}

// After a restart, exits that happened meanwhile are handed over in the
// same order: the execs' first, the init's last.
func TestRestoreOrdersExits(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir)
	task := h.task(t, "c1", statusRunning)
	e1 := h.exec(task, "e1", 201)
	task.persist()
	for _, p := range []*process{task.init, e1} {
		k := p.key()
		h.ft.records[k] = exitmon.Exit{Pid: k.Pid, Ident: k.Ident, Status: 3 << 8, ExitedAt: time.Now()}
	}

	// A new manager on the same dirs, as after a daemon restart.
	h2 := newHarness(t, dir)
	h2.ft.records = h.ft.records
	if err := h2.m.restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	h2.rec.expect(t, TopicExit+" e1 3", TopicExit+" c1 3")
	restored, err := h2.m.Get("ns", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if got := waitExit(t, restored.init); got != 3 {
		t.Fatalf("restored init Wait: %d", got)
	}
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// Once containerd is told to stop, exits are no longer taken: no event goes
// out to clients that are being disconnected, nothing is recorded as
// published, and the exit stays for the next start's restore (its record
// stays pinned). That holds for an exit held by a gate before the signal.
func TestStoppingLeavesExits(t *testing.T) {
	h := newHarness(t, t.TempDir())
	task := h.task(t, "c1", statusRunning)
	e := h.exec(task, "e1", 201)
	task.persist()
	e.gate()
	note := e.heldNote
	h.kill(e)
	<-note // held before the signal

	h.m.stopping.Store(true)
	h.kill(task.init)
	task.release(e)
	time.Sleep(50 * time.Millisecond) // an event would be late, not absent
	if ev := h.rec.get(); len(ev) != 0 {
		t.Fatalf("published while stopping: %v", ev)
	}
	for _, p := range []*process{task.init, e} {
		if s := p.getStatus(); s != statusRunning {
			t.Errorf("%s: %s while stopping, want running (left to the next start)", p.id, s)
		}
	}
	st, err := readState(task.bundle.path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Init.Exited {
		t.Errorf("the init's exit was persisted while stopping")
	}
}
