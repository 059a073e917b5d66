//go:build linux

package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// A node switches from the containerd 1.7 build to the containerd 2.3 build
// on the same root, state and pins, with embed containers running: they
// keep running and stay fully manageable (exec, kill, wait, delete, stdout
// keeps flowing), and a container that exited during the switch reports its
// true status and time. Then the switch back (a downgrade) is shown to work
// the same way.
func TestUpgradeContainerd17To23(t *testing.T) {
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	from := filepath.Join(repo, "bin", "embedshim-containerd-1.7")
	to := filepath.Join(repo, "bin", "embedshim-containerd")
	if harness.IsContainerd17(os.Getenv("EMBEDSHIM_CONTAINERD")) {
		t.Skip("runs once, in the pass against the default build")
	}
	harness.Requirements(t, from)
	harness.Requirements(t, to)

	d := harness.StartDaemon(t, harness.Options{Binary: from, LeakProbes: map[string]func(*harness.Daemon) ([]string, error){
		"bpf": bpfEntries,
	}})
	ctx, cancel := context.WithTimeout(d.Context(), 5*time.Minute)
	defer cancel()
	e := &env{t: t, d: d, ctx: ctx, img: d.ImportTestImage(ctx)}
	rt := harness.EmbedPluginID
	// Warm-up as newEnv does, with a running init: embed's OOM epoll
	// exists from then on (an init that exits at once may leave none,
	// and the restored tasks under 2.3 would then show it as a new fd).
	e.warmUp(t, rt)
	check := d.LeakCheck(t)
	t.Cleanup(check)
	rsKeepLog(t, e)

	long := e.container(t, rt, "up-long", oci.WithProcessArgs("sleep", "3600"))
	oldExec := e.rsExec(t, long, e.rsStartTask(t, long, nil), "x", "sleep", "3600")
	ticks := &lockedBuffer{}
	ticker := e.container(t, rt, "up-tick", oci.WithProcessArgs("sh", "-c", "while true; do echo tick; sleep 0.1; done"))
	e.rsStartTask(t, ticker, cio.NewCreator(cio.WithStreams(nil, ticks, ticks)))
	exiter := e.container(t, rt, "up-exit", oci.WithProcessArgs("sh", "-c", "sleep 2; exit 7"))
	exitPid := e.rsStartTask(t, exiter, nil).Pid()

	// The switch: the 1.7 daemon stops, the exiter exits while no daemon
	// runs, the 2.3 daemon starts on the same dirs.
	stoppedAt := time.Now()
	if err := d.SwitchBinary(to, syscall.SIGTERM); err != nil {
		t.Fatalf("switch to %s: %v", to, err)
	}
	if !rsProcExited(exitPid) {
		// Started too fast for the exiter: let it exit under the new build.
		rsWaitExited(t, exitPid, 15*time.Second)
	}
	t.Logf("switched to %s", to)
	cl := d.Client()

	// Everything is listed with its true state.
	for id, want := range map[string]containerd.ProcessStatus{long.ID(): containerd.Running, ticker.ID(): containerd.Running} {
		c, err := cl.LoadContainer(ctx, id)
		if err != nil {
			t.Fatalf("load %s after the switch: %v", id, err)
		}
		task, err := c.Task(ctx, nil)
		if err != nil {
			t.Fatalf("task %s after the switch: %v", id, err)
		}
		if st, err := task.Status(ctx); err != nil || st.Status != want {
			t.Errorf("%s after the switch: %+v, %v; want %s", id, st, err, want)
		}
	}
	c, err := cl.LoadContainer(ctx, exiter.ID())
	if err != nil {
		t.Fatal(err)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		t.Fatalf("exited task after the switch: %v", err)
	}
	ch, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-ch:
		if st.ExitCode() != 7 || st.ExitTime().Before(stoppedAt.Add(-time.Second)) {
			t.Errorf("exiter: status %d at %v, want 7 after %v", st.ExitCode(), st.ExitTime(), stoppedAt)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Wait of the container that exited during the switch did not return")
	}
	if _, err := task.Delete(ctx); err != nil {
		t.Errorf("delete exited task: %v", err)
	}

	// Stdout keeps flowing into the client's FIFO.
	n := len(ticks.String())
	deadline := time.Now().Add(10 * time.Second)
	for len(ticks.String()) == n {
		if time.Now().After(deadline) {
			t.Fatalf("no output from %s after the switch", ticker.ID())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The running container is fully manageable: a new exec, the exec
	// started by the old build, kill, wait, delete.
	lc, _ := cl.LoadContainer(ctx, long.ID())
	lt, err := lc.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, out := e.execOutput(t, lc, lt, "after", "sh", "-c", "echo hi; exit 3"); code != 3 || strings.TrimSpace(out) != "hi" {
		t.Errorf("exec after the switch: %d %q, want 3 \"hi\"", code, out)
	}
	xp, err := lt.LoadProcess(ctx, oldExec.ID(), nil)
	if err != nil {
		t.Fatalf("exec of the old build after the switch: %v", err)
	}
	xch, err := xp.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := xp.Kill(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := e.exitWithin(t, xch); code != 137 {
		t.Errorf("old exec killed after the switch: %d, want 137", code)
	}
	if _, err := xp.Delete(ctx); err != nil {
		t.Errorf("delete old exec: %v", err)
	}

	// And back (a downgrade): the same, on the 1.7 build.
	if err := d.SwitchBinary(from, syscall.SIGTERM); err != nil {
		t.Fatalf("switch back to %s: %v", from, err)
	}
	cl = d.Client()
	for _, id := range []string{long.ID(), ticker.ID()} {
		c, err := cl.LoadContainer(ctx, id)
		if err != nil {
			t.Fatalf("load %s after the downgrade: %v", id, err)
		}
		task, err := c.Task(ctx, nil)
		if err != nil {
			t.Fatalf("task %s after the downgrade: %v", id, err)
		}
		wch, err := task.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %s after the downgrade: %v", id, err)
		}
		if code := e.exitWithin(t, wch); code != 137 {
			t.Errorf("%s killed after the downgrade: %d, want 137", id, code)
		}
		if _, err := task.Delete(ctx); err != nil {
			t.Errorf("delete %s after the downgrade: %v", id, err)
		}
	}
}
