// Command exitclock is a static test helper baked into the embedshim test
// image (/usr/local/bin/exitclock). Benchmarks use it to timestamp the moment
// a container process exits, on the same clock the host measures with.
//
// Usage:
//
//	exitclock [-delay DURATION] [-wait-stdin] [-signal N] [CODE [FILE]]
//
// It optionally sleeps for DURATION (-delay) and/or waits until stdin
// reaches EOF (-wait-stdin), then reads CLOCK_MONOTONIC and writes it as a
// decimal number of nanoseconds followed by "\n" to FILE (created/truncated;
// "-" or absent means stdout), then immediately exits with CODE (0..255,
// default 0). With -signal N it instead kills itself with signal N after
// writing the time (so the wait status is "killed by N", i.e. 128+N in
// containerd terms).
//
// CLOCK_MONOTONIC is not namespaced by containers unless a time namespace is
// used, so the value is directly comparable with the host's
// clock_gettime(CLOCK_MONOTONIC) (Go: unix.ClockGettime).
//
// Built with CGO_ENABLED=0 so it is static and runs in the busybox image.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func usage() {
	fmt.Fprintf(os.Stderr, "usage: exitclock [-delay DURATION] [-wait-stdin] [-signal N] [CODE [FILE]]\n")
	flag.PrintDefaults()
	os.Exit(2)
}

func main() {
	delay := flag.Duration("delay", 0, "sleep this long before taking the time")
	waitStdin := flag.Bool("wait-stdin", false, "read stdin until EOF before taking the time")
	sig := flag.Int("signal", 0, "after writing the time, kill self with this signal instead of exiting")
	flag.Usage = usage
	flag.Parse()

	code := 0
	out := "-"
	args := flag.Args()
	if len(args) > 2 {
		usage()
	}
	if len(args) >= 1 {
		c, err := strconv.Atoi(args[0])
		if err != nil || c < 0 || c > 255 {
			fmt.Fprintf(os.Stderr, "exitclock: bad exit code %q\n", args[0])
			os.Exit(2)
		}
		code = c
	}
	if len(args) == 2 {
		out = args[1]
	}

	// Open the output before the clock is read, so only the write
	// separates the timestamp from the exit.
	w := os.Stdout
	if out != "-" {
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "exitclock: %v\n", err)
			os.Exit(2)
		}
		w = f
	}

	if *delay > 0 {
		time.Sleep(*delay)
	}
	if *waitStdin {
		_, _ = io.Copy(io.Discard, os.Stdin)
	}

	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		fmt.Fprintf(os.Stderr, "exitclock: clock_gettime: %v\n", err)
		os.Exit(2)
	}
	ns := ts.Nano()
	buf := strconv.AppendInt(make([]byte, 0, 24), ns, 10)
	buf = append(buf, '\n')
	_, _ = w.Write(buf)

	if *sig > 0 {
		_ = syscall.Kill(os.Getpid(), syscall.Signal(*sig))
		// Signals that do not terminate by default (or are ignored)
		// fall through to a plain exit.
		time.Sleep(100 * time.Millisecond)
	}
	os.Exit(code)
}
