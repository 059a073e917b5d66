#!/usr/bin/env bash
# Builds, offline, stand-ins for every image critest v1.37.0 pulls, as OCI
# layout tarballs in OUT, and OUT/images.list: one line per tarball, "FILE
# REF...", the references it is pushed under (tests/cri/run.sh pushes them to
# a local registry that the daemon's hosts.toml names for every host).
#
#   tests/cri/images.sh OUT BUILDER BUSYBOX HELPERS_DIR
#
# BUILDER is tests/image/build compiled; BUSYBOX Debian's dynamic busybox
# (package busybox: unlike busybox-static its sh runs ls as /bin/ls, so
# critest's MaskedPaths spec sees the mask); HELPERS_DIR holds the
# tests/cri/helpers binaries. Every image is busybox with its applets
# hard-linked (as in upstream busybox images), its shared libraries, and the
# pgrep/ipcs stand-ins; images differ by config, helpers and a label.
# Not reproduced: test-image-digest@sha256:9700f9a2..., a reference by the
# digest of an upstream manifest (its spec fails on every handler).
set -euo pipefail
out=$1 builder=$2 busybox=$3 helpers=$4
mkdir -p "$out"
list=$out/images.list.tmp
: >"$list"

k8s=registry.k8s.io/e2e-test-images
cri=gcr.io/k8s-staging-cri-tools
arch=$(go env GOARCH)
www=(-passwd 'www-data:x:33:33:www-data:/var/www:/bin/false' -group 'www-data:x:33:')

# image FILE "REF..." BUILDER-FLAGS...
image() {
	local file=$1 refs=$2
	shift 2
	"$builder" -o "$out/$file.tar" -name "${refs%% *}" -busybox "$busybox" \
		-applets hardlink -libs -helpers-src "" \
		-helper "pgrep=$helpers/pgrep" -helper "ipcs=$helpers/ipcs" \
		"${www[@]}" -label "org.embedshim.cri-image=$file" "$@" >/dev/null
	echo "$file.tar $refs" >>"$list"
}

image busybox "$k8s/busybox:1.29-2"
image nginx "$k8s/nginx:1.14-2" -helper "nginx=$helpers/webserver" -expose 80/tcp \
	-cmd '["nginx", "-g", "daemon off; master process", "-pidfile", "/var/run/nginx.pid"]'
image httpd "$k8s/httpd:2.4.39-4" -helper "httpd=$helpers/webserver" -expose 80/tcp -cmd '["httpd"]'
# upstream listens on 12003 in the host's network namespace: loopback only here
image hostnet-nginx "$cri/hostnet-nginx-$arch:latest" -helper "nginx=$helpers/webserver" \
	-cmd '["nginx", "-g", "daemon off; master process", "-listen", "127.0.0.1:12003"]'
image nonewprivs "$k8s/nonewprivs:1.3" -helper "nonewprivs=$helpers/nonewprivs" -setuid nonewprivs \
	-cmd '' -entrypoint '["/usr/local/bin/nonewprivs"]'
image pause "registry.k8s.io/pause:3.9 k8s.gcr.io/pause:3.9" -helper "pause=$helpers/pause" \
	-cmd '' -entrypoint '["/usr/local/bin/pause"]'
# the daemon's sandbox image: not one critest removes
image sandbox "registry.k8s.io/pause:3.10-embedshim" -helper "pause=$helpers/pause" \
	-cmd '' -entrypoint '["/usr/local/bin/pause"]'

image user-uid "$cri/test-image-user-uid:latest" -user 1002
image user-username "$cri/test-image-user-username:latest" -user www-data
image user-uid-group "$cri/test-image-user-uid-group:latest" -user 1003:1004
image user-username-group "$cri/test-image-user-username-group:latest" -user www-data:1004
image predefined-group "$cri/test-image-predefined-group:latest" -user 1000 \
	-passwd 'default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh' \
	-group 'default-user:x:1000:' -group 'group-defined-in-image:x:50000:default-user'

image test-latest "$cri/test-image-latest:latest"
image test-tag-test "$cri/test-image-tag:test"
image test-tag-all "$cri/test-image-tag:all"
for i in 1 2 3; do
	image "test-$i" "$cri/test-image-$i:latest"
done
image test-tags "$cri/test-image-tags:1 $cri/test-image-tags:2 $cri/test-image-tags:3"

mv "$list" "$out/images.list"
echo "tests/cri/images.sh: $(wc -l <"$out/images.list") images in $out"
