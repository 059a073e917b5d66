//go:build linux

package integration

import (
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// runcList lists the container ids in a runc root (none if it does not
// exist).
func runcList(t *testing.T, root string) []string {
	t.Helper()
	out, err := exec.Command("runc", "--root", root, "list", "-q").CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "no such file") {
			return nil
		}
		t.Fatalf("runc --root %s list: %v: %s", root, err, out)
	}
	ids := strings.Fields(string(out))
	sort.Strings(ids)
	return ids
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// Embed keeps its containers in a runc root of its own (under its state
// dir), never in runc.v2's /run/containerd/runc/<ns>, where a runc command
// of the other runtime could act on a container with the same id. Tasks of
// an earlier release, created under runc.v2's root, are moved there at
// restart, running and created ones alike, and keep working.
func TestRuncRootOwnAndMigrated(t *testing.T) {
	e := newEnv(t)
	rsKeepLog(t, e)
	rt := harness.EmbedPluginID
	legacy, own := harness.RuncV2Root(e.d.Namespace), e.d.EmbedRuncRoot(e.d.Namespace)

	fresh := e.container(t, rt, "ownroot", oci.WithProcessArgs("sleep", "3600"))
	e.rsStartTask(t, fresh, nil)
	if l := runcList(t, own); !contains(l, fresh.ID()) {
		t.Errorf("embed's runc root %s: %v, want %s", own, l, fresh.ID())
	}
	if l := runcList(t, legacy); contains(l, fresh.ID()) {
		t.Errorf("embed container in runc.v2's root %s: %v", legacy, l)
	}

	// What an earlier release did by default: runc.v2's root.
	if err := e.d.Reconfigure(syscall.SIGTERM, func(o *harness.Options) {
		o.EmbedConfig = `runtime_root = "/run/containerd/runc"`
	}); err != nil {
		t.Fatal(err)
	}
	img, err := e.d.Client().GetImage(e.ctx, e.img.Name())
	if err != nil {
		t.Fatal(err)
	}
	e.img = img // bound to the new client
	running := e.container(t, rt, "oldrunning", oci.WithProcessArgs("sleep", "3600"))
	e.rsStartTask(t, running, nil)
	created := e.container(t, rt, "oldcreated", oci.WithProcessArgs("sh", "-c", "exit 4"))
	if _, err := created.NewTask(e.ctx, cio.NullIO); err != nil {
		t.Fatalf("create: %v", err)
	}
	if l := runcList(t, legacy); !contains(l, running.ID()) || !contains(l, created.ID()) {
		t.Fatalf("old-style tasks not in %s: %v", legacy, l)
	}

	// Back to the default: the old-style tasks move to embed's root.
	if err := e.d.Reconfigure(syscall.SIGKILL, func(o *harness.Options) { o.EmbedConfig = "" }); err != nil {
		t.Fatal(err)
	}
	l := runcList(t, own)
	for _, id := range []string{fresh.ID(), running.ID(), created.ID()} {
		if !contains(l, id) {
			t.Errorf("%s not in embed's runc root after restart: %v", id, l)
		}
	}
	if l := runcList(t, legacy); contains(l, running.ID()) || contains(l, created.ID()) {
		t.Errorf("old-style tasks still in %s: %v", legacy, l)
	}

	// The moved created task starts (runc start finds exec.fifo in the new
	// root) and exits with its own status.
	task := e.rsLoadTask(t, created.ID())
	ch, err := task.Wait(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(e.ctx); err != nil {
		t.Fatalf("start of the moved created task: %v", err)
	}
	if code := e.exitWithin(t, ch); code != 4 {
		t.Errorf("moved created task exited %d, want 4", code)
	}
	if _, err := task.Delete(e.ctx); err != nil {
		t.Errorf("delete moved created task: %v", err)
	}
	want := "status=running exec=3 paused=paused resumed=running killed=137 delete=137"
	for _, id := range []string{running.ID(), fresh.ID()} {
		if got := e.rsManage(t, id); got != want {
			t.Errorf("%s after restart: %s", id, got)
		}
	}
	if l := runcList(t, own); len(l) != 0 {
		t.Errorf("left in embed's runc root: %v", l)
	}
}
