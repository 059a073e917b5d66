//go:build linux

package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/oci"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

// Helpers of the task parity tests (parity_task_*_test.go and the lifecycle
// tests).

// errClass names the errdefs class of err as a client sees it, so that
// errors can be compared across runtimes without their text.
func errClass(err error) string {
	if _, ok := grpcstatus.FromError(err); ok && err != nil {
		err = errdefs.FromGRPC(err)
	}
	switch {
	case err == nil:
		return "ok"
	case errdefs.IsNotFound(err):
		return "NotFound"
	case errdefs.IsAlreadyExists(err):
		return "AlreadyExists"
	case errdefs.IsFailedPrecondition(err):
		return "FailedPrecondition"
	case errdefs.IsInvalidArgument(err):
		return "InvalidArgument"
	case errdefs.IsNotImplemented(err):
		return "NotImplemented"
	case errdefs.IsUnavailable(err):
		return "Unavailable"
	case errdefs.IsCanceled(err), errors.Is(err, context.Canceled):
		return "Canceled"
	case errdefs.IsDeadlineExceeded(err), errors.Is(err, context.DeadlineExceeded):
		return "DeadlineExceeded"
	case errdefs.IsConflict(err):
		return "Conflict"
	}
	// Errors a client returns unconverted (e.g. Wait's) keep their gRPC code.
	if st, ok := grpcstatus.FromError(err); ok && st.Code() != codes.Unknown {
		return "grpc:" + st.Code().String()
	}
	return "Unknown"
}

// containerWith is env.container with extra container options (e.g. a
// runtime with options, which replaces the plain one).
func (e *env) containerWith(t *testing.T, rt, name string, copts []containerd.NewContainerOpts, opts ...oci.SpecOpts) containerd.Container {
	t.Helper()
	return e.containerID(t, rt, newID(rt, name), copts, opts...)
}

// containerID creates a container with an exact id.
func (e *env) containerID(t *testing.T, rt, id string, copts []containerd.NewContainerOpts, opts ...oci.SpecOpts) containerd.Container {
	t.Helper()
	specOpts := append([]oci.SpecOpts{oci.WithImageConfig(e.img)}, opts...)
	all := append([]containerd.NewContainerOpts{
		containerd.WithNewSnapshot(id+"-snap", e.img),
		containerd.WithNewSpec(specOpts...),
		containerd.WithRuntime(rt, nil),
	}, copts...)
	c, err := e.d.Client().NewContainer(e.ctx, id, all...)
	if err != nil {
		t.Fatalf("new container %s: %v", id, err)
	}
	// Clean-up goes through the client current at the end of the test:
	// the daemon may have been restarted since, closing this one.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(e.d.Context(), 30*time.Second)
		defer cancel()
		cl := e.d.Client()
		if cl == nil {
			return
		}
		c, err := cl.LoadContainer(ctx, id)
		if err != nil {
			return
		}
		if task, err := c.Task(ctx, nil); err == nil {
			task.Delete(ctx, containerd.WithProcessKill)
		}
		c.Delete(ctx, containerd.WithSnapshotCleanup)
	})
	return c
}

// newTask creates the container's task with its output in out (may be nil).
func (e *env) newTask(t *testing.T, c containerd.Container, out *lockedBuffer) containerd.Task {
	t.Helper()
	creator := cio.NullIO
	if out != nil {
		creator = cio.NewCreator(cio.WithStreams(nil, out, out))
	}
	task, err := c.NewTask(e.ctx, creator)
	if err != nil {
		t.Fatalf("new task: %v", err)
	}
	return task
}

// startTask creates and starts a task and returns it with its exit channel.
func (e *env) startTask(t *testing.T, c containerd.Container) (containerd.Task, <-chan containerd.ExitStatus) {
	t.Helper()
	task := e.newTask(t, c, nil)
	ch, err := task.Wait(e.ctx)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if err := task.Start(e.ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	return task, ch
}

// exec starts args as exec id in task and returns it with its exit channel.
func (e *env) exec(t *testing.T, c containerd.Container, task containerd.Task, id string, out *lockedBuffer, args ...string) (containerd.Process, <-chan containerd.ExitStatus) {
	t.Helper()
	spec, err := c.Spec(e.ctx)
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	pspec := *spec.Process
	pspec.Args = args
	creator := cio.NullIO
	if out != nil {
		creator = cio.NewCreator(cio.WithStreams(nil, out, out))
	}
	p, err := task.Exec(e.ctx, id, &pspec, creator)
	if err != nil {
		t.Fatalf("exec %s: %v", id, err)
	}
	ch, err := p.Wait(e.ctx)
	if err != nil {
		t.Fatalf("wait exec: %v", err)
	}
	if err := p.Start(e.ctx); err != nil {
		t.Fatalf("start exec %s: %v", id, err)
	}
	return p, ch
}

// execOutput runs args as an exec to its end and returns code and output.
func (e *env) execOutput(t *testing.T, c containerd.Container, task containerd.Task, id string, args ...string) (uint32, string) {
	t.Helper()
	var out lockedBuffer
	p, ch := e.exec(t, c, task, id, &out, args...)
	code := e.exitWithin(t, ch)
	if _, err := p.Delete(e.ctx); err != nil {
		t.Fatalf("delete exec %s: %v", id, err)
	}
	return code, out.String()
}

// status is a task's or process's status as a comparable string.
func status(t *testing.T, ctx context.Context, p containerd.Process) string {
	t.Helper()
	st, err := p.Status(ctx)
	if err != nil {
		return "error:" + errClass(err)
	}
	if st.Status == containerd.Stopped {
		return fmt.Sprintf("%s(%d)", st.Status, st.ExitStatus)
	}
	return string(st.Status)
}

// waitFile waits until a file in the container's root (seen through the
// init's /proc/<pid>/root) exists and returns its content.
func waitFile(t *testing.T, pid uint32, path string, timeout time.Duration) string {
	t.Helper()
	full := filepath.Join(fmt.Sprintf("/proc/%d/root", pid), path)
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(full)
		if err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not there after %v: %v", full, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countTopic counts the events of a topic (any detail) in a log.
func countTopic(evs []string, topic string) int {
	n := 0
	for _, ev := range evs {
		if ev == topic || strings.HasPrefix(ev, topic+":") {
			n++
		}
	}
	return n
}

// checkOneExitPerProcess fails if a process got more than one /tasks/exit.
func checkOneExitPerProcess(t *testing.T, evs []string) {
	t.Helper()
	seen := map[string]int{}
	for _, ev := range evs {
		if !strings.HasPrefix(ev, "/tasks/exit") {
			continue
		}
		who := "init"
		if i := strings.Index(ev, ":exec="); i >= 0 {
			who = strings.SplitN(ev[i+len(":exec="):], ":", 2)[0]
		}
		seen[who]++
		if seen[who] > 1 {
			t.Errorf("more than one /tasks/exit for %s: %v", who, evs)
		}
	}
}

// both is bothRuntimes that also logs each runtime's observation (-v).
func both(t *testing.T, e *env, fn func(t *testing.T, rt string) any) {
	t.Helper()
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		o := fn(t, rt)
		t.Logf("observed: %+v", o)
		return o
	})
}

// exitWithin is env.exitCode bounded by a short timeout, so that a lost exit
// fails one subtest instead of eating the whole test's context.
func (e *env) exitWithin(t *testing.T, ch <-chan containerd.ExitStatus) uint32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
	defer cancel()
	return exitBefore(t, ch, ctx, "no exit within 20s")
}

// exitStatusWithin is exitWithin returning the whole status.
func (e *env) exitStatusWithin(t *testing.T, ch <-chan containerd.ExitStatus) *containerd.ExitStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
	defer cancel()
	return exitStatusBefore(t, ch, ctx, "no exit within 20s")
}
