module github.com/embedshim/embedshim

go 1.26.0

// The runtime core (go/core) and the exit monitor (go/exitmon) depend on no
// containerd daemon module: each daemon build (cmd/embedshim-containerd for
// containerd 2.3, cmd/embedshim-containerd-1.7) is its own module that
// requires this one. Only the small modules every containerd version shares
// are listed here.
require (
	github.com/containerd/cgroups/v3 v3.0.2
	github.com/containerd/console v1.0.5
	github.com/containerd/containerd/api v1.8.0
	github.com/containerd/errdefs v0.3.0
	github.com/containerd/fifo v1.1.0
	github.com/containerd/go-runc v1.2.1
	github.com/containerd/log v0.1.0
	github.com/containerd/typeurl/v2 v2.1.1
	github.com/opencontainers/runtime-spec v1.1.0
	github.com/pelletier/go-toml v1.9.5
	golang.org/x/sys v0.50.0
	google.golang.org/protobuf v1.35.2
)

require (
	github.com/cilium/ebpf v0.9.1 // indirect
	github.com/coreos/go-systemd/v22 v22.3.2 // indirect
	github.com/docker/go-units v0.4.0 // indirect
	github.com/godbus/dbus/v5 v5.0.4 // indirect
	github.com/gogo/protobuf v1.3.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.0 // indirect
	github.com/sirupsen/logrus v1.9.3 // indirect
)
