//go:build linux

package core

import (
	"os/exec"

	"github.com/embedshim/embedshim/go/exitmon"
)

// tracker is what the runtime needs of the exit monitor (exitmon.Monitor):
// registering processes, finding the exits of processes registered before a
// restart or reaped before their registration, forgetting them, and the one
// stream of exits. The runtime's ordering rules sit above it, so they are
// unit-tested against a fake (exits_test.go) beside the real-monitor tests.
type tracker interface {
	// Register starts tracking a live process (ident 0: read it).
	Register(pid int, ident uint64) (uint64, error)
	// Track starts tracking the live process behind the caller's pidfd
	// and returns its identity.
	Track(pidfd, pid int) (uint64, error)
	// RunDetached runs `runc exec --detach` so its process is tracked
	// before it can be reaped.
	RunDetached(cmd *exec.Cmd, pidFile string) (pid int, ident uint64, err error)
	// Lookup finds the exit of a process registered earlier, or polls it.
	Lookup(pid int, ident uint64) (*exitmon.Exit, error)
	// FindRecent finds the exit of an unregistered process by pid.
	FindRecent(pid int, since uint64) (*exitmon.Exit, error)
	// Forget drops a registration and its record.
	Forget(pid int, ident uint64) error
	// Registered lists every registration.
	Registered() ([]exitmon.Key, error)
	// Capacity is the number of processes that can be tracked at once.
	Capacity() uint32
	// Exits delivers each tracked process's exit once.
	Exits() <-chan exitmon.Exit
	// Repin puts back pins removed or replaced behind the runtime's back
	// and names them; RestoredPins names those Open put back.
	Repin() (string, error)
	RestoredPins() string
}

var _ tracker = (*exitmon.Monitor)(nil)
