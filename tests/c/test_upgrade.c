// SPDX-License-Identifier: Apache-2.0
/*
 * Upgrade: pins of the previous layout version, with a registration of a
 * running process and the record of one that exited meanwhile, are taken
 * over by a monitor of this version; nothing is lost or misread.
 */
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "exitsnoop.h"
#include "testutil.h"

static int exit_code(void *arg)
{
	return (int)(long)arg;
}

static int old_map(const char *vdir, const char *name, uint32_t value_size)
{
	char path[512];
	int fd;

	fd = bpf_map_create(BPF_MAP_TYPE_HASH, name, sizeof(struct es_key),
			    value_size, 64, NULL);
	if (fd < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/%s", vdir, name);
	if (bpf_obj_pin(fd, path) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int main(void)
{
	const char *pd = tu_new_pin_dir();
	struct tu_child running = tu_spawn(exit_code, (void *)7);
	struct tu_child exited = tu_spawn(exit_code, (void *)5);
	struct es_exit rec = {.status = 5 << 8, .exit_ns = 1};
	struct es_reg reg = {.registered_ns = 1};
	struct es_key krun = {.pid = running.pid};
	struct es_key kexit = {.pid = exited.pid};
	struct es_exit_event ev;
	char vdir[512], err[256];
	uint64_t ident;
	int reg_fd, ex_fd, rc, st;
	struct es_monitor *m;

	REQUIRE(mkdir(pd, 0700) == 0, "mkdir %s", pd);
	REQUIRE(mount("bpffs", pd, "bpf", 0, "mode=0700") == 0, "mount bpffs");
	snprintf(vdir, sizeof(vdir), "%s/v%d", pd, ES_LAYOUT_VERSION - 1);
	REQUIRE(mkdir(vdir, 0700) == 0, "mkdir %s", vdir);

	/* What the previous version left: both registered, one exited with
	 * its record written by the old program. */
	REQUIRE(es_process_ident(running.pid, &ident, err, sizeof(err)) == 0,
		"%s", err);
	krun.ident = ident;
	REQUIRE(es_process_ident(exited.pid, &ident, err, sizeof(err)) == 0,
		"%s", err);
	kexit.ident = ident;
	reg_fd = old_map(vdir, "registrations", sizeof(struct es_reg));
	ex_fd = old_map(vdir, "exits", sizeof(struct es_exit));
	REQUIRE(reg_fd >= 0 && ex_fd >= 0, "old maps");
	REQUIRE(bpf_map_update_elem(reg_fd, &krun, &reg, 0) == 0 &&
			bpf_map_update_elem(reg_fd, &kexit, &reg, 0) == 0 &&
			bpf_map_update_elem(ex_fd, &kexit, &rec, 0) == 0,
		"old entries");
	close(reg_fd);
	close(ex_fd);
	tu_release(&exited);
	st = tu_reap(exited.pid);
	CHECK(st == (int)rec.status, "oracle: %#x", st);

	m = tu_open_at(pd, 0);
	rc = es_monitor_lookup(m, exited.pid, kexit.ident, &ev, err,
			       sizeof(err));
	CHECK(rc == 1 && ev.status == rec.status,
	      "record of the previous version lost: rc %d %s", rc, err);
	rc = es_monitor_lookup(m, running.pid, krun.ident, &ev, err,
			       sizeof(err));
	CHECK(rc == 0, "running process of the previous version: rc %d %s", rc,
	      err);
	tu_release(&running);
	rc = tu_collect(m, &ev, 1, 5000);
	st = tu_reap(running.pid);
	CHECK(rc == 1 && ev.pid == (uint32_t)running.pid && ev.err == 0 &&
		      ev.status == (uint32_t)st,
	      "exit after the upgrade: rc %d status %#x, waitpid %#x", rc,
	      ev.status, st);
	CHECK(access(vdir, F_OK) != 0, "old pins left at %s", vdir);
	es_monitor_forget(m, running.pid, krun.ident);
	es_monitor_forget(m, exited.pid, kexit.ident);
	CHECK(es_monitor_list(m, NULL, 0) == 0, "registrations left");
	printf("previous layout v%d taken over\n", ES_LAYOUT_VERSION - 1);
	tu_finish();
}
