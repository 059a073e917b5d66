//go:build linux

package core

import (
	"net"
	"sync"
	"time"

	"github.com/containerd/log"
)

// Exits found by restore happen during plugin initialisation, before the
// daemon serves, and so can exits in the moments after restore until it
// serves: published then, they would reach no client (runc.v2's shims
// instead retry an undelivered exit after 1s, 2s, ... so clients that
// subscribe right after a restart do get it). heldPublisher holds back every
// event from the plugin's start until the daemon serves plus releaseGrace
// (time for clients to subscribe again), then sends them once, in order,
// and from then on passes events straight through.
const (
	releaseGrace   = time.Second
	releaseTimeout = time.Minute
)

type heldPublisher struct {
	next Publisher

	mu       sync.Mutex
	queue    []heldEvent
	released bool
}

type heldEvent struct {
	ns, topic string
	evt       interface{}
}

func newHeldPublisher(next Publisher) *heldPublisher {
	return &heldPublisher{next: next}
}

func (h *heldPublisher) Publish(ns, topic string, evt interface{}) error {
	h.mu.Lock()
	if !h.released {
		h.queue = append(h.queue, heldEvent{ns, topic, evt})
		h.mu.Unlock()
		return nil
	}
	h.mu.Unlock()
	return h.next.Publish(ns, topic, evt)
}

// restored ends the restore phase: the held events (and those of the
// moments until then) go out once the daemon accepts connections on
// address, plus releaseGrace.
func (h *heldPublisher) restored(address string) {
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
	h.queue, h.released = nil, true
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
