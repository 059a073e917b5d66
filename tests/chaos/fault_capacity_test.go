//go:build linux

package chaos

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// defaultCapacity is embed's tracking capacity when the config names none
// (go/core/open.go).
const defaultCapacity = 65536

// capacityShrink restarts the daemon (SIGKILL or SIGTERM at random) with
// embed's tracking capacity lowered to one above the processes it tracks,
// so that the workers' next creates and execs hit it (r.capacityHits); the
// next capacity-shrink fault gives the room back (CHAOS_CAPACITY, or the
// default). The count is taken from the pins while the daemon is down,
// when nothing registers or forgets: every registration plus every exit
// record without one, the most either map can need until the restart.
func (r *run) capacityShrink(n int, rng *rand.Rand) {
	kill := rng.Intn(2) == 0
	shrink := n%2 == 1
	asked := defaultCapacity
	if r.k.capacity > 0 {
		asked = r.k.capacity
	}
	r.restartDaemon(faultCapacityShrink, n, kill, rng, func(o *harness.Options) {
		if shrink {
			tracked, err := trackedProcs(r.d)
			if err != nil {
				r.problem(harness.EmbedPluginID, "%s: count the tracked processes: %v", faultCapacityShrink, err)
				asked = 0 // config unchanged
				return
			}
			asked = tracked + 1
			r.logf("fault %s #%d: %d processes tracked, capacity %d", faultCapacityShrink, n, tracked, asked)
		} else {
			r.logf("fault %s #%d: capacity back to %d", faultCapacityShrink, n, asked)
		}
		o.EmbedConfig = fmt.Sprintf("capacity = %d", asked)
	})
	if got, err := pinnedCapacity(r.d); asked != 0 && (err != nil || got != asked) {
		r.problem(harness.EmbedPluginID, "%s #%d: pinned capacity %d (%v), asked %d", faultCapacityShrink, n, got, err, asked)
	}
}

// trackedProcs counts the processes with an entry in the embed plugin's
// pinned maps: registered, or with an exit record alone.
func trackedProcs(d *harness.Daemon) (int, error) {
	entries, err := bpfEntries(d)
	if err != nil {
		return 0, err
	}
	keys := map[string]bool{}
	for _, e := range entries {
		if i := strings.Index(e, " entry "); i >= 0 {
			keys[e[i+len(" entry "):]] = true
		}
	}
	return len(keys), nil
}

// pinnedCapacity is the max_entries of the pinned registrations map; an
// error if any layout dir but the one in use is pinned (a resize's
// set-aside pins left behind).
func pinnedCapacity(d *harness.Daemon) (int, error) {
	vdirs, err := filepath.Glob(filepath.Join(d.PinDir, "v*"))
	if err != nil || len(vdirs) != 1 {
		return 0, fmt.Errorf("pin dirs under %s: %v %v, want one", d.PinDir, vdirs, err)
	}
	path := filepath.Join(vdirs[0], "registrations")
	raw, err := exec.Command("bpftool", "-j", "map", "show", "pinned", path).Output()
	if err != nil {
		return 0, fmt.Errorf("bpftool map show %s: %w", path, err)
	}
	var info struct {
		MaxEntries int `json:"max_entries"`
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		return 0, fmt.Errorf("bpftool map show %s: %w", path, err)
	}
	return info.MaxEntries, nil
}
