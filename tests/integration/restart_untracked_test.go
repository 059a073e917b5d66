//go:build linux

package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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

// The container records are deleted while the daemon is down (its
// metadata wiped, as a test suite's `rm -rf` of a root does, while the
// state dir on tmpfs stays). A task whose container no longer exists is not
// restored: its process is killed and its mounts, bundle, runc state and
// BPF entries are removed, instead of a task listed RUNNING forever that no
// client can address.
func TestRestartContainerRecordGone(t *testing.T) {
	e := newEnv(t)
	rsKeepLog(t, e)
	rt := harness.EmbedPluginID
	c := e.container(t, rt, "orphaned", oci.WithProcessArgs("sleep", "3600"))
	pid := e.rsStartTask(t, c, nil).Pid()
	bundle := filepath.Join(e.d.State, rt, e.d.Namespace, c.ID())

	if err := e.d.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(e.d.Root, "io.containerd.metadata.v1.bolt", "meta.db")); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Restart(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	listed := e.rsListTasks(t, map[string]string{"orphaned": c.ID()})
	if fmt.Sprint(listed) != "map[orphaned:missing]" {
		t.Errorf("tasks after restart: %v", listed)
	}
	rsWaitExited(t, pid, 20*time.Second)
	if _, err := os.Stat(bundle); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bundle %s left: %v", bundle, err)
	}
	if m := harness.MountsUnder(filepath.Join(e.d.State, rt)); len(m) != 0 {
		t.Errorf("mounts left: %v", m)
	}
	if l := runcList(t, e.d.EmbedRuncRoot(e.d.Namespace)); contains(l, c.ID()) {
		t.Errorf("runc state left: %v", l)
	}
	if entries, err := bpfEntries(e.d); err != nil || len(entries) != 0 {
		t.Errorf("BPF entries after restart: %v %v", entries, err)
	}
	if !strings.Contains(e.d.Log(), "container no longer exists in containerd; removing the task") {
		t.Errorf("the removal is not logged")
	}
}
