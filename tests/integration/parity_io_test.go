//go:build linux

package integration

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// runTaskIO creates a task of c with creator as its IO, runs it to its end and
// deletes it; Delete waits for the stdio to reach EOF, within ioTimeout.
func (e *env) runTaskIO(t *testing.T, c containerd.Container, creator cio.Creator) uint32 {
	t.Helper()
	task, err := c.NewTask(e.ctx, creator)
	if err != nil {
		t.Fatalf("new task: %v", err)
	}
	code := e.startAndWait(t, task)
	// The client's copies end (EOF) at the exit, before any delete.
	withinOrFail(t, ioTimeout, "stdio EOF after exit", task.IO().Wait)
	var derr error
	withinOrFail(t, ioTimeout, "task delete", func() { _, derr = task.Delete(e.ctx) })
	if derr != nil {
		t.Fatalf("task delete: %v", derr)
	}
	return code
}

// Large init output on stdout and stderr: every byte arrives.
func TestParityIOLargeInitOutput(t *testing.T) {
	e := newEnv(t)
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		e := e.boundedEnv(t, subtestTimeout)
		c := e.container(t, rt, "large", oci.WithProcessArgs("sh", "-c",
			"yes 0123456789abcdef | head -c 8000000; yes err | head -c 2000000 >&2; exit 4"))
		var stdout, stderr byteDigest
		code := e.runTaskIO(t, c, cio.NewCreator(cio.WithStreams(nil, &stdout, &stderr)))
		if stdout.n != 8000000 || stderr.n != 2000000 {
			t.Errorf("got %d stdout and %d stderr bytes, want 8000000 and 2000000", stdout.n, stderr.n)
		}
		return []string{fmt.Sprint(code), stdout.String(), stderr.String()}
	})
}

// stdin from the client, then CloseIO: cat sees EOF, exits 0 and has echoed
// everything; for the init and for an exec.
func TestParityIOStdinCloseIO(t *testing.T) {
	e := newEnv(t)
	data := bytes.Repeat([]byte("0123456789 stdin relay\n"), 20000) // 460 kB
	type obs struct {
		InitCode, ExecCode uint32
		Init, Exec         string
	}
	feed := func(t *testing.T, p containerd.Process, w io.WriteCloser) {
		t.Helper()
		if _, err := w.Write(data); err != nil {
			t.Fatalf("write stdin: %v", err)
		}
		w.Close()
		if err := p.CloseIO(e.ctx, containerd.WithStdinCloser); err != nil {
			t.Fatalf("close io: %v", err)
		}
	}
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		e := e.boundedEnv(t, subtestTimeout)
		var o obs

		c := e.container(t, rt, "cat", oci.WithProcessArgs("cat"))
		inR, inW := io.Pipe()
		var out byteDigest
		task, err := c.NewTask(e.ctx, cio.NewCreator(cio.WithStreams(inR, &out, io.Discard)))
		if err != nil {
			t.Fatalf("new task: %v", err)
		}
		ch, err := task.Wait(e.ctx)
		if err != nil {
			t.Fatalf("wait: %v", err)
		}
		if err := task.Start(e.ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		feed(t, task, inW)
		o.InitCode = e.exitCode(t, ch)
		withinOrFail(t, ioTimeout, "task delete", func() { _, err = task.Delete(e.ctx) })
		if err != nil {
			t.Fatalf("task delete: %v", err)
		}
		o.Init = out.String()

		sc, stask := e.sleeperTask(t, rt)
		inR, inW = io.Pipe()
		var eout byteDigest
		p, err := stask.Exec(e.ctx, "cat", e.execSpec(t, sc, false, "cat"), cio.NewCreator(cio.WithStreams(inR, &eout, io.Discard)))
		if err != nil {
			t.Fatalf("exec: %v", err)
		}
		ech, err := p.Wait(e.ctx)
		if err != nil {
			t.Fatalf("wait: %v", err)
		}
		if err := p.Start(e.ctx); err != nil {
			t.Fatalf("exec start: %v", err)
		}
		feed(t, p, inW)
		o.ExecCode = e.exitCode(t, ech)
		withinOrFail(t, ioTimeout, "exec delete", func() { _, err = p.Delete(e.ctx) })
		if err != nil {
			t.Fatalf("exec delete: %v", err)
		}
		o.Exec = eout.String()
		var want byteDigest
		want.Write(data)
		if o.Init != want.String() || o.Exec != want.String() {
			t.Errorf("cat output: init %s, exec %s; want %s", o.Init, o.Exec, want.String())
		}
		return o
	})
}

// A terminal for the init: stdin through the pty, a resize seen by the
// container (busybox `stty size` prints "rows cols"), output with the tty's
// line endings, exit code.
func TestParityIOTTYResize(t *testing.T) {
	e := newEnv(t)
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		e := e.boundedEnv(t, subtestTimeout)
		c := e.container(t, rt, "tty", oci.WithTTY, oci.WithProcessArgs("sh", "-c",
			"test -t 0 && test -t 1 && test -t 2 && echo tty; read x; echo got $x; stty size; exit 6"))
		var out lockedBuffer
		inR, inW := io.Pipe()
		defer inW.Close()
		task, err := c.NewTask(e.ctx, cio.NewCreator(cio.WithStreams(inR, &out, nil), cio.WithTerminal))
		if err != nil {
			t.Fatalf("new task: %v", err)
		}
		ch, err := task.Wait(e.ctx)
		if err != nil {
			t.Fatalf("wait: %v", err)
		}
		if err := task.Start(e.ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		waitForOutput(t, &out, "tty\r\n")
		if err := task.Resize(e.ctx, 100, 40); err != nil {
			t.Fatalf("resize: %v", err)
		}
		io.WriteString(inW, "hello\n")
		code := e.exitCode(t, ch)
		inW.Close()
		withinOrFail(t, ioTimeout, "task delete", func() { _, err = task.Delete(e.ctx) })
		if err != nil {
			t.Fatalf("task delete: %v", err)
		}
		if !strings.Contains(out.String(), "40 100") {
			t.Errorf("stty size after resize to 100x40: %q", out.String())
		}
		return outcome{Code: code, Stdout: out.String()}
	})
}

// file:// log URI: the file holds stdout and stderr after the task ended.
func TestParityIOLogFile(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		e := e.boundedEnv(t, subtestTimeout)
		path := filepath.Join(dir, shortName(rt), "sub", "log")
		c := e.container(t, rt, "logfile", oci.WithProcessArgs("sh", "-c",
			"echo out1; echo err1 >&2; yes line | head -n 20000; exit 2"))
		code := e.runTaskIO(t, c, cio.LogFile(path))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("log file: %v", err)
		}
		if want := 5 + 5 + 5*20000; len(b) != want {
			t.Errorf("log file: %d bytes, want %d", len(b), want)
		}
		// Two copy loops write to the file in runc.v2: compare lines
		// regardless of the interleaving of stdout and stderr.
		return []string{fmt.Sprint(code), countedLines(string(b))}
	})
}

func countedLines(s string) string {
	lines := strings.Split(s, "\n")
	sort.Strings(lines)
	counts := map[string]int{}
	var order []string
	for _, l := range lines {
		if counts[l] == 0 {
			order = append(order, l)
		}
		counts[l]++
	}
	var b strings.Builder
	for _, l := range order {
		fmt.Fprintf(&b, "%q x%d; ", l, counts[l])
	}
	return b.String()
}

// binaryLoggerSrc is a logging binary for binary:// URIs, on containerd's
// runtime/v2/logging protocol: it writes what it read from the container's
// stdout and stderr, with CONTAINER_ID and CONTAINER_NAMESPACE, to the file
// given as -f.
const binaryLoggerSrc = `package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/containerd/containerd/runtime/v2/logging"
)

func main() {
	file := flag.String("f", "", "output file")
	flag.Parse()
	logging.Run(func(ctx context.Context, cfg *logging.Config, ready func() error) error {
		f, err := os.OpenFile(*file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0644)
		if err != nil {
			return err
		}
		defer f.Close()
		var mu sync.Mutex
		var wg sync.WaitGroup
		read := func(name string, r io.Reader) {
			defer wg.Done()
			b, err := io.ReadAll(r)
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(f, "%s %d bytes %q err=%v\n", name, len(b), b[:min(len(b), 40)], err)
		}
		wg.Add(2)
		go read("stdout", cfg.Stdout)
		go read("stderr", cfg.Stderr)
		if err := ready(); err != nil {
			return err
		}
		wg.Wait()
		fmt.Fprintf(f, "id=%s namespace=%s\n", cfg.ID, cfg.Namespace)
		return nil
	})
}
`

// buildBinaryLogger builds binaryLoggerSrc into the test's temp dir (removed
// with it), with the tests module's go.mod and go.sum less its requirement of
// this repository (offline: the module cache has containerd).
func buildBinaryLogger(t *testing.T) string {
	t.Helper()
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	raw, err := os.ReadFile(filepath.Join(repo, "tests", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var mod []byte
	for i, l := range strings.Split(string(raw), "\n") {
		switch {
		case i == 0:
			l = "module binlogger"
		case strings.Contains(l, "github.com/embedshim/embedshim"):
			continue
		}
		mod = append(mod, l+"\n"...)
	}
	sum, _ := os.ReadFile(filepath.Join(repo, "tests", "go.sum"))
	for name, b := range map[string][]byte{"go.mod": mod, "go.sum": sum, "main.go": []byte(binaryLoggerSrc)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "binlogger")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build binary logger: %v\n%s", err, out)
	}
	return bin
}

// binary:// log URI: a logging binary started by the runtime receives the
// init's and an exec's stdout and stderr, with its id and namespace, and has
// written everything once the process is deleted.
func TestParityIOBinaryLogger(t *testing.T) {
	bin := buildBinaryLogger(t)
	e := newEnv(t)
	dir := t.TempDir()
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		e := e.boundedEnv(t, subtestTimeout)
		initLog := filepath.Join(dir, shortName(rt)+"-init.log")
		c := e.container(t, rt, "binlog", oci.WithProcessArgs("sh", "-c",
			"echo out; echo err >&2; yes | head -c 3000000; exit 3"))
		code := e.runTaskIO(t, c, cio.BinaryIO(bin, map[string]string{"-f": initLog}))
		initOut, err := os.ReadFile(initLog)
		if err != nil {
			t.Fatalf("init log: %v", err)
		}
		if !strings.Contains(string(initOut), "stdout 3000004 bytes") || !strings.Contains(string(initOut), `stderr 4 bytes "err\n"`) {
			t.Errorf("init log:\n%s", initOut)
		}

		// With a terminal, the logger gets the terminal's output on its
		// stdout pipe.
		ttyLog := filepath.Join(dir, shortName(rt)+"-tty.log")
		tc := e.container(t, rt, "binlog-tty", oci.WithTTY, oci.WithProcessArgs("sh", "-c", "echo tty-out; echo tty-err >&2; exit 5"))
		tcode := e.runTaskIO(t, tc, func(id string) (cio.IO, error) {
			i, err := cio.BinaryIO(bin, map[string]string{"-f": ttyLog})(id)
			if err != nil {
				return nil, err
			}
			return &terminalIO{i}, nil
		})
		ttyOut, err := os.ReadFile(ttyLog)
		if err != nil {
			t.Fatalf("tty log: %v", err)
		}
		if !strings.Contains(string(ttyOut), `tty-out\r\ntty-err\r\n`) {
			t.Errorf("tty log:\n%s", ttyOut)
		}

		execLog := filepath.Join(dir, shortName(rt)+"-exec.log")
		sc, task := e.sleeperTask(t, rt)
		ecode := e.execToExit(t, sc, task, "logged", e.execSpec(t, sc, false, "sh", "-c", "echo exec-out; echo exec-err >&2; exit 9"),
			cio.BinaryIO(bin, map[string]string{"-f": execLog}))
		execOut, err := os.ReadFile(execLog)
		if err != nil {
			t.Fatalf("exec log: %v", err)
		}
		// Both loggers must be gone once their process is deleted (they
		// exit at EOF, on their own time: wait, with a deadline).
		deadline := time.Now().Add(eventDeadline)
		for pids := pidsRunning(bin); len(pids) > 0; pids = pidsRunning(bin) {
			if time.Now().After(deadline) {
				t.Errorf("logger still running %s after delete: pids %v", eventDeadline, pids)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The logger's two readers finish in any order: sort its lines.
		return []string{
			fmt.Sprint(code),
			sortLogLines(strings.ReplaceAll(string(initOut), c.ID(), "<container-id>")),
			fmt.Sprint(ecode),
			sortLogLines(string(execOut)),
			fmt.Sprint(tcode),
			sortLogLines(strings.ReplaceAll(string(ttyOut), tc.ID(), "<container-id>")),
		}
	})
}

func sortLogLines(s string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// pidsRunning lists the live processes whose command line starts with bin.
func pidsRunning(bin string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.HasPrefix(string(b), bin+"\x00") {
			out = append(out, e.Name())
		}
	}
	return out
}

// terminalIO marks a log URI IO (cio.BinaryIO) as a terminal's.
type terminalIO struct{ cio.IO }

func (t *terminalIO) Config() cio.Config {
	c := t.IO.Config()
	c.Terminal = true
	return c
}
