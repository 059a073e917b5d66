//go:build linux

package integration

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// A runc start that outlives containerd (embed runs it without the client's
// cancellation, as runc.v2's shim runs it apart from containerd): the task
// was persisted created, but runc started it. At restore runc's view
// decides: one still running comes back running, one that already exited
// comes back stopped with its status (and its /tasks/exit goes to clients
// subscribed after the restart), one never started stays created and can be
// started. Simulated by running runc start by hand while the daemon is down.
func TestRestartAfterOutlivingStart(t *testing.T) {
	e := newEnv(t)
	rsKeepLog(t, e)
	rt := harness.EmbedPluginID
	ids := map[string]string{}
	pids := map[string]uint32{}
	for name, args := range map[string][]string{
		"runs":    {"sleep", "3600"},
		"exited":  {"sh", "-c", "exit 7"},
		"created": {"sleep", "3600"},
	} {
		c := e.container(t, rt, "os-"+name, oci.WithProcessArgs(args...))
		task, err := c.NewTask(e.ctx, cio.NullIO)
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		ids[name], pids[name] = c.ID(), task.Pid()
	}
	if err := e.d.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"runs", "exited"} {
		out, err := exec.Command("runc", "--root", e.d.EmbedRuncRoot(e.d.Namespace), "start", ids[name]).CombinedOutput()
		if err != nil {
			t.Fatalf("runc start %s by hand: %v: %s", name, err, out)
		}
	}
	rsWaitExited(t, pids["exited"], 15*time.Second)
	if err := e.d.Restart(syscall.SIGKILL); err != nil {
		t.Fatalf("restart: %v", err)
	}
	w := e.rsWatchExits(t)
	if got := e.rsListTasks(t, ids); got["runs"] != "running" || got["exited"] != "stopped:7" || got["created"] != "created" {
		t.Fatalf("after the restart: %v, want runs:running exited:stopped:7 created:created", got)
	}
	w.settle(t, [2]string{ids["exited"], ids["exited"]})
	if n, st := w.count(ids["exited"], ids["exited"]); n != 1 || len(st) != 1 || st[0] != "7" {
		t.Errorf("/tasks/exit of the task that exited while containerd was down: %d times %v, want once with 7", n, st)
	}
	ex := e.rsLoadTask(t, ids["exited"])
	if st, err := ex.Status(e.ctx); err != nil || st.Status != containerd.Stopped || st.ExitStatus != 7 {
		t.Errorf("exited: status %+v (%v), want stopped 7", st, err)
	}
	if es, err := ex.Delete(e.ctx); err != nil || es.ExitCode() != 7 {
		t.Errorf("exited: delete %v (%v), want 7", es, err)
	}
	if got, want := e.rsManage(t, ids["runs"]), "status=running exec=3 paused=paused resumed=running killed=137 delete=137"; got != want {
		t.Errorf("runs after the restart: %s, want %s", got, want)
	}
	cr := e.rsLoadTask(t, ids["created"])
	ch, err := cr.Wait(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cr.Start(e.ctx); err != nil {
		t.Fatalf("start of the task restored created: %v", err)
	}
	if err := cr.Kill(e.ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := e.exitWithin(t, ch); code != 137 {
		t.Errorf("created, started after the restart and killed: %d, want 137", code)
	}
	if _, err := cr.Delete(e.ctx); err != nil {
		t.Errorf("delete: %v", err)
	}
}
