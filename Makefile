# embedshim: one Makefile for the C core, the Go binaries, tests and benchmarks.
# `make test` and `make demo` install what they need (hack/install-deps.sh).

SHELL := /bin/bash
BUILD_DIR := _output/build
GO ?= go
export PATH := /usr/local/go/bin:/usr/sbin:$(PATH)
export CGO_ENABLED := 1
# static_build: containerd then leaves out Go plugin loading, whose -rdynamic
# link cannot take Debian's non-PIC libbpf.a (see mk/containerd.mk).
GO_TAGS := urfave_cli_no_docs static_build

.PHONY: all deps core build test test-c test-go bench-core demo demo-core fmt lint clean

all: build

deps:
	@hack/install-deps.sh

# The C core: BPF object, skeleton, libembedshim.a, C tests and benchmark.
core: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@$(MAKE) --no-print-directory -C $(BUILD_DIR)
	@hack/clib-stamp.sh $(BUILD_DIR)/libembedshim.a go/exitmon/zz_clib_stamp.go

include mk/containerd.mk
include mk/bench.mk
include mk/cri.mk

build: core containerd-bins test-image

# critest, runc.v2 vs embed: the full comparison (~5 min on an idle 2-core
# machine, plus ~4 min to build critest cold); CRI_TEST=test-cri-smoke for a
# handful of specs.
CRI_TEST ?= test-cri

test: build lint test-c test-go bench-smoke $(CRI_TEST)
	@echo "make test: all passed"

test-c: core
	ctest --test-dir $(BUILD_DIR) --output-on-failure
	$(BUILD_DIR)/bench_core -n 200 -o _output/bench/core-smoke.json >/dev/null

test-go: build
	$(GO) test -tags "$(GO_TAGS)" -count=1 -timeout 25m ./go/... ./tests/...

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
	$(GO) vet -tags "$(GO_TAGS)" ./...
	@if [ -f .clang-format ]; then clang-format --dry-run --Werror $$(git ls-files 'csrc/*.[ch]' 'csrc/**/*.h' 'bpf/*.[ch]' 'tests/c/*.[ch]' 'tests/bench/*.c'); fi

clean:
	rm -rf _output bin
