package exitmon

// #include <stdlib.h>
import "C"

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Errors a caller acts on; test with errors.Is.
var (
	// ErrExited: the process is gone (or died before registration
	// completed, so its status is unknown).
	ErrExited = errors.New("process already exited")
	// ErrNotExpected: the pid now belongs to another process.
	ErrNotExpected = errors.New("not the expected process")
	// ErrCapacity: the maps are full.
	ErrCapacity = errors.New("tracking capacity reached")
	// ErrNotRegistered: the monitor has no registration for the process
	// (its pins were removed or replaced, or it was forgotten).
	ErrNotRegistered = errors.New("process not registered")
	// ErrNoRecord: the registered process is gone and left no exit record.
	ErrNoRecord = errors.New("process gone without an exit record")
)

// Error is a failure of the C core: the errno it returned and its message,
// which names the cause.
type Error struct {
	Op    string
	Errno unix.Errno
	Msg   string
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return fmt.Sprintf("exitmon %s: %v", e.Op, e.Errno)
	}
	return fmt.Sprintf("exitmon %s: %s", e.Op, e.Msg)
}

// Is maps errnos onto the sentinel errors and the errno itself.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrExited:
		return e.Errno == unix.ESRCH
	case ErrNotExpected:
		return e.Errno == unix.ESTALE
	case ErrCapacity:
		return e.Errno == unix.ENOSPC
	case ErrNotRegistered:
		return e.Errno == unix.ENOENT
	case ErrNoRecord:
		return e.Errno == unix.ENODATA
	}
	return e.Errno == target
}

func newError(op string, rc C.int, msg *C.char) error {
	e := &Error{Op: op, Errno: unix.Errno(-rc)}
	if msg != nil {
		e.Msg = C.GoString(msg)
	}
	return e
}
