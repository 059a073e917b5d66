//go:build linux

package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd"
	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// rtInfo is one runtime under test.
type rtInfo struct {
	Key  string // keyEmbed / keyRuncV2
	Name string // runtime name given to WithRuntime
}

// bench holds the shared state of one run.
type bench struct {
	d        *harness.Daemon
	img      containerd.Image
	cfg      config
	rts      []rtInfo
	rep      *Report
	cpu      *cpuMeter
	clockDir string // host dir bind-mounted at /clock for exitclock
	seq      atomic.Int64
	logf     func(format string, args ...any)
}

func (b *bench) newID(prefix string, rt rtInfo) string {
	return fmt.Sprintf("%s-%s-%d", prefix, strings.ReplaceAll(rt.Key, "_", ""), b.seq.Add(1))
}

// order rotates the runtimes per round so that drift hits all of them.
func (b *bench) order(round int) []rtInfo {
	n := len(b.rts)
	out := make([]rtInfo, n)
	for i := range b.rts {
		out[i] = b.rts[(i+round)%n]
	}
	return out
}

func (b *bench) newContainer(ctx context.Context, id string, rt rtInfo, extra ...oci.SpecOpts) (containerd.Container, error) {
	opts := append([]oci.SpecOpts{oci.WithImageConfig(b.img)}, extra...)
	return b.d.Client().NewContainer(ctx, id,
		containerd.WithNewSnapshot(id+"-snap", b.img),
		containerd.WithNewSpec(opts...),
		containerd.WithRuntime(rt.Name, nil),
	)
}

// discard removes a container and its task after an error, best effort.
func discard(ctx context.Context, c containerd.Container) {
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if task, err := c.Task(ctx, nil); err == nil {
		_ = task.Kill(ctx, syscall.SIGKILL)
		_, _ = task.Delete(ctx, containerd.WithProcessKill)
	}
	_ = c.Delete(ctx, containerd.WithSnapshotCleanup)
}

// phases of one lifecycle, ms.
type phases struct {
	ContainerCreate, TaskCreate, TaskStart, Wait, TaskDelete, ContainerDelete, Total float64
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// lifecycle runs container create → task create → start → wait → task
// delete → container delete of `true` (exit status must be 0).
func (b *bench) lifecycle(ctx context.Context, rt rtInfo, prefix string) (p phases, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	id := b.newID(prefix, rt)
	t0 := time.Now()
	c, err := b.newContainer(ctx, id, rt, oci.WithProcessArgs("true"))
	if err != nil {
		return p, fmt.Errorf("%s: container create: %w", id, err)
	}
	ok := false
	defer func() {
		if !ok {
			discard(ctx, c)
		}
	}()
	t1 := time.Now()
	task, err := c.NewTask(ctx, cio.NullIO)
	if err != nil {
		return p, fmt.Errorf("%s: task create: %w", id, err)
	}
	t2 := time.Now()
	ch, err := task.Wait(ctx)
	if err != nil {
		return p, fmt.Errorf("%s: wait: %w", id, err)
	}
	t3a := time.Now()
	if err := task.Start(ctx); err != nil {
		return p, fmt.Errorf("%s: start: %w", id, err)
	}
	t3 := time.Now()
	var st containerd.ExitStatus
	select {
	case st = <-ch:
	case <-ctx.Done():
		return p, fmt.Errorf("%s: no exit: %w", id, ctx.Err())
	}
	t4 := time.Now()
	if code, _, err := st.Result(); err != nil || code != 0 {
		return p, fmt.Errorf("%s: `true` exit status %d (%v), want 0", id, code, err)
	}
	if _, err := task.Delete(ctx); err != nil {
		return p, fmt.Errorf("%s: task delete: %w", id, err)
	}
	t5 := time.Now()
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
		return p, fmt.Errorf("%s: container delete: %w", id, err)
	}
	t6 := time.Now()
	ok = true
	return phases{
		ContainerCreate: ms(t1.Sub(t0)),
		TaskCreate:      ms(t2.Sub(t1)),
		TaskStart:       ms(t3.Sub(t3a)),
		Wait:            ms(t4.Sub(t3)),
		TaskDelete:      ms(t5.Sub(t4)),
		ContainerDelete: ms(t6.Sub(t5)),
		Total:           ms(t6.Sub(t0)),
	}, nil
}

// exitEvent is a /tasks/exit event and the host monotonic time it arrived.
type exitEvent struct {
	At     int64
	Status uint32
	Pid    uint32
}

// exitEvents dispatches /tasks/exit events of the namespace to waiters by
// container id; each arrival is time-stamped in the receiving goroutine.
type exitEvents struct {
	mu      sync.Mutex
	waiters map[string]chan exitEvent
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
}

func (b *bench) subscribeExits(ctx context.Context) *exitEvents {
	cctx, cancel := context.WithCancel(ctx)
	e := &exitEvents{waiters: map[string]chan exitEvent{}, cancel: cancel, done: make(chan struct{})}
	evch, errch := b.d.Client().Subscribe(cctx, fmt.Sprintf(`topic=="/tasks/exit",namespace==%q`, b.d.Namespace))
	go func() {
		defer close(e.done)
		for {
			select {
			case env := <-evch:
				at := monoNs()
				if env == nil || env.Event == nil {
					continue
				}
				v, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					continue
				}
				te, ok := v.(*apievents.TaskExit)
				if !ok || te.ID != te.ContainerID { // init exits only
					continue
				}
				e.mu.Lock()
				if w, ok := e.waiters[te.ContainerID]; ok {
					select {
					case w <- exitEvent{At: at, Status: te.ExitStatus, Pid: te.Pid}:
					default:
					}
				}
				e.mu.Unlock()
			case err := <-errch:
				e.mu.Lock()
				e.err = err
				e.mu.Unlock()
				return
			}
		}
	}()
	return e
}

func (e *exitEvents) expect(id string) chan exitEvent {
	ch := make(chan exitEvent, 1)
	e.mu.Lock()
	e.waiters[id] = ch
	e.mu.Unlock()
	return ch
}

func (e *exitEvents) forget(id string) {
	e.mu.Lock()
	delete(e.waiters, id)
	e.mu.Unlock()
}

func (e *exitEvents) close() {
	e.cancel()
	<-e.done
}

type waitResult struct {
	At     int64
	Status containerd.ExitStatus
}

// waitInBackground time-stamps the Wait result in its own goroutine, so a
// blocking call on the main path (Kill) does not delay the reading.
func waitInBackground(ch <-chan containerd.ExitStatus) <-chan waitResult {
	out := make(chan waitResult, 1)
	go func() {
		st := <-ch
		out <- waitResult{At: monoNs(), Status: st}
	}()
	return out
}

// collectExit takes a process's Wait result and its /tasks/exit event and
// checks both carry the wanted status (what says which exit, for errors).
func collectExit(id, what string, wr <-chan waitResult, evc <-chan exitEvent, ev *exitEvents, want uint32) (waitResult, exitEvent, error) {
	w, ok := recvTimeout(wr, 60*time.Second)
	if !ok {
		return w, exitEvent{}, fmt.Errorf("%s: Wait did not return within 60s %s", id, what)
	}
	e, ok := recvTimeout(evc, 30*time.Second)
	if !ok {
		return w, e, fmt.Errorf("%s: no /tasks/exit event within 30s of the Wait result (subscription: %v)", id, ev.err)
	}
	if code, _, err := w.Status.Result(); err != nil || code != want {
		return w, e, fmt.Errorf("%s: Wait %s: status %d (%v), want %d", id, what, code, err, want)
	}
	if e.Status != want {
		return w, e, fmt.Errorf("%s: /tasks/exit %s: status %d, want %d", id, what, e.Status, want)
	}
	return w, e, nil
}

func recvTimeout[T any](ch <-chan T, d time.Duration) (T, bool) {
	select {
	case v := <-ch:
		return v, true
	case <-time.After(d):
		var zero T
		return zero, false
	}
}

// exitSample is one exit-notification measurement, ms.
type exitSample struct {
	ToWait, ToEvent float64
}

// killSample: `sleep 3600` running; Kill(SIGKILL) → Wait returns, and →
// /tasks/exit received. Status must be 137 on both.
func (b *bench) killSample(ctx context.Context, rt rtInfo, ev *exitEvents) (s exitSample, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	id := b.newID("kill", rt)
	c, err := b.newContainer(ctx, id, rt, oci.WithProcessArgs("sleep", "3600"))
	if err != nil {
		return s, fmt.Errorf("%s: container create: %w", id, err)
	}
	defer discard(ctx, c)
	evc := ev.expect(id)
	defer ev.forget(id)
	task, err := c.NewTask(ctx, cio.NullIO)
	if err != nil {
		return s, fmt.Errorf("%s: task create: %w", id, err)
	}
	ch, err := task.Wait(ctx)
	if err != nil {
		return s, fmt.Errorf("%s: wait: %w", id, err)
	}
	if err := task.Start(ctx); err != nil {
		return s, fmt.Errorf("%s: start: %w", id, err)
	}
	wr := waitInBackground(ch)
	t0 := monoNs()
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
		return s, fmt.Errorf("%s: kill: %w", id, err)
	}
	w, e, err := collectExit(id, "after SIGKILL", wr, evc, ev, 137)
	if err != nil {
		return s, err
	}
	if _, err := task.Delete(ctx); err != nil {
		return s, fmt.Errorf("%s: task delete: %w", id, err)
	}
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
		return s, fmt.Errorf("%s: container delete: %w", id, err)
	}
	return exitSample{ToWait: float64(w.At-t0) / 1e6, ToEvent: float64(e.At-t0) / 1e6}, nil
}

// naturalSample: `exitclock -delay D 7 /clock/<id>` writes its
// CLOCK_MONOTONIC ns to a host dir bind-mounted at /clock and exits 7;
// latency = host monotonic time at Wait return (event arrival) minus that.
func (b *bench) naturalSample(ctx context.Context, rt rtInfo, ev *exitEvents) (s exitSample, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	id := b.newID("exit", rt)
	file := filepath.Join(b.clockDir, id)
	defer os.Remove(file)
	c, err := b.newContainer(ctx, id, rt,
		oci.WithProcessArgs("exitclock", "-delay", b.cfg.exitDelay.String(), "7", "/clock/"+id),
		oci.WithMounts([]specs.Mount{{Destination: "/clock", Type: "bind", Source: b.clockDir, Options: []string{"rbind", "rw"}}}),
	)
	if err != nil {
		return s, fmt.Errorf("%s: container create: %w", id, err)
	}
	defer discard(ctx, c)
	evc := ev.expect(id)
	defer ev.forget(id)
	task, err := c.NewTask(ctx, cio.NullIO)
	if err != nil {
		return s, fmt.Errorf("%s: task create: %w", id, err)
	}
	ch, err := task.Wait(ctx)
	if err != nil {
		return s, fmt.Errorf("%s: wait: %w", id, err)
	}
	wr := waitInBackground(ch)
	if err := task.Start(ctx); err != nil {
		return s, fmt.Errorf("%s: start: %w", id, err)
	}
	w, e, err := collectExit(id, "of exitclock", wr, evc, ev, 7)
	if err != nil {
		return s, err
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return s, fmt.Errorf("%s: exitclock output: %w", id, err)
	}
	exitNs, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		return s, fmt.Errorf("%s: exitclock output %q: %w", id, raw, err)
	}
	if _, err := task.Delete(ctx); err != nil {
		return s, fmt.Errorf("%s: task delete: %w", id, err)
	}
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
		return s, fmt.Errorf("%s: container delete: %w", id, err)
	}
	if w.At < exitNs || e.At < exitNs {
		return s, fmt.Errorf("%s: exitclock time %d after Wait/event (%d/%d): clocks differ (time namespace?)", id, exitNs, w.At, e.At)
	}
	return exitSample{ToWait: float64(w.At-exitNs) / 1e6, ToEvent: float64(e.At-exitNs) / 1e6}, nil
}

// runPool runs fn(0..n-1) on `workers` goroutines; after stop() returns
// true no new items are started. It returns the errors, in no order.
func runPool(n, workers int, stop func() bool, fn func(i int) error) []error {
	var (
		next atomic.Int64
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || (stop != nil && stop()) {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return errs
}

// sleeper is a running `sleep 3600` container.
type sleeper struct {
	ID  string
	Pid uint32
	C   containerd.Container
}

func (b *bench) startSleeper(ctx context.Context, rt rtInfo) (*sleeper, error) {
	id := b.newID("sleep", rt)
	c, err := b.newContainer(ctx, id, rt, oci.WithProcessArgs("sleep", "3600"))
	if err != nil {
		return nil, fmt.Errorf("%s: container create: %w", id, err)
	}
	task, err := c.NewTask(ctx, cio.NullIO)
	if err != nil {
		discard(ctx, c)
		return nil, fmt.Errorf("%s: task create: %w", id, err)
	}
	if err := task.Start(ctx); err != nil {
		discard(ctx, c)
		return nil, fmt.Errorf("%s: start: %w", id, err)
	}
	return &sleeper{ID: id, Pid: task.Pid(), C: c}, nil
}

// removeAll kills and deletes every container of the namespace with a
// bounded worker pool (the clean-up between scenarios).
func (b *bench) removeAll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	client := b.d.Client()
	ctrs, err := client.Containers(ctx)
	if err != nil {
		return err
	}
	errs := runPool(len(ctrs), b.cfg.pool, nil, func(i int) error {
		c := ctrs[i]
		// bounded per container: a runtime that never reports the exit
		// must not hang the clean-up (WithProcessKill waits for it)
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if task, err := c.Task(ctx, nil); err == nil {
			if st, err := task.Status(ctx); err == nil && st.Status != containerd.Stopped {
				if ch, err := task.Wait(ctx); err == nil {
					_ = task.Kill(ctx, syscall.SIGKILL)
					select {
					case <-ch:
					case <-time.After(20 * time.Second):
					}
				}
			}
			if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil {
				return fmt.Errorf("%s: task delete: %w", c.ID(), err)
			}
		}
		if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
			return fmt.Errorf("%s: container delete: %w", c.ID(), err)
		}
		return nil
	})
	return errors.Join(errs...)
}
