// SPDX-License-Identifier: Apache-2.0
/*
 * A pid namespace's init is only a zombie (and its pidfd readable) once
 * every other process of the namespace has been reaped. A container's exec
 * process has its parent outside the namespace (the host's init, which may
 * reap late), so the container's exit must come from the BPF record at the
 * exit itself, not from the pidfd.
 */
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The holder makes a pid namespace with an init and a second process whose
 * parent is the holder (outside), like an exec'd process; it reaps nothing
 * until told. */
static void holder(int pids_fd, int go_fd)
{
	pid_t init, other;
	char b;

	if (unshare(CLONE_NEWPID) < 0)
		_exit(2);
	init = fork();
	if (init == 0) {
		pause();
		_exit(0);
	}
	other = fork();
	if (other == 0) {
		pause();
		_exit(0);
	}
	if (write(pids_fd, &init, sizeof(init)) < 0 ||
	    write(pids_fd, &other, sizeof(other)) < 0)
		_exit(3);
	if (read(go_fd, &b, 1) < 0)
		_exit(4);
	while (wait(NULL) > 0)
		;
	_exit(0);
}

int main(void)
{
	struct es_monitor *m = tu_open(0);
	struct es_exit_event ev;
	int pids[2], go[2], rc;
	pid_t h, init, other;
	uint64_t ident;
	char err[256];
	double t0;

	REQUIRE(pipe(pids) == 0 && pipe(go) == 0, "pipe");
	h = fork();
	if (h == 0) {
		close(pids[0]);
		close(go[1]);
		holder(pids[1], go[0]);
	}
	close(pids[1]);
	close(go[0]);
	REQUIRE(read(pids[0], &init, sizeof(init)) == sizeof(init) &&
			read(pids[0], &other, sizeof(other)) == sizeof(other),
		"holder did not set up the namespace");

	rc = es_monitor_register(m, init, 0, &ident, err, sizeof(err));
	REQUIRE(rc == 0, "register namespace init %d: %s", init, err);
	kill(init, SIGKILL);
	t0 = now_s();
	/* The other process is killed with the namespace but stays an
	 * unreaped zombie: the init cannot become a zombie before it goes. */
	rc = tu_collect(m, &ev, 1, 2000);
	CHECK(rc == 1, "namespace init's exit not delivered while another "
		       "process of its namespace is unreaped");
	if (rc == 1) {
		CHECK(ev.pid == (uint32_t)init && ev.err == 0 &&
			      WIFSIGNALED(ev.status) &&
			      WTERMSIG(ev.status) == SIGKILL,
		      "pid %u err %d status %#x", ev.pid, ev.err, ev.status);
		printf("namespace init exit delivered in %.1f ms, before the "
		       "reap\n",
		       (now_s() - t0) * 1e3);
	}
	CHECK(es_monitor_forget(m, init, ident) == 0, "forget");
	/* The pidfd fired meanwhile or fires later: nothing more comes. */
	if (write(go[1], "g", 1) < 0)
		perror("release holder");
	tu_reap(h);
	CHECK(es_monitor_wait(m, &ev, 1, 100) == 0, "a second exit came");
	tu_finish();
}
