// SPDX-License-Identifier: Apache-2.0
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

int tu_failures;
static char pin_dir[256];
static struct es_monitor *opened[16];
static int nopened;
static pid_t owner; /* children inherit atexit(): only the owner cleans up */

static void cleanup(void)
{
	char err[256];
	char base[256];

	if (!pin_dir[0] || getpid() != owner)
		return;
	if (es_pins_destroy(pin_dir, err, sizeof(err)))
		fprintf(stderr, "cleanup: %s\n", err);
	snprintf(base, sizeof(base), "%s", pin_dir);
	*strrchr(base, '/') = '\0';
	rmdir(pin_dir);
	rmdir(base);
	pin_dir[0] = '\0';
}

const char *tu_pin_dir(void)
{
	char tmpl[] = "/tmp/embedshim-ctest-XXXXXX";

	if (pin_dir[0])
		return pin_dir;
	if (!mkdtemp(tmpl)) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(pin_dir, sizeof(pin_dir), "%s/bpf", tmpl);
	owner = getpid();
	atexit(cleanup);
	return pin_dir;
}

struct es_monitor *tu_open(uint32_t capacity)
{
	struct es_open_opts opts = {.capacity = capacity};
	struct es_monitor *m = NULL;
	char err[256] = "";
	int rc;

	rc = es_monitor_open(tu_pin_dir(), &opts, &m, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "FAIL es_monitor_open: %d %s\n", rc, err);
		tu_failures++;
		tu_finish();
	}
	if (nopened < 16)
		opened[nopened++] = m;
	return m;
}

struct tu_child tu_spawn(int (*fn)(void *), void *arg)
{
	struct tu_child c = {.pid = -1, .go_fd = -1};
	int p[2];
	char b;

	if (pipe2(p, O_CLOEXEC) < 0) {
		perror("pipe");
		return c;
	}
	fflush(NULL); /* or the child flushes our buffered output again */
	c.pid = fork();
	if (c.pid == 0) {
		close(p[1]);
		if (read(p[0], &b, 1) < 0)
			_exit(120);
		_exit(fn(arg));
	}
	close(p[0]);
	c.go_fd = p[1];
	return c;
}

void tu_release(struct tu_child *c)
{
	if (c->go_fd >= 0) {
		if (write(c->go_fd, "g", 1) < 0)
			perror("release");
		close(c->go_fd);
		c->go_fd = -1;
	}
}

int tu_collect(struct es_monitor *m, struct es_exit_event *evs, int n,
	       int timeout_ms)
{
	int got = 0, rc;

	while (got < n) {
		rc = es_monitor_wait(m, evs + got, n - got, timeout_ms);
		if (rc <= 0)
			break;
		got += rc;
	}
	return got;
}

int tu_reap(pid_t pid)
{
	int st = -1;

	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return st;
}

int tu_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	if (d)
		closedir(d);
	return n - 1; /* the DIR's own fd */
}

void tu_finish(void)
{
	int i;

	for (i = 0; i < nopened; i++)
		es_monitor_close(opened[i]);
	nopened = 0;
	cleanup();
	if (tu_failures) {
		fprintf(stderr, "%d check(s) failed\n", tu_failures);
		exit(1);
	}
	printf("ok\n");
	exit(0);
}
