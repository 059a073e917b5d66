# mk/chaos.mk — the reliability campaign (issue 10): tests/chaos.
#
# Included from the top-level Makefile (after mk/containerd.mk). W workers
# run random operations on embed and runc.v2 containers in one daemon (some
# processes with stdout read, some with stdin fed and closed) while faults
# are injected (daemon SIGKILL/SIGTERM + restart, also with a shrunk
# capacity, container process and runc killed from outside, a runc call
# failing, a bundle file removed, the state dir's tmpfs full for 1-4 s); at
# the end every exit is checked against the status it must have, stdout/stdin
# against what was sent, and the daemon against leaks (goroutines included).
#
# Targets:
#   test-chaos        DURATION (default 2m) per daemon build, random seed
#                     unless SEED is given; every build in TEST_DAEMONS
#                     unless DAEMON is given (e.g. DAEMON=bin/embedshim-containerd-1.7).
#                     Writes _output/chaos/summary-<build>.json per build and
#                     _output/chaos/summary.json (the last build run).
#   test-chaos-smoke  45 s per build, fixed seed, a fault every 1-4 s
#                     (~1.5-2.5 min per build with set-up and the final checks).
#
# Other knobs (environment): WORKERS (8), CHAOS_FAULTS (comma list:
# daemon-sigkill, daemon-sigterm, kill-proc, kill-runc, runc-fail,
# rm-bundle-file, capacity-shrink: a restart with embed's capacity just above
# what it tracks, restored at the next one; state-full), CHAOS_FAULT_MIN/_MAX,
# CHAOS_CAPACITY (embed's tracking capacity, e.g. 12, so that creates hit it).

CHAOS_GO      ?= $(if $(GO),$(GO),go)
CHAOS_TAGS    ?= $(GO_TAGS)
DURATION      ?= 2m
SEED          ?=
DAEMON        ?=
WORKERS       ?= 8
CHAOS_DAEMONS  = $(if $(DAEMON),$(DAEMON),$(TEST_DAEMONS))

# $(1): duration, $(2): seed, $(3): extra environment.
define chaos_run
	@mkdir -p _output/chaos
	@rc=0; for d in $(CHAOS_DAEMONS); do \
		case $$d in /*) p=$$d ;; *) p=$(CURDIR)/$$d ;; esac; \
		echo "== chaos against $$d ($(1))"; \
		(cd tests && EMBEDSHIM_REQUIRE_ALL=1 EMBEDSHIM_CONTAINERD=$$p \
			CHAOS_DURATION=$(1) CHAOS_SEED=$(2) CHAOS_WORKERS=$(WORKERS) $(3) \
			CHAOS_SUMMARY=$(CURDIR)/_output/chaos/summary.json \
			$(CHAOS_GO) test $(if $(CHAOS_TAGS),-tags "$(CHAOS_TAGS)") -count=1 -timeout 3h \
			-run TestChaos -v ./chaos/) || rc=1; \
	done; exit $$rc

endef

.PHONY: test-chaos test-chaos-smoke

test-chaos: containerd-bins test-image
	$(call chaos_run,$(DURATION),$(SEED),)

test-chaos-smoke: containerd-bins test-image
	$(call chaos_run,45s,$(or $(SEED),10),CHAOS_FAULT_MIN=1s CHAOS_FAULT_MAX=4s)
