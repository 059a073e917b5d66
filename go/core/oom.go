//go:build linux

package core

import (
	"sync"

	"github.com/containerd/cgroups/v3/cgroup1"
	cgroupsv2 "github.com/containerd/cgroups/v3/cgroup2"
	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// oomWatcher publishes /tasks/oom like runc.v2's shim: cgroup v1 through the
// memory controller's eventfd (one epoll for all tasks, one goroutine),
// cgroup v2 through memory.events (one goroutine per task, as cgroups/v3
// offers it).
type oomWatcher struct {
	mu     sync.Mutex
	epfd   int
	byFd   map[int]oomItem
	byTask map[*Task]func()
}

type oomItem struct {
	t  *Task
	cg cgroup1.Cgroup
}

func (m *Manager) oom() *oomWatcher {
	m.oomOnce.Do(func() {
		m.oomw = &oomWatcher{epfd: -1, byFd: map[int]oomItem{}, byTask: map[*Task]func(){}}
	})
	return m.oomw
}

// watchOOM starts watching the task's cgroup; errors only cost the events.
func (m *Manager) watchOOM(t *Task) {
	cg, err := t.cgroup()
	if err != nil {
		log.L.WithError(err).WithField("id", t.id).Debug("embed: no cgroup to watch for OOM")
		return
	}
	if err := cg.watchOOM(m.oom(), t); err != nil {
		log.L.WithError(err).WithField("id", t.id).Warn("embed: watch OOM")
	}
}

func (m *Manager) unwatchOOM(t *Task) {
	w := m.oom()
	w.mu.Lock()
	stop := w.byTask[t]
	delete(w.byTask, t)
	w.mu.Unlock()
	if stop != nil {
		stop()
	}
}

func (w *oomWatcher) addV1(t *Task, cg cgroup1.Cgroup) error {
	fd, err := cg.OOMEventFD()
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.epfd < 0 {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			unix.Close(int(fd))
			return err
		}
		w.epfd = epfd
		go w.runV1(epfd)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev); err != nil {
		unix.Close(int(fd))
		return err
	}
	w.byFd[int(fd)] = oomItem{t: t, cg: cg}
	w.byTask[t] = func() {
		w.mu.Lock()
		delete(w.byFd, int(fd))
		w.mu.Unlock()
		unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
		unix.Close(int(fd))
	}
	return nil
}

func (w *oomWatcher) runV1(epfd int) {
	var events [128]unix.EpollEvent
	buf := make([]byte, 8)
	for {
		n, err := unix.EpollWait(epfd, events[:], -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			log.L.WithError(err).Error("embed: OOM epoll")
			return
		}
		for i := 0; i < n; i++ {
			fd := int(events[i].Fd)
			unix.Read(fd, buf) // reset the eventfd counter
			w.mu.Lock()
			it, ok := w.byFd[fd]
			w.mu.Unlock()
			if !ok {
				continue
			}
			// The eventfd also fires when the cgroup is removed (runc
			// delete): that is not an OOM.
			if it.cg.State() == cgroup1.Deleted {
				continue
			}
			t := it.t
			t.pub.publish(t.namespace, TopicOOM, &eventstypes.TaskOOM{ContainerID: t.id})
		}
	}
}

func (w *oomWatcher) addV2(t *Task, cg *cgroupsv2.Manager) {
	stop := make(chan struct{})
	w.mu.Lock()
	w.byTask[t] = func() { close(stop) }
	w.mu.Unlock()
	evc, errc := cg.EventChan()
	go func() {
		var last uint64
		for {
			select {
			case <-stop:
				return
			case err := <-errc:
				if err != nil {
					log.L.WithError(err).WithField("id", t.id).Debug("embed: memory.events watch ended")
				}
				return
			case ev := <-evc:
				if ev.OOMKill > last {
					t.pub.publish(t.namespace, TopicOOM, &eventstypes.TaskOOM{ContainerID: t.id})
				}
				if ev.OOMKill > 0 {
					last = ev.OOMKill
				}
			}
		}
	}()
}
