//go:build linux

package integration

import (
	"strings"
	"testing"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// The daemon's fds compare by identity: a pidfd left open is a leak even
// when a socket closed meanwhile keeps the count; the same across a restart
// of the daemon.
func TestLeaksFDsByIdentity(t *testing.T) {
	before := harness.Snapshot{DaemonPid: 10, FDs: map[string]string{
		"3": "socket:[100]", "4": "socket:[101]", "5": "/var/lib/x/meta.db",
	}}
	swapped := map[string]string{"3": "socket:[100]", "5": "/var/lib/x/meta.db", "7": "anon_inode:[pidfd]"}
	churned := map[string]string{"3": "socket:[200]", "4": "socket:[201]", "5": "/var/lib/x/meta.db"}
	grown := map[string]string{"3": "socket:[200]", "4": "socket:[201]", "5": "/var/lib/x/meta.db", "6": "pipe:[7]"}
	for _, c := range []struct {
		name string
		pid  int
		fds  map[string]string
		want string // "" for no leak
	}{
		{"pidfd for a socket", 10, swapped, "7 -> anon_inode:[pidfd]"},
		{"sockets replaced", 10, churned, ""},
		{"restart, sockets replaced", 11, churned, ""},
		{"restart, pidfd for a socket", 11, swapped, "7 -> anon_inode:[pidfd]"},
		{"restart, more fds", 11, grown, "6 -> pipe:[7]"},
	} {
		leaks := strings.Join(harness.Leaks(before, harness.Snapshot{DaemonPid: c.pid, FDs: c.fds}), "\n")
		if c.want == "" && leaks != "" || c.want != "" && !strings.Contains(leaks, c.want) {
			t.Errorf("%s: leaks %q, want %q", c.name, leaks, c.want)
		}
	}
}
