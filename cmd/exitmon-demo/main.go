// Command exitmon-demo shows the exit-tracking core on its own: it starts a
// few processes, tracks them with pidfds and the BPF exit recorder, then
// closes the monitor while tracked processes exit (a simulated restart) and
// finds their statuses in the pinned maps after reopening.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/embedshim/embedshim/go/exitmon"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "exitmon-demo:", err)
		os.Exit(1)
	}
}

func start(script string) (*exec.Cmd, error) {
	cmd := exec.Command("/bin/sh", "-c", script)
	return cmd, cmd.Start()
}

func run() error {
	scratch, err := os.MkdirTemp("", "exitmon-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	pins := filepath.Join(scratch, "bpf")
	defer exitmon.DestroyPins(pins)

	m, err := exitmon.Open(pins, exitmon.Options{})
	if err != nil {
		return err
	}
	fmt.Printf("monitor open, pins under %s, capacity %d\n", pins, m.Capacity())

	scripts := []string{"sleep 0.2; exit 0", "sleep 0.3; exit 3", "sleep 0.4; kill -KILL $$", "sleep 0.5; kill -TERM $$"}
	var cmds []*exec.Cmd
	for _, s := range scripts {
		cmd, err := start(s)
		if err != nil {
			return err
		}
		if _, err := m.Register(cmd.Process.Pid, 0); err != nil {
			return err
		}
		cmds = append(cmds, cmd)
		fmt.Printf("  tracking pid %d: sh -c %q\n", cmd.Process.Pid, s)
	}
	for range cmds {
		e := <-m.Exits()
		fmt.Printf("  exit: pid %d status %d (%s ago)\n", e.Pid, exitmon.ExitStatus(e.Status), time.Since(e.ExitedAt).Round(time.Microsecond))
		m.Forget(e.Pid, e.Ident)
	}
	for _, c := range cmds {
		c.Wait()
	}

	fmt.Println("simulated restart: closing the monitor while two tracked processes exit")
	a, _ := start("sleep 0.1; exit 42")
	b, _ := start("sleep 0.3; exit 7")
	ia, errA := m.Register(a.Process.Pid, 0)
	ib, errB := m.Register(b.Process.Pid, 0)
	if errA != nil || errB != nil {
		return fmt.Errorf("register: %v %v", errA, errB)
	}
	m.Close()
	a.Wait()
	b.Wait()

	m, err = exitmon.Open(pins, exitmon.Options{})
	if err != nil {
		return err
	}
	defer m.Close()
	for _, p := range []struct {
		cmd   *exec.Cmd
		ident uint64
	}{{a, ia}, {b, ib}} {
		e, err := m.Lookup(p.cmd.Process.Pid, p.ident)
		if err != nil || e == nil {
			return fmt.Errorf("lookup %d: %v", p.cmd.Process.Pid, err)
		}
		ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
		fmt.Printf("  recovered: pid %d status %d (waitpid said %d)\n", e.Pid, exitmon.ExitStatus(e.Status), exitmon.ExitStatus(uint32(ws)))
		m.Forget(e.Pid, e.Ident)
	}
	return nil
}
