//go:build linux

package runtime

import (
	"context"

	"github.com/containerd/containerd/events"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/log"
)

// publisher sends task events into containerd's exchange. Topics and payloads
// are the ones runc.v2's shim sends (runtime/v2/runc/task/service.go), because
// the tasks service publishes nothing itself for a runtime: whatever a client
// sees about a task comes from here.
type publisher struct {
	events events.Publisher
}

// publish sends evt under topic in namespace ns. It never uses the caller's
// context for delivery: an RPC that is cancelled right after a state change
// must still produce the event, as the shim's asynchronous forwarder would.
func (p *publisher) publish(ns, topic string, evt interface{}) {
	ctx := namespaces.WithNamespace(context.Background(), ns)
	if err := p.events.Publish(ctx, topic, evt); err != nil {
		log.G(ctx).WithError(err).WithField("topic", topic).Error("embed: publish event")
	}
}
