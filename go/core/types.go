//go:build linux

package core

import (
	"time"

	"github.com/containerd/typeurl/v2"
)

// The types below are the runtime's own view of what containerd's runtime
// package passes in and gets back. They hold no containerd-version-specific
// type, so one core serves every containerd build; each adapter converts
// them to and from its containerd's runtime.Task / runtime.ExecProcess.

// RuntimeName is the name clients select the runtime by
// (container.Runtime.Name, ctr run --runtime, CRI's runtime_type). It is the
// same on every containerd build, so configs and running containers carry
// over from one build to another.
const RuntimeName = "io.containerd.runtime.v1.embed"

// Status of a process, as clients see it.
type Status int

// The statuses, named as containerd names them.
const (
	CreatedStatus Status = iota + 1
	RunningStatus
	StoppedStatus
	DeletedStatus
	PausedStatus
	PausingStatus
)

// State of a process.
type State struct {
	Status     Status
	Pid        uint32
	ExitStatus uint32
	ExitedAt   time.Time
	Stdin      string
	Stdout     string
	Stderr     string
	Terminal   bool
}

// Exit of a process: its pid, containerd's exit status (128+signal when
// killed) and the time it exited.
type Exit struct {
	Pid       uint32
	Status    uint32
	Timestamp time.Time
}

// IO names a process's stdio (FIFO paths or binary:// / file:// URIs).
type IO struct {
	Stdin    string
	Stdout   string
	Stderr   string
	Terminal bool
}

// Mount is one rootfs component.
type Mount struct {
	Type    string
	Source  string
	Target  string
	Options []string
}

// CreateOpts are the options of a task create.
type CreateOpts struct {
	// Spec is the OCI runtime spec (config.json).
	Spec []byte
	// Rootfs is mounted on the bundle's rootfs by the Mounter.
	Rootfs []Mount
	IO     IO
	// Checkpoint is an image to restore from at Start.
	Checkpoint string
	// RuntimeOptions (the container's) and TaskOptions (the create
	// request's, which win).
	RuntimeOptions typeurl.Any
	TaskOptions    typeurl.Any
}

// ExecOpts are the options of an exec.
type ExecOpts struct {
	// Spec is the OCI process spec (JSON).
	Spec []byte
	IO   IO
}

// ConsoleSize of a terminal.
type ConsoleSize struct {
	Width  uint32
	Height uint32
}

// ProcessInfo is one process of a container; Info names the exec it belongs
// to (*runcoptions.ProcessDetails), as runc.v2 does.
type ProcessInfo struct {
	Pid  uint32
	Info interface{}
}
