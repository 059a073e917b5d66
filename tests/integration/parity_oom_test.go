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
		Events []string
	}
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		e := e.boundedEnv(t, subtestTimeout)
		// busybox tail keeps the last lines of a file with no newline:
		// it buffers /dev/zero until the 16 MiB limit is hit, as the
		// container's init, the only (and biggest) process.
		c := e.container(t, rt, "oom", oci.WithMemoryLimit(16<<20), oci.WithProcessArgs("tail", "/dev/zero"))
		log := e.recordEvents(t, c.ID())
		start := time.Now()
		code := e.runTaskIO(t, c, cio.NullIO)
		evs := log.Events(500 * time.Millisecond)
		t.Logf("OOM kill after %s; events %v", time.Since(start).Round(time.Millisecond), evs)
		if code != 137 {
			t.Errorf("exit %d, want 137", code)
		}
		if !hasEvent(evs, "/tasks/oom") {
			t.Errorf("no /tasks/oom event in %v", evs)
		}
		return obs{Code: code, Events: normalizeOOM(evs)}
	})
}

// An exec over the container's memory limit is the OOM killer's victim: it
// exits 137 with /tasks/oom published; the init lives on.
func TestParityOOMExec(t *testing.T) {
	e := newEnv(t)
	type obs struct {
		Code   uint32
		Events []string
		Init   string
	}
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		e := e.boundedEnv(t, subtestTimeout)
		c, task := e.sleeperTask(t, rt, oci.WithMemoryLimit(16<<20))
		log := e.recordEvents(t, c.ID())
		code := e.execToExit(t, c, task, "hog", e.execSpec(t, c, false, "tail", "/dev/zero"), cio.NullIO)
		// The recorder starts after the init's start: whether its
		// /tasks/start (published asynchronously by runc.v2's shim) is
		// caught is timing, so only the exec's events are compared.
		evs := dropTopics(log.Events(500*time.Millisecond), "/tasks/create", "/tasks/start")
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
		return obs{Code: code, Events: normalizeOOM(evs), Init: string(st.Status)}
	})
}

func dropTopics(l []string, topics ...string) []string {
	var out []string
	for _, x := range l {
		if !hasEvent(topics, x) {
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

// normalizeOOM keeps the event sequence but only the first /tasks/oom: the
// kernel may signal an OOM more than once for one kill (several charges fail
// while the victim dies), in any runtime.
func normalizeOOM(evs []string) []string {
	var out []string
	seen := false
	for _, e := range evs {
		if strings.HasPrefix(e, "/tasks/oom") {
			if seen {
				continue
			}
			seen = true
		}
		out = append(out, e)
	}
	return out
}
