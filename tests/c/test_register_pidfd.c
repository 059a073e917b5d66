// SPDX-License-Identifier: Apache-2.0
/*
 * es_monitor_register_pidfd: registering the process behind the caller's
 * pidfd returns the identity es_process_ident gives, delivers the exit
 * once, and on every error path leaves no fd (the process's fd count is
 * compared before and after) and no registration behind.
 */
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testutil.h"

static int exit_code(void *arg)
{
	return (int)(long)arg;
}

static int pidfd_open(pid_t pid)
{
	return syscall(SYS_pidfd_open, pid, 0);
}

#define CHECK_FAILS(m, fd, pid, want_rc, want_msg)                             \
	do {                                                                   \
		char err_[256] = "";                                           \
		uint64_t id_ = 0;                                              \
		int before_ = tu_count_fds(), rc_;                             \
		rc_ = es_monitor_register_pidfd(m, fd, pid, &id_, err_,        \
						sizeof(err_));                 \
		CHECK(rc_ == (want_rc) && strstr(err_, want_msg),              \
		      "rc %d (want %d), message \"%s\" (want \"%s\")", rc_,    \
		      want_rc, err_, want_msg);                                \
		CHECK(tu_count_fds() == before_, "fds %d -> %d", before_,      \
		      tu_count_fds());                                         \
		CHECK(es_monitor_list(m, NULL, 0) == 0,                        \
		      "registration left behind");                             \
	} while (0)

static void test_ok(struct es_monitor *m)
{
	struct tu_child c = tu_spawn(exit_code, (void *)9);
	struct es_exit_event ev;
	uint64_t ident = 0, real = 0;
	char err[256] = "";
	int fd, before, rc;

	REQUIRE(es_process_ident(c.pid, &real, err, sizeof(err)) == 0, "%s",
		err);
	fd = pidfd_open(c.pid);
	REQUIRE(fd >= 0, "pidfd_open: %s", strerror(errno));
	before = tu_count_fds();
	rc = es_monitor_register_pidfd(m, fd, c.pid, &ident, err, sizeof(err));
	CHECK(rc == 0 && ident == real, "rc %d %s, ident %llu want %llu", rc,
	      err, (unsigned long long)ident, (unsigned long long)real);
	/* The monitor holds its own reference; ours is still ours. */
	CHECK(tu_count_fds() == before + 1, "fds %d -> %d", before,
	      tu_count_fds());
	CHECK(fcntl(fd, F_GETFD) >= 0, "the caller's pidfd was closed");
	close(fd);

	tu_release(&c); /* closes the child's go pipe */
	before = tu_count_fds();
	CHECK(tu_collect(m, &ev, 1, 5000) == 1, "no exit delivered");
	CHECK(ev.pid == (uint32_t)c.pid && ev.ident == real && ev.err == 0 &&
		      ev.status == 9 << 8,
	      "event pid %u err %d status %#x", ev.pid, ev.err, ev.status);
	CHECK(es_monitor_wait(m, &ev, 1, 100) == 0, "second delivery");
	CHECK(tu_count_fds() == before - 1, "monitor's pidfd not closed: %d",
	      tu_count_fds());
	CHECK(tu_reap(c.pid) == 9 << 8, "child status");
	CHECK(es_monitor_forget(m, c.pid, real) == 0, "forget");
	printf("register pidfd: ok\n");
}

static void test_errors(struct es_monitor *m)
{
	struct tu_child a = tu_spawn(exit_code, (void *)1);
	struct tu_child b = tu_spawn(exit_code, (void *)2);
	char err[256] = "";
	uint64_t ident;
	int fa, fb, p[2];

	fa = pidfd_open(a.pid);
	fb = pidfd_open(b.pid);
	REQUIRE(fa >= 0 && fb >= 0 && pipe(p) == 0, "pidfd_open / pipe");

	CHECK_FAILS(m, p[0], a.pid, -EBADF, "is not a pidfd");
	CHECK_FAILS(m, fa, b.pid, -EINVAL, "refers to process");

	/* Registered already (through its pid): the second fails. */
	REQUIRE(es_monitor_register(m, a.pid, 0, &ident, err, sizeof(err)) == 0,
		"%s", err);
	{
		int before = tu_count_fds(), rc;

		err[0] = '\0';
		rc = es_monitor_register_pidfd(m, fa, a.pid, &ident, err,
					       sizeof(err));
		CHECK(rc == -EEXIST && strstr(err, "already registered"),
		      "double: rc %d %s", rc, err);
		CHECK(tu_count_fds() == before, "fds %d -> %d", before,
		      tu_count_fds());
	}
	CHECK(es_monitor_forget(m, a.pid, ident) == 0, "forget");

	/* A zombie: exited before it was registered. */
	tu_release(&b);
	REQUIRE(tu_wait_zombie(b.pid, 5000) == 0, "not a zombie");
	CHECK_FAILS(m, fb, b.pid, -ESRCH, "exited before it was registered");
	/* Reaped: the pidfd refers to no process any more. */
	CHECK(tu_reap(b.pid) == 2 << 8, "status of b");
	CHECK_FAILS(m, fb, b.pid, -ESRCH, "already exited");

	tu_release(&a);
	CHECK(tu_reap(a.pid) == 1 << 8, "status of a");
	close(fa);
	close(fb);
	close(p[0]);
	close(p[1]);
	printf("register pidfd errors, no fd left: ok\n");
}

static void test_capacity(void)
{
	struct es_monitor *m = tu_open_at(tu_new_pin_dir(), 1);
	struct tu_child a = tu_spawn(exit_code, (void *)1);
	struct tu_child b = tu_spawn(exit_code, (void *)2);
	char err[256] = "";
	uint64_t ia;
	int fb;

	REQUIRE(es_monitor_register(m, a.pid, 0, &ia, err, sizeof(err)) == 0,
		"%s", err);
	fb = pidfd_open(b.pid);
	REQUIRE(fb >= 0, "pidfd_open");
	{
		int before = tu_count_fds(), rc;
		uint64_t id;

		rc = es_monitor_register_pidfd(m, fb, b.pid, &id, err,
					       sizeof(err));
		CHECK(rc == -ENOSPC && strstr(err, "capacity 1 reached"),
		      "rc %d %s", rc, err);
		CHECK(tu_count_fds() == before, "fds %d -> %d", before,
		      tu_count_fds());
		CHECK(es_monitor_list(m, NULL, 0) == 1, "registrations %d",
		      es_monitor_list(m, NULL, 0));
	}
	CHECK(es_monitor_forget(m, a.pid, ia) == 0, "forget");
	tu_release(&a);
	tu_release(&b);
	tu_reap(a.pid);
	tu_reap(b.pid);
	close(fb);
	printf("register pidfd at capacity, no fd left: ok\n");
}

int main(void)
{
	struct es_monitor *m = tu_open(0);

	test_ok(m);
	test_errors(m);
	test_capacity();
	CHECK(es_monitor_list(m, NULL, 0) == 0, "registrations left");
	CHECK(es_monitor_count_exits(m) == 0, "exit records left");
	tu_finish();
}
