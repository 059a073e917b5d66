// Package exitmon is the Go binding of embedshim's C core: it tracks
// processes that are not our children and reports how they exited, through
// a pidfd epoll loop and a BPF program on sched_process_exit whose records
// are pinned in bpffs and so survive a restart of the caller.
//
// It is the only cgo package of embedshim. The C library, libbpf, libelf and
// libz are linked statically, found through pkg-config: build the C library
// first (make core) and set PKG_CONFIG_PATH=<repo>/_output/build/pkgconfig.
// The Makefile exports it, and CGO_CFLAGS with the library's hash so that Go
// relinks when the C core changed; builds outside make do not see C changes
// unless they set CGO_CFLAGS the same way.
package exitmon

/*
#cgo pkg-config: embedshim
#include <stdlib.h>
#include "embedshim/monitor.h"

// The library's content hash (CGO_CFLAGS, set by the Makefile), kept in this
// package's object: cmd/go keys its cache on CGO_CFLAGS but not on the
// library it links, so this is what makes a changed C core change this
// package and relink every binary that uses it.
#ifdef EMBEDSHIM_CORE_HASH
#define ES_STR2(x) #x
#define ES_STR(x) ES_STR2(x)
__attribute__((used)) static const char embedshim_core_hash[] =
	ES_STR(EMBEDSHIM_CORE_HASH);
#endif
*/
import "C"

import (
	"fmt"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const errLen = 512

// DefaultCapacity is the number of processes tracked at once by default.
const DefaultCapacity = C.ES_DEFAULT_CAPACITY

// Options for Open.
type Options struct {
	// Capacity is the number of processes that can be tracked at once;
	// 0 means DefaultCapacity for new pins and the pins' own capacity for
	// existing ones. Any other value is applied to existing pins too: their
	// maps are made anew with it and every registration and record moved
	// over; unless fewer than the processes tracked now, in which case the
	// pins keep their capacity (see RefusedCapacity).
	Capacity uint32
	// TakeOver is another pin dir (e.g. OldDefaultPinDir) whose pins, if
	// any, are taken over: registrations and exit records moved into this
	// Monitor's maps, then the old pins removed and the bpffs mounted
	// there unmounted. Empty or the pin dir itself: nothing to take over.
	TakeOver string
}

// Key names a tracked process: its host pid and identity (pidfs inode, or
// start time in ticks on kernels without pidfs), so a reused pid is never
// taken for the process we registered.
type Key struct {
	Pid   int
	Ident uint64
}

// Exit is how a tracked process ended.
type Exit struct {
	Pid      int
	Ident    uint64
	Status   uint32 // raw wait status, as waitpid(2) gives it
	ExitedAt time.Time
	// Unrecorded is set if the process died without an exit record (should
	// not happen; Status is then meaningless).
	Unrecorded bool
}

// ExitStatus converts a raw wait status to containerd's convention, as its
// runc shim does: the exit code for a normal exit, 128+signal for a process
// killed by a signal (SIGKILL: 137); the core-dump flag changes nothing.
func ExitStatus(ws uint32) uint32 {
	s := unix.WaitStatus(ws)
	if s.Signaled() {
		return 128 + uint32(s.Signal())
	}
	return uint32(s.ExitStatus())
}

// Monitor tracks registered processes. Its methods are safe for concurrent
// use.
type Monitor struct {
	c        *C.struct_es_monitor
	exits    chan Exit
	done     chan struct{}
	loopDone chan struct{}
	closeMu  sync.Once
	// repinMu keeps Repin, called from a timer, off a closed monitor.
	repinMu sync.Mutex
}

// Open loads and attaches the BPF program and pins it with its maps under
// pinDir, or reopens the pins an earlier Monitor left there, with their
// records. A pinDir under HostBPFFS is created in the host's bpffs (mounted
// if it is not); elsewhere a private bpffs is mounted at pinDir unless it is
// on one already.
func Open(pinDir string, opts Options) (*Monitor, error) {
	cdir := C.CString(pinDir)
	defer C.free(unsafe.Pointer(cdir))
	var errbuf [errLen]C.char
	copts := C.struct_es_open_opts{capacity: C.uint32_t(opts.Capacity)}
	if opts.TakeOver != "" {
		ctake := C.CString(opts.TakeOver)
		defer C.free(unsafe.Pointer(ctake))
		copts.take_over_dir = ctake
	}
	m := &Monitor{
		exits:    make(chan Exit, 1024),
		done:     make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	if rc := C.es_monitor_open(cdir, &copts, &m.c, &errbuf[0], errLen); rc != 0 {
		return nil, newError("open", rc, &errbuf[0])
	}
	go m.loop()
	return m, nil
}

// Capacity is the number of processes the open maps can track.
func (m *Monitor) Capacity() uint32 { return uint32(C.es_monitor_capacity(m.c)) }

// RefusedCapacity says whether Open was asked for a capacity it did not
// apply: asked is Options.Capacity and tracked the number of processes
// tracked at the time, more than asked, so the pins kept Capacity(). asked
// is 0 if Open applied what it was asked.
func (m *Monitor) RefusedCapacity() (asked, tracked uint32) {
	var t C.uint32_t
	asked = uint32(C.es_monitor_refused_capacity(m.c, &t))
	return asked, uint32(t)
}

// Identity returns the identity of a live (or zombie) process.
func Identity(pid int) (uint64, error) {
	var errbuf [errLen]C.char
	var ident C.uint64_t
	if rc := C.es_process_ident(C.int(pid), &ident, &errbuf[0], errLen); rc != 0 {
		return 0, newError("identity", rc, &errbuf[0])
	}
	return uint64(ident), nil
}

// Register starts tracking pid. A non-zero ident must match the process's
// identity (ErrNotExpected otherwise); 0 takes the identity it has now,
// which is returned. A process that already exited gives ErrExited; a full
// map gives ErrCapacity.
func (m *Monitor) Register(pid int, ident uint64) (uint64, error) {
	var errbuf [errLen]C.char
	var out C.uint64_t
	if rc := C.es_monitor_register(m.c, C.int(pid), C.uint64_t(ident), &out, &errbuf[0], errLen); rc != 0 {
		return 0, newError("register", rc, &errbuf[0])
	}
	return uint64(out), nil
}

// Track starts tracking the process behind pidfd, whose pid is pid, and
// returns its identity: one pidfd (the caller's, which it keeps, e.g. for
// signals) from the caller's pidfd_open to the registration, so the pid
// cannot be reused in between. Errors as Register (ErrExited for a process
// that exited or was reaped), and EBADF / EINVAL if pidfd is no pidfd or
// not pid's.
func (m *Monitor) Track(pidfd, pid int) (uint64, error) {
	var errbuf [errLen]C.char
	var out C.uint64_t
	if rc := C.es_monitor_register_pidfd(m.c, C.int(pidfd), C.int(pid), &out, &errbuf[0], errLen); rc != 0 {
		return 0, newError("track", rc, &errbuf[0])
	}
	return uint64(out), nil
}

// Exits delivers the exit of each registered (or re-polled) process once.
// It is closed by Close.
func (m *Monitor) Exits() <-chan Exit { return m.exits }

// Lookup finds a process registered before a restart: its exit if it
// exited meanwhile, else (nil, nil) and it is polled again, its exit then
// arriving on Exits.
func (m *Monitor) Lookup(pid int, ident uint64) (*Exit, error) {
	var errbuf [errLen]C.char
	var ev C.struct_es_exit_event
	rc := C.es_monitor_lookup(m.c, C.int(pid), C.uint64_t(ident), &ev, &errbuf[0], errLen)
	switch {
	case rc < 0:
		return nil, newError("lookup", rc, &errbuf[0])
	case rc == 0:
		return nil, nil
	}
	e := toExit(&ev, MonoNow(), time.Now())
	return &e, nil
}

// FindRecent returns the exit of an unregistered process known only by its
// pid (reaped before its identity could be read): the newest exit of pid at
// or after since (a MonoNow() taken while the process was alive), taken from
// the BPF program's recent exits so it is found once. nil if there is none.
func (m *Monitor) FindRecent(pid int, since uint64) (*Exit, error) {
	var ev C.struct_es_exit_event
	rc := C.es_monitor_find_recent(m.c, C.int(pid), C.uint64_t(since), &ev)
	switch {
	case rc < 0:
		return nil, newError("find recent exit", rc, nil)
	case rc == 0:
		return nil, nil
	}
	e := toExit(&ev, MonoNow(), time.Now())
	return &e, nil
}

// Forget stops tracking a process and deletes its registration and exit
// record. Forgetting an unknown process is not an error.
func (m *Monitor) Forget(pid int, ident uint64) error {
	if rc := C.es_monitor_forget(m.c, C.int(pid), C.uint64_t(ident)); rc != 0 {
		return newError("forget", rc, nil)
	}
	return nil
}

// Registered lists every registration in the pinned maps.
func (m *Monitor) Registered() ([]Key, error) {
	n := C.es_monitor_list(m.c, nil, 0)
	for {
		if n < 0 {
			return nil, newError("list", n, nil)
		}
		procs := make([]C.struct_es_proc, int(n)+16)
		got := C.es_monitor_list(m.c, &procs[0], C.int(len(procs)))
		if got < 0 {
			return nil, newError("list", got, nil)
		}
		if int(got) < len(procs) {
			keys := make([]Key, got)
			for i := range keys {
				keys[i] = Key{Pid: int(procs[i].pid), Ident: uint64(procs[i].ident)}
			}
			return keys, nil
		}
		n = got * 2 // grew meanwhile
	}
}

// Repin pins the monitor's maps and link again wherever their pins went
// missing or other objects were pinned in their place (by hand, or their
// bpffs was unmounted): nothing is lost while the Monitor runs, since it
// holds them all, but the next Open would find no registrations or records.
// It names what it put back ("exits (removed), link (replaced)"), "" if
// every pin was in place.
func (m *Monitor) Repin() (string, error) {
	m.repinMu.Lock()
	defer m.repinMu.Unlock()
	if m.c == nil {
		return "", fmt.Errorf("repin: monitor closed")
	}
	var restored [256]C.char
	var errbuf [errLen]C.char
	if rc := C.es_monitor_repin(m.c, &restored[0], 256, &errbuf[0], errLen); rc < 0 {
		return "", newError("repin", rc, &errbuf[0])
	}
	return C.GoString(&restored[0]), nil
}

// RestoredPins names the pins Open put back because they were not the maps
// of the program attached through the link pin (removed or replaced while
// no Monitor ran), as Repin names them; "" if none.
func (m *Monitor) RestoredPins() string {
	return C.GoString(C.es_monitor_restored_pins(m.c))
}

// ExitRecords is the number of exit records in the pinned maps.
func (m *Monitor) ExitRecords() int { return int(C.es_monitor_count_exits(m.c)) }

// Close stops delivering exits and closes the monitor. Pins, registrations
// and records stay for the next Open: nothing is detached.
func (m *Monitor) Close() error {
	m.closeMu.Do(func() {
		close(m.done)
		C.es_monitor_wake(m.c)
		<-m.loopDone
		m.repinMu.Lock()
		C.es_monitor_close(m.c)
		m.c = nil
		m.repinMu.Unlock()
	})
	return nil
}

// DestroyPins removes the pins of every layout version under pinDir
// (detaching the program once no Monitor holds it), unmounts the bpffs
// mounted at pinDir, if any, and removes pinDir. For tests and uninstall
// (see RemovePins); every record is lost.
func DestroyPins(pinDir string) error {
	cdir := C.CString(pinDir)
	defer C.free(unsafe.Pointer(cdir))
	var errbuf [errLen]C.char
	if rc := C.es_pins_destroy(cdir, &errbuf[0], errLen); rc != 0 {
		return newError("destroy pins", rc, &errbuf[0])
	}
	return nil
}

// loop is the one goroutine that blocks in C: one cgo call per batch of
// exits, and the C side never calls back into Go.
func (m *Monitor) loop() {
	defer close(m.loopDone)
	defer close(m.exits)
	const batch = 64
	var evs [batch]C.struct_es_exit_event
	for {
		n := C.es_monitor_wait(m.c, &evs[0], batch, -1)
		if n < 0 {
			return // woken by Close (or epoll broke: nothing to recover)
		}
		mono, wall := MonoNow(), time.Now()
		for i := 0; i < int(n); i++ {
			select {
			case m.exits <- toExit(&evs[i], mono, wall):
			case <-m.done:
				// The records stay in the maps; a later Lookup finds them.
				return
			}
		}
	}
}

func toExit(ev *C.struct_es_exit_event, mono uint64, wall time.Time) Exit {
	e := Exit{
		Pid:        int(ev.pid),
		Ident:      uint64(ev.ident),
		Status:     uint32(ev.status),
		Unrecorded: ev.err != 0,
	}
	// The record holds CLOCK_MONOTONIC; map it onto the wall clock now.
	e.ExitedAt = wall.Add(-time.Duration(mono - uint64(ev.exit_ns)))
	return e
}

// MonoNow is CLOCK_MONOTONIC in ns, the clock of exit records.
func MonoNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

func (e Exit) String() string {
	return fmt.Sprintf("pid %d exited with status %d", e.Pid, ExitStatus(e.Status))
}
