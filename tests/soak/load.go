//go:build linux

package soak

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// opTimeout bounds one lifecycle or exec: far above its cost even on a
// loaded machine, it only keeps a hung call from hanging the soak.
const opTimeout = 3 * time.Minute

// background is one long-running container execs go into.
type background struct {
	c       containerd.Container
	task    containerd.Task
	process specs.Process // the container's process spec, for execs
}

// load holds the daemon, the image and the counters of one soak.
type load struct {
	d   *harness.Daemon
	img containerd.Image
	bg  []background

	seq        atomic.Int64 // ids and exit codes
	lifecycles atomic.Int64 // completed lifecycles
	execs      atomic.Int64 // completed execs
	errMu      sync.Mutex
	errs       []error // failed operations (each one fails the soak)
}

func (l *load) fail(err error) {
	l.errMu.Lock()
	defer l.errMu.Unlock()
	if len(l.errs) < 100 {
		l.errs = append(l.errs, err)
	}
}

func (l *load) errors() []error {
	l.errMu.Lock()
	defer l.errMu.Unlock()
	return append([]error(nil), l.errs...)
}

func (l *load) newContainer(ctx context.Context, id string, args ...string) (containerd.Container, error) {
	return l.d.Client().NewContainer(ctx, id,
		containerd.WithNewSnapshot(id+"-snap", l.img),
		containerd.WithNewSpec(oci.WithImageConfig(l.img), oci.WithProcessArgs(args...)),
		containerd.WithRuntime(harness.EmbedPluginID, nil),
	)
}

// discard removes a container and its task after an error, best effort.
func discard(ctx context.Context, c containerd.Container) {
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if task, err := c.Task(ctx, nil); err == nil {
		_ = task.Kill(ctx, syscall.SIGKILL)
		_, _ = task.Delete(ctx, containerd.WithProcessKill)
	}
	_ = c.Delete(ctx, containerd.WithSnapshotCleanup)
}

// startBackground starts one `sleep` container on the embed runtime.
func (l *load) startBackground(ctx context.Context, id string) (background, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	c, err := l.newContainer(ctx, id, "sleep", "1000000")
	if err != nil {
		return background{}, fmt.Errorf("%s: container create: %w", id, err)
	}
	task, err := c.NewTask(ctx, cio.NullIO)
	if err != nil {
		discard(ctx, c)
		return background{}, fmt.Errorf("%s: task create: %w", id, err)
	}
	if err := task.Start(ctx); err != nil {
		discard(ctx, c)
		return background{}, fmt.Errorf("%s: start: %w", id, err)
	}
	spec, err := c.Spec(ctx)
	if err != nil || spec.Process == nil {
		discard(ctx, c)
		return background{}, fmt.Errorf("%s: spec: %v", id, err)
	}
	return background{c: c, task: task, process: *spec.Process}, nil
}

// startAll starts n background containers, `pool` at a time.
func (l *load) startAll(ctx context.Context, n, pool int) error {
	l.bg = make([]background, n)
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		first error
		mu    sync.Mutex
	)
	for w := 0; w < pool; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				b, err := l.startBackground(ctx, fmt.Sprintf("bg-%d", i))
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				l.bg[i] = b
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// removeAll kills and deletes the background containers, `pool` at a time,
// and checks each died of the SIGKILL.
func (l *load) removeAll(ctx context.Context, pool int) error {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		mu   sync.Mutex
		errs []error
	)
	for w := 0; w < pool; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(l.bg) {
					return
				}
				if err := l.removeBackground(ctx, l.bg[i]); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (l *load) removeBackground(ctx context.Context, b background) error {
	if b.c == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	ch, err := b.task.Wait(ctx)
	if err != nil {
		discard(ctx, b.c)
		return fmt.Errorf("%s: wait: %w", b.c.ID(), err)
	}
	if err := b.task.Kill(ctx, syscall.SIGKILL); err != nil {
		discard(ctx, b.c)
		return fmt.Errorf("%s: kill: %w", b.c.ID(), err)
	}
	select {
	case st := <-ch:
		if code, _, err := st.Result(); err != nil || code != 128+uint32(syscall.SIGKILL) {
			discard(ctx, b.c)
			return fmt.Errorf("%s: exit status %d (%v) after SIGKILL, want %d", b.c.ID(), code, err, 128+syscall.SIGKILL)
		}
	case <-ctx.Done():
		discard(ctx, b.c)
		return fmt.Errorf("%s: no exit after SIGKILL: %w", b.c.ID(), ctx.Err())
	}
	if _, err := b.task.Delete(ctx); err != nil {
		discard(ctx, b.c)
		return fmt.Errorf("%s: task delete: %w", b.c.ID(), err)
	}
	if err := b.c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
		return fmt.Errorf("%s: container delete: %w", b.c.ID(), err)
	}
	return nil
}

// lifecycle runs container create, task create, wait, start, exit with a
// known code, task delete, container delete, and checks the code.
func (l *load) lifecycle(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	n := l.seq.Add(1)
	id := fmt.Sprintf("lc-%d", n)
	code := uint32(n % 256)
	c, err := l.newContainer(ctx, id, "sh", "-c", fmt.Sprintf("exit %d", code))
	if err != nil {
		return fmt.Errorf("%s: container create: %w", id, err)
	}
	ok := false
	defer func() {
		if !ok {
			discard(ctx, c)
		}
	}()
	task, err := c.NewTask(ctx, cio.NullIO)
	if err != nil {
		return fmt.Errorf("%s: task create: %w", id, err)
	}
	ch, err := task.Wait(ctx)
	if err != nil {
		return fmt.Errorf("%s: wait: %w", id, err)
	}
	if err := task.Start(ctx); err != nil {
		return fmt.Errorf("%s: start: %w", id, err)
	}
	select {
	case st := <-ch:
		if got, _, err := st.Result(); err != nil || got != code {
			return fmt.Errorf("%s: exit status %d (%v), want %d", id, got, err, code)
		}
	case <-ctx.Done():
		return fmt.Errorf("%s: no exit: %w", id, ctx.Err())
	}
	st, err := task.Delete(ctx)
	if err != nil {
		return fmt.Errorf("%s: task delete: %w", id, err)
	}
	if st.ExitCode() != code {
		return fmt.Errorf("%s: task delete: exit status %d, want %d", id, st.ExitCode(), code)
	}
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
		return fmt.Errorf("%s: container delete: %w", id, err)
	}
	ok = true
	l.lifecycles.Add(1)
	return nil
}

// exec runs `sh -c "exit N"` in a background container (round robin),
// waits for it, checks the code and deletes it.
func (l *load) exec(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	n := l.seq.Add(1)
	b := l.bg[int(n)%len(l.bg)]
	id := fmt.Sprintf("ex-%d", n)
	code := uint32(n % 256)
	p := b.process
	p.Args = []string{"sh", "-c", fmt.Sprintf("exit %d", code)}
	p.Terminal = false
	proc, err := b.task.Exec(ctx, id, &p, cio.NullIO)
	if err != nil {
		return fmt.Errorf("%s/%s: exec create: %w", b.c.ID(), id, err)
	}
	ch, err := proc.Wait(ctx)
	if err != nil {
		_, _ = proc.Delete(ctx, containerd.WithProcessKill)
		return fmt.Errorf("%s/%s: wait: %w", b.c.ID(), id, err)
	}
	if err := proc.Start(ctx); err != nil {
		_, _ = proc.Delete(ctx, containerd.WithProcessKill)
		return fmt.Errorf("%s/%s: start: %w", b.c.ID(), id, err)
	}
	select {
	case st := <-ch:
		if got, _, err := st.Result(); err != nil || got != code {
			_, _ = proc.Delete(ctx, containerd.WithProcessKill)
			return fmt.Errorf("%s/%s: exit status %d (%v), want %d", b.c.ID(), id, got, err, code)
		}
	case <-ctx.Done():
		_, _ = proc.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
		return fmt.Errorf("%s/%s: no exit: %w", b.c.ID(), id, ctx.Err())
	}
	if _, err := proc.Delete(ctx); err != nil {
		return fmt.Errorf("%s/%s: delete: %w", b.c.ID(), id, err)
	}
	l.execs.Add(1)
	return nil
}

// driver fires an operation at a fixed rate: one start every 1/rate,
// at most maxInFlight at once. A tick that finds them all busy is dropped
// and counted (the machine is slower than the rate), never queued, so the
// rate never bunches up after a stall. Pause/resume bracket the samples.
type driver struct {
	name        string
	rate        float64
	maxInFlight int
	op          func(context.Context) error
	onErr       func(error)

	mu       sync.Mutex
	cond     *sync.Cond
	inFlight int
	paused   bool
	fired    int64
	dropped  int64
}

func newDriver(name string, rate float64, maxInFlight int, op func(context.Context) error, onErr func(error)) *driver {
	d := &driver{name: name, rate: rate, maxInFlight: maxInFlight, op: op, onErr: onErr}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// run fires until stop ends, then waits for the operations in flight,
// which run under opCtx (the soak's overall deadline): the end of the
// load lets them finish.
func (d *driver) run(stop, opCtx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	if d.rate <= 0 {
		return
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / d.rate))
	defer tick.Stop()
	var ops sync.WaitGroup
	defer ops.Wait()
	for {
		select {
		case <-stop.Done():
			return
		case <-tick.C:
		}
		d.mu.Lock()
		if d.paused {
			d.mu.Unlock()
			continue
		}
		if d.inFlight >= d.maxInFlight {
			d.dropped++
			d.mu.Unlock()
			continue
		}
		d.inFlight++
		d.fired++
		d.mu.Unlock()
		ops.Add(1)
		go func() {
			defer ops.Done()
			if err := d.op(opCtx); err != nil {
				d.onErr(fmt.Errorf("%s: %w", d.name, err))
			}
			d.mu.Lock()
			d.inFlight--
			d.cond.Broadcast()
			d.mu.Unlock()
		}()
	}
}

// pause stops new operations and waits for those in flight.
func (d *driver) pause() {
	d.mu.Lock()
	d.paused = true
	for d.inFlight > 0 {
		d.cond.Wait()
	}
	d.mu.Unlock()
}

func (d *driver) resume() {
	d.mu.Lock()
	d.paused = false
	d.mu.Unlock()
}

func (d *driver) counts() (fired, dropped int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fired, d.dropped
}
