//go:build linux

package core

import (
	"os"
	"testing"
)

// A state.json write that fails (the state filesystem full, say) is tried
// again until it succeeds: an exit that no later operation on the task
// would save is on disk once writes work again, so a restart finds it
// published instead of publishing it a second time. (End to end, with a
// full tmpfs: tests/integration TestStateFullRestart.)
func TestPersistRetriedAfterFailedWrite(t *testing.T) {
	h := newHarness(t, t.TempDir())
	task := h.task(t, "c1", statusRunning)
	task.persist()
	path := task.bundle.path
	// Writes fail while the bundle dir is away (ENOENT, as ENOSPC would).
	aside := path + ".aside"
	if err := os.Rename(path, aside); err != nil {
		t.Fatal(err)
	}
	h.kill(task.init)
	h.rec.expect(t, TopicExit+" c1 137")
	eventually(t, "a failed write", func() bool {
		task.persistMu.Lock()
		defer task.persistMu.Unlock()
		return task.persistFailures > 0
	})
	if st, err := readState(aside); err != nil || st.Init.Exited {
		t.Fatalf("state.json written while its dir was away: %+v, %v", st, err)
	}
	if err := os.Rename(aside, path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "state.json with the published exit", func() bool {
		st, err := readState(path)
		return err == nil && st.Init.Exited && st.Init.Published && st.Init.ExitStatus == 137
	})
	task.persistMu.Lock()
	defer task.persistMu.Unlock()
	if task.persistFailures != 0 {
		t.Fatalf("%d failures still counted after a write succeeded", task.persistFailures)
	}
}
