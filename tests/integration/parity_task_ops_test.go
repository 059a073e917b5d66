//go:build linux

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	cgstats "github.com/containerd/cgroups/v3/cgroup1/stats"
	containerd "github.com/containerd/containerd"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// Operations on a running task: kill --all, pids, pause/resume, update,
// metrics, and an init that dies while an exec lives.
func TestParityTaskOps(t *testing.T) {
	e := newEnv(t)

	t.Run("kill-all", func(t *testing.T) {
		both(t, e, func(t *testing.T, rt string) any {
			c := e.container(t, rt, "killall", oci.WithProcessArgs("sleep", "3600"))
			ev := e.recordEvents(t, c)
			task, ch := e.startTask(t, c)
			p, pch := e.exec(t, c, task, "ex1", nil, "sleep", "3600")
			var obs []string
			obs = append(obs, "killall:"+errClass(task.Kill(e.ctx, syscall.SIGKILL, containerd.WithKillAll)))
			pexit, exit := e.exitStatusWithin(t, pch), e.exitStatusWithin(t, ch)
			ev.Expect("ex1", p.Pid(), pexit)
			ev.Expect("", task.Pid(), exit)
			obs = append(obs, fmt.Sprintf("exec:%d", pexit.ExitCode()))
			obs = append(obs, fmt.Sprintf("init:%d", exit.ExitCode()))
			obs = append(obs, "exec:"+status(t, e.ctx, p), "init:"+status(t, e.ctx, task))
			if _, err := p.Delete(e.ctx); err != nil {
				t.Fatalf("delete exec: %v", err)
			}
			st, err := task.Delete(e.ctx)
			if err != nil {
				t.Fatalf("delete: %v", err)
			}
			obs = append(obs, fmt.Sprintf("delete:%d", st.ExitCode()))
			evs := ev.Settle("/tasks/exit:exec=ex1", "/tasks/exit", "/tasks/delete")
			checkOneExitPerProcess(t, evs)
			return append(obs, evs...)
		})
	})

	// The init dies (SIGKILL) while an exec runs: the kernel kills the exec
	// with the pid namespace, and the init only becomes a zombie once the
	// exec's zombie is reaped (by the host's pid 1 for embed, lazily).
	// Delete must still succeed.
	t.Run("init-dies-exec-lives", func(t *testing.T) {
		both(t, e, func(t *testing.T, rt string) any {
			c := e.container(t, rt, "initdies", oci.WithProcessArgs("sleep", "3600"))
			ev := e.recordEvents(t, c)
			task, ch := e.startTask(t, c)
			p, pch := e.exec(t, c, task, "ex1", nil, "sleep", "3600")
			var obs []string
			obs = append(obs, "kill:"+errClass(task.Kill(e.ctx, syscall.SIGKILL)))
			pexit, exit := e.exitStatusWithin(t, pch), e.exitStatusWithin(t, ch)
			ev.Expect("ex1", p.Pid(), pexit)
			ev.Expect("", task.Pid(), exit)
			obs = append(obs, fmt.Sprintf("exec:%d", pexit.ExitCode()))
			obs = append(obs, fmt.Sprintf("init:%d", exit.ExitCode()))
			st, err := task.Delete(e.ctx)
			obs = append(obs, "delete-with-exec:"+errClass(err))
			if err == nil {
				obs = append(obs, fmt.Sprintf("delete:%d", st.ExitCode()))
			} else {
				if _, err := p.Delete(e.ctx); err != nil {
					t.Fatalf("delete exec: %v", err)
				}
				st, err := task.Delete(e.ctx)
				if err != nil {
					t.Fatalf("delete: %v", err)
				}
				obs = append(obs, fmt.Sprintf("delete:%d", st.ExitCode()))
			}
			evs := ev.Settle("/tasks/exit:exec=ex1", "/tasks/exit", "/tasks/delete")
			checkOneExitPerProcess(t, evs)
			return append(obs, evs...)
		})
	})

	t.Run("pids", func(t *testing.T) {
		both(t, e, func(t *testing.T, rt string) any {
			c := e.container(t, rt, "pids", oci.WithProcessArgs("sleep", "3600"))
			task, ch := e.startTask(t, c)
			_, pch := e.exec(t, c, task, "ex1", nil, "sleep", "3600")
			ps, err := task.Pids(e.ctx)
			if err != nil {
				t.Fatalf("pids: %v", err)
			}
			var infos []string
			hasInit := false
			for _, pi := range ps {
				if pi.Pid == task.Pid() {
					hasInit = true
				}
				if pi.Pid == 0 {
					t.Errorf("pid 0 in %v", ps)
				}
				if pi.Info == nil {
					infos = append(infos, "-")
					continue
				}
				v, err := typeurl.UnmarshalAny(pi.Info)
				if err != nil {
					infos = append(infos, "undecodable:"+pi.Info.GetTypeUrl())
					continue
				}
				d, ok := v.(*runcoptions.ProcessDetails)
				if !ok {
					infos = append(infos, fmt.Sprintf("%T", v))
					continue
				}
				infos = append(infos, "exec="+d.ExecID)
			}
			sort.Strings(infos)
			task.Kill(e.ctx, syscall.SIGKILL, containerd.WithKillAll)
			e.exitWithin(t, pch)
			e.exitWithin(t, ch)
			return fmt.Sprintf("n=%d init=%v infos=%v", len(ps), hasInit, infos)
		})
	})

	t.Run("pause-resume", func(t *testing.T) {
		both(t, e, func(t *testing.T, rt string) any {
			c := e.container(t, rt, "pause", oci.WithProcessArgs("sh", "-c",
				"i=0; while :; do i=$((i+1)); echo $i > /tmp/c; sleep 0.02; done"))
			ev := e.recordEvents(t, c)
			task, ch := e.startTask(t, c)
			pid := task.Pid()
			waitFile(t, pid, "/tmp/c", 5*time.Second)
			// Raw content: the shell may be frozen between truncating and
			// writing the file, so empty is a valid value.
			counter := func() string {
				b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/tmp/c", pid))
				if err != nil {
					t.Fatalf("read counter: %v", err)
				}
				return string(b)
			}
			var obs []string
			obs = append(obs, "resume-running:"+errClass(task.Resume(e.ctx)))
			obs = append(obs, "pause:"+errClass(task.Pause(e.ctx)))
			obs = append(obs, status(t, e.ctx, task))
			obs = append(obs, "pause-paused:"+errClass(task.Pause(e.ctx)))
			// Paused means frozen (runc pause returns once the freezer
			// says so): read its state rather than watch for progress for
			// a while, which a slow machine would pass.
			obs = append(obs, "freezer:"+freezerState(t, pid))
			b := counter()
			obs = append(obs, "resume:"+errClass(task.Resume(e.ctx)))
			obs = append(obs, status(t, e.ctx, task))
			deadline := time.Now().Add(5 * time.Second)
			for counter() == b && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			obs = append(obs, fmt.Sprintf("progress-after-resume:%v", counter() != b))
			// A paused task killed: the exit comes and the cgroup is thawed.
			obs = append(obs, "pause2:"+errClass(task.Pause(e.ctx)))
			obs = append(obs, "kill:"+errClass(task.Kill(e.ctx, syscall.SIGKILL)))
			obs = append(obs, fmt.Sprintf("exited:%d", e.exitWithin(t, ch)))
			obs = append(obs, status(t, e.ctx, task))
			obs = append(obs, "pause-stopped:"+errClass(task.Pause(e.ctx)))
			obs = append(obs, "resume-stopped:"+errClass(task.Resume(e.ctx)))
			st, err := task.Delete(e.ctx)
			if err != nil {
				t.Fatalf("delete: %v", err)
			}
			obs = append(obs, fmt.Sprintf("delete:%d", st.ExitCode()))
			evs := ev.Settle("/tasks/exit", "/tasks/delete")
			checkOneExitPerProcess(t, evs)
			return append(obs, evs...)
		})
	})

	t.Run("update-memory", func(t *testing.T) {
		both(t, e, func(t *testing.T, rt string) any {
			// The cgroup v1 hierarchies, read-only, as runc mounts them.
			c := e.container(t, rt, "update", oci.WithProcessArgs("sleep", "3600"),
				oci.WithMounts([]specs.Mount{{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup",
					Options: []string{"ro", "nosuid", "noexec", "nodev"}}}))
			task, ch := e.startTask(t, c)
			const limit = 64 << 20
			read := func(id string) string {
				code, out := e.execOutput(t, c, task, id, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
				return fmt.Sprintf("%d:%s", code, strings.TrimSpace(out))
			}
			before := read("r1")
			var obs []string
			l := int64(limit)
			obs = append(obs, "update:"+errClass(task.Update(e.ctx, containerd.WithResources(&specs.LinuxResources{
				Memory: &specs.LinuxMemory{Limit: &l},
			}))))
			after := read("r2")
			obs = append(obs, "inside:"+after, fmt.Sprintf("changed:%v", before != after))
			m, err := task.Metrics(e.ctx)
			if err != nil {
				t.Fatalf("metrics: %v", err)
			}
			v, err := typeurl.UnmarshalAny(m.Data)
			if err != nil {
				t.Fatalf("decode metrics %s: %v", m.Data.GetTypeUrl(), err)
			}
			if mm, ok := v.(*cgstats.Metrics); ok && mm.Memory != nil && mm.Memory.Usage != nil {
				obs = append(obs, fmt.Sprintf("metrics-limit:%d", mm.Memory.Usage.Limit))
			} else {
				obs = append(obs, fmt.Sprintf("metrics:%T", v))
			}
			// A bad update: runc rejects a limit below usage or invalid.
			bad := int64(-5)
			obs = append(obs, "update-bad:"+errClass(task.Update(e.ctx, containerd.WithResources(&specs.LinuxResources{
				Memory: &specs.LinuxMemory{Limit: &l, Swap: &bad},
			}))))
			task.Kill(e.ctx, syscall.SIGKILL)
			e.exitWithin(t, ch)
			obs = append(obs, "update-stopped:"+errClass(task.Update(e.ctx, containerd.WithResources(&specs.LinuxResources{
				Memory: &specs.LinuxMemory{Limit: &l},
			}))))
			return obs
		})
	})

	t.Run("stats", func(t *testing.T) {
		both(t, e, func(t *testing.T, rt string) any {
			c := e.container(t, rt, "stats", oci.WithProcessArgs("sleep", "3600"))
			task, ch := e.startTask(t, c)
			m, err := task.Metrics(e.ctx)
			if err != nil {
				t.Fatalf("metrics: %v", err)
			}
			obs := []string{"type=" + m.Data.GetTypeUrl(), fmt.Sprintf("id-match=%v", m.ID == c.ID())}
			v, err := typeurl.UnmarshalAny(m.Data)
			if err != nil {
				t.Fatalf("decode metrics %s: %v", m.Data.GetTypeUrl(), err)
			}
			mm, ok := v.(*cgstats.Metrics)
			if !ok {
				return append(obs, fmt.Sprintf("go-type=%T", v))
			}
			obs = append(obs, fmt.Sprintf("mem-usage>0=%v", mm.Memory != nil && mm.Memory.Usage != nil && mm.Memory.Usage.Usage > 0))
			obs = append(obs, fmt.Sprintf("pids>=1=%v", mm.Pids != nil && mm.Pids.Current >= 1))
			obs = append(obs, fmt.Sprintf("cpu-usage>0=%v", mm.CPU != nil && mm.CPU.Usage != nil && mm.CPU.Usage.Total > 0))
			obs = append(obs, "present="+presentFields(mm))
			task.Kill(e.ctx, syscall.SIGKILL)
			e.exitWithin(t, ch)
			// Metrics of a stopped (not deleted) task.
			_, err = task.Metrics(e.ctx)
			obs = append(obs, "metrics-stopped:"+errClass(err))
			return obs
		})
	})
}

// freezerState is the state of the freezer cgroup of pid (cgroup v1 or v2).
func freezerState(t *testing.T, pid uint32) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatalf("cgroup of %d: %v", pid, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[1] == "freezer" {
			st, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/freezer", f[2], "freezer.state"))
			if err != nil {
				t.Fatalf("freezer state: %v", err)
			}
			return strings.TrimSpace(string(st))
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if strings.HasPrefix(line, "0::") {
			ev, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", strings.TrimPrefix(line, "0::"), "cgroup.events"))
			if err != nil {
				t.Fatalf("cgroup.events: %v", err)
			}
			if strings.Contains(string(ev), "frozen 1") {
				return "FROZEN"
			}
			return "THAWED"
		}
	}
	t.Fatalf("no freezer cgroup for %d in %s", pid, b)
	return ""
}

// presentFields lists the non-nil pointer/slice fields of a struct.
func presentFields(v any) string {
	rv := reflect.ValueOf(v).Elem()
	var out []string
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Field(i)
		if !rv.Type().Field(i).IsExported() {
			continue
		}
		switch f.Kind() {
		case reflect.Ptr, reflect.Slice, reflect.Map:
			if !f.IsNil() {
				out = append(out, rv.Type().Field(i).Name)
			}
		}
	}
	return strings.Join(out, ",")
}
