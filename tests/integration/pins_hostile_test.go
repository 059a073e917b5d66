//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/oci"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

const repinnedLog = "were removed or replaced behind the runtime's back; pinned again"

// The pins are removed by hand, then one is replaced by a map that is not
// the program's, then their bpffs is unmounted, all while the daemon runs.
// Each time the runtime pins its own maps and link again (and says so), so
// that when containerd is then SIGKILLed and a container killed while it is
// down, the next start reads that exit's true status (137) from the pins,
// not the unknown 255 of a lost record.
func TestPinsRemovedUnderDaemon(t *testing.T) {
	e := newEnv(t)
	rsKeepLog(t, e)
	rt := harness.EmbedPluginID
	survivor := e.container(t, rt, "survivor", oci.WithProcessArgs("sleep", "3600"))
	e.rsStartTask(t, survivor, nil)
	killed := e.container(t, rt, "killed", oci.WithProcessArgs("sleep", "3600"))
	killedPid := e.rsStartTask(t, killed, nil).Pid()
	vdir := pinVersionDir(t, e.d.PinDir)

	if err := os.RemoveAll(vdir); err != nil {
		t.Fatalf("rm -rf %s: %v", vdir, err)
	}
	waitLogCount(t, e.d, repinnedLog, 1)
	if _, err := os.Stat(filepath.Join(vdir, "link")); err != nil {
		t.Errorf("link not pinned again: %v", err)
	}

	exits := filepath.Join(vdir, "exits")
	if err := os.Remove(exits); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bpftool", "map", "create", exits, "type", "hash",
		"key", "16", "value", "16", "entries", "16", "name", "exits").CombinedOutput(); err != nil {
		t.Fatalf("bpftool map create: %v: %s", err, out)
	}
	waitLogCount(t, e.d, repinnedLog, 2)

	if err := syscall.Unmount(e.d.PinDir, syscall.MNT_DETACH); err != nil {
		t.Fatalf("unmount %s: %v", e.d.PinDir, err)
	}
	waitLogCount(t, e.d, repinnedLog, 3)
	for _, want := range []string{"registrations (removed)", "exits (replaced)", "link (removed)"} {
		if !strings.Contains(e.d.Log(), want) {
			t.Errorf("the log does not name %q", want)
		}
	}

	if err := e.d.Kill(); err != nil {
		t.Fatal(err)
	}
	rsKillPid(t, killedPid)
	if err := e.d.Restart(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	listed := e.rsListTasks(t, map[string]string{"survivor": survivor.ID(), "killed": killed.ID()})
	if fmt.Sprint(listed) != "map[killed:stopped:137 survivor:running]" {
		t.Errorf("tasks after restart: %v", listed)
	}
	if strings.Contains(e.d.Log(), "left no exit record") {
		t.Errorf("an exit record was lost")
	}
	if got := e.rsManage(t, survivor.ID()); got != "status=running exec=3 paused=paused resumed=running killed=137 delete=137" {
		t.Errorf("survivor after restart: %s", got)
	}
	task := e.rsLoadTask(t, killed.ID())
	if st, err := task.Delete(e.ctx); err != nil || st.ExitCode() != 137 {
		t.Errorf("delete of the killed task: %v %v, want 137", st, err)
	}
}

// The program is detached by hand: its link pin removed while containerd is
// down (raw tracepoint links refuse `bpftool link detach`, and while the
// daemon runs it holds the link). An exit recorded before keeps its true
// status; one after, with no program to record it, is reported stopped with
// 255 and logged; the next start attaches a new program to the maps left
// pinned, and exits are recorded again.
func TestProgramDetachedWhileDown(t *testing.T) {
	e := newEnv(t)
	rsKeepLog(t, e)
	rt := harness.EmbedPluginID
	before := e.container(t, rt, "before", oci.WithProcessArgs("sleep", "3600"))
	beforePid := e.rsStartTask(t, before, nil).Pid()
	after := e.container(t, rt, "after", oci.WithProcessArgs("sleep", "3600"))
	afterPid := e.rsStartTask(t, after, nil).Pid()
	link := linkID(t, e.d.PinDir)
	prog := linkProgID(t, link)

	if err := e.d.Kill(); err != nil {
		t.Fatal(err)
	}
	rsKillPid(t, beforePid)
	if err := os.Remove(filepath.Join(pinVersionDir(t, e.d.PinDir), "link")); err != nil {
		t.Fatal(err)
	}
	// The link's id goes first; the program is detached, then freed.
	waitBPFGone(t, "link", link)
	waitBPFGone(t, "prog", prog)
	rsKillPid(t, afterPid)
	if err := e.d.Restart(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	listed := e.rsListTasks(t, map[string]string{"before": before.ID(), "after": after.ID()})
	if fmt.Sprint(listed) != "map[after:stopped:255 before:stopped:137]" {
		t.Errorf("tasks after restart: %v", listed)
	}
	if !strings.Contains(e.d.Log(), "left no exit record; reporting it stopped with status 255") {
		t.Errorf("the lost status is not logged")
	}
	if id := linkID(t, e.d.PinDir); id == link {
		t.Errorf("no new link: %d", id)
	}
	img, err := e.d.Client().GetImage(e.ctx, e.img.Name())
	if err != nil {
		t.Fatal(err)
	}
	e.img = img // bound to the new client
	if o := e.runToExit(t, rt, []string{"sh", "-c", "exit 5"}); o.Code != 5 {
		t.Errorf("container after the new attach: %d, want 5", o.Code)
	}
	for name, c := range map[string]uint32{"before": 137, "after": 255} {
		id := before.ID()
		if name == "after" {
			id = after.ID()
		}
		if st, err := e.rsLoadTask(t, id).Delete(e.ctx); err != nil || st.ExitCode() != c {
			t.Errorf("delete %s: %v %v, want %d", name, st, err, c)
		}
	}
}

// pinVersionDir is the one layout version's directory under pinDir.
func pinVersionDir(t *testing.T, pinDir string) string {
	t.Helper()
	vdirs, _ := filepath.Glob(filepath.Join(pinDir, "v*"))
	if len(vdirs) != 1 {
		t.Fatalf("pin dirs under %s: %v, want one", pinDir, vdirs)
	}
	return vdirs[0]
}

// waitLogCount waits (up to 30 s: the runtime checks its pins every 2 s)
// until the daemon's log has said s n times.
func waitLogCount(t *testing.T, d *harness.Daemon, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(d.Log(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not say %q %d times in 30 s (said it %d times)", s, n, strings.Count(d.Log(), s))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func linkProgID(t *testing.T, link int) int {
	t.Helper()
	out, err := exec.Command("bpftool", "-j", "link", "show", "id", strconv.Itoa(link)).Output()
	if err != nil {
		t.Fatalf("bpftool link show id %d: %v", link, err)
	}
	var l struct {
		ProgID int `json:"prog_id"`
	}
	if err := json.Unmarshal(out, &l); err != nil || l.ProgID == 0 {
		t.Fatalf("bpftool output %q: %v", out, err)
	}
	return l.ProgID
}

// waitBPFGone waits until the BPF object of that kind ("link", "prog") and
// id is freed, which the kernel does asynchronously.
func waitBPFGone(t *testing.T, kind string, id int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for exec.Command("bpftool", kind, "show", "id", strconv.Itoa(id)).Run() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("%s %d still exists after its pin was removed", kind, id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
