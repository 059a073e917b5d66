package soak

import (
	"fmt"
	"os"
	"strings"
)

// writeSVG draws one small panel per metric: the samples against completed
// lifecycles (warm-up ones grey), and the fitted line over the measured
// ones. Hand-written SVG: no plotting dependency for a dozen lines.
func writeSVG(path string, s *Summary) error {
	const (
		cols, pw, ph   = 2, 420, 170 // panels per row, panel size
		ml, mr, mt, mb = 70, 15, 28, 30
	)
	rows := (len(metrics) + cols - 1) / cols
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n",
		cols*pw, rows*ph+30)
	fmt.Fprintf(&b, `<text x="8" y="18" font-size="13">soak: %s, %d background, %s; %d lifecycles, %d execs</text>`+"\n",
		xmlEscape(s.Daemon), s.Background, s.Duration, s.Lifecycles, s.Execs)
	for i, m := range metrics {
		ox, oy := (i%cols)*pw, 30+(i/cols)*ph
		w, h := float64(pw-ml-mr), float64(ph-mt-mb)
		var g *Growth
		for j := range s.Growth {
			if s.Growth[j].Metric == m.Name {
				g = &s.Growth[j]
			}
		}
		title := m.Name
		if m.Unit != "" {
			title += " (" + m.Unit + ")"
		}
		if g != nil {
			title += fmt.Sprintf(": %+.1f per 10k lifecycles", g.FitPer10k)
			if g.Fail != "" {
				title += " FAIL"
			}
		}
		fmt.Fprintf(&b, `<g transform="translate(%d,%d)"><text x="%d" y="16">%s</text>`+"\n", ox, oy, ml, xmlEscape(title))
		if len(s.Samples) == 0 {
			b.WriteString("</g>\n")
			continue
		}
		xmax := float64(max(1, s.Samples[len(s.Samples)-1].Lifecycles))
		ymin, ymax := m.Get(s.Samples[0]), m.Get(s.Samples[0])
		for _, x := range s.Samples {
			ymin, ymax = min(ymin, m.Get(x)), max(ymax, m.Get(x))
		}
		lo, hi := float64(ymin), float64(ymax)
		if hi-lo < 1 {
			lo, hi = lo-1, hi+1
		}
		pad := (hi - lo) * 0.1
		lo, hi = lo-pad, hi+pad
		px := func(v float64) float64 { return float64(ml) + v/xmax*w }
		py := func(v float64) float64 { return float64(mt) + (hi-v)/(hi-lo)*h }
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`+"\n", ml, mt, w, h)
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">%.0f</text><text x="%d" y="%.0f" text-anchor="end">%.0f</text>`+"\n",
			ml-4, py(hi-pad)+4, hi-pad, ml-4, py(lo+pad)+4, lo+pad)
		fmt.Fprintf(&b, `<text x="%d" y="%.0f">0</text><text x="%.0f" y="%.0f" text-anchor="end">%.0f lifecycles</text>`+"\n",
			ml, float64(mt)+h+14, float64(ml)+w, float64(mt)+h+14, xmax)
		var pts []string
		for j, x := range s.Samples {
			color := "#1f77b4"
			if j < s.MeasuredFrom {
				color = "#bbb"
			}
			cx, cy := px(float64(x.Lifecycles)), py(float64(m.Get(x)))
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", cx, cy))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`+"\n", cx, cy, color)
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#1f77b4" stroke-opacity="0.4"/>`+"\n", strings.Join(pts, " "))
		if g != nil && s.MeasuredFrom < len(s.Samples) {
			ms := s.Samples[s.MeasuredFrom:]
			var sx, sy float64
			for _, x := range ms {
				sx += float64(x.Lifecycles)
				sy += float64(m.Get(x))
			}
			n := float64(len(ms))
			slope := g.FitPer10k / 1e4
			x0, x1 := float64(ms[0].Lifecycles), float64(ms[len(ms)-1].Lifecycles)
			y := func(x float64) float64 { return sy/n + slope*(x-sx/n) }
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#d62728" stroke-dasharray="4 3"/>`+"\n",
				px(x0), py(y(x0)), px(x1), py(y(x1)))
		}
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
