//go:build linux

package integration

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// The parity tests run every scenario on both runtimes in one daemon and
// compare what a client observes: runc.v2 is the oracle.
var runtimes = []string{harness.EmbedPluginID, harness.RuncV2}

// env is one daemon with the test image, shared by the runtimes of a test.
type env struct {
	t   *testing.T
	d   *harness.Daemon
	ctx context.Context
	img containerd.Image
}

// newEnv starts a daemon serving both runtimes and checks for leaks (fds,
// mounts, bundles, processes, cgroups, BPF registrations and records) when
// the test ends.
func newEnv(t *testing.T) *env {
	t.Helper()
	d := harness.StartDaemon(t, harness.Options{LeakProbes: map[string]func(*harness.Daemon) ([]string, error){
		"bpf": bpfEntries,
	}})
	if !d.HasEmbed() {
		t.Fatalf("%s has no embed plugin", d.Binary)
	}
	ctx, cancel := context.WithTimeout(d.Context(), 5*time.Minute)
	t.Cleanup(cancel)
	e := &env{t: t, d: d, ctx: ctx, img: d.ImportTestImage(ctx)}
	// Warm up: each runtime's first container creates lasting daemon-wide
	// state (embed's OOM epoll, runc.v2's shim sockets dir) that is no leak.
	for _, rt := range runtimes {
		e.warmUp(t, rt)
	}
	check := d.LeakCheck(t)
	t.Cleanup(check)
	return e
}

// warmUp runs a container on rt until it is killed. It must be running
// when started: embed watches the cgroup of the init for OOM from there, and
// an init that exited at once is already reaped and has no cgroup to watch.
func (e *env) warmUp(t *testing.T, rt string) {
	t.Helper()
	c := e.container(t, rt, "warm", oci.WithProcessArgs("sleep", "3600"))
	task, ch := e.startTask(t, c)
	if err := task.Kill(e.ctx, syscall.SIGKILL); err != nil {
		t.Fatalf("warm-up kill: %v", err)
	}
	e.exitWithin(t, ch)
	if _, err := task.Delete(e.ctx); err != nil {
		t.Fatalf("warm-up delete: %v", err)
	}
}

// bothRuntimes runs fn for each runtime as a subtest and fails if what they
// observed differs. fn returns a comparable observation (no pids, times).
func bothRuntimes(t *testing.T, e *env, fn func(t *testing.T, rt string) any) {
	t.Helper()
	got := map[string]any{}
	for _, rt := range runtimes {
		rt := rt
		t.Run(shortName(rt), func(t *testing.T) { got[rt] = fn(t, rt) })
	}
	a, b := got[runtimes[0]], got[runtimes[1]]
	if a != nil && b != nil && !reflect.DeepEqual(a, b) {
		t.Errorf("embed and runc.v2 differ:\n  embed:   %+v\n  runc.v2: %+v", a, b)
	}
}

func shortName(rt string) string {
	if rt == harness.EmbedPluginID {
		return "embed"
	}
	return "runcv2"
}

var idSeq struct {
	sync.Mutex
	n int
}

// newID gives a container id unique in the daemon, readable in logs.
func newID(rt, name string) string {
	idSeq.Lock()
	defer idSeq.Unlock()
	idSeq.n++
	return fmt.Sprintf("%s-%s-%d", name, shortName(rt), idSeq.n)
}

// container creates a container of the test image on runtime rt; it is
// deleted (with its task) when the test ends.
func (e *env) container(t *testing.T, rt, name string, opts ...oci.SpecOpts) containerd.Container {
	t.Helper()
	return e.containerWith(t, rt, name, nil, opts...)
}

// outcome is what a client sees of a process that ran to its end.
type outcome struct {
	Code   uint32
	Stdout string
	Stderr string
}

// runToExit runs args in a new container on rt and returns its outcome,
// after deleting the task.
func (e *env) runToExit(t *testing.T, rt string, args []string, opts ...oci.SpecOpts) outcome {
	t.Helper()
	c := e.container(t, rt, "run", append(opts, oci.WithProcessArgs(args...))...)
	var stdout, stderr bytes.Buffer
	task, err := c.NewTask(e.ctx, cio.NewCreator(cio.WithStreams(nil, &stdout, &stderr)))
	if err != nil {
		t.Fatalf("new task: %v", err)
	}
	code := e.startAndWait(t, task)
	if _, err := task.Delete(e.ctx); err != nil {
		t.Fatalf("task delete: %v", err)
	}
	return outcome{Code: code, Stdout: stdout.String(), Stderr: stderr.String()}
}

// startAndWait starts a created process and returns its exit code.
func (e *env) startAndWait(t *testing.T, p containerd.Process) uint32 {
	t.Helper()
	ch, err := p.Wait(e.ctx)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if err := p.Start(e.ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	return e.exitCode(t, ch)
}

func (e *env) exitCode(t *testing.T, ch <-chan containerd.ExitStatus) uint32 {
	t.Helper()
	return exitBefore(t, ch, e.ctx, "timed out waiting for exit")
}

// exitBefore returns the exit code from ch, failing if ctx ends first or the
// exit has no time.
func exitBefore(t *testing.T, ch <-chan containerd.ExitStatus, ctx context.Context, msg string) uint32 {
	t.Helper()
	return exitStatusBefore(t, ch, ctx, msg).ExitCode()
}

// exitStatusBefore is exitBefore returning the whole status (with the exit
// time, which events must repeat).
func exitStatusBefore(t *testing.T, ch <-chan containerd.ExitStatus, ctx context.Context, msg string) *containerd.ExitStatus {
	t.Helper()
	select {
	case st := <-ch:
		_, at, err := st.Result()
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
		if at.IsZero() {
			t.Errorf("exit time not set")
		}
		return &st
	case <-ctx.Done():
		t.Fatal(msg)
	}
	return nil
}

// bpfEntries reports embed registrations and exit records left in the
// daemon's pinned maps (read with bpftool, which the tests install).
func bpfEntries(d *harness.Daemon) ([]string, error) {
	return countPinnedEntries(d.PinDir)
}

// lockedBuffer is a bytes.Buffer safe for the client's copy goroutine and
// the test reading it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
