// SPDX-License-Identifier: Apache-2.0
/*
 * The monitor reports exactly the wait status the real parent gets from
 * waitpid(): plain exits, signals, and the multi-threaded cases where a
 * thread's exit is not the process's exit.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

static int exit_code(void *arg)
{
	return (int)(long)arg;
}

static int self_signal(void *arg)
{
	struct rlimit core = {0, 0};

	setrlimit(RLIMIT_CORE, &core);
	signal((int)(long)arg, SIG_DFL);
	kill(getpid(), (int)(long)arg);
	pause();
	return 99;
}

static int segv(void *arg)
{
	/* Allow a core dump so the status carries WCOREDUMP where the host's
	 * core_pattern takes one; the status must match waitpid either way. */
	struct rlimit core = {RLIM_INFINITY, RLIM_INFINITY};

	setrlimit(RLIMIT_CORE, &core);
	*(volatile int *)0 = 1;
	return 98;
}

static void *exit3_later(void *arg)
{
	usleep(50000);
	exit(3);
}

/* Main thread pthread_exit()s first: the leader's tracepoint fires with
 * code 0 while the process lives on; its real status is 3. */
static int leader_first(void *arg)
{
	pthread_t t;

	pthread_create(&t, NULL, exit3_later, NULL);
	pthread_exit(NULL);
}

static void *exit_group7(void *arg)
{
	syscall(SYS_exit_group, 7);
	return NULL;
}

static int group_from_thread(void *arg)
{
	pthread_t t;

	pthread_create(&t, NULL, exit_group7, NULL);
	pause();
	return 99;
}

static void *just_return(void *arg)
{
	usleep(20000);
	return NULL;
}

/* Every thread ends with pthread_exit: the process exits with 0. */
static int all_pthread_exit(void *arg)
{
	pthread_t t[3];
	int i;

	for (i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, just_return, NULL);
	pthread_exit(NULL);
}

static void *exec_sh(void *arg)
{
	execl("/bin/sh", "sh", "-c", "sleep 0.3; exit 42", (char *)NULL);
	return NULL;
}

/* execve from a non-leader: the old leader is torn down by de_thread with
 * code 0, which is not the process's exit. */
static int exec_from_thread(void *arg)
{
	pthread_t t;

	pthread_create(&t, NULL, exec_sh, NULL);
	pause();
	return 99;
}

struct scenario {
	const char *name;
	int (*fn)(void *);
	void *arg;
};

static const struct scenario *scenarios(int *n)
{
	static const struct scenario sc[] = {
		{"exit 0", exit_code, (void *)0},
		{"exit 1", exit_code, (void *)1},
		{"exit 255", exit_code, (void *)255},
		{"SIGKILL", self_signal, (void *)SIGKILL},
		{"SIGTERM", self_signal, (void *)SIGTERM},
		{"SIGSEGV", segv, NULL},
		{"leader pthread_exit then exit(3)", leader_first, NULL},
		{"exit_group(7) from a thread", group_from_thread, NULL},
		{"all threads pthread_exit", all_pthread_exit, NULL},
		{"execve from a thread, then exit 42", exec_from_thread, NULL},
	};

	*n = sizeof(sc) / sizeof(sc[0]);
	return sc;
}

/* Each scenario's status from the monitor equals waitpid's. */
static void run_scenarios(struct es_monitor *m, const char *mode)
{
	int n;
	const struct scenario *sc = scenarios(&n);
	struct es_exit_event ev;
	uint64_t ident;
	char err[256];
	int i, rc, st;

	printf("-- %s\n", mode);
	for (i = 0; i < n; i++) {
		struct tu_child c = tu_spawn(sc[i].fn, sc[i].arg);

		rc = es_monitor_register(m, c.pid, 0, &ident, err, sizeof(err));
		CHECK(rc == 0, "%s: register: %s", sc[i].name, err);
		tu_release(&c);
		rc = tu_collect(m, &ev, 1, 5000);
		st = tu_reap(c.pid);
		CHECK(rc == 1, "%s: no exit delivered", sc[i].name);
		if (rc != 1)
			continue;
		CHECK(ev.pid == (uint32_t)c.pid && ev.ident == ident,
		      "%s: wrong process %u", sc[i].name, ev.pid);
		CHECK(ev.err == 0, "%s: no record", sc[i].name);
		CHECK(ev.status == (uint32_t)st,
		      "%s: status %#x, waitpid says %#x", sc[i].name, ev.status,
		      st);
		CHECK(ev.exit_ns > 0, "%s: no exit time", sc[i].name);
		/* Nothing more may come for this process. */
		CHECK(es_monitor_wait(m, &ev, 1, 50) == 0,
		      "%s: a second exit was delivered", sc[i].name);
		printf("%-40s status %#06x ok\n", sc[i].name, st);
		CHECK(es_monitor_forget(m, c.pid, ident) == 0, "%s: forget",
		      sc[i].name);
	}
	CHECK(es_monitor_list(m, NULL, 0) == 0, "%s: registrations left", mode);
	CHECK(es_monitor_count_exits(m) == 0, "%s: exit records left", mode);
}

int main(void)
{
	struct es_monitor *m = tu_open(0);

	run_scenarios(m, "this kernel's identity and group-dead detection");
	tu_close(m);
	/* The fallbacks for kernels before 6.9 (no pidfs: start ticks) and
	 * before 6.16 (no group_dead: signal->live), on fresh pins. */
	es_compat_start_ticks = es_compat_no_group_dead = true;
	m = tu_open_at(tu_new_pin_dir(), 0);
	CHECK(es_ident_kind() == ES_IDENT_START_TICKS, "identity kind %d",
	      es_ident_kind());
	run_scenarios(m, "fallbacks: start-tick identities, signal->live");
	tu_finish();
}
