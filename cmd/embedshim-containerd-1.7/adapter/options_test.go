//go:build linux

package adapter

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/pkg/runtimeoptions/v1"
	"github.com/containerd/containerd/runtime/linux/runctypes"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	"github.com/embedshim/embedshim/go/core"
)

func anyOf(t *testing.T, v interface{}) typeurl.Any {
	t.Helper()
	a, err := typeurl.MarshalAny(v)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Every options type a client of this runtime may send is honoured: runc.v2's
// Options (Go client, CRI for runc.v2 types), CRI's generic runtimeoptions
// (TOML body or file, what CRI sends for runtime_type = ...v1.embed), and the
// v1 runtime's runctypes.
func TestResolveRuncConfigOptions(t *testing.T) {
	cfg := &core.Config{Runtime: "runc", RuntimeRoot: "/run/containerd/runc"}
	file := filepath.Join(t.TempDir(), "opts.toml")
	os.WriteFile(file, []byte("BinaryName = \"crun\"\nNoPivotRoot = true\n"), 0o600)
	for _, c := range []struct {
		name             string
		container, task  interface{}
		binary, root     string
		systemd, noPivot bool
		ioUID            int
	}{
		{"runc.v2 options", &runcoptions.Options{BinaryName: "crun", Root: "/r", SystemdCgroup: true, IoUid: 7}, nil, "crun", "/r/ns", true, false, 7},
		{"CRI TOML body", &runtimeoptions.Options{ConfigBody: []byte("BinaryName = \"/opt/runc\"\nSystemdCgroup = true\nIoUid = 5\n")}, nil, "/opt/runc", "/run/containerd/runc/ns", true, false, 5},
		{"CRI config file", &runtimeoptions.Options{ConfigPath: file}, nil, "crun", "/run/containerd/runc/ns", false, true, 0},
		{"runctypes", &runctypes.RuncOptions{Runtime: "crun", RuntimeRoot: "/x"}, &runctypes.CreateOptions{NoPivotRoot: true, IoUid: 3}, "crun", "/x/ns", false, true, 3},
		{"none", nil, nil, "runc", "/run/containerd/runc/ns", false, false, 0},
	} {
		var ca, ta typeurl.Any
		if c.container != nil {
			ca = anyOf(t, c.container)
		}
		if c.task != nil {
			ta = anyOf(t, c.task)
		}
		rc, err := core.ResolveRuncConfig(cfg, "ns", decoders, ca, ta)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if rc.Binary != c.binary || rc.Root != c.root || rc.SystemdCgroup != c.systemd || rc.NoPivotRoot != c.noPivot || rc.IoUID != c.ioUID {
			t.Errorf("%s: got %+v", c.name, rc)
		}
	}
	_, err := core.ResolveRuncConfig(cfg, "ns", decoders, anyOf(t, &runtimeoptions.Options{ConfigBody: []byte("BinaryName = [")}), nil)
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad TOML: %v, want InvalidArgument", err)
	}
}
