# mk/cri.mk — critest (Kubernetes' CRI validation suite) against the daemon,
# runc.v2 as the reference handler and embed as the one under test (issue 7).
#
# Included from the top-level Makefile (`include mk/cri.mk`, after
# mk/containerd.mk). Variables are prefixed CRI_.
#
# Targets:
#   test-cri        the full critest run per handler, then the comparison:
#                   fails if a spec passes on runc but not on embed
#                   (tests/cri/run.sh; ~1.5 + ~3 min on 2 idle cores)
#   test-cri-smoke  the same restricted to CRI_SMOKE_FOCUS
#   cri-tools       what the run needs, under $(CRI_OUT): critest, the CNI
#                   plugins, the offline images and the small Go tools
#
# Knobs: CRI_DAEMON (bin/embedshim-containerd), CRI_CONTAINERD_VERSION (1.7
# or 2; default: from the daemon's `config default`), CRI_FOCUS.
#
# critest and the CNI plugins are built like bin/ctr: inside their (read-only)
# module cache copies, with their own go.mod; downloaded once.

CRI_GO            ?= $(if $(GO),$(GO),go)
CRI_OUT           ?= _output/cri
CRI_MODCACHE      := $(shell $(CRI_GO) env GOMODCACHE)
CRI_TOOLS_PKG     := sigs.k8s.io/cri-tools
CRI_TOOLS_VERSION ?= v1.37.0
CRI_TOOLS_SRC     := $(CRI_MODCACHE)/$(CRI_TOOLS_PKG)@$(CRI_TOOLS_VERSION)
CRI_CNI_PKG       := github.com/containernetworking/plugins
CRI_CNI_VERSION   ?= v1.10.0
CRI_CNI_SRC       := $(CRI_MODCACHE)/$(CRI_CNI_PKG)@$(CRI_CNI_VERSION)
CRI_CNI_PLUGINS   := main/bridge ipam/host-local main/loopback meta/portmap
CRI_DAEMON        ?= $(CTRD_BIN)/embedshim-containerd
CRI_BUSYBOX       := $(CRI_OUT)/busybox/bin/busybox
CRI_HELPERS       := webserver pgrep ipcs nonewprivs pause
# fast specs for `make test-cri-smoke`: version info, a pod, a container's
# removal, exec (and exec with a timeout), port mapping
CRI_SMOKE_FOCUS   ?= runtime should return version info|runtime should support running PodSandbox|removing stopped container|runtime should support execSync \[Conformance\]|execSync with timeout|port mapping with only container port

.PHONY: test-cri test-cri-smoke cri-tools cri-mod-download cri-clean \
        $(CRI_OUT)/critest $(CRI_OUT)/push $(CRI_OUT)/compare

cri-tools: $(CRI_OUT)/critest $(addprefix $(CRI_OUT)/cni/,$(notdir $(CRI_CNI_PLUGINS))) \
	$(CRI_OUT)/push $(CRI_OUT)/compare $(CRI_OUT)/images/images.list

test-cri: containerd-bins cri-tools
	CRI_DAEMON=$(CRI_DAEMON) CRI_TOOLS=$(CRI_OUT) tests/cri/run.sh

test-cri-smoke: containerd-bins cri-tools
	CRI_DAEMON=$(CRI_DAEMON) CRI_TOOLS=$(CRI_OUT) CRI_FOCUS='$(CRI_SMOKE_FOCUS)' tests/cri/run.sh

cri-mod-download:
	@test -f $(CRI_TOOLS_SRC)/go.mod || $(CRI_GO) mod download $(CRI_TOOLS_PKG)@$(CRI_TOOLS_VERSION)
	@test -f $(CRI_CNI_SRC)/go.mod || $(CRI_GO) mod download $(CRI_CNI_PKG)@$(CRI_CNI_VERSION)

# As cri-tools' Makefile builds it (go test -c of cmd/critest), minus its
# -mod=vendor: the module cache copy has no vendor dir.
$(CRI_OUT)/critest: cri-mod-download
	@mkdir -p $(CRI_OUT)
	cd $(CRI_TOOLS_SRC) && CGO_ENABLED=0 $(CRI_GO) test -c -trimpath -buildvcs=false \
		-ldflags '-X $(CRI_TOOLS_PKG)/pkg/version.Version=$(CRI_TOOLS_VERSION:v%=%)' \
		-o $(abspath $@) ./cmd/critest

# As the plugins' build_linux.sh builds them, static.
$(CRI_OUT)/cni/%: cri-mod-download
	@mkdir -p $(CRI_OUT)/cni
	cd $(CRI_CNI_SRC) && CGO_ENABLED=0 $(CRI_GO) build -trimpath -buildvcs=false \
		-o $(abspath $@) ./plugins/$(filter %/$*,$(CRI_CNI_PLUGINS))

$(CRI_OUT)/push $(CRI_OUT)/compare:
	@mkdir -p $(CRI_OUT)
	cd tests && $(CRI_GO) build -o $(abspath $@) ./cri/$(notdir $@)

$(CRI_OUT)/image-build: tests/image/build/main.go
	@mkdir -p $(CRI_OUT)
	cd tests && $(CRI_GO) build -o $(abspath $@) ./image/build

$(CRI_OUT)/helpers/%: tests/cri/helpers/%/main.go
	@mkdir -p $(CRI_OUT)/helpers
	cd tests && CGO_ENABLED=0 $(CRI_GO) build -trimpath -buildvcs=false -ldflags '-s -w -buildid=' -o $(abspath $@) ./cri/helpers/$*

# Debian's dynamic busybox, unpacked (it conflicts with busybox-static, which
# the other tests' image uses).
$(CRI_BUSYBOX):
	@rm -rf $(CRI_OUT)/busybox && mkdir -p $(CRI_OUT)/busybox
	cd $(CRI_OUT)/busybox && (apt-get download busybox 2>/dev/null || \
		(apt-get update -qq && apt-get download busybox)) && dpkg-deb -x busybox_*.deb . && rm busybox_*.deb

$(CRI_OUT)/images/images.list: tests/cri/images.sh tests/image/build/main.go $(CRI_OUT)/image-build \
		$(CRI_BUSYBOX) $(addprefix $(CRI_OUT)/helpers/,$(CRI_HELPERS))
	tests/cri/images.sh $(CRI_OUT)/images $(CRI_OUT)/image-build $(CRI_BUSYBOX) $(CRI_OUT)/helpers

cri-clean:
	rm -rf $(CRI_OUT)
