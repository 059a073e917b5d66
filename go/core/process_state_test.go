//go:build linux

package core

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/embedshim/embedshim/go/exitmon"
)

// Unit tests of the process state machine (process_state.go, init_state.go,
// exec_state.go) on the fake tracker of exits_test.go, with a stand-in for
// runc (a shell script) where an operation has to succeed.

// fakeRunc makes task's runc a script that succeeds at everything; a
// `runc pause` waits, once dir/pausing exists, until dir/go does.
func fakeRunc(t *testing.T, task *Task, dir string) {
	t.Helper()
	script := filepath.Join(dir, "runc")
	body := "#!/bin/sh\nfor a; do case \"$a\" in pause)\n" +
		"  touch " + dir + "/pausing; while [ ! -e " + dir + "/go ]; do sleep 0.01; done;;\n" +
		"esac; done\nexit 0\n"
	if err := os.WriteFile(script, []byte(body), 0755); err != nil {
		t.Fatal(err)
	}
	task.runc.Command = script
}

// runcTask is a harness with one task, c1, in state status, whose runc is
// fakeRunc's (in dir).
func runcTask(t *testing.T, status procStatus) (*exitHarness, *Task, string) {
	dir := t.TempDir()
	h := newHarness(t, dir)
	task := h.task(t, "c1", status)
	fakeRunc(t, task, dir)
	return h, task, dir
}

// refusal checks that err is the state machine's refusal in state want,
// classed as errdefs says.
func refusal(t *testing.T, what string, err error, want procStatus) {
	t.Helper()
	var se *stateError
	switch {
	case err == nil:
		t.Errorf("%s: allowed in %s", what, want)
	case !errors.As(err, &se):
		t.Errorf("%s: %v (%T) is not a state refusal", what, err, err)
	case se.state != want:
		t.Errorf("%s: refused naming %s, want %s", what, se.state, want)
	case !errdefs.IsUnknown(err) && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err):
		t.Errorf("%s: %v has no errdefs class", what, err)
	}
}

// Every operation a state of the init does not allow is refused by that
// state, with an errdefs class, and changes nothing.
func TestInitStateRefusals(t *testing.T) {
	h := newHarness(t, t.TempDir())
	ctx := context.Background()
	ops := map[string]func(*Task) error{
		"start":  func(k *Task) error { return k.Start(ctx) },
		"delete": func(k *Task) error { _, err := k.delete(ctx); return err },
		"pause":  func(k *Task) error { return k.Pause(ctx) },
		"resume": func(k *Task) error { return k.Resume(ctx) },
		"update": func(k *Task) error { return k.Update(ctx, nil, nil) },
		"checkpoint": func(k *Task) error {
			return k.Checkpoint(ctx, t.TempDir(), nil)
		},
		"exec": func(k *Task) error {
			_, err := k.Exec(ctx, "e1", ExecOpts{Spec: []byte("{}")})
			return err
		},
		"kill": func(k *Task) error { return k.Kill(ctx, uint32(syscall.SIGTERM), false) },
	}
	for _, c := range []struct {
		state   procStatus
		refuses []string
	}{
		{statusCreated, []string{"pause", "resume", "checkpoint"}},
		{statusRunning, []string{"start", "delete", "resume"}},
		{statusPausing, []string{"start", "delete", "pause", "resume", "exec"}},
		{statusPaused, []string{"start", "delete", "pause", "exec"}},
		{statusStopped, []string{"start", "pause", "resume", "update", "checkpoint", "exec", "kill"}},
		{statusDeleted, []string{"start", "delete", "pause", "resume", "update", "checkpoint", "exec", "kill"}},
	} {
		task := h.task(t, "t-"+string(c.state), c.state)
		for _, op := range c.refuses {
			refusal(t, string(c.state)+" "+op, ops[op](task), c.state)
			if s := task.init.getStatus(); s != c.state {
				t.Errorf("%s %s: moved to %s", c.state, op, s)
			}
		}
	}
	// runc.v2's words, which clients see, are kept.
	paused := h.task(t, "words", statusPaused)
	if err := paused.Pause(ctx); err.Error() != "cannot pause a paused container" {
		t.Errorf("pause paused: %q", err)
	}
	if ev := h.rec.get(); len(ev) != 0 {
		t.Errorf("refused operations published %v", ev)
	}
}

// The same for an exec's states.
func TestExecStateRefusals(t *testing.T) {
	h := newHarness(t, t.TempDir())
	ctx := context.Background()
	task := h.task(t, "c1", statusRunning)
	for _, c := range []struct {
		state   procStatus
		refuses []string
	}{
		{statusRunning, []string{"start", "delete"}},
		{statusStopped, []string{"start", "kill"}},
		{statusDeleted, []string{"start", "delete", "kill"}},
	} {
		e := &ExecProcess{p: h.exec(task, "e-"+string(c.state), 300)}
		h.track(e.p, 300, c.state)
		for _, op := range c.refuses {
			var err error
			switch op {
			case "start":
				err = e.Start(ctx)
			case "delete":
				_, err = e.Delete(ctx)
			case "kill":
				err = e.Kill(ctx, uint32(syscall.SIGTERM), false)
			}
			refusal(t, "exec "+string(c.state)+" "+op, err, c.state)
		}
	}
	if _, err := (&ExecProcess{p: task.execs["e-running"]}).Delete(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("delete running exec: %v, want FailedPrecondition", err)
	}
}

// Only the moves in nextStates are made; any other leaves the state as it
// was.
func TestTransitionTable(t *testing.T) {
	h := newHarness(t, t.TempDir())
	task := h.task(t, "c1", statusCreated)
	all := []procStatus{statusCreated, statusRunning, statusPausing, statusPaused, statusStopped, statusDeleted}
	for _, from := range all {
		for _, to := range all {
			p := newProcess(task, "p", true, stdioPaths{})
			fromState, _ := restoredState(p, from, nil)
			toState, _ := restoredState(p, to, nil)
			p.mu.Lock()
			p.setStateLocked(fromState)
			p.mu.Unlock()
			moved := p.transition(fromState, toState)
			if moved != transitionAllowed(from, to) {
				t.Errorf("%s -> %s: moved %v", from, to, moved)
			}
			if got := p.getStatus(); !moved && got != from || moved && got != to {
				t.Errorf("%s -> %s: now %s", from, to, got)
			}
		}
	}
	for _, bad := range [][2]procStatus{
		{statusRunning, statusCreated}, {statusStopped, statusRunning}, {statusDeleted, statusStopped},
		{statusPaused, statusPausing}, {statusCreated, statusPaused}, {statusRunning, statusDeleted},
	} {
		if transitionAllowed(bad[0], bad[1]) {
			t.Errorf("%s -> %s allowed", bad[0], bad[1])
		}
	}
}

// The allowed operations move the init through its states: created,
// running, paused, running, stopped (by its exit, with the exit facts),
// deleted (keeping them).
func TestInitLifecycle(t *testing.T) {
	h, task, dir := runcTask(t, statusCreated)
	ctx := context.Background()
	os.WriteFile(filepath.Join(dir, "go"), nil, 0600) // pause does not wait

	step := func(what string, err error, want procStatus) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if s := task.init.getStatus(); s != want {
			t.Fatalf("%s: state %s, want %s", what, s, want)
		}
	}
	step("start", task.Start(ctx), statusRunning)
	step("pause", task.Pause(ctx), statusPaused)
	step("resume", task.Resume(ctx), statusRunning)
	task.runc.Command = "/bin/false"
	if err := task.Pause(ctx); err == nil {
		t.Fatal("pause with a failing runc succeeded")
	}
	step("failed pause", nil, statusRunning)

	h.kill(task.init)
	if got := waitExit(t, task.init); got != 137 {
		t.Fatalf("Wait: %d", got)
	}
	step("exit", nil, statusStopped)
	if f := task.init.snapshot(); !f.Exited || !f.Published || f.ExitStatus != 137 {
		t.Fatalf("stopped state's exit: %+v", f)
	}
	fakeRunc(t, task, dir)
	exit, err := task.delete(ctx)
	step("delete", err, statusDeleted)
	if exit.Status != 137 || exit.Timestamp.IsZero() {
		t.Fatalf("delete returned %+v, want the exit", exit)
	}
	if got := task.init.exit(); got.Status != 137 {
		t.Fatalf("deleted state lost the exit: %+v", got)
	}
	h.rec.expect(t, TopicStart, TopicPaused, TopicResumed, TopicExit+" c1 137", TopicDelete)
}

// A task deleted before it started is deleted, and the exit that comes
// after (runc-init killed) is kept by the deleted state and wakes Wait.
func TestDeleteCreatedThenExit(t *testing.T) {
	h, task, _ := runcTask(t, statusCreated)
	ctx := context.Background()
	if _, err := task.delete(ctx); err != nil {
		t.Fatal(err)
	}
	if s := task.init.getStatus(); s != statusDeleted {
		t.Fatalf("state %s", s)
	}
	if task.init.hasExited() {
		t.Fatal("Wait returns before the exit")
	}
	// Its route is gone with the delete: in the daemon, the exit is held
	// by the gate meanwhile and handed on by release, as here.
	k := task.init.key()
	task.onExit(task.init, exitmon.Exit{Pid: k.Pid, Ident: k.Ident, Status: uint32(syscall.SIGKILL), ExitedAt: time.Now()})
	if got := waitExit(t, task.init); got != 137 {
		t.Fatalf("Wait: %d", got)
	}
	if s := task.init.getStatus(); s != statusDeleted {
		t.Fatalf("exit after delete moved it to %s", s)
	}
	h.rec.expect(t, TopicDelete, TopicExit+" c1 137")
}

// An exec whose start failed stays created with Wait returning; it can be
// deleted. A stopped exec's delete keeps its exit.
func TestExecLifecycle(t *testing.T) {
	h := newHarness(t, t.TempDir())
	ctx := context.Background()
	task := h.task(t, "c1", statusRunning)
	failed, err := task.Exec(ctx, "e1", ExecOpts{Spec: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	if err := failed.Start(ctx); err == nil { // the fake tracker runs no exec
		t.Fatal("start succeeded")
	}
	if s := failed.p.getStatus(); s != statusCreated || !failed.p.hasExited() {
		t.Fatalf("failed start: %s, Wait returns %v", s, failed.p.hasExited())
	}
	if _, err := failed.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if s := failed.p.getStatus(); s != statusDeleted {
		t.Fatalf("deleted: %s", s)
	}

	e := &ExecProcess{p: h.exec(task, "e2", 201)}
	h.kill(e.p)
	if got := waitExit(t, e.p); got != 137 {
		t.Fatalf("Wait: %d", got)
	}
	exit, err := e.Delete(ctx)
	if err != nil || exit.Status != 137 {
		t.Fatalf("delete: %+v %v", exit, err)
	}
	if s := e.p.getStatus(); s != statusDeleted {
		t.Fatalf("deleted: %s", s)
	}
}

// Pause holds the init's operation lock across runc pause; an exit that
// comes meanwhile does not wait for it (the exit loop serves every task)
// and wins: the init is stopped, and stays stopped when runc pause ends.
// Kill does not wait for it either.
func TestExitDuringPauseWins(t *testing.T) {
	h, task, dir := runcTask(t, statusRunning)
	ctx := context.Background()

	paused := make(chan error, 1)
	go func() { paused <- task.Pause(ctx) }()
	eventually(t, "runc pause running", func() bool {
		_, err := os.Stat(filepath.Join(dir, "pausing"))
		return err == nil
	})
	if task.init.op.TryLock() {
		t.Fatal("the operation lock is not held across runc pause")
	}
	if s := task.init.getStatus(); s != statusPausing {
		t.Fatalf("state during runc pause: %s", s)
	}
	// No process is behind pid 100: the signal fails, but at once.
	if err := task.Kill(ctx, uint32(syscall.SIGTERM), false); !errdefs.IsNotFound(err) {
		t.Fatalf("kill while pausing: %v", err)
	}
	h.kill(task.init)
	h.rec.expect(t, TopicExit+" c1 137")
	if s := task.init.getStatus(); s != statusStopped {
		t.Fatalf("state after the exit: %s", s)
	}

	os.WriteFile(filepath.Join(dir, "go"), nil, 0600)
	select {
	case err := <-paused:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pause did not return")
	}
	if s := task.init.getStatus(); s != statusStopped {
		t.Fatalf("state after runc pause ended: %s", s)
	}
	h.rec.expect(t, TopicExit+" c1 137", TopicPaused)
}
