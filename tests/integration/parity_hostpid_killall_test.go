//go:build linux

package integration

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/oci"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// A container in the host's pid namespace: its init's death does not take
// the other processes with it, so runc.v2 kills every process of the
// container (runc kill --all) when the init exits. A background child of
// the init and a running exec must be gone, the exec reported killed, and
// the task deletable.
func TestParityHostPidKillAllAtInitExit(t *testing.T) {
	e := newEnv(t)
	both(t, e, func(t *testing.T, rt string) any {
		c := e.container(t, rt, "hostpidexit", oci.WithHostNamespace(specs.PIDNamespace),
			oci.WithProcessArgs("sh", "-c",
				"sleep 3600 & echo $! > /tmp/bg; while [ ! -e /tmp/go ]; do sleep 0.05; done; exit 3"))
		ev := e.recordEvents(t, c)
		task, ch := e.startTask(t, c)
		bg, err := strconv.Atoi(waitFile(t, task.Pid(), "/tmp/bg", 10*time.Second))
		if err != nil {
			t.Fatalf("background pid: %v", err)
		}
		p, pch := e.exec(t, c, task, "ex", nil, "sleep", "3600")
		execPid := p.Pid()
		if err := writeInto(task.Pid(), "/tmp/go"); err != nil {
			t.Fatalf("let the init exit: %v", err)
		}
		var obs []string
		obs = append(obs, fmt.Sprintf("exec-exit:%d", e.exitWithin(t, pch)))
		obs = append(obs, fmt.Sprintf("init-exit:%d", e.exitWithin(t, ch)))
		obs = append(obs, fmt.Sprintf("background-gone:%v", goneWithin(uint32(bg), 10*time.Second)))
		obs = append(obs, fmt.Sprintf("exec-gone:%v", goneWithin(execPid, 10*time.Second)))
		obs = append(obs, "init:"+status(t, e.ctx, task), "exec:"+status(t, e.ctx, p))
		if _, err := p.Delete(e.ctx); err != nil {
			t.Fatalf("delete exec: %v", err)
		}
		st, err := task.Delete(e.ctx)
		if err != nil {
			t.Fatalf("delete: %v", err)
		}
		obs = append(obs, fmt.Sprintf("delete:%d", st.ExitCode()))
		if !goneWithin(uint32(bg), time.Second) {
			syscall.Kill(bg, syscall.SIGKILL) // leave nothing behind
		}
		evs := dropTopics(ev.Settle("/tasks/exit", "/tasks/delete"), "/tasks/create", "/tasks/start")
		checkOneExitPerProcess(t, evs)
		return append(obs, evs...)
	})
}

// writeInto creates an empty file in the root of the process pid.
func writeInto(pid uint32, path string) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/root%s", pid, path), nil, 0o644)
}
