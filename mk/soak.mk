# mk/soak.mk — the soak (issue 10): sustained lifecycles and execs on the
# embed runtime with long-running containers in the background; the daemon's
# RSS, live heap, goroutines, fds, mounts and BPF map entries/memory sampled
# with the load paused; their growth per 10 000 lifecycles must be ~0.
#
# Included from the top-level Makefile (`include mk/soak.mk`, after
# mk/containerd.mk). Variables are prefixed SOAK_; the knobs below can be
# given by their short names on the command line:
#
#   make soak DURATION=1h BACKGROUND=1000 RATE=3 SAMPLE=1m DAEMON=bin/embedshim-containerd
#
# Targets:
#   soak        DURATION (1h) of load at RATE lifecycles/s (3) and EXEC_RATE
#               execs/s (= RATE) with BACKGROUND (1000) sleeping containers,
#               a sample every SAMPLE (1m); table on stdout,
#               _output/soak/summary.json and _output/soak/samples.csv.
#               Wall time: DURATION plus starting and removing the
#               background (~3-6 min for 1000 on 2 loaded cores).
#   soak-smoke  70 s, 20 background, a sample every 10 s (~2 min wall on 2
#               loaded cores); writes _output/soak/smoke/.
#
# More knobs (environment, see tests/soak/README.md): EMBEDSHIM_SOAK_WARMUP,
# _INFLIGHT, _POOL, _OUT.

SOAK_GO         ?= $(if $(GO),$(GO),go)
SOAK_TAGS       ?= $(GO_TAGS)
SOAK_DAEMON     ?= $(or $(DAEMON),bin/embedshim-containerd)
SOAK_DURATION   ?= $(or $(DURATION),1h)
SOAK_BACKGROUND ?= $(or $(BACKGROUND),1000)
SOAK_RATE       ?= $(or $(RATE),3)
SOAK_EXEC_RATE  ?= $(or $(EXEC_RATE),$(SOAK_RATE))
SOAK_SAMPLE     ?= $(or $(SAMPLE),1m)

# The test bounds itself (DURATION + 4 s per background container + 30 min,
# then it fails and cleans up): no go test timeout, whose panic would skip
# the clean-up of a thousand containers.
# $(call soak_run,ENV=...): the test with that environment.
soak_run = cd tests && $(1) EMBEDSHIM_CONTAINERD=$(abspath $(SOAK_DAEMON)) $(SOAK_GO) test \
	$(if $(SOAK_TAGS),-tags "$(SOAK_TAGS)") -count=1 -timeout 0 -run '^TestSoak$$' -v ./soak/

.PHONY: soak soak-smoke

soak: containerd-bins test-image
	$(call soak_run,EMBEDSHIM_SOAK=full EMBEDSHIM_SOAK_DURATION=$(SOAK_DURATION) \
		EMBEDSHIM_SOAK_BACKGROUND=$(SOAK_BACKGROUND) EMBEDSHIM_SOAK_RATE=$(SOAK_RATE) \
		EMBEDSHIM_SOAK_EXEC_RATE=$(SOAK_EXEC_RATE) EMBEDSHIM_SOAK_SAMPLE=$(SOAK_SAMPLE))

soak-smoke: containerd-bins test-image
	$(call soak_run,EMBEDSHIM_SOAK=smoke)
