//go:build linux

package core

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/embedshim/embedshim/go/exitmon"
)

// Manager is the embed runtime: containerd's tasks service calls it (through
// the adapter) for containers whose runtime is io.containerd.runtime.v1.embed.
type Manager struct {
	root   string // <plugin root>: per-task work dirs
	state  string // <plugin state>: per-task bundles
	config *Config

	pub        *publisher
	monitor    tracker
	router     *exitRouter
	tasks      *taskMap
	mounter    Mounter
	decoders   Decoders
	containers Containers

	oomOnce sync.Once
	oomw    *oomWatcher

	// stopping: containerd is shutting down; exits are no longer taken
	// (see stopOnShutdown).
	stopping atomic.Bool
}

type managerOpts struct {
	root, state string
	config      *Config
	events      Publisher
	monitor     tracker
	mounter     Mounter
	decoders    Decoders
	containers  Containers
}

func newManager(o managerOpts) *Manager {
	return &Manager{
		root:       o.root,
		state:      o.state,
		config:     o.config,
		pub:        &publisher{events: o.events},
		monitor:    o.monitor,
		router:     newExitRouter(),
		tasks:      newTaskMap(),
		mounter:    o.mounter,
		decoders:   o.decoders,
		containers: o.containers,
	}
}

// ID is the name clients use for this runtime.
func (m *Manager) ID() string { return RuntimeName }

// Get a task by namespace and id.
func (m *Manager) Get(ns, id string) (*Task, error) {
	return m.tasks.get(ns, id)
}

// Tasks lists the tasks of namespace ns, or of every namespace if all is set.
func (m *Manager) Tasks(ns string, all bool) []*Task {
	return m.tasks.list(ns, all)
}

// Create makes the bundle, mounts the rootfs and runs runc create; the init
// is registered with the exit monitor while runc-init still waits on
// exec.fifo, before any user code runs.
func (m *Manager) Create(ctx context.Context, ns, id string, opts CreateOpts) (_ *Task, err error) {
	if err := validateID(id); err != nil {
		return nil, fmt.Errorf("invalid task id: %w", err)
	}
	if _, err := m.tasks.get(ns, id); err == nil {
		return nil, fmt.Errorf("task %s: %w", id, errdefs.ErrAlreadyExists)
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithFields(log.Fields{"id": id, "namespace": ns}))

	rc, err := ResolveRuncConfig(m.config, ns, m.decoders, opts.RuntimeOptions, opts.TaskOptions)
	if err != nil {
		return nil, err
	}
	if opts.Spec == nil {
		return nil, fmt.Errorf("task %s has no spec: %w", id, errdefs.ErrInvalidArgument)
	}
	b, err := newBundle(id, filepath.Join(m.state, ns), filepath.Join(m.root, ns), opts.Spec)
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
	if err := m.tasks.add(ns, id, t); err != nil {
		t.destroy(ctx)
		return nil, err
	}
	t.publishCreate(opts)
	t.release(t.init)
	return t, nil
}

// Delete removes a stopped (or never started) task and returns its exit.
func (m *Manager) Delete(ctx context.Context, ns, id string) (*Exit, error) {
	t, err := m.tasks.get(ns, id)
	if err != nil {
		return nil, err
	}
	exit, err := t.delete(ctx)
	if err != nil {
		return nil, err
	}
	m.tasks.remove(ns, id)
	return exit, nil
}

// attach makes p track the process at pid with one pidfd from pidfd_open to
// the registration (exitmon.Monitor.Track): while it refers to a live
// process the pid cannot be reused, so the identity the monitor reads from
// it is that process's. The pidfd stays p's, for signals. An exit delivered
// between the registration and the route to p is kept by the router and
// handed over by claim, so none is lost.
func (m *Manager) attach(p *process, pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errExitedEarly
		}
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	ident, err := m.monitor.Track(fd, pid)
	if err != nil {
		unix.Close(fd)
		switch {
		case errors.Is(err, exitmon.ErrExited), errors.Is(err, exitmon.ErrNotExpected):
			return errExitedEarly
		case errors.Is(err, exitmon.ErrCapacity):
			return fmt.Errorf("embed: tracking capacity %d reached: %v: %w",
				m.monitor.Capacity(), err, errdefs.ErrUnavailable)
		}
		return fmt.Errorf("embed: track pid %d: %w", pid, err)
	}
	p.mu.Lock()
	p.pid, p.ident, p.pidfd = pid, ident, fd
	p.mu.Unlock()
	if e := m.router.claim(exitmon.Key{Pid: pid, Ident: ident}, p); e != nil {
		p.task.onExit(p, *e)
	}
	return nil
}

// detach forgets p in the monitor (registration and record) and closes its
// pidfd. Called on delete only: until then the record is what a restarted
// containerd reports.
func (m *Manager) detach(p *process) {
	k := p.key()
	if k.Pid != 0 {
		m.router.remove(k)
		if err := m.monitor.Forget(k.Pid, k.Ident); err != nil {
			log.L.WithError(err).WithField("pid", k.Pid).Warn("embed: forget process")
		}
	}
	p.closePidfd()
}
