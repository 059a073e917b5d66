package exitmon

/*
#include <stdlib.h>
#include <unistd.h>
#include "embedshim/monitor.h"

// Any binary that links this package can become its own reaper (see
// csrc/reaper.c): re-executed with EMBEDSHIM_REAPER_MODE set, it runs the
// reaper before the Go runtime starts, so the reaper costs no Go runtime.
__attribute__((constructor)) static void embedshim_reaper_ctor(
	int argc, char **argv, char **envp)
{
	if (argc < 1)
		return;
	if (getenv(ES_REAPER_CHILD_ENV)) {
		// the daemon, started as /proc/self/exe
		es_reaper_name(argv[0]);
		return;
	}
	if (getenv(ES_REAPER_MODE_ENV))
		_exit(es_reaper_run(argv));
}
*/
import "C"

import (
	"fmt"
	"os"
	"syscall"
)

const (
	// ReaperEnv set to "off" runs the daemon without its reaper (for
	// hosts whose pid 1 reaps promptly, e.g. systemd).
	ReaperEnv      = "EMBEDSHIM_REAPER"
	reaperModeEnv  = C.ES_REAPER_MODE_ENV
	reaperChildEnv = C.ES_REAPER_CHILD_ENV
)

// RunUnderReaper makes sure the calling daemon runs under its own reaper:
// called by a process that is not yet under it, it re-executes this binary
// (same pid, same argv) as the front of the reaper (csrc/reaper.c), which
// starts the daemon again as its grandchild and never returns here; called
// in that grandchild, it returns at once. Call it first thing once the
// process knows it is the long-running daemon (not for subcommands).
//
// Every process the daemon's tree orphans (container inits, exec processes,
// runc.v2 shims) is then reaped by the reaper as soon as it exits, instead
// of whenever the host's pid 1 gets to it; the daemon's own children stay
// its own. EMBEDSHIM_REAPER=off disables this. If the re-exec fails, the
// daemon runs on without the reaper (with a warning).
func RunUnderReaper() {
	if os.Getenv(reaperChildEnv) != "" {
		// The daemon's own children must not look like daemons.
		os.Unsetenv(reaperChildEnv)
		return
	}
	if os.Getenv(ReaperEnv) == "off" {
		return
	}
	env := append(os.Environ(), reaperModeEnv+"=1")
	err := syscall.Exec("/proc/self/exe", os.Args, env)
	fmt.Fprintf(os.Stderr, "embedshim: cannot start the reaper (%v): running without it, "+
		"exited processes are reaped by the host's init\n", err)
}
