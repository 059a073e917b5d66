//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// The BPF leak probe must fail when it cannot look: a missing pin dir,
// layout dir or map is an error, and a probe error is a leak-check failure
// even when both snapshots have it. (Unit test: no daemon.)
func TestBPFProbeCannotPassBlind(t *testing.T) {
	dir := t.TempDir()
	if _, err := countPinnedEntries(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("missing pin dir: no error")
	}
	if _, err := countPinnedEntries(dir); err == nil {
		t.Errorf("pin dir without a layout dir: no error")
	}
	if err := os.Mkdir(filepath.Join(dir, "v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := countPinnedEntries(dir); err == nil || !strings.Contains(err.Error(), "registrations") {
		t.Errorf("layout dir without maps: %v, want an error naming the map", err)
	}

	failed := harness.Snapshot{ProbeErrors: map[string]string{"bpf": "bpftool: not found"}}
	for _, c := range []struct {
		name          string
		before, after harness.Snapshot
	}{
		{"both", failed, failed},
		{"before", failed, harness.Snapshot{}},
		{"after", harness.Snapshot{}, failed},
	} {
		leaks := harness.Leaks(c.before, c.after)
		if len(leaks) == 0 || !strings.Contains(strings.Join(leaks, "\n"), "bpftool: not found") {
			t.Errorf("probe error in %s snapshot(s): leaks %q, want the error reported", c.name, leaks)
		}
	}
}
