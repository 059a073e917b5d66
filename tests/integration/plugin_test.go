//go:build linux

package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/cio"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// pluginRow is one line of `ctr plugins ls`.
type pluginRow struct{ Type, ID, Platforms, Status string }

// ctrPlugins runs `ctr plugins ls` and parses its columns (TYPE ID
// PLATFORMS STATUS; PLATFORMS is "-" when empty).
func ctrPlugins(t *testing.T, d *harness.Daemon) map[string]pluginRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(d.Context(), 30*time.Second)
	defer cancel()
	out, err := d.Ctr(ctx, "plugins", "ls")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]pluginRow{}
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if i == 0 {
			if strings.Join(f, " ") != "TYPE ID PLATFORMS STATUS" {
				t.Fatalf("ctr plugins ls header: %q", line)
			}
			continue
		}
		if len(f) != 4 {
			t.Errorf("ctr plugins ls: unexpected line %q", line)
			continue
		}
		rows[f[0]+"."+f[1]] = pluginRow{f[0], f[1], f[2], f[3]}
	}
	return rows
}

func TestPluginListed(t *testing.T) {
	d := harness.StartDaemon(t, harness.Options{Embed: harness.EmbedConfigure})
	rows := ctrPlugins(t, d)
	want := pluginRow{"io.containerd.runtime.v1", "embed", "linux/amd64", "ok"}
	if got := rows[harness.EmbedPluginID]; got != want {
		t.Errorf("ctr plugins ls: embed row %+v, want %+v", got, want)
	}
	if got := rows["io.containerd.runtime.v2.task"]; got.Status != "ok" {
		t.Errorf("ctr plugins ls: runc.v2 task plugin row %+v", got)
	}
}

func TestPluginConfigDefault(t *testing.T) {
	_, bin := harness.Requirements(t, "")
	out, err := exec.Command(bin, "config", "default").Output()
	if err != nil {
		t.Fatal(err)
	}
	// The section, and its keys up to the next section. containerd 2.x
	// writes TOML strings in single quotes, 1.7 in double quotes.
	s := strings.ReplaceAll(string(out), "'", `"`)
	head := `[plugins."io.containerd.runtime.v1.embed"]`
	i := strings.Index(s, head)
	if i < 0 {
		t.Fatalf("config default has no %s section:\n%s", head, s)
	}
	sec := s[i+len(head):]
	if j := strings.Index(sec, "\n  ["); j >= 0 {
		sec = sec[:j]
	}
	for _, key := range []string{"runtime", "runtime_root", "capacity", "pin_dir"} {
		if !regexp.MustCompile(`(?m)^\s*` + key + `\s*=`).MatchString(sec) {
			t.Errorf("config default: key %s missing in %s:%s", key, head, sec)
		}
	}
	for key, val := range map[string]string{"runtime": `"runc"`, "capacity": `65536`} {
		if !regexp.MustCompile(`(?m)^\s*` + key + `\s*=\s*` + regexp.QuoteMeta(val) + `\s*$`).MatchString(sec) {
			t.Errorf("config default: %s is not %s in:%s", key, val, sec)
		}
	}
}

// Without BPF (pin_dir cannot be created: its parent is a regular file) the
// plugin reports an error status and the rest of containerd works.
func TestPluginBPFUnavailable(t *testing.T) {
	base, err := os.MkdirTemp("", "es-nobpf-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d := harness.StartDaemon(t, harness.Options{Embed: harness.EmbedConfigure, PinDir: filepath.Join(file, "bpf")})
	rows := ctrPlugins(t, d)
	if got := rows[harness.EmbedPluginID]; got.Status != "error" {
		t.Errorf("ctr plugins ls: embed row %+v, want status error", got)
	}
	ctx, cancel := context.WithTimeout(d.Context(), 2*time.Minute)
	defer cancel()
	e := &env{t: t, d: d, ctx: ctx, img: d.ImportTestImage(ctx)}
	check := d.LeakCheck(t)
	t.Cleanup(check)
	got := e.runToExit(t, harness.RuncV2, []string{"sh", "-c", "echo ok; exit 4"})
	if got != (outcome{Code: 4, Stdout: "ok\n"}) {
		t.Errorf("runc.v2 in a daemon without embed: %+v", got)
	}
	// The embed runtime is refused, not hung.
	c := e.container(t, harness.EmbedPluginID, "nobpf")
	if task, err := c.NewTask(ctx, cio.NullIO); err == nil {
		task.Delete(ctx)
		t.Errorf("embed task created without the embed plugin")
	} else {
		t.Logf("embed task without the plugin: %v", err)
	}
}
