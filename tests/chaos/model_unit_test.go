//go:build linux

package chaos

import (
	"testing"
	"time"
)

// The verdict's rule for an event missing at a SIGKILL (no daemon: a unit
// test of the model). Only an exit shortly before a SIGKILL, whose Wait
// returned a true status, is counted as cut; any other missing event, or
// one before a SIGTERM, is lost.
func TestVerdictEventCutBySigkill(t *testing.T) {
	m := newModel()
	m.begin = time.Now()
	kill := m.begin.Add(10 * time.Second)
	m.restarted(window{"daemon-sigkill", kill, kill.Add(time.Second), true})
	m.restarted(window{"daemon-sigterm", kill.Add(20 * time.Second), kill.Add(21 * time.Second), false})
	cases := []struct {
		name   string
		at     time.Time
		status uint32
		cut    bool
	}{
		{"just-before-sigkill", kill.Add(-100 * time.Millisecond), 7, true},
		{"long-before-sigkill", kill.Add(-5 * time.Second), 7, false},
		{"wrong-status", kill.Add(-100 * time.Millisecond), 9, false},
		{"before-sigterm", kill.Add(20*time.Second - 100*time.Millisecond), 7, false},
	}
	for _, c := range cases {
		p := &proc{rt: "embed", ctr: c.name, certain: true, want: 7}
		m.add(p, 7)
		m.waited(p, c.status, c.at)
	}
	byRT, _, problems := m.verdict()
	got := byRT["embed"]
	if got.EventCut != 1 || got.EventLost != 3 || got.ExitsLost != 3 {
		t.Errorf("cut %d, event lost %d, exits lost %d; want 1, 3, 3; problems %v", got.EventCut, got.EventLost, got.ExitsLost, problems)
	}
}
