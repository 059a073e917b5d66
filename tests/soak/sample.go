//go:build linux

package soak

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// Sample is one reading of the daemon, taken with the load paused and the
// daemon settled (see soak.quiesce): counts then hold only what lasts.
type Sample struct {
	At         float64 `json:"at_s"`       // seconds since the load started
	Lifecycles int64   `json:"lifecycles"` // completed so far
	Execs      int64   `json:"execs"`      // completed so far
	RSSKB      int64   `json:"rss_kb"`     // containerd's VmRSS
	HeapKB     int64   `json:"heap_kb"`    // Go HeapAlloc right after a forced GC
	Goroutines int64   `json:"goroutines"` // /debug/pprof/goroutine
	FDs        int64   `json:"fds"`        // /proc/<pid>/fd
	Threads    int64   `json:"threads"`    // /proc/<pid>/status Threads
	Mounts     int64   `json:"mounts"`     // mount points under the daemon's dir
	BPFRegs    int64   `json:"bpf_registrations"`
	BPFExits   int64   `json:"bpf_exits"`
	BPFMemlock int64   `json:"bpf_memlock_bytes"` // bpftool memlock of the pinned maps
	BPFMaps    int64   `json:"bpf_maps"`          // pinned maps counted in BPFMemlock
	Zombies    int64   `json:"zombies"`           // zombie children of daemon/reapers
}

// metric names a Sample field for tables, CSV and the growth report.
type metric struct {
	Name string
	Unit string
	Get  func(Sample) int64
}

var metrics = []metric{
	{"rss", "kB", func(s Sample) int64 { return s.RSSKB }},
	{"heap", "kB", func(s Sample) int64 { return s.HeapKB }},
	{"goroutines", "", func(s Sample) int64 { return s.Goroutines }},
	{"fds", "", func(s Sample) int64 { return s.FDs }},
	{"threads", "", func(s Sample) int64 { return s.Threads }},
	{"mounts", "", func(s Sample) int64 { return s.Mounts }},
	{"bpf_registrations", "", func(s Sample) int64 { return s.BPFRegs }},
	{"bpf_exits", "", func(s Sample) int64 { return s.BPFExits }},
	{"bpf_memlock", "B", func(s Sample) int64 { return s.BPFMemlock }},
	{"zombies", "", func(s Sample) int64 { return s.Zombies }},
}

// sampler reads one daemon (its debug server through the harness).
type sampler struct {
	d *harness.Daemon
}

func newSampler(d *harness.Daemon) *sampler { return &sampler{d: d} }

func (s *sampler) get(path string) (string, error) { return s.d.DebugGet(path) }

func (s *sampler) goroutines() (int64, error) { return s.d.Goroutines() }

// heapAfterGC forces a GC (the heap profile's gc=1) and reads HeapAlloc of
// the MemStats the profile ends with: the live heap, free of GC timing.
func (s *sampler) heapAfterGC() (int64, error) {
	b, err := s.get("/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(strings.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n / 1024, err
		}
	}
	return 0, fmt.Errorf("heap profile: no HeapAlloc line")
}

// procStatus returns VmRSS (kB) and Threads of /proc/<pid>/status.
func procStatus(pid int) (rssKB, threads int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			rssKB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			threads, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return rssKB, threads, nil
}

func countFDs(pid int) (int64, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return int64(len(ents)), err
}

// bpfStats counts the entries of the embed runtime's registrations and
// exits maps (as the integration tests' bpfEntries does) and sums bpftool's
// memlock figure over every map pinned under the pin dir (on kernels
// >= 6.4 the memory a map actually uses, so it grows with the entries of
// the BPF_F_NO_PREALLOC hash maps).
func bpfStats(pinDir string) (regs, exits, memlock, maps int64, err error) {
	if pinDir == "" {
		return 0, 0, 0, 0, fmt.Errorf("no pin dir: the embed plugin is not configured")
	}
	err = filepath.WalkDir(pinDir, func(p string, e os.DirEntry, werr error) error {
		if werr != nil || e.IsDir() {
			return nil
		}
		out, err := exec.Command("bpftool", "-j", "map", "show", "pinned", p).Output()
		if err != nil {
			return nil // a program or link, not a map
		}
		var m struct {
			BytesMemlock int64 `json:"bytes_memlock"`
		}
		if err := json.Unmarshal(out, &m); err != nil {
			return fmt.Errorf("bpftool map show %s: %w", p, err)
		}
		memlock += m.BytesMemlock
		maps++
		var n *int64
		switch e.Name() {
		case "registrations":
			n = &regs
		case "exits":
			n = &exits
		default:
			return nil
		}
		raw, err := exec.Command("bpftool", "-j", "map", "dump", "pinned", p).Output()
		if err != nil {
			return fmt.Errorf("bpftool map dump %s: %w", p, err)
		}
		var entries []json.RawMessage
		if err := json.Unmarshal(raw, &entries); err != nil {
			return fmt.Errorf("bpftool map dump %s: %w", p, err)
		}
		*n += int64(len(entries))
		return nil
	})
	return regs, exits, memlock, maps, err
}

// take reads everything once; the load must be paused (see quiesce).
func (s *sampler) take() (Sample, error) {
	var out Sample
	pid := s.d.Pid()
	if pid == 0 {
		return out, fmt.Errorf("daemon not running")
	}
	var err error
	if out.HeapKB, err = s.heapAfterGC(); err != nil {
		return out, err
	}
	if out.Goroutines, err = s.goroutines(); err != nil {
		return out, err
	}
	if out.RSSKB, out.Threads, err = procStatus(pid); err != nil {
		return out, err
	}
	if out.FDs, err = countFDs(pid); err != nil {
		return out, err
	}
	out.Mounts = int64(len(harness.MountsUnder(s.d.Dir)))
	if out.BPFRegs, out.BPFExits, out.BPFMemlock, out.BPFMaps, err = bpfStats(s.d.PinDir); err != nil {
		return out, err
	}
	out.Zombies = int64(len(s.d.Zombies()))
	return out, nil
}

// daemonChildren counts containerd's children (runc calls in flight), over
// all its threads: Go forks from any of them.
func daemonChildren(pid int) int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	n := 0
	for _, f := range files {
		b, _ := os.ReadFile(f)
		n += len(strings.Fields(string(b)))
	}
	return n
}
