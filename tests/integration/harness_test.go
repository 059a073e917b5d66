//go:build linux

package integration

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// TestHarnessSelfCheck checks the harness itself: LeakCheck's snapshot sees a
// running runc.v2 container (shim, process, mount, cgroups, runtime dirs),
// Restart(SIGKILL) and Restart(SIGTERM) reconnect to the running task, and
// the harness clean-up removes a container the test left running.
func TestHarnessSelfCheck(t *testing.T) {
	d := harness.StartDaemon(t, harness.Options{})
	ctx := d.Context()
	img := d.ImportTestImage(ctx)
	before := d.Snapshot()

	ctr, err := d.Client().NewContainer(ctx, "sleeper",
		containerd.WithNewSnapshot("sleeper-snap", img),
		containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sleep", "1000")),
		containerd.WithRuntime(harness.RuncV2, nil))
	if err != nil {
		t.Fatal(err)
	}
	task, err := ctr.NewTask(ctx, cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Until the process has exec'd, its cmdline is empty (seen under load).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", task.Pid()))
		if string(b) == "sleep\x001000\x00" || time.Now().After(deadline) {
			break
		}
	}
	leaks := strings.Join(harness.Leaks(before, d.Snapshot()), "\n")
	for _, want := range []string{"process:", "sleep 1000", "containerd-shim", "mount:", "runtime dir:", "cgroup:"} {
		if !strings.Contains(leaks, want) {
			t.Errorf("snapshot with a running container: %q not reported; got:\n%s", want, leaks)
		}
	}

	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		if err := d.Restart(sig); err != nil {
			t.Fatalf("restart (%v): %v", sig, err)
		}
		c, err := d.Client().LoadContainer(ctx, "sleeper")
		if err != nil {
			t.Fatal(err)
		}
		tk, err := c.Task(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := tk.Status(ctx)
		if err != nil || st.Status != containerd.Running || tk.Pid() != task.Pid() {
			t.Fatalf("after restart (%v): status %v err %v pid %d (was %d)", sig, st.Status, err, tk.Pid(), task.Pid())
		}
	}
	// The container is left running on purpose: t.Cleanup must remove it.
}
