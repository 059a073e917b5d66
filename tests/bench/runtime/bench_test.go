//go:build linux

// Package runtime is issue #4's benchmark: the embed runtime
// (io.containerd.runtime.v1.embed) against io.containerd.runc.v2 in one
// embedshim-containerd daemon, driven through the containerd Go client.
// It is a Go test so it can use the daemon harness; it only runs with
// EMBEDSHIM_BENCH=full or EMBEDSHIM_BENCH=smoke (`make bench`,
// `make bench-smoke`) and skips otherwise. See README.md.
package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// config of one run; see presets and env overrides in loadConfig.
type config struct {
	mode       string
	lifecycleN int           // sequential lifecycles per runtime
	exitN      int           // samples per runtime, per exit kind
	exitDelay  time.Duration // exitclock -delay (natural exits)
	densityK   []int         // K sleeping containers (density + restart)
	runcMaxK   int           // cap of K for runc.v2 (0: none)
	createCap  time.Duration // creation budget per K and runtime
	workers    []int         // throughput worker counts
	tputDur    time.Duration // throughput duration per runtime and count
	pool       int           // parallelism of create/delete in density
	scenarios  map[string]bool
	runtimes   map[string]bool
	outDir     string
	suffix     string // output file suffix ("" full, "-smoke")
	corePath   string
}

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

func envInts(name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

func envDur(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

func envSet(name, def string) map[string]bool {
	v := os.Getenv(name)
	if v == "" {
		v = def
	}
	m := map[string]bool{}
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			m[f] = true
		}
	}
	return m
}

func loadConfig(mode string, repo string) config {
	c := config{mode: mode, exitDelay: 20 * time.Millisecond, createCap: 8 * time.Minute, pool: 8}
	switch mode {
	case "smoke":
		c.lifecycleN, c.exitN = 3, 3
		c.densityK = []int{3}
		c.workers = []int{4, 8}
		c.tputDur = 2 * time.Second
		c.suffix = "-smoke"
	default: // full
		c.lifecycleN, c.exitN = 100, 200
		c.densityK = []int{100, 1000}
		c.workers = []int{4, 8}
		c.tputDur = 30 * time.Second
	}
	c.lifecycleN = envInt("EMBEDSHIM_BENCH_N", c.lifecycleN)
	c.exitN = envInt("EMBEDSHIM_BENCH_EXITS", c.exitN)
	c.exitDelay = envDur("EMBEDSHIM_BENCH_EXIT_DELAY", c.exitDelay)
	c.densityK = envInts("EMBEDSHIM_BENCH_K", c.densityK)
	c.runcMaxK = envInt("EMBEDSHIM_BENCH_RUNC_MAX_K", 0)
	c.createCap = envDur("EMBEDSHIM_BENCH_CREATE_BUDGET", c.createCap)
	c.workers = envInts("EMBEDSHIM_BENCH_WORKERS", c.workers)
	c.tputDur = envDur("EMBEDSHIM_BENCH_DURATION", c.tputDur)
	c.pool = envInt("EMBEDSHIM_BENCH_POOL", c.pool)
	c.scenarios = envSet("EMBEDSHIM_BENCH_SCENARIOS", "lifecycle,exit,throughput,density,restart")
	c.runtimes = envSet("EMBEDSHIM_BENCH_RUNTIMES", keyEmbed+","+keyRuncV2)
	c.outDir = os.Getenv("EMBEDSHIM_BENCH_OUT")
	if c.outDir == "" {
		c.outDir = filepath.Join(repo, "_output", "bench")
	}
	c.corePath = os.Getenv("EMBEDSHIM_BENCH_CORE")
	if c.corePath == "" {
		c.corePath = filepath.Join(repo, "_output", "bench", "core.json")
	}
	return c
}

func TestRuntimeBench(t *testing.T) {
	mode := os.Getenv("EMBEDSHIM_BENCH")
	if mode != "full" && mode != "smoke" {
		t.Skip("set EMBEDSHIM_BENCH=full or EMBEDSHIM_BENCH=smoke (make bench / make bench-smoke)")
	}
	wall := time.Now()
	loadStart := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		loadStart = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Skip(err)
	}
	cfg := loadConfig(mode, repo)

	// The CPU cgroup is removed after the harness clean-up (t.Cleanup is
	// LIFO) has killed everything that was in it.
	var rb [4]byte
	_, _ = unix.Getrandom(rb[:], 0)
	cpu := newCPUMeter(fmt.Sprintf("embedshim-bench-%x", rb))
	t.Cleanup(func() {
		if err := cpu.close(); err != nil {
			t.Logf("remove cpu cgroup: %v", err)
		}
	})

	// One daemon for both runtimes. Log level warn: debug logging would be
	// measured as containerd CPU.
	// A private copy of the daemon binary: restarts must run the same build
	// even if bin/ is rebuilt meanwhile.
	bin, err := privateBinary(t, repo)
	if err != nil {
		t.Skip(err)
	}
	d := harness.StartDaemon(t, harness.Options{Binary: bin, LogLevel: "warn", StartTimeout: 5 * time.Minute})
	ctx := d.Context()
	img := d.ImportTestImage(ctx)
	if err := cpu.adopt(d.Pid()); err != nil {
		t.Logf("cpu cgroup: %v", err)
	}

	b := &bench{d: d, img: img, cfg: cfg, rep: newReport(), cpu: cpu, logf: t.Logf}
	b.clockDir = filepath.Join(d.Dir, "clock")
	if err := os.MkdirAll(b.clockDir, 0o755); err != nil {
		t.Fatal(err)
	}

	embedStatus := b.detectRuntimes(ctx)
	fmt.Printf("runtime bench (%s): runtimes %v; embed: %s\n", mode, b.rtNames(), embedStatus)
	// Warm up: each runtime's first running container creates lasting
	// daemon-wide state (embed's OOM epoll) that is no leak. It must run:
	// an exited init is reaped at once, and then has no cgroup to watch.
	for _, rt := range b.rts {
		if _, err := b.startSleeper(ctx, rt); err != nil {
			t.Fatalf("warm-up: %v", err)
		}
	}
	if err := b.removeAll(ctx); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	baseline := d.Snapshot()

	restarted := false
	var exitRes map[string]*exitResults
	fail := func(scenario string, err error) {
		if err != nil {
			t.Errorf("%s: %v", scenario, err)
		}
	}
	if cfg.scenarios["lifecycle"] {
		fail("lifecycle", b.runLifecycle(ctx))
		fail("cleanup", b.removeAll(ctx))
	}
	if cfg.scenarios["exit"] {
		var err error
		exitRes, err = b.runExit(ctx)
		fail("exit", err)
		fail("cleanup", b.removeAll(ctx))
	}
	if cfg.scenarios["throughput"] {
		fail("throughput", b.runThroughput(ctx))
		fail("cleanup", b.removeAll(ctx))
	}
	if cfg.scenarios["density"] || cfg.scenarios["restart"] {
		r, err := b.runDensityRestart(ctx)
		restarted = restarted || r
		fail("density/restart", err)
		fail("cleanup", b.removeAll(ctx))
	}

	// Everything the scenarios made must be gone (processes, runtime dirs,
	// cgroups, mounts). The harness removes it anyway, but a leak is a bug.
	leaks := waitNoLeaks(d, baseline, restarted)
	for _, l := range leaks {
		t.Errorf("left behind after clean-up: %s", l)
	}

	// Output.
	core, coreErr := readCore(cfg.corePath)
	machine := machineInfo(d)
	machine["loadavg_at_start"] = loadStart
	header := []string{
		fmt.Sprintf("embedshim runtime benchmark (%s) — %s, %d CPUs, %s MiB RAM, kernel %s",
			mode, machine["cpu_model"], machine["cpus"], fmt.Sprint(machine["mem_mib"]), machine["kernel"]),
		fmt.Sprintf("runtimes: %s; embed: %s; load average at start %s, at end %s",
			strings.Join(b.rtNames(), ", "), embedStatus, loadStart, machine["loadavg_at_end"]),
	}
	if core != nil {
		addCoreRows(b.rep, core)
	} else {
		b.rep.Notef("core: %v (run `make bench-core`)", coreErr)
	}
	b.rep.Notef("cpu accounting: %s", cpu.Method)
	b.rep.Notef("wall time %v", time.Since(wall).Round(time.Second))
	fmt.Println()
	b.rep.WriteTable(os.Stdout, header)

	params := map[string]any{
		"mode": mode, "lifecycle_n": cfg.lifecycleN, "exit_n": cfg.exitN, "exit_delay": cfg.exitDelay.String(),
		"density_k": cfg.densityK, "runc_max_k": cfg.runcMaxK, "create_budget": cfg.createCap.String(),
		"throughput_workers": cfg.workers, "throughput_duration": cfg.tputDur.String(), "pool": cfg.pool,
		"cpu_method": cpu.Method, "embed": embedStatus, "runtimes": b.rtNames(),
	}
	jsonPath := filepath.Join(cfg.outDir, "runtime"+cfg.suffix+".json")
	extra := map[string]any{"machine": machine, "params": params, "core": core}
	if err := b.rep.WriteJSON(jsonPath, extra); err != nil {
		t.Errorf("write %s: %v", jsonPath, err)
	} else {
		fmt.Printf("\nwrote %s\n", jsonPath)
	}
	if exitRes != nil {
		svgPath := filepath.Join(cfg.outDir, "exit_latency"+cfg.suffix+".svg")
		if err := writeExitSVG(svgPath, exitRes, mode); err != nil {
			t.Errorf("write %s: %v", svgPath, err)
		} else {
			fmt.Printf("wrote %s\n", svgPath)
		}
	}
}

// privateBinary copies $EMBEDSHIM_CONTAINERD or bin/embedshim-containerd to
// a temp dir removed at the end.
func privateBinary(t *testing.T, repo string) (string, error) {
	src := os.Getenv("EMBEDSHIM_CONTAINERD")
	if src == "" {
		src = filepath.Join(repo, "bin", "embedshim-containerd")
	}
	raw, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("%s missing: run `make containerd-bins` first (%v)", src, err)
	}
	dir, err := os.MkdirTemp("", "es-bench-bin-")
	if err != nil {
		return "", err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Same base name: the harness picks the ctr and shim of the daemon's
	// containerd version by it.
	dst := filepath.Join(dir, filepath.Base(src))
	return dst, os.WriteFile(dst, raw, 0o755)
}

func (b *bench) rtNames() []string {
	var out []string
	for _, r := range b.rts {
		out = append(out, r.Name)
	}
	return out
}

// detectRuntimes picks the runtimes the daemon really has (the embed plugin
// linked in and initialised without error).
func (b *bench) detectRuntimes(ctx context.Context) string {
	embed := "not available"
	if !b.cfg.runtimes[keyEmbed] {
		embed = "not selected (EMBEDSHIM_BENCH_RUNTIMES)"
	} else if b.d.HasEmbed() {
		resp, err := b.d.Client().IntrospectionService().Plugins(ctx, []string{`type=="io.containerd.runtime.v1",id=="embed"`})
		switch {
		case err != nil:
			embed = "not available (introspection: " + err.Error() + ")"
		case len(resp.Plugins) == 0:
			embed = "not available (plugin not loaded)"
		case resp.Plugins[0].InitErr != nil:
			embed = "not available (init error: " + resp.Plugins[0].InitErr.Message + ")"
		default:
			embed = "available"
			b.rts = append(b.rts, rtInfo{Key: keyEmbed, Name: harness.EmbedPluginID})
		}
	} else {
		embed = "not available (not linked into " + b.d.Binary + ")"
	}
	if b.cfg.runtimes[keyRuncV2] {
		b.rts = append(b.rts, rtInfo{Key: keyRuncV2, Name: harness.RuncV2})
	}
	return embed
}

// ---- 1. lifecycle -----------------------------------------------------

func (b *bench) runLifecycle(ctx context.Context) error {
	fmt.Printf("lifecycle: %d sequential lifecycles of `true` per runtime, interleaved\n", b.cfg.lifecycleN)
	// warm-up (page cache, first shim start), not measured
	for _, rt := range b.rts {
		for i := 0; i < 3; i++ {
			if _, err := b.lifecycle(ctx, rt, "warm"); err != nil {
				return err
			}
		}
	}
	res := map[string][]phases{}
	cpuNs := map[string]int64{}
	dpid := b.d.Pid()
	for i := 0; i < b.cfg.lifecycleN; i++ {
		progress("lifecycle", i, b.cfg.lifecycleN)
		for _, rt := range b.order(i) {
			c0, cerr := b.cpu.read(dpid)
			p, err := b.lifecycle(ctx, rt, "lc")
			if err != nil {
				return err
			}
			// let a runc.v2 shim finish exiting so its CPU lands here
			time.Sleep(30 * time.Millisecond)
			c1, cerr2 := b.cpu.read(dpid)
			if cerr == nil && cerr2 == nil {
				cpuNs[rt.Key] += c1 - c0
			}
			res[rt.Key] = append(res[rt.Key], p)
		}
	}
	for _, rt := range b.rts {
		ps := res[rt.Key]
		get := func(f func(p phases) float64) []float64 {
			var v []float64
			for _, p := range ps {
				v = append(v, f(p))
			}
			return v
		}
		type ph struct {
			name string
			f    func(p phases) float64
		}
		for _, x := range []ph{
			{"lifecycle", func(p phases) float64 { return p.Total }},
			{"container_create", func(p phases) float64 { return p.ContainerCreate }},
			{"task_create", func(p phases) float64 { return p.TaskCreate }},
			{"task_start", func(p phases) float64 { return p.TaskStart }},
			{"start_to_exit", func(p phases) float64 { return p.Wait }},
			{"task_delete", func(p phases) float64 { return p.TaskDelete }},
			{"container_delete", func(p phases) float64 { return p.ContainerDelete }},
		} {
			v := get(x.f)
			b.rep.Set(x.name+"_p50_ms", "ms", rt.Key, percentile(v, 50))
			b.rep.Set(x.name+"_p95_ms", "ms", rt.Key, percentile(v, 95))
		}
		if len(ps) > 0 {
			b.rep.Set("cpu_ms_per_container_seq", "ms", rt.Key, float64(cpuNs[rt.Key])/1e6/float64(len(ps)))
		}
	}
	return nil
}

// progress prints a line at each quarter of a long loop.
func progress(what string, i, n int) {
	if n >= 40 && i > 0 && i%(n/4) == 0 {
		fmt.Printf("  %s: %d/%d rounds\n", what, i, n)
	}
}

// ---- 2. exit notification ---------------------------------------------

type exitResults struct {
	KillToWait, KillToEvent, ExitToWait, ExitToEvent []float64
}

func (b *bench) runExit(ctx context.Context) (map[string]*exitResults, error) {
	fmt.Printf("exit: %d SIGKILL and %d natural exits per runtime, interleaved\n", b.cfg.exitN, b.cfg.exitN)
	ev := b.subscribeExits(ctx)
	defer ev.close()
	res := map[string]*exitResults{}
	for _, rt := range b.rts {
		res[rt.Key] = &exitResults{}
		// warm-up: also proves the subscription delivers
		if _, err := b.killSample(ctx, rt, ev); err != nil {
			return nil, err
		}
		if _, err := b.naturalSample(ctx, rt, ev); err != nil {
			return nil, err
		}
	}
	for i := 0; i < b.cfg.exitN; i++ {
		progress("exit", i, b.cfg.exitN)
		for _, rt := range b.order(i) {
			r := res[rt.Key]
			s, err := b.killSample(ctx, rt, ev)
			if err != nil {
				return res, err
			}
			r.KillToWait = append(r.KillToWait, s.ToWait)
			r.KillToEvent = append(r.KillToEvent, s.ToEvent)
			s, err = b.naturalSample(ctx, rt, ev)
			if err != nil {
				return res, err
			}
			r.ExitToWait = append(r.ExitToWait, s.ToWait)
			r.ExitToEvent = append(r.ExitToEvent, s.ToEvent)
		}
	}
	for _, rt := range b.rts {
		r := res[rt.Key]
		for _, x := range []struct {
			name string
			v    []float64
		}{{"kill_to_wait", r.KillToWait}, {"kill_to_event", r.KillToEvent}, {"exit_to_wait", r.ExitToWait}, {"exit_to_event", r.ExitToEvent}} {
			for _, p := range []float64{50, 95, 99} {
				b.rep.Set(fmt.Sprintf("%s_p%g_ms", x.name, p), "ms", rt.Key, percentile(x.v, p))
			}
		}
		b.rep.Set("exit_statuses_checked", "count", rt.Key, float64(2*len(r.KillToWait)))
	}
	b.rep.AddNote("exit_statuses_checked", "Wait and /tasks/exit status of every sample: 137 after SIGKILL, 7 for exitclock")
	return res, nil
}

func writeExitSVG(path string, res map[string]*exitResults, mode string) error {
	var series []cdfSeries
	colors := map[string]string{keyEmbed: "#d62728", keyRuncV2: "#1f77b4"}
	names := map[string]string{keyEmbed: "embed", keyRuncV2: "runc.v2"}
	for _, k := range []string{keyEmbed, keyRuncV2} {
		r, ok := res[k]
		if !ok {
			continue
		}
		series = append(series,
			cdfSeries{Name: names[k] + " exit → Wait", Color: colors[k], Samples: r.ExitToWait},
			cdfSeries{Name: names[k] + " exit → /tasks/exit", Color: colors[k], Dash: "6 4", Samples: r.ExitToEvent},
			cdfSeries{Name: names[k] + " SIGKILL → Wait", Color: colors[k], Dash: "2 3", Samples: r.KillToWait},
		)
	}
	return writeCDFSVG(path, "Exit notification latency CDF ("+mode+")",
		"latency, ms (log scale): exitclock's CLOCK_MONOTONIC at exit, or Kill() call → client receives", series)
}

// ---- 4. throughput ----------------------------------------------------

func (b *bench) runThroughput(ctx context.Context) error {
	for wi, w := range b.cfg.workers {
		for _, rt := range b.order(wi) {
			fmt.Printf("throughput: %s, %d workers, %v\n", rt.Name, w, b.cfg.tputDur)
			if err := b.throughput(ctx, rt, w); err != nil {
				return err
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	return nil
}

func (b *bench) throughput(ctx context.Context, rt rtInfo, workers int) error {
	dpid := b.d.Pid()
	if err := b.cpu.adopt(dpid); err != nil {
		b.logf("cpu cgroup: %v", err)
	}
	c0, cerr := b.cpu.read(dpid)
	var (
		mu     sync.Mutex
		totals []float64
		errs   []error
		wg     sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(b.cfg.tputDur)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				p, err := b.lifecycle(ctx, rt, "tp")
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				totals = append(totals, p.Total)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	time.Sleep(300 * time.Millisecond) // shims finishing their exit
	c1, cerr2 := b.cpu.read(dpid)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	n := float64(len(totals))
	sfx := fmt.Sprintf("_%dw", workers)
	b.rep.Set("throughput_ctr_per_s"+sfx, "ctr/s", rt.Key, n/elapsed.Seconds())
	b.rep.Set("throughput_lifecycle_p50_ms"+sfx, "ms", rt.Key, percentile(totals, 50))
	b.rep.Set("throughput_lifecycle_p95_ms"+sfx, "ms", rt.Key, percentile(totals, 95))
	if cerr == nil && cerr2 == nil && n > 0 {
		cpuMs := float64(c1-c0) / 1e6 / n
		b.rep.Set("cpu_ms_per_container"+sfx, "ms", rt.Key, cpuMs)
		if workers == b.cfg.workers[0] {
			b.rep.Set("cpu_ms_per_container", "ms", rt.Key, cpuMs)
		}
	}
	return nil
}

// ---- 3. density and 5. restart ------------------------------------------

func (b *bench) runDensityRestart(ctx context.Context) (restarted bool, err error) {
	largest := map[string]int{}
	var errs []error
	for ki, k := range b.cfg.densityK {
		for _, rt := range b.order(ki) {
			r, err := b.densityRestart(ctx, rt, k, largest)
			restarted = restarted || r
			if err != nil {
				// an error of one runtime/K (e.g. a wrong status after
				// the restart) does not stop the other measurements
				errs = append(errs, err)
				if !b.d.Running() {
					return restarted, errors.Join(errs...)
				}
			}
		}
	}
	var ks []string
	for _, rt := range b.rts {
		if largest[rt.Key] > 0 {
			ks = append(ks, fmt.Sprintf("%s K=%d", rt.Key, largest[rt.Key]))
		}
	}
	if len(ks) > 0 {
		b.rep.Notef("JSON density keys without _kN (pss_kb_per_container, ...) are from the largest K measured: %s", strings.Join(ks, ", "))
	}
	return restarted, errors.Join(errs...)
}

func (b *bench) densityRestart(ctx context.Context, rt rtInfo, k int, largest map[string]int) (restarted bool, err error) {
	want := k
	if rt.Key == keyRuncV2 && b.cfg.runcMaxK > 0 && k > b.cfg.runcMaxK {
		k = b.cfg.runcMaxK
	}
	fmt.Printf("density: %s, K=%d sleeping containers\n", rt.Name, k)
	time.Sleep(time.Second) // let the previous clean-up settle
	dpid := b.d.Pid()
	before, err := takeMemSnapshot(dpid, b.reaperPids(), b.d.Dir, b.d.PinDir)
	if err != nil {
		return false, err
	}
	var (
		mu       sync.Mutex
		sleepers []*sleeper
	)
	start := time.Now()
	budget := start.Add(b.cfg.createCap)
	errs := runPool(k, b.cfg.pool, func() bool { return time.Now().After(budget) }, func(int) error {
		s, err := b.startSleeper(ctx, rt)
		if err != nil {
			return err
		}
		mu.Lock()
		sleepers = append(sleepers, s)
		mu.Unlock()
		return nil
	})
	createTime := time.Since(start)
	if len(errs) > 0 {
		return false, fmt.Errorf("%s K=%d: %d of %d creations failed: %w", rt.Name, k, len(errs), k, errors.Join(errs[:min(len(errs), 5)]...))
	}
	got := len(sleepers)
	if got < want {
		b.rep.AddNote(fmt.Sprintf("pss_kb_per_container_k%d", want), fmt.Sprintf("%s: only %d of %d containers created within %v; per-container figures from K=%d", rt.Name, got, want, b.cfg.createCap, got))
	}
	b.logf("%s: %d containers created in %v", rt.Name, got, createTime.Round(time.Millisecond))
	b.rep.Set(fmt.Sprintf("density_create_ctr_per_s_k%d", want), "ctr/s", rt.Key, float64(got)/createTime.Seconds())
	time.Sleep(2 * time.Second) // settle (runc.v2 shims finish starting up)
	after, err := takeMemSnapshot(dpid, b.reaperPids(), b.d.Dir, b.d.PinDir)
	if err != nil {
		return false, err
	}
	if got > 0 {
		fk := float64(got)
		rows := []struct {
			key, unit string
			v         float64
		}{
			{"pss_kb_per_container", "kB", float64((after.ExtraPssKB-before.ExtraPssKB)+(after.DaemonPssKB-before.DaemonPssKB)) / fk},
			{"rss_kb_per_container", "kB", float64((after.ExtraRssKB-before.ExtraRssKB)+(after.DaemonRssKB-before.DaemonRssKB)) / fk},
			{"shim_pss_kb_per_container", "kB", float64(after.ExtraPssKB-before.ExtraPssKB) / fk},
			{"shim_rss_kb_per_container", "kB", float64(after.ExtraRssKB-before.ExtraRssKB) / fk},
			{"extra_procs_per_container", "procs", float64(after.ExtraProcs-before.ExtraProcs) / fk},
			{"extra_threads_per_container", "threads", float64(after.ExtraThreads-before.ExtraThreads) / fk},
			{"containerd_growth_kb_per_container", "kB RSS", float64(after.DaemonRssKB-before.DaemonRssKB) / fk},
			{"containerd_pss_growth_kb_per_container", "kB PSS", float64(after.DaemonPssKB-before.DaemonPssKB) / fk},
			{"containerd_threads_per_container", "threads", float64(after.DaemonThreads-before.DaemonThreads) / fk},
		}
		if rt.Key == keyEmbed {
			rows = append(rows, struct {
				key, unit string
				v         float64
			}{"bpf_map_kb_per_container", "kB", float64(after.BPFMapBytes-before.BPFMapBytes) / 1024 / fk})
		}
		set := b.cfg.scenarios["density"]
		if set && got >= largest[rt.Key] {
			largest[rt.Key] = got
		}
		for _, r := range rows {
			if !set {
				break
			}
			b.rep.Set(fmt.Sprintf("%s_k%d", r.key, want), r.unit, rt.Key, r.v)
			if got >= largest[rt.Key] {
				b.rep.Set(r.key, r.unit, rt.Key, r.v)
				b.rep.Hide(r.key)
			}
		}
		if set {
			// a fixed cost of the daemon, shared by both runtimes
			b.rep.Set("daemon_reaper_pss_kb", "kB", rt.Key, float64(after.ReaperPssKB))
			b.rep.Set("daemon_reaper_rss_kb", "kB", rt.Key, float64(after.ReaperRssKB))
		}
		if rt.Key == keyEmbed && set {
			b.rep.AddNote("bpf_map_kb_per_container", fmt.Sprintf("memlock (kernel map_mem_usage) of the %d maps the daemon holds/pins, delta over K; total %d kB after", after.BPFMaps, after.BPFMapBytes/1024))
		}
	}
	var rerr error
	if b.cfg.scenarios["restart"] && got > 0 {
		restarted = true
		rerr = b.restart(ctx, rt, sleepers, want)
	}
	start = time.Now()
	if err := b.removeAll(ctx); err != nil {
		return restarted, errors.Join(rerr, err)
	}
	b.logf("%s: %d containers removed in %v", rt.Name, got, time.Since(start).Round(time.Millisecond))
	return restarted, rerr
}

// restart: SIGKILL the daemon; while it is down SIGKILL 10% of the
// containers' processes; start it again; time until Tasks.List returns all
// K; then check the killed ones report 137 (List, Wait) and the rest run.
func (b *bench) restart(ctx context.Context, rt rtInfo, sleepers []*sleeper, wantK int) error {
	k := len(sleepers)
	victims := map[string]bool{}
	for i := 0; i < k; i += 10 {
		victims[sleepers[i].ID] = true
	}
	fmt.Printf("restart: %s, K=%d, %d killed while the daemon is down\n", rt.Name, k, len(victims))
	ids := map[string]bool{}
	for _, s := range sleepers {
		ids[s.ID] = true
	}
	if err := b.d.Kill(); err != nil {
		return fmt.Errorf("kill daemon: %w", err)
	}
	for _, s := range sleepers {
		if victims[s.ID] {
			if err := syscall.Kill(int(s.Pid), syscall.SIGKILL); err != nil {
				return fmt.Errorf("kill %s pid %d: %w", s.ID, s.Pid, err)
			}
		}
	}
	// the victims are dead (zombie or gone) before the daemon comes back
	for _, s := range sleepers {
		if victims[s.ID] {
			for i := 0; i < 500; i++ {
				f, _, err := procStat(int(s.Pid))
				if err != nil || f[0] == "Z" || f[0] == "X" {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	t0 := time.Now()
	if err := b.d.Restart(syscall.SIGKILL); err != nil {
		return fmt.Errorf("restart daemon: %w", err)
	}
	serving := time.Since(t0)
	if err := b.cpu.adopt(b.d.Pid()); err != nil {
		b.logf("cpu cgroup: %v", err)
	}
	client := b.d.Client()
	// the image handle is bound to the old (closed) client
	img, err := client.GetImage(ctx, harness.TestImageRef)
	if err != nil {
		return fmt.Errorf("image after restart: %w", err)
	}
	b.img = img

	// Poll Tasks.List. "Ready" = every untouched task is listed (RUNNING or
	// not: status is checked below). Killed tasks may be listed (STOPPED,
	// status recovered) or gone: containerd 1.7 deletes a runc.v2 task
	// whose shim has no process left at reload (containerd#6860 clean-up),
	// so its exit is lost to clients. Then give the killed ones up to 3s to
	// show up as STOPPED.
	type view struct {
		listed, untouchedListed, runningOK, killedOK int
		wrong                                        []string
	}
	look := func(resp *tasksapi.ListTasksResponse) (v view) {
		for _, p := range resp.Tasks {
			if !ids[p.ID] {
				continue
			}
			v.listed++
			if victims[p.ID] {
				switch {
				case p.Status == tasktypes.Status_STOPPED && p.ExitStatus == 137:
					v.killedOK++
				case p.Status == tasktypes.Status_STOPPED:
					v.wrong = append(v.wrong, fmt.Sprintf("%s (killed while the daemon was down): Tasks.List status STOPPED/%d, want 137", p.ID, p.ExitStatus))
				default:
					v.wrong = append(v.wrong, fmt.Sprintf("%s (killed while the daemon was down): Tasks.List status %v", p.ID, p.Status))
				}
			} else {
				v.untouchedListed++
				if p.Status == tasktypes.Status_RUNNING {
					v.runningOK++
				} else {
					v.wrong = append(v.wrong, fmt.Sprintf("%s (untouched): Tasks.List status %v/%d, want RUNNING", p.ID, p.Status, p.ExitStatus))
				}
			}
		}
		return v
	}
	var (
		ready, allListed, settled time.Duration
		last                      view
	)
	deadline := time.Now().Add(10 * time.Minute)
	for {
		resp, err := client.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
		if err == nil {
			last = look(resp)
			now := time.Since(t0)
			if ready == 0 && last.untouchedListed == k-len(victims) {
				ready = now
			}
			if allListed == 0 && last.listed == k {
				allListed = now
			}
			if last.listed == k && last.killedOK == len(victims) && last.runningOK == k-len(victims) {
				settled = now
				break
			}
		}
		if time.Now().After(deadline) || (ready != 0 && time.Since(t0) > ready+3*time.Second) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ready == 0 {
		return fmt.Errorf("%s: Tasks.List did not list the %d untouched tasks within 10 min of the restart", rt.Name, k-len(victims))
	}
	sfx := fmt.Sprintf("_%d", wantK)
	b.rep.Set("restart"+sfx+"_ms", "ms", rt.Key, ms(ready))
	b.rep.Set("restart"+sfx+"_serving_ms", "ms", rt.Key, ms(serving))
	if allListed != 0 {
		b.rep.Set("restart"+sfx+"_all_listed_ms", "ms", rt.Key, ms(allListed))
	}
	if settled != 0 {
		b.rep.Set("restart"+sfx+"_settled_ms", "ms", rt.Key, ms(settled))
	}
	// Wait on every killed task that is still there: must return 137 at once.
	bad := append([]string(nil), last.wrong...)
	killedOK, lost := 0, 0
	// all Waits at once, one 10 s deadline (K=1000 has 100 victims)
	var wmu sync.Mutex
	var wwg sync.WaitGroup
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	for id := range victims {
		wwg.Add(1)
		go func(id string) {
			defer wwg.Done()
			msg, ok, gone := waitKilled(wctx, client, id)
			wmu.Lock()
			defer wmu.Unlock()
			switch {
			case gone:
				lost++
			case ok:
				killedOK++
			default:
				bad = append(bad, msg)
			}
		}(id)
	}
	wwg.Wait()
	wcancel()
	recovered := min(killedOK, last.killedOK)
	add := func(key, unit string, v float64) {
		if p := pick(b.rep.metrics[key], rt.Key); p != nil {
			v += *p
		}
		b.rep.Set(key, unit, rt.Key, v)
	}
	b.rep.Set("restart"+sfx+"_exits_recovered", "of "+strconv.Itoa(len(victims)), rt.Key, float64(recovered))
	b.rep.Set("restart"+sfx+"_running_ok", "of "+strconv.Itoa(k-len(victims)), rt.Key, float64(last.runningOK))
	add("restart_exits_recovered", "count", float64(recovered))
	add("restart_exits_lost", "count", float64(lost))
	add("restart_exits_killed", "count", float64(len(victims)))
	if k < wantK {
		b.rep.AddNote("restart"+sfx+"_ms", fmt.Sprintf("%s measured with K=%d", rt.Name, k))
	}
	if lost > 0 {
		b.logf("%s restart K=%d: %d of %d tasks killed while the daemon was down are gone after the restart (exit lost to clients)", rt.Name, k, lost, len(victims))
		b.rep.AddNote("restart_exits_lost", fmt.Sprintf("%s K=%d: %d killed tasks no longer exist after the restart", rt.Name, k, lost))
	}
	if last.untouchedListed != last.runningOK {
		bad = append(bad, fmt.Sprintf("%d of %d untouched tasks not RUNNING after restart", k-len(victims)-last.runningOK, k-len(victims)))
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("%s restart K=%d: wrong status: %s", rt.Name, k, strings.Join(bad[:min(len(bad), 10)], "; "))
	}
	return nil
}

// waitKilled checks that Wait on a task killed while the daemon was down
// returns 137; gone: the task no longer exists.
func waitKilled(ctx context.Context, client *containerd.Client, id string) (msg string, ok, gone bool) {
	c, err := client.LoadContainer(ctx, id)
	if err != nil {
		return fmt.Sprintf("%s: load container: %v", id, err), false, false
	}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return "", false, true
	}
	if err != nil {
		return fmt.Sprintf("%s: task: %v", id, err), false, false
	}
	ch, err := task.Wait(ctx)
	if err != nil {
		return fmt.Sprintf("%s: wait: %v", id, err), false, false
	}
	var st containerd.ExitStatus
	select {
	case st = <-ch:
	case <-ctx.Done():
		return fmt.Sprintf("%s (killed while the daemon was down): Wait did not return within 10s", id), false, false
	}
	if code, _, err := st.Result(); err != nil || code != 137 {
		return fmt.Sprintf("%s (killed while the daemon was down): Wait status %d (%v), want 137", id, code, err), false, false
	}
	return "", true, false
}

func pick(m *Metric, key string) *float64 {
	if m == nil {
		return nil
	}
	if key == keyEmbed {
		return m.Embed
	}
	return m.RuncV2
}

// ---- output helpers ---------------------------------------------------

func waitNoLeaks(d *harness.Daemon, before harness.Snapshot, restarted bool) []string {
	deadline := time.Now().Add(15 * time.Second)
	for {
		var leaks []string
		for _, l := range harness.Leaks(before, d.Snapshot()) {
			if restarted && strings.HasPrefix(l, "daemon fds:") {
				continue // a new daemon instance: fds not comparable
			}
			leaks = append(leaks, l)
		}
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func readCore(path string) (map[string]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m["source"] = path
	return m, nil
}

// addCoreRows shows the C core's figure (BPF+pidfd delivery against a real
// parent's waitpid, bench_core) in the table: embed = core, runc_v2 column
// = waitpid (the floor any parent-based runtime has).
func addCoreRows(r *Report, core map[string]any) {
	num := func(sec, k string) float64 {
		if s, ok := core[sec].(map[string]any); ok {
			if v, ok := s[k].(float64); ok {
				return v
			}
		}
		return math.NaN()
	}
	for _, k := range []string{"p50_us", "p99_us"} {
		key := "core_exit_delivery_" + k
		r.Set(key, "µs", keyEmbed, num("embed", k))
		r.Set(key, "µs", keyRuncV2, num("waitpid", k))
	}
	r.Notef("core_exit_delivery_*: C core bench (make bench-core, %v exits): embed column = BPF+pidfd delivery, runc.v2 column = a real parent's waitpid wake-up in the same run (the floor)", core["exits"])
}

func machineInfo(d *harness.Daemon) map[string]any {
	m := map[string]any{"cpus": goruntime.NumCPU(), "go": goruntime.Version()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m["kernel"] = unix.ByteSliceToString(u.Release[:])
		m["arch"] = unix.ByteSliceToString(u.Machine[:])
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				m["mem_mib"] = kb / 1024
			}
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m["cpu_model"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m["loadavg_at_end"] = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		m["pid_max"] = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("runc", "--version").Output(); err == nil {
		m["runc"] = strings.SplitN(string(out), "\n", 2)[0]
	}
	if out, err := exec.Command(d.Binary, "--version").Output(); err == nil {
		m["containerd"] = strings.TrimSpace(string(out))
	}
	return m
}

// reaperPids are the daemon's front and its reaper(s): part of its cost.
func (b *bench) reaperPids() []int {
	pids := b.d.Reapers()
	if f := b.d.FrontPid(); f != 0 && f != b.d.Pid() {
		pids = append(pids, f)
	}
	return pids
}
