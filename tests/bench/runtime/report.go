//go:build linux

package runtime

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Runtime keys used in the report and JSON.
const (
	keyEmbed  = "embed"
	keyRuncV2 = "runc_v2"
)

// percentile of sorted-or-not samples (nearest rank on a sorted copy).
func percentile(samples []float64, p float64) float64 {
	if len(samples) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), samples...)
	sort.Float64s(s)
	idx := int(math.Ceil(p/100*float64(len(s)))) - 1
	if idx < 0 {
		idx = 0
	}
	if idx >= len(s) {
		idx = len(s) - 1
	}
	return s[idx]
}

// Metric is one row: a value per runtime (nil: not measured/available).
type Metric struct {
	Embed  *float64 `json:"embed"`
	RuncV2 *float64 `json:"runc_v2"`
	Ratio  *float64 `json:"ratio"`
	Unit   string   `json:"unit"`
	Note   string   `json:"note,omitempty"`
	hidden bool     // JSON only (an alias of a per-K row)
}

// Report collects metrics in insertion order.
type Report struct {
	mu      sync.Mutex
	order   []string
	metrics map[string]*Metric
	notes   []string
}

func newReport() *Report { return &Report{metrics: map[string]*Metric{}} }

func (r *Report) metric(key, unit string) *Metric {
	m, ok := r.metrics[key]
	if !ok {
		m = &Metric{Unit: unit}
		r.metrics[key] = m
		r.order = append(r.order, key)
	}
	return m
}

// Set records the value of key for runtime rt (keyEmbed or keyRuncV2).
// NaN values are left out.
func (r *Report) Set(key, unit, rt string, v float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.metric(key, unit)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	vv := v
	switch rt {
	case keyEmbed:
		m.Embed = &vv
	case keyRuncV2:
		m.RuncV2 = &vv
	}
	if m.Embed != nil && m.RuncV2 != nil && *m.RuncV2 != 0 {
		ratio := *m.Embed / *m.RuncV2
		m.Ratio = &ratio
	} else {
		m.Ratio = nil
	}
}

// Hide keeps key out of the table (it stays in the JSON).
func (r *Report) Hide(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metric(key, "").hidden = true
}

// Declare makes a row exist (so "n/a" shows) without a value.
func (r *Report) Declare(key, unit string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metric(key, unit)
}

// AddNote attaches a note to key (shown under the table and in JSON).
func (r *Report) AddNote(key, note string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.metric(key, "")
	if m.Note != "" {
		m.Note += "; "
	}
	m.Note += note
}

// Notef adds a general note.
func (r *Report) Notef(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func fmtVal(v *float64) string {
	if v == nil {
		return "n/a"
	}
	a := math.Abs(*v)
	switch {
	case a == 0:
		return "0"
	case a >= 1000:
		return fmt.Sprintf("%.0f", *v)
	case a >= 100:
		return fmt.Sprintf("%.1f", *v)
	case a >= 1:
		return fmt.Sprintf("%.2f", *v)
	default:
		return fmt.Sprintf("%.3f", *v)
	}
}

// WriteTable prints metric | embed | runc.v2 | ratio | unit.
func (r *Report) WriteTable(w io.Writer, header []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range header {
		fmt.Fprintln(w, h)
	}
	kw := len("metric")
	for _, k := range r.order {
		if len(k) > kw {
			kw = len(k)
		}
	}
	line := strings.Repeat("-", kw+2+12+2+12+2+8+2+10)
	fmt.Fprintf(w, "%-*s  %12s  %12s  %8s  %s\n", kw, "metric", "embed", "runc.v2", "ratio", "unit")
	fmt.Fprintln(w, line)
	var notes []string
	for _, k := range r.order {
		m := r.metrics[k]
		if m.hidden {
			continue
		}
		ratio := "n/a"
		if m.Ratio != nil {
			ratio = fmt.Sprintf("%.3f", *m.Ratio)
		}
		mark := ""
		if m.Note != "" {
			notes = append(notes, fmt.Sprintf("  [%d] %s: %s", len(notes)+1, k, m.Note))
			mark = fmt.Sprintf(" [%d]", len(notes))
		}
		fmt.Fprintf(w, "%-*s  %12s  %12s  %8s  %s%s\n", kw, k, fmtVal(m.Embed), fmtVal(m.RuncV2), ratio, m.Unit, mark)
	}
	fmt.Fprintln(w, line)
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	for _, n := range r.notes {
		fmt.Fprintln(w, "  * "+n)
	}
}

// WriteJSON writes every metric under its key at the top level, plus the
// extra sections (machine, core, params, ...).
func (r *Report) WriteJSON(path string, extra map[string]any) error {
	r.mu.Lock()
	out := map[string]any{}
	for k, v := range extra {
		out[k] = v
	}
	for k, m := range r.metrics {
		out[k] = m // metrics at the top level, beside machine/core/params
	}
	out["metric_order"] = append([]string(nil), r.order...)
	out["notes"] = append([]string(nil), r.notes...)
	r.mu.Unlock()
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
