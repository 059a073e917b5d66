//go:build linux

package core

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/containerd/log"
)

const (
	stateFilename = "state.json"
	stateVersion  = 1
	// persistRetryInterval: how soon a failed state.json write (the state
	// filesystem full, say) is tried again.
	persistRetryInterval = 200 * time.Millisecond
)

// taskState is what a restarted containerd needs to rebuild a task: runc's
// configuration and, per process, the key the exit monitor knows it by. The
// monitor's pinned records hold the exits that happen while we are down.
type taskState struct {
	Version       int            `json:"version"`
	ID            string         `json:"id"`
	Namespace     string         `json:"namespace"`
	Runc          RuncConfig     `json:"runc"`
	KillAllOnExit bool           `json:"kill_all_on_exit,omitempty"`
	Checkpoint    string         `json:"checkpoint,omitempty"`
	Init          processState   `json:"init"`
	Execs         []processState `json:"execs,omitempty"`
}

type processState struct {
	ID         string     `json:"id"`
	Pid        int        `json:"pid,omitempty"`
	Ident      uint64     `json:"ident,omitempty"`
	Status     procStatus `json:"status"`
	Stdio      stdioPaths `json:"stdio"`
	ExitStatus uint32     `json:"exit_status,omitempty"`
	ExitedAt   time.Time  `json:"exited_at,omitempty"`
	Exited     bool       `json:"exited,omitempty"`
	Published  bool       `json:"published,omitempty"`
}

func (p *process) snapshot() processState {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := processState{
		ID:     p.id,
		Pid:    p.pid,
		Ident:  p.ident,
		Status: p.cur.status(),
		Stdio:  p.stdio,
	}
	if f := p.cur.facts(); f != nil && !f.at.IsZero() {
		s.ExitStatus, s.ExitedAt, s.Exited, s.Published = f.status, f.at, true, f.published
	}
	return s
}

// persist writes state.json atomically. Exec processes are saved once they
// have a pid: an exec that was added but never started has nothing a restart
// could resume.
//
// A write that fails (ENOSPC on the state filesystem) is tried again every
// persistRetryInterval until one succeeds or the task is deleted: what
// failed to be saved is often an exit that no later operation on the task
// would save, and a restart would find the task as it was before (an exit
// published again, a deleted exec back, a started exec unknown and its
// exit lost).
func (t *Task) persist() {
	// Held across snapshot and write so an older snapshot never overwrites
	// a newer one. Lock order: persistMu, then t.mu, then process locks.
	t.persistMu.Lock()
	defer t.persistMu.Unlock()
	t.mu.Lock()
	if t.deleted {
		t.mu.Unlock()
		return
	}
	st := taskState{
		Version:       stateVersion,
		ID:            t.id,
		Namespace:     t.namespace,
		Runc:          *t.rc,
		KillAllOnExit: t.killAllOnExit,
		Checkpoint:    t.checkpoint,
	}
	execs := make([]*process, 0, len(t.execs))
	for _, p := range t.execs {
		execs = append(execs, p)
	}
	t.mu.Unlock()

	st.Init = t.init.snapshot()
	for _, p := range execs {
		if s := p.snapshot(); s.Pid != 0 {
			st.Execs = append(st.Execs, s)
		}
	}
	sort.Slice(st.Execs, func(i, j int) bool { return st.Execs[i].ID < st.Execs[j].ID })

	err := writeState(t.bundle.path, &st)
	l := log.L.WithField("id", t.id)
	switch {
	case err != nil:
		t.persistFailures++
		if t.persistFailures == 1 {
			l.WithError(err).Errorf("embed: persist task state; retrying every %v until it succeeds", persistRetryInterval)
		} else {
			l.WithError(err).Debug("embed: persist task state: retry failed")
		}
		if t.persistRetry == nil {
			t.persistRetry = time.AfterFunc(persistRetryInterval, t.retryPersist)
		}
	case t.persistFailures > 0:
		l.Infof("embed: task state persisted after %d failed writes", t.persistFailures)
		t.persistFailures = 0
	}
}

// retryPersist is the timer persist sets after a failed write.
func (t *Task) retryPersist() {
	t.persistMu.Lock()
	t.persistRetry = nil
	t.persistMu.Unlock()
	t.persist()
}

func writeState(dir string, st *taskState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+stateFilename+".tmp")
	if err := os.WriteFile(tmp, data, 0600); err != nil {
		os.Remove(tmp) // a partial write holds space that is short
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, stateFilename))
}

func readState(dir string) (*taskState, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFilename))
	if err != nil {
		return nil, err
	}
	var st taskState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, err
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("state version %d, want %d", st.Version, stateVersion)
	}
	return &st, nil
}
