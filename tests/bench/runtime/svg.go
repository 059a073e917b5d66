//go:build linux

package runtime

import (
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// cdfSeries is one line of the CDF plot.
type cdfSeries struct {
	Name    string
	Color   string
	Dash    string // SVG stroke-dasharray, "" for solid
	Samples []float64
}

// writeCDFSVG draws the empirical CDFs of the series (values in ms) on a
// log-scale x axis, by hand (no plotting module).
func writeCDFSVG(path, title, xlabel string, series []cdfSeries) error {
	const (
		W, H                     = 930, 520
		left, right, top, bottom = 70, 260, 50, 60
	)
	pw, ph := float64(W-left-right), float64(H-top-bottom)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, v := range s.Samples {
			if v > 0 {
				lo = math.Min(lo, v)
				hi = math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 0.01, 100
	}
	d0, d1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if d1 <= d0 {
		d1 = d0 + 1
	}
	xOf := func(v float64) float64 {
		if v <= 0 {
			v = lo
		}
		return float64(left) + (math.Log10(v)-d0)/(d1-d0)*pw
	}
	yOf := func(p float64) float64 { return float64(top) + (1-p)*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="25" font-size="15" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
	// grid + x ticks (decades and 2x, 5x)
	for d := d0; d <= d1; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, d)
			if math.Log10(v) > d1+1e-9 {
				continue
			}
			x := xOf(v)
			stroke, width := "#e4e4e4", 1.0
			if m == 1 {
				stroke = "#c8c8c8"
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="%.1f"/>`+"\n", x, top, x, H-bottom, stroke, width)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, H-bottom+16, fmtTick(v))
		}
	}
	for i := 0; i <= 10; i++ {
		p := float64(i) / 10
		y := yOf(p)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e4e4e4"/>`+"\n", left, y, W-right, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%.1f</text>`+"\n", left-6, y+4, p)
	}
	for _, p := range []float64{0.5, 0.95, 0.99} {
		y := yOf(p)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" fill="#888" font-size="10">p%g</text>`+"\n", W-right+4, y+3, p*100)
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#444"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", float64(left)+pw/2, H-bottom+40, html.EscapeString(xlabel))
	fmt.Fprintf(&b, `<text x="18" y="%.1f" text-anchor="middle" transform="rotate(-90 18 %.1f)">fraction of exits ≤ x</text>`+"\n", float64(top)+ph/2, float64(top)+ph/2)

	ly := top + 10
	for _, s := range series {
		if len(s.Samples) == 0 {
			continue
		}
		v := append([]float64(nil), s.Samples...)
		sort.Float64s(v)
		var pts []string
		n := float64(len(v))
		prevY := yOf(0)
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(v[0]), prevY))
		for i, x := range v {
			px := xOf(x)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, prevY))
			prevY = yOf(float64(i+1) / n)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, prevY))
		}
		dash := ""
		if s.Dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, s.Dash)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.8"%s points="%s"/>`+"\n", s.Color, dash, strings.Join(pts, " "))
		// legend
		lx := W - right + 40
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`+"\n", lx, ly, lx+26, ly, s.Color, dash)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", lx+32, ly+4, html.EscapeString(s.Name))
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#666" font-size="10">n=%d p50=%s p99=%s ms</text>`+"\n",
			lx+32, ly+17, len(v), fmtTick(percentile(v, 50)), fmtTick(percentile(v, 99)))
		ly += 38
	}
	b.WriteString("</svg>\n")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func fmtTick(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
	default:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.4f", v), "0"), ".")
	}
}
