//go:build linux

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/oci"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// Bundles that a crash of containerd (or of the machine's state) left
// broken are dealt with at restore, embed only (runc.v2 keeps its state in
// its shims): a task whose state.json is unreadable or missing is cleaned up
// (its container killed, rootfs unmounted, bundle removed); a delete
// interrupted after runc delete leaves a stopped task that can be deleted;
// one interrupted after the bundle's rename leaves nothing. The others run
// on, and nothing is left behind (the env's leak check: processes, mounts,
// bundles, cgroups, BPF entries).
func TestRestartBrokenBundles(t *testing.T) {
	e := newEnv(t)
	rsKeepLog(t, e)
	rt := harness.EmbedPluginID
	names := []string{"garbage-state", "no-state", "runc-gone", "renamed", "kept"}
	ids, pids := map[string]string{}, map[string]uint32{}
	for _, name := range names {
		c := e.container(t, rt, name, oci.WithProcessArgs("sleep", "3600"))
		task := e.rsStartTask(t, c, nil)
		waitComm(t, task.Pid(), "sleep")
		ids[name], pids[name] = c.ID(), task.Pid()
	}
	bundle := func(name string) string { return filepath.Join(e.d.State, rt, e.d.Namespace, ids[name]) }
	runcRoot := e.d.EmbedRuncRoot(e.d.Namespace)
	runcDelete := func(name string) {
		t.Helper()
		if out, err := exec.Command("runc", "--root", runcRoot, "delete", "--force", ids[name]).CombinedOutput(); err != nil {
			t.Fatalf("runc delete %s: %v: %s", name, err, out)
		}
	}
	if err := e.d.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle("garbage-state"), "state.json"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(bundle("no-state"), "state.json")); err != nil {
		t.Fatal(err)
	}
	// A delete that stopped right after runc delete: the init is gone,
	// the bundle and its rootfs mount are still there.
	runcDelete("runc-gone")
	rsWaitExited(t, pids["runc-gone"], 10*time.Second)
	// One that stopped right after renaming the bundle to its hidden name.
	runcDelete("renamed")
	rsWaitExited(t, pids["renamed"], 10*time.Second)
	if err := syscall.Unmount(filepath.Join(bundle("renamed"), "rootfs"), syscall.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	hidden := filepath.Join(filepath.Dir(bundle("renamed")), "."+ids["renamed"])
	if err := os.Rename(bundle("renamed"), hidden); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Restart(syscall.SIGKILL); err != nil {
		t.Fatalf("restart: %v", err)
	}

	got := map[string]string{}
	for name, st := range e.rsListTasks(t, ids) {
		got[name+" listed"] = st
	}
	for _, name := range []string{"garbage-state", "no-state"} {
		got[name+" init gone"] = fmt.Sprint(goneWithin(pids[name], 10*time.Second))
		_, err := os.Stat(bundle(name))
		got[name+" bundle gone"] = fmt.Sprint(os.IsNotExist(err))
	}
	_, err := os.Stat(hidden)
	got["renamed hidden gone"] = fmt.Sprint(os.IsNotExist(err))
	if task, err := e.rsTryLoadTask(ids["runc-gone"]); err != nil {
		got["runc-gone delete"] = "load: " + errClass(err)
	} else if st, err := task.Delete(e.ctx); err != nil {
		got["runc-gone delete"] = "error: " + err.Error()
	} else {
		got["runc-gone delete"] = fmt.Sprint(st.ExitCode())
	}
	got["kept"] = e.rsManage(t, ids["kept"])
	want := map[string]string{
		"garbage-state listed": "missing", "no-state listed": "missing", "runc-gone listed": "stopped:137",
		"renamed listed": "missing", "kept listed": "running",
		"garbage-state init gone": "true", "garbage-state bundle gone": "true",
		"no-state init gone": "true", "no-state bundle gone": "true",
		"renamed hidden gone": "true",
		"runc-gone delete":    "137",
		"kept":                "status=running exec=3 paused=paused resumed=running killed=137 delete=137",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the restart:\n  got:  %v\n  want: %v", got, want)
	}
	entries, err := bpfEntries(e.d)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("BPF entries left: %v", entries)
	}
}
