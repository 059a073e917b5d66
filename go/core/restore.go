//go:build linux

package core

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/embedshim/embedshim/go/exitmon"
)

// pendingExit is an exit found while reloading, handled once every task is
// rebuilt.
type pendingExit struct {
	p *process
	e exitmon.Exit
}

// restore rebuilds every task from the bundles after a (re)start of
// containerd: processes that exited meanwhile get the status and time the
// monitor recorded, running ones are polled again, and monitor entries that
// no bundle accounts for are removed.
func (m *Manager) restore(ctx context.Context) error {
	nsDirs, err := os.ReadDir(m.state)
	if err != nil {
		return err
	}
	var pending []pendingExit
	var live []*Task
	for _, nsd := range nsDirs {
		if !nsd.IsDir() || strings.HasPrefix(nsd.Name(), ".") {
			continue
		}
		ns := nsd.Name()
		ids, err := os.ReadDir(filepath.Join(m.state, ns))
		if err != nil {
			return err
		}
		for _, idd := range ids {
			if !idd.IsDir() {
				continue
			}
			id := idd.Name()
			if strings.HasPrefix(id, ".") {
				// A delete interrupted after its atomic rename.
				os.RemoveAll(filepath.Join(m.state, ns, id))
				continue
			}
			lctx := log.WithLogger(ctx, log.G(ctx).WithFields(log.Fields{"id": id, "namespace": ns}))
			if m.containerGone(lctx, ns, id) {
				log.G(lctx).Warn("embed: the task's container no longer exists in containerd; removing the task")
				m.cleanupBroken(lctx, ns, id)
				continue
			}
			t, exits, err := m.loadTask(lctx, ns, id)
			if err != nil {
				log.G(lctx).WithError(err).Error("embed: cannot reload task; cleaning it up")
				m.cleanupBroken(lctx, ns, id)
				continue
			}
			if err := m.tasks.add(ns, id, t); err != nil {
				return err
			}
			switch t.init.getStatus() {
			case statusRunning, statusPaused:
				live = append(live, t)
			}
			pending = append(pending, exits...)
		}
	}

	// Exits of execs first, so a task's init exit is published last.
	for _, pe := range pending {
		if !pe.p.isInit {
			pe.p.task.onExit(pe.p, pe.e)
		}
	}
	for _, pe := range pending {
		if pe.p.isInit {
			pe.p.task.onExit(pe.p, pe.e)
		}
	}

	m.reconcile(ctx)
	m.sweepRuncRoot(ctx)
	m.cleanupWorkDirs(ctx)
	go m.watchOOMRestored(live)
	return nil
}

// watchOOMRestored watches the cgroups of the restored running tasks off the
// restore path: loading a cgroup and arming its eventfd is most of a task's
// restore cost, and the daemon should answer as soon as the tasks are back.
// An OOM in the moments before its watch is armed has no event (as an OOM
// while containerd was down has none).
func (m *Manager) watchOOMRestored(ts []*Task) {
	for _, t := range ts {
		// Under t.mu: a Delete (which sets deleted, then unwatches)
		// either came first and this skips, or waits for the watch.
		t.mu.Lock()
		if !t.deleted {
			m.watchOOM(t)
		}
		t.mu.Unlock()
	}
}

// cleanupWorkDirs removes the per-task work dirs (<plugin root>/<ns>/<id>)
// of tasks that were not reloaded, as runc.v2's shim manager does: their
// bundle is gone (a crash during create or delete, or a state dir cleared
// by a reboot).
func (m *Manager) cleanupWorkDirs(ctx context.Context) {
	nsDirs, err := os.ReadDir(m.root)
	if err != nil {
		return
	}
	// Never touch the pin dir (by default <plugin root>/bpf, a bpffs).
	holdsPins := func(path string) bool {
		return strings.HasPrefix(filepath.Clean(m.config.PinDir)+"/", path+"/")
	}
	for _, nsd := range nsDirs {
		if !nsd.IsDir() || holdsPins(filepath.Join(m.root, nsd.Name())) {
			continue
		}
		ns := nsd.Name()
		ids, err := os.ReadDir(filepath.Join(m.root, ns))
		if err != nil {
			continue
		}
		for _, idd := range ids {
			if !idd.IsDir() {
				continue
			}
			if _, err := m.tasks.get(ns, idd.Name()); err == nil {
				continue
			}
			path := filepath.Join(m.root, ns, idd.Name())
			if holdsPins(path) {
				continue
			}
			log.G(ctx).WithField("path", path).Info("embed: removing work dir of a task that was not reloaded")
			if err := os.RemoveAll(path); err != nil {
				log.G(ctx).WithError(err).WithField("path", path).Warn("embed: remove work dir")
			}
		}
	}
}

func (m *Manager) loadTask(ctx context.Context, ns, id string) (*Task, []pendingExit, error) {
	b := loadBundle(id, filepath.Join(m.state, ns), filepath.Join(m.root, ns))
	st, err := readState(b.path)
	if err != nil {
		return nil, nil, err
	}
	rc := st.Runc
	migrated := m.migrateRuncRoot(ctx, ns, id, &rc)
	t := newTask(m, ns, id, b, &rc, st.Init.Stdio)
	t.killAllOnExit = st.KillAllOnExit
	t.checkpoint = st.Checkpoint

	if st.Init.Status == statusPausing && !st.Init.Exited {
		st.Init.Status = t.settlePausing(ctx)
	}
	started := false
	if st.Init.Status == statusCreated && !st.Init.Exited && t.checkpoint == "" {
		st.Init.Status = t.settleCreated(ctx)
		started = st.Init.Status != statusCreated
	}
	var pending []pendingExit
	if e := m.reloadProcess(ctx, t.init, st.Init); e != nil {
		pending = append(pending, pendingExit{t.init, *e})
	}
	if started {
		// The start event the dead daemon did not send, before any exit
		// of the init (restore's events go out in order, once clients
		// can see them).
		t.pub.publish(ns, TopicStart, &eventstypes.TaskStart{ContainerID: id, Pid: uint32(t.init.getPid())})
	}
	for _, es := range st.Execs {
		p := newProcess(t, es.ID, false, es.Stdio)
		t.execs[es.ID] = p
		// Count every exec whose exit is still to be handled, so that the
		// init's exit waits for them as it would have without a restart.
		if e := m.reloadProcess(ctx, p, es); e != nil {
			pending = append(pending, pendingExit{p, *e})
			t.runningExecs++
		} else if p.getStatus() == statusRunning {
			t.runningExecs++
		}
	}
	if t.init.exitClaimed {
		t.initExit = &exitmon.Exit{Pid: t.init.pid, Ident: t.init.ident}
	}
	if migrated || started {
		t.persist()
	}
	return t, pending, nil
}

// settlePausing decides the state of an init persisted as pausing:
// containerd died during runc pause, so runc's view decides (paused, or
// running when the freeze did not happen). Left pausing, the task would
// refuse pause, resume and delete until its init exited.
func (t *Task) settlePausing(ctx context.Context) procStatus {
	s, err := t.runc.State(ctx, t.id)
	if err == nil && s.Status == string(statusPaused) {
		return statusPaused
	}
	if err != nil {
		log.G(ctx).WithError(err).WithField("id", t.id).Warn("embed: runc state of a task restored as pausing; taking it as running")
	}
	return statusRunning
}

// settleCreated decides the state of an init persisted as created:
// containerd may have died during runc start, which is not cut short with
// it (see initCreated.start), so runc's view decides: running (or paused)
// when the start went through, created otherwise. An init that already
// exited is then found stopped by its exit record.
func (t *Task) settleCreated(ctx context.Context) procStatus {
	s, err := t.runc.State(ctx, t.id)
	if err != nil {
		log.G(ctx).WithError(err).WithField("id", t.id).Debug("embed: runc state of a task restored as created")
		return statusCreated
	}
	switch procStatus(s.Status) {
	case statusRunning, statusPaused:
		log.G(ctx).WithField("id", t.id).Info("embed: task restored as created was started by a runc start that outlived containerd")
		return procStatus(s.Status)
	case statusStopped:
		// Started and exited while containerd was down.
		log.G(ctx).WithField("id", t.id).Info("embed: task restored as created was started and has exited")
		return statusRunning
	}
	return statusCreated
}

// reloadProcess restores one process. It returns the exit to handle if the
// process exited while containerd was down (or its exit was recorded but not
// published).
func (m *Manager) reloadProcess(ctx context.Context, p *process, s processState) *exitmon.Exit {
	var exit *exitFacts
	status := s.Status
	if s.Exited {
		exit = &exitFacts{status: s.ExitStatus, at: s.ExitedAt, published: s.Published}
		if status != statusDeleted {
			status = statusStopped
		}
	}
	st, err := restoredState(p, status, exit)
	if err != nil {
		// Written by another version, or by hand: the process is not
		// given up on; its exit, when the monitor reports it, stops it.
		log.G(ctx).WithError(err).Error("embed: unknown process state in state.json; taking it as running")
		st, _ = restoredState(p, statusRunning, nil)
	}
	p.mu.Lock()
	p.pid, p.ident, p.stdio = s.Pid, s.Ident, s.Stdio
	p.setStateLocked(st)
	// Already handled before the restart, unless the event may not have
	// gone out: then at least once (stopped -> stopped, published).
	p.exitClaimed = s.Exited && s.Published
	p.mu.Unlock()
	if s.Exited {
		m.router.add(exitmon.Key{Pid: p.pid, Ident: p.ident}, p)
		if !s.Published {
			return &exitmon.Exit{Pid: s.Pid, Ident: s.Ident, ExitedAt: s.ExitedAt,
				Status: waitStatusFor(s.ExitStatus)}
		}
		return nil
	}
	if p.pid == 0 {
		return nil
	}
	key := exitmon.Key{Pid: p.pid, Ident: p.ident}
	// Route before Lookup: a process still running is re-polled by
	// Lookup and its exit may arrive on Exits() at once.
	m.router.add(key, p)
	e, err := m.monitor.Lookup(p.pid, p.ident)
	if err != nil {
		e = m.retrack(ctx, p, err)
	}
	if e != nil {
		return e
	}
	// Running: a pidfd again for signals, if the pid is still ours.
	if fd, err := unix.PidfdOpen(p.pid, 0); err == nil {
		if ident, ierr := exitmon.Identity(p.pid); ierr == nil && ident == p.ident {
			p.pidfd = fd
		} else {
			unix.Close(fd)
		}
	}
	p.io = reopenProcessIO(ctx, p.stdio)
	return nil
}

// retrack handles a process the monitor could not look up (lookupErr):
// its registration is gone (pins removed or replaced by hand, a root wiped
// under a running daemon) or it is gone without a record. A process that
// still lives is registered again; one that is gone gets the status the BPF
// program filed for it if there is one, else it is reported stopped with an
// unknown status (255, as containerd reports a task whose shim died), never
// left running with a dead pid.
func (m *Manager) retrack(ctx context.Context, p *process, lookupErr error) *exitmon.Exit {
	l := log.G(ctx).WithFields(log.Fields{"pid": p.pid, "process": p.id})
	switch {
	case errors.Is(lookupErr, exitmon.ErrNoRecord):
	case errors.Is(lookupErr, exitmon.ErrNotRegistered):
		_, err := m.monitor.Register(p.pid, p.ident)
		if err == nil {
			l.WithError(lookupErr).Warn("embed: restored process had lost its registration; registered again")
			return nil
		}
		if !errors.Is(err, exitmon.ErrExited) && !errors.Is(err, exitmon.ErrNotExpected) {
			l.WithError(err).Error("embed: cannot register a restored process again; its exit will not be reported")
			return nil
		}
	default:
		l.WithError(lookupErr).Error("embed: lookup of a restored process failed")
		return nil
	}
	// Unregistered exits are filed under "recent": its own, if it is still
	// there, has its identity.
	if e, _ := m.monitor.FindRecent(p.pid, 0); e != nil && e.Ident == p.ident {
		l.WithError(lookupErr).Warn("embed: restored process exited unregistered; status taken from the recent exits")
		return e
	}
	l.WithError(lookupErr).Error("embed: restored process is gone and left no exit record; reporting it stopped with status 255")
	return &exitmon.Exit{Pid: p.pid, Ident: p.ident, ExitedAt: time.Now(), Unrecorded: true}
}

// waitStatusFor turns a containerd exit status back into a wait status so a
// persisted exit can go through the same path as a monitor's.
func waitStatusFor(status uint32) uint32 {
	if status > 128 && status < 128+65 {
		return status - 128 // killed by signal (status-128)
	}
	return (status & 0xff) << 8
}

// containerGone reports whether containerd's metadata says the task's
// container does not exist (not when the question cannot be answered).
func (m *Manager) containerGone(ctx context.Context, ns, id string) bool {
	if m.containers == nil {
		return false
	}
	ok, err := m.containers.Exists(ctx, ns, id)
	if err != nil {
		log.G(ctx).WithError(err).Warn("embed: cannot tell whether the task's container exists; keeping the task")
		return false
	}
	return !ok
}

// cleanupBroken removes a task that cannot be reloaded (e.g. containerd died
// during create, before state.json was written) or whose container is gone:
// its processes (runc delete --force), registrations and records, rootfs
// mount and bundle.
func (m *Manager) cleanupBroken(ctx context.Context, ns, id string) {
	b := loadBundle(id, filepath.Join(m.state, ns), filepath.Join(m.root, ns))
	rc := &RuncConfig{Binary: m.config.Runtime, Root: filepath.Join(m.config.RuntimeRoot, ns)}
	if st, err := readState(b.path); err == nil {
		rc = &st.Runc
		for _, ps := range append(st.Execs, st.Init) {
			if ps.Pid != 0 {
				m.monitor.Forget(ps.Pid, ps.Ident)
			}
		}
	}
	forceDelete(ctx, rc.newRunc(b), id)
	b.removeSpecCgroup(ctx)
	if err := unmountRootfs(m.mounter, b.rootfs()); err != nil {
		log.G(ctx).WithError(err).Warn("embed: unmount rootfs of broken task")
	}
	if err := b.delete(); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.G(ctx).WithError(err).Warn("embed: remove bundle of broken task")
	}
}

// reconcile forgets monitor registrations (and records) that no task owns:
// left by a crash between registration and state.json, or by a delete that
// did not finish.
func (m *Manager) reconcile(ctx context.Context) {
	keys, err := m.monitor.Registered()
	if err != nil {
		log.G(ctx).WithError(err).Warn("embed: list monitor registrations")
		return
	}
	for _, k := range keys {
		if m.router.has(k) {
			continue
		}
		log.G(ctx).WithField("pid", k.Pid).Info("embed: forgetting stale exit registration")
		if err := m.monitor.Forget(k.Pid, k.Ident); err != nil {
			log.G(ctx).WithError(err).WithField("pid", k.Pid).Warn("embed: forget stale registration")
		}
	}
}
