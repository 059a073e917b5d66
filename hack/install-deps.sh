#!/usr/bin/env bash
# Installs what building and testing embedshim needs, only if missing, so a
# fresh Debian machine with Go and gcc can run `make test` directly.
set -euo pipefail

pkgs=(clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev cmake pkg-config
	runc busybox-static clang-format iproute2 procps
	docker-registry iptables curl util-linux) # the last four for tests/cri (critest)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Go modules of every module of the repository (the core, each daemon build,
# the tests), once.
repo=$(cd "$(dirname "$0")/.." && pwd)
for m in . cmd/embedshim-containerd cmd/embedshim-containerd-1.7 tests; do
	(cd "$repo/$m" && { go list -m all >/dev/null 2>&1 || go mod download; })
done
