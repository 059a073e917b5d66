//go:build linux

package integration

import (
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/containerd/oci"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// The pins are removed by hand while the daemon is down (as `rm -rf` of a
// root holding them did before pins moved to /sys/fs/bpf), so registrations
// and records are gone; one container keeps running, the other is killed
// meanwhile, with no program attached to record its status. After the
// restart the live one is tracked again (its kill gives 137), and the dead
// one is reported stopped with the unknown status 255, never RUNNING with a
// dead pid.
func TestRestartLostRegistrations(t *testing.T) {
	e := newEnv(t)
	rsKeepLog(t, e)
	rt := harness.EmbedPluginID
	alive := e.container(t, rt, "alive", oci.WithProcessArgs("sleep", "3600"))
	e.rsStartTask(t, alive, nil)
	dead := e.container(t, rt, "dead", oci.WithProcessArgs("sleep", "3600"))
	deadPid := e.rsStartTask(t, dead, nil).Pid()

	if err := e.d.Kill(); err != nil {
		t.Fatal(err)
	}
	if out, err := e.d.RemovePins(); err != nil {
		t.Fatalf("remove pins: %v: %s", err, out)
	}
	rsKillPid(t, deadPid)
	if err := e.d.Restart(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	listed := e.rsListTasks(t, map[string]string{"alive": alive.ID(), "dead": dead.ID()})
	if fmt.Sprint(listed) != "map[alive:running dead:stopped:255]" {
		t.Errorf("tasks after restart: %v", listed)
	}
	if !strings.Contains(e.d.Log(), "left no exit record; reporting it stopped with status 255") {
		t.Errorf("the lost status is not logged")
	}
	if entries, err := bpfEntries(e.d); err != nil || len(entries) != 1 {
		t.Errorf("BPF entries after restart: %v %v, want the live task's registration", entries, err)
	}

	task := e.rsLoadTask(t, dead.ID())
	ch, err := task.Wait(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if code := e.exitWithin(t, ch); code != 255 {
		t.Errorf("Wait of the dead task: %d, want 255", code)
	}
	st, err := task.Delete(e.ctx)
	if err != nil {
		t.Fatalf("delete dead task: %v", err)
	}
	if st.ExitCode() != 255 {
		t.Errorf("delete of the dead task: %d, want 255", st.ExitCode())
	}

	if got := e.rsManage(t, alive.ID()); got != "status=running exec=3 paused=paused resumed=running killed=137 delete=137" {
		t.Errorf("live task after restart: %s", got)
	}
}
