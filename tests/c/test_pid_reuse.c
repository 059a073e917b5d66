// SPDX-License-Identifier: Apache-2.0
/*
 * Records belong to a process, not to a pid: when a registered process's pid
 * is reused, the new process's exit is never attributed to the old one (nor
 * the other way round). Reuse is forced with /proc/sys/kernel/ns_last_pid,
 * which needs root in the initial pid namespace.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

#define SPAWN_TRIES 100

static int exit_code(void *arg)
{
	return (int)(long)arg;
}

static int set_last_pid(pid_t p)
{
	char buf[32];
	int fd, n, rc = 0;

	fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = snprintf(buf, sizeof(buf), "%d", p);
	if (write(fd, buf, n) != n)
		rc = -errno;
	close(fd);
	return rc;
}

/* With start-tick identities, how long a reuse waits: two processes that
 * share a pid and start in the same clock tick (10 ms at USER_HZ 100) have
 * the same identity. Real pid reuse needs a wrap of pid_max in between, so
 * only a forced reuse can be that fast. */
static useconds_t reuse_gap_us;

/* A tu_spawn() child that got pid want, or one with pid -1 if another fork
 * on the host kept taking it. */
static struct tu_child spawn_at(pid_t want, int (*fn)(void *), void *arg)
{
	struct tu_child c = {.pid = -1, .go_fd = -1};
	int i;

	if (reuse_gap_us)
		usleep(reuse_gap_us);

	for (i = 0; i < SPAWN_TRIES; i++) {
		if (set_last_pid(want - 1) < 0) {
			perror("ns_last_pid");
			break;
		}
		c = tu_spawn(fn, arg);
		if (c.pid == want)
			return c;
		if (c.pid > 0) {
			kill(c.pid, SIGKILL);
			close(c.go_fd);
			tu_reap(c.pid);
		}
		if (i > SPAWN_TRIES / 2)
			usleep(1000); /* let whoever holds the pid exit */
	}
	return (struct tu_child){.pid = -1, .go_fd = -1};
}

/* A exits and is reaped; B gets its pid and exits unregistered; then B'
 * gets the pid again and is registered. */
static void test_reuse(struct es_monitor *m)
{
	struct tu_child a, b, b2;
	struct es_exit_event ev[4];
	uint64_t id_a = 0, id_b = 0, id_b2 = 0, id;
	char err[256] = "";
	int rc, st;

	a = tu_spawn(exit_code, (void *)11);
	rc = es_monitor_register(m, a.pid, 0, &id_a, err, sizeof(err));
	REQUIRE(rc == 0, "register A: %s", err);
	tu_release(&a);
	st = tu_reap(a.pid);
	CHECK(st == 11 << 8, "A status %#x", st);

	b = spawn_at(a.pid, exit_code, (void *)22);
	if (b.pid < 0) {
		CHECK(es_monitor_forget(m, a.pid, id_a) == 0, "forget A");
		tu_skip("could not force pid reuse (another fork kept taking "
			"the pid)");
	}
	REQUIRE(es_process_ident(b.pid, &id_b, err, sizeof(err)) == 0,
		"ident of B: %s", err);
	CHECK(id_b != id_a, "B has A's identity %llu",
	      (unsigned long long)id_a);
	tu_release(&b);
	st = tu_reap(b.pid);
	CHECK(st == 22 << 8, "B status %#x", st);

	rc = tu_collect(m, ev, 1, 5000);
	CHECK(rc == 1, "A not delivered");
	if (rc == 1)
		CHECK(ev[0].pid == (uint32_t)a.pid && ev[0].ident == id_a &&
			      ev[0].err == 0 && ev[0].status == 11 << 8,
		      "delivered pid %u ident %llu err %d status %#x (want A "
		      "ident %llu status 0xb00)",
		      ev[0].pid, (unsigned long long)ev[0].ident, ev[0].err,
		      ev[0].status, (unsigned long long)id_a);
	CHECK(es_monitor_wait(m, ev, 4, 200) == 0,
	      "a second exit was delivered (pid %u status %#x)", ev[0].pid,
	      ev[0].status);
	CHECK(es_monitor_count_exits(m) == 1, "exit records: %d",
	      es_monitor_count_exits(m));
	CHECK(es_monitor_list(m, NULL, 0) == 1, "registrations: %d",
	      es_monitor_list(m, NULL, 0));
	printf("pid %d reused by an unregistered process: ok\n", a.pid);

	/* B' on the same pid, registered; A's record is still there. */
	b2 = spawn_at(a.pid, exit_code, (void *)33);
	if (b2.pid < 0) {
		CHECK(es_monitor_forget(m, a.pid, id_a) == 0, "forget A");
		tu_skip("could not force pid reuse a second time");
	}
	err[0] = '\0';
	rc = es_monitor_register(m, b2.pid, id_a, &id, err, sizeof(err));
	CHECK(rc == -ESTALE && strstr(err, "not the expected process"),
	      "register reused pid with A's identity: rc %d \"%s\"", rc, err);
	rc = es_monitor_register(m, b2.pid, 0, &id_b2, err, sizeof(err));
	REQUIRE(rc == 0, "register B': %s", err);
	CHECK(id_b2 != id_a && id_b2 != id_b, "B' identity %llu not new",
	      (unsigned long long)id_b2);
	tu_release(&b2);
	rc = tu_collect(m, ev, 1, 5000);
	st = tu_reap(b2.pid);
	CHECK(st == 33 << 8, "B' status %#x", st);
	CHECK(rc == 1, "B' not delivered");
	if (rc == 1)
		CHECK(ev[0].pid == (uint32_t)b2.pid && ev[0].ident == id_b2 &&
			      ev[0].err == 0 && ev[0].status == (uint32_t)st,
		      "delivered pid %u ident %llu err %d status %#x (want B' "
		      "ident %llu status %#x)",
		      ev[0].pid, (unsigned long long)ev[0].ident, ev[0].err,
		      ev[0].status, (unsigned long long)id_b2, st);
	CHECK(es_monitor_wait(m, ev, 4, 200) == 0, "a second exit delivered");

	/* Both records sit side by side under the same pid. */
	memset(ev, 0, sizeof(ev));
	rc = es_monitor_lookup(m, a.pid, id_a, &ev[0], err, sizeof(err));
	CHECK(rc == 1 && ev[0].status == 11 << 8 && ev[0].ident == id_a,
	      "lookup A: rc %d status %#x (%s)", rc, ev[0].status, err);
	rc = es_monitor_lookup(m, a.pid, id_b2, &ev[1], err, sizeof(err));
	CHECK(rc == 1 && ev[1].status == 33 << 8 && ev[1].ident == id_b2,
	      "lookup B': rc %d status %#x (%s)", rc, ev[1].status, err);
	rc = es_monitor_lookup(m, a.pid, id_b, &ev[2], err, sizeof(err));
	CHECK(rc == -ENOENT, "lookup unregistered B: rc %d", rc);
	CHECK(es_monitor_count_exits(m) == 2, "exit records: %d",
	      es_monitor_count_exits(m));
	CHECK(es_monitor_list(m, NULL, 0) == 2, "registrations: %d",
	      es_monitor_list(m, NULL, 0));
	CHECK(es_monitor_forget(m, a.pid, id_a) == 0, "forget A");
	CHECK(es_monitor_forget(m, a.pid, id_b2) == 0, "forget B'");
	CHECK(es_monitor_list(m, NULL, 0) == 0, "registrations left");
	CHECK(es_monitor_count_exits(m) == 0, "exit records left");
	printf("pid %d reused by a registered process: ok\n", a.pid);
}

/* Many rounds of: A registered, exits, reaped; B on A's pid, registered
 * every other round, exits; only then are the exits collected. */
static void test_churn(struct es_monitor *m, int rounds)
{
	struct es_exit_event ev[4];
	int i, j, rc, st, want, forced = 0, wrong = 0;
	char err[256];

	for (i = 0; i < rounds; i++) {
		int code_a = 1 + i % 100, code_b = 101 + i % 100;
		bool reg_b = i % 2 == 0;
		uint64_t id_a = 0, id_b = 0;
		struct tu_child a, b;

		a = tu_spawn(exit_code, (void *)(long)code_a);
		rc = es_monitor_register(m, a.pid, 0, &id_a, err, sizeof(err));
		REQUIRE(rc == 0, "round %d: register A: %s", i, err);
		tu_release(&a);
		CHECK(tu_reap(a.pid) == code_a << 8, "round %d: A status", i);

		want = 1;
		b = spawn_at(a.pid, exit_code, (void *)(long)code_b);
		if (b.pid > 0) {
			forced++;
			if (reg_b) {
				rc = es_monitor_register(m, b.pid, id_a, &id_b,
							 err, sizeof(err));
				CHECK(rc == -ESTALE,
				      "round %d: B registered as A: %d", i, rc);
				rc = es_monitor_register(m, b.pid, 0, &id_b,
							 err, sizeof(err));
				REQUIRE(rc == 0, "round %d: register B: %s", i,
					err);
				want = 2;
			} else {
				REQUIRE(es_process_ident(b.pid, &id_b, err,
							 sizeof(err)) == 0,
					"round %d: ident B: %s", i, err);
			}
			CHECK(id_b != id_a, "round %d: B has A's identity", i);
			tu_release(&b);
			st = tu_reap(b.pid);
			CHECK(st == code_b << 8, "round %d: B status %#x", i,
			      st);
		}

		rc = tu_collect(m, ev, want, 5000);
		CHECK(rc == want, "round %d: %d of %d exits delivered", i, rc,
		      want);
		if (rc == want) {
			rc = es_monitor_wait(m, ev + want, 4 - want, 20);
			CHECK(rc == 0, "round %d: extra exit delivered", i);
			rc = want;
		}
		for (j = 0; j < rc; j++) {
			bool is_a = ev[j].ident == id_a;
			bool is_b = reg_b && b.pid > 0 && ev[j].ident == id_b;
			int code = is_a ? code_a : code_b;

			if ((!is_a && !is_b) || ev[j].pid != (uint32_t)a.pid ||
			    ev[j].err || ev[j].status != (uint32_t)code << 8) {
				wrong++;
				CHECK(0,
				      "round %d: event pid %u ident %llu err "
				      "%d status %#x; A ident %llu code %d, "
				      "B ident %llu code %d",
				      i, ev[j].pid,
				      (unsigned long long)ev[j].ident,
				      ev[j].err, ev[j].status,
				      (unsigned long long)id_a, code_a,
				      (unsigned long long)id_b, code_b);
			}
		}
		CHECK(es_monitor_count_exits(m) == want,
		      "round %d: %d exit records, want %d", i,
		      es_monitor_count_exits(m), want);
		CHECK(es_monitor_forget(m, a.pid, id_a) == 0, "forget A");
		if (want == 2)
			CHECK(es_monitor_forget(m, b.pid, id_b) == 0,
			      "forget B");
		CHECK(es_monitor_list(m, NULL, 0) == 0 &&
			      es_monitor_count_exits(m) == 0,
		      "round %d: records left", i);
	}
	printf("churn: %d rounds, pid reused in %d, %d misattributed\n", rounds,
	       forced, wrong);
	if (!forced)
		tu_skip("churn: could not force pid reuse in any round");
	CHECK(forced >= rounds / 2, "pid reuse forced in only %d of %d rounds",
	      forced, rounds);
}

int main(void)
{
	struct es_monitor *m;

	if (access("/proc/sys/kernel/ns_last_pid", W_OK) != 0)
		tu_skip("/proc/sys/kernel/ns_last_pid not writable");
	m = tu_open(0);
	test_reuse(m);
	test_churn(m, 200);
	tu_close(m);
	/* Start-tick identities (kernels before pidfs, < 6.9): the same
	 * guarantees for reuses at least a tick apart (see reuse_gap_us). */
	es_compat_start_ticks = true;
	reuse_gap_us = 2 * 1000000 / sysconf(_SC_CLK_TCK);
	m = tu_open_at(tu_new_pin_dir(), 0);
	test_reuse(m);
	test_churn(m, 200);
	tu_finish();
}
