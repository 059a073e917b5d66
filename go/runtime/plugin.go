//go:build linux

// Package runtime is the containerd runtime v1 plugin "embed": it runs
// containers with runc directly from containerd, without a shim process, and
// learns about process exits from the exitmon package (pidfd + eBPF records
// pinned in bpffs, so exits are not lost while containerd is down).
//
// The cmd main only needs to blank-import this package: init registers the
// plugin as io.containerd.runtime.v1.embed.
package runtime

import (
	"fmt"
	"os"

	"github.com/containerd/containerd/events/exchange"
	"github.com/containerd/containerd/metadata"
	"github.com/containerd/containerd/plugin"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/embedshim/embedshim/go/exitmon"
)

const (
	// pluginName is the short name; the runtime is addressed by clients as
	// io.containerd.runtime.v1.embed (see ID()).
	pluginName = "embed"

	defaultRuntime     = "runc"
	defaultRuntimeRoot = "/run/containerd/runc"
	defaultCapacity    = 65536
)

// pluginID is what the tasks service keys v1 runtimes by and what clients put
// in container.Runtime.Name.
var pluginID = fmt.Sprintf("%s.%s", plugin.RuntimePlugin, pluginName)

// Config is the [plugins."io.containerd.runtime.v1.embed"] section.
type Config struct {
	// Runtime is the OCI runtime binary (name or path), runc by default.
	Runtime string `toml:"runtime"`
	// RuntimeRoot is the runc --root; the namespace is appended to it.
	RuntimeRoot string `toml:"runtime_root"`
	// Capacity is the number of processes the exit monitor can track at once.
	Capacity uint32 `toml:"capacity"`
	// PinDir is where the BPF maps and link are pinned (a private bpffs is
	// mounted there if needed, unless it is under /sys/fs/bpf). Default:
	// exitmon.DefaultPinDir(<plugin root>), in the host's bpffs.
	PinDir string `toml:"pin_dir"`
	// SystemdCgroup asks runc to use the systemd cgroup driver unless the
	// container's runtime options say otherwise.
	SystemdCgroup bool `toml:"systemd_cgroup"`
	// Debug passes --debug to runc (its log goes to the bundle's log.json).
	Debug bool `toml:"debug"`
}

func init() {
	plugin.Register(&plugin.Registration{
		Type:   plugin.RuntimePlugin,
		ID:     pluginName,
		InitFn: newPlugin,
		Requires: []plugin.Type{
			plugin.EventPlugin,
			plugin.MetadataPlugin,
		},
		Config: &Config{
			Runtime:     defaultRuntime,
			RuntimeRoot: defaultRuntimeRoot,
			Capacity:    defaultCapacity,
		},
	})
}

func newPlugin(ic *plugin.InitContext) (interface{}, error) {
	ic.Meta.Platforms = []ocispec.Platform{platforms.DefaultSpec()}

	cfg := ic.Config.(*Config)
	if cfg.Runtime == "" {
		cfg.Runtime = defaultRuntime
	}
	if cfg.RuntimeRoot == "" {
		cfg.RuntimeRoot = defaultRuntimeRoot
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = defaultCapacity
	}
	if cfg.PinDir == "" {
		cfg.PinDir = exitmon.DefaultPinDir(ic.Root)
	}

	for _, d := range []string{ic.Root, ic.State} {
		if err := os.MkdirAll(d, 0711); err != nil {
			return nil, err
		}
	}

	m, err := ic.Get(plugin.MetadataPlugin)
	if err != nil {
		return nil, err
	}
	ep, err := ic.GetByID(plugin.EventPlugin, "exchange")
	if err != nil {
		return nil, err
	}

	mon, err := exitmon.Open(cfg.PinDir, exitmon.Options{Capacity: cfg.Capacity, TakeOver: exitmon.OldDefaultPinDir(ic.Root)})
	if err != nil {
		return nil, fmt.Errorf("embed: open exit monitor at %s: %w", cfg.PinDir, err)
	}

	tm := newTaskManager(ic.Context, taskManagerOpts{
		root:       ic.Root,
		state:      ic.State,
		config:     cfg,
		containers: metadata.NewContainerStore(m.(*metadata.DB)),
		events:     ep.(*exchange.Exchange),
		monitor:    mon,
	})
	// Events of exits found by restore wait until clients can see them.
	held := newHeldPublisher(tm.pub.events)
	tm.pub.events = held
	if err := tm.restore(ic.Context); err != nil {
		mon.Close()
		return nil, err
	}
	held.restored(ic.Address)
	tm.startExitLoop()
	return tm, nil
}
