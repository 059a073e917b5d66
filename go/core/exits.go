//go:build linux

package core

import (
	"context"
	"sync"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/embedshim/embedshim/go/exitmon"
)

// orphanTTL bounds how long an exit without an owner is kept.
const orphanTTL = time.Minute

// exitRouter maps a tracked process (pid + identity, never the pid alone) to
// the process object that owns it.
//
// Exits of processes registered by the monitor itself (RunDetached for
// execs) can arrive before the owner is known; they are kept briefly as
// orphans and handed over by claim.
type exitRouter struct {
	mu      sync.Mutex
	m       map[exitmon.Key]*process
	orphans map[exitmon.Key]orphanExit
}

type orphanExit struct {
	e  exitmon.Exit
	at time.Time
}

func newExitRouter() *exitRouter {
	return &exitRouter{
		m:       make(map[exitmon.Key]*process),
		orphans: make(map[exitmon.Key]orphanExit),
	}
}

// route returns the owner of e, or keeps e as an orphan (atomically with
// respect to claim, so an exit is never lost between the two).
func (r *exitRouter) route(e exitmon.Exit) *process {
	k := exitmon.Key{Pid: e.Pid, Ident: e.Ident}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.m[k]; p != nil {
		return p
	}
	now := time.Now()
	for ok, o := range r.orphans {
		if now.Sub(o.at) > orphanTTL {
			delete(r.orphans, ok)
		}
	}
	r.orphans[k] = orphanExit{e: e, at: now}
	return nil
}

// claim adds the route for k and returns the exit that arrived before it,
// if any.
func (r *exitRouter) claim(k exitmon.Key, p *process) *exitmon.Exit {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[k] = p
	if o, ok := r.orphans[k]; ok {
		delete(r.orphans, k)
		return &o.e
	}
	return nil
}

func (r *exitRouter) add(k exitmon.Key, p *process) {
	r.mu.Lock()
	r.m[k] = p
	r.mu.Unlock()
}

func (r *exitRouter) remove(k exitmon.Key) {
	r.mu.Lock()
	delete(r.m, k)
	r.mu.Unlock()
}

func (r *exitRouter) get(k exitmon.Key) *process {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[k]
}

func (r *exitRouter) has(k exitmon.Key) bool {
	return r.get(k) != nil
}

// startExitLoop runs the single consumer of the monitor's exits. It only
// routes; the per-task logic lives in Task.onExit.
func (m *Manager) startExitLoop() {
	go func() {
		for e := range m.monitor.Exits() {
			if m.stopping.Load() {
				continue // its record stays pinned for the next start
			}
			p := m.router.route(e)
			if p == nil {
				// Not claimed yet (an exec being started), forgotten
				// meanwhile (deleted task) or never ours.
				log.L.WithField("pid", e.Pid).Debug("embed: exit of an unknown process")
				continue
			}
			p.task.onExit(p, e)
		}
	}()
}

// release stops holding p's exits back (see process.gate) and hands over
// the one held meanwhile: called once the event that must precede it went
// out (or the operation that gated failed), so no held exit is dropped.
func (t *Task) release(p *process) {
	if e := p.ungate(); e != nil {
		t.onExit(p, *e)
	}
}

// onExit handles the exit of one of the task's processes, with runc.v2's
// ordering rules: an exit is not published before the event announcing the
// process (see process.gate), and the init's exit is published last, after
// the exits of every exec that was running.
func (t *Task) onExit(p *process, e exitmon.Exit) {
	if p.hold(e) {
		return
	}
	if !p.claimExit() {
		return
	}
	if e.Unrecorded {
		log.L.WithFields(log.Fields{"id": t.id, "process": p.id, "pid": e.Pid}).
			Error("embed: process exited without an exit record; status unknown")
	}
	if !p.isInit {
		t.execExited(p, e)
		return
	}
	if t.killAllOnExit && !t.isDeleted() {
		// Without a private pid namespace the init's death does not take
		// the other processes with it; runc.v2 kills them, so do we. This
		// runs a runc command, so keep it off the dispatcher goroutine.
		go func() {
			if err := t.runc.Kill(context.Background(), t.id, int(unix.SIGKILL), &runc.KillOpts{All: true}); err != nil {
				log.L.WithError(err).WithField("id", t.id).Debug("embed: kill init's children")
			}
			t.initExited(e)
		}()
		return
	}
	t.initExited(e)
}

func (t *Task) initExited(e exitmon.Exit) {
	t.mu.Lock()
	ee := e
	t.initExit = &ee
	if t.runningExecs > 0 {
		t.initExitHeld = true
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	t.publishExit(t.init, e)
}

func (t *Task) execExited(p *process, e exitmon.Exit) {
	t.publishExit(p, e)
	t.execDone()
}

// execDone accounts for an exec that stopped running (or failed to start)
// and releases a held init exit when it was the last one.
func (t *Task) execDone() {
	t.mu.Lock()
	if t.runningExecs > 0 {
		t.runningExecs--
	}
	var held *exitmon.Exit
	if t.runningExecs == 0 && t.initExitHeld {
		held = t.initExit
		t.initExitHeld = false
	}
	t.mu.Unlock()
	if held != nil {
		t.publishExit(t.init, *held)
	}
}

// publishExit records the exit on the process and sends /tasks/exit once,
// with the payload runc.v2 sends. The exit time is the one the monitor
// recorded at the exit itself, so it is right even for exits that happened
// while containerd was down.
func (t *Task) publishExit(p *process, e exitmon.Exit) {
	if t.m.stopping.Load() {
		// Taken before containerd was told to stop, held until now (an
		// exec's or a start's gate): left to the next start as well.
		return
	}
	status := exitStatusOf(e)
	prev, publish := p.setExited(exitFacts{status: status, at: e.ExitedAt})
	if p.isInit && prev == statusPaused {
		// A frozen cgroup would keep the rest of the container stuck.
		go func() {
			if err := t.runc.Resume(context.Background(), t.id); err != nil {
				log.L.WithError(err).WithField("id", t.id).Error("embed: resume after exit of paused init")
			}
		}()
	}
	if publish {
		t.pub.publish(t.namespace, TopicExit, &eventstypes.TaskExit{
			ContainerID: t.id,
			ID:          p.id,
			Pid:         uint32(e.Pid),
			ExitStatus:  status,
			ExitedAt:    timestamppb.New(e.ExitedAt),
		})
	}
	t.persist()
}

// exitStatusOf converts the raw wait status. An exit without a record (the
// monitor could not read one) is reported as 255, never as a fake success.
func exitStatusOf(e exitmon.Exit) uint32 {
	if e.Unrecorded {
		return 255
	}
	return exitmon.ExitStatus(e.Status)
}
