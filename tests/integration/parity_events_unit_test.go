//go:build linux

package integration

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The event recorder's pure parts (unit tests: no daemon).

// Events are matched by their ContainerID field, exactly: a container whose
// id contains another's, or an event naming the id elsewhere, is not it.
func TestDescribeEventMatchesExactContainer(t *testing.T) {
	at := time.Unix(1700000000, 123456789).UTC()
	for _, c := range []struct {
		name string
		v    any
		want *recEvent
	}{
		{"init exit", &apievents.TaskExit{ContainerID: "c1", ID: "c1", Pid: 42, ExitStatus: 7, ExitedAt: timestamppb.New(at)},
			&recEvent{Desc: "/tasks/x:status=7", Key: "/tasks/x", Pid: 42, ExitedAt: at}},
		{"exec exit", &apievents.TaskExit{ContainerID: "c1", ID: "e1", Pid: 43, ExitStatus: 1},
			&recEvent{Desc: "/tasks/x:exec=e1:status=1", Key: "/tasks/x:exec=e1", Proc: "e1", Pid: 43}},
		{"exec started", &apievents.TaskExecStarted{ContainerID: "c1", ExecID: "e1", Pid: 43},
			&recEvent{Desc: "/tasks/x:exec=e1", Key: "/tasks/x:exec=e1", Proc: "e1", Pid: 43}},
		{"delete with epoch time", &apievents.TaskDelete{ContainerID: "c1", ExitedAt: &timestamppb.Timestamp{}},
			&recEvent{Desc: "/tasks/x:status=0", Key: "/tasks/x"}},
		{"longer id", &apievents.TaskExit{ContainerID: "c10", ID: "c10"}, nil},
		{"id elsewhere", &apievents.TaskExit{ContainerID: "other", ID: "c1"}, nil},
		{"no container", &apievents.ContainerCreate{ID: "c1"}, nil},
	} {
		got, ok := describeEvent("/tasks/x", c.v, "c1")
		if c.want == nil {
			if ok {
				t.Errorf("%s: matched c1: %+v", c.name, got)
			}
			continue
		}
		if !ok || !reflect.DeepEqual(got, *c.want) {
			t.Errorf("%s: got %+v (%v), want %+v", c.name, got, ok, *c.want)
		}
	}
}

// OOMs of one kill collapse into "there was one", an OOM after the delete
// stays in the sequence.
func TestNormalizeOOMKeepsOOMAfterDelete(t *testing.T) {
	in := []string{"/tasks/start", "/tasks/oom", "/tasks/oom", "/tasks/exit:status=137", "/tasks/oom", "/tasks/delete:status=137", "/tasks/oom"}
	want := []string{"/tasks/start", "/tasks/exit:status=137", "/tasks/delete:status=137", "/tasks/oom"}
	if oom, got := normalizeOOM(in); !oom || !reflect.DeepEqual(got, want) {
		t.Errorf("normalizeOOM(%v) = %v %v, want true %v", in, oom, got, want)
	}
	if oom, _ := normalizeOOM([]string{"/tasks/exit:status=137"}); oom {
		t.Errorf("normalizeOOM: an OOM where there was none")
	}
	if got := dropTopics(want, "/tasks/delete", "/tasks/start"); !reflect.DeepEqual(got, []string{"/tasks/exit:status=137", "/tasks/oom"}) {
		t.Errorf("dropTopics: %v", got)
	}
}

// The two orders runc.v2 gives a paused init killed from the host compare
// equal, and nothing else moves.
func TestResumedBeforeExit(t *testing.T) {
	embed := []string{"/tasks/paused", "/tasks/resumed", "/tasks/exit:status=137", "/tasks/delete"}
	runc := []string{"/tasks/paused", "/tasks/exit:status=137", "/tasks/resumed", "/tasks/delete"}
	if a, b := fmt.Sprint(resumedBeforeExit(embed)), fmt.Sprint(resumedBeforeExit(runc)); a != b || a != fmt.Sprint(embed) {
		t.Errorf("normalised: %s vs %s", a, b)
	}
	other := []string{"/tasks/exit:status=0", "/tasks/delete", "/tasks/resumed"}
	if got := fmt.Sprint(resumedBeforeExit(other)); got != fmt.Sprint(other) {
		t.Errorf("moved: %s", got)
	}
}
