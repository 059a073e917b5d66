//go:build linux

package integration

import (
	"context"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"
)

// A client that goes away mid-Wait or right after an Exec leaves the
// daemon serving, loses no exit and leaks nothing (newEnv's leak check:
// fds, goroutine-held pidfds, processes, BPF entries): other clients still
// get the exits, with the same statuses on both runtimes.
func TestClientDisconnect(t *testing.T) {
	e := newEnv(t)
	bothRuntimes(t, e, func(t *testing.T, rt string) any {
		c := e.container(t, rt, "disc", oci.WithProcessArgs("sleep", "3600"))
		task := e.rsStartTask(t, c, nil)

		// A second client: Wait on the init, exec a process, then close
		// the connection with both in flight.
		other, err := containerd.New(e.d.Address, containerd.WithDefaultNamespace(e.d.Namespace))
		if err != nil {
			t.Fatal(err)
		}
		octx, ocancel := context.WithCancel(e.ctx)
		oc, err := other.LoadContainer(octx, c.ID())
		if err != nil {
			t.Fatal(err)
		}
		ot, err := oc.Task(octx, nil)
		if err != nil {
			t.Fatal(err)
		}
		waitGone, err := ot.Wait(octx)
		if err != nil {
			t.Fatal(err)
		}
		spec, err := c.Spec(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		pspec := *spec.Process
		pspec.Args = []string{"sh", "-c", "sleep 1; exit 6"}
		ox, err := ot.Exec(octx, "x", &pspec, cio.NullIO)
		if err != nil {
			t.Fatal(err)
		}
		if err := ox.Start(octx); err != nil {
			t.Fatalf("exec start: %v", err)
		}
		ocancel()
		other.Close()
		select {
		case st := <-waitGone:
			if st.Error() == nil {
				t.Errorf("Wait of the closed client returned a status %d, want an error", st.ExitCode())
			}
		case <-time.After(20 * time.Second):
			t.Errorf("Wait of the closed client did not return")
		}

		// This client still sees both processes through to their end.
		x, err := task.LoadProcess(e.ctx, "x", nil)
		if err != nil {
			t.Fatalf("load the exec of the closed client: %v", err)
		}
		xch, err := x.Wait(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		xcode := e.exitWithin(t, xch)
		if _, err := x.Delete(e.ctx); err != nil {
			t.Errorf("exec delete: %v", err)
		}
		ch, err := task.Wait(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := task.Kill(e.ctx, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		code := e.exitWithin(t, ch)
		if _, err := task.Delete(e.ctx); err != nil {
			t.Errorf("delete: %v", err)
		}
		return map[string]uint32{"exec": xcode, "init": code}
	})
}
