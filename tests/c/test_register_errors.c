// SPDX-License-Identifier: Apache-2.0
/*
 * Every error es_monitor_register() and es_monitor_open() document comes with
 * its errno and a message naming the cause: processes that exited before or
 * are not the expected one, double registration, a full map, pin dirs that
 * cannot be used, pins of another layout, and no permission for bpf().
 */
#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "exitsnoop.h"
#include "internal.h"
#include "testutil.h"

static int exit_code(void *arg)
{
	return (int)(long)arg;
}

#define CHECK_ERR(rc, want_rc, err, want_msg)                                  \
	CHECK((rc) == (want_rc) && strstr(err, want_msg),                      \
	      "rc %d (want %d), message \"%s\" (want \"%s\")", rc, want_rc,    \
	      err, want_msg)

static void test_exited_before_register(struct es_monitor *m)
{
	struct tu_child c = tu_spawn(exit_code, (void *)5);
	char err[256] = "";
	uint64_t ident = 0;
	int rc;

	tu_release(&c);
	REQUIRE(tu_wait_zombie(c.pid, 5000) == 0, "child %d not a zombie",
		c.pid);
	rc = es_monitor_register(m, c.pid, 0, &ident, err, sizeof(err));
	CHECK_ERR(rc, -ESRCH, err, "exited before it was registered");
	/* A failed registration leaves nothing behind. */
	CHECK(es_monitor_list(m, NULL, 0) == 0, "registration left: %d",
	      es_monitor_list(m, NULL, 0));
	CHECK(es_monitor_count_exits(m) == 0, "exit record left");

	/* Once reaped, the pid names no process at all. */
	CHECK(tu_reap(c.pid) == 5 << 8, "child status");
	err[0] = '\0';
	rc = es_monitor_register(m, c.pid, 0, &ident, err, sizeof(err));
	CHECK_ERR(rc, -ESRCH, err, "already exited");
	CHECK(es_monitor_list(m, NULL, 0) == 0, "registration left");
	printf("exited before register / reaped: ok\n");
}

static void test_stale_and_double(struct es_monitor *m)
{
	struct tu_child c = tu_spawn(exit_code, (void *)3);
	struct es_exit_event ev;
	uint64_t ident = 0, ident2 = 0, real = 0;
	char err[256] = "";
	int rc;

	REQUIRE(es_process_ident(c.pid, &real, err, sizeof(err)) == 0,
		"ident: %s", err);
	rc = es_monitor_register(m, c.pid, real + 1, &ident, err, sizeof(err));
	CHECK_ERR(rc, -ESTALE, err, "not the expected process");
	CHECK(es_monitor_list(m, NULL, 0) == 0, "stale registration left");

	err[0] = '\0';
	rc = es_monitor_register(m, c.pid, real, &ident, err, sizeof(err));
	CHECK(rc == 0 && ident == real, "register with right identity: %d %s",
	      rc, err);
	err[0] = '\0';
	rc = es_monitor_register(m, c.pid, 0, &ident2, err, sizeof(err));
	CHECK_ERR(rc, -EEXIST, err, "already registered");
	CHECK(es_monitor_list(m, NULL, 0) == 1, "registrations: %d",
	      es_monitor_list(m, NULL, 0));

	/* The failed second registration did not add a second delivery. */
	tu_release(&c);
	CHECK(tu_collect(m, &ev, 1, 5000) == 1, "no exit delivered");
	CHECK(ev.pid == (uint32_t)c.pid && ev.ident == real && ev.err == 0 &&
		      ev.status == 3 << 8,
	      "event pid %u ident %llu err %d status %#x", ev.pid,
	      (unsigned long long)ev.ident, ev.err, ev.status);
	CHECK(es_monitor_wait(m, &ev, 1, 100) == 0, "second delivery");
	CHECK(tu_reap(c.pid) == 3 << 8, "child status");
	CHECK(es_monitor_forget(m, c.pid, real) == 0, "forget");
	CHECK(es_monitor_list(m, NULL, 0) == 0, "registration left");
	CHECK(es_monitor_count_exits(m) == 0, "exit record left");
	printf("stale identity / double register: ok\n");
}

static void test_capacity(void)
{
	struct es_monitor *m = tu_open_at(tu_new_pin_dir(), 4);
	struct tu_child c[5];
	struct es_exit_event evs[8];
	uint64_t ident[5] = {0};
	char err[256] = "";
	int i, j, rc, got, st;

	CHECK(es_monitor_capacity(m) == 4, "capacity %u",
	      es_monitor_capacity(m));
	for (i = 0; i < 5; i++)
		c[i] = tu_spawn(exit_code, (void *)(long)(40 + i));
	for (i = 0; i < 4; i++) {
		rc = es_monitor_register(m, c[i].pid, 0, &ident[i], err,
					 sizeof(err));
		CHECK(rc == 0, "register %d: %d %s", i, rc, err);
	}
	err[0] = '\0';
	rc = es_monitor_register(m, c[4].pid, 0, &ident[4], err, sizeof(err));
	CHECK(rc == -ENOSPC && strcmp(err, "tracking capacity 4 reached") == 0,
	      "5th register: rc %d, message \"%s\"", rc, err);
	CHECK(es_monitor_list(m, NULL, 0) == 4, "registrations: %d",
	      es_monitor_list(m, NULL, 0));

	for (i = 0; i < 5; i++)
		tu_release(&c[i]);
	got = tu_collect(m, evs, 4, 5000);
	CHECK(got == 4, "delivered %d of 4", got);
	CHECK(es_monitor_wait(m, evs + got, 1, 100) == 0,
	      "the unregistered 5th (or a duplicate) was delivered");
	for (i = 0; i < 5; i++) {
		st = tu_reap(c[i].pid);
		CHECK(st == (40 + i) << 8, "child %d status %#x", i, st);
		if (i == 4)
			break;
		for (j = 0; j < got; j++)
			if (evs[j].pid == (uint32_t)c[i].pid)
				break;
		CHECK(j < got, "child %d (pid %d) not delivered", i, c[i].pid);
		if (j < got)
			CHECK(evs[j].ident == ident[i] && evs[j].err == 0 &&
				      evs[j].status == (uint32_t)st,
			      "child %d: status %#x err %d, waitpid %#x", i,
			      evs[j].status, evs[j].err, st);
	}
	CHECK(es_monitor_count_exits(m) == 4, "exit records: %d",
	      es_monitor_count_exits(m));
	for (i = 0; i < 4; i++)
		CHECK(es_monitor_forget(m, c[i].pid, ident[i]) == 0, "forget");
	CHECK(es_monitor_list(m, NULL, 0) == 0, "registrations left");
	CHECK(es_monitor_count_exits(m) == 0, "exit records left");
	printf("capacity 4: ok\n");
}

static void test_open_bad_pin_dirs(void)
{
	char dir[] = "/tmp/embedshim-ctest-XXXXXX";
	char file[300], below[320], err[512];
	struct es_monitor *m = NULL;
	int fd, rc;

	REQUIRE(mkdtemp(dir), "mkdtemp");
	snprintf(file, sizeof(file), "%s/file", dir);
	fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	REQUIRE(fd >= 0, "create %s", file);
	close(fd);

	/* The pin dir itself is a regular file. */
	err[0] = '\0';
	rc = es_monitor_open(file, NULL, &m, err, sizeof(err));
	CHECK(rc == -ENOTDIR && strstr(err, "is not a directory") &&
		      strstr(err, file),
	      "pin dir is a file: rc %d, message \"%s\"", rc, err);
	/* A pin dir below a regular file cannot be created. */
	snprintf(below, sizeof(below), "%s/bpf", file);
	err[0] = '\0';
	rc = es_monitor_open(below, NULL, &m, err, sizeof(err));
	CHECK(rc == -ENOTDIR && strstr(err, "cannot create pin dir") &&
		      strstr(err, below),
	      "pin dir below a file: rc %d, message \"%s\"", rc, err);

	unlink(file);
	CHECK(rmdir(dir) == 0, "rmdir %s: %s", dir, strerror(errno));
	printf("pin dir unusable: ok\n");
}

/* The kernel checks, fed another kernel's facts (this one passes them). */
static void test_kernel_checks(void)
{
	char err[512] = "";
	int rc;

	rc = es_check_kernel("5.7.19", "/sys/kernel/btf/vmlinux", err,
			     sizeof(err));
	CHECK_ERR(rc, -ENOTSUP, err, "kernel 5.7.19 too old");
	rc = es_check_kernel("6.1.0", "/nonexistent/vmlinux", err, sizeof(err));
	CHECK_ERR(rc, -ENOTSUP, err, "kernel has no BTF (/nonexistent/vmlinux");
	rc = es_check_kernel("5.8.0", "/sys/kernel/btf/vmlinux", err,
			     sizeof(err));
	CHECK(rc == 0, "5.8 with BTF refused: %s", err);
	printf("kernel checks: ok\n");
}

/* Pins under our version's path with another key size: refused. */
static void test_layout_mismatch(void)
{
	const char *pd = tu_new_pin_dir();
	char vdir[300], path[320], err[512] = "";
	struct es_monitor *m = NULL;
	int fd, rc, i;
	const char *names[] = {"registrations", "exits", "link"};

	REQUIRE(mkdir(pd, 0700) == 0, "mkdir %s: %s", pd, strerror(errno));
	REQUIRE(mount("bpffs", pd, "bpf", 0, "mode=0700") == 0,
		"mount bpffs on %s: %s", pd, strerror(errno));
	snprintf(vdir, sizeof(vdir), "%s/v%d", pd, ES_LAYOUT_VERSION);
	REQUIRE(mkdir(vdir, 0700) == 0, "mkdir %s: %s", vdir, strerror(errno));
	for (i = 0; i < 3; i++) {
		fd = bpf_map_create(BPF_MAP_TYPE_HASH, names[i], 4, 16, 8,
				    NULL);
		REQUIRE(fd >= 0, "bpf_map_create: %s", strerror(errno));
		snprintf(path, sizeof(path), "%s/%s", vdir, names[i]);
		REQUIRE(bpf_obj_pin(fd, path) == 0, "pin %s: %s", path,
			strerror(errno));
		close(fd);
	}
	rc = es_monitor_open(pd, NULL, &m, err, sizeof(err));
	CHECK_ERR(rc, -EPROTO, err, "layout version mismatch");
	if (rc == 0)
		es_monitor_close(m);
	/* The foreign pins were not touched. */
	snprintf(path, sizeof(path), "%s/registrations", vdir);
	CHECK(access(path, F_OK) == 0, "foreign pin %s removed", path);
	printf("layout mismatch: ok\n");
}

/* Pins of another layout version sit in their own directory: a monitor of
 * this version opens its own pins beside them and leaves them alone. */
static void test_other_version_left_alone(void)
{
	const char *pd = tu_new_pin_dir();
	char vdir[300], path[320], err[512] = "";
	struct es_monitor *m = NULL;
	int fd, rc;

	REQUIRE(mkdir(pd, 0700) == 0, "mkdir %s: %s", pd, strerror(errno));
	REQUIRE(mount("bpffs", pd, "bpf", 0, "mode=0700") == 0,
		"mount bpffs on %s: %s", pd, strerror(errno));
	snprintf(vdir, sizeof(vdir), "%s/v%d", pd, ES_LAYOUT_VERSION + 1);
	REQUIRE(mkdir(vdir, 0700) == 0, "mkdir %s: %s", vdir, strerror(errno));
	fd = bpf_map_create(BPF_MAP_TYPE_HASH, "registrations", 4, 16, 8, NULL);
	REQUIRE(fd >= 0, "bpf_map_create: %s", strerror(errno));
	snprintf(path, sizeof(path), "%s/registrations", vdir);
	REQUIRE(bpf_obj_pin(fd, path) == 0, "pin %s", path);
	close(fd);
	rc = es_monitor_open(pd, NULL, &m, err, sizeof(err));
	CHECK(rc == 0, "open beside another version's pins: %d %s", rc, err);
	if (rc == 0)
		es_monitor_close(m);
	CHECK(access(path, F_OK) == 0, "other version's pin %s removed", path);
	unlink(path);
	rmdir(vdir);
	printf("other layout version left alone: ok\n");
}

static int capset_drop(void)
{
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	int caps[] = {CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN};
	int i;

	if (syscall(SYS_capget, &hdr, data) < 0)
		return -errno;
	for (i = 0; i < 3; i++) {
		data[caps[i] / 32].effective &= ~(1u << (caps[i] % 32));
		data[caps[i] / 32].permitted &= ~(1u << (caps[i] % 32));
		data[caps[i] / 32].inheritable &= ~(1u << (caps[i] % 32));
	}
	if (syscall(SYS_capset, &hdr, data) < 0)
		return -errno;
	return 0;
}

/* Exit codes of the unprivileged child. */
enum {
	NOPERM_OK = 0,
	NOPERM_CAPSET = 2,
	NOPERM_OPENED = 3,
	NOPERM_RC = 4,
	NOPERM_MSG = 5
};

static void test_not_permitted(void)
{
	const char *pd = tu_new_pin_dir();
	char err[512] = "";
	struct es_monitor *m = NULL;
	pid_t pid;
	int st, rc;

	REQUIRE(mkdir(pd, 0700) == 0, "mkdir %s: %s", pd, strerror(errno));
	REQUIRE(mount("bpffs", pd, "bpf", 0, "mode=0700") == 0,
		"mount bpffs on %s: %s", pd, strerror(errno));
	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		if (capset_drop() < 0)
			_exit(NOPERM_CAPSET);
		rc = es_monitor_open(pd, NULL, &m, err, sizeof(err));
		fprintf(stderr, "unprivileged open: rc %d: %s\n", rc, err);
		if (rc == 0)
			_exit(NOPERM_OPENED);
		if (rc != -EPERM)
			_exit(NOPERM_RC);
		if (!strstr(err, "not permitted"))
			_exit(NOPERM_MSG);
		_exit(NOPERM_OK);
	}
	st = tu_reap(pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == NOPERM_OK,
	      "unprivileged child: status %#x (2 capset, 3 opened, 4 wrong "
	      "rc, 5 wrong message)",
	      st);
	printf("bpf() not permitted: ok\n");
}

int main(void)
{
	struct es_monitor *m = tu_open(0);

	test_exited_before_register(m);
	test_stale_and_double(m);
	test_capacity();
	test_open_bad_pin_dirs();
	test_kernel_checks();
	test_layout_mismatch();
	test_other_version_left_alone();
	test_not_permitted();
	CHECK(es_monitor_list(m, NULL, 0) == 0, "registrations left");
	CHECK(es_monitor_count_exits(m) == 0, "exit records left");
	tu_finish();
}
