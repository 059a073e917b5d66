//go:build linux

package core

import (
	"os"
	"os/signal"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// stopOnShutdown makes the runtime stop taking exits as soon as containerd
// is told to stop (SIGTERM, SIGINT). containerd stops its gRPC server first
// and closes its plugins after, so an exit published from then on reaches
// no client; recorded as published, it would not be published again by the
// next start either, and that exit's event would be lost. Left in the pinned
// maps instead, it is found by the next start's restore and published once
// clients can see it. (containerd exits after such a signal: nothing is to
// be taken again in this process.)
func (m *Manager) stopOnShutdown() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGTERM, unix.SIGINT)
	go func() {
		sig := <-ch
		m.stopping.Store(true)
		log.L.WithField("signal", sig).Info("embed: containerd is stopping; exits from now on are left to the next start")
	}()
}
