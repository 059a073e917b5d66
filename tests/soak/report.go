package soak

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// rule says when a metric's growth fails the soak; see README.md.
type rule struct {
	// Per10k: the fitted growth per 10 000 lifecycles must exceed it...
	Per10k float64 `json:"max_per_10k"`
	// Floor: ...and the growth over the run (fitted and last minus
	// first) must exceed this absolute amount: a count that moved by a
	// few over a short run is noise, not a leak.
	Floor float64 `json:"floor"`
	// Sustained: ...and (memory only) the growth must go on: the fit over
	// the second half of the measured samples must exceed Per10k too,
	// and every sample of the last third lie above every sample of the
	// first third. Growth that levels off (heap, caches) is not a leak.
	Sustained bool `json:"sustained"`
}

// rules of the metrics that can fail the soak; the others are reported.
// Counts are taken with the load paused and the daemon settled, so a leak
// of one item per lifecycle or exec is +10 000 per 10 000 lifecycles;
// the bounds are far below that and far above the jitter seen.
var rules = map[string]rule{
	"goroutines":        {Per10k: 10, Floor: 5},
	"fds":               {Per10k: 10, Floor: 3},
	"mounts":            {Per10k: 1, Floor: 0},
	"bpf_registrations": {Per10k: 0, Floor: 0},
	"bpf_exits":         {Per10k: 0, Floor: 0},
	"zombies":           {Per10k: 0, Floor: 0},
	"heap":              {Per10k: 4096, Floor: 8192, Sustained: true},   // kB
	"rss":               {Per10k: 16384, Floor: 32768, Sustained: true}, // kB
}

// Growth is one metric's trend over the measured samples (after warm-up).
type Growth struct {
	Metric    string  `json:"metric"`
	Unit      string  `json:"unit,omitempty"`
	First     int64   `json:"first"`       // first measured sample
	Last      int64   `json:"last"`        // last sample
	Min       int64   `json:"min"`         // over measured samples
	Max       int64   `json:"max"`         // over measured samples
	FitPer10k float64 `json:"fit_per_10k"` // least-squares slope × 10 000
	LastFirst float64 `json:"last_minus_first_per_10k"`
	Rule      *rule   `json:"rule,omitempty"`
	Fail      string  `json:"fail,omitempty"` // why it failed, "" if not
}

// fit returns the least-squares slope of y over x (0 if x does not vary).
func fit(x, y []float64) float64 {
	n := float64(len(x))
	if len(x) < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range x {
		sx += x[i]
		sy += y[i]
		sxx += x[i] * x[i]
		sxy += x[i] * y[i]
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}

// growth computes every metric's trend over samples (the measured ones:
// warm-up already dropped) and applies the rules.
func growth(samples []Sample) []Growth {
	var out []Growth
	if len(samples) == 0 {
		return out
	}
	x := make([]float64, len(samples))
	for i, s := range samples {
		x[i] = float64(s.Lifecycles)
	}
	span := x[len(x)-1] - x[0]
	for _, m := range metrics {
		y := make([]float64, len(samples))
		g := Growth{Metric: m.Name, Unit: m.Unit, First: m.Get(samples[0]), Last: m.Get(samples[len(samples)-1])}
		g.Min, g.Max = g.First, g.First
		for i, s := range samples {
			v := m.Get(s)
			y[i] = float64(v)
			g.Min, g.Max = min(g.Min, v), max(g.Max, v)
		}
		slope := fit(x, y)
		g.FitPer10k = slope * 1e4
		if span > 0 {
			g.LastFirst = float64(g.Last-g.First) / span * 1e4
		}
		if r, ok := rules[m.Name]; ok {
			g.Rule = &r
			g.Fail = judge(r, x, y, slope*span, g)
		}
		out = append(out, g)
	}
	return out
}

// judge applies r to one metric: fitted is the fitted growth over the run.
func judge(r rule, x, y []float64, fitted float64, g Growth) string {
	delta := float64(g.Last - g.First)
	if g.FitPer10k <= r.Per10k || fitted <= r.Floor || delta <= r.Floor {
		return ""
	}
	if r.Sustained {
		if len(y) < 6 {
			return "" // too few samples to tell growth from a plateau
		}
		third := len(y) / 3
		firstMax, lastMin := y[0], y[len(y)-1]
		for _, v := range y[:third] {
			firstMax = max(firstMax, v)
		}
		for _, v := range y[len(y)-third:] {
			lastMin = min(lastMin, v)
		}
		half := len(y) / 2
		if lastMin <= firstMax || fit(x[half:], y[half:])*1e4 <= r.Per10k {
			return ""
		}
	}
	return fmt.Sprintf("%s grew %+.0f over the run (%.1f per 10 000 lifecycles by fit; bound %.0f per 10 000 and %.0f absolute)",
		g.Metric, delta, g.FitPer10k, r.Per10k, r.Floor)
}

// Summary is _output/soak/summary.json.
type Summary struct {
	Daemon        string   `json:"daemon"`
	Background    int      `json:"background"`
	Duration      string   `json:"duration"`
	Sample        string   `json:"sample"`
	Warmup        string   `json:"warmup"`
	Rate          float64  `json:"lifecycle_rate_per_s"`
	ExecRate      float64  `json:"exec_rate_per_s"`
	Lifecycles    int64    `json:"lifecycles"`
	Execs         int64    `json:"execs"`
	Dropped       [2]int64 `json:"dropped_ticks"` // lifecycle, exec ticks found all workers busy
	Errors        []string `json:"errors"`
	LoadAvg       []string `json:"loadavg"` // /proc/loadavg at each sample
	Samples       []Sample `json:"samples"`
	MeasuredFrom  int      `json:"measured_from"` // index of the first sample after warm-up
	Growth        []Growth `json:"growth"`
	BackgroundUp  float64  `json:"background_start_s"`
	BackgroundOff float64  `json:"background_remove_s"`
	After         *Sample  `json:"after_removal,omitempty"` // all containers removed
	Failures      []string `json:"failures"`
	Pass          bool     `json:"pass"`
	WallSeconds   float64  `json:"wall_s"`
	Kernel        string   `json:"kernel"`
	Started       string   `json:"started"`
}

// writeTable prints the samples and the growth.
func writeTable(w io.Writer, s *Summary) {
	fmt.Fprintf(w, "%7s %8s %8s %9s %9s %6s %6s %5s %6s %5s %5s %10s %4s  %s\n",
		"t(s)", "lifecyc", "execs", "rss(kB)", "heap(kB)", "gorout", "fds", "thr", "mounts", "regs", "exits", "memlock(B)", "zomb", "load")
	for i, x := range s.Samples {
		mark := " "
		if i < s.MeasuredFrom {
			mark = "w" // warm-up, not in the fit
		}
		load := ""
		if i < len(s.LoadAvg) {
			load = s.LoadAvg[i]
		}
		fmt.Fprintf(w, "%6.0f%s %8d %8d %9d %9d %6d %6d %5d %6d %5d %5d %10d %4d  %s\n",
			x.At, mark, x.Lifecycles, x.Execs, x.RSSKB, x.HeapKB, x.Goroutines, x.FDs, x.Threads, x.Mounts,
			x.BPFRegs, x.BPFExits, x.BPFMemlock, x.Zombies, load)
	}
	fmt.Fprintf(w, "\ngrowth per 10 000 lifecycles (samples %d..%d, %d lifecycles, %d execs measured):\n",
		s.MeasuredFrom, len(s.Samples)-1, measuredSpan(s, func(x Sample) int64 { return x.Lifecycles }),
		measuredSpan(s, func(x Sample) int64 { return x.Execs }))
	fmt.Fprintf(w, "%-18s %12s %12s %12s %14s %14s  %s\n", "metric", "first", "last", "max", "fit/10k", "last-first/10k", "verdict")
	for _, g := range s.Growth {
		verdict := "reported"
		if g.Rule != nil {
			verdict = "ok"
			if g.Fail != "" {
				verdict = "FAIL"
			}
		}
		name := g.Metric
		if g.Unit != "" {
			name += " (" + g.Unit + ")"
		}
		fmt.Fprintf(w, "%-18s %12d %12d %12d %14.1f %14.1f  %s\n", name, g.First, g.Last, g.Max, g.FitPer10k, g.LastFirst, verdict)
	}
}

func measuredSpan(s *Summary, get func(Sample) int64) int64 {
	if len(s.Samples) == 0 || s.MeasuredFrom >= len(s.Samples) {
		return 0
	}
	return get(s.Samples[len(s.Samples)-1]) - get(s.Samples[s.MeasuredFrom])
}

// writeCSV writes one row per sample.
func writeCSV(path string, s *Summary) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	head := []string{"at_s", "warmup", "lifecycles", "execs"}
	for _, m := range metrics {
		head = append(head, m.Name)
	}
	head = append(head, "bpf_maps", "loadavg1")
	_ = w.Write(head)
	for i, x := range s.Samples {
		row := []string{strconv.FormatFloat(x.At, 'f', 1, 64), strconv.FormatBool(i < s.MeasuredFrom),
			strconv.FormatInt(x.Lifecycles, 10), strconv.FormatInt(x.Execs, 10)}
		for _, m := range metrics {
			row = append(row, strconv.FormatInt(m.Get(x), 10))
		}
		load := ""
		if i < len(s.LoadAvg) {
			load, _, _ = strings.Cut(s.LoadAvg[i], " ")
		}
		row = append(row, strconv.FormatInt(x.BPFMaps, 10), load)
		_ = w.Write(row)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeJSON(path string, s *Summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
