//go:build linux

package chaos

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
)

// Processes that read stdin: the worker writes one line right after Start;
// the process echoes it ("got <line>") and, for some, then waits for EOF,
// which the worker gives with CloseIO once the echo came back. Both are
// checked at the end for processes that exited by themselves (with their
// wantStatus) and whose whole lifetime saw no daemon restart: a crash of
// containerd gives an embed process EOF on stdin (containerd alone holds the
// pipe's write end: the known difference in tests/integration/
// restart_io_test.go), while runc.v2's shim keeps it; across a restart
// neither runtime is judged, so the check is the same for both.

// stdinTimeout bounds each wait of the script for stdin: a line or an EOF
// that does not come shows as its absence on stdout, and the process still
// ends by itself.
const stdinTimeout = 60 * time.Second

// stdinIO is one process's stdin as the worker drives it.
type stdinIO struct {
	line    string
	closeIO bool // after the echo, CloseIO: the script waits for EOF
	w       *io.PipeWriter

	// worker-only: CloseIO's outcome (closed: it succeeded) and failed
	// attempts (it is given up after a few)
	closed, gaveUp bool
	tries          int
}

// ioPlan is what a process's stdio is and what its script does with it.
type ioPlan struct {
	creator cio.Creator
	out     *lockedBuffer // read and checked ("": not read)
	marker  string        // printed first, expected on stdout
	stdin   *stdinIO
}

// plan: a quarter of the processes print a marker that is read and checked;
// a quarter read a line from stdin (half of those then wait for EOF by
// CloseIO); the rest have no stdio.
func (w *worker) plan(id string) ioPlan {
	switch w.rng.Intn(8) {
	case 0, 1:
		out := &lockedBuffer{}
		return ioPlan{creator: cio.NewCreator(cio.WithStreams(nil, out, io.Discard)), out: out, marker: "out-" + id}
	case 2, 3:
		out := &lockedBuffer{}
		r, pw := io.Pipe()
		in := &stdinIO{line: "in-" + id, closeIO: w.rng.Intn(2) == 0, w: pw}
		return ioPlan{creator: cio.NewCreator(cio.WithStreams(r, out, io.Discard)), out: out, stdin: in}
	default:
		return ioPlan{creator: nullIO}
	}
}

// script is the stdin part of a process's script.
func (in *stdinIO) script() string {
	t := int(stdinTimeout.Seconds())
	s := fmt.Sprintf(`read -t %d x; echo "got $x"; `, t)
	if in.closeIO {
		s += fmt.Sprintf(`timeout %d cat >/dev/null; echo "eof $?"; `, t)
	}
	return s
}

// feedStdin writes p's line, if it reads stdin, once it started (in its
// own goroutine: the write waits for the client's copy into the FIFO; a
// closed writer ends it).
func (p *proc) feedStdin() {
	if in := p.stdin; in != nil {
		go func() { _, _ = io.WriteString(in.w, in.line+"\n") }()
	}
}

// closeStdins does one pending CloseIO of w's processes, if any is due
// (its echo came back): the client's end first (the copy into the FIFO
// ends), then CloseIO, after which the process must see EOF. It reports
// whether it did something.
func (w *worker) closeStdins(ctx context.Context, cl *containerd.Client) bool {
	for _, cs := range w.ctrs {
		for _, p := range cs.procs() {
			in := p.stdin
			if in == nil || !in.closeIO || in.closed || in.gaveUp || !p.certain {
				continue
			}
			if w.r.m.isWaited(p) {
				in.gaveUp = true
				continue
			}
			if !strings.Contains(p.out.String(), "got "+in.line) {
				continue
			}
			pr, err := loadProc(ctx, cl, p)
			if err != nil {
				continue
			}
			_ = in.w.Close()
			if err := pr.CloseIO(ctx, containerd.WithStdinCloser); err == nil {
				in.closed = true
				w.r.m.stdinClosed(p)
			} else if in.tries++; in.tries >= 5 {
				w.r.logf("%s: CloseIO failed %d times, last: %v; not judging its EOF", p.name(), in.tries, err)
				in.gaveUp = true
			}
			return true
		}
	}
	return false
}

// stdinClosed records that CloseIO succeeded for p: its EOF is judged.
func (m *model) stdinClosed(p *proc) {
	m.mu.Lock()
	p.stdinEOFDue = true
	m.mu.Unlock()
}

// restartDuring: a daemon restart (stop to serving again) overlaps
// [from, to]. (m.mu held)
func (m *model) restartDuring(from, to time.Time) bool {
	for _, w := range m.windows {
		if w.stop.Before(to) && w.up.After(from) {
			return true
		}
	}
	return false
}

// judgeStdin checks the stdin of a process that read it (m.mu held): the
// line echoed and, after a CloseIO that succeeded, the EOF seen. Only a
// natural exit with no restart during the process's life is judged, and
// only if no signal was sent to it (a handled signal interrupts the shell's
// read: "eof 143"; seen on both runtimes in a 30-minute run).
func (m *model) judgeStdin(p *proc, cs []*counts, bad func(string, func(*counts))) {
	if !p.certain || p.stdin == nil || p.wait == nil || p.wait.status != p.want {
		return
	}
	for status := range p.accept {
		if status != p.want {
			return // signalled, or its init may have ended
		}
	}
	if m.restartDuring(p.started, p.wait.at) {
		for _, x := range cs {
			x.StdinCut++
		}
		return
	}
	for _, x := range cs {
		x.StdinChecked++
	}
	out := p.out.String()
	if want := "got " + p.stdin.line; !strings.Contains(out, want) {
		bad(fmt.Sprintf("stdin line lost: stdout %q lacks %q", out, want), func(x *counts) { x.StdinLost++ })
		return
	}
	if p.stdinEOFDue && !strings.Contains(out, "eof 0") {
		bad(fmt.Sprintf("EOF after CloseIO lost: stdout %q lacks \"eof 0\"", out), func(x *counts) { x.StdinLost++ })
	}
}
