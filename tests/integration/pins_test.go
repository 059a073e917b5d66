//go:build linux

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"

	"github.com/embedshim/embedshim/go/exitmon"
	"github.com/embedshim/embedshim/tests/integration/harness"
)

// With no pin_dir configured the embed plugin pins in the host's bpffs, not
// in containerd's root: after a clean stop and after a SIGKILL of the
// daemon, the root has no mount and rm -rf of it succeeds. The daemon's
// `embedshim remove-pins` then removes the pins and detaches the program,
// and nothing is left under /sys/fs/bpf/embedshim by this test.
func TestRootRemovableWithDefaultPins(t *testing.T) {
	var pinDir string
	// Registered first, so it runs last: after the harness's clean-up.
	t.Cleanup(func() {
		if pinDir == "" {
			return
		}
		if _, err := os.Stat(pinDir); !os.IsNotExist(err) {
			t.Errorf("pins left at %s (%v)", pinDir, err)
		}
	})
	d := harness.StartDaemon(t, harness.Options{Embed: harness.EmbedOmit})
	if !d.HasEmbed() {
		t.Fatalf("%s has no embed plugin", d.Binary)
	}
	pinDir = exitmon.DefaultPinDir(filepath.Join(d.Root, harness.EmbedPluginID))
	if got := ctrPlugins(t, d)[harness.EmbedPluginID]; got.Status != "ok" {
		t.Fatalf("embed plugin with default pins: %+v", got)
	}

	for _, stop := range []struct {
		name string
		sig  syscall.Signal
	}{{"clean stop", syscall.SIGTERM}, {"SIGKILL", syscall.SIGKILL}} {
		runOnce(t, d, []string{"sh", "-c", "exit 3"}, 3)
		links, _ := filepath.Glob(filepath.Join(pinDir, "v*", "link"))
		if len(links) != 1 {
			t.Fatalf("%s: pinned links under %s: %v", stop.name, pinDir, links)
		}
		var err error
		if stop.sig == syscall.SIGKILL {
			err = d.Kill()
		} else {
			err = d.Stop()
		}
		if err != nil {
			t.Fatal(err)
		}
		checkPlainTree(t, d.Root)
		if err := os.RemoveAll(d.Root); err != nil {
			t.Fatalf("%s: rm -rf %s: %v", stop.name, d.Root, err)
		}
		// Started again on a fresh root at the same path: the same pins.
		if err := d.Restart(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}

	id := linkID(t, pinDir)
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if out, err := d.RemovePins(); err != nil {
		t.Fatalf("embedshim remove-pins: %v: %s", err, out)
	}
	if _, err := os.Stat(pinDir); !os.IsNotExist(err) {
		t.Fatalf("remove-pins left %s (%v)", pinDir, err)
	}
	// The link is freed asynchronously once its pin is gone.
	waitBPFGone(t, "link", id)
}

// runOnce runs args in a new embed container to its end and deletes it.
func runOnce(t *testing.T, d *harness.Daemon, args []string, want uint32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(d.Context(), 2*time.Minute)
	defer cancel()
	img := d.ImportTestImage(ctx)
	id := "pins-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	c, err := d.Client().NewContainer(ctx, id,
		containerd.WithRuntime(harness.EmbedPluginID, nil),
		containerd.WithNewSnapshot(id, img),
		containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs(args...)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Delete(ctx, containerd.WithSnapshotCleanup)
	task, err := c.NewTask(ctx, cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	defer task.Delete(ctx, containerd.WithProcessKill)
	ch, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-ch:
		if st.ExitCode() != want {
			t.Fatalf("exit code %d, want %d", st.ExitCode(), want)
		}
	case <-ctx.Done():
		t.Fatal("no exit")
	}
}

// checkPlainTree fails if anything is mounted at or below root, or if an
// entry is neither a directory, a regular file nor a symlink.
func checkPlainTree(t *testing.T, root string) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && (fields[4] == root || strings.HasPrefix(fields[4], root+"/")) {
			t.Errorf("mounted in the root: %s", s.Text())
		}
	}
	f.Close()
	filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			t.Errorf("%s: %v", path, err)
			return nil
		}
		if m := e.Type(); !m.IsDir() && !m.IsRegular() && m&fs.ModeSymlink == 0 {
			t.Errorf("not a plain file or directory: %s (%v)", path, m)
		}
		return nil
	})
}

// linkID is the BPF link id of the pinned link under pinDir.
func linkID(t *testing.T, pinDir string) int {
	t.Helper()
	links, _ := filepath.Glob(filepath.Join(pinDir, "v*", "link"))
	if len(links) != 1 {
		t.Fatalf("pinned links under %s: %v", pinDir, links)
	}
	out, err := exec.Command("bpftool", "-j", "link", "show", "pinned", links[0]).Output()
	if err != nil {
		t.Fatalf("bpftool link show pinned %s: %v", links[0], err)
	}
	var l struct {
		ID int `json:"id"`
	}
	if err := json.Unmarshal(out, &l); err != nil || l.ID == 0 {
		t.Fatalf("bpftool output %q: %v", out, err)
	}
	return l.ID
}
