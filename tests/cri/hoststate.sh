# shellcheck shell=bash
# tests/cri/hoststate.sh — sourced by tests/cri/run.sh: what a CRI run may
# change on the host outside its scratch dir, recorded before the run, put
# back after it, and checked.
#
# CNI's bridge plugin turns net.ipv4.ip_forward on; portmap adds iptables
# chains (CNI-HOSTPORT-*, CNI-DN-*) and jumps to them that stay after the last
# pod is gone; critest's HostIpc specs leave shared memory segments (ipcmk)
# on the host; runc creates the pods' cgroups from the cgroup parent critest
# sends (containerd 1.7 has no RuntimeConfig call, so critest assumes
# systemd and sends /test.slice; containerd turns that into
# "test.slice:cri-containerd:ID", which runc's cgroupfs driver takes as a
# directory name under its own cgroup). Pods killed without a CNI DEL (an interrupted run) also leave their
# per-pod chains and the bridge.

hs_sysctls=(net.ipv4.ip_forward net.ipv4.conf.all.forwarding net.ipv4.conf.default.forwarding
	net.ipv4.conf.all.route_localnet net.ipv6.conf.all.forwarding net.ipv6.conf.default.forwarding)

# hs_snapshot DIR: record the host state into DIR.
hs_snapshot() {
	local d=$1 k
	mkdir -p "$d"
	for k in "${hs_sysctls[@]}"; do
		echo "$k=$(sysctl -n "$k" 2>/dev/null)"
	done >"$d/sysctl"
	iptables-save 2>/dev/null | grep -E '^(\*|:|-A)' >"$d/iptables" || true
	ip6tables-save 2>/dev/null | grep -E '^(\*|:|-A)' >"$d/ip6tables" || true
	awk 'NR > 1 { print $2 }' /proc/sysvipc/shm | sort >"$d/shm"
	hs_cgroups >"$d/cgroups"
}

# hs_cgroups: the cgroups that CRI pods get from critest's cgroup parent.
# (find fails when a cgroup of someone else's goes away under it: the
# listing still stands, and run.sh's pipefail must not end the run.)
hs_cgroups() {
	{ find /sys/fs/cgroup -maxdepth 6 -type d \( -name test.slice -o -name '*cri-containerd:*' \) 2>/dev/null || true; } | sort
}

# hs_ipt_new SAVE_CMD BEFORE: the CNI lines of SAVE_CMD's output not in BEFORE,
# as "TABLE LINE".
hs_ipt_new() {
	local save=$1 before=$2
	# (BEFORE read with getline: an empty BEFORE breaks awk's FNR == NR idiom)
	"$save" 2>/dev/null | awk -v before="$before" '
		BEGIN { while ((getline l < before) > 0) seen[l] = 1 }
		/^\*/ { t = substr($0, 2); next }
		/CNI-/ && !(($0) in seen) { print t " " $0 }' || true
}

# hs_restore DIR: undo what the run changed (only what was not there before).
hs_restore() {
	local d=$1 kv k v fam line t rest id
	while IFS= read -r kv; do
		k=${kv%%=*} v=${kv#*=}
		[ -n "$v" ] && [ "$(sysctl -n "$k" 2>/dev/null)" != "$v" ] && sysctl -qw "$k=$v"
	done <"$d/sysctl"
	for fam in iptables ip6tables; do
		# rules first (jumps to the chains), then the chains
		hs_ipt_new "$fam-save" "$d/$fam" | grep ' -A ' | while read -r t line; do
			# shellcheck disable=SC2086 # the saved rule is word-split like iptables-restore does
			eval "$fam -w -t $t ${line/#-A/-D}" 2>/dev/null || true
		done
		hs_ipt_new "$fam-save" "$d/$fam" | grep ' :CNI-' | while read -r t rest; do
			rest=${rest#:}
			$fam -w -t "$t" -F "${rest%% *}" 2>/dev/null || true
		done
		hs_ipt_new "$fam-save" "$d/$fam" | grep ' :CNI-' | while read -r t rest; do
			rest=${rest#:}
			$fam -w -t "$t" -X "${rest%% *}" 2>/dev/null || true
		done
	done
	for id in $(awk 'NR > 1 { print $2 }' /proc/sysvipc/shm | sort | comm -13 "$d/shm" -); do
		ipcrm -m "$id" 2>/dev/null || true
	done
	# pods' cgroups: leaves first; a cgroup with a process left is reported
	# by hs_check
	local cg
	for cg in $(hs_cgroups | comm -13 "$d/cgroups" -); do
		find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
	done
}

# hs_procs SCRATCH: pids of processes whose root is under SCRATCH (containers)
# or whose command line names it (daemon, registry, runc); one pass over
# /proc, as the machine may run thousands of processes.
hs_procs() {
	{
		find /proc/[0-9]*/root -maxdepth 0 -lname "$1*" 2>/dev/null | cut -d/ -f3
		grep -lsF -- "$1" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3
	} | sort -un
}

# hs_check DIR SCRATCH BRIDGE: print what is left behind; 1 if anything.
hs_check() {
	local d=$1 scratch=$2 br=$3 left=0 p kv k v fam cg
	for p in $(hs_procs "$scratch"); do
		[ -d "/proc/$p" ] || continue # the finder itself, gone
		echo "left: process $p: $({ tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | cut -c1-100)"
		left=1
	done
	if grep -F " $scratch" /proc/self/mountinfo >/dev/null; then
		echo "left: mounts: $(grep -cF " $scratch" /proc/self/mountinfo)"
		left=1
	fi
	if ip link show "$br" >/dev/null 2>&1; then
		echo "left: bridge $br" && left=1
	fi
	while IFS= read -r kv; do
		k=${kv%%=*} v=${kv#*=}
		if [ "$(sysctl -n "$k" 2>/dev/null)" != "$v" ]; then
			echo "left: sysctl $k=$(sysctl -n "$k") (was $v)" && left=1
		fi
	done <"$d/sysctl"
	for fam in iptables ip6tables; do
		if [ -n "$(hs_ipt_new "$fam-save" "$d/$fam")" ]; then
			echo "left: $fam:" && hs_ipt_new "$fam-save" "$d/$fam" | sed 's/^/  /' && left=1
		fi
	done
	if [ -n "$(awk 'NR > 1 { print $2 }' /proc/sysvipc/shm | sort | comm -13 "$d/shm" -)" ]; then
		echo "left: shared memory segments" && left=1
	fi
	for cg in $(hs_cgroups | comm -13 "$d/cgroups" -); do
		echo "left: cgroup $cg" && left=1
	done
	return $left
}
