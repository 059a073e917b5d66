//go:build linux

// Package chaos is the reliability campaign (issue 10): W workers run random
// operations on containers of both runtimes in one daemon while a fault
// thread crashes and restarts the daemon (also with a shrunk tracking
// capacity), kills container processes and runc from outside, makes runc
// fail and fills the state dir's filesystem; at the end every exit (and the
// stdout and stdin of some processes) is checked
// against the status the process must have had, and the daemon's leftovers
// against a snapshot taken before. runc.v2 in the same daemon is the
// reference (it is known to lose exits when containerd restarts after its
// shim is gone: counted, not an error of ours).
//
// Knobs (environment): CHAOS_DURATION (default 1m), CHAOS_SEED (default: from
// the clock; logged first), CHAOS_WORKERS (8), CHAOS_FAULT_MIN/_MAX (2s/10s),
// CHAOS_FAULTS (comma list of fault kinds, default all), CHAOS_CAPACITY
// (embed's tracking capacity, small to make creates hit it), CHAOS_SUMMARY (path
// of the summary JSON, default <repo>/_output/chaos/summary.json), and
// EMBEDSHIM_CONTAINERD for the daemon build. `make test-chaos` runs it.
package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/oci"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

var runtimes = []string{harness.EmbedPluginID, harness.RuncV2}

func short(rt string) string {
	if rt == harness.EmbedPluginID {
		return "embed"
	}
	return "runcv2"
}

// knobs are the run's parameters.
type knobs struct {
	duration           time.Duration
	seed               int64
	workers            int
	faultMin, faultMax time.Duration
	faults             []string
	summary            string
	capacity           int // embed's tracking capacity; 0: its default
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: not a duration (like 45s, 5m): %v", name, v, err)
	}
	return d
}

func readKnobs(t *testing.T, repo string) knobs {
	k := knobs{
		duration: envDuration(t, "CHAOS_DURATION", time.Minute),
		seed:     time.Now().UnixNano() % 1_000_000_000,
		workers:  8,
		faultMin: envDuration(t, "CHAOS_FAULT_MIN", 2*time.Second),
		faultMax: envDuration(t, "CHAOS_FAULT_MAX", 10*time.Second),
		faults:   allFaults,
		summary:  filepath.Join(repo, "_output", "chaos", "summary.json"),
	}
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q: not an integer", v)
		}
		k.seed = n
	}
	if v := os.Getenv("CHAOS_WORKERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("CHAOS_WORKERS=%q: want a positive integer", v)
		}
		k.workers = n
	}
	if v := os.Getenv("CHAOS_FAULTS"); v != "" {
		k.faults = nil
		for _, f := range strings.Split(v, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			if !knownFault(f) {
				t.Fatalf("CHAOS_FAULTS: unknown fault kind %q (known: %s)", f, strings.Join(allFaults, ","))
			}
			k.faults = append(k.faults, f)
		}
	}
	if k.faultMax < k.faultMin {
		t.Fatalf("CHAOS_FAULT_MAX %v < CHAOS_FAULT_MIN %v", k.faultMax, k.faultMin)
	}
	if v := os.Getenv("CHAOS_CAPACITY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("CHAOS_CAPACITY=%q: want a positive integer", v)
		}
		k.capacity = n
	}
	if v := os.Getenv("CHAOS_SUMMARY"); v != "" {
		k.summary = v
	}
	return k
}

// run is one campaign against one daemon.
type run struct {
	t       *testing.T
	k       knobs
	d       *harness.Daemon
	ctx     context.Context // the whole run, clean-up included
	img     containerd.Image
	m       *model
	begin   time.Time
	wrapper string // runc wrapper every container uses (BinaryName)
	failArm string // file whose presence makes the wrapper's next call fail

	// gate: workers hold it shared during each operation; the checks
	// after a fault take it exclusively, to see no operation half done.
	gate sync.RWMutex

	// waiters: one goroutine per process, returning with its Wait.
	waiters    sync.WaitGroup
	waitCtx    context.Context
	waitCancel context.CancelFunc
	// uncertainCtx: the same for processes whose Start failed, ended
	// sooner by the drain.
	uncertainCtx    context.Context
	uncertainCancel context.CancelFunc

	mu         sync.Mutex
	faultCount map[string]int
	restartRTT []time.Duration       // restart → first Tasks.List answered
	problems   map[string][]string   // runtime → invariant violations and leaks
	workers    []*worker             // for the final clean-up
	pids       map[string]*procPidOf // proc key → pid (for kill-proc)
	// capacityHits: creates and execs refused with "tracking capacity
	// reached" (a clean error, expected with CHAOS_CAPACITY).
	capacityHits int
}

type procPidOf struct {
	p   *proc
	pid uint32
}

func (r *run) logf(format string, args ...any) {
	r.t.Logf("[%8.3fs] %s", time.Since(r.begin).Seconds(), fmt.Sprintf(format, args...))
}

// problem records an invariant violation or leak of runtime rt ("" : the
// runtime is told from the text).
func (r *run) problem(rt, format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	if rt == "" {
		rt = runtimeOf(s)
	}
	r.logf("PROBLEM %s: %s", short(rt), s)
	r.mu.Lock()
	r.problems[rt] = append(r.problems[rt], s)
	r.mu.Unlock()
}

// runtimeOf tells which runtime a leftover belongs to: container ids end in
// the runtime's short name; runc.v2's dirs and shims name themselves.
func runtimeOf(s string) string {
	for _, m := range []string{"-runcv2", "io.containerd.runtime.v2.task", "containerd-shim", "runc.v2"} {
		if strings.Contains(s, m) {
			return harness.RuncV2
		}
	}
	return harness.EmbedPluginID
}

func TestChaos(t *testing.T) {
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	k := readKnobs(t, repo)
	t.Logf("chaos seed %d (reproduce: CHAOS_SEED=%d), duration %v, %d workers, faults every %v..%v: %s",
		k.seed, k.seed, k.duration, k.workers, k.faultMin, k.faultMax, strings.Join(k.faults, ","))

	opts := harness.Options{
		Embed:      harness.EmbedConfigure,
		LeakProbes: map[string]func(*harness.Daemon) ([]string, error){"bpf": bpfEntries},
		// The state dir on a filesystem of its own, for state-full.
		StateTmpfsMiB: stateTmpfsMiB,
		// The debug server: the final checks compare goroutines.
		Debug: true,
	}
	if k.capacity > 0 {
		// Small from the start, so creates hit it (capacity-shrink
		// faults change it at restarts and restore it).
		opts.EmbedConfig = fmt.Sprintf("capacity = %d", k.capacity)
	}
	d := harness.StartDaemon(t, opts)
	ctx, cancel := context.WithTimeout(d.Context(), k.duration+15*time.Minute)
	defer cancel()
	r := &run{
		t: t, k: k, d: d, ctx: ctx, m: newModel(), begin: time.Now(),
		faultCount: map[string]int{}, problems: map[string][]string{}, pids: map[string]*procPidOf{},
	}
	r.m.begin = r.begin
	r.waitCtx, r.waitCancel = context.WithCancel(ctx)
	defer r.waitCancel()
	r.uncertainCtx, r.uncertainCancel = context.WithCancel(r.waitCtx)
	defer r.uncertainCancel()
	t.Cleanup(func() {
		if t.Failed() {
			p := filepath.Join(os.TempDir(), fmt.Sprintf("chaos-%d-%s.daemon.log", k.seed, filepath.Base(d.Binary)))
			_ = os.WriteFile(p, []byte(d.Log()), 0o644)
			t.Logf("daemon log kept in %s", p)
		}
	})
	r.img = d.ImportTestImage(ctx)
	r.writeWrapper()
	for _, rt := range runtimes {
		r.warmUp(rt)
	}
	baseline := d.Snapshot()
	baseGoroutines, err := d.Goroutines()
	if err != nil {
		t.Fatalf("baseline: %v", err)
	}

	evCtx, evStop := context.WithCancel(ctx)
	evDone := make(chan struct{})
	go func() { defer close(evDone); r.watchExits(evCtx) }()

	// The campaign.
	runCtx, stop := context.WithTimeout(ctx, k.duration)
	defer stop()
	var wg sync.WaitGroup
	for i := 0; i < k.workers; i++ {
		w := &worker{r: r, id: i, rt: runtimes[i%len(runtimes)], rng: rand.New(rand.NewSource(k.seed + int64(i) + 1))}
		r.workers = append(r.workers, w)
		wg.Add(1)
		go func() { defer wg.Done(); w.loop(runCtx) }()
	}
	faultsDone := make(chan struct{})
	go func() { defer close(faultsDone); r.faultLoop(runCtx) }()
	<-runCtx.Done()
	<-faultsDone
	wg.Wait()
	r.logf("campaign over: %d faults; draining", r.totalFaults())

	// The end: every process killed, every Wait answered, every exit
	// event arrived, then everything deleted.
	r.drain()
	evStop()
	<-evDone
	r.finalChecks(baseline, baseGoroutines)

	byRT, byKind, problems := r.m.verdict()
	for _, p := range problems {
		t.Logf("exit check: %s", p)
	}
	r.report(byRT, byKind)
}

func (r *run) totalFaults() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.faultCount {
		n += c
	}
	return n
}

// warmUp runs one container on rt until killed: each runtime's first
// container creates lasting daemon-wide state that is no leak.
func (r *run) warmUp(rt string) {
	t := r.t
	cl := r.d.Client()
	id := "warm-" + short(rt)
	c, err := cl.NewContainer(r.ctx, id,
		containerd.WithNewSnapshot(id+"-snap", r.img),
		containerd.WithNewSpec(oci.WithImageConfig(r.img), oci.WithProcessArgs("sleep", "3600")),
		containerd.WithRuntime(rt, nil))
	if err != nil {
		t.Fatalf("warm-up %s: %v", rt, err)
	}
	task, err := c.NewTask(r.ctx, nullIO)
	if err != nil {
		t.Fatalf("warm-up %s: %v", rt, err)
	}
	ch, err := task.Wait(r.ctx)
	if err != nil {
		t.Fatalf("warm-up %s: %v", rt, err)
	}
	if err := task.Start(r.ctx); err != nil {
		t.Fatalf("warm-up %s: %v", rt, err)
	}
	if err := task.Kill(r.ctx, syscall.SIGKILL); err != nil {
		t.Fatalf("warm-up %s: %v", rt, err)
	}
	<-ch
	if _, err := task.Delete(r.ctx); err != nil {
		t.Fatalf("warm-up %s: %v", rt, err)
	}
	if err := c.Delete(r.ctx, containerd.WithSnapshotCleanup); err != nil {
		t.Fatalf("warm-up %s: %v", rt, err)
	}
}

// summary is _output/chaos/summary.json.
type summary struct {
	Embed     *counts                       `json:"embed"`
	RuncV2    *counts                       `json:"runc_v2"`
	Seed      int64                         `json:"seed"`
	DurationS float64                       `json:"duration_s"`
	Daemon    string                        `json:"daemon"`
	Faults    map[string]int                `json:"faults_by_kind"`
	ByKind    map[string]map[string]*counts `json:"by_kind"`
	RestartMS []int64                       `json:"restart_to_first_list_ms"`
}

func (r *run) report(byRT map[string]*counts, byKind map[string]map[string]*counts) {
	t := r.t
	r.mu.Lock()
	defer r.mu.Unlock()
	total := 0
	for _, c := range r.faultCount {
		total += c
	}
	for _, rt := range runtimes {
		if byRT[rt] == nil {
			byRT[rt] = &counts{}
		}
		byRT[rt].Faults = total
		byRT[rt].Leaks = len(r.problems[rt])
		for _, p := range r.problems[rt] {
			t.Logf("leak/invariant %s: %s", short(rt), p)
		}
	}
	var kinds []string
	for k := range r.faultCount {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	kinds = append(kinds, "none")
	var b strings.Builder
	fmt.Fprintf(&b, "\nseed %d, %s, %v\n", r.k.seed, filepath.Base(r.d.Binary), r.k.duration)
	fmt.Fprintf(&b, "%-16s %6s | %-28s | %-28s\n", "fault kind", "faults", "embed checked/lost/wrong/dup", "runc.v2 checked/lost/wrong/dup")
	row := func(c *counts) string {
		if c == nil {
			c = &counts{}
		}
		return fmt.Sprintf("%7d %6d %6d %6d", c.ExitsChecked, c.ExitsLost, c.WrongStatus, c.EventDup)
	}
	for _, k := range kinds {
		fmt.Fprintf(&b, "%-16s %6d | %-28s | %-28s\n", k, r.faultCount[k], row(byKind[harness.EmbedPluginID][k]), row(byKind[harness.RuncV2][k]))
	}
	fmt.Fprintf(&b, "%-16s %6d | %-28s | %-28s\n", "total", total, row(byRT[harness.EmbedPluginID]), row(byRT[harness.RuncV2]))
	for _, rt := range runtimes {
		c := byRT[rt]
		fmt.Fprintf(&b, "%s: checked %d, lost %d (no event %d, no Wait %d), wrong status %d, duplicate events %d, time mismatches %d, stdout lost %d, stdin checked %d lost %d (cut by a restart, not judged: %d), uncertain %d, leaks/invariants %d; exits during restarts %d (with event %d); events cut by a SIGKILL (status kept, not judged) %d\n",
			short(rt), c.ExitsChecked, c.ExitsLost, c.EventLost, c.WaitLost, c.WrongStatus, c.EventDup, c.TimeMismatch, c.IOLost, c.StdinChecked, c.StdinLost, c.StdinCut, c.Uncertain, c.Leaks, c.DowntimeExits, c.DowntimeEvents, c.EventCut)
	}
	var rtts []int64
	for _, d := range r.restartRTT {
		rtts = append(rtts, d.Milliseconds())
	}
	fmt.Fprintf(&b, "restart → first Tasks.List answered (ms): %v\n", rtts)
	fmt.Fprintf(&b, "creates/execs refused at embed's tracking capacity: %d\n", r.capacityHits)
	failed, recovered := persistRetries(r.d.Log())
	fmt.Fprintf(&b, "embed state.json writes failed (state-full) and retried: %d tasks, written again: %d\n", failed, recovered)
	t.Log(b.String())

	s := summary{
		Embed: byRT[harness.EmbedPluginID], RuncV2: byRT[harness.RuncV2],
		Seed: r.k.seed, DurationS: r.k.duration.Seconds(), Daemon: r.d.Binary,
		Faults: r.faultCount, ByKind: map[string]map[string]*counts{}, RestartMS: rtts,
	}
	for rt, m := range byKind {
		s.ByKind[short(rt)] = m
	}
	js, _ := json.MarshalIndent(s, "", "  ")
	for _, p := range []string{r.k.summary, strings.TrimSuffix(r.k.summary, ".json") + "-" + filepath.Base(r.d.Binary) + ".json"} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
			if err := os.WriteFile(p, append(js, '\n'), 0o644); err != nil {
				t.Errorf("write %s: %v", p, err)
			}
		}
	}
	t.Logf("summary written to %s", r.k.summary)

	e := byRT[harness.EmbedPluginID]
	if e.ExitsLost != 0 || e.WrongStatus != 0 || e.EventDup != 0 || e.Leaks != 0 || e.TimeMismatch != 0 || e.IOLost != 0 || e.StdinLost != 0 {
		t.Errorf("embed: %d exits lost, %d wrong statuses, %d duplicate events, %d time mismatches, %d stdout lost, %d stdin lost, %d leaks/invariant violations (seed %d)",
			e.ExitsLost, e.WrongStatus, e.EventDup, e.TimeMismatch, e.IOLost, e.StdinLost, e.Leaks, r.k.seed)
	}
	if e.ExitsChecked == 0 {
		t.Errorf("embed: no exit checked: the driver did nothing")
	}
}
