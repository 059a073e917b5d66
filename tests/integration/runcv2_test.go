//go:build linux

package integration

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"
	"golang.org/x/sys/unix"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// TestRunCV2ExitStatus proves the harness, the test image and the shim build:
// sh -c 'echo hi; exit 3' under io.containerd.runc.v2 prints "hi" and exits 3.
func TestRunCV2ExitStatus(t *testing.T) {
	d := harness.StartDaemon(t, harness.Options{})
	ctx, cancel := context.WithTimeout(d.Context(), 60*time.Second)
	defer cancel()
	img := d.ImportTestImage(ctx)
	check := d.LeakCheck(t)
	defer check()

	c := d.Client()
	ctr, err := c.NewContainer(ctx, "echo-exit",
		containerd.WithNewSnapshot("echo-exit-snap", img),
		containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sh", "-c", "echo hi; exit 3")),
		containerd.WithRuntime(harness.RuncV2, nil),
	)
	if err != nil {
		t.Fatalf("new container: %v", err)
	}
	defer ctr.Delete(ctx, containerd.WithSnapshotCleanup)

	var stdout, stderr bytes.Buffer
	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &stdout, &stderr)))
	if err != nil {
		t.Fatalf("new task: %v", err)
	}
	exitCh, err := task.Wait(ctx)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	var st containerd.ExitStatus
	select {
	case st = <-exitCh:
	case <-ctx.Done():
		t.Fatalf("timed out waiting for exit")
	}
	code, _, err := st.Result()
	if err != nil {
		t.Fatalf("exit result: %v", err)
	}
	// Delete closes the task's IO (waits for the copy loops to finish).
	if _, err := task.Delete(ctx); err != nil {
		t.Fatalf("task delete: %v", err)
	}
	if code != 3 {
		t.Errorf("exit code = %d, want 3", code)
	}
	if got := strings.TrimSpace(stdout.String()); got != "hi" {
		t.Errorf("stdout = %q, want %q (stderr %q)", got, "hi", stderr.String())
	}
	if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
		t.Fatalf("container delete: %v", err)
	}
}

// TestRunCCtrPluginsLs checks bin/ctr talks to the daemon and that the
// runtimes are there.
func TestRunCCtrPluginsLs(t *testing.T) {
	d := harness.StartDaemon(t, harness.Options{})
	ctx, cancel := context.WithTimeout(d.Context(), 30*time.Second)
	defer cancel()
	out, err := d.Ctr(ctx, "plugins", "ls")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"io.containerd.runtime.v2", "task", "overlayfs"} {
		if !strings.Contains(out, want) {
			t.Errorf("ctr plugins ls: %q missing:\n%s", want, out)
		}
	}
	if d.HasEmbed() {
		if !strings.Contains(out, "io.containerd.runtime.v1") || !strings.Contains(out, "embed") {
			t.Errorf("binary has the embed plugin but ctr plugins ls does not list it:\n%s", out)
		}
	} else {
		t.Logf("embed plugin not linked into %s (yet)", d.Binary)
	}
	// ctr images import works on the test image too
	p, err := harness.TestImagePath(d.Repo)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := d.Ctr(ctx, "images", "import", p); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(out, harness.TestImageRef) {
		t.Logf("ctr images import output: %s", out)
	}
	out, err = d.Ctr(ctx, "images", "ls", "-q")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, harness.TestImageRef) {
		t.Errorf("ctr images ls: %s missing:\n%s", harness.TestImageRef, out)
	}
}

// TestRunCV2Exitclock checks the image's exitclock helper: it prints a
// CLOCK_MONOTONIC time between the host's readings around the run and exits
// with the code given.
func TestRunCV2Exitclock(t *testing.T) {
	d := harness.StartDaemon(t, harness.Options{})
	ctx, cancel := context.WithTimeout(d.Context(), 60*time.Second)
	defer cancel()
	img := d.ImportTestImage(ctx)
	check := d.LeakCheck(t)
	defer check()

	ctr, err := d.Client().NewContainer(ctx, "exitclock",
		containerd.WithNewSnapshot("exitclock-snap", img),
		containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("exitclock", "7")),
		containerd.WithRuntime(harness.RuncV2, nil),
	)
	if err != nil {
		t.Fatalf("new container: %v", err)
	}
	defer ctr.Delete(ctx, containerd.WithSnapshotCleanup)
	var stdout lockedBuffer
	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &stdout, &stdout)))
	if err != nil {
		t.Fatalf("new task: %v", err)
	}
	exitCh, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t0 := monotonicNs(t)
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st := <-exitCh
	t1 := monotonicNs(t)
	// The shim's copy loop may still be moving the output: deleting now
	// would cancel it, so wait for the line first.
	for i := 0; i < 500 && !strings.Contains(stdout.String(), "\n"); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if st.ExitCode() != 7 {
		t.Errorf("exit code %d, want 7", st.ExitCode())
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(stdout.String()), 10, 64)
	if err != nil {
		t.Fatalf("exitclock output %q: %v", stdout.String(), err)
	}
	if ns < t0 || ns > t1 {
		t.Errorf("exitclock time %d not within [%d, %d]", ns, t0, t1)
	}
	t.Logf("exit → Wait returned after %v", time.Duration(t1-ns))
}

func monotonicNs(t *testing.T) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano()
}
