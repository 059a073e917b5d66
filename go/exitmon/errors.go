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
