//go:build linux

package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// ioTimeout bounds every step that waits for a process's stdio to reach EOF
// (process/task Delete waits for it): a FIFO end left open by the runtime
// makes the test fail clearly instead of hanging.
const ioTimeout = 30 * time.Second

// subtestTimeout bounds each runtime's part of a test (every client call
// and wait in it): a hang fails with "context deadline exceeded" instead of
// running into the daemon-wide 5 minutes.
const subtestTimeout = 90 * time.Second

// boundedEnv returns e with a context that ends after d (or with the test).
func (e *env) boundedEnv(t *testing.T, d time.Duration) *env {
	ctx, cancel := context.WithTimeout(e.ctx, d)
	t.Cleanup(cancel)
	b := *e
	b.ctx = ctx
	return &b
}

// withinOrFail runs fn and fails the test if it has not returned after d. fn must
// not call t.Fatal (it may run on another goroutine).
func withinOrFail(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: not done after %s (stdio not closed at exit?)", what, d)
	}
}

// sleeperTask starts `sleep 3600` (or args) in a new container on rt and returns
// the running task. When the test ends it is killed, awaited and deleted,
// with failures reported (a task that cannot be deleted is a finding).
func (e *env) sleeperTask(t *testing.T, rt string, opts ...oci.SpecOpts) (containerd.Container, containerd.Task) {
	t.Helper()
	c := e.container(t, rt, "sleeper", append([]oci.SpecOpts{oci.WithProcessArgs("sleep", "3600")}, opts...)...)
	task, err := c.NewTask(e.ctx, cio.NullIO)
	if err != nil {
		t.Fatalf("new task: %v", err)
	}
	t.Cleanup(func() { e.killAndDelete(t, task) })
	if err := task.Start(e.ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	return c, task
}

// killAndDelete SIGKILLs a task's init, waits for its exit and deletes it.
func (e *env) killAndDelete(t *testing.T, task containerd.Task) {
	t.Helper()
	ctx, cancel := context.WithTimeout(e.d.Context(), time.Minute)
	defer cancel()
	ch, err := task.Wait(ctx)
	if err != nil {
		t.Errorf("cleanup: wait %s: %v", task.ID(), err)
		return
	}
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
		t.Errorf("cleanup: kill %s: %v", task.ID(), err)
	}
	start := time.Now()
	select {
	case <-ch:
		if d := time.Since(start); d > 5*time.Second {
			t.Logf("cleanup: %s exited %s after SIGKILL", task.ID(), d.Round(time.Millisecond))
		}
	case <-ctx.Done():
		t.Errorf("cleanup: %s did not exit within a minute of SIGKILL", task.ID())
		return
	}
	if _, err := task.Delete(ctx); err != nil {
		t.Errorf("cleanup: delete %s: %v", task.ID(), err)
	}
}

// execSpec is the container's process spec with other args (and terminal).
func (e *env) execSpec(t *testing.T, c containerd.Container, tty bool, args ...string) *specs.Process {
	t.Helper()
	spec, err := c.Spec(e.ctx)
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	p := *spec.Process
	p.Args = args
	p.Terminal = tty
	return &p
}

// execToExit runs an exec to its end with creator as its IO and returns its
// exit code, after deleting it (which waits for its stdio to end).
func (e *env) execToExit(t *testing.T, c containerd.Container, task containerd.Task, id string, ps *specs.Process, creator cio.Creator) uint32 {
	t.Helper()
	p, err := task.Exec(e.ctx, id, ps, creator)
	if err != nil {
		t.Fatalf("exec %s: %v", id, err)
	}
	code := e.startAndWait(t, p)
	// The client's copies end (EOF) at the exit, before any delete.
	withinOrFail(t, ioTimeout, "exec stdio EOF after exit", p.IO().Wait)
	var derr error
	withinOrFail(t, ioTimeout, "exec delete "+id, func() { _, derr = p.Delete(e.ctx) })
	if derr != nil {
		t.Fatalf("exec delete %s: %v", id, derr)
	}
	return code
}

// execOutcome runs args as an exec with captured stdout/stderr.
func (e *env) execOutcome(t *testing.T, c containerd.Container, task containerd.Task, id string, args ...string) outcome {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := e.execToExit(t, c, task, id, e.execSpec(t, c, false, args...),
		cio.NewCreator(cio.WithStreams(nil, &stdout, &stderr)))
	return outcome{Code: code, Stdout: stdout.String(), Stderr: stderr.String()}
}

// execLeftovers lists the daemon's processes that are neither the container's
// init (sleep), a runc.v2 shim nor zombies: what an exec may have left
// behind (an exec helper, runc, the exec'd process itself).
//
// An exit is reported from the exit tracepoint, when the process may still
// be tearing itself down (state R in do_exit on a loaded machine): what is
// left after a bounded settle is a leftover.
func execLeftovers(d *harness.Daemon) []string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var out []string
		for _, p := range d.Processes() {
			if p.State == "Z" || p.Comm == "sleep" || strings.HasPrefix(p.Comm, "containerd-shim") {
				continue
			}
			out = append(out, p.String())
		}
		if len(out) == 0 || time.Now().After(deadline) {
			return out
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// instantExecStreams is how many exec loops run side by side.
const instantExecStreams = 4

// runExecBounded starts a created exec, waits for its exit and deletes it, without
// calling t (it runs on worker goroutines). Delete waits for the stdio.
func runExecBounded(ctx context.Context, p containerd.Process) (uint32, error) {
	ctx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	ch, err := p.Wait(ctx)
	if err != nil {
		return 0, fmt.Errorf("wait: %w", err)
	}
	if err := p.Start(ctx); err != nil {
		return 0, fmt.Errorf("start: %w", err)
	}
	var st containerd.ExitStatus
	select {
	case st = <-ch:
	case <-ctx.Done():
		return 0, fmt.Errorf("no exit after %s", ioTimeout)
	}
	code, at, err := st.Result()
	if err != nil {
		return 0, err
	}
	if at.IsZero() {
		return 0, fmt.Errorf("exit time not set")
	}
	if _, err := p.Delete(ctx); err != nil {
		return code, fmt.Errorf("delete: %w", err)
	}
	return code, nil
}

// Instant-exit execs: every status right, many times in a row (1000 for
// embed, where a lost race would show; 50 for the runc.v2 oracle), and no
// helper or runc process left afterwards.
func TestParityExecInstantExits(t *testing.T) {
	e := newEnv(t)
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		e := e.boundedEnv(t, 5*time.Minute) // 1000 execs take 1.5-4 min here
		n := 50
		if rt == harness.EmbedPluginID {
			n = 1000
			if testing.Short() {
				n = 200
			}
		}
		c, task := e.sleeperTask(t, rt)
		spec := map[string]*specs.Process{
			"false": e.execSpec(t, c, false, "false"),
			"true":  e.execSpec(t, c, false, "true"),
		}
		// Distinct codes seen per command: one wrong status among the
		// 1000 makes the set differ from the oracle's. A few streams run
		// side by side (each one exec after the other): faster, and the
		// registrations of concurrent execs interleave.
		var mu sync.Mutex
		seen := map[string]map[uint32]int{"false": {}, "true": {}}
		var done []time.Time // completion times, to see a slowdown over the run
		start := time.Now()
		var wg sync.WaitGroup
		for w := 0; w < instantExecStreams; w++ {
			w := w
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += instantExecStreams {
					cmd := "false"
					if i%2 == 1 {
						cmd = "true"
					}
					p, err := task.Exec(e.ctx, fmt.Sprintf("x%d", i), spec[cmd], cio.NullIO)
					if err != nil {
						t.Errorf("exec %d: %v", i, err)
						return
					}
					code, err := runExecBounded(e.ctx, p)
					if err != nil {
						t.Errorf("exec %d (%s): %v", i, cmd, err)
						return
					}
					mu.Lock()
					seen[cmd][code]++
					done = append(done, time.Now())
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		tenth := len(done) / 10
		t.Logf("%d execs in %s (%d streams); first tenth %s, last tenth %s", n,
			time.Since(start).Round(time.Millisecond), instantExecStreams,
			done[tenth-1].Sub(start).Round(time.Millisecond), done[len(done)-1].Sub(done[len(done)-1-tenth]).Round(time.Millisecond))
		obs := map[string][]uint32{}
		for cmd, codes := range seen {
			for code, k := range codes {
				obs[cmd] = append(obs[cmd], code)
				want := uint32(1)
				if cmd == "true" {
					want = 0
				}
				if code != want {
					t.Errorf("exec %s: %d of %d returned %d", cmd, k, n/2, code)
				}
			}
			sort.Slice(obs[cmd], func(i, j int) bool { return obs[cmd][i] < obs[cmd][j] })
		}
		if rt == harness.EmbedPluginID {
			if left := execLeftovers(e.d); len(left) > 0 {
				t.Errorf("processes left after %d execs:\n  %s", n, strings.Join(left, "\n  "))
			}
		}
		if st, err := task.Status(e.ctx); err != nil || st.Status != containerd.Running {
			t.Errorf("task after execs: %+v %v", st, err)
		}
		return obs
	})
}

// Exit codes and output of execs, incl. a signal, with the event sequence of
// each exec.
func TestParityExecExitCodesAndEvents(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		id   string
		args []string
	}{
		{"exit42", []string{"sh", "-c", "exit 42"}},
		{"sigkill", []string{"sh", "-c", "kill -9 $$"}},
		{"sigterm", []string{"sh", "-c", "kill -TERM $$"}},
		{"output", []string{"sh", "-c", "echo out; echo err >&2; exit 3"}},
		{"true", []string{"true"}},
	}
	type obs struct {
		Outcomes map[string]outcome
		Events   []string
	}
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		e := e.boundedEnv(t, subtestTimeout)
		c, task := e.sleeperTask(t, rt)
		log := e.recordEvents(t, c)
		o := obs{Outcomes: map[string]outcome{}}
		for _, cs := range cases {
			o.Outcomes[cs.id] = e.execOutcome(t, c, task, cs.id, cs.args...)
		}
		// Recorded from after the init's start: only exec events compare.
		var want []string
		for _, cs := range cases {
			want = append(want, "/tasks/exit:exec="+cs.id)
		}
		o.Events = dropTopics(log.Settle(want...), "/tasks/create", "/tasks/start")
		t.Logf("events: %v", o.Events)
		return o
	})
}

// An exec with a terminal: exit code, output (with the tty's \r\n) and a
// resize seen by the exec (`stty size` prints "rows cols").
func TestParityExecTTY(t *testing.T) {
	e := newEnv(t)
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		e := e.boundedEnv(t, subtestTimeout)
		c, task := e.sleeperTask(t, rt)
		var out lockedBuffer
		inR, inW := io.Pipe()
		defer inW.Close()
		ps := e.execSpec(t, c, true, "sh", "-c", "test -t 0 && test -t 1 && echo tty; read x; stty size; exit 7")
		p, err := task.Exec(e.ctx, "tty", ps, cio.NewCreator(cio.WithStreams(inR, &out, nil), cio.WithTerminal))
		if err != nil {
			t.Fatalf("exec: %v", err)
		}
		ch, err := p.Wait(e.ctx)
		if err != nil {
			t.Fatalf("wait: %v", err)
		}
		if err := p.Start(e.ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		waitForOutput(t, &out, "tty\r\n")
		if err := p.Resize(e.ctx, 123, 45); err != nil {
			t.Fatalf("resize: %v", err)
		}
		io.WriteString(inW, "go\n")
		code := e.exitCode(t, ch)
		inW.Close()
		withinOrFail(t, ioTimeout, "exec delete", func() { _, err = p.Delete(e.ctx) })
		if err != nil {
			t.Fatalf("exec delete: %v", err)
		}
		return outcome{Code: code, Stdout: out.String()}
	})
}

// Large exec output (8 MB on stdout, 1 MB on stderr) fully received.
func TestParityExecLargeOutput(t *testing.T) {
	e := newEnv(t)
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		e := e.boundedEnv(t, subtestTimeout)
		c, task := e.sleeperTask(t, rt)
		var stdout, stderr byteDigest
		code := e.execToExit(t, c, task, "large", e.execSpec(t, c, false, "sh", "-c",
			"yes 0123456789abcdef | head -c 8000000; yes err | head -c 1000000 >&2; exit 5"),
			cio.NewCreator(cio.WithStreams(nil, &stdout, &stderr)))
		if stdout.n != 8000000 {
			t.Errorf("stdout: %d bytes, want 8000000", stdout.n)
		}
		return []string{fmt.Sprint(code), stdout.String(), stderr.String()}
	})
}

// byteDigest counts and hashes what is written to it.
type byteDigest struct {
	mu sync.Mutex
	n  int
	h  hash.Hash
}

func (d *byteDigest) Write(b []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.h == nil {
		d.h = sha256.New()
	}
	d.n += len(b)
	return d.h.Write(b)
}

func (d *byteDigest) String() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.h == nil {
		d.h = sha256.New()
	}
	return fmt.Sprintf("%d bytes sha256 %x", d.n, d.h.Sum(nil))
}

// waitForOutput waits until b contains s.
func waitForOutput(t *testing.T, b *lockedBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("output %q: no %q after 10s", b.String(), s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
