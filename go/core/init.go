//go:build linux

package core

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/api/types"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/embedshim/embedshim/go/exitmon"
)

// createdKillTimeout bounds the wait for runc-init to die when a task that was
// never started is deleted.
const createdKillTimeout = 5 * time.Second

// create mounts the rootfs and runs runc create. On success the init is
// tracked and gated: its exit cannot be published before /tasks/create.
func (t *Task) create(ctx context.Context, opts CreateOpts) (err error) {
	if spec, serr := t.bundle.spec(); serr == nil {
		t.killAllOnExit = shouldKillAllOnExit(spec)
	} else {
		t.killAllOnExit = true
	}

	if len(opts.Rootfs) > 0 {
		if err := t.m.mounter.Mount(ctx, opts.Rootfs, t.bundle.rootfs()); err != nil {
			return fmt.Errorf("failed to mount rootfs component: %w", err)
		}
		defer func() {
			if err != nil {
				if uerr := unmountRootfs(t.m.mounter, t.bundle.rootfs()); uerr != nil {
					log.G(ctx).WithError(uerr).Warn("embed: unmount rootfs after failed create")
				}
			}
		}()
	}

	p := t.init
	p.gate()
	if opts.Checkpoint != "" {
		// As in the runc shim, a restore does not create anything now:
		// runc restore runs at Start.
		t.checkpoint = opts.Checkpoint
		t.persist()
		return nil
	}

	pio, rio, socket, err := t.prepareIO(p.stdio)
	if err != nil {
		return err
	}
	if socket != nil {
		defer socket.Close()
	}
	p.io = pio
	defer func() {
		if err != nil {
			pio.closeAll()
		}
	}()

	copts := &runc.CreateOpts{
		PidFile:      t.bundle.initPid(),
		NoPivot:      t.rc.NoPivotRoot,
		NoNewKeyring: t.rc.NoNewKeyring,
	}
	if rio != nil {
		copts.IO = rio
	}
	if socket != nil {
		copts.ConsoleSocket = socket
	}
	// runc-init is alive from here until its pid is read: an exit of that
	// pid after this moment is its exit.
	since := exitmon.MonoNow()
	if err := t.runc.Create(ctx, t.id, t.bundle.path, copts); err != nil {
		err = runtimeError(t.runc, err, "OCI runtime create failed")
		// runc cleans up after its own errors, but not when it was killed
		// half-way (its state dir, cgroups and runc-init stay): as
		// runc.v2's shim delete does after a failed create.
		forceDelete(ctx, t.runc, t.id)
		t.bundle.removeSpecCgroup(ctx)
		return err
	}
	defer func() {
		if err != nil {
			forceDelete(ctx, t.runc, t.id)
		}
	}()
	if err := t.finishIO(ctx, pio, socket); err != nil {
		return err
	}
	pid, err := runc.ReadPidFile(t.bundle.initPid())
	if err != nil {
		return fmt.Errorf("failed to retrieve OCI runtime container pid: %w", err)
	}
	if err := t.m.attach(p, pid); err != nil {
		if !errors.Is(err, errExitedEarly) {
			return err
		}
		t.initDiedBeforeTracked(ctx, pid, since)
	}
	t.persist()
	return nil
}

// initDiedBeforeTracked handles a runc-init that died between runc create
// and its registration. It waits on exec.fifo, so it was killed: by an OCI
// runtime wrapper (a fault-injecting one does it on purpose), the OOM killer
// or a user. runc.v2 then reports the task created and its exit right after
// /tasks/create, so do we. The daemon's reaper may have reaped it already,
// so its status is found by pid among the exits since create began.
func (t *Task) initDiedBeforeTracked(ctx context.Context, pid int, since uint64) {
	p := t.init
	e, err := t.m.monitor.FindRecent(pid, since)
	if err != nil || e == nil {
		log.G(ctx).WithError(err).WithField("pid", pid).
			Error("embed: container init died before it was tracked and its exit status is lost")
		e = &exitmon.Exit{Pid: pid, ExitedAt: time.Now(), Unrecorded: true}
	}
	p.mu.Lock()
	p.pid, p.ident = pid, e.Ident
	p.mu.Unlock()
	// Gated since create began: held until /tasks/create is out.
	t.onExit(p, *e)
}

// prepareIO opens stdio for runc create/exec: files handed to runc, or a
// console socket for a terminal.
func (t *Task) prepareIO(paths stdioPaths) (*processIO, *runcIO, *runc.Socket, error) {
	if paths.Terminal {
		socket, err := newConsoleSocket()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("failed to create OCI runtime console socket: %w", err)
		}
		return &processIO{paths: paths}, nil, socket, nil
	}
	pio, rio, err := newProcessIO(paths, t.rc.IoUID, t.rc.IoGID)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("failed to create process I/O: %w", err)
	}
	return pio, rio, nil, nil
}

// finishIO runs once runc has handed over the process: start the stdin relay
// or receive the pty master and start the console copies.
func (t *Task) finishIO(ctx context.Context, pio *processIO, socket *runc.Socket) error {
	if socket == nil {
		return pio.afterRuncStarted()
	}
	master, err := socket.ReceiveMaster()
	if err != nil {
		return fmt.Errorf("failed to retrieve console master: %w", err)
	}
	if err := pio.startConsole(master); err != nil {
		return fmt.Errorf("failed to start console copy: %w", err)
	}
	return nil
}

func (t *Task) publishCreate(opts CreateOpts) {
	var rootfs []*types.Mount
	for _, m := range opts.Rootfs {
		rootfs = append(rootfs, &types.Mount{
			Type:    m.Type,
			Source:  m.Source,
			Target:  m.Target,
			Options: m.Options,
		})
	}
	t.pub.publish(t.namespace, TopicCreate, &eventstypes.TaskCreate{
		ContainerID: t.id,
		Bundle:      t.bundle.path,
		Rootfs:      rootfs,
		IO: &eventstypes.TaskIO{
			Stdin:    opts.IO.Stdin,
			Stdout:   opts.IO.Stdout,
			Stderr:   opts.IO.Stderr,
			Terminal: opts.IO.Terminal,
		},
		Checkpoint: opts.Checkpoint,
		Pid:        uint32(t.init.getPid()),
	})
}

// Start runs runc start (initCreated.start).
func (t *Task) Start(ctx context.Context) error {
	return t.initOp(func(s initState) error { return s.start(ctx) })
}

// delete is the task's part of Manager.Delete.
func (t *Task) delete(ctx context.Context) (exit *Exit, err error) {
	err = t.initOp(func(s initState) error {
		exit, err = s.delete(ctx)
		return err
	})
	return exit, err
}

// deleteCreated deletes a task that was never started. runc.v2 answers with
// the init's state at that point (status 0, no exit time), publishes
// /tasks/delete, and the SIGKILLed runc-init's /tasks/exit (137) follows; we
// produce the same sequence. runc-init is killed through its pidfd and its
// exit awaited first, so runc delete finds a stopped container instead of
// polling a dying one.
func (t *Task) deleteCreated(ctx context.Context, s *initCreated) (*Exit, error) {
	p := t.init
	if !p.gateIn(s) {
		return p.initState().delete(ctx) // lost to an exit: delete as stopped
	}
	var held = p.heldNote
	if err := p.signal(uint32(unix.SIGKILL)); err == nil {
		select {
		case <-held:
		case <-time.After(createdKillTimeout):
			log.G(ctx).WithField("id", t.id).Warn("embed: runc-init did not exit after SIGKILL")
		case <-ctx.Done():
		}
	}
	exit := &Exit{Pid: uint32(p.getPid())}
	if err := t.destroy(ctx); err != nil {
		// The task stays, its killed init reported stopped: a retry
		// deletes a stopped task.
		t.release(p)
		return nil, err
	}
	t.publishDelete(exit)
	// The SIGKILLed runc-init's exit, after /tasks/delete as on runc.v2.
	t.release(p)
	return exit, nil
}

// destroy removes everything the task holds: runc's state, the rootfs
// mount, monitor registrations and records, stdio, the bundle.
func (t *Task) destroy(ctx context.Context) error {
	if err := t.runcDelete(ctx); err != nil {
		return err
	}
	// persistMu too: no state.json write may race with the bundle removal.
	t.persistMu.Lock()
	t.mu.Lock()
	t.deleted = true
	execs := make([]*process, 0, len(t.execs))
	for _, e := range t.execs {
		execs = append(execs, e)
	}
	t.execs = map[string]*process{}
	t.mu.Unlock()
	t.persistMu.Unlock()

	t.m.unwatchOOM(t)
	for _, p := range append(execs, t.init) {
		t.m.detach(p)
		p.mu.Lock()
		pio := p.io
		p.mu.Unlock()
		if pio != nil {
			pio.closeAll()
		}
	}
	t.init.toDeleted()

	var err error
	if uerr := unmountRootfs(t.m.mounter, t.bundle.rootfs()); uerr != nil {
		log.G(ctx).WithError(uerr).Warn("embed: failed to cleanup rootfs mount")
		err = fmt.Errorf("failed rootfs umount: %w", uerr)
	}
	if derr := t.bundle.delete(); derr != nil {
		log.G(ctx).WithError(derr).Warn("embed: failed to delete bundle")
		if err == nil {
			err = derr
		}
	}
	// Like the runc shim, a failed cleanup after runc delete is reported
	// but the task is gone either way.
	if err != nil {
		log.G(ctx).WithError(err).WithField("id", t.id).Error("embed: delete task")
	}
	return nil
}

// runcDelete runs runc delete once the init is gone for runc too. Our exit
// can come before the init is a zombie: the init of a pid namespace stays in
// the kernel's namespace teardown (not yet a zombie, "running" for runc)
// until every other process of the namespace is reaped, and an exec's zombie
// is reaped by the host's pid 1, lazily. So wait (bounded) for the init's
// pidfd to turn readable, which it does once the init is a zombie, and retry
// runc delete while runc still sees a running container.
func (t *Task) runcDelete(ctx context.Context) error {
	deadline := time.Now().Add(stoppedTimeout)
	if t.init.hasExited() {
		t.init.awaitZombie(ctx, deadline)
	}
	for delay := 20 * time.Millisecond; ; delay *= 2 {
		err := t.runc.Delete(ctx, t.id, nil)
		if err == nil || strings.Contains(err.Error(), "does not exist") {
			return nil
		}
		rerr := runtimeError(t.runc, err, "failed to delete task")
		if !strings.Contains(rerr.Error(), "is not stopped") || time.Now().After(deadline) {
			// A zombie init counts as stopped for runc, so this is a
			// real failure; keep everything for a retry.
			return rerr
		}
		if delay > 500*time.Millisecond {
			delay = 500 * time.Millisecond
		}
		log.G(ctx).WithField("id", t.id).Debug("embed: init exited but runc sees it running; retrying delete")
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return rerr
		}
	}
}

// stoppedTimeout bounds the wait, at delete, for an init whose exit we know
// to be a zombie (or gone) for runc too.
const stoppedTimeout = 15 * time.Second

// awaitZombie waits until the process's pidfd is readable (the process is a
// zombie or reaped), the deadline passes or ctx is done.
func (p *process) awaitZombie(ctx context.Context, deadline time.Time) {
	p.mu.Lock()
	fd := -1
	if p.pidfd >= 0 {
		fd, _ = unix.FcntlInt(uintptr(p.pidfd), unix.F_DUPFD_CLOEXEC, 0)
	}
	p.mu.Unlock()
	if fd < 0 {
		return
	}
	defer unix.Close(fd)
	for ctx.Err() == nil {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		if left > 100*time.Millisecond {
			left = 100 * time.Millisecond // re-check ctx
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left/time.Millisecond)+1)
		if err != nil && err != unix.EINTR {
			return
		}
		if n > 0 {
			return
		}
	}
}

// shouldKillAllOnExit: true unless the container has its own pid namespace.
func shouldKillAllOnExit(spec *specs.Spec) bool {
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type == specs.PIDNamespace && ns.Path == "" {
				return false
			}
		}
	}
	return true
}
