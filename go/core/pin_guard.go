//go:build linux

package core

import (
	"context"
	"time"

	"github.com/containerd/log"
)

// pinCheckInterval is how often the runtime checks that its BPF pins are
// still its own. Pins removed or replaced by hand, or their bpffs
// unmounted, cost nothing while containerd runs (the runtime holds the maps
// and the program's link open), but the next start would find no
// registrations and no exit records: every exit meanwhile would be
// reported as 255. Only a containerd killed within this interval of such a
// removal loses them. A check is a few bpf() calls.
const pinCheckInterval = 2 * time.Second

// guardPins reports the pins Open put back and keeps putting them back for
// the daemon's lifetime (the monitor is never closed while it serves).
func (m *Manager) guardPins(ctx context.Context) {
	if restored := m.monitor.RestoredPins(); restored != "" {
		log.G(ctx).WithField("pins", restored).
			Warnf("embed: pins under %s were not the maps of the attached program (removed or replaced while containerd was down); pinned its maps again", m.config.PinDir)
	}
	go func() {
		var failing string
		for range time.Tick(pinCheckInterval) {
			restored, err := m.monitor.Repin()
			switch {
			case err != nil:
				// Said once per cause, not every interval.
				if err.Error() != failing {
					log.L.WithError(err).Errorf("embed: cannot put back the BPF pins under %s: a restart would lose the exit records until this is fixed", m.config.PinDir)
				}
				failing = err.Error()
			case restored != "":
				log.L.WithField("pins", restored).
					Warnf("embed: BPF pins under %s were removed or replaced behind the runtime's back; pinned again", m.config.PinDir)
				failing = ""
			default:
				failing = ""
			}
		}
	}()
}
