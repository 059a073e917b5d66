//go:build linux

package runtime

import (
	"io"
	"sync"
	"time"

	"github.com/containerd/console"
	runc "github.com/containerd/go-runc"
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
		out, err := openOutput(pio.paths.Stdout)
		if err != nil {
			return err
		}
		pio.copies.Add(1)
		go func() {
			defer pio.copies.Done()
			buf := make([]byte, 32<<10)
			// Ends with EIO once every slave fd is closed (all the
			// processes using the terminal are gone); the client then
			// sees EOF because we were the FIFO's only writer.
			io.CopyBuffer(out, master, buf)
			out.Close()
		}()
	}
	return nil
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
