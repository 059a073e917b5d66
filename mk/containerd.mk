# mk/containerd.mk — containerd binaries and the offline test image.
#
# Included from the top-level Makefile (`include mk/containerd.mk`).
# All variables are prefixed CTRD_ to avoid clashes.
#
# Targets:
#   containerd-bins  bin/embedshim-containerd bin/ctr bin/containerd-shim-runc-v2
#   test-image       _output/image/embedshim-test.tar (docker.io/embedshim/test:latest)
#   containerd-clean remove the above
#
# bin/embedshim-containerd is built from this module (cmd/embedshim-containerd,
# containerd's own main + builtins + the embed plugin). bin/ctr and
# bin/containerd-shim-runc-v2 are built exactly as upstream builds them: inside
# the containerd module (from the module cache) with containerd's own go.mod,
# because the shim needs containerd's pinned go-runc (v1.0.x) while this
# module may require a newer one.

CTRD_GO           ?= go
CTRD_PKG          := github.com/containerd/containerd
CTRD_MOD_VERSION  ?= $(shell $(CTRD_GO) list -m -f '{{.Version}}' $(CTRD_PKG) 2>/dev/null || echo v1.7.35)
CTRD_MODCACHE     := $(shell $(CTRD_GO) env GOMODCACHE)
CTRD_SRC          := $(CTRD_MODCACHE)/$(CTRD_PKG)@$(CTRD_MOD_VERSION)
CTRD_BIN          ?= bin
CTRD_OUT          ?= _output

# version strings reported by `embedshim-containerd --version` / Version API
CTRD_GIT_VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null)
CTRD_ES_VERSION   ?= $(if $(CTRD_GIT_VERSION),$(CTRD_GIT_VERSION),0.1.0)-embedshim
CTRD_ES_REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null)
CTRD_ES_PACKAGE   ?= github.com/embedshim/embedshim

# static_build leaves out Go plugin loading (std "plugin"), whose -rdynamic
# cannot link Debian's non-PIC libbpf.a. containerd's Makefile uses
# urfave_cli_no_docs; add no_btrfs if the btrfs
# headers are missing, no_cri to drop CRI, etc.
CTRD_TAGS         ?= urfave_cli_no_docs static_build
# (no -trimpath for the daemon: it shares the build cache with `go build`/`go test`)
CTRD_GOFLAGS      ?= -buildvcs=false
CTRD_UP_GOFLAGS   ?= -trimpath -buildvcs=false
CTRD_LDFLAGS      := -X $(CTRD_PKG)/version.Version=$(CTRD_ES_VERSION) \
                     -X $(CTRD_PKG)/version.Revision=$(CTRD_ES_REVISION) \
                     -X $(CTRD_PKG)/version.Package=$(CTRD_ES_PACKAGE)
CTRD_UP_LDFLAGS   := -X $(CTRD_PKG)/version.Version=$(CTRD_MOD_VERSION:v%=%) \
                     -X $(CTRD_PKG)/version.Package=$(CTRD_PKG)

CTRD_IMAGE        := $(CTRD_OUT)/image/embedshim-test.tar
CTRD_IMAGE_NAME   ?= docker.io/embedshim/test:latest
CTRD_BUSYBOX      ?= /usr/bin/busybox
CTRD_IMAGE_DEPS   := $(wildcard tests/image/build/*.go) \
                     $(wildcard tests/image/helpers/*/*.go tests/image/helpers/*/*.c)

.PHONY: containerd-bins test-image containerd-clean ctrd-mod-download \
        $(CTRD_BIN)/embedshim-containerd $(CTRD_BIN)/ctr $(CTRD_BIN)/containerd-shim-runc-v2

containerd-bins: $(CTRD_BIN)/embedshim-containerd $(CTRD_BIN)/ctr $(CTRD_BIN)/containerd-shim-runc-v2

# Always handed to `go build` (FORCE-like, phony): go's own cache makes a
# no-op rebuild take ~1s, and it tracks Go/cgo inputs better than make can.
$(CTRD_BIN)/embedshim-containerd: core
	@mkdir -p $(CTRD_BIN)
	CGO_ENABLED=1 $(CTRD_GO) build $(CTRD_GOFLAGS) -tags "$(CTRD_TAGS)" \
		-ldflags '$(CTRD_LDFLAGS)' -o $@ ./cmd/embedshim-containerd

ctrd-mod-download:
	@test -f $(CTRD_SRC)/go.mod || $(CTRD_GO) mod download $(CTRD_PKG)@$(CTRD_MOD_VERSION)

# Built inside the (read-only) module cache copy of containerd, with its own
# go.mod/go.sum, like containerd's Makefile: static, CGO_ENABLED=0 shim.
$(CTRD_BIN)/ctr: ctrd-mod-download
	@mkdir -p $(CTRD_BIN)
	cd $(CTRD_SRC) && CGO_ENABLED=0 $(CTRD_GO) build $(CTRD_UP_GOFLAGS) -tags "$(CTRD_TAGS)" \
		-ldflags '$(CTRD_UP_LDFLAGS)' -o $(abspath $@) ./cmd/ctr

$(CTRD_BIN)/containerd-shim-runc-v2: ctrd-mod-download
	@mkdir -p $(CTRD_BIN)
	cd $(CTRD_SRC) && CGO_ENABLED=0 $(CTRD_GO) build $(CTRD_UP_GOFLAGS) -tags "$(CTRD_TAGS)" \
		-ldflags '$(CTRD_UP_LDFLAGS) -extldflags "-static"' -o $(abspath $@) ./cmd/containerd-shim-runc-v2

# Offline, reproducible OCI layout tarball (busybox-static + tests/image/helpers/*).
test-image: $(CTRD_IMAGE)

$(CTRD_IMAGE): $(CTRD_IMAGE_DEPS) $(CTRD_BUSYBOX)
	@mkdir -p $(dir $@)
	$(CTRD_GO) run ./tests/image/build -o $@ -name $(CTRD_IMAGE_NAME) -busybox $(CTRD_BUSYBOX) -helpers-src tests/image/helpers

containerd-clean:
	rm -f $(CTRD_BIN)/embedshim-containerd $(CTRD_BIN)/ctr $(CTRD_BIN)/containerd-shim-runc-v2 $(CTRD_IMAGE)
