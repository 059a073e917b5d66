//go:build linux

package runtime

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/events/exchange"
	"github.com/containerd/containerd/identifiers"
	"github.com/containerd/containerd/namespaces"
	rt "github.com/containerd/containerd/runtime"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/embedshim/embedshim/go/exitmon"
)

var _ rt.PlatformRuntime = (*TaskManager)(nil)

// TaskManager is the embed runtime: containerd's tasks service calls it for
// containers whose runtime is io.containerd.runtime.v1.embed.
type TaskManager struct {
	root   string // <plugin root>: per-task work dirs
	state  string // <plugin state>: per-task bundles
	config *Config

	containers containers.Store
	pub        *publisher
	monitor    *exitmon.Monitor
	router     *exitRouter
	tasks      *rt.NSMap[rt.Task]

	oomOnce sync.Once
	oomw    *oomWatcher
}

type taskManagerOpts struct {
	root, state string
	config      *Config
	containers  containers.Store
	events      *exchange.Exchange
	monitor     *exitmon.Monitor
}

func newTaskManager(_ context.Context, o taskManagerOpts) *TaskManager {
	return &TaskManager{
		root:       o.root,
		state:      o.state,
		config:     o.config,
		containers: o.containers,
		pub:        &publisher{events: o.events},
		monitor:    o.monitor,
		router:     newExitRouter(),
		tasks:      rt.NewNSMap[rt.Task](),
	}
}

// ID is the name clients use for this runtime.
func (m *TaskManager) ID() string { return pluginID }

// Get a task by id in the context's namespace.
func (m *TaskManager) Get(ctx context.Context, id string) (rt.Task, error) {
	return m.tasks.Get(ctx, id)
}

// Add a task (as runtime/v1/linux does; used by nobody in tree but kept for
// parity).
func (m *TaskManager) Add(ctx context.Context, t rt.Task) error {
	return m.tasks.Add(ctx, t)
}

// Tasks lists the tasks of the context's namespace, or all if all is set.
func (m *TaskManager) Tasks(ctx context.Context, all bool) ([]rt.Task, error) {
	return m.tasks.GetAll(ctx, all)
}

// Create makes the bundle, mounts the rootfs and runs runc create; the init
// is registered with the exit monitor while runc-init still waits on
// exec.fifo, before any user code runs.
func (m *TaskManager) Create(ctx context.Context, id string, opts rt.CreateOpts) (_ rt.Task, err error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	if err := identifiers.Validate(id); err != nil {
		return nil, fmt.Errorf("invalid task id: %w", err)
	}
	if _, err := m.tasks.Get(ctx, id); err == nil {
		return nil, fmt.Errorf("task %s: %w", id, errdefs.ErrAlreadyExists)
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithFields(log.Fields{"id": id, "namespace": ns}))

	rc, err := resolveRuncConfig(m.config, ns, opts.RuntimeOptions, opts.TaskOptions)
	if err != nil {
		return nil, err
	}
	if opts.Spec == nil {
		return nil, fmt.Errorf("task %s has no spec: %w", id, errdefs.ErrInvalidArgument)
	}
	b, err := newBundle(id, filepath.Join(m.state, ns), filepath.Join(m.root, ns), opts.Spec.GetValue())
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if derr := b.delete(); derr != nil {
				log.G(ctx).WithError(derr).Warn("embed: remove bundle after failed create")
			}
		}
	}()

	t := newTask(m, ns, id, b, rc, stdioPaths{
		Stdin:    opts.IO.Stdin,
		Stdout:   opts.IO.Stdout,
		Stderr:   opts.IO.Stderr,
		Terminal: opts.IO.Terminal,
	})
	if err := t.create(ctx, opts); err != nil {
		return nil, err
	}
	if err := m.tasks.Add(ctx, t); err != nil {
		t.destroy(ctx)
		return nil, err
	}
	t.publishCreate(opts)
	if e := t.init.ungate(); e != nil {
		t.onExit(t.init, *e)
	}
	return t, nil
}

// Delete removes a stopped (or never started) task and returns its exit.
func (m *TaskManager) Delete(ctx context.Context, id string) (*rt.Exit, error) {
	task, err := m.tasks.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	t := task.(*Task)
	exit, err := t.delete(ctx)
	if err != nil {
		return nil, err
	}
	m.tasks.Delete(ctx, id)
	return exit, nil
}

// attach makes p track the process at pid: a pidfd for signals, then its
// identity, then the routing entry, and only then the monitor registration,
// so that an exit delivered right after Register always finds its owner.
// The pidfd is taken first: while it refers to a live process the pid cannot
// be reused, so the identity read next is that process's.
func (m *TaskManager) attach(p *process, pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errExitedEarly
		}
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	ident, err := exitmon.Identity(pid)
	if err != nil {
		unix.Close(fd)
		if errors.Is(err, exitmon.ErrExited) {
			return errExitedEarly
		}
		return fmt.Errorf("identity of %d: %w", pid, err)
	}
	// Still alive (or a zombie, which keeps its pid): the identity is right.
	if err := unix.PidfdSendSignal(fd, 0, nil, 0); err != nil {
		unix.Close(fd)
		return errExitedEarly
	}
	key := exitmon.Key{Pid: pid, Ident: ident}
	p.mu.Lock()
	p.pid, p.ident, p.pidfd = pid, ident, fd
	p.mu.Unlock()
	m.router.add(key, p)

	got, err := m.monitor.Register(pid, ident)
	if err != nil {
		m.router.remove(key)
		switch {
		case errors.Is(err, exitmon.ErrExited), errors.Is(err, exitmon.ErrNotExpected):
			return errExitedEarly
		case errors.Is(err, exitmon.ErrCapacity):
			// Not tracked: nobody else closes the pidfd.
			p.closePidfd()
			return fmt.Errorf("embed: tracking capacity %d reached: %v: %w",
				m.monitor.Capacity(), err, errdefs.ErrUnavailable)
		}
		p.closePidfd()
		return fmt.Errorf("embed: register pid %d: %w", pid, err)
	}
	if got != ident {
		// Cannot happen with a non-zero ident; stay correct if it does.
		m.router.remove(key)
		p.mu.Lock()
		p.ident = got
		p.mu.Unlock()
		m.router.add(exitmon.Key{Pid: pid, Ident: got}, p)
	}
	return nil
}

// detach forgets p in the monitor (registration and record) and closes its
// pidfd. Called on delete only: until then the record is what a restarted
// containerd reports.
func (m *TaskManager) detach(p *process) {
	k := p.key()
	if k.Pid != 0 {
		m.router.remove(k)
		if err := m.monitor.Forget(k.Pid, k.Ident); err != nil {
			log.L.WithError(err).WithField("pid", k.Pid).Warn("embed: forget process")
		}
	}
	p.closePidfd()
}
