//go:build linux

package integration

import (
	"fmt"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/oci"
)

// The exit of a paused container's init: killed through the task (which
// must thaw it: on cgroup v1 a frozen process dies only once thawed), with
// kill --all, or by someone else on the host (it dies at the Resume). The
// exits, states and events are runc.v2's, and the container is left
// thawed and deletable.
func TestParityPausedInitExit(t *testing.T) {
	e := newEnv(t)

	// The init and an exec of a paused container, SIGKILLed through the
	// task (init only, or --all).
	for _, all := range []bool{false, true} {
		all := all
		name := "kill"
		if all {
			name = "kill-all"
		}
		t.Run(name, func(t *testing.T) {
			both(t, e, func(t *testing.T, rt string) any {
				c := e.container(t, rt, "pausedexit", oci.WithProcessArgs("sleep", "3600"))
				ev := e.recordEvents(t, c)
				task, ch := e.startTask(t, c)
				p, pch := e.exec(t, c, task, "ex", nil, "sleep", "3600")
				var obs []string
				obs = append(obs, "pause:"+errClass(task.Pause(e.ctx)), "exec:"+status(t, e.ctx, p))
				var opts []containerd.KillOpts
				if all {
					opts = append(opts, containerd.WithKillAll)
				}
				obs = append(obs, "kill:"+errClass(task.Kill(e.ctx, syscall.SIGKILL, opts...)))
				obs = append(obs, fmt.Sprintf("exec-exit:%d", e.exitWithin(t, pch)))
				obs = append(obs, fmt.Sprintf("init-exit:%d", e.exitWithin(t, ch)))
				obs = append(obs, "init:"+status(t, e.ctx, task), "exec:"+status(t, e.ctx, p))
				obs = append(obs, "resume-stopped:"+errClass(task.Resume(e.ctx)))
				if _, err := p.Delete(e.ctx); err != nil {
					t.Fatalf("delete exec: %v", err)
				}
				st, err := task.Delete(e.ctx)
				if err != nil {
					t.Fatalf("delete: %v", err)
				}
				obs = append(obs, fmt.Sprintf("delete:%d", st.ExitCode()))
				evs := ev.Settle("/tasks/exit", "/tasks/delete")
				checkOneExitPerProcess(t, evs)
				// The exec's and the init's exits come from the same
				// SIGKILL of the pid namespace: their order is not
				// fixed on either runtime.
				return append(obs, sortExits(evs)...)
			})
		})
	}

	// SIGKILL from the host to a paused init: nothing happens while it is
	// frozen; the Resume lets it die and its exit is reported.
	t.Run("host-kill", func(t *testing.T) {
		both(t, e, func(t *testing.T, rt string) any {
			c := e.container(t, rt, "hostkill", oci.WithProcessArgs("sleep", "3600"))
			ev := e.recordEvents(t, c)
			task, ch := e.startTask(t, c)
			waitComm(t, task.Pid(), "sleep")
			var obs []string
			obs = append(obs, "pause:"+errClass(task.Pause(e.ctx)))
			if err := syscall.Kill(int(task.Pid()), syscall.SIGKILL); err != nil {
				t.Fatalf("kill %d: %v", task.Pid(), err)
			}
			// Frozen: the signal is pending, no exit can come. A short
			// look, not a timing assertion: an exit here is a finding.
			select {
			case st := <-ch:
				obs = append(obs, fmt.Sprintf("exit-while-frozen:%d", st.ExitCode()))
			case <-time.After(300 * time.Millisecond):
				obs = append(obs, "frozen:"+status(t, e.ctx, task))
			}
			obs = append(obs, "resume:"+errClass(task.Resume(e.ctx)))
			obs = append(obs, fmt.Sprintf("exit:%d", e.exitWithin(t, ch)))
			obs = append(obs, status(t, e.ctx, task))
			st, err := task.Delete(e.ctx)
			if err != nil {
				t.Fatalf("delete: %v", err)
			}
			obs = append(obs, fmt.Sprintf("delete:%d", st.ExitCode()))
			evs := ev.Settle("/tasks/exit", "/tasks/delete")
			checkOneExitPerProcess(t, evs)
			// The thawed init dies while Resume returns: runc.v2's
			// shim publishes /tasks/resumed after `runc resume` and
			// the exit from its reaper, in either order.
			return append(obs, resumedBeforeExit(evs)...)
		})
	})
}

// resumedBeforeExit puts a /tasks/resumed that directly follows a
// /tasks/exit before it.
func resumedBeforeExit(evs []string) []string {
	out := append([]string(nil), evs...)
	for i := 1; i < len(out); i++ {
		if out[i] == "/tasks/resumed" && strings.HasPrefix(out[i-1], "/tasks/exit") {
			out[i-1], out[i] = out[i], out[i-1]
		}
	}
	return out
}

// sortExits keeps the events in order but sorts each run of consecutive
// /tasks/exit events.
func sortExits(evs []string) []string {
	out := append([]string(nil), evs...)
	for i := 0; i < len(out); {
		j := i
		for j < len(out) && countTopic(out[j:j+1], "/tasks/exit") == 1 {
			j++
		}
		if j > i+1 {
			sort.Strings(out[i:j])
		}
		if j == i {
			j++
		}
		i = j
	}
	return out
}
