//go:build linux

package main_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"golang.org/x/sys/unix"
)

// containerd 2.3's own ctr and Go client drive the embed runtime as they
// drive runc.v2: run with --runtime / WithRuntime, exit statuses, exec,
// and the runtime info introspection answers for it. (The full parity
// suites run against this build from tests/ with containerd's API.)

const runtimeName = "io.containerd.runtime.v1.embed"

type daemon struct {
	dir, sock string
	cmd       *exec.Cmd
}

// startDaemon runs ../../bin/embedshim-containerd in a private temp dir;
// everything is stopped and removed at the end, even on failure.
func startDaemon(t *testing.T) *daemon {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("EMBEDSHIM_REQUIRE_ALL") == "1" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("needs root")
	}
	repo, _ := filepath.Abs("../..")
	bin := filepath.Join(repo, "bin", "embedshim-containerd")
	for _, p := range []string{bin, filepath.Join(repo, "bin", "ctr"), filepath.Join(repo, "_output", "image", "embedshim-test.tar")} {
		if _, err := os.Stat(p); err != nil {
			skip("%s missing: run `make build` first", p)
		}
	}
	dir, err := os.MkdirTemp("", "es-c2-")
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{dir: dir, sock: filepath.Join(dir, "c.sock")}
	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
[plugins."io.containerd.nri.v1.nri"]
  disable = true
[plugins."io.containerd.shim.v1.manager"]
  socket_dir = %q
[plugins.%q]
  pin_dir = %q
`, dir+"/root", dir+"/state", d.sock, d.sock+".ttrpc", dir+"/opt", dir+"/s", runtimeName, dir+"/bpf")
	if err := os.WriteFile(dir+"/config.toml", []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(dir + "/daemon.log")
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(bin, "--config", dir+"/config.toml")
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.Env = append(os.Environ(), "PATH="+filepath.Join(repo, "bin")+":"+os.Getenv("PATH"))
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			d.cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(dir + "/daemon.log")
			t.Logf("daemon log:\n%s", b)
		}
		// Lazily unmount whatever is left (the pin dir's bpffs).
		out, _ := os.ReadFile("/proc/self/mounts")
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], dir) {
				unix.Unmount(f[1], unix.MNT_DETACH)
			}
		}
		os.RemoveAll(dir)
	})
	for i := 0; ; i++ {
		if c, err := containerd.New(d.sock); err == nil {
			_, verr := c.Version(context.Background())
			c.Close()
			if verr == nil {
				break
			}
		}
		if i > 300 {
			t.Fatalf("daemon did not serve")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return d
}

func (d *daemon) ctr(t *testing.T, args ...string) (string, error) {
	repo, _ := filepath.Abs("../..")
	out, err := exec.Command(filepath.Join(repo, "bin", "ctr"),
		append([]string{"--address", d.sock, "--namespace", "c2"}, args...)...).CombinedOutput()
	return string(out), err
}

func TestContainerd2ClientAndCtr(t *testing.T) {
	d := startDaemon(t)
	repo, _ := filepath.Abs("../..")
	if out, err := d.ctr(t, "images", "import", filepath.Join(repo, "_output", "image", "embedshim-test.tar")); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	out, err := d.ctr(t, "plugins", "ls")
	if err != nil || !hasLine(out, "io.containerd.runtime.v1", "embed", "ok") {
		t.Fatalf("ctr plugins ls has no embed runtime with status ok (%v):\n%s", err, out)
	}

	// ctr run --runtime: the exit status comes back as with runc.v2.
	_, err = d.ctr(t, "run", "--rm", "--runtime", runtimeName, "docker.io/embedshim/test:latest", "c2-ctr", "sh", "-c", "exit 7")
	var ee *exec.ExitError
	if err == nil || !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("ctr run --runtime %s: %v, want exit status 7", runtimeName, err)
	}

	// The Go client: WithRuntime, Wait, exec, kill, delete.
	c, err := containerd.New(d.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := namespaces.WithNamespace(context.Background(), "c2")
	img, err := c.GetImage(ctx, "docker.io/embedshim/test:latest")
	if err != nil {
		t.Fatal(err)
	}
	ctn, err := c.NewContainer(ctx, "c2-go",
		containerd.WithRuntime(runtimeName, nil),
		containerd.WithNewSnapshot("c2-go", img),
		containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sleep", "300")))
	if err != nil {
		t.Fatal(err)
	}
	defer ctn.Delete(ctx, containerd.WithSnapshotCleanup)
	task, err := ctn.NewTask(ctx, cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	defer task.Delete(ctx, containerd.WithProcessKill)
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	spec, err := ctn.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pspec := *spec.Process
	pspec.Args = []string{"sh", "-c", "exit 5"}
	ex, err := task.Exec(ctx, "e1", &pspec, cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	exWait, err := ex.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ex.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if st := <-exWait; st.ExitCode() != 5 {
		t.Fatalf("exec exit status %d, want 5", st.ExitCode())
	}
	if _, err := ex.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	wait, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st := <-wait; st.ExitCode() != 137 {
		t.Fatalf("SIGKILLed init: exit status %d, want 137", st.ExitCode())
	}
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}

	// Runtime info is answered for the embed runtime (ctr plugins
	// inspect-runtime and CRI use it), not refused as NotImplemented.
	info, err := c.RuntimeInfo(ctx, runtimeName, nil)
	if err != nil {
		t.Fatalf("RuntimeInfo(%s): %v", runtimeName, err)
	}
	if info.Name != runtimeName || info.Features == nil {
		t.Fatalf("RuntimeInfo(%s) = %+v, want its name and runc's features", runtimeName, info)
	}
	if info, err := c.RuntimeInfo(ctx, "io.containerd.runc.v2", nil); err != nil || info.Name != "io.containerd.runc.v2" {
		t.Fatalf("RuntimeInfo(runc.v2) = %+v, %v: the upstream runtimes must still answer", info, err)
	}
}

// hasLine reports whether a line of out has words among its fields, in order.
func hasLine(out string, words ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		i := 0
		for _, f := range strings.Fields(l) {
			if i < len(words) && f == words[i] {
				i++
			}
		}
		if i == len(words) {
			return true
		}
	}
	return false
}
