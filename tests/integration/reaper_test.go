//go:build linux

package integration

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// A reported exit's process is gone (reaped) right after, whatever the
// host's pid 1 does: the daemon's reaper (go/exitmon.RunUnderReaper) reaps
// the orphans of its tree at once, as runc.v2's shims reap their containers.
// The host's init on the test machine reaps only every ~2s, so the 1s bound
// below tells a prompt reaper from it; it is a deadline for something that
// takes milliseconds, not a latency assertion.
const reapBound = time.Second

// goneWithin polls kill(pid, 0) until ESRCH (reaped) or the bound passes.
func goneWithin(pid uint32, bound time.Duration) bool {
	deadline := time.Now().Add(bound)
	for {
		if err := syscall.Kill(int(pid), 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

func procDesc(pid uint32) string {
	if rsProcExited(pid) {
		return fmt.Sprintf("pid %d exited but not reaped (parent %d)", pid, parentOf(pid))
	}
	return fmt.Sprintf("pid %d running (parent %d)", pid, parentOf(pid))
}

// parentOf is pid's parent from /proc/<pid>/stat, -1 if it is gone.
func parentOf(pid uint32) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 2 {
		return -1
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// runningTask starts args in a new container on rt; the test deletes it.
func (e *env) runningTask(t *testing.T, rt, name string, opts ...oci.SpecOpts) (containerd.Container, containerd.Task, <-chan containerd.ExitStatus) {
	t.Helper()
	c := e.container(t, rt, name, opts...)
	task, ch := e.startTask(t, c)
	return c, task, ch
}

// (a) An exec killed in a running container is gone, also for `ps` inside
// the container, once its Wait returned.
func TestReaperExecGoneAfterWait(t *testing.T) {
	e := newEnv(t)
	both(t, e, func(t *testing.T, rt string) any {
		c, task, initCh := e.runningTask(t, rt, "execs", oci.WithProcessArgs("sleep", "3600"))
		p, ch := e.exec(t, c, task, "victim", nil, "sleep", "4242")
		pid := p.Pid()
		if err := p.Kill(e.ctx, syscall.SIGKILL); err != nil {
			t.Fatalf("kill exec: %v", err)
		}
		e.exitWithin(t, ch)
		gone := goneWithin(pid, reapBound)
		if !gone {
			t.Errorf("exec %s within %v of its Wait", procDesc(pid), reapBound)
		}
		_, ps := e.execOutput(t, c, task, "ps", "ps", "-o", "pid,stat,args")
		listed := strings.Contains(ps, "sleep 4242")
		if listed {
			t.Errorf("killed exec still listed by ps in the container:\n%s", ps)
		}
		if _, err := p.Delete(e.ctx); err != nil {
			t.Fatalf("delete exec: %v", err)
		}
		// With an exec still running when the init is killed, the
		// exec dies with the pid namespace; the container's delete no
		// longer waits for the host's init to reap it (its zombie kept
		// the namespace's init, and so runc's view of it, alive).
		e.exec(t, c, task, "bystander", nil, "sleep", "4343")
		task.Kill(e.ctx, syscall.SIGKILL)
		e.exitWithin(t, initCh)
		start := time.Now()
		if _, err := task.Delete(e.ctx); err != nil {
			t.Fatalf("delete: %v", err)
		}
		t.Logf("task delete after an exec: %v", time.Since(start).Round(time.Millisecond))
		return fmt.Sprintf("gone=%v listed=%v", gone, listed)
	})
}

// ch0 is the exit channel of an already started task.
func ch0(t *testing.T, e *env, task containerd.Task) <-chan containerd.ExitStatus {
	t.Helper()
	ch, err := task.Wait(e.ctx)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return ch
}

// (b) After Kill + Wait of a task's init, kill(pid, 0) finds no process.
func TestReaperInitGoneAfterWait(t *testing.T) {
	e := newEnv(t)
	both(t, e, func(t *testing.T, rt string) any {
		_, task, ch := e.runningTask(t, rt, "init", oci.WithProcessArgs("sleep", "3600"))
		pid := task.Pid()
		if err := task.Kill(e.ctx, syscall.SIGKILL); err != nil {
			t.Fatalf("kill: %v", err)
		}
		e.exitWithin(t, ch)
		gone := goneWithin(pid, reapBound)
		if !gone {
			t.Errorf("init %s within %v of its Wait", procDesc(pid), reapBound)
		}
		if _, err := task.Delete(e.ctx); err != nil {
			t.Fatalf("delete: %v", err)
		}
		return gone
	})
}

// (c) The same after a crash of containerd, of the front (the pid its
// supervisor started) or of the reaper: the containers run on and are
// managed by the restarted daemon. After a crash of containerd or of the
// front, the reaper stays (it has children) and still reaps them at once;
// after a crash of the reaper itself they are the host's init's to reap.
func TestReaperAfterRestart(t *testing.T) {
	for _, who := range []string{"daemon", "front", "reaper"} {
		t.Run(who, func(t *testing.T) {
			e := newEnv(t)
			ids := map[string]string{}
			pids := map[string]uint32{}
			for _, rt := range runtimes {
				c, task, _ := e.runningTask(t, rt, "survivor", oci.WithProcessArgs("sleep", "3600"))
				ids[rt], pids[rt] = c.ID(), task.Pid()
			}
			reaper := e.d.ReaperPid()
			if reaper == 0 {
				t.Fatal("daemon runs without a reaper")
			}
			if got := parentOf(pids[runtimes[0]]); got != reaper {
				t.Fatalf("embed init %d has parent %d, want the reaper %d", pids[runtimes[0]], got, reaper)
			}
			var err error
			switch who {
			case "daemon":
				err = e.d.Kill()
			case "front":
				err = e.d.KillPid(e.d.FrontPid())
			case "reaper":
				err = e.d.KillPid(reaper)
			}
			if err != nil {
				t.Fatalf("crash %s: %v", who, err)
			}
			if err := e.d.Restart(syscall.SIGKILL); err != nil {
				t.Fatalf("restart: %v", err)
			}
			for _, rt := range runtimes {
				rt := rt
				t.Run(shortName(rt), func(t *testing.T) {
					pid := pids[rt]
					if rsProcExited(pid) {
						t.Fatalf("init %d did not survive the crash of the %s", pid, who)
					}
					task := e.rsLoadTask(t, ids[rt])
					ch := ch0(t, e, task)
					if err := task.Kill(e.ctx, syscall.SIGKILL); err != nil {
						t.Fatalf("kill: %v", err)
					}
					e.exitWithin(t, ch)
					bound := reapBound
					if who == "reaper" && rt == harness.EmbedPluginID {
						bound = 20 * time.Second // the host's init reaps it
					}
					if !goneWithin(pid, bound) {
						t.Errorf("init %s within %v of its Wait", procDesc(pid), bound)
					}
					if _, err := task.Delete(e.ctx); err != nil {
						t.Fatalf("delete: %v", err)
					}
				})
			}
		})
	}
}

// (d) A container in the host's pid namespace whose init leaves orphans:
// each is reaped as soon as it exits, none piles up as a zombie.
func TestReaperHostPidOrphans(t *testing.T) {
	e := newEnv(t)
	both(t, e, func(t *testing.T, rt string) any {
		script := `for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do ` +
			`sh -c 'sleep 0.05 & echo $!' >> /tmp/orphans; done; echo ok > /tmp/done; exec sleep 3600`
		_, task, ch := e.runningTask(t, rt, "orphans",
			oci.WithProcessArgs("sh", "-c", script),
			oci.WithHostNamespace(specs.PIDNamespace))
		waitFile(t, task.Pid(), "/tmp/done", 30*time.Second)
		list := waitFile(t, task.Pid(), "/tmp/orphans", time.Second)
		var stuck []string
		n := 0
		for _, f := range strings.Fields(list) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("orphans file: %q", list)
			}
			n++
			// each sleeps 50ms, then must be reaped
			if !goneWithin(uint32(pid), reapBound+50*time.Millisecond) {
				stuck = append(stuck, procDesc(uint32(pid)))
			}
		}
		if len(stuck) > 0 {
			t.Errorf("orphans not reaped within %v: %v", reapBound, stuck)
		}
		if z := e.d.Zombies(); len(z) > 0 {
			// transient ones are reaped within ms; look again
			time.Sleep(100 * time.Millisecond)
			if z = e.d.Zombies(); len(z) > 0 {
				t.Errorf("zombies left to the daemon or its reaper: %v", z)
			}
		}
		task.Kill(e.ctx, syscall.SIGKILL)
		e.exitWithin(t, ch)
		if _, err := task.Delete(e.ctx); err != nil {
			t.Fatalf("delete: %v", err)
		}
		return fmt.Sprintf("orphans=%d stuck=%d", n, len(stuck))
	})
}

// waitComm waits (bounded) until pid's comm is comm, e.g. until a
// container's init has exec'd its command.
func waitComm(t *testing.T, pid uint32, comm string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(b)) == comm {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d is %q, not %s, after 10s", pid, b, comm)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
