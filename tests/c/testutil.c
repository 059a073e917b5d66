// SPDX-License-Identifier: Apache-2.0
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "testutil.h"

int tu_failures;
#define TU_MAX_DIRS 8
#define TU_MAX_OPEN 16
static char pin_dirs[TU_MAX_DIRS][256]; /* [0] is tu_pin_dir() */
static int ndirs = 1;
static struct es_monitor *opened[TU_MAX_OPEN];
static int nopened;
static pid_t owner; /* children inherit atexit(): only the owner cleans up */

static void cleanup(void)
{
	char err[256];
	char base[256];
	int i;

	if (getpid() != owner)
		return;
	for (i = 0; i < ndirs; i++) {
		char *dir = pin_dirs[i];

		if (!dir[0])
			continue;
		if (es_pins_destroy(dir, err, sizeof(err)))
			fprintf(stderr, "cleanup: %s\n", err);
		snprintf(base, sizeof(base), "%.255s", dir);
		*strrchr(base, '/') = '\0';
		rmdir(dir);
		rmdir(base);
		dir[0] = '\0';
	}
}

static void new_dir(char *out)
{
	char tmpl[] = "/tmp/embedshim-ctest-XXXXXX";

	if (!mkdtemp(tmpl)) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(out, 256, "%s/bpf", tmpl);
	if (!owner) {
		owner = getpid();
		atexit(cleanup);
	}
}

const char *tu_pin_dir(void)
{
	if (!pin_dirs[0][0])
		new_dir(pin_dirs[0]);
	return pin_dirs[0];
}

const char *tu_new_pin_dir(void)
{
	if (ndirs >= TU_MAX_DIRS) {
		fprintf(stderr, "tu_new_pin_dir: too many pin dirs\n");
		exit(1);
	}
	new_dir(pin_dirs[ndirs]);
	return pin_dirs[ndirs++];
}

struct es_monitor *tu_open_at(const char *dir, uint32_t capacity)
{
	struct es_open_opts opts = {.capacity = capacity};
	struct es_monitor *m = NULL;
	char err[256] = "";
	int rc;

	rc = es_monitor_open(dir, &opts, &m, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "FAIL es_monitor_open(%s): %d %s\n", dir, rc,
			err);
		tu_failures++;
		tu_finish();
	}
	if (nopened < TU_MAX_OPEN)
		opened[nopened++] = m;
	return m;
}

struct es_monitor *tu_open(uint32_t capacity)
{
	return tu_open_at(tu_pin_dir(), capacity);
}

void tu_close(struct es_monitor *m)
{
	int i;

	for (i = 0; i < nopened; i++)
		if (opened[i] == m) {
			opened[i] = opened[--nopened];
			break;
		}
	es_monitor_close(m);
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
	struct timespec t0, t;
	int got = 0, rc;

	/* A wait may return 0 before its timeout: woken by the ring for an
	 * exit that is not polled here (one recorded while no monitor was
	 * open, say). */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (got < n) {
		rc = es_monitor_wait(m, evs + got, n - got, timeout_ms);
		if (rc < 0)
			break;
		got += rc;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 +
			    (t.tv_nsec - t0.tv_nsec) / 1000000 >=
		    timeout_ms)
			break;
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

int tu_wait_zombie(pid_t pid, int timeout_ms)
{
	char path[64], buf[512], *p;
	int i, fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	for (i = 0; i <= timeout_ms; i++) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -1;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			return -1;
		buf[n] = '\0';
		p = strrchr(buf, ')');
		if (p && p[1] == ' ' && p[2] == 'Z')
			return 0;
		usleep(1000);
	}
	return -1;
}

static bool env_true(const char *name)
{
	const char *v = getenv(name);

	return v && (!strcmp(v, "1") || !strcmp(v, "true"));
}

void tu_skip(const char *why)
{
	if (env_true("EMBEDSHIM_REQUIRE_ALL") || env_true("CI")) {
		fprintf(stderr,
			"FAIL: prerequisite missing (skips not "
			"allowed here): %s\n",
			why);
		tu_failures++;
		tu_finish();
	}
	printf("SKIP: %s\n", why);
	for (int i = 0; i < nopened; i++)
		es_monitor_close(opened[i]);
	nopened = 0;
	cleanup();
	exit(77);
}

uint32_t tu_link_id(const char *vdir)
{
	struct bpf_link_info info = {};
	uint32_t len = sizeof(info);
	char path[600];
	int fd;

	snprintf(path, sizeof(path), "%s/link", vdir);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return 0;
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
		info.id = 0;
	close(fd);
	return info.id;
}

/* Wait (up to 5 s) until get_fd_by_id(id) says ENOENT. */
static bool bpf_id_gone(int (*get_fd_by_id)(uint32_t), uint32_t id)
{
	int i, fd;

	for (i = 0; i < 5000; i++) {
		fd = get_fd_by_id(id);
		if (fd < 0 && errno == ENOENT)
			return true;
		if (fd >= 0)
			close(fd);
		usleep(1000);
	}
	return false;
}

bool tu_link_gone(uint32_t id)
{
	return bpf_id_gone(bpf_link_get_fd_by_id, id);
}

bool tu_prog_gone(uint32_t id)
{
	return bpf_id_gone(bpf_prog_get_fd_by_id, id);
}

uint32_t tu_link_prog(uint32_t link_id)
{
	struct bpf_link_info info = {};
	uint32_t len = sizeof(info);
	int fd = bpf_link_get_fd_by_id(link_id);

	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
		info.prog_id = 0;
	if (fd >= 0)
		close(fd);
	return info.prog_id;
}
