package exitmon

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The reaper is tested with this test binary as the daemon: started with
// roleEnv set, TestMain runs the role instead of the tests, after
// RunUnderReaper, exactly as embedshim-containerd's main does.
const roleEnv = "ES_REAPER_TEST_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	os.Exit(m.Run())
}

// runRole is the "daemon": it says who it is, then does what role says.
func runRole(role string) int {
	RunUnderReaper()
	fmt.Printf("daemon %d %d\n", os.Getpid(), os.Getppid())
	verb, arg, _ := strings.Cut(role, ":")
	switch verb {
	case "exit":
		n, _ := strconv.Atoi(arg)
		return n
	case "kill": // die of a signal once stdin is closed
		n, _ := strconv.Atoi(arg)
		io.Copy(io.Discard, os.Stdin)
		signal.Reset()
		syscall.Kill(os.Getpid(), syscall.Signal(n))
		time.Sleep(time.Hour)
	case "echo": // print each signal received; exit 0 on SIGTERM
		c := make(chan os.Signal, 8)
		signal.Notify(c, syscall.SIGHUP, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM)
		fmt.Println("ready")
		for s := range c {
			fmt.Println(s.(syscall.Signal).String())
			if s == syscall.SIGTERM {
				return 0
			}
		}
	case "orphan": // leave an orphan, wait for own children, exit at stdin EOF
		out, err := exec.Command("/bin/sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!").Output()
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Printf("orphan %s", out)
		// The reaper waits for orphans only: our own children's
		// statuses stay ours.
		for i := 0; i < 20; i++ {
			err := exec.Command("/bin/sh", "-c", "exit 5").Run()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 {
				fmt.Println("own child:", err)
				return 1
			}
		}
		fmt.Println("own children ok")
		io.Copy(io.Discard, os.Stdin)
		if arg != "" {
			n, _ := strconv.Atoi(arg)
			return n
		}
	}
	return 0
}

// roleProc is the front (cmd, pid P) and what the daemon said.
type roleProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	daemon int // pid of the daemon
	reaper int // its parent
}

func startRole(t *testing.T, role string, env ...string) *roleProc {
	t.Helper()
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(append(os.Environ(), roleEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	// A dying test takes the front down, and with it the daemon.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &roleProc{cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines) // EOF: nobody holds the front's stdout any more
	}()
	var pid, ppid int
	if _, err := fmt.Sscanf(p.line(t), "daemon %d %d", &pid, &ppid); err != nil {
		t.Fatal(err)
	}
	p.daemon, p.reaper = pid, ppid
	t.Cleanup(func() {
		for _, pid := range []int{p.daemon, p.reaper} {
			if pid > 1 && pid != cmd.Process.Pid && pid != os.Getpid() && procParent(pid) >= 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
	})
	return p
}

// line returns the daemon's next stdout line ("" at EOF).
func (p *roleProc) line(t *testing.T) string {
	t.Helper()
	select {
	case l := <-p.lines:
		return l
	case <-time.After(30 * time.Second):
		t.Fatal("no output from the daemon within 30s")
		return ""
	}
}

// checkTree checks front -> reaper -> daemon.
func (p *roleProc) checkTree(t *testing.T) {
	t.Helper()
	front := p.cmd.Process.Pid
	if p.daemon == front || p.reaper == front {
		t.Fatalf("daemon %d (parent %d) is not under a reaper forked by the front %d", p.daemon, p.reaper, front)
	}
	if pp := procParent(p.reaper); pp != front {
		t.Fatalf("reaper %d has parent %d, want the front %d", p.reaper, pp, front)
	}
	if c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.reaper)); strings.TrimSpace(string(c)) != "es-reaper" {
		t.Fatalf("reaper comm %q", c)
	}
}

// procParent returns pid's parent, 0 if pid is a zombie, -1 if it is gone.
func procParent(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if f[0] == "Z" {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// awaitGone polls until pid is gone (reaped); with gone=false a zombie
// counts too (a process whose parent is the host's init, which reaps late).
func awaitGone(t *testing.T, pid int, zombieOK bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pp := procParent(pid)
		if pp < 0 || (zombieOK && pp == 0) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %d still there (parent %d) after 10s", what, pid, pp)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func needReaperEnv(t *testing.T) {
	t.Helper()
	if os.Getenv(ReaperEnv) == "off" {
		t.Skip(ReaperEnv + "=off")
	}
}

func TestReaperForwardsExitCode(t *testing.T) {
	needReaperEnv(t)
	p := startRole(t, "exit:7")
	err := p.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("front exited with %v, want code 7", err)
	}
}

func TestReaperForwardsDeathBySignal(t *testing.T) {
	needReaperEnv(t)
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM, syscall.SIGHUP} {
		p := startRole(t, fmt.Sprintf("kill:%d", sig))
		p.checkTree(t)
		p.stdin.Close()
		p.cmd.Wait()
		ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != sig || ws.CoreDump() {
			t.Fatalf("front: %v, want killed by %v without a core dump", p.cmd.ProcessState, sig)
		}
	}
}

func TestReaperForwardsSignals(t *testing.T) {
	needReaperEnv(t)
	p := startRole(t, "echo")
	p.checkTree(t)
	if l := p.line(t); l != "ready" {
		t.Fatalf("got %q", l)
	}
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM} {
		if err := p.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		if l := p.line(t); l != sig.String() {
			t.Fatalf("sent %v to the front, daemon got %q", sig, l)
		}
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("front: %v, want exit 0", err)
	}
}

// An orphan of the daemon's tree is reparented to the reaper (not the host's
// init) and reaped by it once it exits; the daemon's own children stay its.
func TestReaperReapsOrphans(t *testing.T) {
	needReaperEnv(t)
	p := startRole(t, "orphan")
	p.checkTree(t)
	var orphan int
	if _, err := fmt.Sscanf(p.line(t), "orphan %d", &orphan); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(orphan, syscall.SIGKILL) })
	if pp := procParent(orphan); pp != p.reaper {
		t.Fatalf("orphan %d has parent %d, want the reaper %d", orphan, pp, p.reaper)
	}
	if l := p.line(t); l != "own children ok" {
		t.Fatal(l)
	}
	syscall.Kill(orphan, syscall.SIGKILL)
	// Only its parent, the reaper, can make it disappear.
	awaitGone(t, orphan, false, "orphan")

	p.stdin.Close()
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("front: %v, want exit 0", err)
	}
	// With no child left, the reaper exits too (its parent is now the
	// host's init, so it may stay a zombie for a while).
	awaitGone(t, p.reaper, true, "reaper")
}

// The reaper outlives the daemon while it has children, so the containers'
// parent survives a daemon exit; the front still exits with the daemon's
// status and releases the daemon's stdout.
func TestReaperOutlivesDaemon(t *testing.T) {
	needReaperEnv(t)
	p := startRole(t, "orphan:3")
	var orphan int
	if _, err := fmt.Sscanf(p.line(t), "orphan %d", &orphan); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(orphan, syscall.SIGKILL) })
	p.line(t)
	p.stdin.Close()
	for l := range p.lines {
		t.Fatalf("unexpected output %q", l)
	}
	if err := p.cmd.Wait(); p.cmd.ProcessState.ExitCode() != 3 {
		t.Fatalf("front: %v, want exit 3", err)
	}
	awaitGone(t, p.daemon, false, "daemon")
	if pp := procParent(orphan); pp != p.reaper {
		t.Fatalf("orphan %d has parent %d after the daemon exited, want the reaper %d", orphan, pp, p.reaper)
	}
	syscall.Kill(orphan, syscall.SIGKILL)
	awaitGone(t, orphan, false, "orphan")
	awaitGone(t, p.reaper, true, "reaper")
}

// A SIGKILLed front takes the daemon down (no daemon runs on without the pid
// its supervisor knows); the reaper stays for the orphans.
func TestReaperFrontKilled(t *testing.T) {
	needReaperEnv(t)
	p := startRole(t, "orphan")
	var orphan int
	if _, err := fmt.Sscanf(p.line(t), "orphan %d", &orphan); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(orphan, syscall.SIGKILL) })
	p.line(t)
	p.cmd.Process.Kill()
	p.cmd.Wait()
	awaitGone(t, p.daemon, false, "daemon")
	if pp := procParent(orphan); pp != p.reaper {
		t.Fatalf("orphan %d has parent %d, want the reaper %d", orphan, pp, p.reaper)
	}
	syscall.Kill(orphan, syscall.SIGKILL)
	awaitGone(t, orphan, false, "orphan")
	awaitGone(t, p.reaper, true, "reaper")
}

// A SIGKILLed reaper takes the daemon down (parent-death signal) and the
// front exits as killed.
func TestReaperKilled(t *testing.T) {
	needReaperEnv(t)
	p := startRole(t, "orphan")
	var orphan int
	if _, err := fmt.Sscanf(p.line(t), "orphan %d", &orphan); err != nil {
		t.Fatal(err)
	}
	// With the reaper gone it is the host's init's: end it here.
	t.Cleanup(func() { syscall.Kill(orphan, syscall.SIGKILL) })
	p.line(t)
	syscall.Kill(p.reaper, syscall.SIGKILL)
	p.cmd.Wait()
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("front: %v, want killed by SIGKILL", p.cmd.ProcessState)
	}
	awaitGone(t, p.daemon, true, "daemon")
}

func TestReaperOff(t *testing.T) {
	p := startRole(t, "exit:0", ReaperEnv+"=off")
	if p.daemon != p.cmd.Process.Pid {
		t.Fatalf("with %s=off the daemon is pid %d, not the started pid %d", ReaperEnv, p.daemon, p.cmd.Process.Pid)
	}
	p.cmd.Wait()
}
