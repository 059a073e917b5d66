//go:build linux

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/oci"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// TestStateFullRestart fills the daemon's state filesystem (a small tmpfs)
// while containers of both runtimes run. Meanwhile a create and an exec fail
// with a clear error and leave nothing behind, and processes exit and an exec
// is deleted: embed cannot persist that (its state.json lives in the state
// dir). Once there is room again and containerd restarts, a client must see
// what it saw before, as on runc.v2 (whose shims keep their state in
// memory): no exit published a second time, no deleted exec back.
func TestStateFullRestart(t *testing.T) {
	d := harness.StartDaemon(t, harness.Options{
		StateTmpfsMiB: 16,
		LeakProbes:    map[string]func(*harness.Daemon) ([]string, error){"bpf": bpfEntries},
	})
	ctx, cancel := context.WithTimeout(d.Context(), 5*time.Minute)
	defer cancel()
	e := &env{t: t, d: d, ctx: ctx, img: d.ImportTestImage(ctx)}
	rsKeepLog(t, e)
	for _, rt := range runtimes {
		e.warmUp(t, rt)
	}
	check := d.LeakCheck(t)
	t.Cleanup(check)

	type set struct {
		a       containerd.Container
		aTask   containerd.Task
		x, y    containerd.Process
		mark    containerd.Container
		markID  string
		markPid uint32
	}
	sets := map[string]*set{}
	for _, rt := range runtimes {
		s := &set{}
		s.a = e.container(t, rt, "full-A", oci.WithProcessArgs("sleep", "3600"))
		s.aTask = e.rsStartTask(t, s.a, nil)
		s.x = e.rsExec(t, s.a, s.aTask, "x", "sleep", "3600")
		s.y = e.rsExec(t, s.a, s.aTask, "y", "sleep", "3600")
		m := e.container(t, rt, "full-mark", oci.WithProcessArgs("sleep", "3600"))
		s.mark, s.markID, s.markPid = m, m.ID(), e.rsStartTask(t, m, nil).Pid()
		sets[rt] = s
	}
	w := e.rsWatchExits(t)

	// fill tops the filler up before each step: removing a file (a pid
	// file, a failed create's bundle) makes room for the next write.
	var filler string
	fill := func() {
		t.Helper()
		path, size, err := d.FillState("filler")
		if err != nil {
			t.Fatal(err)
		}
		filler = path
		t.Logf("state dir full: %d bytes more in %s", size, path)
	}

	// While full: y is killed and deleted, x killed, then the init.
	for _, rt := range runtimes {
		s := sets[rt]
		for _, p := range []containerd.Process{s.y, s.x} {
			fill()
			ch, err := p.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Kill(ctx, syscall.SIGKILL); err != nil {
				t.Fatalf("%s: kill exec %s: %v", shortName(rt), p.ID(), err)
			}
			e.exitWithin(t, ch)
		}
		fill()
		if _, err := s.y.Delete(ctx); err != nil {
			t.Errorf("%s: delete exec y with the state dir full: %v", shortName(rt), err)
		}
		ch, err := s.aTask.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fill()
		if err := s.aTask.Kill(ctx, syscall.SIGKILL); err != nil {
			t.Fatalf("%s: kill A: %v", shortName(rt), err)
		}
		e.exitWithin(t, ch)
	}
	// While full: a create and an exec fail, naming the cause, and leave
	// nothing behind.
	for _, rt := range runtimes {
		fill()
		c := e.container(t, rt, "full-new", oci.WithProcessArgs("sleep", "3600"))
		if task, err := c.NewTask(ctx, cio.NullIO); err == nil {
			t.Errorf("%s: task created with the state dir full", shortName(rt))
			_, _ = task.Delete(ctx, containerd.WithProcessKill)
		} else {
			t.Logf("%s: create with the state dir full: %v", shortName(rt), err)
			if rt == harness.EmbedPluginID && !strings.Contains(err.Error(), "no space left on device") {
				t.Errorf("embed: create with the state dir full: %q does not say \"no space left on device\"", err)
			}
		}
		s := sets[rt]
		spec, err := s.mark.Spec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ps := *spec.Process
		ps.Args = []string{"sleep", "3600"}
		mt, err := s.mark.Task(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		fill()
		// Both runtimes write the exec's pid file in the bundle.
		p, err := mt.Exec(ctx, "z", &ps, cio.NullIO)
		if err == nil {
			if err = p.Start(ctx); err != nil {
				_, _ = p.Delete(ctx, containerd.WithProcessKill)
			}
		}
		if err == nil {
			t.Errorf("%s: exec started with the state dir full", shortName(rt))
			_ = p.Kill(ctx, syscall.SIGKILL)
		} else {
			t.Logf("%s: exec with the state dir full: %v", shortName(rt), err)
			if rt == harness.EmbedPluginID && !strings.Contains(err.Error(), "no space left on device") {
				t.Errorf("embed: exec with the state dir full: %q does not say \"no space left on device\"", err)
			}
		}
	}

	var want [][2]string
	for _, rt := range runtimes {
		id := sets[rt].a.ID()
		want = append(want, [2]string{id, "y"}, [2]string{id, "x"}, [2]string{id, id})
	}
	w.settle(t, want...)
	w.cancel()

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// Room again: embed's state.json of A must catch up (init and x
	// exited, y gone) before containerd goes down.
	ea := sets[harness.EmbedPluginID].a.ID()
	statePath := filepath.Join(d.State, harness.EmbedPluginID, d.Namespace, ea, "state.json")
	deadline := time.Now().Add(30 * time.Second)
	for {
		why := stateCaughtUp(statePath)
		if why == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("embed: %s still stale 30 s after the state dir had room again: %s", statePath, why)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A crash, with the markers' exits while down: a client subscribed
	// after the restart gets those, and nothing of A again.
	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		rsKillPid(t, s.markPid)
	}
	if err := d.Restart(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w2 := e.rsWatchExits(t)
	es := sets[harness.EmbedPluginID]
	w2.settle(t, [2]string{es.markID, es.markID})
	for _, rt := range runtimes {
		id := sets[rt].a.ID()
		for _, p := range []string{id, "x", "y"} {
			n, st := w2.count(id, p)
			if n != 0 && rt == harness.EmbedPluginID {
				t.Errorf("embed: /tasks/exit of %s/%s published again after the restart: %d times %v", id, p, n, st)
			} else if n != 0 {
				t.Logf("runc.v2: /tasks/exit of %s/%s after the restart: %d times %v", id, p, n, st)
			}
		}
	}
	// y stays deleted; x and the init stay stopped with their status.
	task := e.rsLoadTask(t, es.a.ID())
	if _, err := task.LoadProcess(ctx, "y", nil); !errdefs.IsNotFound(err) {
		t.Errorf("embed: deleted exec y after the restart: %v, want not found", err)
	}
	for _, p := range []string{"x", ""} {
		var pr containerd.Process = task
		if p != "" {
			var err error
			if pr, err = task.LoadProcess(ctx, p, nil); err != nil {
				t.Errorf("embed: exec %s after the restart: %v", p, err)
				continue
			}
		}
		st, err := pr.Status(ctx)
		if err != nil || st.Status != containerd.Stopped || st.ExitStatus != 137 {
			t.Errorf("embed: %s after the restart: %v (%v), want stopped with 137", pr.ID(), st, err)
		}
	}
}

// stateCaughtUp tells what in embed's state.json at path does not yet say
// that the init and exec x exited and exec y is gone ("" once it does).
func stateCaughtUp(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var st struct {
		Init  struct{ Exited bool }
		Execs []struct {
			ID     string
			Exited bool
		}
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return err.Error()
	}
	if !st.Init.Exited {
		return "init not exited"
	}
	x := false
	for _, p := range st.Execs {
		switch {
		case p.ID == "y":
			return "exec y (deleted) listed"
		case p.ID == "x" && !p.Exited:
			return "exec x not exited"
		case p.ID == "x":
			x = true
		}
	}
	if !x {
		return fmt.Sprintf("exec x not listed: %s", b)
	}
	return ""
}
