# mk/bench.mk — the runtime benchmark (issue #4): embed vs runc.v2 in one daemon.
#
# Included from the top-level Makefile (`include mk/bench.mk`, after
# mk/containerd.mk). Variables are prefixed BENCH_.
#
# Targets:
#   bench        full run: core table (bench-core → _output/bench/core.json),
#                then tests/bench/runtime with EMBEDSHIM_BENCH=full:
#                table on stdout, _output/bench/runtime.json,
#                _output/bench/exit_latency.svg (~20-30 min on 2 CPUs)
#   bench-smoke  N=3, K=3, 2 s throughput (< 1 min): for `make test`;
#                writes runtime-smoke.json / exit_latency-smoke.svg
#
# Knobs (environment, see tests/bench/runtime/README.md): EMBEDSHIM_BENCH_N,
# _EXITS, _K, _RUNC_MAX_K, _WORKERS, _DURATION, _SCENARIOS, _RUNTIMES, ...

BENCH_GO      ?= $(if $(GO),$(GO),go)
BENCH_TAGS    ?= $(GO_TAGS)
BENCH_PKG     := ./bench/runtime
# The daemon measured (embed vs runc.v2 in it).
BENCH_DAEMON  ?= bin/embedshim-containerd
BENCH_TIMEOUT ?= 60m

.PHONY: bench bench-smoke

bench: containerd-bins test-image bench-core
	cd tests && EMBEDSHIM_CONTAINERD=$(CURDIR)/$(BENCH_DAEMON) EMBEDSHIM_BENCH=full $(BENCH_GO) test $(if $(BENCH_TAGS),-tags "$(BENCH_TAGS)") -count=1 \
		-timeout $(BENCH_TIMEOUT) -run TestRuntimeBench -v $(BENCH_PKG)

bench-smoke: containerd-bins test-image
	cd tests && EMBEDSHIM_CONTAINERD=$(CURDIR)/$(BENCH_DAEMON) EMBEDSHIM_BENCH=smoke $(BENCH_GO) test $(if $(BENCH_TAGS),-tags "$(BENCH_TAGS)") -count=1 \
		-timeout 5m -run TestRuntimeBench -v $(BENCH_PKG)
