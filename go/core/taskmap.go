//go:build linux

package core

import (
	"fmt"
	"regexp"
	"sort"
	"sync"

	"github.com/containerd/errdefs"
)

// taskMap holds the tasks by namespace and id.
type taskMap struct {
	mu sync.Mutex
	m  map[string]map[string]*Task
}

func newTaskMap() *taskMap {
	return &taskMap{m: map[string]map[string]*Task{}}
}

func (tm *taskMap) get(ns, id string) (*Task, error) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if t, ok := tm.m[ns][id]; ok {
		return t, nil
	}
	return nil, fmt.Errorf("task %s: %w", id, errdefs.ErrNotFound)
}

func (tm *taskMap) add(ns, id string, t *Task) error {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if _, ok := tm.m[ns][id]; ok {
		return fmt.Errorf("task %s: %w", id, errdefs.ErrAlreadyExists)
	}
	if tm.m[ns] == nil {
		tm.m[ns] = map[string]*Task{}
	}
	tm.m[ns][id] = t
	return nil
}

func (tm *taskMap) remove(ns, id string) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	delete(tm.m[ns], id)
	if len(tm.m[ns]) == 0 {
		delete(tm.m, ns)
	}
}

// list returns the tasks of ns, or of every namespace if all is set, in a
// stable order.
func (tm *taskMap) list(ns string, all bool) []*Task {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	var out []*Task
	for n, ts := range tm.m {
		if !all && n != ns {
			continue
		}
		for _, t := range ts {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].namespace != out[j].namespace {
			return out[i].namespace < out[j].namespace
		}
		return out[i].id < out[j].id
	})
	return out
}

// Identifiers (task and exec ids) follow containerd's rule (its
// identifiers package, the same on every version): alphanumerics with
// single '.', '_' or '-' between them, at most 76 characters, so that they
// are safe as path components.
const maxIDLength = 76

var idRe = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$`)

func validateID(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("identifier must not be empty: %w", errdefs.ErrInvalidArgument)
	case len(s) > maxIDLength:
		return fmt.Errorf("identifier %q greater than maximum length (%d characters): %w", s, maxIDLength, errdefs.ErrInvalidArgument)
	case !idRe.MatchString(s):
		return fmt.Errorf("identifier %q must match %v: %w", s, idRe, errdefs.ErrInvalidArgument)
	}
	return nil
}
