// SPDX-License-Identifier: Apache-2.0
/*
 * bench_core: exit -> delivery latency of the monitor (BPF record + pidfd
 * epoll) against the physical floor, a real parent's waitpid() wake-up,
 * measured in the same run with the two modes alternating per exit so that
 * drift hits both. Then sustained throughput: 64 registered children in
 * flight continuously, delivered by the monitor.
 *
 *   bench_core [-n N] [-r R] [-o out.json]
 *
 * N exits per mode (default 10000); JSON to out (default
 * _output/bench/core.json). With -r, R more children stay registered (and
 * polled) during the whole run, as a loaded daemon's containers do, and the
 * cost of a lookup and a forget at that size is measured too. Every delivered status is checked against
 * waitpid(); any mismatch is printed and makes the exit code 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "embedshim/monitor.h"

#define WARMUP 100
#define INFLIGHT 64
#define SUSTAIN_NS 2000000000ull

static char pin_dir[PATH_MAX];
static char pin_base[64];
static pid_t owner;
static struct es_monitor *mon;
static int mismatches;

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void cleanup(void)
{
	char err[256];

	if (getpid() != owner || !pin_dir[0])
		return;
	if (mon)
		es_monitor_close(mon);
	mon = NULL;
	if (es_pins_destroy(pin_dir, err, sizeof(err)))
		fprintf(stderr, "cleanup: %s\n", err);
	rmdir(pin_dir);
	rmdir(pin_base);
	pin_dir[0] = '\0';
}

static void on_signal(int sig)
{
	exit(128 + sig); /* runs cleanup() */
}

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "bench_core: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	exit(2);
}

static void mismatch(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static void mismatch(const char *fmt, ...)
{
	va_list ap;

	if (mismatches++ < 20) {
		fprintf(stderr, "MISMATCH: ");
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fprintf(stderr, "\n");
	}
}

/* A child that waits for a byte on the pipe, stamps the time into *slot
 * (shared memory) and exits with code. Only _exit: it shares our atexit. */
static pid_t spawn(volatile uint64_t *slot, int code, int *go_fd)
{
	int p[2];
	pid_t pid;
	char b;

	if (pipe2(p, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		close(p[1]);
		if (read(p[0], &b, 1) != 1)
			_exit(255);
		*slot = mono_ns();
		_exit(code);
	}
	close(p[0]);
	*go_fd = p[1];
	return pid;
}

static void release(int go_fd)
{
	if (write(go_fd, "g", 1) != 1)
		die("release: %s", strerror(errno));
	close(go_fd);
}

static int reap(pid_t pid)
{
	int st = -1;

	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return st;
}

/* One exit seen by the monitor; returns the latency in ns. */
static uint64_t one_embed(volatile uint64_t *slot, int code)
{
	struct es_exit_event ev;
	uint64_t ident, t, lat;
	char err[256];
	int go, rc, st, tries;
	pid_t pid;

	pid = spawn(slot, code, &go);
	rc = es_monitor_register(mon, pid, 0, &ident, err, sizeof(err));
	if (rc)
		die("register: %s", err);
	release(go);
	/* 0 is a timeout or EINTR: retry a little, then call it lost. */
	for (tries = 0; tries < 3; tries++)
		if ((rc = es_monitor_wait(mon, &ev, 1, 5000)) != 0)
			break;
	t = mono_ns();
	lat = t - *slot;
	st = reap(pid);
	if (rc != 1)
		mismatch("pid %d: no delivery (rc %d)", pid, rc);
	else if (ev.pid != (uint32_t)pid || ev.ident != ident || ev.err ||
		 ev.status != (uint32_t)st || st != code << 8)
		mismatch("pid %d: delivered pid %u err %d status %#x, waitpid "
			 "%#x, exit code %d",
			 pid, ev.pid, ev.err, ev.status, st, code);
	es_monitor_forget(mon, pid, ident);
	return lat;
}

/* The same exit seen by the real parent blocked in waitpid(). */
static uint64_t one_waitpid(volatile uint64_t *slot, int code)
{
	uint64_t t;
	int go, st;
	pid_t pid;

	pid = spawn(slot, code, &go);
	release(go);
	st = reap(pid);
	t = mono_ns();
	if (st != code << 8)
		mismatch("pid %d: waitpid %#x, exit code %d", pid, st, code);
	return t - *slot;
}

/* R children blocked on one pipe, registered for the whole run. */
static struct {
	pid_t *pid;
	uint64_t *ident;
	int n, go_fd;
} bg;

static void background_start(int n)
{
	char err[256], b;
	int p[2], i;

	if (pipe2(p, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	bg.pid = calloc(n, sizeof(*bg.pid));
	bg.ident = calloc(n, sizeof(*bg.ident));
	if (!bg.pid || !bg.ident)
		die("out of memory%s", "");
	for (i = 0; i < n; i++) {
		bg.pid[i] = fork();
		if (bg.pid[i] < 0)
			die("fork: %s", strerror(errno));
		if (bg.pid[i] == 0) {
			close(p[1]);
			while (read(p[0], &b, 1) < 0 && errno == EINTR)
				;
			_exit(0);
		}
		bg.n++;
		if (es_monitor_register(mon, bg.pid[i], 0, &bg.ident[i], err,
					sizeof(err)))
			die("register background child: %s", err);
	}
	close(p[0]);
	bg.go_fd = p[1];
}

/* Forget them first: their exits are not the benchmark's. */
static void background_stop(void)
{
	int i;

	for (i = 0; i < bg.n; i++)
		es_monitor_forget(mon, bg.pid[i], bg.ident[i]);
	if (bg.n)
		close(bg.go_fd);
	for (i = 0; i < bg.n; i++)
		reap(bg.pid[i]);
	bg.n = 0;
}

/* ns per es_monitor_lookup of a polled process and per es_monitor_forget of
 * an unknown one, with the background registered: the best of 20 batches,
 * so that a loaded machine's preemptions do not hide the cost itself. */
static void micro(double *lookup_ns, double *forget_ns)
{
	struct es_exit_event ev;
	double l, f;
	uint64_t t0;
	int b, i, reps = bg.n < 1000 ? 1000 : bg.n;

	*lookup_ns = *forget_ns = 0;
	if (!bg.n)
		return;
	for (b = 0; b < 20; b++) {
		t0 = mono_ns();
		for (i = 0; i < reps; i++)
			if (es_monitor_lookup(mon, bg.pid[i % bg.n],
					      bg.ident[i % bg.n], &ev, NULL,
					      0) != 0)
				mismatch("lookup of background child %d",
					 bg.pid[i % bg.n]);
		l = (double)(mono_ns() - t0) / reps;
		t0 = mono_ns();
		for (i = 0; i < reps; i++)
			es_monitor_forget(mon, 1, i + 1); /* never registered */
		f = (double)(mono_ns() - t0) / reps;
		if (!b || l < *lookup_ns)
			*lookup_ns = l;
		if (!b || f < *forget_ns)
			*forget_ns = f;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

struct stats {
	double p50, p99, max; /* microseconds */
};

static struct stats summarize(uint64_t *v, int n)
{
	struct stats s;
	int i99 = (int)((n * 99LL + 99) / 100) - 1; /* nearest rank */

	qsort(v, n, sizeof(*v), cmp_u64);
	s.p50 = v[(n - 1) / 2] / 1e3;
	s.p99 = v[i99 < 0 ? 0 : i99] / 1e3;
	s.max = v[n - 1] / 1e3;
	return s;
}

/* INFLIGHT registered children at all times for SUSTAIN_NS; returns
 * deliveries per second. */
static double sustained(uint64_t *delivered_out)
{
	static struct {
		pid_t pid;
		uint64_t ident;
		int code;
	} fl[INFLIGHT];
	struct es_exit_event evs[INFLIGHT];
	volatile uint64_t *slots;
	uint64_t start, end, delivered = 0, seq = 0, last = 0;
	int inflight = 0, i, j, rc, go, st;
	char err[256];

	slots = mmap(NULL, INFLIGHT * sizeof(uint64_t), PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (slots == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	for (i = 0; i < INFLIGHT; i++)
		fl[i].pid = 0;
	start = mono_ns();
	end = start + SUSTAIN_NS;
	while (inflight > 0 || mono_ns() < end) {
		for (i = 0; i < INFLIGHT && mono_ns() < end; i++) {
			if (fl[i].pid)
				continue;
			fl[i].code = seq++ % 256;
			fl[i].pid = spawn(&slots[i], fl[i].code, &go);
			rc = es_monitor_register(mon, fl[i].pid, 0,
						 &fl[i].ident, err,
						 sizeof(err));
			if (rc)
				die("register: %s", err);
			release(go);
			inflight++;
		}
		rc = es_monitor_wait(mon, evs, INFLIGHT, 10000);
		if (rc < 0)
			die("wait: %s", strerror(-rc));
		if (rc == 0) {
			mismatch("sustained: no delivery in 10 s, %d in flight",
				 inflight);
			break;
		}
		last = mono_ns();
		for (j = 0; j < rc; j++) {
			for (i = 0; i < INFLIGHT; i++)
				if (fl[i].pid &&
				    (uint32_t)fl[i].pid == evs[j].pid)
					break;
			if (i == INFLIGHT) {
				mismatch("sustained: unknown pid %u delivered",
					 evs[j].pid);
				continue;
			}
			st = reap(fl[i].pid);
			if (evs[j].ident != fl[i].ident || evs[j].err ||
			    evs[j].status != (uint32_t)st ||
			    st != fl[i].code << 8)
				mismatch("sustained: pid %d status %#x err %d, "
					 "waitpid %#x, code %d",
					 fl[i].pid, evs[j].status, evs[j].err,
					 st, fl[i].code);
			es_monitor_forget(mon, fl[i].pid, fl[i].ident);
			fl[i].pid = 0;
			inflight--;
			delivered++;
		}
	}
	munmap((void *)slots, INFLIGHT * sizeof(uint64_t));
	*delivered_out = delivered;
	return last > start ? delivered / ((last - start) / 1e9) : 0;
}

static void mkdir_parents(const char *file)
{
	char buf[PATH_MAX], *p;

	snprintf(buf, sizeof(buf), "%s", file);
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			die("mkdir %s failed", buf);
		*p = '/';
	}
}

int main(int argc, char **argv)
{
	const char *out = "_output/bench/core.json";
	struct es_open_opts opts = {0};
	volatile uint64_t *slot;
	uint64_t *lat_e, *lat_w, sus_n;
	struct stats se, sw;
	double ratio, eps, lookup_ns, forget_ns;
	char err[256];
	int n = 10000, nbg = 0, i, opt, rc;
	FILE *f;

	while ((opt = getopt(argc, argv, "n:r:o:")) != -1) {
		switch (opt) {
		case 'n':
			n = atoi(optarg);
			break;
		case 'r':
			nbg = atoi(optarg);
			break;
		case 'o':
			out = optarg;
			break;
		default:
			fprintf(stderr,
				"usage: %s [-n N] [-r R] [-o out.json]\n",
				argv[0]);
			return 2;
		}
	}
	if (n < 1)
		die("bad -n %s", "(must be >= 1)");

	snprintf(pin_base, sizeof(pin_base), "/tmp/embedshim-bench-XXXXXX");
	if (!mkdtemp(pin_base))
		die("mkdtemp: %s", strerror(errno));
	snprintf(pin_dir, sizeof(pin_dir), "%s/bpf", pin_base);
	owner = getpid();
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	rc = es_monitor_open(pin_dir, &opts, &mon, err, sizeof(err));
	if (rc)
		die("open: %s", err);

	slot = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	lat_e = calloc(n, sizeof(*lat_e));
	lat_w = calloc(n, sizeof(*lat_w));
	if (slot == MAP_FAILED || !lat_e || !lat_w)
		die("out of memory%s", "");

	background_start(nbg);
	micro(&lookup_ns, &forget_ns);
	for (i = 0; i < WARMUP; i++) {
		one_embed(slot, i % 256);
		one_waitpid(slot, i % 256);
	}
	/* Alternate per exit, and swap which goes first every other pair. */
	for (i = 0; i < n; i++) {
		if (i % 2) {
			lat_e[i] = one_embed(slot, i % 256);
			lat_w[i] = one_waitpid(slot, i % 256);
		} else {
			lat_w[i] = one_waitpid(slot, i % 256);
			lat_e[i] = one_embed(slot, i % 256);
		}
	}
	se = summarize(lat_e, n);
	sw = summarize(lat_w, n);
	ratio = sw.p99 > 0 ? se.p99 / sw.p99 : 0;
	eps = sustained(&sus_n);
	background_stop();

	if (es_monitor_list(mon, NULL, 0) || es_monitor_count_exits(mon))
		mismatch("records left: %d registrations, %d exits",
			 es_monitor_list(mon, NULL, 0),
			 es_monitor_count_exits(mon));

	printf("exit -> delivery latency, %d exits per mode (us)\n", n);
	printf("%-10s %10s %10s %10s\n", "path", "p50", "p99", "max");
	printf("%-10s %10.1f %10.1f %10.1f\n", "embed", se.p50, se.p99, se.max);
	printf("%-10s %10.1f %10.1f %10.1f\n", "waitpid", sw.p50, sw.p99,
	       sw.max);
	printf("ratio p99 embed/waitpid: %.2f\n", ratio);
	printf("sustained: %.0f exits/s (%llu delivered, %d in flight)\n", eps,
	       (unsigned long long)sus_n, INFLIGHT);
	if (nbg)
		printf("with %d registered: lookup %.0f ns, forget %.0f ns\n",
		       nbg, lookup_ns, forget_ns);
	printf("status mismatches: %d\n", mismatches);

	mkdir_parents(out);
	f = fopen(out, "w");
	if (!f)
		die("cannot write %s", out);
	fprintf(f,
		"{\"exits\":%d,"
		"\"embed\":{\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f},"
		"\"waitpid\":{\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f},"
		"\"ratio_p99\":%.3f,\"exits_per_s\":%.0f,\"registered\":%d,"
		"\"lookup_ns\":%.0f,\"forget_ns\":%.0f,\"mismatches\":%d}\n",
		n, se.p50, se.p99, se.max, sw.p50, sw.p99, sw.max, ratio, eps,
		nbg, lookup_ns, forget_ns, mismatches);
	fclose(f);
	free(lat_e);
	free(lat_w);
	return mismatches ? 1 : 0;
}
