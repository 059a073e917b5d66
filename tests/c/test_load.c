// SPDX-License-Identifier: Apache-2.0
/*
 * Many processes at once: 1000 registered children released together are
 * each delivered exactly once with the status waitpid() gives, and
 * forgetting them leaves no registrations, records or fds behind.
 */
#include <sys/resource.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define N 1000

static int exit_code(void *arg)
{
	return (int)(long)arg;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int by_pid(const void *a, const void *b)
{
	const struct es_exit_event *x = a, *y = b;

	return x->pid < y->pid ? -1 : x->pid > y->pid;
}

int main(void)
{
	static struct tu_child c[N];
	static struct es_exit_event evs[N + 64];
	static uint64_t ident[N];
	static int times[N];
	struct es_exit_event key, *e;
	struct rlimit rl;
	struct es_monitor *m;
	char err[256] = "";
	int i, rc, got, st, extra, fds0, fds1, wrong = 0;
	double t0, t1, t2;

	/* One pidfd and one go pipe per child. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	REQUIRE(getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 2 * N + 64,
		"RLIMIT_NOFILE %llu too low for %d children",
		(unsigned long long)rl.rlim_cur, N);

	t0 = now_s();
	fds0 = tu_count_fds();
	m = tu_open(0);
	fds1 = tu_count_fds();
	for (i = 0; i < N; i++) {
		c[i] = tu_spawn(exit_code, (void *)(long)(i % 256));
		REQUIRE(c[i].pid > 0, "spawn %d", i);
		rc = es_monitor_register(m, c[i].pid, 0, &ident[i], err,
					 sizeof(err));
		REQUIRE(rc == 0, "register %d: %s", i, err);
	}
	CHECK(es_monitor_list(m, NULL, 0) == N, "registrations: %d",
	      es_monitor_list(m, NULL, 0));

	t1 = now_s();
	for (i = 0; i < N; i++)
		tu_release(&c[i]);
	got = tu_collect(m, evs, N, 10000);
	t2 = now_s();
	CHECK(got == N, "delivered %d of %d", got, N);
	extra = es_monitor_wait(m, evs + got, 64, 200);
	CHECK(extra == 0, "%d extra deliveries", extra);
	if (extra > 0)
		got += extra;

	qsort(evs, got, sizeof(evs[0]), by_pid);
	for (i = 0; i < N; i++) {
		st = tu_reap(c[i].pid);
		CHECK(st == (i % 256) << 8, "child %d: waitpid %#x", i, st);
		key.pid = c[i].pid;
		e = bsearch(&key, evs, got, sizeof(evs[0]), by_pid);
		if (!e) {
			wrong++;
			CHECK(0, "child %d (pid %d) not delivered", i,
			      c[i].pid);
			continue;
		}
		/* Count all deliveries for this pid (neighbours in order). */
		while (e > evs && e[-1].pid == key.pid)
			e--;
		for (times[i] = 0;
		     e + times[i] < evs + got && e[times[i]].pid == key.pid;
		     times[i]++)
			;
		if (times[i] != 1 || e->ident != ident[i] || e->err ||
		    e->status != (uint32_t)st) {
			wrong++;
			CHECK(0,
			      "child %d: delivered %d times, status %#x err "
			      "%d, waitpid %#x",
			      i, times[i], e->status, e->err, st);
		}
	}
	CHECK(es_monitor_count_exits(m) == N, "exit records: %d",
	      es_monitor_count_exits(m));

	for (i = 0; i < N; i++)
		CHECK(es_monitor_forget(m, c[i].pid, ident[i]) == 0,
		      "forget %d", i);
	CHECK(es_monitor_list(m, NULL, 0) == 0, "registrations left: %d",
	      es_monitor_list(m, NULL, 0));
	CHECK(es_monitor_count_exits(m) == 0, "exit records left: %d",
	      es_monitor_count_exits(m));
	CHECK(tu_count_fds() == fds1, "fds: %d, before: %d", tu_count_fds(),
	      fds1);
	tu_close(m);
	CHECK(tu_count_fds() == fds0, "fds after close: %d, before open: %d",
	      tu_count_fds(), fds0);
	printf("%d processes: %d delivered, %d wrong; spawn+register %.2fs, "
	       "release+deliver %.2fs, check+forget %.2fs\n",
	       N, got, wrong, t1 - t0, t2 - t1, now_s() - t2);
	tu_finish();
}
