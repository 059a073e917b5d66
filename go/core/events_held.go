//go:build linux

package core

import (
	"net"
	"sync"
	"time"

	"github.com/containerd/log"
)

// Exits found by restore happen during plugin initialisation, before the
// daemon serves: published then, they would reach no client (runc.v2's shims
// instead retry an undelivered exit after 1s, 2s, ... so clients that
// subscribe right after a restart do get it). heldPublisher holds back the
// events restore publishes, and any later event of the same containers (to
// keep their order), until the daemon serves plus releaseGrace, then sends
// them once, in order. Events of other containers are not delayed.
const (
	releaseGrace   = time.Second
	releaseTimeout = time.Minute
)

type heldPublisher struct {
	next Publisher

	mu        sync.Mutex
	restoring bool            // restore running: every event is held
	held      map[string]bool // namespace/container whose events wait
	queue     []heldEvent
	released  bool
}

type heldEvent struct {
	ns, topic string
	evt       interface{}
}

func newHeldPublisher(next Publisher) *heldPublisher {
	return &heldPublisher{next: next, restoring: true, held: map[string]bool{}}
}

func heldKey(ns string, evt interface{}) string {
	if c, ok := evt.(interface{ GetContainerID() string }); ok {
		return ns + "/" + c.GetContainerID()
	}
	return ns + "/"
}

func (h *heldPublisher) Publish(ns, topic string, evt interface{}) error {
	h.mu.Lock()
	if !h.released {
		k := heldKey(ns, evt)
		if h.restoring {
			h.held[k] = true
		}
		if h.held[k] {
			h.queue = append(h.queue, heldEvent{ns, topic, evt})
			h.mu.Unlock()
			return nil
		}
	}
	h.mu.Unlock()
	return h.next.Publish(ns, topic, evt)
}

// restored ends the restore phase: with nothing held the publisher passes
// everything through at once, else it releases the held events once the
// daemon accepts connections on address (plus releaseGrace).
func (h *heldPublisher) restored(address string) {
	h.mu.Lock()
	h.restoring = false
	empty := len(h.queue) == 0
	if empty {
		h.released = true
	}
	h.mu.Unlock()
	if empty {
		return
	}
	go func() {
		waitServing(address, releaseTimeout)
		time.Sleep(releaseGrace)
		h.release()
	}()
}

func (h *heldPublisher) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.queue {
		if err := h.next.Publish(e.ns, e.topic, e.evt); err != nil {
			log.L.WithError(err).WithField("topic", e.topic).Error("embed: publish held event")
		}
	}
	h.queue, h.held, h.released = nil, nil, true
}

// waitServing returns once a connection to the daemon's gRPC socket
// succeeds (a stale socket of the previous run refuses), or after timeout.
func waitServing(address string, timeout time.Duration) {
	if address == "" {
		return
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("unix", address, time.Second)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
