//go:build linux

package core

import (
	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/log"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Event topics, as runc.v2's shim publishes them: the tasks service
// publishes nothing itself for a runtime, so whatever a client sees about a
// task comes from here.
const (
	TopicCreate      = "/tasks/create"
	TopicStart       = "/tasks/start"
	TopicExit        = "/tasks/exit"
	TopicDelete      = "/tasks/delete"
	TopicExecAdded   = "/tasks/exec-added"
	TopicExecStarted = "/tasks/exec-started"
	TopicPaused      = "/tasks/paused"
	TopicResumed     = "/tasks/resumed"
	TopicOOM         = "/tasks/oom"
)

// Publisher delivers an event (a containerd/api events message) of a
// namespace; the adapter puts it into its containerd's event exchange.
type Publisher interface {
	Publish(ns, topic string, event interface{}) error
}

// publishDelete sends /tasks/delete with the exit Delete returns.
func (t *Task) publishDelete(e *Exit) {
	t.pub.publish(t.namespace, TopicDelete, &eventstypes.TaskDelete{
		ContainerID: t.id,
		Pid:         e.Pid,
		ExitStatus:  e.Status,
		ExitedAt:    timestamppb.New(e.Timestamp),
	})
}

// publisher sends the runtime's events; the payloads are runc.v2's.
type publisher struct {
	events Publisher
}

// publish sends evt under topic in namespace ns. It never uses a caller's
// context: an RPC that is cancelled right after a state change must still
// produce the event, as the shim's asynchronous forwarder would.
func (p *publisher) publish(ns, topic string, evt interface{}) {
	if err := p.events.Publish(ns, topic, evt); err != nil {
		log.L.WithError(err).WithFields(log.Fields{"topic": topic, "namespace": ns}).Error("embed: publish event")
	}
}
