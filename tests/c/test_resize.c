// SPDX-License-Identifier: Apache-2.0
/*
 * Capacity changes at reopen: pins made with one capacity are moved to maps
 * of the capacity asked (smaller or larger) with every registration and
 * exit record kept and the old program detached; a shrink below the
 * processes tracked is refused and reported; capacity 0 keeps the pinned
 * one; a capacity the kernel refuses leaves the old pins; a resize a crash
 * interrupted (after the rename, or after the new load and part of the
 * move) is finished by the next open; pin removal removes set-aside pins.
 */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "internal.h"
#include "testutil.h"

#define N 10

struct proc {
	struct tu_child c;
	uint64_t id;
	bool exited, forgotten;
};

static struct proc procs[N];
static char vdir[512], rdir[528];

static int exit_code(void *arg)
{
	return (int)(long)arg;
}

static int code_of(int i)
{
	return 10 + i;
}

/* Let process i exit with its code and wait until its record is written
 * (it is a zombie then); reaped at once, the oracle checked. */
static void finish_proc(int i)
{
	int st;

	tu_release(&procs[i].c);
	REQUIRE(tu_wait_zombie(procs[i].c.pid, 5000) == 0, "%d not a zombie",
		i);
	st = tu_reap(procs[i].c.pid);
	CHECK(st == code_of(i) << 8, "oracle %d: %#x", i, st);
	procs[i].exited = true;
}

static int live_count(void)
{
	int i, n = 0;

	for (i = 0; i < N; i++)
		n += !procs[i].forgotten;
	return n;
}

static int exited_count(void)
{
	int i, n = 0;

	for (i = 0; i < N; i++)
		n += !procs[i].forgotten && procs[i].exited;
	return n;
}

/* Every registration and record is there: exited processes with their
 * status, running ones re-polled. */
static void check_kept(struct es_monitor *m, const char *when)
{
	struct es_exit_event ev;
	char err[256] = "";
	int i, rc;

	CHECK(es_monitor_list(m, NULL, 0) == live_count(),
	      "%s: registrations %d, want %d", when,
	      es_monitor_list(m, NULL, 0), live_count());
	CHECK(es_monitor_count_exits(m) == exited_count(),
	      "%s: exit records %d, want %d", when, es_monitor_count_exits(m),
	      exited_count());
	for (i = 0; i < N; i++) {
		if (procs[i].forgotten)
			continue;
		memset(&ev, 0, sizeof(ev));
		rc = es_monitor_lookup(m, procs[i].c.pid, procs[i].id, &ev, err,
				       sizeof(err));
		if (procs[i].exited)
			CHECK(rc == 1 && ev.err == 0 &&
				      ev.status == (uint32_t)code_of(i) << 8,
			      "%s: record of %d: rc %d status %#x %s", when, i,
			      rc, ev.status, err);
		else
			CHECK(rc == 0, "%s: running %d: rc %d %s", when, i, rc,
			      err);
	}
	CHECK(access(rdir, F_OK) != 0, "%s: %s left", when, rdir);
}

/* A running process exits: delivered once by m (which polls it since
 * check_kept's lookup), with its status. */
static void check_delivered(struct es_monitor *m, int i)
{
	struct es_exit_event ev;
	int rc;

	tu_release(&procs[i].c);
	rc = tu_collect(m, &ev, 1, 5000);
	CHECK(rc == 1 && ev.pid == (uint32_t)procs[i].c.pid && ev.err == 0 &&
		      ev.status == (uint32_t)code_of(i) << 8,
	      "delivery of %d: rc %d pid %u status %#x", i, rc, ev.pid,
	      ev.status);
	CHECK(tu_reap(procs[i].c.pid) == code_of(i) << 8, "oracle %d", i);
	procs[i].exited = true;
}

static struct es_monitor *open_checked(uint32_t asked, uint32_t want,
				       uint32_t refused, const char *when)
{
	struct es_monitor *m = tu_open(asked);
	uint32_t tracked = 0, r;

	r = es_monitor_refused_capacity(m, &tracked);
	CHECK(es_monitor_capacity(m) == want, "%s: capacity %u, want %u", when,
	      es_monitor_capacity(m), want);
	CHECK(r == refused, "%s: refused %u, want %u", when, r, refused);
	if (refused)
		CHECK(tracked == (uint32_t)live_count(),
		      "%s: tracked %u, want %d", when, tracked, live_count());
	return m;
}

/* A crash right after step 1 of a resize. */
static void set_aside(void)
{
	REQUIRE(rename(vdir, rdir) == 0, "rename %s: %s", vdir,
		strerror(errno));
}

/* A crash in step 3 of a resize, after the registrations moved. */
static void copy_registrations(void)
{
	char from[600], to[600];
	struct es_key key, next;
	struct es_reg reg;
	void *prev = NULL;
	int ffd, tfd;

	snprintf(from, sizeof(from), "%s/registrations", rdir);
	snprintf(to, sizeof(to), "%s/registrations", vdir);
	ffd = bpf_obj_get(from);
	tfd = bpf_obj_get(to);
	REQUIRE(ffd >= 0 && tfd >= 0, "open registrations");
	while (bpf_map_get_next_key(ffd, prev, &next) == 0) {
		if (bpf_map_lookup_elem(ffd, &next, &reg) == 0)
			CHECK(bpf_map_update_elem(tfd, &next, &reg, 0) == 0,
			      "copy registration");
		key = next;
		prev = &key;
	}
	close(ffd);
	close(tfd);
}

int main(void)
{
	const char *pd = tu_pin_dir();
	struct es_open_opts opts = {.capacity = UINT32_MAX};
	struct es_monitor *m;
	char err[256] = "";
	uint32_t old_link;
	int i, rc, fds0;

	snprintf(vdir, sizeof(vdir), "%s/v%d", pd, ES_LAYOUT_VERSION);
	snprintf(rdir, sizeof(rdir), "%s" ES_RESIZE_SUFFIX, vdir);

	/* Forked before any monitor: a child would hold the old link's fd
	 * and keep the old program attached. */
	for (i = 0; i < N; i++)
		procs[i].c = tu_spawn(exit_code, (void *)(long)code_of(i));
	fds0 = tu_count_fds() - N; /* the go pipes are closed on release */

	/* 10 registered with capacity 64: 4 exit unconsumed while it is
	 * open, 2 while it is closed. */
	m = open_checked(64, 64, 0, "first open");
	for (i = 0; i < N; i++) {
		rc = es_monitor_register(m, procs[i].c.pid, 0, &procs[i].id,
					 err, sizeof(err));
		REQUIRE(rc == 0, "register %d: %s", i, err);
	}
	for (i = 0; i < 4; i++)
		finish_proc(i);
	tu_close(m);
	for (i = 4; i < 6; i++)
		finish_proc(i);
	old_link = tu_link_id(vdir);

	/* Shrink to 32: everything kept, the old program detached. */
	m = open_checked(32, 32, 0, "shrink to 32");
	check_kept(m, "shrink to 32");
	CHECK(tu_link_gone(old_link), "old link %u still there", old_link);
	check_delivered(m, 6);
	for (i = 0; i < 7; i++) {
		CHECK(es_monitor_forget(m, procs[i].c.pid, procs[i].id) == 0,
		      "forget %d", i);
		procs[i].forgotten = true;
	}
	tu_close(m);

	/* 3 tracked: 2 does not fit, 32 is kept and the refusal said. */
	old_link = tu_link_id(vdir);
	m = open_checked(2, 32, 2, "shrink to 2");
	check_kept(m, "shrink to 2");
	CHECK(tu_link_id(vdir) == old_link, "pins remade though not resized");
	tu_close(m);
	m = open_checked(0, 32, 0, "capacity 0");
	tu_close(m);

	/* Up to the default and back: two sets coexist during each move. */
	m = open_checked(ES_DEFAULT_CAPACITY, ES_DEFAULT_CAPACITY, 0,
			 "grow to the default");
	check_kept(m, "grow to the default");
	tu_close(m);
	m = open_checked(32, 32, 0, "back to 32");
	tu_close(m);

	/* Maps the kernel refuses to make: the open fails naming the
	 * capacity, the old pins stay as they were. */
	old_link = tu_link_id(vdir);
	m = NULL;
	rc = es_monitor_open(pd, &opts, &m, err, sizeof(err));
	CHECK(rc < 0 && strstr(err, "4294967295"),
	      "capacity UINT32_MAX: rc %d %s", rc, err);
	if (rc == 0)
		es_monitor_close(m);
	CHECK(tu_link_id(vdir) == old_link,
	      "old pins replaced by a failed resize");
	m = open_checked(0, 32, 0, "after a refused load");
	check_kept(m, "after a refused load");
	tu_close(m);

	/* A crash after the rename; an exit meanwhile is recorded by the
	 * old program, in the set-aside maps. */
	set_aside();
	finish_proc(7);
	m = open_checked(0, 32, 0, "crash after the rename");
	check_kept(m, "crash after the rename");
	CHECK(tu_link_gone(old_link), "set-aside link %u still there",
	      old_link);
	tu_close(m);

	/* A crash after the new load (capacity 16) and the move of the
	 * registrations; then opened with yet another capacity. */
	set_aside();
	REQUIRE(es_load_and_pin(vdir, 16, false, NULL, err, sizeof(err)) == 0,
		"%s", err);
	copy_registrations();
	finish_proc(8);
	m = open_checked(24, 24, 0, "crash during the move");
	check_kept(m, "crash during the move");
	check_delivered(m, 9);
	for (i = 7; i < N; i++) {
		CHECK(es_monitor_forget(m, procs[i].c.pid, procs[i].id) == 0,
		      "forget %d", i);
		procs[i].forgotten = true;
	}
	CHECK(es_monitor_list(m, NULL, 0) == 0, "registrations left");
	CHECK(es_monitor_count_exits(m) == 0, "exit records left");
	tu_close(m);
	CHECK(tu_count_fds() == fds0, "fds: %d, before: %d", tu_count_fds(),
	      fds0);

	/* Uninstall finds set-aside pins too. */
	set_aside();
	rc = es_pins_destroy(pd, err, sizeof(err));
	CHECK(rc == 0 && access(pd, F_OK) != 0, "pins destroy: rc %d %s", rc,
	      err);
	printf("resized 64 -> 32 -> 65536 -> 32 -> 24, shrink to 2 refused, "
	       "interrupted resizes finished\n");
	tu_finish();
}
