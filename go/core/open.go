//go:build linux

// Package core is the embed runtime: it runs containers with runc directly
// from containerd, without a shim process, and learns about process exits
// from the exitmon package (pidfd + eBPF records pinned in bpffs, so exits
// are not lost while containerd is down).
//
// It depends on no containerd daemon module: an adapter per containerd
// version (cmd/embedshim-containerd*/runtime) registers the plugin and maps
// the Manager, Task and ExecProcess onto that version's runtime interfaces.
package core

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/log"

	"github.com/embedshim/embedshim/go/exitmon"
)

const (
	defaultRuntime  = "runc"
	defaultCapacity = 65536
	// runcRootDir is the default runc --root, under the plugin's state dir
	// (a tmpfs, like runc's own default): embed's containers are never in
	// runc.v2's root, so a runc command of one runtime cannot act on a
	// container of the other with the same id, and two daemons with their
	// own state dirs never share one. Hidden: it is no namespace.
	runcRootDir = ".runc"
	// legacyRuntimeRoot is the default of earlier releases (runc.v2's);
	// restore moves the containers found there (see migrateRuncRoot).
	legacyRuntimeRoot = "/run/containerd/runc"
)

// Config is the [plugins."io.containerd.runtime.v1.embed"] section; the
// keys are the same on every containerd build.
type Config struct {
	// Runtime is the OCI runtime binary (name or path), runc by default.
	Runtime string `toml:"runtime"`
	// RuntimeRoot is the runc --root; the namespace is appended to it.
	// Default: <plugin state dir>/.runc, e.g.
	// /run/containerd/io.containerd.runtime.v1.embed/.runc.
	RuntimeRoot string `toml:"runtime_root"`
	// Capacity is the number of processes the exit monitor can track at
	// once. A change applies at the next start (the pinned maps are made
	// anew, their entries moved), unless it is below the number of
	// processes tracked then: the old capacity is kept, with a warning.
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

// DefaultConfig is the configuration `containerd config default` shows.
func DefaultConfig() *Config {
	return &Config{
		Runtime:  defaultRuntime,
		Capacity: defaultCapacity,
	}
}

// Mounter mounts a task's rootfs the way the adapter's containerd does
// (overlay option handling, loop devices, ...).
type Mounter interface {
	// Mount mounts mounts on target, in order.
	Mount(ctx context.Context, mounts []Mount, target string) error
	// Unmount unmounts everything at and below target.
	Unmount(target string) error
}

// Containers answers whether containerd's metadata still holds a
// container. A restored task whose container is gone (its record deleted
// while the daemon was down, e.g. with a wiped root) is removed, process and
// all, as runc.v2's shim loader drops a shim whose container is gone.
type Containers interface {
	Exists(ctx context.Context, ns, id string) (bool, error)
}

// Options is what the adapter hands the runtime at plugin init.
type Options struct {
	// Root and State are the plugin's directories (disk and tmpfs).
	Root, State string
	// Address is the daemon's gRPC socket: events of exits found at restore
	// are held until it serves.
	Address   string
	Config    *Config
	Publisher Publisher
	Mounter   Mounter
	// Decoders handle options types of the adapter's containerd version.
	Decoders Decoders
	// Containers, if set, is asked at restore whether each task's
	// container still exists.
	Containers Containers
}

// Open opens (or creates) the exit monitor's pins, rebuilds the tasks of a
// previous run from the state directory and starts delivering exits.
func Open(ctx context.Context, o Options) (*Manager, error) {
	cfg := o.Config
	if cfg == nil {
		cfg = DefaultConfig()
	}
	if cfg.Runtime == "" {
		cfg.Runtime = defaultRuntime
	}
	if cfg.RuntimeRoot == "" {
		cfg.RuntimeRoot = filepath.Join(o.State, runcRootDir)
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = defaultCapacity
	}
	if cfg.PinDir == "" {
		cfg.PinDir = exitmon.DefaultPinDir(o.Root)
	}
	for _, d := range []string{o.Root, o.State} {
		if err := os.MkdirAll(d, 0711); err != nil {
			return nil, err
		}
	}

	// Pins of an older build at the old default location (inside the
	// plugin root) are taken over.
	mon, err := exitmon.Open(cfg.PinDir, exitmon.Options{Capacity: cfg.Capacity, TakeOver: exitmon.OldDefaultPinDir(o.Root)})
	if err != nil {
		return nil, fmt.Errorf("embed: open exit monitor at %s: %w", cfg.PinDir, err)
	}
	warnRefusedCapacity(ctx, mon)
	// Events of exits found by restore wait until clients can see them.
	held := newHeldPublisher(o.Publisher)
	m := newManager(managerOpts{
		root:       o.Root,
		state:      o.State,
		config:     cfg,
		events:     held,
		monitor:    mon,
		mounter:    o.Mounter,
		decoders:   o.Decoders,
		containers: o.Containers,
	})
	if err := m.restore(ctx); err != nil {
		mon.Close()
		return nil, err
	}
	held.restored(o.Address)
	m.guardPins(ctx)
	m.stopOnShutdown()
	m.startExitLoop()
	return m, nil
}

// warnRefusedCapacity logs a configured capacity the pins could not shrink
// to: the daemon runs on with the old one, which the operator should know.
func warnRefusedCapacity(ctx context.Context, mon *exitmon.Monitor) {
	asked, tracked := mon.RefusedCapacity()
	if asked == 0 {
		return
	}
	log.G(ctx).WithFields(log.Fields{"capacity": asked, "tracked": tracked, "kept": mon.Capacity()}).
		Warnf("embed: tracking capacity %d not applied: %d processes are tracked; keeping capacity %d until they are fewer at a restart",
			asked, tracked, mon.Capacity())
}
