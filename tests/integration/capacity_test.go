//go:build linux

package integration

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// A full tracking map gives a clear error at create time and leaves nothing
// behind; deleting a task makes room again. (embed only: runc.v2 has no such
// limit.)
func TestCapacity(t *testing.T) {
	e := newCapacityEnv(t, 3, 3*time.Minute)
	d, ctx, rt := e.d, e.ctx, harness.EmbedPluginID

	var tasks []containerd.Task
	for i := 0; i < 3; i++ {
		c := e.container(t, rt, "cap", oci.WithProcessArgs("sleep", "3600"))
		tasks = append(tasks, e.rsStartTask(t, c, nil))
	}
	waitSleeping(t, tasks...)
	entries, err := bpfEntries(d)
	if err != nil {
		t.Fatal(err)
	}
	// One registration per task, no exit record: a count that is off is a
	// leak (or a lost registration) before any refusal is tested.
	if len(entries) != 3 {
		t.Fatalf("BPF entries with 3 tasks: %v, want 3 registrations", entries)
	}

	// The fourth task does not fit. Its snapshot (client-side) is removed
	// with its container; nothing of the runtime may stay.
	c4 := e.container(t, rt, "cap4", oci.WithProcessArgs("sleep", "3600"))
	inner := d.LeakCheck(t)
	_, err = c4.NewTask(ctx, cio.NullIO)
	if err == nil {
		t.Fatalf("4th task created with capacity 3")
	}
	if !strings.Contains(err.Error(), "tracking capacity 3 reached") {
		t.Errorf("4th task: error %q does not say \"tracking capacity 3 reached\"", err)
	}
	if c := errClass(err); c != "Unavailable" {
		t.Errorf("4th task: error class %s, want Unavailable: %v", c, err)
	}
	inner() // no bundle, mount, runc state, process or BPF entry left

	// An exec does not fit either, and says so.
	c0, err := tasks[0].Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pspec := *c0.Process
	pspec.Args = []string{"sleep", "3600"}
	inner = d.LeakCheck(t)
	if p, err := tasks[0].Exec(ctx, "over", &pspec, cio.NullIO); err != nil {
		t.Errorf("exec add: %v", err)
	} else if err := p.Start(ctx); err == nil {
		t.Errorf("exec started with capacity 3 used up")
		p.Kill(ctx, syscall.SIGKILL)
		if ch, err := p.Wait(ctx); err == nil {
			<-ch
		}
		p.Delete(ctx)
	} else {
		if !strings.Contains(err.Error(), "tracking capacity 3 reached") {
			t.Errorf("exec over capacity: error %q does not say \"tracking capacity 3 reached\"", err)
		}
		// Unavailable, as the create over capacity: a client may retry.
		if c := errClass(err); c != "Unavailable" {
			t.Errorf("exec over capacity: class %s, want Unavailable: %v", c, err)
		}
		if _, err := p.Delete(ctx); err != nil {
			t.Errorf("delete of the failed exec: %v", err)
		}
	}
	inner()

	// Deleting one task makes room.
	ch, err := tasks[0].Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tasks[0].Kill(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-ch
	if _, err := tasks[0].Delete(ctx); err != nil {
		t.Fatal(err)
	}
	t4 := e.rsStartTask(t, c4, nil)
	if st, err := t4.Status(ctx); err != nil || st.Status != containerd.Running {
		t.Errorf("task created after a delete: %v %v", st.Status, err)
	}
	// And after a restart the limit (and the count) is the same.
	if err := d.Restart(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if e.img, err = d.Client().GetImage(ctx, e.img.Name()); err != nil {
		t.Fatal(err)
	}
	c5 := e.container(t, rt, "cap5", oci.WithProcessArgs("sleep", "3600"))
	if _, err := c5.NewTask(ctx, cio.NullIO); err == nil || !strings.Contains(err.Error(), "tracking capacity 3 reached") || errClass(err) != "Unavailable" {
		t.Errorf("task over capacity after restart: %v (class %s), want Unavailable naming the capacity", err, errClass(err))
	}
	if entries, err := bpfEntries(d); err != nil || len(entries) != 3 {
		t.Errorf("BPF entries after restart: %v %v, want 3 registrations", entries, err)
	}
}

// newCapacityEnv starts a daemon whose embed plugin tracks at most capacity
// processes, warms embed up (daemon-wide lasting state) and checks for leaks
// when the test ends; its context ends after timeout.
func newCapacityEnv(t *testing.T, capacity int, timeout time.Duration) *env {
	t.Helper()
	d := harness.StartDaemon(t, harness.Options{
		Embed:       harness.EmbedConfigure,
		EmbedConfig: fmt.Sprintf("capacity = %d", capacity),
		LeakProbes:  map[string]func(*harness.Daemon) ([]string, error){"bpf": bpfEntries},
	})
	ctx, cancel := context.WithTimeout(d.Context(), timeout)
	t.Cleanup(cancel)
	e := &env{t: t, d: d, ctx: ctx, img: d.ImportTestImage(ctx)}
	rsKeepLog(t, e)
	e.warmUp(t, harness.EmbedPluginID)
	t.Cleanup(d.LeakCheck(t))
	return e
}
