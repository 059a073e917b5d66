//go:build linux

package core

import (
	"os"
	"path/filepath"
	"testing"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/embedshim/embedshim/go/exitmon"
)

// A persisted exit status must come back unchanged through the wait-status
// path restore uses.
func TestWaitStatusRoundTrip(t *testing.T) {
	for _, s := range []uint32{0, 1, 42, 127, 128, 130, 137, 143, 255} {
		if got := exitmon.ExitStatus(waitStatusFor(s)); got != s {
			t.Errorf("status %d came back as %d", s, got)
		}
	}
}

func TestResolveRuncConfig(t *testing.T) {
	cfg := &Config{Runtime: "runc", RuntimeRoot: "/run/x"}
	rc, err := ResolveRuncConfig(cfg, "ns1", Decoders{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Binary != "runc" || rc.Root != "/run/x/ns1" {
		t.Fatalf("defaults: %+v", rc)
	}
	a, err := typeurl.MarshalAny(&runcoptions.Options{BinaryName: "/usr/sbin/runc", Root: "/r", NoPivotRoot: true, IoUid: 7})
	if err != nil {
		t.Fatal(err)
	}
	rc, err = ResolveRuncConfig(cfg, "ns1", Decoders{}, nil, a)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Binary != "/usr/sbin/runc" || rc.Root != "/r/ns1" || !rc.NoPivotRoot || rc.IoUID != 7 {
		t.Fatalf("runc.v2 options: %+v", rc)
	}
	// Task options of runc.v2's type replace the container's whole.
	task, err := typeurl.MarshalAny(&runcoptions.Options{NoNewKeyring: true})
	if err != nil {
		t.Fatal(err)
	}
	rc, err = ResolveRuncConfig(cfg, "ns1", Decoders{}, a, task)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Binary != "runc" || rc.Root != "/run/x/ns1" || rc.NoPivotRoot || !rc.NoNewKeyring {
		t.Fatalf("task options over container options: %+v", rc)
	}
}

func TestShouldKillAllOnExit(t *testing.T) {
	private := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}}}}
	shared := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace, Path: "/proc/1/ns/pid"}}}}
	if shouldKillAllOnExit(private) || !shouldKillAllOnExit(shared) || !shouldKillAllOnExit(&specs.Spec{}) {
		t.Fatal("wrong kill-all decision")
	}
}

// A FIFO is opened read-write (no blocking without a reader); file:// is a
// log file.
func TestOpenOutput(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "out")
	if err := unix.Mkfifo(fifo, 0600); err != nil {
		t.Fatal(err)
	}
	f, err := openOutput(fifo)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	f.Close()

	log := filepath.Join(dir, "sub", "log")
	f, err = openOutput("file://" + log)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("y"))
	f.Close()
	if b, _ := os.ReadFile(log); string(b) != "y" {
		t.Fatalf("file:// wrote %q", b)
	}
	if _, err := openOutput("binary:///bin/logger"); err == nil {
		t.Fatal("binary:// should not be supported")
	}
}
