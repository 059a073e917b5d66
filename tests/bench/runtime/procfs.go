//go:build linux

package runtime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// monoNs is the host's CLOCK_MONOTONIC in ns, the clock the image's
// exitclock helper writes (no time namespace: same clock, same boot).
func monoNs() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// procInfo is what the density scenario reads of one process.
type procInfo struct {
	Pid     int
	PPid    int
	State   string
	Comm    string
	Cmdline string
	Threads int
	RssKB   int64
	PssKB   int64
}

// procStat returns the fields after "(comm)" of /proc/<pid>/stat (index 0
// is the state, field N of proc(5) is index N-3) and comm.
func procStat(pid int) (fields []string, comm string, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, "", err
	}
	s := string(b)
	lp, rp := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if lp < 0 || rp < lp {
		return nil, "", fmt.Errorf("bad /proc/%d/stat", pid)
	}
	return strings.Fields(s[rp+1:]), s[lp+1 : rp], nil
}

// readProc fills pid, ppid, state, comm, cmdline and (with mem) threads,
// RSS and PSS (smaps_rollup).
func readProc(pid int, mem bool) (procInfo, error) {
	f, comm, err := procStat(pid)
	if err != nil {
		return procInfo{}, err
	}
	if len(f) < 2 {
		return procInfo{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	p := procInfo{Pid: pid, State: f[0], Comm: comm}
	p.PPid, _ = strconv.Atoi(f[1])
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	p.Cmdline = strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
	if !mem || p.State == "Z" {
		return p, nil
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(l, "Threads:"); ok {
				p.Threads, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
	}
	p.RssKB, p.PssKB, err = smapsRollup(pid)
	return p, err
}

// smapsRollup returns Rss and Pss (kB) of /proc/<pid>/smaps_rollup.
func smapsRollup(pid int) (rss, pss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Rss:":
			rss = v
		case "Pss:":
			pss = v
		}
	}
	return rss, pss, nil
}

// allPids lists the numeric entries of /proc.
func allPids() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// extraProcs are the live processes a runtime adds beside the containers'
// own: direct children of the daemon (runc calls in flight, helpers) and
// runc.v2 shims of this daemon (command line "containerd-shim..." naming the
// daemon's socket under dir). Zombies are not counted.
func extraProcs(daemonPid int, dir string, mem bool) []procInfo {
	var out []procInfo
	for _, pid := range allPids() {
		if pid == daemonPid {
			continue
		}
		p, err := readProc(pid, false)
		if err != nil || p.State == "Z" {
			continue
		}
		shim := strings.Contains(p.Cmdline, "containerd-shim") && strings.Contains(p.Cmdline, dir+"/")
		if p.PPid != daemonPid && !shim {
			continue
		}
		if mem {
			if q, err := readProc(pid, true); err == nil {
				p = q
			} else {
				continue // gone meanwhile
			}
		}
		out = append(out, p)
	}
	return out
}

// memSnapshot is the density scenario's view of the runtime's overhead.
type memSnapshot struct {
	DaemonRssKB, DaemonPssKB int64
	DaemonThreads            int
	ExtraProcs, ExtraThreads int
	ExtraRssKB, ExtraPssKB   int64
	BPFMapBytes              int64
	BPFMaps                  int
	// ReaperRssKB/PssKB are the daemon's front and reaper(s) (see
	// go/exitmon.RunUnderReaper), also counted in DaemonRssKB/PssKB:
	// they are part of the daemon's cost.
	ReaperRssKB, ReaperPssKB int64
}

// daemonChildren counts the daemon's live children (runc calls, helpers).
func daemonChildren(daemonPid int) int {
	n := 0
	for _, pid := range allPids() {
		if p, err := readProc(pid, false); err == nil && p.PPid == daemonPid && p.State != "Z" {
			n++
		}
	}
	return n
}

// takeMemSnapshot reads the daemon's and the extra processes' memory once
// the daemon has no child (a forked child shares the daemon's pages for a
// moment and halves its PSS), waiting up to 3s for that.
func takeMemSnapshot(daemonPid int, reaperPids []int, dir, pinDir string) (memSnapshot, error) {
	var s memSnapshot
	for i := 0; i < 60 && daemonChildren(daemonPid) > 0; i++ {
		unix.Nanosleep(&unix.Timespec{Nsec: 50e6}, nil)
	}
	dp, err := readProc(daemonPid, true)
	if err != nil {
		return s, fmt.Errorf("daemon pid %d: %w", daemonPid, err)
	}
	s.DaemonRssKB, s.DaemonPssKB, s.DaemonThreads = dp.RssKB, dp.PssKB, dp.Threads
	for _, pid := range reaperPids {
		if p, err := readProc(pid, true); err == nil && p.State != "Z" {
			s.ReaperRssKB += p.RssKB
			s.ReaperPssKB += p.PssKB
		}
	}
	s.DaemonRssKB += s.ReaperRssKB
	s.DaemonPssKB += s.ReaperPssKB
	for _, p := range extraProcs(daemonPid, dir, true) {
		s.ExtraProcs++
		s.ExtraThreads += p.Threads
		s.ExtraRssKB += p.RssKB
		s.ExtraPssKB += p.PssKB
	}
	s.BPFMapBytes, s.BPFMaps = bpfMapMemory(daemonPid, pinDir)
	return s, nil
}

// fdinfo parses /proc/<pid>/fdinfo/<fd> into key → value.
func fdinfo(path string) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// bpfObjGet opens a pinned BPF object (BPF_OBJ_GET).
func bpfObjGet(path string) (int, error) {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return -1, err
	}
	var attr [16]byte // struct { __aligned_u64 pathname; __u32 bpf_fd; __u32 file_flags; }
	*(*uint64)(unsafe.Pointer(&attr[0])) = uint64(uintptr(unsafe.Pointer(p)))
	const bpfObjGetCmd = 7
	fd, _, errno := unix.Syscall(unix.SYS_BPF, bpfObjGetCmd, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// bpfMapMemory sums the kernel memory ("memlock" in fdinfo: on kernels
// ≥ 6.4 the map's actual usage, which for BPF_F_NO_PREALLOC hash maps grows
// with the entries) of the BPF maps the daemon holds open and of those
// pinned under pinDir, each map once (by map_id).
func bpfMapMemory(daemonPid int, pinDir string) (bytes int64, maps int) {
	seen := map[string]bool{}
	add := func(m map[string]string) {
		id, ok := m["map_id"]
		if !ok || seen[id] {
			return
		}
		seen[id] = true
		v, _ := strconv.ParseInt(m["memlock"], 10, 64)
		bytes += v
		maps++
	}
	if daemonPid > 0 {
		dir := fmt.Sprintf("/proc/%d/fdinfo", daemonPid)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", daemonPid, e.Name()))
			if err != nil || !strings.Contains(link, "bpf-map") {
				continue
			}
			add(fdinfo(filepath.Join(dir, e.Name())))
		}
	}
	if pinDir != "" {
		_ = filepath.WalkDir(pinDir, func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return nil
			}
			fd, err := bpfObjGet(p)
			if err != nil {
				return nil
			}
			add(fdinfo(fmt.Sprintf("/proc/self/fdinfo/%d", fd)))
			unix.Close(fd)
			return nil
		})
	}
	return bytes, maps
}

// cpuMeter measures the CPU time of the daemon and everything it starts
// (runc, runc.v2 shims and the runc they start): a cpuacct cgroup (v1) or a
// cgroup v2 the daemon is moved into; its children inherit it. Container
// processes themselves run in their own cgroups and are not counted. If no
// cgroup can be made, it falls back to the daemon's utime+stime+cutime+cstime
// (/proc/<pid>/stat), which misses the runc.v2 shims (not the daemon's
// children) and says so in Method.
type cpuMeter struct {
	Method string
	dir    string // cgroup dir, "" in fallback mode
	v2     bool
}

func cgroupMount(v1controller string) (string, bool) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	var v2 string
	for _, l := range strings.Split(string(b), "\n") {
		i := strings.Index(l, " - ")
		if i < 0 {
			continue
		}
		f, post := strings.Fields(l[:i]), strings.Fields(l[i+3:])
		if len(f) < 5 || len(post) < 3 {
			continue
		}
		switch post[0] {
		case "cgroup":
			for _, o := range strings.Split(post[2], ",") {
				if o == v1controller {
					return f[4], false
				}
			}
		case "cgroup2":
			v2 = f[4]
		}
	}
	if v2 != "" {
		if c, err := os.ReadFile(filepath.Join(v2, "cgroup.controllers")); err == nil && strings.Contains(string(c), "cpu") {
			return v2, true
		}
	}
	return "", false
}

func newCPUMeter(name string) *cpuMeter {
	root, v2 := cgroupMount("cpuacct")
	if root != "" {
		dir := filepath.Join(root, name)
		if err := os.Mkdir(dir, 0o755); err == nil {
			m := &cpuMeter{dir: dir, v2: v2, Method: "cgroup v1 cpuacct.usage of a cgroup holding the daemon and all it starts (runc, shims and their runc); container processes excluded"}
			if v2 {
				m.Method = "cgroup v2 cpu.stat usage_usec of a cgroup holding the daemon and all it starts (runc, shims and their runc); container processes excluded"
			}
			return m
		}
	}
	return &cpuMeter{Method: "daemon utime+stime+cutime+cstime from /proc/<pid>/stat (runc.v2 shims not counted: no cgroup available)"}
}

// adopt moves pid (the daemon; again after each restart) into the cgroup.
func (m *cpuMeter) adopt(pid int) error {
	if m.dir == "" || pid <= 0 {
		return nil
	}
	return os.WriteFile(filepath.Join(m.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
}

// read returns the accumulated CPU time in ns.
func (m *cpuMeter) read(daemonPid int) (int64, error) {
	if m.dir != "" && !m.v2 {
		b, err := os.ReadFile(filepath.Join(m.dir, "cpuacct.usage"))
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	if m.dir != "" {
		b, err := os.ReadFile(filepath.Join(m.dir, "cpu.stat"))
		if err != nil {
			return 0, err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
				us, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				return us * 1000, err
			}
		}
		return 0, errors.New("no usage_usec in cpu.stat")
	}
	f, _, err := procStat(daemonPid)
	if err != nil {
		return 0, err
	}
	if len(f) < 15 {
		return 0, errors.New("short stat")
	}
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime (fields 14..17)
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
	}
	return ticks * 1e9 / 100, nil // USER_HZ = 100
}

// close removes the cgroup (after the harness killed everything in it).
func (m *cpuMeter) close() error {
	if m.dir == "" {
		return nil
	}
	var err error
	for i := 0; i < 50; i++ {
		if err = unix.Rmdir(m.dir); err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		// move anything left (should be nothing) to the parent, then retry
		if b, e := os.ReadFile(filepath.Join(m.dir, "cgroup.procs")); e == nil {
			for _, l := range strings.Fields(string(b)) {
				_ = os.WriteFile(filepath.Join(filepath.Dir(m.dir), "cgroup.procs"), []byte(l), 0o644)
			}
		}
		unix.Nanosleep(&unix.Timespec{Nsec: 100e6}, nil)
	}
	return err
}
