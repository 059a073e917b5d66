#!/usr/bin/env bash
# tests/cri/run.sh — critest against embedshim-containerd, once per runtime
# handler: "runc" (io.containerd.runc.v2, the reference) and "embed"
# (io.containerd.runtime.v1.embed), in one daemon. Fails if a spec passes on
# runc but not on embed. See mk/cri.mk (make test-cri) for how the tools it
# uses are built.
#
# Knobs (environment):
#   CRI_DAEMON              daemon binary (bin/embedshim-containerd)
#   CRI_CONTAINERD_VERSION  1.7 or 2: its config dialect (default: from
#                           `DAEMON config default`)
#   CRI_FOCUS               ginkgo focus regexp (default: every spec)
#   CRI_HANDLERS            handlers, reference first ("runc embed")
#   CRI_TOOLS               critest, CNI plugins, images, push, compare
#                           (_output/cri)
#
# Everything runs in a scratch dir (/tmp/embedshim-cri-*): a local registry
# on 127.0.0.1 serving the offline images (tests/cri/images.sh) for every
# registry host critest names, the daemon's root/state/sockets/netns/pins,
# CNI config with a bridge of this run's own. On exit, whatever the outcome,
# it stops what it started, removes that, puts back what CNI changed on the
# host (tests/cri/hoststate.sh) and fails if anything is left.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
# shellcheck source=tests/cri/config.sh
. tests/cri/config.sh
# shellcheck source=tests/cri/hoststate.sh
. tests/cri/hoststate.sh

daemon=$(realpath "${CRI_DAEMON:-bin/embedshim-containerd}")
tools=$(realpath "${CRI_TOOLS:-_output/cri}")
read -r -a handlers <<<"${CRI_HANDLERS:-runc embed}"
focus=${CRI_FOCUS:-}
version=${CRI_CONTAINERD_VERSION:-$(cri_daemon_version "$daemon")}
# ctr and the runc.v2 shim of the daemon's own containerd version
ctrd_tools=$repo/bin
[[ $daemon == *-1.7 ]] && ctrd_tools=$repo/bin/1.7
ctr=$ctrd_tools/ctr
for f in "$daemon" "$ctr" "$tools/critest" "$tools/push" "$tools/compare" "$tools/images/images.list"; do
	[ -e "$f" ] || { echo "tests/cri/run.sh: $f missing (make test-cri builds it)" >&2; exit 1; }
done

scratch=$(mktemp -d /tmp/embedshim-cri-XXXXXX)
sock=$scratch/containerd.sock
logs=$tools/logs
mkdir -p "$logs"
rm -f "$logs"/*
br=escri$(printf '%04x' $((RANDOM)))
registry_pid='' daemon_pid='' critest_pid=''
hs_snapshot "$scratch/host-before"

cleanup() {
	local rc=$? p
	set +e
	trap - EXIT INT TERM ERR
	[ -n "$critest_pid" ] && kill "$critest_pid" 2>/dev/null && wait "$critest_pid" 2>/dev/null
	if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
		# pods an interrupted critest left: kill their tasks so that the
		# daemon stops cleanly (their network is swept below)
		for c in $("$ctr" --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
			"$ctr" --address "$sock" -n k8s.io tasks kill -s KILL "$c" >/dev/null 2>&1
		done
		kill "$daemon_pid"
		wait "$daemon_pid" 2>/dev/null
	fi
	[ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
	# processes of this run still alive (runc containers outlive the daemon)
	for p in $(hs_procs "$scratch"); do
		kill -9 "$p" 2>/dev/null
	done
	# mounts (rootfs, netns, shm, pins), deepest first
	awk -v s="$scratch" '$5 ~ "^" s { print $5 }' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l
	ip link del "$br" 2>/dev/null
	hs_restore "$scratch/host-before"
	cp "$scratch"/*.log "$logs/" 2>/dev/null
	if ! hs_check "$scratch/host-before" "$scratch" "$br" >"$logs/leftovers" 2>&1; then
		echo "tests/cri/run.sh: left behind:" && cat "$logs/leftovers"
		rc=1
	fi
	rm -rf "$scratch"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# set -e ends the run at the first failing command: say which
set -E
trap 'echo "tests/cri/run.sh: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR

# a free port on 127.0.0.1 for the registry
free_port() {
	local p
	for _ in $(seq 50); do
		p=$((30000 + RANDOM % 10000))
		ss -Hltn "sport = :$p" | grep -q . || { echo "$p"; return; }
	done
	return 1
}

# --- registry -----------------------------------------------------------
port=$(free_port)
reg=127.0.0.1:$port
cat >"$scratch/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $scratch/registry
  delete:
    enabled: true
http:
  addr: $reg
YML
docker-registry serve "$scratch/registry.yml" >"$scratch/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
	curl -fsS "http://$reg/v2/" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -fsS "http://$reg/v2/" >/dev/null
hosts=()
while read -r file refs; do
	# shellcheck disable=SC2086 # refs is a list
	"$tools/push" -registry "$reg" "$tools/images/$file" $refs
	for r in $refs; do hosts+=("${r%%/*}"); done
done <"$tools/images/images.list"

# hosts.toml: every host critest names, and any other (_default), resolves
# and pulls from the local registry only
for h in $(printf '%s\n' "${hosts[@]}" _default docker.io | sort -u); do
	mkdir -p "$scratch/certs.d/$h"
	cat >"$scratch/certs.d/$h/hosts.toml" <<TOML
server = "http://$reg"
[host."http://$reg"]
  capabilities = ["pull", "resolve"]
TOML
done

# --- CNI ----------------------------------------------------------------
mkdir -p "$scratch/cni/bin" "$scratch/cni/net.d"
cp "$tools"/cni/* "$scratch/cni/bin/"
subnet=
for _ in $(seq 50); do
	n=$((RANDOM % 250 + 1))
	ip route | grep -q "^10\.237\.$n\." || { subnet=10.237.$n; break; }
done
cat >"$scratch/cni/net.d/10-embedshim-cri.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "embedshim-cri",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$br",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$scratch/cni/ipam",
        "ranges": [[{"subnet": "$subnet.0/24"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
  ]
}
JSON

# --- daemon -------------------------------------------------------------
cri_config "$version" "$scratch" "$sock" "$scratch/certs.d" registry.k8s.io/pause:3.10-embedshim >"$scratch/config.toml"
# the runc.v2 shim of the daemon's own containerd version: bin/1.7/ for
# bin/embedshim-containerd-1.7, bin/ for the default build
PATH=$ctrd_tools:$PATH "$daemon" --config "$scratch/config.toml" >"$scratch/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 300); do
	"$ctr" --address "$sock" plugins ls 2>/dev/null | grep -qE 'io\.containerd\.grpc\.v1 +cri +.* ok' && break
	kill -0 "$daemon_pid" 2>/dev/null || break
	sleep 0.1
done
if ! "$ctr" --address "$sock" plugins ls 2>/dev/null | grep -qE 'io\.containerd\.grpc\.v1 +cri +.* ok'; then
	echo "tests/cri/run.sh: the daemon's CRI plugin did not come up; daemon.log:" >&2
	tail -30 "$scratch/daemon.log" >&2
	exit 1
fi
echo "tests/cri/run.sh: $daemon (containerd $version config), registry $reg, bridge $br ($subnet.0/24), scratch $scratch"

# --- critest, per handler -----------------------------------------------
reports=()
for h in "${handlers[@]}"; do
	args=(-runtime-endpoint "unix://$sock" -image-endpoint "unix://$sock" -runtime-handler "$h"
		-config "$scratch/crictl.yaml" -ginkgo.no-color -ginkgo.timeout 30m
		-ginkgo.json-report "$scratch/$h.json")
	[ -n "$focus" ] && args+=(-ginkgo.focus "$focus")
	# containerd 2.x runs NRI (its socket in the scratch dir, see config.sh)
	[ "$version" = 2 ] && args+=(-nri-socket "$scratch/nri.sock")
	start=$(date +%s)
	(cd "$scratch" && exec "$tools/critest" "${args[@]}") >"$logs/critest-$h.log" 2>&1 &
	critest_pid=$!
	wait "$critest_pid" && st=0 || st=$?
	critest_pid=
	echo "tests/cri/run.sh: critest -runtime-handler $h: exit $st, $(($(date +%s) - start))s wall; log $logs/critest-$h.log"
	cp "$scratch/$h.json" "$logs/" 2>/dev/null || true
	reports+=("$h=$scratch/$h.json")
done
"$tools/compare" "${reports[@]}"
