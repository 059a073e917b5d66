// SPDX-License-Identifier: Apache-2.0
/*
 * es_monitor_find_recent(): the exit of a process that was reaped before it
 * could be registered is found by its pid, with its true status and
 * identity, once, and only if it exited at or after the given time.
 */
#include <signal.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

static int exit_code(void *arg)
{
	return (int)(long)arg;
}

static int wait_for_kill(void *arg)
{
	(void)arg;
	pause();
	return 99;
}

/* Spawn, note its identity, let it run to its end (fn) and reap it. */
static pid_t run_reaped(int (*fn)(void *), void *arg, int sig, uint64_t *ident,
			int *status)
{
	struct tu_child c = tu_spawn(fn, arg);
	char err[256] = "";

	REQUIRE(es_process_ident(c.pid, ident, err, sizeof(err)) == 0,
		"ident of %d: %s", c.pid, err);
	tu_release(&c);
	if (sig)
		kill(c.pid, sig);
	*status = tu_reap(c.pid);
	return c.pid;
}

static void test_found_once(struct es_monitor *m)
{
	uint64_t since = es_mono_ns(), ident;
	struct es_exit_event ev;
	int status, rc;
	pid_t pid;

	pid = run_reaped(exit_code, (void *)9, 0, &ident, &status);
	CHECK(status == 9 << 8, "oracle status %#x", status);
	rc = es_monitor_find_recent(m, pid, since, &ev);
	REQUIRE(rc == 1, "exit of reaped %d not found: %d", pid, rc);
	CHECK(ev.pid == (uint32_t)pid && ev.ident == ident,
	      "key %u/%llu, want %d/%llu", ev.pid, (unsigned long long)ev.ident,
	      pid, (unsigned long long)ident);
	CHECK(ev.status == (uint32_t)status, "status %#x, want %#x", ev.status,
	      status);
	CHECK(ev.exit_ns >= since && ev.exit_ns <= es_mono_ns(),
	      "exit time out of range");
	CHECK(ev.err == 0, "err %d", ev.err);
	/* Taken: a second lookup finds nothing. */
	CHECK(es_monitor_find_recent(m, pid, since, &ev) == 0, "found twice");
	/* Nothing was registered or recorded on the way. */
	CHECK(es_monitor_list(m, NULL, 0) == 0, "registration left");
	CHECK(es_monitor_count_exits(m) == 0, "exit record left");
	printf("found once: ok\n");
}

static void test_killed(struct es_monitor *m)
{
	uint64_t since = es_mono_ns(), ident;
	struct es_exit_event ev;
	int status;
	pid_t pid;

	pid = run_reaped(wait_for_kill, NULL, SIGKILL, &ident, &status);
	CHECK(status == SIGKILL, "oracle status %#x", status);
	REQUIRE(es_monitor_find_recent(m, pid, since, &ev) == 1,
		"killed %d not found", pid);
	CHECK(ev.status == (uint32_t)status && ev.ident == ident,
	      "status %#x ident %llu", ev.status, (unsigned long long)ev.ident);
	printf("killed: ok\n");
}

static void test_older_exit_ignored(struct es_monitor *m)
{
	struct es_exit_event ev;
	uint64_t ident;
	int status;
	pid_t pid;

	pid = run_reaped(exit_code, (void *)3, 0, &ident, &status);
	/* The process exited before since: it cannot be the one asked for. */
	CHECK(es_monitor_find_recent(m, pid, es_mono_ns(), &ev) == 0,
	      "exit before since was taken");
	CHECK(es_monitor_find_recent(m, 0, 0, &ev) == -EINVAL, "pid 0");
	CHECK(es_monitor_find_recent(m, -1, 0, &ev) == -EINVAL, "pid -1");
	printf("older exit ignored, bad pid refused: ok\n");
}

int main(void)
{
	struct es_monitor *m = tu_open(0);

	test_found_once(m);
	test_killed(m);
	test_older_exit_ignored(m);
	tu_finish();
}
