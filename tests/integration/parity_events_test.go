//go:build linux

package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/events"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/embedshim/embedshim/tests/integration/harness"
)

// sentinelTopic carries the events a test publishes itself through the
// daemon: once its subscriber sees one, everything the daemon published
// before it has been delivered too (the exchange keeps each subscriber's
// events in publishing order). That replaces sleeps: "the subscription is
// active" and "nothing else followed" are both "my sentinel arrived".
const sentinelTopic = "/embedshim-test/sentinel"

// eventDeadline bounds every wait for an event; generous, for a loaded
// machine: it is no timing assertion, only how long a lost event takes to
// fail a test.
const eventDeadline = 30 * time.Second

var sentinelSeq atomic.Int64

// recEvent is one task event of the recorded container.
type recEvent struct {
	Desc     string // topic[:exec=<id>][:status=<n>], as compared across runtimes
	Key      string // topic[:exec=<id>]: what Settle waits for
	Proc     string // "" for the init (or the whole task), else the exec id
	Pid      uint32 // 0 if the event carries none
	ExitedAt time.Time
}

// eventLog records the task events of one container, as "topic" or
// "topic:detail" strings with pids and times left out, so that sequences can
// be compared across runtimes; pids and exit times are kept aside and
// checked per runtime against what the client saw (Expect).
//
// On containerd 2.x, runc.v2's /tasks/delete is left out of the comparison:
// its shim shuts down right after deleting the last task and its event
// forwarder goes with it, so whether that event reaches clients is a race
// there (seen in the delete-created and duplicate-task scenarios). Embed
// publishes it always; the pass against the 1.7 build, where runc.v2 is
// reliable, compares it.
type eventLog struct {
	t           *testing.T
	e           *env
	containerID string
	dropDelete  bool // /tasks/delete is left out of Settle's result (containerd 2.x)
	lossyDelete bool // and may never come (runc.v2 on containerd 2.x)

	mu        sync.Mutex
	events    []recEvent
	sentinels map[string]bool
	changed   chan struct{} // closed and replaced at every event
	expect    map[string]procFacts

	cancel context.CancelFunc
	done   chan struct{}
	err    error // why the subscription ended, if it did on its own
}

// procFacts is what the client saw of a process: its pid and, once it
// exited, the exit Wait returned.
type procFacts struct {
	pid  uint32
	exit *containerd.ExitStatus
}

// recordEvents records c's task events from now on: it returns once the
// subscription is active (a sentinel published after subscribing arrived).
func (e *env) recordEvents(t *testing.T, c containerd.Container) *eventLog {
	t.Helper()
	info, err := c.Info(e.ctx)
	if err != nil {
		t.Fatalf("container info: %v", err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	ch, errs := e.d.Client().Subscribe(ctx, `topic~="/tasks/"`, fmt.Sprintf("topic==%q", sentinelTopic))
	is17 := harness.IsContainerd17(e.d.Binary)
	l := &eventLog{
		t: t, e: e, containerID: c.ID(),
		dropDelete:  !is17,
		lossyDelete: !is17 && info.Runtime.Name == harness.RuncV2,
		sentinels:   map[string]bool{},
		changed:     make(chan struct{}),
		expect:      map[string]procFacts{},
		cancel:      cancel,
		done:        make(chan struct{}),
	}
	go func() {
		defer close(l.done)
		for {
			select {
			case env := <-ch:
				l.add(env)
			case err := <-errs:
				l.mu.Lock()
				l.err = err
				l.mu.Unlock()
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(l.stop)
	// The subscription starts asynchronously: a sentinel published before
	// it is active is lost, so publish until one arrives.
	deadline := time.Now().Add(eventDeadline)
	for {
		l.publishSentinel(t)
		// Any of this log's sentinels will do: an earlier one may arrive late.
		if l.waitFor(func() bool { return len(l.sentinels) > 0 }, time.Second) {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("event subscription not active after %s (no sentinel arrived; subscription error: %v)", eventDeadline, l.subErr())
		}
	}
}

func (l *eventLog) subErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func (l *eventLog) stop() {
	l.cancel()
	<-l.done
}

func (l *eventLog) add(env *events.Envelope) {
	v, err := typeurl.UnmarshalAny(env.Event)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if env.Topic == sentinelTopic {
		s, ok := v.(*apievents.ContainerCreate)
		if !ok || !strings.HasPrefix(s.ID, l.sentinelPrefix()) {
			return
		}
		l.sentinels[s.ID] = true
	} else if ev, ok := describeEvent(env.Topic, v, l.containerID); ok {
		l.events = append(l.events, ev)
	} else {
		return
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// publishSentinel publishes a sentinel unique to this log and returns its
// token.
func (l *eventLog) publishSentinel(t *testing.T) string {
	t.Helper()
	tok := fmt.Sprintf("%s%d", l.sentinelPrefix(), sentinelSeq.Add(1))
	// Sentinels are ContainerCreate events (any registered type would do)
	// on a topic of their own, carrying the token as id.
	if err := l.e.d.Client().EventService().Publish(l.e.ctx, sentinelTopic, &apievents.ContainerCreate{ID: tok}); err != nil {
		t.Fatalf("publish sentinel: %v", err)
	}
	return tok
}

func (l *eventLog) sentinelPrefix() string { return "sentinel-" + l.containerID + "-" }

// waitFor waits until cond (called with l.mu held) holds or d passed.
func (l *eventLog) waitFor(cond func() bool, d time.Duration) bool {
	timeout := time.After(d)
	for {
		l.mu.Lock()
		ok, changed := cond(), l.changed
		l.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-timeout:
			return false
		case <-l.done:
			return false
		}
	}
}

// Expect tells the log what the client saw of process proc ("" for the
// init): its pid and, if it exited, what Wait returned (nil: not waited).
// Settle checks the events' payloads against it.
func (l *eventLog) Expect(proc string, pid uint32, exit *containerd.ExitStatus) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expect[proc] = procFacts{pid: pid, exit: exit}
}

// Settle waits until the events want ("topic" for the init's, or
// "topic:exec=<id>") have arrived, then until a sentinel published after
// them has, so that nothing published before it is missing; then it checks
// the payloads and returns the descriptions recorded (without /tasks/delete
// on containerd 2.x). A /tasks/delete that may never come (runc.v2 on
// containerd 2.x) is not waited for.
func (l *eventLog) Settle(want ...string) []string {
	t := l.t
	t.Helper()
	need := map[string]int{}
	for _, w := range want {
		need[w]++ // a key given n times: n such events
		n := need[w]
		if l.lossyDelete && strings.HasPrefix(w, "/tasks/delete") {
			continue
		}
		if !l.waitFor(func() bool { return l.count(w) >= n }, eventDeadline) {
			l.mu.Lock()
			t.Errorf("event %s of %s not delivered within %s; got %v (subscription error: %v)", w, l.containerID, eventDeadline, l.descs(false), l.err)
			l.mu.Unlock()
		}
	}
	tok := l.publishSentinel(t)
	if !l.waitFor(func() bool { return l.sentinels[tok] }, eventDeadline) {
		t.Errorf("sentinel not delivered within %s (subscription error: %v)", eventDeadline, l.subErr())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checkPayloads(t)
	return l.descs(l.dropDelete)
}

// Raw is what Settle returned, with /tasks/delete kept on containerd 2.x
// (call it after Settle).
func (l *eventLog) Raw() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.descs(false)
}

// Comparable drops from evs what Settle drops (/tasks/delete on 2.x).
func (l *eventLog) Comparable(evs []string) []string {
	if !l.dropDelete {
		return evs
	}
	return dropTopics(evs, "/tasks/delete")
}

func (l *eventLog) has(key string) bool { return l.count(key) > 0 }

func (l *eventLog) count(key string) int {
	n := 0
	for _, ev := range l.events {
		if ev.Key == key {
			n++
		}
	}
	return n
}

func (l *eventLog) descs(dropDelete bool) []string {
	out := []string{}
	for _, ev := range l.events {
		if dropDelete && strings.HasPrefix(ev.Key, "/tasks/delete") {
			continue
		}
		out = append(out, ev.Desc)
	}
	return out
}

// checkPayloads checks per runtime what the descriptions leave out: every
// event of a process with a pid has the same pid, the one the client got
// (Expect), and every exit time of a process (its /tasks/exit, the init's
// /tasks/delete) is the one Wait returned, to the nanosecond the API
// carries.
func (l *eventLog) checkPayloads(t *testing.T) {
	t.Helper()
	pids := map[string]uint32{}
	exits := map[string]time.Time{}
	for _, ev := range l.events {
		who := ev.Proc
		if who == "" {
			who = "init"
		}
		if strings.HasPrefix(ev.Key, "/tasks/exec-added") {
			// An exec id used again names a new process.
			delete(pids, ev.Proc)
			delete(exits, ev.Proc)
		}
		if ev.Pid != 0 {
			if p, ok := pids[ev.Proc]; ok && p != ev.Pid {
				t.Errorf("%s of %s: pid %d, earlier events had %d", ev.Desc, who, ev.Pid, p)
			}
			pids[ev.Proc] = ev.Pid
			if f, ok := l.expect[ev.Proc]; ok && f.pid != ev.Pid {
				t.Errorf("%s of %s: pid %d, the client got %d", ev.Desc, who, ev.Pid, f.pid)
			}
		}
		if !ev.ExitedAt.IsZero() {
			if at, ok := exits[ev.Proc]; ok && !at.Equal(ev.ExitedAt) {
				t.Errorf("%s of %s: exited at %s, earlier events said %s", ev.Desc, who, ev.ExitedAt.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
			}
			exits[ev.Proc] = ev.ExitedAt
			if f, ok := l.expect[ev.Proc]; ok && f.exit != nil && !f.exit.ExitTime().Equal(ev.ExitedAt) {
				t.Errorf("%s of %s: exited at %s, Wait said %s", ev.Desc, who, ev.ExitedAt.Format(time.RFC3339Nano), f.exit.ExitTime().Format(time.RFC3339Nano))
			}
		}
	}
}

// describeEvent turns a task event of containerID (matched by its
// ContainerID field) into a recEvent; other events give false.
func describeEvent(topic string, v any, containerID string) (recEvent, bool) {
	type containered interface{ GetContainerID() string }
	x, ok := v.(containered)
	if !ok || x.GetContainerID() != containerID {
		return recEvent{}, false
	}
	ev := recEvent{}
	// The process: TaskExit and TaskDelete name it by ID (the container's
	// id, or empty, for the init), the exec events by ExecID.
	if y, ok := v.(interface{ GetID() string }); ok && y.GetID() != containerID {
		ev.Proc = y.GetID()
	}
	if y, ok := v.(interface{ GetExecID() string }); ok {
		ev.Proc = y.GetExecID()
	}
	ev.Key = topic
	if ev.Proc != "" {
		ev.Key += ":exec=" + ev.Proc
	}
	ev.Desc = ev.Key
	if y, ok := v.(interface{ GetExitStatus() uint32 }); ok {
		ev.Desc += fmt.Sprintf(":status=%d", y.GetExitStatus())
	}
	if y, ok := v.(interface{ GetPid() uint32 }); ok {
		ev.Pid = y.GetPid()
	}
	// An unset exit time (nil, or the epoch a zero Timestamp gives) stays
	// zero: a process deleted before it ran has none.
	if y, ok := v.(interface{ GetExitedAt() *timestamppb.Timestamp }); ok && y.GetExitedAt().AsTime().Unix() > 0 {
		ev.ExitedAt = y.GetExitedAt().AsTime()
	}
	return ev, true
}
