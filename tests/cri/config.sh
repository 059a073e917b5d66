# shellcheck shell=bash
# tests/cri/config.sh — sourced by tests/cri/run.sh: the daemon's config.toml
# for critest, in the dialect of the daemon's containerd.
#
#   cri_config 1.7|2 DIR SOCK REGISTRY_CONFIG_PATH SANDBOX_IMAGE
#
# Everything the daemon writes stays under DIR: root, state (with the
# network namespaces: netns_mounts_under_state_dir), sockets, both runtimes'
# runc roots, the embed plugin's BPF pins, CNI config and IPAM state. Two
# runtime handlers: "runc" (io.containerd.runc.v2, the reference) and
# "embed" (io.containerd.runtime.v1.embed). cgroupfs (no systemd here);
# restrict_oom_score_adj because root here lacks CAP_SYS_RESOURCE; images
# come only from the registry named in REGISTRY_CONFIG_PATH's hosts.toml.

# containerd 1.7: config version 2, CRI in io.containerd.grpc.v1.cri.
cri_config_1_7() {
	local dir=$1 sock=$2 certs=$3 sandbox=$4
	cat <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
[plugins."io.containerd.nri.v1.nri"]
  disable = true
[plugins."io.containerd.runtime.v1.embed"]
  runtime_root = "$dir/runc-embed"
  pin_dir = "$dir/bpf"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$sandbox"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$certs"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$dir/cni/bin"
    conf_dir = "$dir/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$dir/runc-v2"
        SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.embed]
      runtime_type = "io.containerd.runtime.v1.embed"
TOML
}

# containerd 2.x: config version 3 (2.3 reads it, migrating to its version 4,
# where [grpc]/[ttrpc] move into server plugins); CRI split into io.containerd.cri.v1.images
# (pulls, the pinned sandbox image, registry hosts), io.containerd.cri.v1.runtime
# (runtimes, CNI, netns) and io.containerd.grpc.v1.cri (the service, streaming).
# (docs/cri/config.md and internal/cri/config of containerd v2.3.)
cri_config_2() {
	local dir=$1 sock=$2 certs=$3 sandbox=$4
	cat <<TOML
version = 3
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
# NRI on, with its socket in the scratch dir (critest -nri-socket) and no
# plugins of the host's.
[plugins."io.containerd.nri.v1.nri"]
  disable = false
  socket_path = "$dir/nri.sock"
  plugin_path = "$dir/nri/plugins"
  plugin_config_path = "$dir/nri/conf.d"
[plugins."io.containerd.runtime.v1.embed"]
  runtime_root = "$dir/runc-embed"
  pin_dir = "$dir/bpf"
[plugins."io.containerd.cri.v1.images"]
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$sandbox"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$certs"
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$dir/cni/bin"]
    conf_dir = "$dir/cni/net.d"
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        Root = "$dir/runc-v2"
        SystemdCgroup = false
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.embed]
      runtime_type = "io.containerd.runtime.v1.embed"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
TOML
}

cri_config() {
	case $1 in
	1.7) cri_config_1_7 "${@:2}" ;;
	2 | 2.*) cri_config_2 "${@:2}" ;;
	*)
		echo "cri_config: containerd version $1: want 1.7 or 2" >&2
		return 1
		;;
	esac
}

# cri_daemon_version DAEMON: 2 if its default config is version 3 or later
# (containerd 2.0-2.2: 3, 2.3: 4; version 3 files are migrated), else 1.7.
cri_daemon_version() {
	if "$1" config default 2>/dev/null | grep -qE '^version = ([3-9]|[1-9][0-9])$'; then
		echo 2
	else
		echo 1.7
	fi
}
