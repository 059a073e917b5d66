//go:build linux

package chaos

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/cio"
)

// The model: every process the driver starts, what exit statuses it may
// report, and what the daemon reported of it (exit events, Wait, Delete).

// wantStatus is the status process id exits with when nothing kills it:
// derived from the id, so the driver always knows it (1..100).
func wantStatus(id string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(id))
	return h.Sum32()%100 + 1
}

// exitSeen is one /tasks/exit event or Wait result.
type exitSeen struct {
	status uint32
	at     time.Time
}

// proc is one init or exec process.
type proc struct {
	rt      string // runtime name
	ctr     string // container id
	exec    string // exec id; "" for the init
	started time.Time
	// certain: Start returned success, so the process ran and its exit
	// must be reported. Uncertain ones (Start failed, e.g. the daemon died
	// during it) are checked only if an exit shows up.
	certain bool
	want    uint32 // status of a natural exit
	marker  string // expected on stdout ("" : not checked)
	out     *lockedBuffer
	io      cio.IO
	stdin   *stdinIO // fed by the worker (nil: no stdin)

	// guarded by model.mu
	accept  map[uint32]bool // statuses a true report may carry
	faults  map[string]bool // fault kinds injected while it was unfinished
	events  []exitSeen
	wait    *exitSeen
	waitErr string // why Wait gave up (the task or process was gone)
	deleted bool
	delCode *uint32 // status Delete returned
	// stdinEOFDue: CloseIO succeeded, so the script must have seen EOF
	stdinEOFDue bool
}

func (p *proc) key() string {
	if p.exec == "" {
		return p.ctr + "/" + p.ctr
	}
	return p.ctr + "/" + p.exec
}

func (p *proc) name() string {
	if p.exec == "" {
		return p.ctr
	}
	return p.ctr + "/" + p.exec
}

// window is a daemon restart: stopped at stop (by SIGKILL if kill),
// serving again at up.
type window struct {
	kind     string
	stop, up time.Time
	kill     bool
}

// model holds every process of a run.
type model struct {
	mu      sync.Mutex
	begin   time.Time
	windows []window
	procs   map[string]*proc // by key
	// unknown counts exit events of processes the model does not know
	// (warm-up containers, execs whose Exec call failed).
	unknown int
}

func newModel() *model { return &model{procs: map[string]*proc{}} }

func (m *model) add(p *proc, want uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p.accept = map[uint32]bool{want: true}
	p.faults = map[string]bool{}
	m.procs[p.key()] = p
}

// allow adds status to what p may report (it was signalled: the signal may
// or may not land before a natural exit).
func (m *model) allow(p *proc, status uint32) {
	m.mu.Lock()
	p.accept[status] = true
	m.mu.Unlock()
}

// finished: Wait returned or gave up, and an exit event was seen or the
// process is deleted. Faults after that do not concern it.
func (p *proc) finished() bool {
	return (p.wait != nil || p.waitErr != "") && (len(p.events) > 0 || p.deleted)
}

// fault marks every unfinished process as having lived through a fault of
// kind (for the per-kind table).
func (m *model) fault(kind string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.procs {
		if !p.finished() {
			p.faults[kind] = true
		}
	}
}

func (m *model) event(ctr, exec string, status uint32, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.procs[ctr+"/"+exec]
	if p == nil {
		m.unknown++
		return
	}
	p.events = append(p.events, exitSeen{status, at})
}

func (m *model) setCertain(p *proc, certain bool) {
	m.mu.Lock()
	p.certain = certain
	m.mu.Unlock()
}

// initEnds: the init of container ctr exits or is killed, and with it (pid
// namespace) every exec still running: they may report SIGKILL.
func (m *model) initEnds(ctr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.procs {
		if p.ctr == ctr && p.exec != "" {
			p.accept[137] = true
		}
	}
}

func (m *model) isDeleted(p *proc) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return p.deleted
}

func (m *model) waited(p *proc, status uint32, at time.Time) {
	m.mu.Lock()
	p.wait = &exitSeen{status, at}
	m.mu.Unlock()
}

func (m *model) waitGaveUp(p *proc, why string) {
	m.mu.Lock()
	p.waitErr = why
	m.mu.Unlock()
}

func (m *model) isWaited(p *proc) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return p.wait != nil || p.waitErr != ""
}

func (m *model) markDeleted(p *proc, code *uint32) {
	m.mu.Lock()
	p.deleted = true
	p.delCode = code
	m.mu.Unlock()
}

// counts is one runtime's (or one fault kind's) tally.
type counts struct {
	Faults       int `json:"faults"`
	ExitsChecked int `json:"exits_checked"`
	ExitsLost    int `json:"exits_lost"`
	Leaks        int `json:"leaks"`
	// Details of the lost and wrong ones.
	EventLost    int `json:"event_lost"`    // no /tasks/exit event
	WaitLost     int `json:"wait_lost"`     // Wait never returned a status
	EventDup     int `json:"event_dup"`     // more than one /tasks/exit
	WrongStatus  int `json:"wrong_status"`  // a status the process cannot have had
	TimeMismatch int `json:"time_mismatch"` // event and Wait disagree on the time
	Uncertain    int `json:"uncertain"`     // Start failed; checked only if seen
	IOLost       int `json:"io_lost"`       // a natural exit whose stdout lacks its marker
	// Processes reading stdin, with a natural exit: StdinChecked judged
	// (no restart during their life), StdinLost of those without the
	// echo of their line or without EOF after a CloseIO that succeeded,
	// StdinCut not judged (a restart during their life).
	StdinChecked int `json:"stdin_checked"`
	StdinLost    int `json:"stdin_lost"`
	StdinCut     int `json:"stdin_cut_by_restart"`
	// DowntimeExits: exits (Wait's time) while the daemon was stopped or
	// starting; DowntimeEvents: how many of those a client subscribed
	// after the restart got as /tasks/exit.
	DowntimeExits  int `json:"downtime_exits"`
	DowntimeEvents int `json:"downtime_events"`
	// EventCut: no /tasks/exit event for an exit less than sigkillCut
	// before a SIGKILL of containerd, whose Wait returned its true
	// status. containerd's event stream is not durable: an event
	// published (and so not published again by the next start) but still
	// in containerd's queues when it is killed reaches no subscriber, on
	// runc.v2 as on embed. The status is not lost; counted, not failed.
	EventCut int `json:"event_cut_by_sigkill"`
}

// sigkillCut bounds how long before a SIGKILL of containerd an exit's event
// can still be in containerd's queues (generous: the runs are loaded).
const sigkillCut = time.Second

// verdict checks every process of the model once the run is over and
// returns the tally per runtime and per runtime+fault kind, with one line
// per problem.
func (m *model) verdict() (byRT map[string]*counts, byKind map[string]map[string]*counts, problems []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	byRT = map[string]*counts{}
	byKind = map[string]map[string]*counts{}
	get := func(rt string) *counts {
		if byRT[rt] == nil {
			byRT[rt] = &counts{}
		}
		return byRT[rt]
	}
	kinds := func(rt string, p *proc) []*counts {
		if byKind[rt] == nil {
			byKind[rt] = map[string]*counts{}
		}
		var ks []string
		for k := range p.faults {
			ks = append(ks, k)
		}
		if len(ks) == 0 {
			ks = []string{"none"}
		}
		var out []*counts
		for _, k := range ks {
			if byKind[rt][k] == nil {
				byKind[rt][k] = &counts{}
			}
			out = append(out, byKind[rt][k])
		}
		return out
	}
	keys := make([]string, 0, len(m.procs))
	for k := range m.procs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := m.procs[k]
		c := get(p.rt)
		cs := append(kinds(p.rt, p), c)
		// A process whose Start failed never ran if Wait returns no
		// exit time (runc.v2 and embed leave it "created", Wait
		// returning 0 at time zero); if it did run, it is checked.
		seen := len(p.events) > 0 || (p.wait != nil && !p.wait.at.IsZero())
		if !p.certain && !seen {
			c.Uncertain++
			continue
		}
		for _, x := range cs {
			x.ExitsChecked++
		}
		if p.exec != "" {
			// An init whose end nobody reported may have taken
			// this exec with it.
			if i := m.procs[p.ctr+"/"+p.ctr]; i == nil || (len(i.events) == 0 && i.wait == nil) {
				p.accept[137] = true
			}
		}
		bad := func(what string, f func(*counts)) {
			for _, x := range cs {
				f(x)
			}
			problems = append(problems, fmt.Sprintf("%s %s: %s (accept %v, faults %v)", short(p.rt), p.name(), what, keysOf(p.accept), keysOf(p.faults)))
		}
		lost := false
		if len(p.events) == 0 && p.wait != nil && p.accept[p.wait.status] && m.beforeSigkill(p.wait.at) {
			for _, x := range cs {
				x.EventCut++
			}
		} else if len(p.events) == 0 {
			lost = true
			what := "no /tasks/exit event"
			if p.wait != nil {
				what += fmt.Sprintf(" (Wait: status %d at %s)", p.wait.status, m.when(p.wait.at))
			}
			bad(what, func(x *counts) { x.EventLost++ })
		}
		if p.wait == nil {
			lost = true
			bad("Wait returned no status: "+p.waitErr, func(x *counts) { x.WaitLost++ })
		}
		if lost {
			for _, x := range cs {
				x.ExitsLost++
			}
		}
		if p.wait != nil && m.inDowntime(p.wait.at) {
			for _, x := range cs {
				x.DowntimeExits++
				if len(p.events) > 0 {
					x.DowntimeEvents++
				}
			}
		}
		if len(p.events) > 1 {
			bad(fmt.Sprintf("%d /tasks/exit events %v", len(p.events), p.events), func(x *counts) { x.EventDup++ })
		}
		for _, e := range p.events {
			if !p.accept[e.status] {
				bad(fmt.Sprintf("/tasks/exit status %d", e.status), func(x *counts) { x.WrongStatus++ })
			}
		}
		if p.wait != nil && !p.accept[p.wait.status] {
			bad(fmt.Sprintf("Wait status %d", p.wait.status), func(x *counts) { x.WrongStatus++ })
		}
		if p.delCode != nil && !p.accept[*p.delCode] {
			bad(fmt.Sprintf("Delete status %d", *p.delCode), func(x *counts) { x.WrongStatus++ })
		}
		if p.wait != nil && len(p.events) > 0 {
			d := p.wait.at.Sub(p.events[0].at)
			if d < -time.Millisecond || d > time.Millisecond {
				bad(fmt.Sprintf("exit time: event %v, Wait %v", p.events[0].at, p.wait.at), func(x *counts) { x.TimeMismatch++ })
			}
		}
		// Output is judged only when Start succeeded: a client whose
		// Start failed tears its stdio down, whatever the process did.
		if p.certain && p.marker != "" && p.out != nil && p.wait != nil && p.wait.status == p.want && !strings.Contains(p.out.String(), p.marker) {
			bad(fmt.Sprintf("stdout %q lacks %q", p.out.String(), p.marker), func(x *counts) { x.IOLost++ })
		}
		m.judgeStdin(p, cs, bad)
		if p.wait != nil && (p.wait.at.Before(p.started.Add(-2*time.Second)) || p.wait.at.IsZero()) {
			bad(fmt.Sprintf("exit time %v before its start %v", p.wait.at, p.started), func(x *counts) { x.TimeMismatch++ })
		}
	}
	return byRT, byKind, problems
}

func keysOf[K cmp.Ordered, V any](m map[K]V) []K {
	var out []K
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// eventsPending counts processes whose Wait returned a status but whose
// exit event has not arrived yet.
func (m *model) eventsPending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, p := range m.procs {
		if p.certain && p.wait != nil && len(p.events) == 0 {
			n++
		}
	}
	return n
}

// when tells t relative to the run's start and to the nearest restart.
func (m *model) when(t time.Time) string {
	s := fmt.Sprintf("+%.3fs", t.Sub(m.begin).Seconds())
	for _, w := range m.windows {
		if t.After(w.stop.Add(-2*time.Second)) && t.Before(w.up.Add(2*time.Second)) {
			s += fmt.Sprintf(", %s restart: stop %+.3fs, up %+.3fs", w.kind, w.stop.Sub(t).Seconds(), w.up.Sub(t).Seconds())
		}
	}
	return s
}

func (m *model) restarted(w window) {
	m.mu.Lock()
	m.windows = append(m.windows, w)
	m.mu.Unlock()
}

// unwaited names the processes whose Wait has not returned.
func (m *model) unwaited() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, p := range m.procs {
		if p.wait == nil && p.waitErr == "" {
			out = append(out, fmt.Sprintf("%s %s (certain %v)", short(p.rt), p.name(), p.certain))
		}
	}
	sort.Strings(out)
	return out
}

// beforeSigkill: t lies less than sigkillCut before a SIGKILL of the
// daemon. (m.mu held)
func (m *model) beforeSigkill(t time.Time) bool {
	for _, w := range m.windows {
		if w.kill && !t.After(w.stop) && w.stop.Sub(t) < sigkillCut {
			return true
		}
	}
	return false
}

// inDowntime: t lies between a daemon's stop and its successor serving.
// (m.mu held)
func (m *model) inDowntime(t time.Time) bool {
	for _, w := range m.windows {
		if t.After(w.stop) && t.Before(w.up) {
			return true
		}
	}
	return false
}
