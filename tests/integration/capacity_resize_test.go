//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
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

// waitSleeping waits until the init of each task has exec'd sleep: the leak
// check compares process command lines, and runc-init turning into sleep is
// no leak.
func waitSleeping(t *testing.T, tasks ...containerd.Task) {
	t.Helper()
	for _, task := range tasks {
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", task.Pid()))
			if strings.TrimSpace(string(b)) == "sleep" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("init %d is %q, not sleep", task.Pid(), b)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// pinnedCapacity is the max_entries of the daemon's pinned registrations
// map; it fails if anything but one layout dir is pinned (a resize left
// its set-aside pins).
func pinnedCapacity(t *testing.T, d *harness.Daemon) int {
	t.Helper()
	vdirs, err := filepath.Glob(filepath.Join(d.PinDir, "v*"))
	if err != nil || len(vdirs) != 1 {
		t.Fatalf("pin dirs under %s: %v %v, want one", d.PinDir, vdirs, err)
	}
	path := filepath.Join(vdirs[0], "registrations")
	raw, err := exec.Command("bpftool", "-j", "map", "show", "pinned", path).Output()
	if err != nil {
		t.Fatalf("bpftool map show %s: %v", path, err)
	}
	var info struct {
		MaxEntries int `json:"max_entries"`
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatalf("bpftool map show %s: %v: %s", path, err, raw)
	}
	return info.MaxEntries
}

// A changed capacity applies at restart: the pins shrink from 8 to 3 with
// the running containers' registrations and the record of one killed while
// the daemon was down kept; the new limit is what creates hit. A shrink to 1
// while 3 run is refused with a warning and the daemon runs on with 3.
// (embed only: runc.v2 has no such limit.)
func TestCapacityResize(t *testing.T) {
	e := newCapacityEnv(t, 8, 4*time.Minute)
	d, ctx, rt := e.d, e.ctx, harness.EmbedPluginID

	a := e.container(t, rt, "resize-a", oci.WithProcessArgs("sleep", "3600"))
	b := e.container(t, rt, "resize-b", oci.WithProcessArgs("sleep", "3600"))
	x := e.container(t, rt, "resize-x", oci.WithProcessArgs("sleep", "3600"))
	ta, tb, tx := e.rsStartTask(t, a, nil), e.rsStartTask(t, b, nil), e.rsStartTask(t, x, nil)
	waitSleeping(t, ta, tb, tx)
	if c := pinnedCapacity(t, d); c != 8 {
		t.Fatalf("pinned capacity %d, want 8", c)
	}

	// Shrink to 3 across a crash; x is killed while the daemon is down,
	// so its record is written into the old maps and must be moved.
	xPid := tx.Pid()
	if err := d.Reconfigure(syscall.SIGKILL, func(o *harness.Options) {
		o.EmbedConfig = "capacity = 3"
		rsKillPid(t, xPid)
	}); err != nil {
		t.Fatal(err)
	}
	img, err := d.Client().GetImage(ctx, e.img.Name())
	if err != nil {
		t.Fatal(err)
	}
	e.img = img // bound to the new client
	if c := pinnedCapacity(t, d); c != 3 {
		t.Errorf("pinned capacity after the restart with capacity = 3: %d", c)
	}
	tx = e.rsLoadTask(t, x.ID())
	if st, err := tx.Status(ctx); err != nil || rsStatus(st) != "stopped:137" {
		t.Errorf("x, killed while the daemon was down: %v %v, want stopped:137", st, err)
	}
	if _, err := tx.Delete(ctx); err != nil {
		t.Fatalf("delete x: %v", err)
	}

	// a and b are 2 of 3: a third fits, a fourth does not.
	c3 := e.container(t, rt, "resize-3", oci.WithProcessArgs("sleep", "3600"))
	t3 := e.rsStartTask(t, c3, nil)
	waitSleeping(t, t3)
	c4 := e.container(t, rt, "resize-4", oci.WithProcessArgs("sleep", "3600"))
	inner := d.LeakCheck(t)
	_, err = c4.NewTask(ctx, cio.NullIO)
	if err == nil || !strings.Contains(err.Error(), "tracking capacity 3 reached") || errClass(err) != "Unavailable" {
		t.Errorf("4th task with capacity 3: %v (class %s), want Unavailable naming the capacity", err, errClass(err))
	}
	inner()

	// Below the 3 running: refused, the daemon comes up with 3 and says so.
	if err := d.Reconfigure(syscall.SIGKILL, func(o *harness.Options) { o.EmbedConfig = "capacity = 1" }); err != nil {
		t.Fatal(err)
	}
	if c := pinnedCapacity(t, d); c != 3 {
		t.Errorf("pinned capacity after the refused shrink to 1: %d, want 3", c)
	}
	const warning = "tracking capacity 1 not applied: 3 processes are tracked; keeping capacity 3"
	if !strings.Contains(d.Log(), warning) {
		t.Errorf("daemon log does not warn %q; tail:\n%s", warning, d.LogTail(30))
	}
	if entries, err := bpfEntries(d); err != nil || len(entries) != 3 {
		t.Errorf("BPF entries after the refused shrink: %v %v, want 3 registrations", entries, err)
	}

	// a and b were tracked throughout: their kills are reported as such.
	w := e.rsWatchExits(t)
	for _, c := range []containerd.Container{a, b, c3} {
		task := e.rsLoadTask(t, c.ID())
		ch, err := task.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if code := e.rsWaitCode(t, c.ID(), ch); code != "137" {
			t.Errorf("%s: Wait gave %s, want 137", c.ID(), code)
		}
		w.settle(t, [2]string{c.ID(), c.ID()})
		if n, st := w.count(c.ID(), c.ID()); n != 1 || st[0] != "137" {
			t.Errorf("%s: /tasks/exit %d times, statuses %v; want once, 137", c.ID(), n, st)
		}
		if _, err := task.Delete(ctx); err != nil {
			t.Errorf("delete %s: %v", c.ID(), err)
		}
	}
}
