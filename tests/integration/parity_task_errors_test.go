//go:build linux

package integration

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	containerd "github.com/containerd/containerd"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/oci"
	runtimeoptions "github.com/containerd/containerd/pkg/runtimeoptions/v1"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// failedCreate is what a client sees of a task create that must fail.
type failedCreate struct {
	Create string // errdefs class of NewTask's error (or of Start's)
	Named  bool   // the error names the cause
	Events []string
}

// createMustFail creates (and, if that works, starts) the container's task
// and reports the error, whether it contains cause, and the events.
func (e *env) createMustFail(t *testing.T, c containerd.Container, cause string) failedCreate {
	t.Helper()
	ev := e.recordEvents(t, c)
	var f failedCreate
	task, err := c.NewTask(e.ctx, cio.NullIO)
	if err == nil {
		ch, _ := task.Wait(e.ctx)
		if err = task.Start(e.ctx); err == nil {
			t.Errorf("task started")
			e.exitWithin(t, ch)
		}
		task.Delete(e.ctx, containerd.WithProcessKill)
		f.Create = "start:" + errClass(err)
	} else {
		f.Create = "create:" + errClass(err)
	}
	t.Logf("error: %v", err)
	f.Named = err != nil && strings.Contains(err.Error(), cause)
	if !f.Named {
		t.Errorf("error does not name %q: %v", cause, err)
	}
	var want []string
	if strings.HasPrefix(f.Create, "start:") {
		want = []string{"/tasks/delete"}
	}
	f.Events = ev.Settle(want...)
	if n := countTopic(f.Events, "/tasks/exit"); n != 0 && strings.HasPrefix(f.Create, "create:") {
		t.Errorf("/tasks/exit published for a task whose create failed: %v", f.Events)
	}
	return f
}

// Bad input gives a clear error of the same class as runc.v2's, no exit
// event, and leaves nothing behind (the env's leak check).
func TestParityTaskBadInput(t *testing.T) {
	e := newEnv(t)

	// Ids containerd does not accept never reach a runtime: the error
	// names the id and is InvalidArgument on both.
	t.Run("invalid-id", func(t *testing.T) {
		both(t, e, func(t *testing.T, rt string) any {
			var got []string
			for _, id := range []string{"bad/id", "-leading-dash", strings.Repeat("x", 77)} {
				_, err := e.d.Client().NewContainer(e.ctx, id,
					containerd.WithNewSnapshot(newID(rt, "snap"), e.img),
					containerd.WithNewSpec(oci.WithImageConfig(e.img)),
					containerd.WithRuntime(rt, nil))
				if err == nil {
					t.Fatalf("container %q created", id)
				}
				if !strings.Contains(err.Error(), id) {
					t.Errorf("error does not name the id %q: %v", id, err)
				}
				got = append(got, errClass(err))
			}
			return got
		})
	})

	// The longest id containerd accepts, with every separator it allows.
	t.Run("long-id", func(t *testing.T) {
		both(t, e, func(t *testing.T, rt string) any {
			id := newID(rt, "a.b_c-d")
			id += "-" + strings.Repeat("x", 76-len(id)-1)
			c := e.containerID(t, rt, id, nil, oci.WithProcessArgs("sh", "-c", "echo hi; exit 4"))
			var out lockedBuffer
			task := e.newTask(t, c, &out)
			ch, _ := task.Wait(e.ctx)
			if err := task.Start(e.ctx); err != nil {
				t.Fatalf("start: %v", err)
			}
			code := e.exitWithin(t, ch)
			if _, err := task.Delete(e.ctx); err != nil {
				t.Fatalf("delete: %v", err)
			}
			return fmt.Sprintf("len=%d code=%d out=%q", len(id), code, out.String())
		})
	})

	t.Run("duplicate-task", func(t *testing.T) {
		both(t, e, func(t *testing.T, rt string) any {
			c := e.container(t, rt, "dup", oci.WithProcessArgs("sleep", "3600"))
			ev := e.recordEvents(t, c)
			task, ch := e.startTask(t, c)
			_, err := c.NewTask(e.ctx, cio.NullIO)
			obs := []string{"second-create:" + errClass(err), "first:" + status(t, e.ctx, task)}
			task.Kill(e.ctx, syscall.SIGKILL)
			obs = append(obs, fmt.Sprintf("exited:%d", e.exitWithin(t, ch)))
			if _, err := task.Delete(e.ctx); err != nil {
				t.Fatalf("delete: %v", err)
			}
			evs := ev.Settle("/tasks/exit", "/tasks/delete")
			checkOneExitPerProcess(t, evs)
			return append(obs, evs...)
		})
	})

	t.Run("relative-cwd", func(t *testing.T) {
		both(t, e, func(t *testing.T, rt string) any {
			c := e.container(t, rt, "relcwd", oci.WithProcessArgs("true"), oci.WithProcessCwd("relative/dir"))
			return e.createMustFail(t, c, "absolute")
		})
	})

	t.Run("bad-rlimit", func(t *testing.T) {
		both(t, e, func(t *testing.T, rt string) any {
			c := e.container(t, rt, "rlimit", oci.WithProcessArgs("true"),
				func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
					s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_BOGUS", Hard: 1, Soft: 1})
					return nil
				})
			return e.createMustFail(t, c, "RLIMIT_BOGUS")
		})
	})

	t.Run("missing-binary", func(t *testing.T) {
		both(t, e, func(t *testing.T, rt string) any {
			c := e.container(t, rt, "nobin", oci.WithProcessArgs("/no/such/binary", "arg"))
			return e.createMustFail(t, c, "/no/such/binary")
		})
	})

	t.Run("missing-runc", func(t *testing.T) {
		both(t, e, func(t *testing.T, rt string) any {
			c := e.containerWith(t, rt, "norunc", []containerd.NewContainerOpts{
				containerd.WithRuntime(rt, &runcoptions.Options{BinaryName: "/no/such/runc"}),
			}, oci.WithProcessArgs("true"))
			return e.createMustFail(t, c, "/no/such/runc")
		})
	})

	// What CRI sends for runtime_type = io.containerd.runtime.v1.embed: its
	// generic runtimeoptions with the options section as TOML. Embed only
	// (runc.v2 gets runc options from CRI); the binary must reach runc.
	t.Run("cri-options-embed", func(t *testing.T) {
		c := e.containerWith(t, harness.EmbedPluginID, "crinorunc", []containerd.NewContainerOpts{
			containerd.WithRuntime(harness.EmbedPluginID, &runtimeoptions.Options{
				ConfigBody: []byte("BinaryName = \"/no/such/cri-runc\"\nSystemdCgroup = false\n"),
			}),
		}, oci.WithProcessArgs("true"))
		e.createMustFail(t, c, "/no/such/cri-runc")
	})

	// Runtime options of a type no runc runtime takes. runc.v2's shim
	// asserts the type and dies on it (its error names nothing); embed
	// must name the type. Only the failure is compared.
	t.Run("bad-options-type", func(t *testing.T) {
		both(t, e, func(t *testing.T, rt string) any {
			c := e.containerWith(t, rt, "badopts", []containerd.NewContainerOpts{
				containerd.WithRuntime(rt, &runcoptions.CheckpointOptions{Exit: true}),
			}, oci.WithProcessArgs("true"))
			ev := e.recordEvents(t, c)
			_, err := c.NewTask(e.ctx, cio.NullIO)
			t.Logf("error: %v", err)
			if err == nil {
				t.Fatalf("task created with options of a wrong type")
			}
			// runc.v2's shim dies: its client sees a ttrpc close error
			// ("ttrpc: closed", or "shutdown" if the server was already
			// shutting down).
			if rt == harness.RuncV2 && errClass(err) != "Unknown" {
				t.Errorf("runc.v2: error %v (class %s), want Unknown (ttrpc closed)", err, errClass(err))
			}
			if rt == harness.EmbedPluginID {
				if !strings.Contains(err.Error(), "CheckpointOptions") {
					t.Errorf("error does not name the options type: %v", err)
				}
				if errClass(err) != "InvalidArgument" {
					t.Errorf("error class %s, want InvalidArgument: %v", errClass(err), err)
				}
			}
			evs := ev.Settle()
			return append([]string{"create:failed"}, evs...)
		})
	})

	// Without criu (the tests' machines have none), checkpoint fails on
	// both, with different classes: runc.v2 passes runc's failure on as
	// Unknown; embed checks for criu first and says NotImplemented. Both
	// must name criu. The classes are asserted per runtime.
	t.Run("checkpoint", func(t *testing.T) {
		if p, err := exec.LookPath("criu"); err == nil {
			t.Skipf("criu is installed (%s): this case is the one without it", p)
		}
		both(t, e, func(t *testing.T, rt string) any {
			c := e.container(t, rt, "ckpt", oci.WithProcessArgs("sleep", "3600"))
			task, ch := e.startTask(t, c)
			_, err := task.Checkpoint(e.ctx)
			t.Logf("checkpoint error: %v", err)
			want := map[string]string{harness.EmbedPluginID: "NotImplemented", harness.RuncV2: "Unknown"}[rt]
			if err == nil {
				t.Errorf("checkpoint succeeded")
			} else if errClass(err) != want || !strings.Contains(err.Error(), "criu") {
				t.Errorf("checkpoint error %v (class %s), want %s naming criu", err, errClass(err), want)
			}
			obs := []string{"checkpoint:failed", "after:" + status(t, e.ctx, task)}
			task.Kill(e.ctx, syscall.SIGKILL)
			obs = append(obs, fmt.Sprintf("exited:%d", e.exitWithin(t, ch)))
			if _, err := task.Delete(e.ctx); err != nil {
				t.Fatalf("delete: %v", err)
			}
			return obs
		})
	})
}
