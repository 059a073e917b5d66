//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// countPinnedEntries lists the registrations and exit records in the embed
// plugin's pinned maps under pinDir, one string per entry (its key bytes),
// so that a leak check sees entries a test left behind.
//
// A running embed plugin always has its pins: a missing pin dir, layout dir
// or map is an error, not "no entries", or a check that cannot look would
// pass.
func countPinnedEntries(pinDir string) ([]string, error) {
	if _, err := os.Stat(pinDir); err != nil {
		return nil, fmt.Errorf("pin dir: %w", err)
	}
	vdirs, err := filepath.Glob(filepath.Join(pinDir, "v*"))
	if err != nil {
		return nil, err
	}
	if len(vdirs) == 0 {
		return nil, fmt.Errorf("pin dir %s holds no layout dir (v<N>)", pinDir)
	}
	var out []string
	for _, vdir := range vdirs {
		for _, m := range []string{"registrations", "exits"} {
			path := filepath.Join(vdir, m)
			if _, err := os.Stat(path); err != nil {
				return nil, fmt.Errorf("pinned map: %w", err)
			}
			raw, err := exec.Command("bpftool", "-j", "map", "dump", "pinned", path).Output()
			if err != nil {
				return nil, fmt.Errorf("bpftool map dump %s: %w", path, err)
			}
			var entries []struct {
				Key any `json:"key"`
			}
			if err := json.Unmarshal(raw, &entries); err != nil {
				return nil, fmt.Errorf("bpftool map dump %s: %w", path, err)
			}
			for _, e := range entries {
				out = append(out, fmt.Sprintf("%s entry %v", m, e.Key))
			}
		}
	}
	return out, nil
}
