//go:build linux

package core

import (
	"errors"
	"io"
	"sync"
	"time"

	"github.com/containerd/console"
	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"
)

// consoleDrainTimeout bounds how long delete waits for the terminal's output
// copy, like the shim's 10 s wait on its IO wait group.
const consoleDrainTimeout = 10 * time.Second

// newConsoleSocket makes the socket over which runc sends the pty master.
func newConsoleSocket() (*runc.Socket, error) {
	return runc.NewTempConsoleSocket()
}

// startConsole takes the pty master runc sent and starts the copy loops:
// stdin FIFO -> master and master -> stdout FIFO. With a terminal, stdout and
// stderr are the same stream, as in the shim.
func (pio *processIO) startConsole(master console.Console) error {
	pio.mu.Lock()
	defer pio.mu.Unlock()
	pio.console = master

	if pio.paths.Stdin != "" {
		in, keeper, err := openStdinFifo(pio.paths.Stdin)
		if err != nil {
			return err
		}
		pio.stdinFifo, pio.stdinKeeper = in, keeper
		pio.copies.Add(1)
		go func() {
			defer pio.copies.Done()
			buf := make([]byte, 32<<10)
			io.CopyBuffer(master, in, buf)
			in.Close()
		}()
	}

	if pio.paths.Stdout != "" {
		var out io.WriteCloser
		if isBinaryURI(pio.paths.Stdout) {
			// As in the runc shim: the logger gets the terminal's
			// output on its stdout pipe; its stderr pipe stays empty.
			l, outW, errW, err := startBinaryLogger(pio.paths)
			if err != nil {
				return err
			}
			errW.Close()
			pio.logger, out = l, outW
		} else {
			f, err := openOutput(pio.paths.Stdout)
			if err != nil {
				return err
			}
			out = f
		}
		exited := pio.exitedLocked()
		pio.copies.Add(1)
		go func() {
			defer pio.copies.Done()
			copyConsoleOutput(out, master, exited)
			// The client sees EOF: we were the FIFO's only writer.
			out.Close()
		}()
	}
	return nil
}

// consoleEIORetry is how often the output copy retries a pty master that
// reports EIO while its process still runs.
const consoleEIORetry = 10 * time.Millisecond

// copyConsoleOutput copies the pty master to out until the process has
// exited and the master reports EIO (every slave fd closed) or another error.
// An EIO while the process runs is not the end: the slave side can be
// without an open file for a moment (runc's set-up, a process closing its
// own open of the terminal) and output may follow; runc.v2's EpollConsole
// waits in that case too instead of dropping the rest of the output. After
// the exit the kernel hands out what is buffered before reporting EIO.
func copyConsoleOutput(out io.Writer, master io.Reader, exited <-chan struct{}) {
	buf := make([]byte, 32<<10)
	for {
		n, err := master.Read(buf)
		if n > 0 {
			if _, werr := out.Write(buf[:n]); werr != nil {
				return
			}
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.EIO):
			select {
			case <-exited:
				return
			default:
			}
			select {
			case <-exited:
			case <-time.After(consoleEIORetry):
			}
		default:
			return
		}
	}
}

func (pio *processIO) resize(w, h uint32) error {
	pio.mu.Lock()
	con := pio.console
	pio.mu.Unlock()
	if con == nil {
		// Same as the runc shim: resizing a process without a terminal
		// is not an error.
		return nil
	}
	return con.Resize(console.WinSize{Width: uint16(w), Height: uint16(h)})
}

// waitTimeout waits for wg at most d; it reports whether wg finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}
