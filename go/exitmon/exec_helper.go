package exitmon

/*
#include <stdlib.h>
#include <unistd.h>
#include "embedshim/monitor.h"

// Any binary that links this package doubles as the exec helper: started
// with EMBEDSHIM_EXEC_HELPER set, it runs the helper before the Go runtime
// starts and exits, so helping costs one exec and no Go start-up.
__attribute__((constructor)) static void embedshim_exec_helper_ctor(
	int argc, char **argv, char **envp)
{
	const char *pid_file = getenv("EMBEDSHIM_EXEC_HELPER");

	if (!pid_file || argc < 2)
		return;
	unsetenv("EMBEDSHIM_EXEC_HELPER");
	_exit(es_exec_helper(argv + 1, pid_file, 3));
}
*/
import "C"

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

const helperEnv = "EMBEDSHIM_EXEC_HELPER"

// RunDetached runs cmd, a command that starts a process, writes its pid to
// pidFile and exits while the process runs on (`runc exec --detach
// --pid-file`), and registers that process. The process may exit at once:
// cmd runs under the exec helper (this binary, as a child subreaper), which
// keeps it from being reaped until it is registered, so its status is never
// lost. cmd's stdio, environment and directory are kept; it must not have
// been started.
func (m *Monitor) RunDetached(cmd *exec.Cmd, pidFile string) (pid int, ident uint64, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("exec helper: socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "helper-sync"), os.NewFile(uintptr(fds[1]), "helper-sync")
	defer ours.Close()

	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(env, helperEnv+"="+pidFile)
	cmd.Args = append([]string{"embedshim-exec-helper", cmd.Path}, cmd.Args[1:]...)
	cmd.Path = "/proc/self/exe"
	cmd.ExtraFiles = append([]*os.File{theirs}, cmd.ExtraFiles...) // fd 3
	cmd.Err = nil
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("exec helper: %w", err)
	}

	line, rerr := bufio.NewReader(ours).ReadString('\n')
	if rerr != nil {
		// The command failed: the helper exits with its code.
		werr := cmd.Wait()
		return 0, 0, fmt.Errorf("%s failed: %w", cmd.Args[1], werr)
	}
	pid, err = strconv.Atoi(strings.TrimSpace(line))
	if err == nil {
		ident, err = m.Adopt(pid)
		if err != nil {
			// Not tracked (e.g. capacity reached): the caller reports a
			// failed exec, so the process must not run on. It is the
			// helper's unreaped child, so its pid cannot be reused yet.
			unix.Kill(pid, unix.SIGKILL)
		}
	}
	ours.Write([]byte{1}) // let the helper go (and with it the zombie, if any)
	if werr := cmd.Wait(); werr != nil && err == nil {
		err = fmt.Errorf("exec helper: %w", werr)
	}
	if err != nil {
		return 0, 0, err
	}
	return pid, ident, nil
}

// Adopt registers a process that may have exited already but cannot have
// been reaped (the caller is its parent or subreaper and has not waited for
// it); its status then comes from the recent exits the BPF program keeps.
func (m *Monitor) Adopt(pid int) (uint64, error) {
	var errbuf [errLen]C.char
	var out C.uint64_t
	if rc := C.es_monitor_adopt(m.c, C.int(pid), &out, &errbuf[0], errLen); rc != 0 {
		return 0, newError("adopt", rc, &errbuf[0])
	}
	return uint64(out), nil
}
