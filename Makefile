# embedshim: one Makefile for the C core, the Go binaries, tests and benchmarks.
# `make test` and `make demo` install what they need (hack/install-deps.sh).

SHELL := /bin/bash
BUILD_DIR := _output/build
GO ?= go
export PATH := /usr/local/go/bin:/usr/sbin:$(PATH)
export CGO_ENABLED := 1
# go/exitmon finds the C core through pkg-config (embedshim.pc, written by the
# core's build). cmd/go keys its cache on the CGO_* variables, not on the
# library: the library's content hash (embedshim.hash), read when each recipe
# runs (after `core`), makes go/exitmon rebuild and every Go binary relink
# when the C core changed. (Recursive `=`: expanded per recipe, not now.)
export PKG_CONFIG_PATH := $(CURDIR)/$(BUILD_DIR)/pkgconfig$(if $(PKG_CONFIG_PATH),:$(PKG_CONFIG_PATH))
ES_CGO_CFLAGS := $(or $(CGO_CFLAGS),-O2 -g)
export CGO_CFLAGS = $(ES_CGO_CFLAGS) -DEMBEDSHIM_CORE_HASH=$(shell cat $(CURDIR)/$(BUILD_DIR)/pkgconfig/embedshim.hash 2>/dev/null)
# static_build: containerd then leaves out Go plugin loading, whose -rdynamic
# link cannot take Debian's non-PIC libbpf.a (see mk/containerd.mk).
GO_TAGS := urfave_cli_no_docs static_build
# The Go modules: the core (this directory: go/exitmon, go/core), one per
# daemon build, and the tests'.
GO_MODULES := . cmd/embedshim-containerd cmd/embedshim-containerd-1.7 tests
# The daemon builds the integration tests and benchmarks run against.
TEST_DAEMONS := bin/embedshim-containerd bin/embedshim-containerd-1.7

.PHONY: all deps core build test test-c test-go bench-core demo demo-core fmt lint clean

all: build

deps:
	@hack/install-deps.sh

# The C core: BPF object, skeleton, libembedshim.a, C tests and benchmark.
core: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@$(MAKE) --no-print-directory -C $(BUILD_DIR)

include mk/containerd.mk
include mk/bench.mk
include mk/soak.mk
include mk/cri.mk
include mk/chaos.mk

build: core containerd-bins test-image

# critest, runc.v2 vs embed: the full comparison (~5 min on an idle 2-core
# machine, plus ~4 min to build critest cold); CRI_TEST=test-cri-smoke for a
# handful of specs.
CRI_TEST ?= test-cri

# The short chaos run (45 s of faults per daemon build, fixed seed) and the
# soak smoke (70 s) cost ~6 min together; `make test-chaos` and `make soak`
# are the long runs.
test: build lint test-c test-go bench-smoke test-chaos-smoke soak-smoke $(CRI_TEST)
	@echo "make test: all passed"

# EMBEDSHIM_REQUIRE_ALL: a C test whose prerequisite is missing fails here
# instead of being skipped.
test-c: core
	EMBEDSHIM_REQUIRE_ALL=1 ctest --test-dir $(BUILD_DIR) --output-on-failure
	$(BUILD_DIR)/bench_core -n 200 -o _output/bench/core-smoke.json >/dev/null

# Unit tests of every module, then the integration tests against each daemon
# build. EMBEDSHIM_REQUIRE_ALL: a missing prerequisite fails, never skips.
test-go: build
	$(GO) test -tags "$(GO_TAGS)" -count=1 -timeout 10m ./go/...
	cd cmd/embedshim-containerd && $(GO) test -tags "$(GO_TAGS) no_btrfs" -count=1 ./...
	cd cmd/embedshim-containerd-1.7 && $(GO) test -tags "$(GO_TAGS)" -count=1 ./...
	cd tests && $(GO) test -count=1 ./cri/compare
	@for d in $(TEST_DAEMONS); do \
		echo "== integration tests against $$d"; \
		(cd tests && EMBEDSHIM_REQUIRE_ALL=1 EMBEDSHIM_CONTAINERD=$(CURDIR)/$$d \
			$(GO) test -tags "$(GO_TAGS)" -count=1 -timeout 25m ./integration/... ./image/...) || exit 1; \
	done

# Exit -> delivery latency of the core against waitpid, same run.
bench-core: core
	@mkdir -p _output/bench
	$(BUILD_DIR)/bench_core -n 10000 -o _output/bench/core.json

# The demo: embedshim-containerd in a scratch dir, containers on the embed
# runtime, a daemon crash and the exit status recovered after it.
demo: build
	hack/demo.sh

# The exit-tracking core alone against a few processes.
demo-core: core
	$(GO) run ./cmd/exitmon-demo

fmt:
	gofmt -w $$(git ls-files '*.go')
	clang-format -i $$(git ls-files 'csrc/*.[ch]' 'csrc/**/*.h' 'bpf/*.[ch]' 'tests/c/*.[ch]' 'tests/bench/*.c')

lint: core
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "gofmt: $$bad"; exit 1; fi
	@for m in $(GO_MODULES); do (cd $$m && $(GO) vet -tags "$(GO_TAGS) no_btrfs" ./...) || exit 1; done
	@if [ -f .clang-format ]; then clang-format --dry-run --Werror $$(git ls-files 'csrc/*.[ch]' 'csrc/**/*.h' 'bpf/*.[ch]' 'tests/c/*.[ch]' 'tests/bench/*.c'); fi

clean:
	rm -rf _output bin
