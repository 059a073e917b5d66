// Command compare reads critest's ginkgo JSON reports, one per runtime
// handler, prints each handler's pass/fail/skip counts and run time, and
// exits 1 if a spec passed on the reference handler (the first) but not on
// another one, or if the reference passed nothing (a broken set-up, not a
// comparison).
//
// One exception: a spec that critest itself skips with a "spec discrepancy:"
// reason is one where critest found containerd (not the runtime) short of
// the CRI or NRI spec, e.g. containerd losing containers created during a
// late NRI plugin's Synchronize. Whether that race shows depends on timing,
// so such a spec passes on one handler and is skipped on the other by
// chance; it is listed as a note with critest's reason, not judged.
//
//	compare runc=_output/cri/runc.json embed=_output/cri/embed.json
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// The parts of ginkgo v2's types.Report and types.SpecReport used here.
type report struct {
	SuiteDescription string
	RunTime          time.Duration
	SpecReports      []struct {
		ContainerHierarchyTexts []string
		LeafNodeText            string
		LeafNodeType            string
		State                   string
		RunTime                 time.Duration
		Failure                 struct{ Message string }
	}
}

type result struct {
	handler string
	states  map[string]string // spec name -> state
	failure map[string]string // spec name -> the failure (or skip reason), on one line
	counts  map[string]int
	runTime time.Duration
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: compare REF_HANDLER=REPORT.json [HANDLER=REPORT.json...]")
		os.Exit(2)
	}
	var results []result
	for _, a := range os.Args[1:] {
		h, p, ok := strings.Cut(a, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "compare: %q: want HANDLER=REPORT.json\n", a)
			os.Exit(2)
		}
		r, err := load(h, p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "compare: %v\n", err)
			os.Exit(1)
		}
		results = append(results, r)
	}
	for _, r := range results {
		fmt.Printf("critest %-6s passed %3d  failed %3d  skipped %3d  (%d specs) in %.1fs\n", r.handler+":",
			r.counts["passed"], r.counts["failed"], r.counts["skipped"], len(r.states), r.runTime.Seconds())
	}
	ref := results[0]
	bad := ref.counts["passed"] == 0
	if bad {
		fmt.Printf("FAIL: no spec passed on %s: the set-up is broken\n", ref.handler)
	}
	for _, r := range results[1:] {
		regressions, discrepancies := compare(ref, r)
		for _, name := range discrepancies {
			fmt.Printf("note: passes on %s, skipped by critest on %s as a containerd discrepancy: %s\n      %s\n",
				ref.handler, r.handler, name, r.failure[name])
		}
		if len(regressions) > 0 {
			bad = true
			fmt.Printf("FAIL: %d spec(s) pass on %s but not on %s:\n", len(regressions), ref.handler, r.handler)
			for _, name := range regressions {
				st := r.states[name]
				if st == "" {
					st = "not run"
				}
				fmt.Printf("  %s: %s\n", name, st)
				if f := r.failure[name]; f != "" {
					fmt.Printf("      %s\n", f)
				}
			}
		}
	}
	// Failures on the reference are the set-up's or the runtime's, not the
	// handler's: listed, not judged.
	for name, st := range ref.states {
		if st != "passed" && st != "skipped" && st != "pending" {
			fmt.Printf("note: fails on %s too (%s): %s\n", ref.handler, st, name)
		}
	}
	if bad {
		os.Exit(1)
	}
	fmt.Println("critest: every spec that passes on " + ref.handler + " passes on the others")
}

// compare returns the specs that pass on ref but not on r (regressions), and
// apart from them those that r skipped with critest's own "spec
// discrepancy:" reason (see the package comment), each sorted.
func compare(ref, r result) (regressions, discrepancies []string) {
	for name, st := range ref.states {
		if st != "passed" || r.states[name] == "passed" {
			continue
		}
		if r.states[name] == "skipped" && strings.HasPrefix(r.failure[name], discrepancyPrefix) {
			discrepancies = append(discrepancies, name)
		} else {
			regressions = append(regressions, name)
		}
	}
	sort.Strings(regressions)
	sort.Strings(discrepancies)
	return regressions, discrepancies
}

// discrepancyPrefix starts the reason of critest's skips for specs that
// containerd itself does not meet (sigs.k8s.io/cri-tools pkg/validate).
const discrepancyPrefix = "spec discrepancy:"

func load(handler, path string) (result, error) {
	r := result{handler: handler, states: map[string]string{}, failure: map[string]string{}, counts: map[string]int{}}
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	var reports []report
	if err := json.Unmarshal(b, &reports); err != nil {
		return r, fmt.Errorf("%s: %v", path, err)
	}
	for _, rep := range reports {
		r.runTime += rep.RunTime
		for _, s := range rep.SpecReports {
			if s.LeafNodeType != "It" {
				continue // suite set-up and reporting nodes
			}
			name := strings.Join(append(append([]string{}, s.ContainerHierarchyTexts...), s.LeafNodeText), " ")
			r.states[name] = s.State
			r.counts[s.State]++
			if m := strings.Join(strings.Fields(s.Failure.Message), " "); m != "" {
				if len(m) > 160 {
					m = m[:160] + "..."
				}
				r.failure[name] = m
			}
		}
	}
	if len(r.states) == 0 {
		return r, fmt.Errorf("%s: no specs in the report", path)
	}
	return r, nil
}
