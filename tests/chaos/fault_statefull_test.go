//go:build linux

package chaos

import (
	"math/rand"
	"os"
	"strings"
	"time"
)

// faultStateFull fills the daemon's state filesystem for a while.
const faultStateFull = "state-full"

// stateTmpfsMiB is the size of the tmpfs the run mounts at the daemon's
// state dir (harness.Options.StateTmpfsMiB), so that state-full fills a
// filesystem of its own. Under the run's load (8 workers, up to 3
// containers each, with execs) the state dir held at most 576 KiB in ~250
// files (du every 2 s through a 90 s run): bundles (config.json,
// state.json, runc's log.json and pid files, exec specs), embed's runc root
// with runc's state, runc.v2's bundles; FIFOs and sockets take no space.
// 64 MiB is a hundred times that, and quick to fill (every state-full
// writes it all).
const stateTmpfsMiB = 64

// stateFillerName is the filler file's name in the state dir (nothing of
// containerd's or of the runtimes' is named so).
const stateFillerName = "chaos-state-filler"

// stateFull writes a filler file in the state dir until ENOSPC, keeps the
// filesystem full for 1-4 s (topping the filler up every 20 ms: a failed
// create removes its bundle and frees room), then removes it. Meanwhile
// creates, execs and runc calls that write there fail, and embed cannot
// persist the exits it publishes (it retries once there is room). The
// fault thread does nothing else meanwhile, so no restart happens while
// the filesystem is full.
func (r *run) stateFull(rng *rand.Rand, n int) {
	hold := time.Duration(1000+rng.Intn(3000)) * time.Millisecond
	path, size, err := r.d.FillState(stateFillerName)
	if err != nil {
		r.problem("", "%s: fill %s: %v", faultStateFull, r.d.State, err)
		_ = os.Remove(path)
		return
	}
	r.logf("fault %s #%d: %s full (filler %d MiB), held %v", faultStateFull, n, r.d.State, size>>20, hold)
	topped := int64(0)
	for end := time.Now().Add(hold); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		_, more, err := r.d.FillState(stateFillerName)
		if err != nil {
			r.problem("", "%s: top up %s: %v", faultStateFull, path, err)
			break
		}
		topped += more
	}
	if err := os.Remove(path); err != nil {
		r.problem("", "%s: remove %s: %v", faultStateFull, path, err)
		return
	}
	r.logf("fault %s #%d: filler removed (%d KiB topped up while held)", faultStateFull, n, topped>>10)
}

// persistRetries counts, in the daemon log, embed's state.json writes that
// failed (each task's first failure of a series) and the series that ended
// with a write that succeeded (fewer if a task was deleted before there was
// room again: it needs no state.json then). Reported, not judged.
func persistRetries(daemonLog string) (failed, recovered int) {
	return strings.Count(daemonLog, "embed: persist task state; retrying"),
		strings.Count(daemonLog, "embed: task state persisted after")
}
