//go:build linux

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// failDeletes is an OCI runtime wrapper whose deletes fail while a flag
// file exists.
const failDeletes = `#!/bin/sh
for a in "$@"; do
	if [ "$a" = delete ] && [ -e %[2]q ]; then
		echo "injected delete failure" >&2
		exit 1
	fi
done
exec %[1]q "$@"
`

// A create that fails after runc create (here: the tracking capacity is
// reached) removes the runc container again; if every runc delete fails
// too, the runc container stays, with no task. The next start removes it
// from the plugin's own runc root: no runc container without a task, no
// runc-init, cgroup or BPF entry left. (The chaos driver found it: its
// injected runc failure hit that clean-up delete.)
func TestRuncContainerWithoutTaskSwept(t *testing.T) {
	e := newCapacityEnv(t, 2, 3*time.Minute)
	d, ctx, rt := e.d, e.ctx, harness.EmbedPluginID

	var running []string
	for i := 0; i < 2; i++ {
		c := e.container(t, rt, "sweep-run", oci.WithProcessArgs("sleep", "3600"))
		e.rsStartTask(t, c, nil)
		running = append(running, c.ID())
	}
	flag := filepath.Join(t.TempDir(), "fail-deletes")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wrapper := writeWrapper(t, "runc-fail-deletes", failDeletes, flag)
	c := e.containerWith(t, rt, "sweep-left",
		[]containerd.NewContainerOpts{containerd.WithRuntime(rt, &runcoptions.Options{BinaryName: wrapper})},
		oci.WithProcessArgs("sleep", "3600"))
	if _, err := c.NewTask(ctx, cio.NullIO); err == nil || !strings.Contains(err.Error(), "tracking capacity 2 reached") {
		t.Fatalf("create over capacity: %v, want the capacity refusal", err)
	}
	root := d.EmbedRuncRoot(d.Namespace)
	if !runcLists(t, root, c.ID()) {
		t.Fatalf("runc container %s not left behind: the test's failure injection did not work", c.ID())
	}
	os.Remove(flag)
	if err := d.Restart(syscall.SIGKILL); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if runcLists(t, root, c.ID()) {
		t.Errorf("runc container %s without a task still in %s after the restart", c.ID(), root)
	}
	if !strings.Contains(d.Log(), "removing a runc container that no task accounts for") {
		t.Errorf("the daemon did not log the removal")
	}
	for _, id := range running {
		task := e.rsLoadTask(t, id)
		ch, err := task.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %s after the restart: %v", id, err)
		}
		if code := e.exitWithin(t, ch); code != 137 {
			t.Errorf("%s: exit %d, want 137", id, code)
		}
		if _, err := task.Delete(ctx); err != nil {
			t.Errorf("delete %s: %v", id, err)
		}
	}
}

// runcLists reports whether runc, with root, lists id.
func runcLists(t *testing.T, root, id string) bool {
	t.Helper()
	out, err := exec.Command("runc", "--root", root, "list", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("runc list: %v: %s", err, out)
	}
	for _, l := range strings.Fields(string(out)) {
		if l == id {
			return true
		}
	}
	return false
}
