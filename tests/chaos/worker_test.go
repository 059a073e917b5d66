//go:build linux

package chaos

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd"
	eventstypes "github.com/containerd/containerd/api/events"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/typeurl/v2"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

var nullIO = cio.NullIO

// Each worker drives containers of one runtime (workers alternate
// runtimes, so both get the same load), at most maxCtrs at a time, one
// operation at a time; only the fault thread and the processes' own exits
// act on them concurrently.
const maxCtrs = 3

// signals a kill operation sends (a process not killed by one exits with
// its wantStatus; the init, pid 1 of its namespace, ignores all but KILL).
var signals = []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1}

type ctrState struct {
	id, rt string
	init   *proc
	execs  []*proc
	nexec  int
	broken bool // an operation on it failed half-way: clean it up
	paused bool // Resume failed: resume before anything else
	tries  int  // delete attempts
}

type worker struct {
	r    *run
	id   int
	rt   string
	rng  *rand.Rand
	n    int
	ctrs []*ctrState
}

func (w *worker) loop(ctx context.Context) {
	for ctx.Err() == nil {
		time.Sleep(time.Duration(w.rng.Intn(150)) * time.Millisecond)
		cl := w.r.d.Client()
		if cl == nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		// Operations get their own deadline: one stuck in a dead
		// daemon must not hold the gate for long.
		octx, cancel := context.WithTimeout(w.r.ctx, 30*time.Second)
		w.r.gate.RLock()
		w.step(octx, cl)
		w.r.gate.RUnlock()
		cancel()
	}
}

func (w *worker) step(ctx context.Context, cl *containerd.Client) {
	// A container to clean up or resume comes first, then a due CloseIO.
	for _, c := range w.ctrs {
		if c.paused {
			w.resume(ctx, cl, c)
			return
		}
		if c.broken {
			w.cleanBroken(ctx, cl, c)
			return
		}
	}
	if w.closeStdins(ctx, cl) {
		return
	}
	x := w.rng.Intn(100)
	switch {
	case x < 25:
		if len(w.ctrs) < maxCtrs {
			w.create(ctx, cl)
			return
		}
		w.exec(ctx, cl)
	case x < 55:
		w.exec(ctx, cl)
	case x < 67:
		w.kill(ctx, cl, false)
	case x < 72:
		w.kill(ctx, cl, true)
	case x < 78:
		w.pause(ctx, cl)
	case x < 90:
		w.deleteTask(ctx, cl)
	default:
		w.deleteExec(ctx, cl)
	}
}

// script is a process that exits with status want after lifetime (none:
// at once), optionally printing a marker or reading stdin first (pl).
func script(want uint32, lifetime time.Duration, pl ioPlan) string {
	s := ""
	if pl.marker != "" {
		s = "echo " + pl.marker + "; "
	}
	if pl.stdin != nil {
		s += pl.stdin.script()
	}
	if lifetime > 0 {
		s += fmt.Sprintf("sleep %.1f; ", lifetime.Seconds())
	}
	return s + fmt.Sprintf("exit %d", want)
}

// lifetime: a third exits at once, the rest after 0.5..15 s.
func (w *worker) lifetime() time.Duration {
	if w.rng.Intn(3) == 0 {
		return 0
	}
	return time.Duration(500+w.rng.Intn(14500)) * time.Millisecond
}

func (w *worker) create(ctx context.Context, cl *containerd.Client) {
	r := w.r
	w.n++
	id := fmt.Sprintf("w%d-%d-%s", w.id, w.n, short(w.rt))
	want := wantStatus(id)
	pl := w.plan(id)
	life := w.lifetime()
	cs := &ctrState{id: id, rt: w.rt}
	w.ctrs = append(w.ctrs, cs)
	// The image through the current client: one of a client closed by a
	// restart fails every call.
	img, err := cl.GetImage(ctx, harness.TestImageRef)
	if err != nil {
		r.logf("%s: image: %v", id, err)
		cs.broken = true
		return
	}
	c, err := cl.NewContainer(ctx, id,
		containerd.WithNewSnapshot(id+"-snap", img),
		containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sh", "-c", script(want, life, pl))),
		containerd.WithRuntime(w.rt, &runcoptions.Options{BinaryName: r.wrapper}))
	if err != nil {
		r.logf("%s: new container: %v", id, err)
		cs.broken = true
		return
	}
	task, err := c.NewTask(ctx, pl.creator)
	if err != nil {
		if pl.stdin != nil {
			_ = pl.stdin.w.Close() // ends the client's copy from it
		}
		r.noteErr(err)
		r.logf("%s: new task: %v", id, err)
		cs.broken = true
		return
	}
	p := &proc{rt: w.rt, ctr: id, want: want, out: pl.out, marker: pl.marker, stdin: pl.stdin, io: task.IO()}
	cs.init = p
	r.m.add(p, want)
	p.started = time.Now()
	err = task.Start(ctx)
	r.m.setCertain(p, err == nil)
	if err != nil {
		r.logf("%s: start: %v", id, err)
		cs.broken = true
	} else {
		r.setPid(p, task.Pid())
		p.feedStdin()
	}
	r.startWaiter(p)
}

func (w *worker) pick() *ctrState {
	if len(w.ctrs) == 0 {
		return nil
	}
	return w.ctrs[w.rng.Intn(len(w.ctrs))]
}

func (w *worker) exec(ctx context.Context, cl *containerd.Client) {
	r := w.r
	cs := w.pick()
	if cs == nil || cs.init == nil || r.m.isWaited(cs.init) {
		return
	}
	c, err := cl.LoadContainer(ctx, cs.id)
	if err != nil {
		return
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		return
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return
	}
	cs.nexec++
	eid := fmt.Sprintf("x%d", cs.nexec)
	want := wantStatus(cs.id + "/" + eid)
	pl := w.plan(cs.id + "-" + eid)
	ps := *spec.Process
	ps.Args = []string{"sh", "-c", script(want, w.lifetime(), pl)}
	ps.Terminal = false
	p := &proc{rt: cs.rt, ctr: cs.id, exec: eid, want: want, out: pl.out, marker: pl.marker, stdin: pl.stdin}
	r.m.add(p, want)
	cs.execs = append(cs.execs, p)
	pr, err := task.Exec(ctx, eid, &ps, pl.creator)
	if err != nil {
		// Not started: it never ran (its exit, if any shows up, is
		// checked).
		r.noteErr(err)
		return
	}
	p.io = pr.IO()
	p.started = time.Now()
	err = pr.Start(ctx)
	r.m.setCertain(p, err == nil)
	if err != nil {
		r.noteErr(err)
		r.logf("%s: exec start: %v", p.name(), err)
	} else {
		r.setPid(p, pr.Pid())
		p.feedStdin()
	}
	r.startWaiter(p)
}

// live lists the processes of w's containers whose Wait has not returned.
func (w *worker) live(cs *ctrState) []*proc {
	var out []*proc
	for _, p := range append([]*proc{cs.init}, cs.execs...) {
		if p != nil && p.certain && !w.r.m.isWaited(p) {
			out = append(out, p)
		}
	}
	return out
}

func (w *worker) kill(ctx context.Context, cl *containerd.Client, all bool) {
	r := w.r
	cs := w.pick()
	if cs == nil {
		return
	}
	live := w.live(cs)
	if len(live) == 0 {
		return
	}
	sig := signals[w.rng.Intn(len(signals))]
	c, err := cl.LoadContainer(ctx, cs.id)
	if err != nil {
		return
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return
	}
	if all {
		for _, p := range cs.procs() {
			r.m.allow(p, 128+uint32(sig))
		}
		if sig == syscall.SIGKILL {
			r.m.initEnds(cs.ctr())
		}
		_ = task.Kill(ctx, sig, containerd.WithKillAll)
		return
	}
	p := live[w.rng.Intn(len(live))]
	r.m.allow(p, 128+uint32(sig))
	if p.exec == "" {
		if sig == syscall.SIGKILL {
			r.m.initEnds(cs.id)
		}
		_ = task.Kill(ctx, sig)
		return
	}
	pr, err := task.LoadProcess(ctx, p.exec, nil)
	if err != nil {
		return
	}
	_ = pr.Kill(ctx, sig)
}

func (cs *ctrState) ctr() string { return cs.id }

// procs: the init (if created) and the execs, whatever their state.
func (cs *ctrState) procs() []*proc {
	var out []*proc
	for _, p := range append([]*proc{cs.init}, cs.execs...) {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

func (w *worker) pause(ctx context.Context, cl *containerd.Client) {
	cs := w.pick()
	if cs == nil || cs.init == nil || !cs.init.certain || w.r.m.isWaited(cs.init) {
		return
	}
	c, err := cl.LoadContainer(ctx, cs.id)
	if err != nil {
		return
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return
	}
	if err := task.Pause(ctx); err != nil {
		return
	}
	cs.paused = true
	time.Sleep(time.Duration(w.rng.Intn(300)) * time.Millisecond)
	w.resume(ctx, cl, cs)
}

func (w *worker) resume(ctx context.Context, cl *containerd.Client, cs *ctrState) {
	c, err := cl.LoadContainer(ctx, cs.id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			cs.paused = false
		}
		return
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			cs.paused = false
		}
		return
	}
	st, err := task.Status(ctx)
	if err != nil {
		return
	}
	if st.Status != containerd.Paused {
		cs.paused = false
		return
	}
	if err := task.Resume(ctx); err == nil {
		cs.paused = false
	}
}

// deleteTask deletes a container whose init's Wait returned (its execs
// first), checking the statuses Delete returns.
func (w *worker) deleteTask(ctx context.Context, cl *containerd.Client) {
	cs := w.pick()
	if cs == nil || cs.init == nil || !w.r.m.isWaited(cs.init) {
		return
	}
	cs.tries++
	// The execs die with the init; wait for their Waits a few rounds.
	for _, p := range cs.execs {
		if p.certain && !w.r.m.isWaited(p) && cs.tries < 5 {
			return
		}
	}
	w.remove(ctx, cl, cs)
}

// remove deletes cs's task and container; on success cs leaves w.ctrs.
func (w *worker) remove(ctx context.Context, cl *containerd.Client, cs *ctrState) bool {
	r := w.r
	c, err := cl.LoadContainer(ctx, cs.id)
	if errdefs.IsNotFound(err) {
		w.forget(cs)
		return true
	}
	if err != nil {
		return false
	}
	task, err := c.Task(ctx, nil)
	switch {
	case errdefs.IsNotFound(err):
	case err != nil:
		return false
	default:
		for _, p := range cs.execs {
			if !p.certain || !r.m.isWaited(p) || r.m.isDeleted(p) {
				continue
			}
			if pr, err := task.LoadProcess(ctx, p.exec, nil); err == nil {
				if st, err := pr.Delete(ctx); err == nil {
					code := st.ExitCode()
					r.m.markDeleted(p, &code)
				}
			}
		}
		opts := []containerd.ProcessDeleteOpts{}
		if cs.broken {
			opts = append(opts, containerd.WithProcessKill)
		}
		st, err := task.Delete(ctx, opts...)
		if err != nil {
			r.logf("%s: task delete: %v", cs.id, err)
			return false
		}
		if cs.init != nil && cs.init.certain {
			code := st.ExitCode()
			r.m.markDeleted(cs.init, &code)
		}
	}
	closeIO(cs)
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		r.logf("%s: container delete: %v", cs.id, err)
		return false
	}
	w.forget(cs)
	return true
}

func closeIO(cs *ctrState) {
	for _, p := range append([]*proc{cs.init}, cs.execs...) {
		if p != nil && p.stdin != nil {
			_ = p.stdin.w.Close() // ends the client's copy into the FIFO
		}
		if p != nil && p.io != nil {
			// Let the copy finish (the writers are gone once the
			// task is deleted) before closing: stdout is checked.
			done := make(chan struct{})
			go func(i cio.IO) { i.Wait(); close(done) }(p.io)
			select {
			case <-done:
			case <-time.After(2 * time.Second):
			}
			p.io.Cancel()
			_ = p.io.Close()
			p.io = nil
		}
	}
}

func (w *worker) forget(cs *ctrState) {
	for i, c := range w.ctrs {
		if c == cs {
			w.ctrs = append(w.ctrs[:i], w.ctrs[i+1:]...)
			return
		}
	}
}

// cleanBroken kills and deletes a container an operation left half done.
func (w *worker) cleanBroken(ctx context.Context, cl *containerd.Client, cs *ctrState) {
	r := w.r
	for _, p := range cs.procs() {
		r.m.allow(p, 137)
	}
	r.m.initEnds(cs.id)
	if c, err := cl.LoadContainer(ctx, cs.id); err == nil {
		if task, err := c.Task(ctx, nil); err == nil {
			if st, err := task.Status(ctx); err == nil && st.Status != containerd.Stopped {
				if st.Status == containerd.Paused {
					_ = task.Resume(ctx)
				}
				_ = task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll)
			}
		}
	}
	w.remove(ctx, cl, cs)
}

func (w *worker) deleteExec(ctx context.Context, cl *containerd.Client) {
	r := w.r
	cs := w.pick()
	if cs == nil {
		return
	}
	for _, p := range cs.execs {
		if !p.certain || !r.m.isWaited(p) || r.m.isDeleted(p) {
			continue
		}
		c, err := cl.LoadContainer(ctx, cs.id)
		if err != nil {
			return
		}
		task, err := c.Task(ctx, nil)
		if err != nil {
			return
		}
		pr, err := task.LoadProcess(ctx, p.exec, nil)
		if err != nil {
			if errdefs.IsNotFound(err) {
				r.m.markDeleted(p, nil)
			}
			return
		}
		st, err := pr.Delete(ctx)
		if err == nil {
			code := st.ExitCode()
			r.m.markDeleted(p, &code)
		}
		return
	}
}

// startWaiter waits for p's exit in a goroutine, again after each daemon
// restart, until Wait returns a status or the process is gone.
func (r *run) startWaiter(p *proc) {
	// A process whose Start failed may never have run: its Wait may
	// block until the task is deleted, so the drain gives up on it early.
	wctx := r.waitCtx
	if !p.certain {
		wctx = r.uncertainCtx
	}
	r.waiters.Add(1)
	go func() {
		defer r.waiters.Done()
		gone := 0
		for {
			if wctx.Err() != nil {
				r.m.waitGaveUp(p, "no status before the driver's deadline")
				return
			}
			cl := r.d.Client()
			if cl == nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			pr, err := loadProc(wctx, cl, p)
			if errdefs.IsNotFound(err) {
				if gone++; gone >= 3 {
					r.m.waitGaveUp(p, "not found: "+err.Error())
					return
				}
			}
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			ch, err := pr.Wait(wctx)
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			st := <-ch
			code, at, err := st.Result()
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			r.m.waited(p, code, at)
			if p.exec == "" {
				r.m.initEnds(p.ctr)
			}
			return
		}
	}()
}

func loadProc(ctx context.Context, cl *containerd.Client, p *proc) (containerd.Process, error) {
	c, err := cl.LoadContainer(ctx, p.ctr)
	if err != nil {
		return nil, err
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return nil, err
	}
	if p.exec == "" {
		return task, nil
	}
	return task.LoadProcess(ctx, p.exec, nil)
}

// watchExits collects the /tasks/exit events of the run's namespace from
// one subscription, subscribing again at once after each daemon restart.
// It has its own client: the harness closes Client() before it stops the
// daemon, and exits in between would be published to no one.
func (r *run) watchExits(ctx context.Context) {
	for ctx.Err() == nil {
		// Client() is set once the (new) daemon serves: connect then,
		// not before (a blocking dial to a dead socket backs off for
		// a second or more).
		if r.d.Client() == nil {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		cl, err := containerd.New(r.d.Address, containerd.WithTimeout(time.Second))
		if err != nil {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		sctx, cancel := context.WithCancel(ctx)
		ch, errs := cl.Subscribe(sctx, `topic=="/tasks/exit"`)
		r.logf("exit events: subscribed (daemon pid %d)", r.d.Pid())
	recv:
		for {
			select {
			case env := <-ch:
				if env == nil || env.Namespace != r.d.Namespace {
					continue
				}
				v, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					continue
				}
				if x, ok := v.(*eventstypes.TaskExit); ok {
					r.m.event(x.ContainerID, x.ID, x.ExitStatus, x.ExitedAt.AsTime())
				}
			case <-errs:
				break recv
			case <-ctx.Done():
				break recv
			}
		}
		cancel()
		cl.Close()
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *run) setPid(p *proc, pid uint32) {
	r.mu.Lock()
	r.pids[p.key()] = &procPidOf{p, pid}
	r.mu.Unlock()
}

// lockedBuffer is a bytes.Buffer safe for the client's copy goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// noteErr counts the create and exec errors that say embed's tracking
// capacity is reached (CHAOS_CAPACITY).
func (r *run) noteErr(err error) {
	if strings.Contains(err.Error(), "tracking capacity") {
		r.mu.Lock()
		r.capacityHits++
		r.mu.Unlock()
	}
}
