//go:build linux

package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"
)

// A container over its memory limit: the kernel's OOM killer kills the
// init, the runtime publishes /tasks/oom, and the exit is 137.
func TestParityOOM(t *testing.T) {
	e := newEnv(t)
	type obs struct {
		Code   uint32
		OOM    bool
		Events []string
	}
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		e := e.boundedEnv(t, subtestTimeout)
		// busybox tail keeps the last lines of a file with no newline:
		// it buffers /dev/zero until the 16 MiB limit is hit, as the
		// container's init, the only (and biggest) process.
		c := e.container(t, rt, "oom", oci.WithMemoryLimit(16<<20), oci.WithProcessArgs("tail", "/dev/zero"))
		log := e.recordEvents(t, c)
		start := time.Now()
		code := e.runTaskIO(t, c, cio.NullIO)
		log.Settle("/tasks/oom", "/tasks/exit", "/tasks/delete")
		evs := log.Raw()
		t.Logf("OOM kill after %s; events %v", time.Since(start).Round(time.Millisecond), evs)
		if code != 137 {
			t.Errorf("exit %d, want 137", code)
		}
		if !hasEvent(evs, "/tasks/oom") {
			t.Errorf("no /tasks/oom event in %v", evs)
		}
		oom, rest := normalizeOOM(evs)
		return obs{Code: code, OOM: oom, Events: log.Comparable(rest)}
	})
}

// An exec over the container's memory limit is the OOM killer's victim: it
// exits 137 with /tasks/oom published; the init lives on.
func TestParityOOMExec(t *testing.T) {
	e := newEnv(t)
	type obs struct {
		Code   uint32
		OOM    bool
		Events []string
		Init   string
	}
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		e := e.boundedEnv(t, subtestTimeout)
		c, task := e.sleeperTask(t, rt, oci.WithMemoryLimit(16<<20))
		log := e.recordEvents(t, c)
		code := e.execToExit(t, c, task, "hog", e.execSpec(t, c, false, "tail", "/dev/zero"), cio.NullIO)
		// The recorder starts after the init's start: whether its
		// /tasks/start (published asynchronously by runc.v2's shim) is
		// caught is timing, so only the exec's events are compared.
		log.Settle("/tasks/oom", "/tasks/exit:exec=hog")
		evs := dropTopics(log.Raw(), "/tasks/create", "/tasks/start")
		if code != 137 {
			t.Errorf("exec exit %d, want 137", code)
		}
		if !hasEvent(evs, "/tasks/oom") {
			t.Errorf("no /tasks/oom event in %v", evs)
		}
		st, err := task.Status(e.ctx)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		oom, rest := normalizeOOM(evs)
		return obs{Code: code, OOM: oom, Events: log.Comparable(rest), Init: string(st.Status)}
	})
}

// dropTopics drops the events of topics (any detail) from l.
func dropTopics(l []string, topics ...string) []string {
	var out []string
	for _, x := range l {
		if countTopic(topics, strings.SplitN(x, ":", 2)[0]) == 0 {
			out = append(out, x)
		}
	}
	return out
}

func hasEvent(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// normalizeOOM splits the /tasks/oom events up to the task's /tasks/delete
// off the sequence: whether there was one is compared, not how many or
// where. The kernel may signal an OOM more than once for one kill (several
// charges fail while the victim dies), and both runtimes watch OOMs and
// exits on separate goroutines, so an OOM comes before or after the victim's
// /tasks/exit (both orders seen with embed and runc.v2's exec). What
// follows the delete is kept as it is: an OOM there is a finding, and the
// comparison shows it.
func normalizeOOM(evs []string) (oom bool, rest []string) {
	deleted := false
	for _, e := range evs {
		if strings.HasPrefix(e, "/tasks/delete") && !strings.Contains(e, ":exec=") {
			deleted = true
		}
		if strings.HasPrefix(e, "/tasks/oom") && !deleted {
			oom = true
			continue
		}
		rest = append(rest, e)
	}
	return oom, rest
}
