//go:build linux

// Package harness runs a private bin/embedshim-containerd for integration
// tests and benchmarks, and cleans up after it.
//
// Each StartDaemon call gets its own temp dir (/tmp/es-*) holding everything
// the daemon writes: config.toml, root/, state/, the gRPC and ttrpc sockets,
// the embed plugin's bpffs pin dir (bpf/), the opt plugin dir and the daemon
// log (daemon.log). <repo>/bin is first in the daemon's PATH so the runc.v2
// shim is bin/containerd-shim-runc-v2. Each daemon gets a unique containerd
// namespace ("t-<test>-<random>"); processes, cgroups (/<ns>/...) and runc
// state (/run/containerd/runc/<ns>) in that namespace are the test's own, so
// clean-up never touches anything of another daemon or test.
//
// Typical use:
//
//	d := harness.StartDaemon(t, harness.Options{})
//	ctx := d.Context()
//	img := d.ImportTestImage(ctx)
//	check := d.LeakCheck(t)   // snapshot now, compare at the end
//	defer check()
//	... d.Client().NewContainer(ctx, ...)
//
// Tests that need root or the binaries skip (not fail) when they are missing:
// build them with `make containerd-bins` (and `make test-image`, though the
// harness builds the image itself if it is missing).
package harness

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
)

// EmbedPluginID is the embed runtime's plugin (and runtime) name.
const EmbedPluginID = "io.containerd.runtime.v1.embed"

// RuncV2 is the runc.v2 shim runtime name, the oracle in comparisons.
const RuncV2 = "io.containerd.runc.v2"

// EmbedMode says what StartDaemon does about the embed plugin's config.
type EmbedMode int

const (
	// EmbedAuto writes the [plugins."io.containerd.runtime.v1.embed"]
	// section (pin_dir = <dir>/bpf) only if the binary knows the plugin
	// (its `config default` output mentions it).
	EmbedAuto EmbedMode = iota
	// EmbedConfigure always writes the section.
	EmbedConfigure
	// EmbedOmit never writes it (the plugin, if linked in, uses defaults:
	// its pins then live under /sys/fs/bpf/embedshim/, and clean-up
	// removes them with `embedshim remove-pins`).
	EmbedOmit
	// EmbedDisable adds the plugin to disabled_plugins.
	EmbedDisable
)

// Options configure StartDaemon. The zero value is a sensible default.
type Options struct {
	// Binary is the daemon; default $EMBEDSHIM_CONTAINERD or
	// <repo>/bin/embedshim-containerd.
	Binary string
	// Namespace is the client's default namespace; default a unique
	// "t-<test name>-<random>". Harness clean-up only removes cgroups and
	// runc state of harness-generated or TrackNamespace'd namespaces.
	Namespace string
	// Embed controls the embed plugin's config section.
	Embed EmbedMode
	// PinDir is the embed plugin's pin_dir; default <dir>/bpf.
	PinDir string
	// EmbedConfig is extra TOML lines put in the embed section
	// (e.g. "capacity = 16").
	EmbedConfig string
	// EnableCRI keeps the CRI plugin; by default it is disabled (faster
	// start, nothing to interfere).
	EnableCRI bool
	// DisabledPlugins are added to disabled_plugins.
	DisabledPlugins []string
	// ExtraConfig is raw TOML appended to config.toml.
	ExtraConfig string
	// Debug turns on the daemon's debug server ([debug] address) on the
	// unix socket Daemon.DebugAddress (<dir>/debug.sock), serving
	// /debug/pprof and /debug/vars. It cannot go in ExtraConfig: the
	// harness writes the [debug] table itself, and TOML forbids a table
	// twice.
	Debug bool
	// StateTmpfsMiB, if > 0, mounts a tmpfs of that many MiB at the
	// daemon's State dir before its first start (see statefs.go): a
	// state filesystem small enough to fill on purpose. Clean-up
	// unmounts it last of the mounts under it.
	StateTmpfsMiB int
	// LogLevel is the daemon's --log-level; default "debug".
	LogLevel string
	// Env is added to the daemon's environment.
	Env []string
	// StartTimeout bounds waiting for the daemon to serve; default 30s.
	StartTimeout time.Duration
	// LeakProbes are extra named checks for LeakCheck (e.g. the embed
	// runtime's BPF map entries): each returns a list of items owned by
	// the daemon; items that appear between snapshot and check are leaks.
	LeakProbes map[string]func(d *Daemon) ([]string, error)
}

// Daemon is a running (or stopped) embedshim-containerd.
type Daemon struct {
	t    testing.TB
	opts Options

	Repo         string // repository root
	Binary       string // daemon binary
	Dir          string // temp dir holding everything below
	Root         string // containerd root
	State        string // containerd state
	Address      string // gRPC socket
	TTRPCAddress string // ttrpc socket
	ConfigPath   string // config.toml
	LogPath      string // daemon stdout+stderr (all starts appended)
	PinDir       string // embed plugin pin_dir (if configured)
	DebugAddress string // debug server socket (Options.Debug), else ""
	Namespace    string // default namespace of Client() and Context()

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	exitErr  error
	client   *containerd.Client
	owned    map[string]bool // namespaces we may clean cgroups/runc state of
	starts   int
	embedCfg bool

	// see reaper.go
	daemonPid int
	reaperPid int
	reapers   map[int]bool
}

var nsSanitize = regexp.MustCompile(`[^a-zA-Z0-9]+`)

// RepoRoot finds the repository root (the dir with this module's go.mod)
// upwards from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/embedshim/embedshim\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root (go.mod of github.com/embedshim/embedshim) not found")
		}
		dir = parent
	}
}

// Requirements skips t unless running as root with bin/embedshim-containerd
// (or $EMBEDSHIM_CONTAINERD), the ctr and containerd-shim-runc-v2 of its
// containerd version (ToolsDir) and runc present. Under `make test`
// (EMBEDSHIM_REQUIRE_ALL=1) a missing prerequisite fails the test instead:
// a skip must never pass for a test that ran.
// It returns the repo root and the daemon binary.
func Requirements(t testing.TB, binary string) (repo, bin string) {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("EMBEDSHIM_REQUIRE_ALL") == "1" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("integration tests need root (containerd, runc, mounts, bpf)")
	}
	repo, err := RepoRoot()
	if err != nil {
		skip("integration tests: %v", err)
	}
	bin = binary
	if bin == "" {
		bin = os.Getenv("EMBEDSHIM_CONTAINERD")
	}
	if bin == "" {
		bin = filepath.Join(repo, "bin", "embedshim-containerd")
	}
	if _, err := os.Stat(bin); err != nil {
		skip("%s missing: run `make containerd-bins` first (%v)", bin, err)
	}
	for _, tool := range []string{"containerd-shim-runc-v2", "ctr"} {
		if _, err := os.Stat(filepath.Join(ToolsDir(repo, bin), tool)); err != nil {
			skip("%s missing: run `make containerd-bins` first", filepath.Join(ToolsDir(repo, bin), tool))
		}
	}
	if _, err := exec.LookPath("runc"); err != nil {
		skip("runc not in PATH")
	}
	return repo, bin
}

// dropDeprecationWarnings removes the warnings containerd 2.x's ctr prints on
// every call on this host (cgroup v1 is deprecated): not what a test checks.
func dropDeprecationWarnings(b []byte) []byte {
	var out []byte
	for _, l := range bytes.SplitAfter(b, []byte("\n")) {
		if !bytes.Contains(l, []byte(`level=warning msg="DEPRECATION:`)) {
			out = append(out, l...)
		}
	}
	return out
}

// IsContainerd17 tells the containerd 1.7 build (bin/embedshim-containerd-1.7)
// from the default containerd 2.x one, by name.
func IsContainerd17(daemon string) bool {
	return strings.HasSuffix(filepath.Base(daemon), "-1.7")
}

// ToolsDir is where the ctr and containerd-shim-runc-v2 built from the
// daemon's own containerd version are: <repo>/bin for the default build
// (containerd 2.3), <repo>/bin/1.7 for bin/embedshim-containerd-1.7.
func ToolsDir(repo, daemon string) string {
	if IsContainerd17(daemon) {
		return filepath.Join(repo, "bin", "1.7")
	}
	return filepath.Join(repo, "bin")
}

// StartDaemon starts a private daemon and returns it serving, with a client
// connected. Everything is cleaned up by t.Cleanup (see Daemon.cleanup); on
// failure the daemon log is printed with t.Log.
func StartDaemon(t testing.TB, opts Options) *Daemon {
	t.Helper()
	repo, bin := Requirements(t, opts.Binary)

	dir, err := os.MkdirTemp("", "es-")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	d := &Daemon{
		t:            t,
		opts:         opts,
		Repo:         repo,
		Binary:       bin,
		Dir:          dir,
		Root:         filepath.Join(dir, "root"),
		State:        filepath.Join(dir, "state"),
		Address:      filepath.Join(dir, "containerd.sock"),
		TTRPCAddress: filepath.Join(dir, "containerd.sock.ttrpc"),
		ConfigPath:   filepath.Join(dir, "config.toml"),
		LogPath:      filepath.Join(dir, "daemon.log"),
		owned:        map[string]bool{},
		reapers:      map[int]bool{},
	}
	t.Cleanup(d.cleanup)
	if opts.Debug {
		d.DebugAddress = filepath.Join(dir, "debug.sock")
	}

	d.Namespace = opts.Namespace
	if d.Namespace == "" {
		d.Namespace = d.NewNamespace()
	}
	if err := d.writeConfig(); err != nil {
		t.Fatalf("write config: %v", err)
	}
	if opts.StateTmpfsMiB > 0 {
		if err := d.mountStateTmpfs(opts.StateTmpfsMiB); err != nil {
			t.Fatalf("state tmpfs: %v", err)
		}
	}
	if err := d.start(); err != nil {
		t.Fatalf("start daemon: %v", err)
	}
	return d
}

// NewNamespace returns a fresh unique namespace name derived from the test
// name, owned by this daemon (its cgroups and runc state are cleaned up).
func (d *Daemon) NewNamespace() string {
	name := strings.Trim(nsSanitize.ReplaceAllString(strings.ToLower(d.t.Name()), "-"), "-")
	if len(name) > 40 {
		name = name[:40]
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	ns := "t-" + name + "-" + hex.EncodeToString(b[:])
	d.TrackNamespace(ns)
	return ns
}

// TrackNamespace marks ns as owned by this test: clean-up removes its
// cgroups (/<ns>/... in every hierarchy) and /run/containerd/runc/<ns>, and
// LeakCheck looks at its processes. Do not track namespaces other tests or
// daemons may use (like "default").
func (d *Daemon) TrackNamespace(ns string) {
	d.mu.Lock()
	d.owned[ns] = true
	d.mu.Unlock()
}

func (d *Daemon) ownedNamespaces() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for ns := range d.owned {
		out = append(out, ns)
	}
	return out
}

var (
	pluginKnownMu sync.Mutex
	pluginKnown   = map[string]bool{}
)

// BinaryHasEmbed reports whether the daemon binary links the embed plugin
// (its `config default` mentions io.containerd.runtime.v1.embed).
func BinaryHasEmbed(bin string) bool {
	pluginKnownMu.Lock()
	defer pluginKnownMu.Unlock()
	if v, ok := pluginKnown[bin]; ok {
		return v
	}
	out, err := exec.Command(bin, "config", "default").Output()
	// containerd 2.x quotes section names with ', 1.7 with ".
	v := err == nil && (bytes.Contains(out, []byte(`"`+EmbedPluginID+`"`)) || bytes.Contains(out, []byte(`'`+EmbedPluginID+`'`)))
	pluginKnown[bin] = v
	return v
}

// HasEmbed reports whether this daemon's binary has the embed plugin and
// the harness configured it (or the config mode left it at its defaults).
func (d *Daemon) HasEmbed() bool {
	return d.opts.Embed != EmbedDisable && BinaryHasEmbed(d.Binary)
}

// RuncV2Root is runc.v2's runc --root for namespace ns (its default).
func RuncV2Root(ns string) string { return filepath.Join("/run/containerd/runc", ns) }

// EmbedRuncRoot is the embed runtime's default runc --root for namespace ns:
// under its state dir, apart from runc.v2's.
func (d *Daemon) EmbedRuncRoot(ns string) string {
	return filepath.Join(d.State, EmbedPluginID, ".runc", ns)
}

func tomlString(s string) string { return fmt.Sprintf("%q", s) }

func (d *Daemon) writeConfig() error {
	var b strings.Builder
	v1 := IsContainerd17(d.Binary)
	disabled := append([]string{}, d.opts.DisabledPlugins...)
	if !d.opts.EnableCRI {
		disabled = append(disabled, "io.containerd.grpc.v1.cri")
		if !v1 {
			// containerd 2.x splits CRI into three plugins.
			disabled = append(disabled, "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images")
		}
	}
	switch d.opts.Embed {
	case EmbedAuto:
		d.embedCfg = BinaryHasEmbed(d.Binary)
	case EmbedConfigure:
		d.embedCfg = true
	case EmbedDisable:
		disabled = append(disabled, EmbedPluginID)
	}
	// containerd 2.x reads version 3, 1.7 version 2; the sections used
	// here have the same names in both.
	if v1 {
		fmt.Fprintf(&b, "version = 2\n")
	} else {
		fmt.Fprintf(&b, "version = 3\n")
	}
	fmt.Fprintf(&b, "root = %s\nstate = %s\n", tomlString(d.Root), tomlString(d.State))
	var q []string
	for _, p := range disabled {
		q = append(q, tomlString(p))
	}
	fmt.Fprintf(&b, "disabled_plugins = [%s]\n\n", strings.Join(q, ", "))
	fmt.Fprintf(&b, "[grpc]\n  address = %s\n\n", tomlString(d.Address))
	fmt.Fprintf(&b, "[ttrpc]\n  address = %s\n\n", tomlString(d.TTRPCAddress))
	fmt.Fprintf(&b, "[debug]\n  address = %s\n\n", tomlString(d.DebugAddress))
	fmt.Fprintf(&b, "[metrics]\n  address = \"\"\n\n")
	// keep everything under the temp dir and away from host-wide sockets
	fmt.Fprintf(&b, "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = %s\n\n", tomlString(filepath.Join(d.Dir, "opt")))
	fmt.Fprintf(&b, "[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = true\n\n")
	if !v1 {
		// runc.v2 shim sockets (1.7 keeps them in /run/containerd/s).
		fmt.Fprintf(&b, "[plugins.\"io.containerd.shim.v1.manager\"]\n  socket_dir = %s\n\n", tomlString(filepath.Join(d.Dir, "s")))
	}
	if d.embedCfg {
		d.PinDir = d.opts.PinDir
		if d.PinDir == "" {
			d.PinDir = filepath.Join(d.Dir, "bpf")
		}
		fmt.Fprintf(&b, "[plugins.%s]\n  pin_dir = %s\n", tomlString(EmbedPluginID), tomlString(d.PinDir))
		if d.opts.EmbedConfig != "" {
			b.WriteString(d.opts.EmbedConfig + "\n")
		}
		b.WriteString("\n")
	}
	if d.opts.ExtraConfig != "" {
		b.WriteString(d.opts.ExtraConfig + "\n")
	}
	return os.WriteFile(d.ConfigPath, []byte(b.String()), 0o644)
}

func (d *Daemon) start() error {
	logf, err := os.OpenFile(d.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	d.starts++
	fmt.Fprintf(logf, "=== harness: start #%d of %s at %s\n", d.starts, d.Binary, time.Now().Format(time.RFC3339Nano))

	level := d.opts.LogLevel
	if level == "" {
		level = "debug"
	}
	cmd := exec.Command(d.Binary, "--config", d.ConfigPath, "--log-level", level)
	cmd.Dir = d.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	env := os.Environ()
	path := ToolsDir(d.Repo, d.Binary)
	for i, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			path += ":" + strings.TrimPrefix(e, "PATH=")
			env = append(env[:i], env[i+1:]...)
			break
		}
	}
	if !strings.Contains(path, "/usr/sbin") {
		path += ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	env = append(env, "PATH="+path)
	env = append(env, d.opts.Env...)
	cmd.Env = env
	// own process group (no terminal signals); killed if the test binary dies
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	d.mu.Lock()
	d.cmd, d.exited, d.exitErr = cmd, exited, nil
	d.daemonPid, d.reaperPid = 0, 0
	d.mu.Unlock()
	go func() {
		err := cmd.Wait()
		d.mu.Lock()
		d.exitErr = err
		d.mu.Unlock()
		close(exited)
	}()

	timeout := d.opts.StartTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("daemon exited during start-up (%v); log:\n%s", d.exitErr, d.LogTail(60))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon not serving after %v; log:\n%s", timeout, d.LogTail(60))
		}
		if _, err := os.Stat(d.Address); err == nil {
			c, err := containerd.New(d.Address, containerd.WithDefaultNamespace(d.Namespace), containerd.WithTimeout(2*time.Second))
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				ok, err := c.IsServing(ctx)
				cancel()
				if err == nil && ok {
					d.mu.Lock()
					d.client = c
					d.mu.Unlock()
					return nil
				}
				c.Close()
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Client is the containerd client of the current daemon instance (replaced
// by Restart). Its default namespace is d.Namespace.
func (d *Daemon) Client() *containerd.Client {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.client
}

// Context is a background context in d.Namespace.
func (d *Daemon) Context() context.Context {
	return namespaces.WithNamespace(context.Background(), d.Namespace)
}

// Pid is containerd's pid (under the reaper, the reaper's child; see
// reaper.go), 0 if it is not running.
func (d *Daemon) Pid() int {
	_, _, daemon := d.tree()
	return daemon
}

func (d *Daemon) isExited() bool {
	if d.exited == nil {
		return true
	}
	select {
	case <-d.exited:
		return true
	default:
		return false
	}
}

// Running reports whether the daemon process is alive.
func (d *Daemon) Running() bool { return d.Pid() != 0 }

// Stop sends SIGTERM, waits up to 10s, then SIGKILLs. It closes the client.
func (d *Daemon) Stop() error {
	return d.stop(syscall.SIGTERM, 10*time.Second)
}

// Kill SIGKILLs the daemon (containerd: a crash) and waits for it to be
// gone; its front exits as killed, its reaper stays for the containers.
func (d *Daemon) Kill() error {
	return d.stop(syscall.SIGKILL, 10*time.Second)
}

// KillPid SIGKILLs pid (the front or the reaper, to test their crashes) and
// waits for the front to exit, which it does once the daemon is gone.
func (d *Daemon) KillPid(pid int) error {
	_, _, daemon := d.tree()
	d.mu.Lock()
	c, exited := d.client, d.exited
	d.client = nil
	d.mu.Unlock()
	if c != nil {
		c.Close()
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("daemon did not exit within 10s of SIGKILL to %d", pid)
	}
	// A killed front exits at once; containerd dies a moment later (the
	// reaper kills it). A new start must not race it.
	for deadline := time.Now().Add(10 * time.Second); daemon != 0; time.Sleep(5 * time.Millisecond) {
		if err := syscall.Kill(daemon, 0); errors.Is(err, syscall.ESRCH) || isZombie(daemon) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd %d still running 10s after SIGKILL to %d", daemon, pid)
		}
	}
	return nil
}

func (d *Daemon) stop(sig syscall.Signal, grace time.Duration) error {
	d.mu.Lock()
	c, cmd, exited := d.client, d.cmd, d.exited
	d.client = nil
	d.mu.Unlock()
	if c != nil {
		c.Close()
	}
	if cmd == nil || exited == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	// A crash is containerd's; other signals go to the front, which
	// forwards them.
	if _, _, daemon := d.tree(); sig == syscall.SIGKILL && daemon != 0 {
		_ = syscall.Kill(daemon, sig)
	} else {
		_ = cmd.Process.Signal(sig)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(grace):
	}
	_ = cmd.Process.Kill()
	select {
	case <-exited:
		if sig != syscall.SIGKILL {
			return fmt.Errorf("daemon did not exit within %v of %v, killed", grace, sig)
		}
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("daemon did not die after SIGKILL")
	}
}

// Restart stops the daemon with sig (SIGKILL: a crash; SIGTERM: an orderly
// shutdown, SIGKILL after 10s) and starts it again with the same config and
// dirs. Client() then returns a new client; old clients are closed.
func (d *Daemon) Restart(sig syscall.Signal) error {
	if err := d.stop(sig, 10*time.Second); err != nil {
		return err
	}
	return d.start()
}

// SwitchBinary stops the daemon with sig and starts binary instead on the
// same root, state, sockets and pin dir (a node switching containerd
// builds); the config is rewritten in the new build's format.
func (d *Daemon) SwitchBinary(binary string, sig syscall.Signal) error {
	if err := d.stop(sig, 10*time.Second); err != nil {
		return err
	}
	d.Binary = binary
	if err := d.writeConfig(); err != nil {
		return err
	}
	return d.start()
}

// Reconfigure stops the daemon with sig, applies change to its options
// (e.g. EmbedConfig), rewrites the config and starts it again on the same
// dirs: an operator changing the config across a restart.
func (d *Daemon) Reconfigure(sig syscall.Signal, change func(*Options)) error {
	if err := d.stop(sig, 10*time.Second); err != nil {
		return err
	}
	change(&d.opts)
	if err := d.writeConfig(); err != nil {
		return err
	}
	return d.start()
}

// Ctr runs bin/ctr against this daemon in d.Namespace and returns its
// combined output.
func (d *Daemon) Ctr(ctx context.Context, args ...string) (string, error) {
	ns := d.Namespace
	if n, ok := namespaces.Namespace(ctx); ok {
		ns = n
	}
	all := append([]string{"--address", d.Address, "--namespace", ns}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(ToolsDir(d.Repo, d.Binary), "ctr"), all...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := append(stdout.Bytes(), dropDeprecationWarnings(stderr.Bytes())...)
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Log returns the whole daemon log.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(d.LogPath)
	return string(b)
}

// LogTail returns the last n lines of the daemon log.
func (d *Daemon) LogTail(n int) string {
	f, err := os.Open(d.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 2*n {
			lines = append([]string(nil), lines[len(lines)-n:]...)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
