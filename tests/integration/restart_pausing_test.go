//go:build linux

package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/containerd/containerd/oci"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// A crash of containerd during Pause leaves the task persisted as
// "pausing" (embed only: runc.v2 keeps the state in its shim). At restore
// runc's view decides: a container runc froze comes back paused, one it did
// not comes back running, and either can then be resumed or paused, killed
// and deleted as usual. Simulated by writing "pausing" into state.json of a
// paused and of a running task while the daemon is down.
func TestRestartWhilePausing(t *testing.T) {
	e := newEnv(t)
	rsKeepLog(t, e)
	rt := harness.EmbedPluginID
	ids := map[string]string{}
	for _, name := range []string{"froze", "not-frozen"} {
		c := e.container(t, rt, name, oci.WithProcessArgs("sleep", "3600"))
		task := e.rsStartTask(t, c, nil)
		waitComm(t, task.Pid(), "sleep")
		if name == "froze" {
			if err := task.Pause(e.ctx); err != nil {
				t.Fatalf("pause: %v", err)
			}
		}
		ids[name] = c.ID()
	}
	if err := e.d.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		setInitStatus(t, filepath.Join(e.d.State, rt, e.d.Namespace, id, "state.json"), "pausing")
	}
	if err := e.d.Restart(syscall.SIGKILL); err != nil {
		t.Fatalf("restart: %v", err)
	}
	listed := e.rsListTasks(t, ids)
	if listed["froze"] != "paused" || listed["not-frozen"] != "running" {
		t.Fatalf("after the restart: %v, want froze:paused not-frozen:running", listed)
	}
	if err := e.rsLoadTask(t, ids["froze"]).Resume(e.ctx); err != nil {
		t.Fatalf("resume of the task restored paused: %v", err)
	}
	for name, id := range ids {
		if got, want := e.rsManage(t, id), "status=running exec=3 paused=paused resumed=running killed=137 delete=137"; got != want {
			t.Errorf("%s after the restart: %s, want %s", name, got, want)
		}
	}
}

// setInitStatus rewrites the init's status in a task's state.json.
func setInitStatus(t *testing.T, path, status string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	st["init"].(map[string]any)["status"] = status
	if data, err = json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
