//go:build linux

package integration

import (
	"testing"
)

// Exit codes and output of a process that runs to its end, incl. signals.
func TestParityExitCodes(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"exit0", []string{"true"}},
		{"exit1", []string{"false"}},
		{"exit3-output", []string{"sh", "-c", "echo out; echo err >&2; exit 3"}},
		{"exit255", []string{"sh", "-c", "exit 255"}},
		{"sigkill", []string{"sh", "-c", "kill -KILL $$"}},
		{"sigterm", []string{"sh", "-c", "kill -TERM $$"}},
		{"missing-binary-in-sh", []string{"sh", "-c", "/no/such/binary"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			bothRuntimes(t, e, func(t *testing.T, rt string) any {
				return e.runToExit(t, rt, c.args)
			})
		})
	}
}
