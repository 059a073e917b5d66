//go:build linux

package core

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/console"
	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// stdioPaths is what the client asked for; persisted so State() reports it
// after a restart.
type stdioPaths struct {
	Stdin    string `json:"stdin,omitempty"`
	Stdout   string `json:"stdout,omitempty"`
	Stderr   string `json:"stderr,omitempty"`
	Terminal bool   `json:"terminal,omitempty"`

	// For binary:// loggers (CONTAINER_ID, CONTAINER_NAMESPACE), as the
	// runc shim passes them: the process id (container id for init, exec id
	// for an exec) and the namespace. Set by newProcess, not persisted.
	procID    string
	namespace string
}

// processIO is the containerd side of one process's stdio.
//
// stdout/stderr: the client's FIFOs are opened O_RDWR (which never blocks,
// whether or not the client reads yet) and the very same files become the
// container's fds 1 and 2. No copy loop runs, so output keeps flowing while
// containerd is down. containerd keeps its O_RDWR handle until the process
// exits, for the same reason the shim keeps its FIFO ends: a client that goes
// away must not turn the container's writes into SIGPIPE. Closing the handle
// at exit lets the client see EOF once the container's own copies are gone.
//
// stdin: a pipe whose read end is the container's fd 0 and whose write end is
// fed by a relay from the client's stdin FIFO. The relay exists so CloseIO can
// give the container EOF even though the FIFO itself stays open; a keeper
// write handle on the FIFO (as in the runc shim) keeps the relay from seeing
// EOF before CloseIO.
//
// terminal: the pty master comes back over the console socket and two copy
// loops move data between it and the FIFOs (best effort across restarts).
type processIO struct {
	paths stdioPaths

	mu          sync.Mutex
	outputs     []*os.File // our handles on stdout/stderr, closed at exit
	stdinR      *os.File   // container's end of the stdin pipe, closed after runc ran
	stdinW      *os.File   // relay's end of the stdin pipe
	stdinKeeper io.Closer  // write handle on the stdin FIFO, closed by CloseIO
	stdinFifo   io.Closer  // relay's read handle on the stdin FIFO
	console     console.Console
	copies      sync.WaitGroup
	logger      *binaryLogger // binary:// logging process, if any
	exited      chan struct{} // closed by closeOutputs: the process is gone
}

// exitedLocked returns the channel closed when the process has exited (or
// its stdio is being released). pio.mu must be held.
func (pio *processIO) exitedLocked() <-chan struct{} {
	if pio.exited == nil {
		pio.exited = make(chan struct{})
	}
	return pio.exited
}

// runcIO hands files straight to the runc command; runc passes its stdio
// through to the container when no terminal is used.
type runcIO struct {
	stdin, stdout, stderr *os.File
}

func (r *runcIO) Close() error          { return nil }
func (r *runcIO) Stdin() io.WriteCloser { return nil }
func (r *runcIO) Stdout() io.ReadCloser { return nil }
func (r *runcIO) Stderr() io.ReadCloser { return nil }
func (r *runcIO) Set(cmd *exec.Cmd) {
	// Assign only non-nil files: a nil *os.File in the interface would make
	// exec use it instead of /dev/null.
	if r.stdin != nil {
		cmd.Stdin = r.stdin
	}
	if r.stdout != nil {
		cmd.Stdout = r.stdout
	}
	if r.stderr != nil {
		cmd.Stderr = r.stderr
	}
}

// newProcessIO opens the stdio of a process that does not use a terminal and
// returns the runc.IO to hand to runc create/exec.
func newProcessIO(paths stdioPaths, ioUID, ioGID int) (_ *processIO, _ *runcIO, err error) {
	pio := &processIO{paths: paths}
	defer func() {
		if err != nil {
			pio.closeAll()
		}
	}()
	rio := &runcIO{}

	if isBinaryURI(paths.Stdout) {
		// As in the runc shim, a binary:// stdout takes both stdout and
		// stderr, whatever stderr says.
		l, out, errw, err := startBinaryLogger(paths)
		if err != nil {
			return nil, nil, err
		}
		pio.logger = l
		rio.stdout, rio.stderr = out, errw
		pio.outputs = append(pio.outputs, out, errw)
	} else if paths.Stdout != "" {
		if rio.stdout, err = openOutput(paths.Stdout); err != nil {
			return nil, nil, fmt.Errorf("open stdout %s: %w", paths.Stdout, err)
		}
		pio.outputs = append(pio.outputs, rio.stdout)
	} else if rio.stdout, err = openDevNull(); err != nil {
		return nil, nil, err
	} else {
		pio.outputs = append(pio.outputs, rio.stdout)
	}

	switch {
	case pio.logger != nil:
	case paths.Stderr == paths.Stdout:
		rio.stderr = rio.stdout
	case paths.Stderr != "":
		if rio.stderr, err = openOutput(paths.Stderr); err != nil {
			return nil, nil, fmt.Errorf("open stderr %s: %w", paths.Stderr, err)
		}
		pio.outputs = append(pio.outputs, rio.stderr)
	default:
		if rio.stderr, err = openDevNull(); err != nil {
			return nil, nil, err
		}
		pio.outputs = append(pio.outputs, rio.stderr)
	}

	if paths.Stdin != "" {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, nil, err
		}
		pio.stdinR, pio.stdinW = r, w
		// A non-root container user must be able to reopen /proc/self/fd/0,
		// as with the shim's pipes.
		if ioUID != 0 || ioGID != 0 {
			for _, f := range []*os.File{r, w} {
				if err := f.Chown(ioUID, ioGID); err != nil {
					return nil, nil, fmt.Errorf("chown stdin pipe: %w", err)
				}
			}
		}
		rio.stdin = r
	}
	if ioUID != 0 || ioGID != 0 {
		if err := chownOutputs(ioUID, ioGID, rio.stdout, rio.stderr); err != nil {
			return nil, nil, err
		}
	}
	return pio, rio, nil
}

// chownOutputs gives the stdout/stderr FIFOs or pipes to IoUid/IoGid, as
// runc.v2 does its stdio pipes, so that the container (a user namespace's
// root, or a non-root user) can reopen them. Regular files (a log file
// given as stdout) are the client's and keep their owner.
func chownOutputs(uid, gid int, files ...*os.File) error {
	for _, f := range files {
		if f == nil {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			return fmt.Errorf("stat %s: %w", f.Name(), err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFIFO {
			continue
		}
		if err := f.Chown(uid, gid); err != nil {
			return fmt.Errorf("chown stdio %s to %d:%d: %w", f.Name(), uid, gid, err)
		}
	}
	return nil
}

// reopenProcessIO is used after a restart for a process that still runs: the
// container already has its fds; holding the FIFOs again restores the
// protection against SIGPIPE. stdin and terminals are not recovered.
func reopenProcessIO(ctx context.Context, paths stdioPaths) *processIO {
	pio := &processIO{paths: paths}
	if paths.Terminal {
		return pio
	}
	seen := map[string]bool{}
	for _, p := range []string{paths.Stdout, paths.Stderr} {
		if p == "" || seen[p] {
			continue
		}
		seen[p] = true
		if ok, err := fifo.IsFifo(fifoPath(p)); err != nil || !ok {
			continue
		}
		f, err := os.OpenFile(fifoPath(p), os.O_RDWR, 0)
		if err != nil {
			log.G(ctx).WithError(err).WithField("path", p).Warn("embed: reopen stdio fifo")
			continue
		}
		pio.outputs = append(pio.outputs, f)
	}
	return pio
}

// afterRuncStarted drops the container's end of the stdin pipe (runc and the
// container hold their own copies now) and starts the relay.
func (pio *processIO) afterRuncStarted() error {
	pio.mu.Lock()
	defer pio.mu.Unlock()
	if pio.stdinR != nil {
		pio.stdinR.Close()
		pio.stdinR = nil
	}
	if pio.stdinW == nil {
		return nil
	}
	in, keeper, err := openStdinFifo(pio.paths.Stdin)
	if err != nil {
		return err
	}
	pio.stdinFifo, pio.stdinKeeper = in, keeper
	w := pio.stdinW
	pio.copies.Add(1)
	go func() {
		defer pio.copies.Done()
		buf := make([]byte, 32<<10)
		io.CopyBuffer(w, in, buf)
		// EOF from the client (after CloseIO): the container gets EOF too.
		w.Close()
		in.Close()
	}()
	return nil
}

// closeStdin implements CloseIO: drop our writer on the FIFO so that the
// relay (or console copy) ends once the client has closed its end.
func (pio *processIO) closeStdin() {
	pio.mu.Lock()
	defer pio.mu.Unlock()
	if pio.stdinKeeper != nil {
		pio.stdinKeeper.Close()
		pio.stdinKeeper = nil
	}
}

// closeOutputs is called when the process has exited: the client's readers
// get EOF once the container's own copies are closed too.
func (pio *processIO) closeOutputs() {
	pio.mu.Lock()
	defer pio.mu.Unlock()
	pio.exitedLocked()
	select {
	case <-pio.exited:
	default:
		close(pio.exited)
	}
	for _, f := range pio.outputs {
		f.Close()
	}
	pio.outputs = nil
}

// closeAll releases everything; used on delete and on failed creation. It
// waits a bounded time for copy loops so a terminal's last output is flushed.
func (pio *processIO) closeAll() {
	pio.closeOutputs()
	pio.mu.Lock()
	for _, c := range []io.Closer{pio.stdinKeeper, pio.stdinFifo} {
		if c != nil {
			c.Close()
		}
	}
	pio.stdinKeeper, pio.stdinFifo = nil, nil
	if pio.stdinR != nil {
		pio.stdinR.Close()
		pio.stdinR = nil
	}
	con := pio.console
	pio.mu.Unlock()

	waitTimeout(&pio.copies, consoleDrainTimeout)

	pio.mu.Lock()
	if pio.stdinW != nil {
		pio.stdinW.Close()
		pio.stdinW = nil
	}
	pio.mu.Unlock()
	if con != nil {
		con.Close()
	}
	pio.mu.Lock()
	l := pio.logger
	pio.logger = nil
	pio.mu.Unlock()
	if l != nil {
		l.stop()
	}
}

func openStdinFifo(path string) (in, keeper io.ReadWriteCloser, err error) {
	in, err = fifo.OpenFifo(context.Background(), path, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open stdin fifo %s: %w", path, err)
	}
	keeper, err = fifo.OpenFifo(context.Background(), path, unix.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		in.Close()
		return nil, nil, fmt.Errorf("open stdin fifo %s for writing: %w", path, err)
	}
	return in, keeper, nil
}

// openOutput opens a client's stdout/stderr target. Plain paths and fifo://
// are FIFOs made by the client; file:// is a log file shared by stdout and
// stderr (as in the runc shim). binary:// loggers are started by
// newProcessIO (startBinaryLogger), not opened here.
func openOutput(p string) (*os.File, error) {
	u, err := url.Parse(p)
	if err != nil {
		return nil, fmt.Errorf("parse stdio uri: %w", err)
	}
	switch u.Scheme {
	case "", "fifo":
		path := fifoPath(p)
		ok, err := fifo.IsFifo(path)
		if err != nil {
			return nil, err
		}
		if !ok {
			return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0644)
		}
		// O_RDWR: never blocks and never sees "no reader".
		return os.OpenFile(path, os.O_RDWR, 0)
	case "file":
		if err := os.MkdirAll(filepath.Dir(u.Path), 0755); err != nil {
			return nil, err
		}
		return os.OpenFile(u.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0644)
	default:
		return nil, fmt.Errorf("stdio scheme %q: %w", u.Scheme, errdefs.ErrNotImplemented)
	}
}

func fifoPath(p string) string {
	if u, err := url.Parse(p); err == nil && u.Scheme == "fifo" {
		return u.Path
	}
	return p
}

func openDevNull() (*os.File, error) {
	return os.OpenFile(os.DevNull, os.O_RDWR, 0)
}

// binaryLogTermTimeout is how long a binary:// logger gets to flush and exit
// after SIGTERM at delete, as the runc shim's binaryIOProcTermTimeout.
const binaryLogTermTimeout = 12 * time.Second

// binaryLogger is a binary:// logging process (containerd's
// runtime/v2/logging protocol): it reads the container's stdout on fd 3 and
// stderr on fd 4, and closes fd 5 once it is ready. containerd is its parent
// and reaps it.
type binaryLogger struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the logger exited and was reaped
}

func isBinaryURI(p string) bool {
	u, err := url.Parse(p)
	return err == nil && u.Scheme == "binary"
}

// startBinaryLogger starts the logger of paths.Stdout the way the runc
// shim's NewBinaryIO does and returns the write ends of its stdout and stderr
// pipes, for the container. The read ends live only in the logger, so it
// sees EOF once the container's copies and ours (closeOutputs) are closed.
func startBinaryLogger(paths stdioPaths) (_ *binaryLogger, stdout, stderr *os.File, err error) {
	u, err := url.Parse(paths.Stdout)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parse stdio uri: %w", err)
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("failed to create stdout pipes: %w", err)
	}
	files = append(files, outR, outW)
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("failed to create stderr pipes: %w", err)
	}
	files = append(files, errR, errW)
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, err
	}
	files = append(files, readyR, readyW)

	// Same command line and environment as process.NewBinaryCmd.
	var args []string
	for k, vs := range u.Query() {
		args = append(args, k)
		if len(vs) > 0 {
			args = append(args, vs[0])
		}
	}
	cmd := exec.Command(u.Path, args...)
	cmd.Env = []string{
		"CONTAINER_ID=" + paths.procID,
		"CONTAINER_NAMESPACE=" + paths.namespace,
	}
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	// Its own process group: a signal meant for containerd's group must
	// not take the logger down.
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("failed to start binary process: %w", err)
	}
	l := &binaryLogger{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(l.done)
	}()
	readyW.Close()
	outR.Close()
	errR.Close()
	files = []*os.File{readyR}

	// Wait until the logger is ready (it closes fd 5, or exits).
	b := make([]byte, 1)
	if _, err := readyR.Read(b); err != nil && err != io.EOF {
		l.kill()
		outW.Close()
		errW.Close()
		return nil, nil, nil, fmt.Errorf("failed to read from logging binary: %w", err)
	}
	return l, outW, errW, nil
}

// stop ends the logger like the runc shim does at delete: SIGTERM, a bounded
// wait for it to flush and exit, then SIGKILL. Its pipes' write ends must be
// closed before, so that it has seen EOF.
func (l *binaryLogger) stop() {
	select {
	case <-l.done:
		return
	default:
	}
	if err := l.cmd.Process.Signal(unix.SIGTERM); err != nil {
		l.kill()
		return
	}
	select {
	case <-l.done:
	case <-time.After(binaryLogTermTimeout):
		log.L.WithField("pid", l.cmd.Process.Pid).Warn("embed: binary logger did not exit after SIGTERM, killing it")
		l.kill()
	}
}

func (l *binaryLogger) kill() {
	l.cmd.Process.Kill()
	<-l.done
}
