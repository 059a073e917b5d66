#!/usr/bin/env bash
# The embedshim demo: starts embedshim-containerd in a scratch directory, runs
# containers on io.containerd.runtime.v1.embed with bin/ctr, shows that no shim
# process runs, SIGKILLs the daemon while a container exits, restarts it and
# shows the recovered exit status, then stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export PATH="$repo/bin:/usr/sbin:$PATH"

scratch=$(mktemp -d /tmp/embedshim-demo-XXXXXX)
sock=$scratch/containerd.sock
ns=demo
rt=io.containerd.runtime.v1.embed
img=docker.io/embedshim/test:latest
daemon_pid=

# The containerd 2.3 build (bin/embedshim-containerd) by default;
# DEMO_DAEMON=embedshim-containerd-1.7 runs the same demo on containerd 1.7
# (with its own ctr in bin/1.7).
daemon=${DEMO_DAEMON:-embedshim-containerd}
ctr_bin=$repo/bin/ctr
shim_cfg="[plugins.\"io.containerd.shim.v1.manager\"]
  socket_dir = \"$scratch/s\""
cfg_version=3
disabled='"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images"'
if [[ $daemon == *-1.7 ]]; then
	ctr_bin=$repo/bin/1.7/ctr shim_cfg= cfg_version=2 disabled='"io.containerd.grpc.v1.cri"'
	export PATH="$repo/bin/1.7:$PATH"
fi

cat >"$scratch/config.toml" <<TOML
version = $cfg_version
root = "$scratch/root"
state = "$scratch/state"
disabled_plugins = [$disabled]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$scratch/opt"
[plugins."io.containerd.nri.v1.nri"]
  disable = true
[plugins."$rt"]
  pin_dir = "$scratch/bpf"
$shim_cfg
TOML

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# containerd 2.x warns on every call that cgroup v1 is deprecated: not news here.
ctr() { "$ctr_bin" --address "$sock" --namespace "$ns" "$@" 2> >(grep -v 'support for cgroup v1 is deprecated' >&2); }
# ctr tasks delete reports a non-zero exit code in a warning.
exit_code() {
	local out
	out=$(ctr tasks delete "$1" 2>&1)
	grep -o 'exit code [0-9]*' <<<"$out" | grep -o '[0-9]*$' || echo 0
}

start_daemon() {
	"$daemon" --config "$scratch/config.toml" >>"$scratch/daemon.log" 2>&1 &
	daemon_pid=$!
	for _ in $(seq 100); do
		ctr version >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "daemon did not start; log:" && tail -20 "$scratch/daemon.log" && return 1
}

cleanup() {
	set +e
	if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
		for c in $(ctr tasks ls -q 2>/dev/null); do ctr tasks kill -s KILL "$c" >/dev/null 2>&1; done
		sleep 0.3
		for c in $(ctr containers ls -q 2>/dev/null); do
			ctr tasks delete -f "$c" >/dev/null 2>&1
			ctr containers delete "$c" >/dev/null 2>&1
		done
		kill "$daemon_pid"
		wait "$daemon_pid" 2>/dev/null
	fi
	# The plugin leaves its pins for the next start; the demo removes them.
	grep -o " $scratch[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l
	rm -rf "$scratch"
	rm -rf "/run/containerd/runc/$ns"
	rmdir /sys/fs/cgroup/*/"$ns" /sys/fs/cgroup/"$ns" 2>/dev/null
	return 0
}
trap cleanup EXIT

say "embedshim-containerd in $scratch"
start_daemon
ctr plugins ls | grep -E "^TYPE|runtime.v1 +embed"

say "import the offline test image"
ctr images import "$repo/_output/image/embedshim-test.tar" >/dev/null
ctr images ls -q

say "run containers on $rt"
ctr run --rm --runtime "$rt" "$img" hello sh -c 'echo "hello from $(hostname)"; exit 3' && rc=0 || rc=$?
echo "exit status: $rc"
ctr run -d --runtime "$rt" "$img" killed sleep 3600
ctr tasks kill -s KILL killed
echo "exit status of a SIGKILLed container: $(exit_code killed)"

say "two long-running containers; no shim process per container"
ctr run -d --runtime "$rt" "$img" sleeper sleep 3600
ctr run -d --runtime "$rt" "$img" exiter sh -c 'sleep 2; exit 42'
ctr tasks ls
echo "processes started for these containers besides their own: $(pgrep -c -f "containerd-shim.*-namespace $ns " || true) (runc.v2 would keep one shim each)"
# The daemon is three processes (README, "The reaper"): the started pid (the
# front), its reaper, and containerd; the containers' inits are the reaper's
# children, so it reaps them as soon as they exit.
reaper_pid=$(tr -d " " <"/proc/$daemon_pid/task/$daemon_pid/children")
containerd_pid=$(pgrep -P "$reaper_pid" -f -- "--config $scratch/config.toml" || echo "$daemon_pid")
ps -o pid,ppid,rss,comm -p "$daemon_pid,$reaper_pid,$containerd_pid,$(ctr tasks ls | awk '$1=="sleeper"{print $2}')"
ctr tasks exec --exec-id e1 sleeper sh -c 'exit 5' && rc=0 || rc=$?
echo "exec exit status: $rc"

say "SIGKILL the daemon (containerd); 'exiter' exits while it is down"
kill -KILL "$containerd_pid"
wait "$daemon_pid" 2>/dev/null || true
sleep 3
start_daemon
ctr tasks ls
echo "exit status of 'exiter', recovered from the BPF record after the restart: $(exit_code exiter)"

say "the running container is still managed after the restart"
ctr tasks exec --exec-id e2 sleeper sh -c 'echo still here' 
ctr tasks kill -s KILL sleeper
sleep 0.3
ctr tasks delete sleeper 2>/dev/null || true
ctr containers delete sleeper exiter hello killed 2>/dev/null || true
say "done; stopping everything"
