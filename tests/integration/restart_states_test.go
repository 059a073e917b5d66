//go:build linux

package integration

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/oci"
)

// A task that is created (not started) or paused when containerd crashes
// keeps that state across the restart, and everything a client can do to it
// from there works as on runc.v2, whose shims keep the task in memory.
func TestRestartCreatedAndPaused(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		sig := sig
		t.Run(strings.ToLower(sigName(sig)), func(t *testing.T) {
			testRestartCreatedAndPaused(t, sig)
		})
	}
}

func sigName(sig syscall.Signal) string {
	if sig == syscall.SIGKILL {
		return "SIGKILL"
	}
	return "SIGTERM"
}

func testRestartCreatedAndPaused(t *testing.T, sig syscall.Signal) {
	e := newEnv(t)
	rsKeepLog(t, e)
	names := []string{"created-start", "created-delete", "paused-resume", "paused-kill"}
	ids := map[string]map[string]string{}
	pids := map[string]map[string]uint32{}
	for _, rt := range runtimes {
		ids[rt], pids[rt] = map[string]string{}, map[string]uint32{}
		for _, name := range names {
			c := e.container(t, rt, name, oci.WithProcessArgs("sleep", "3600"))
			task := e.newTask(t, c, nil)
			if strings.HasPrefix(name, "paused") {
				if err := task.Start(e.ctx); err != nil {
					t.Fatalf("start %s: %v", name, err)
				}
				if err := task.Pause(e.ctx); err != nil {
					t.Fatalf("pause %s: %v", name, err)
				}
			}
			ids[rt][name], pids[rt][name] = c.ID(), task.Pid()
		}
	}
	if err := e.d.Restart(sig); err != nil {
		t.Fatalf("restart: %v", err)
	}
	listed := map[string]map[string]string{}
	for _, rt := range runtimes {
		listed[rt] = e.rsListTasks(t, ids[rt])
	}
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		obs := map[string]string{"listed": fmt.Sprint(listed[rt])}
		for _, name := range names {
			task := e.rsLoadTask(t, ids[rt][name])
			if task.Pid() != pids[rt][name] {
				t.Errorf("%s: pid %d after restart, was %d", name, task.Pid(), pids[rt][name])
			}
		}

		// Created: Start runs the container's process, then it is a
		// normal task (exec, pause, resume, kill, delete).
		task := e.rsLoadTask(t, ids[rt]["created-start"])
		obs["created-start"] = "start:" + errClass(task.Start(e.ctx))
		st, _ := task.Status(e.ctx)
		obs["created-start"] += " status:" + rsStatus(st)
		waitComm(t, task.Pid(), "sleep")
		obs["created-start manage"] = e.rsManage(t, ids[rt]["created-start"])

		// Created: deleted without a start, through the tasks service
		// (as the client's WithProcessKill does).
		r, err := e.d.Client().TaskService().Delete(e.ctx, &tasksapi.DeleteTaskRequest{ContainerID: ids[rt]["created-delete"]})
		if err != nil {
			obs["created-delete"] = "delete:" + errClass(err)
		} else {
			obs["created-delete"] = fmt.Sprintf("delete:%d", r.ExitStatus)
		}
		if pid := pids[rt]["created-delete"]; !goneWithin(pid, 10*time.Second) {
			t.Errorf("created-delete: runc init %s after the delete", procDesc(pid))
		}

		// Paused: no exec while paused; Resume, then a normal task.
		task = e.rsLoadTask(t, ids[rt]["paused-resume"])
		c, err := e.d.Client().LoadContainer(e.ctx, ids[rt]["paused-resume"])
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.createExec(t, c, task, "while-paused", "true")
		obs["paused-resume"] = "exec:" + errClass(err)
		obs["paused-resume"] += " resume:" + errClass(task.Resume(e.ctx))
		st, _ = task.Status(e.ctx)
		obs["paused-resume"] += " status:" + rsStatus(st)
		obs["paused-resume manage"] = e.rsManage(t, ids[rt]["paused-resume"])

		// Paused: SIGKILL thaws and kills it; the exit is reported.
		task = e.rsLoadTask(t, ids[rt]["paused-kill"])
		ch, err := task.Wait(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		obs["paused-kill"] = "kill:" + errClass(task.Kill(e.ctx, syscall.SIGKILL))
		obs["paused-kill"] += " wait:" + e.rsWaitCode(t, "paused-kill", ch)
		st, _ = task.Status(e.ctx)
		obs["paused-kill"] += " status:" + rsStatus(st)
		if ds, err := task.Delete(e.ctx); err != nil {
			obs["paused-kill"] += " delete:" + errClass(err)
		} else {
			obs["paused-kill"] += fmt.Sprintf(" delete:%d", ds.ExitCode())
		}
		t.Logf("observed: %v", obs)
		managed := "status=running exec=3 paused=paused resumed=running killed=137 delete=137"
		want := map[string]string{
			"listed":               "map[created-delete:created created-start:created paused-kill:paused paused-resume:paused]",
			"created-start":        "start:ok status:running",
			"created-start manage": managed,
			"created-delete":       "delete:0",
			"paused-resume":        "exec:Unknown resume:ok status:running",
			"paused-resume manage": managed,
			"paused-kill":          "kill:ok wait:137 status:stopped:137 delete:137",
		}
		if fmt.Sprint(obs) != fmt.Sprint(want) {
			t.Errorf("after the restart:\n  got:  %v\n  want: %v", obs, want)
		}
		return obs
	})
}
