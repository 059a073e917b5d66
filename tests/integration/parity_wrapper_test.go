//go:build linux

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	containerd "github.com/containerd/containerd"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"
)

// killAfterCreate is an OCI runtime wrapper like containerd's runc-fp
// failpoint "issue9103": it runs runc and, once a create succeeded, kills the
// container's init, reading its pid from init.pid in its working directory
// (runc.v2 runs the runtime in the bundle with --pid-file <bundle>/init.pid).
const killAfterCreate = `#!/bin/sh
%q "$@" || exit $?
for a in "$@"; do
	if [ "$a" = create ]; then
		exec kill -KILL "$(cat init.pid)"
	fi
done
`

// recordCwd is a wrapper that logs, for create and exec, whether runc runs
// in the bundle (config.json in its working directory) and writes its pid
// file there.
const recordCwd = `#!/bin/sh
cmd= pidfile= prev=
for a in "$@"; do
	case "$a" in create|exec) [ -z "$cmd" ] && cmd=$a ;; esac
	[ "$prev" = --pid-file ] && pidfile=$a
	prev=$a
done
%q "$@"
rc=$?
if [ -n "$cmd" ]; then
	bundle=no pid=no
	[ -f config.json ] && bundle=yes
	[ -n "$pidfile" ] && [ -f "$(basename "$pidfile")" ] &&
		[ "$(cd "$(dirname "$pidfile")" && pwd -P)" = "$(pwd -P)" ] && pid=yes
	echo "$cmd rc=$rc cwd-is-bundle=$bundle pid-file-in-cwd=$pid" >>%q
fi
exit $rc
`

// writeWrapper writes an executable wrapper script from format (which takes
// the real runc's path, then args) and returns its path.
func writeWrapper(t *testing.T, name, format string, args ...any) string {
	t.Helper()
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatalf("runc: %v", err)
	}
	path := filepath.Join(t.TempDir(), name)
	script := fmt.Sprintf(format, append([]any{runc}, args...)...)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// killedAfterCreate is what a client sees of a task whose init was killed
// by the runtime right after create.
type killedAfterCreate struct {
	Create string // error class of NewTask, "" on success
	Status string // task status once Wait returned
	Wait   uint32
	Delete uint32 // exit code Delete returns
	Events []string
}

// OCI runtime wrappers (Options.BinaryName) run as under runc.v2: in the
// bundle, with the pid files there, and a wrapper that kills the init right
// after create gives a created task that then reports STOPPED, with Wait
// returning 137 and the same events (containerd's TestIssue9103).
func TestParityRuntimeWrapper(t *testing.T) {
	e := newEnv(t)

	t.Run("kill-init-after-create", func(t *testing.T) {
		wrapper := writeWrapper(t, "runc-kill-after-create", killAfterCreate)
		both(t, e, func(t *testing.T, rt string) any {
			c := e.containerWith(t, rt, "wrapkill", []containerd.NewContainerOpts{
				containerd.WithRuntime(rt, &runcoptions.Options{BinaryName: wrapper}),
			}, oci.WithProcessArgs("sleep", "30"))
			ev := e.recordEvents(t, c)
			var o killedAfterCreate
			task, err := c.NewTask(e.ctx, cio.NullIO)
			if err != nil {
				t.Errorf("create: %v", err)
				o.Create = errClass(err)
				return o
			}
			ch, err := task.Wait(e.ctx)
			if err != nil {
				t.Fatalf("wait: %v", err)
			}
			o.Wait = e.exitWithin(t, ch)
			o.Status = status(t, e.ctx, task)
			st, err := task.Delete(e.ctx)
			if err != nil {
				t.Fatalf("delete: %v", err)
			}
			o.Delete = st.ExitCode()
			o.Events = ev.Settle("/tasks/exit", "/tasks/delete")
			checkOneExitPerProcess(t, o.Events)
			if o.Wait != 128+uint32(syscall.SIGKILL) {
				t.Errorf("Wait returned %d, want 137", o.Wait)
			}
			return o
		})
	})

	t.Run("cwd-and-pid-files", func(t *testing.T) {
		both(t, e, func(t *testing.T, rt string) any {
			log := filepath.Join(t.TempDir(), "calls")
			wrapper := writeWrapper(t, "runc-record-cwd", recordCwd, log)
			c := e.containerWith(t, rt, "wrapcwd", []containerd.NewContainerOpts{
				containerd.WithRuntime(rt, &runcoptions.Options{BinaryName: wrapper}),
			}, oci.WithProcessArgs("sleep", "3600"))
			task, ch := e.startTask(t, c)
			code := e.execToExit(t, c, task, "wrapexec", e.execSpec(t, c, false, "sh", "-c", "exit 3"), cio.NullIO)
			if code != 3 {
				t.Errorf("exec exit %d, want 3", code)
			}
			if err := task.Kill(e.ctx, syscall.SIGKILL); err != nil {
				t.Fatalf("kill: %v", err)
			}
			e.exitWithin(t, ch)
			if _, err := task.Delete(e.ctx); err != nil {
				t.Fatalf("delete: %v", err)
			}
			data, err := os.ReadFile(log)
			if err != nil {
				t.Fatalf("wrapper log: %v", err)
			}
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			sort.Strings(lines)
			for _, l := range lines {
				if !strings.Contains(l, "cwd-is-bundle=yes pid-file-in-cwd=yes") {
					t.Errorf("runtime call not as runc.v2 makes it: %s", l)
				}
			}
			return lines
		})
	})
}
