//go:build linux

package integration

import (
	"fmt"
	"syscall"
	"testing"

	"github.com/containerd/containerd/oci"
)

// A task restored after a crash of containerd goes over its memory limit:
// the OOM killer kills the init, /tasks/oom is published and the exit is
// 137, as for a task the daemon started itself (TestParityOOM).
func TestRestartOOM(t *testing.T) {
	e := newEnv(t)
	rsKeepLog(t, e)
	ids := map[string]string{}
	for _, rt := range runtimes {
		// busybox tail buffers /dev/zero until the 16 MiB limit is hit,
		// once the test creates /tmp/go.
		c := e.container(t, rt, "rs-oom", oci.WithMemoryLimit(16<<20), oci.WithProcessArgs("sh", "-c",
			"while [ ! -e /tmp/go ]; do sleep 0.05; done; exec tail /dev/zero"))
		e.rsStartTask(t, c, nil)
		ids[rt] = c.ID()
	}
	if err := e.d.Restart(syscall.SIGKILL); err != nil {
		t.Fatalf("restart: %v", err)
	}
	type obs struct {
		Code   string
		Events []string
	}
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		task := e.rsLoadTask(t, ids[rt])
		c, err := e.d.Client().LoadContainer(e.ctx, ids[rt])
		if err != nil {
			t.Fatal(err)
		}
		log := e.recordEvents(t, c)
		ch, err := task.Wait(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeInto(task.Pid(), "/tmp/go"); err != nil {
			t.Fatalf("start the memory hog: %v", err)
		}
		o := obs{Code: e.rsWaitCode(t, "oom", ch)}
		if _, err := task.Delete(e.ctx); err != nil {
			t.Errorf("delete: %v", err)
		}
		evs := log.Settle("/tasks/oom", "/tasks/exit", "/tasks/delete")
		t.Logf("events: %v", evs)
		if o.Code != "137" {
			t.Errorf("exit %s, want 137", o.Code)
		}
		if !hasEvent(evs, "/tasks/oom") {
			t.Errorf("no /tasks/oom event in %v", evs)
		}
		oom, rest := normalizeOOM(evs)
		o.Events = append([]string{fmt.Sprintf("oom-before-delete:%v", oom)}, rest...)
		return o
	})
}
