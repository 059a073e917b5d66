/* SPDX-License-Identifier: Apache-2.0 */
/* Small harness for the C tests: checks, a private pin dir per test, and
 * children that wait for a go signal so they can be registered first. */
#ifndef EMBEDSHIM_TESTUTIL_H
#define EMBEDSHIM_TESTUTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "embedshim/monitor.h"

extern int tu_failures;

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__,          \
				__LINE__, #cond);                              \
			fprintf(stderr, __VA_ARGS__);                          \
			fprintf(stderr, "\n");                                 \
			tu_failures++;                                         \
		}                                                              \
	} while (0)

#define REQUIRE(cond, ...)                                                     \
	do {                                                                   \
		if (!(cond)) {                                                 \
			CHECK(cond, __VA_ARGS__);                              \
			tu_finish();                                           \
		}                                                              \
	} while (0)

struct tu_child {
	pid_t pid;
	int go_fd; /* write end: a byte (or close) releases the child */
};

/* Create a temp pin dir (removed with its bpffs mount by tu_finish). */
const char *tu_pin_dir(void);

/* Another temp pin dir, also cleaned up by tu_finish (for tests that need
 * a second set of pins, e.g. with another capacity). */
const char *tu_new_pin_dir(void);

/* Open a monitor on tu_pin_dir() with the given capacity (0: default). */
struct es_monitor *tu_open(uint32_t capacity);

/* Open a monitor on dir (a tu_pin_dir() or tu_new_pin_dir()). */
struct es_monitor *tu_open_at(const char *dir, uint32_t capacity);

/* Close a monitor opened by tu_open*() before tu_finish (pins stay). */
void tu_close(struct es_monitor *m);

/* Fork a child that blocks until released, then runs fn(arg) and exits
 * with its return value. */
struct tu_child tu_spawn(int (*fn)(void *), void *arg);
void tu_release(struct tu_child *c);

/* Collect up to n exits within timeout_ms; returns how many. */
int tu_collect(struct es_monitor *m, struct es_exit_event *evs, int n,
	       int timeout_ms);

/* waitpid() the child and return its raw status (the oracle). */
int tu_reap(pid_t pid);

int tu_count_fds(void);

/* Wait (up to timeout_ms) until /proc/<pid>/stat says zombie; 0 if it is. */
int tu_wait_zombie(pid_t pid, int timeout_ms);

/* The id of the BPF link pinned at <vdir>/link (0: none). */
uint32_t tu_link_id(const char *vdir);

/* Wait (up to 5 s) until the link with that id is freed, which happens
 * asynchronously once its last reference is gone; true if it was. */
bool tu_link_gone(uint32_t id);

/* The same for a program, which goes after the link that held it. */
bool tu_prog_gone(uint32_t id);

/* The id of the program of the link with that id (0: none). */
uint32_t tu_link_prog(uint32_t link_id);

/* Print the result, destroy pins, and exit 0/1. */
void tu_finish(void) __attribute__((noreturn));

/* A prerequisite is missing: clean up and exit 77 (ctest: skipped), or
 * fail when skips are not allowed (EMBEDSHIM_REQUIRE_ALL=1 or CI=true, as
 * under make test). */
void tu_skip(const char *why) __attribute__((noreturn));

#endif
