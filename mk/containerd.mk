# mk/containerd.mk — the daemon builds, their ctr and runc.v2 shim, and the
# offline test image. Included from the top-level Makefile.
#
# Targets:
#   containerd-bins  every daemon build with its own ctr and runc.v2 shim:
#                      bin/embedshim-containerd, bin/ctr,
#                      bin/containerd-shim-runc-v2       (containerd 2.3, default)
#                      bin/embedshim-containerd-1.7, bin/1.7/ctr,
#                      bin/1.7/containerd-shim-runc-v2   (containerd 1.7)
#   test-image       _output/image/embedshim-test.tar (docker.io/embedshim/test:latest)
#   containerd-clean remove the above
#
# Each daemon is built from its own Go module (cmd/<daemon>/go.mod: containerd's
# main + builtins + the adapter of the embed runtime core), because one go.mod
# cannot hold two containerd majors. The adapter code both share lives in
# cmd/_adapter, symlinked into each adapter/: the daemon targets are phony and
# go build hashes the symlinked files' contents, so a change there relinks
# both daemons. ctr and containerd-shim-runc-v2 are built exactly as upstream
# builds them: inside that containerd version's module cache copy, with its
# own go.mod (the shim needs containerd's pinned go-runc).

CTRD_GO           ?= go
CTRD_MODCACHE     := $(shell $(CTRD_GO) env GOMODCACHE)
CTRD_BIN          ?= bin
CTRD_OUT          ?= _output

# static_build leaves out Go plugin loading (std "plugin"), whose -rdynamic
# cannot link Debian's non-PIC libbpf.a. urfave_cli_no_docs as upstream.
CTRD_TAGS         ?= urfave_cli_no_docs static_build
# (no -trimpath for the daemon: it shares the build cache with `go test`)
CTRD_GOFLAGS      ?= -buildvcs=false
CTRD_UP_GOFLAGS   ?= -trimpath -buildvcs=false

# version strings reported by `embedshim-containerd --version` / Version API
CTRD_GIT_VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null)
CTRD_ES_VERSION   ?= $(if $(CTRD_GIT_VERSION),$(CTRD_GIT_VERSION),0.1.0)-embedshim
CTRD_ES_REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null)
CTRD_ES_PACKAGE   ?= github.com/embedshim/embedshim

# ---- containerd 2.3 (the default build) --------------------------------
CTRD2_DIR         := cmd/embedshim-containerd
CTRD2_PKG         := github.com/containerd/containerd/v2
CTRD2_VERSION     ?= $(shell cd $(CTRD2_DIR) && $(CTRD_GO) list -m -f '{{.Version}}' $(CTRD2_PKG) 2>/dev/null || echo v2.3.7)
CTRD2_SRC         := $(CTRD_MODCACHE)/github.com/containerd/containerd/v2@$(CTRD2_VERSION)
CTRD2_TOOLS       := $(CTRD_BIN)
# no_btrfs: Debian's btrfs headers are not needed for anything tested here.
CTRD2_TAGS        ?= $(CTRD_TAGS) no_btrfs
CTRD2_LDFLAGS     := -X $(CTRD2_PKG)/version.Version=$(CTRD_ES_VERSION) \
                     -X $(CTRD2_PKG)/version.Revision=$(CTRD_ES_REVISION) \
                     -X $(CTRD2_PKG)/version.Package=$(CTRD_ES_PACKAGE)
CTRD2_UP_LDFLAGS  := -X $(CTRD2_PKG)/version.Version=$(CTRD2_VERSION:v%=%) \
                     -X $(CTRD2_PKG)/version.Package=github.com/containerd/containerd/v2
CTRD2_BINS        := $(CTRD_BIN)/embedshim-containerd $(CTRD2_TOOLS)/ctr $(CTRD2_TOOLS)/containerd-shim-runc-v2

# ---- containerd 1.7 -----------------------------------------------------
CTRD17_DIR        := cmd/embedshim-containerd-1.7
CTRD17_PKG        := github.com/containerd/containerd
CTRD17_VERSION    ?= $(shell cd $(CTRD17_DIR) && $(CTRD_GO) list -m -f '{{.Version}}' $(CTRD17_PKG) 2>/dev/null || echo v1.7.35)
CTRD17_SRC        := $(CTRD_MODCACHE)/$(CTRD17_PKG)@$(CTRD17_VERSION)
CTRD17_TOOLS      := $(CTRD_BIN)/1.7
CTRD17_LDFLAGS    := -X $(CTRD17_PKG)/version.Version=$(CTRD_ES_VERSION) \
                     -X $(CTRD17_PKG)/version.Revision=$(CTRD_ES_REVISION) \
                     -X $(CTRD17_PKG)/version.Package=$(CTRD_ES_PACKAGE)
CTRD17_UP_LDFLAGS := -X $(CTRD17_PKG)/version.Version=$(CTRD17_VERSION:v%=%) \
                     -X $(CTRD17_PKG)/version.Package=$(CTRD17_PKG)
CTRD17_BINS       := $(CTRD_BIN)/embedshim-containerd-1.7 $(CTRD17_TOOLS)/ctr $(CTRD17_TOOLS)/containerd-shim-runc-v2

CTRD_IMAGE        := $(CTRD_OUT)/image/embedshim-test.tar
CTRD_IMAGE_NAME   ?= docker.io/embedshim/test:latest
CTRD_BUSYBOX      ?= /usr/bin/busybox
CTRD_IMAGE_DEPS   := $(wildcard tests/image/build/*.go) \
                     $(wildcard tests/image/helpers/*/*.go tests/image/helpers/*/*.c)

.PHONY: containerd-bins test-image containerd-clean ctrd2-mod-download ctrd17-mod-download \
        $(CTRD2_BINS) $(CTRD17_BINS)

containerd-bins: $(CTRD2_BINS) $(CTRD17_BINS)

$(CTRD_BIN)/embedshim-containerd: core
	@mkdir -p $(CTRD_BIN)
	cd $(CTRD2_DIR) && CGO_ENABLED=1 $(CTRD_GO) build $(CTRD_GOFLAGS) -tags "$(CTRD2_TAGS)" \
		-ldflags '$(CTRD2_LDFLAGS)' -o $(abspath $@) .

ctrd2-mod-download:
	@test -f $(CTRD2_SRC)/go.mod || (cd $(CTRD2_DIR) && $(CTRD_GO) mod download $(CTRD2_PKG)@$(CTRD2_VERSION))

$(CTRD2_TOOLS)/ctr: ctrd2-mod-download
	@mkdir -p $(CTRD2_TOOLS)
	cd $(CTRD2_SRC) && CGO_ENABLED=0 $(CTRD_GO) build $(CTRD_UP_GOFLAGS) -tags "$(CTRD2_TAGS)" \
		-ldflags '$(CTRD2_UP_LDFLAGS)' -o $(abspath $@) ./cmd/ctr

$(CTRD2_TOOLS)/containerd-shim-runc-v2: ctrd2-mod-download
	@mkdir -p $(CTRD2_TOOLS)
	cd $(CTRD2_SRC) && CGO_ENABLED=0 $(CTRD_GO) build $(CTRD_UP_GOFLAGS) -tags "$(CTRD2_TAGS)" \
		-ldflags '$(CTRD2_UP_LDFLAGS) -extldflags "-static"' -o $(abspath $@) ./cmd/containerd-shim-runc-v2

# Always handed to `go build` (phony): go's own cache makes a no-op rebuild
# take ~1s, and it tracks Go/cgo inputs better than make can.
$(CTRD_BIN)/embedshim-containerd-1.7: core
	@mkdir -p $(CTRD_BIN)
	cd $(CTRD17_DIR) && CGO_ENABLED=1 $(CTRD_GO) build $(CTRD_GOFLAGS) -tags "$(CTRD_TAGS)" \
		-ldflags '$(CTRD17_LDFLAGS)' -o $(abspath $@) .

ctrd17-mod-download:
	@test -f $(CTRD17_SRC)/go.mod || (cd $(CTRD17_DIR) && $(CTRD_GO) mod download $(CTRD17_PKG)@$(CTRD17_VERSION))

$(CTRD17_TOOLS)/ctr: ctrd17-mod-download
	@mkdir -p $(CTRD17_TOOLS)
	cd $(CTRD17_SRC) && CGO_ENABLED=0 $(CTRD_GO) build $(CTRD_UP_GOFLAGS) -tags "$(CTRD_TAGS)" \
		-ldflags '$(CTRD17_UP_LDFLAGS)' -o $(abspath $@) ./cmd/ctr

$(CTRD17_TOOLS)/containerd-shim-runc-v2: ctrd17-mod-download
	@mkdir -p $(CTRD17_TOOLS)
	cd $(CTRD17_SRC) && CGO_ENABLED=0 $(CTRD_GO) build $(CTRD_UP_GOFLAGS) -tags "$(CTRD_TAGS)" \
		-ldflags '$(CTRD17_UP_LDFLAGS) -extldflags "-static"' -o $(abspath $@) ./cmd/containerd-shim-runc-v2

# Offline, reproducible OCI layout tarball (busybox-static + tests/image/helpers/*).
test-image: $(CTRD_IMAGE)

$(CTRD_IMAGE): $(CTRD_IMAGE_DEPS) $(CTRD_BUSYBOX)
	@mkdir -p $(dir $@)
	cd tests && $(CTRD_GO) run ./image/build -o $(abspath $@) -name $(CTRD_IMAGE_NAME) -busybox $(CTRD_BUSYBOX) -helpers-src image/helpers

containerd-clean:
	rm -rf $(CTRD2_BINS) $(CTRD17_BINS) $(CTRD17_TOOLS) $(CTRD_IMAGE)
