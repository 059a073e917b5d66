//go:build linux

// Package soak is issue 10's soak: sustained lifecycles and execs on the
// embed runtime at a fixed rate, with long-running containers in the
// background, sampling the daemon's RSS, live heap, goroutines, fds, mounts
// and BPF map entries and memory; their growth per 10 000 lifecycles must be
// ~0. It is a Go test so it can use the daemon harness; it runs only with
// EMBEDSHIM_SOAK=full or EMBEDSHIM_SOAK=smoke (`make soak`, `make
// soak-smoke`) and skips otherwise. See README.md.
package soak

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// config of one soak; knobs from the environment (see README.md).
type config struct {
	mode        string
	duration    time.Duration // of the load
	background  int           // long-running containers
	rate        float64       // lifecycles started per second
	execRate    float64       // execs started per second
	sample      time.Duration // sampling interval
	warmup      time.Duration // samples before this are not in the fit
	maxInFlight int           // per driver
	pool        int           // parallel background starts/removals
	outDir      string
}

func envStr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func loadConfig(t *testing.T, mode, repo string) config {
	c := config{mode: mode}
	defs := map[string]string{
		"DURATION": "1h", "BACKGROUND": "1000", "RATE": "3", "SAMPLE": "1m",
		"INFLIGHT": "8", "POOL": "8", "OUT": filepath.Join(repo, "_output", "soak"),
	}
	if mode == "smoke" {
		defs["DURATION"], defs["BACKGROUND"], defs["SAMPLE"] = "70s", "20", "10s"
		defs["OUT"] = filepath.Join(repo, "_output", "soak", "smoke")
	}
	get := func(k string) string { return envStr("EMBEDSHIM_SOAK_"+k, defs[k]) }
	dur := func(k string) time.Duration {
		d, err := time.ParseDuration(get(k))
		if err != nil || d <= 0 {
			t.Fatalf("EMBEDSHIM_SOAK_%s=%q: want a positive Go duration (like 90s, 10m, 1h)", k, get(k))
		}
		return d
	}
	num := func(k string) float64 {
		f, err := strconv.ParseFloat(get(k), 64)
		if err != nil || f < 0 {
			t.Fatalf("EMBEDSHIM_SOAK_%s=%q: want a number >= 0", k, get(k))
		}
		return f
	}
	c.duration, c.sample = dur("DURATION"), dur("SAMPLE")
	c.background = int(num("BACKGROUND"))
	c.rate = num("RATE")
	defs["EXEC_RATE"] = get("RATE")
	c.execRate = num("EXEC_RATE")
	c.maxInFlight, c.pool = max(1, int(num("INFLIGHT"))), max(1, int(num("POOL")))
	// Warm-up: a tenth of the run, at least one sample interval.
	defs["WARMUP"] = max(c.sample, c.duration/10).String()
	c.warmup = dur("WARMUP")
	c.outDir = get("OUT")
	if c.background < 1 && c.execRate > 0 {
		t.Fatalf("EMBEDSHIM_SOAK_BACKGROUND=0: execs need a background container (or EMBEDSHIM_SOAK_EXEC_RATE=0)")
	}
	return c
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func TestSoak(t *testing.T) {
	mode := os.Getenv("EMBEDSHIM_SOAK")
	if mode != "full" && mode != "smoke" {
		t.Skip("set EMBEDSHIM_SOAK=full or EMBEDSHIM_SOAK=smoke (make soak / make soak-smoke)")
	}
	wall := time.Now()
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Skip(err)
	}
	cfg := loadConfig(t, mode, repo)
	if err := os.MkdirAll(cfg.outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Everything below runs under one deadline, so a hung call fails the
	// soak (and the clean-up still runs) instead of hanging it.
	budget := cfg.duration + time.Duration(cfg.background)*4*time.Second + 30*time.Minute

	// Log level warn: an hour of debug logging would fill the temp dir.
	d := harness.StartDaemon(t, harness.Options{Debug: true, LogLevel: "warn", StartTimeout: 5 * time.Minute})
	if !d.HasEmbed() {
		t.Fatalf("%s has no embed runtime", d.Binary)
	}
	ctx, cancel := context.WithTimeout(d.Context(), budget)
	defer cancel()
	img := d.ImportTestImage(ctx)
	l := &load{d: d, img: img}
	smp := newSampler(d)
	sum := &Summary{
		Daemon: d.Binary, Background: cfg.background, Duration: cfg.duration.String(),
		Sample: cfg.sample.String(), Warmup: cfg.warmup.String(), Rate: cfg.rate, ExecRate: cfg.execRate,
		Started: wall.UTC().Format(time.RFC3339), Kernel: kernel(),
	}
	fmt.Printf("soak (%s): %s, %d background, %v at %.3g lifecycles/s + %.3g execs/s, sample every %v (warm-up %v); load %s\n",
		mode, d.Binary, cfg.background, cfg.duration, cfg.rate, cfg.execRate, cfg.sample, cfg.warmup, loadavg())

	// Warm-up: the first running embed container creates lasting
	// daemon-wide state (the OOM epoll) that is no leak; the leak check's
	// baseline comes after it.
	warm, err := l.startBackground(ctx, "warmup")
	if err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	if err := l.removeBackground(ctx, warm); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	leakCheck := d.LeakCheck(t)

	// The background containers, removed before the harness clean-up
	// (t.Cleanup is LIFO) even if the soak fails: the harness's own
	// delete-all has a 30 s budget, too short for a thousand.
	removed := false
	t.Cleanup(func() {
		if !removed {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
			defer cancel()
			if err := l.removeAll(rctx, cfg.pool); err != nil {
				t.Logf("clean-up: %v", err)
			}
		}
	})
	t0 := time.Now()
	if err := l.startAll(ctx, cfg.background, cfg.pool); err != nil {
		t.Fatalf("start %d background containers: %v", cfg.background, err)
	}
	sum.BackgroundUp = time.Since(t0).Seconds()
	fmt.Printf("background: %d containers up in %.0f s; load %s\n", cfg.background, sum.BackgroundUp, loadavg())

	lc := newDriver("lifecycle", cfg.rate, cfg.maxInFlight, l.lifecycle, l.fail)
	ex := newDriver("exec", cfg.execRate, cfg.maxInFlight, l.exec, l.fail)
	start := time.Now()
	take := func() {
		if err := settle(d, smp); err != nil {
			t.Logf("settle: %v", err) // the sample shows what is left
		}
		s, err := smp.take()
		if err != nil {
			t.Fatalf("sample: %v", err)
		}
		s.At = time.Since(start).Seconds()
		s.Lifecycles, s.Execs = l.lifecycles.Load(), l.execs.Load()
		sum.Samples = append(sum.Samples, s)
		sum.LoadAvg = append(sum.LoadAvg, loadavg())
		fmt.Printf("sample %3d t=%5.0fs lifecycles=%d execs=%d rss=%dkB heap=%dkB goroutines=%d fds=%d mounts=%d bpf regs=%d exits=%d memlock=%dB zombies=%d load=%s\n",
			len(sum.Samples)-1, s.At, s.Lifecycles, s.Execs, s.RSSKB, s.HeapKB, s.Goroutines, s.FDs, s.Mounts,
			s.BPFRegs, s.BPFExits, s.BPFMemlock, s.Zombies, sum.LoadAvg[len(sum.LoadAvg)-1])
	}
	take() // sample 0: background up, no load yet

	stop, stopLoad := context.WithTimeout(ctx, cfg.duration)
	defer stopLoad()
	var drivers sync.WaitGroup
	drivers.Add(2)
	go lc.run(stop, ctx, &drivers)
	go ex.run(stop, ctx, &drivers)
	tick := time.NewTicker(cfg.sample)
	for running := true; running; {
		select {
		case <-stop.Done():
			running = false
		case <-tick.C:
			if time.Until(start.Add(cfg.duration)) < cfg.sample/2 {
				continue // the final sample follows shortly
			}
			lc.pause()
			ex.pause()
			take()
			lc.resume()
			ex.resume()
		}
	}
	tick.Stop()
	drivers.Wait()
	if ctx.Err() != nil {
		t.Fatalf("soak deadline (%v) passed", budget)
	}
	take()
	sum.Lifecycles, sum.Execs = l.lifecycles.Load(), l.execs.Load()
	_, sum.Dropped[0] = lc.counts()
	_, sum.Dropped[1] = ex.counts()

	// Remove the background and check everything returned to the
	// baseline taken before it (the harness's leak check: fds, mounts,
	// runtime dirs, processes, zombies, cgroups, BPF entries).
	t1 := time.Now()
	if err := l.removeAll(ctx, cfg.pool); err != nil {
		t.Errorf("remove background: %v", err)
	}
	removed = true
	sum.BackgroundOff = time.Since(t1).Seconds()
	if err := settle(d, smp); err != nil {
		t.Logf("settle: %v", err)
	}
	if s, err := smp.take(); err == nil {
		sum.After = &s
	}
	leakCheck()

	for i, s := range sum.Samples {
		if s.At >= cfg.warmup.Seconds() || i == len(sum.Samples)-1 {
			sum.MeasuredFrom = i
			break
		}
	}
	sum.Growth = growth(sum.Samples[sum.MeasuredFrom:])
	for _, e := range l.errors() {
		sum.Errors = append(sum.Errors, e.Error())
		sum.Failures = append(sum.Failures, e.Error())
	}
	for _, g := range sum.Growth {
		if g.Fail != "" {
			sum.Failures = append(sum.Failures, g.Fail)
		}
	}
	if sum.After != nil && (sum.After.BPFRegs != 0 || sum.After.BPFExits != 0) {
		sum.Failures = append(sum.Failures, fmt.Sprintf("BPF entries left after every container was removed: %d registrations, %d exit records",
			sum.After.BPFRegs, sum.After.BPFExits))
	}
	sum.Pass = len(sum.Failures) == 0 && !t.Failed()
	sum.WallSeconds = time.Since(wall).Seconds()

	fmt.Println()
	writeTable(os.Stdout, sum)
	active := time.Since(start).Seconds()
	fmt.Printf("\n%d lifecycles (%.2f/s), %d execs (%.2f/s) in %.0f s; ticks dropped with all %d workers busy: %d lifecycle, %d exec\n",
		sum.Lifecycles, float64(sum.Lifecycles)/active, sum.Execs, float64(sum.Execs)/active, active,
		cfg.maxInFlight, sum.Dropped[0], sum.Dropped[1])
	if sum.After != nil {
		fmt.Printf("after removing every container: goroutines=%d fds=%d mounts=%d bpf regs=%d exits=%d memlock=%dB rss=%dkB heap=%dkB\n",
			sum.After.Goroutines, sum.After.FDs, sum.After.Mounts, sum.After.BPFRegs, sum.After.BPFExits,
			sum.After.BPFMemlock, sum.After.RSSKB, sum.After.HeapKB)
	}
	if err := writeJSON(filepath.Join(cfg.outDir, "summary.json"), sum); err != nil {
		t.Errorf("write summary: %v", err)
	}
	if err := writeCSV(filepath.Join(cfg.outDir, "samples.csv"), sum); err != nil {
		t.Errorf("write samples: %v", err)
	}
	if err := writeSVG(filepath.Join(cfg.outDir, "soak.svg"), sum); err != nil {
		t.Errorf("write plot: %v", err)
	}
	fmt.Printf("wrote summary.json, samples.csv and soak.svg in %s (wall %.0f s)\n", cfg.outDir, sum.WallSeconds)
	for _, f := range sum.Failures {
		t.Errorf("soak: %s", f)
	}
}

// settle waits, with the load paused, for the daemon to finish what the
// last operations left in flight: no child (runc) of containerd, no
// zombie, and the goroutine count the same twice 500 ms apart. It gives
// up after 30 s (then the sample is taken anyway and says what it saw).
func settle(d *harness.Daemon, s *sampler) error {
	deadline := time.Now().Add(30 * time.Second)
	var last int64 = -1
	for {
		g, err := s.goroutines()
		if err != nil {
			return err
		}
		if g == last && daemonChildren(d.Pid()) == 0 && len(d.Zombies()) == 0 {
			return nil
		}
		last = g
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon not settled after 30 s (goroutines %d, children %d, zombies %d)",
				g, daemonChildren(d.Pid()), len(d.Zombies()))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}
