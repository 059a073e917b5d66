// SPDX-License-Identifier: Apache-2.0
/*
 * A simulated restart: the monitor is closed while the pins stay, processes
 * exit (normally or by signal) while no monitor is open, and a new monitor
 * on the same pins finds their records with es_monitor_lookup() and re-polls
 * the ones still running, each of which is then delivered exactly once.
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define N 20
#define NKILL 3

static int exit_code(void *arg)
{
	return (int)(long)arg;
}

static int sleep_forever(void *arg)
{
	for (;;)
		pause();
	return 99;
}

int main(void)
{
	struct tu_child c[N], k[NKILL];
	uint64_t id[N], kid[NKILL];
	int st[N], kst[NKILL];
	struct es_exit_event ev[N], e;
	struct es_monitor *m1, *m2;
	char err[256] = "";
	int i, j, rc, got, fds0;

	fds0 = tu_count_fds();
	m1 = tu_open(0);
	for (i = 0; i < N; i++) {
		c[i] = tu_spawn(exit_code, (void *)(long)(i < 10 ? 10 + i : i));
		rc = es_monitor_register(m1, c[i].pid, 0, &id[i], err,
					 sizeof(err));
		REQUIRE(rc == 0, "register %d: %s", i, err);
	}
	for (i = 0; i < NKILL; i++) {
		k[i] = tu_spawn(sleep_forever, NULL);
		rc = es_monitor_register(m1, k[i].pid, 0, &kid[i], err,
					 sizeof(err));
		REQUIRE(rc == 0, "register killed %d: %s", i, err);
		tu_release(&k[i]); /* now pausing */
	}
	tu_close(m1);
	CHECK(tu_count_fds() == fds0 + N, "fds after close: %d, want %d",
	      tu_count_fds(), fds0 + N); /* only the go pipes remain */

	/* While no monitor is open: 10 exit with 10..19, some are killed. */
	for (i = 0; i < 10; i++)
		tu_release(&c[i]);
	for (i = 0; i < NKILL; i++)
		kill(k[i].pid, SIGKILL);
	for (i = 0; i < 10; i++)
		REQUIRE(tu_wait_zombie(c[i].pid, 5000) == 0,
			"child %d not a zombie", i);
	for (i = 0; i < NKILL; i++)
		REQUIRE(tu_wait_zombie(k[i].pid, 5000) == 0,
			"killed child %d not a zombie", i);

	m2 = tu_open(0);
	CHECK(es_monitor_list(m2, NULL, 0) == N + NKILL, "registrations: %d",
	      es_monitor_list(m2, NULL, 0));
	CHECK(es_monitor_count_exits(m2) == 10 + NKILL, "exit records: %d",
	      es_monitor_count_exits(m2));
	for (i = 0; i < 10; i++) {
		memset(&e, 0, sizeof(e));
		rc = es_monitor_lookup(m2, c[i].pid, id[i], &e, err,
				       sizeof(err));
		st[i] = tu_reap(c[i].pid);
		CHECK(st[i] == (10 + i) << 8, "child %d: waitpid %#x", i,
		      st[i]);
		CHECK(rc == 1 && e.pid == (uint32_t)c[i].pid &&
			      e.ident == id[i] && e.err == 0 &&
			      e.status == (uint32_t)st[i] && e.exit_ns > 0,
		      "lookup exited %d: rc %d status %#x err %d (%s), "
		      "waitpid %#x",
		      i, rc, e.status, e.err, err, st[i]);
	}
	for (i = 0; i < NKILL; i++) {
		memset(&e, 0, sizeof(e));
		rc = es_monitor_lookup(m2, k[i].pid, kid[i], &e, err,
				       sizeof(err));
		kst[i] = tu_reap(k[i].pid);
		CHECK(kst[i] == SIGKILL, "killed %d: waitpid %#x", i, kst[i]);
		CHECK(rc == 1 && e.ident == kid[i] && e.err == 0 &&
			      e.status == (uint32_t)kst[i],
		      "lookup killed %d: rc %d status %#x (%s), waitpid %#x", i,
		      rc, e.status, err, kst[i]);
	}
	/* The running ones are re-polled; asking twice must not poll twice. */
	for (j = 0; j < 2; j++)
		for (i = 10; i < N; i++) {
			rc = es_monitor_lookup(m2, c[i].pid, id[i], &e, err,
					       sizeof(err));
			CHECK(rc == 0, "lookup running %d (pass %d): rc %d %s",
			      i, j, rc, err);
		}
	/* Exited ones were not re-polled by lookup: nothing pending. */
	CHECK(es_monitor_wait(m2, ev, N, 100) == 0, "unexpected delivery");

	for (i = 10; i < N; i++)
		tu_release(&c[i]);
	got = tu_collect(m2, ev, 10, 5000);
	CHECK(got == 10, "delivered %d of 10", got);
	rc = es_monitor_wait(m2, ev + got, N - got, 200);
	CHECK(rc == 0, "%d extra deliveries (double tracking)", rc);
	for (i = 10; i < N; i++) {
		int n = 0, at = -1;

		st[i] = tu_reap(c[i].pid);
		CHECK(st[i] == i << 8, "child %d: waitpid %#x", i, st[i]);
		for (j = 0; j < got + (rc > 0 ? rc : 0); j++)
			if (ev[j].pid == (uint32_t)c[i].pid) {
				n++;
				at = j;
			}
		CHECK(n == 1, "child %d delivered %d times", i, n);
		if (at >= 0)
			CHECK(ev[at].ident == id[i] && ev[at].err == 0 &&
				      ev[at].status == (uint32_t)st[i],
			      "child %d: status %#x err %d, waitpid %#x", i,
			      ev[at].status, ev[at].err, st[i]);
	}

	/* A lookup after the delivery still reads the record, without
	 * polling (or delivering) again. */
	rc = es_monitor_lookup(m2, c[N - 1].pid, id[N - 1], &e, err,
			       sizeof(err));
	CHECK(rc == 1 && e.status == (uint32_t)st[N - 1],
	      "lookup after delivery: rc %d status %#x", rc, e.status);
	CHECK(es_monitor_wait(m2, ev, N, 50) == 0, "delivered again");

	for (i = 0; i < N; i++)
		CHECK(es_monitor_forget(m2, c[i].pid, id[i]) == 0, "forget %d",
		      i);
	for (i = 0; i < NKILL; i++)
		CHECK(es_monitor_forget(m2, k[i].pid, kid[i]) == 0,
		      "forget killed %d", i);
	CHECK(es_monitor_list(m2, NULL, 0) == 0, "registrations left");
	CHECK(es_monitor_count_exits(m2) == 0, "exit records left");
	tu_close(m2);
	CHECK(tu_count_fds() == fds0, "fds: %d, before: %d", tu_count_fds(),
	      fds0);
	printf("restart: 10 exited, %d killed, 10 re-polled: ok\n", NKILL);
	tu_finish();
}
