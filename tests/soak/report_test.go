package soak

import (
	"math"
	"testing"
)

// The growth rules on made-up series: pure logic, no daemon.

func series(n int, f func(i int) Sample) []Sample {
	out := make([]Sample, n)
	for i := range out {
		out[i] = f(i)
		out[i].Lifecycles = int64(i) * 1000
	}
	return out
}

func find(t *testing.T, gs []Growth, name string) Growth {
	t.Helper()
	for _, g := range gs {
		if g.Metric == name {
			return g
		}
	}
	t.Fatalf("no metric %s", name)
	return Growth{}
}

func TestFitSlope(t *testing.T) {
	if s := fit([]float64{0, 1, 2, 3}, []float64{5, 7, 9, 11}); math.Abs(s-2) > 1e-9 {
		t.Fatalf("slope %v, want 2", s)
	}
	if s := fit([]float64{1, 1}, []float64{1, 5}); s != 0 {
		t.Fatalf("slope over constant x %v, want 0", s)
	}
}

func TestGrowthFlatPasses(t *testing.T) {
	gs := growth(series(10, func(i int) Sample {
		return Sample{FDs: 100 + int64(i%2), Goroutines: 300 + int64(i%3), RSSKB: 80000 + int64(i%4)*5000, BPFRegs: 20}
	}))
	for _, g := range gs {
		if g.Fail != "" {
			t.Errorf("%s: %s", g.Metric, g.Fail)
		}
	}
}

func TestGrowthLeakFails(t *testing.T) {
	// one fd per 100 lifecycles: 100 per 10 000, over 9 000 lifecycles +90
	gs := growth(series(10, func(i int) Sample { return Sample{FDs: 100 + int64(i)*10} }))
	if g := find(t, gs, "fds"); g.Fail == "" || math.Abs(g.FitPer10k-100) > 1e-6 {
		t.Errorf("fds leak not caught: %+v", g)
	}
	// a single BPF entry left behind fails
	gs = growth(series(10, func(i int) Sample { return Sample{BPFExits: int64(i / 9)} }))
	if g := find(t, gs, "bpf_exits"); g.Fail == "" {
		t.Errorf("bpf exit record leak not caught: %+v", g)
	}
}

func TestGrowthRSSPlateauPasses(t *testing.T) {
	// grows by 64 MiB, then levels off: not sustained
	gs := growth(series(12, func(i int) Sample { return Sample{RSSKB: 100000 + int64(min(i, 4))*16384} }))
	if g := find(t, gs, "rss"); g.Fail != "" {
		t.Errorf("plateau failed: %s", g.Fail)
	}
	// grows all along: fails
	gs = growth(series(12, func(i int) Sample { return Sample{RSSKB: 100000 + int64(i)*8192} }))
	if g := find(t, gs, "rss"); g.Fail == "" {
		t.Errorf("sustained growth not caught: %+v", g)
	}
}

func TestPlotWrites(t *testing.T) {
	s := &Summary{Daemon: "d<1>", Samples: series(8, func(i int) Sample { return Sample{FDs: 100 + int64(i%2)} }), MeasuredFrom: 2}
	s.Growth = growth(s.Samples[2:])
	p := t.TempDir() + "/soak.svg"
	if err := writeSVG(p, s); err != nil {
		t.Fatal(err)
	}
}
