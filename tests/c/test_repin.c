// SPDX-License-Identifier: Apache-2.0
/*
 * Pins removed or replaced by hand, their bpffs unmounted, the program
 * detached by removing its link pin. While a monitor is open it puts its
 * own objects back (es_monitor_repin); an opening monitor makes the pins
 * agree with the program attached through the link pin, or attaches a new
 * program to the maps left pinned. Every exit recorded stays readable by
 * the next monitor; only an exit while no program was attached has no
 * record.
 */
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "internal.h"
#include "testutil.h"

static int exit_code(void *arg)
{
	return (int)(long)arg;
}

static char vdir[600];

static void pin_path(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", vdir, name);
}

static void remove_pin(const char *name)
{
	char path[700];

	pin_path(path, sizeof(path), name);
	REQUIRE(unlink(path) == 0, "unlink %s: %s", path, strerror(errno));
}

/* Pin a map of the right layout but not the program's at name. */
static void replace_pin(const char *name)
{
	char path[700];
	int fd;

	remove_pin(name);
	fd = bpf_map_create(BPF_MAP_TYPE_HASH, name, sizeof(struct es_key),
			    sizeof(struct es_exit), 16, NULL);
	REQUIRE(fd >= 0, "bpf_map_create: %s", strerror(errno));
	pin_path(path, sizeof(path), name);
	REQUIRE(bpf_obj_pin(fd, path) == 0, "pin %s: %s", path,
		strerror(errno));
	close(fd);
}

static void check_repin(struct es_monitor *m, int want, const char *names)
{
	char restored[256] = "", err[256] = "";
	int rc;

	rc = es_monitor_repin(m, restored, sizeof(restored), err, sizeof(err));
	CHECK(rc == want && strcmp(restored, names) == 0,
	      "repin: %d \"%s\" (%s), want %d \"%s\"", rc, restored, err, want,
	      names);
}

/* The exit of c, registered as id, as the monitor m finds it. */
static void check_record(struct es_monitor *m, struct tu_child *c, uint64_t id,
			 int code, const char *when)
{
	struct es_exit_event ev = {0};
	char err[256] = "";
	int rc, st;

	rc = es_monitor_lookup(m, c->pid, id, &ev, err, sizeof(err));
	st = tu_reap(c->pid);
	CHECK(st == code << 8, "%s: oracle %#x", when, st);
	CHECK(rc == 1 && ev.err == 0 && ev.status == (uint32_t)st,
	      "%s: lookup rc %d status %#x err %d (%s), waitpid %#x", when, rc,
	      ev.status, ev.err, err, st);
	CHECK(es_monitor_forget(m, c->pid, id) == 0, "%s: forget", when);
}

/* Let c exit now and wait until it has (a zombie: its status stays). */
static void exit_now(struct tu_child *c)
{
	tu_release(c);
	REQUIRE(tu_wait_zombie(c->pid, 5000) == 0, "child %d not a zombie",
		c->pid);
}

static void track(struct es_monitor *m, struct tu_child *c, uint64_t *id)
{
	char err[256] = "";

	REQUIRE(es_monitor_register(m, c->pid, 0, id, err, sizeof(err)) == 0,
		"register: %s", err);
}

int main(void)
{
	const char *pd = tu_pin_dir();
	struct tu_child a, b, c, d, e;
	uint64_t ida, idb, idc, idd, ide;
	struct es_exit_event ev;
	struct es_monitor *m;
	uint32_t link, prog;
	int rc, st;

	/* Forked before any monitor is open: a child holding a copy of the
	 * link's fd would keep the program attached. */
	a = tu_spawn(exit_code, (void *)3);
	b = tu_spawn(exit_code, (void *)4);
	c = tu_spawn(exit_code, (void *)5);
	d = tu_spawn(exit_code, (void *)6);
	e = tu_spawn(exit_code, (void *)7);
	snprintf(vdir, sizeof(vdir), "%s/v%d", pd, ES_LAYOUT_VERSION);
	m = tu_open(0);
	track(m, &a, &ida);
	track(m, &b, &idb);
	track(m, &c, &idc);
	track(m, &d, &idd);
	CHECK(strcmp(es_monitor_restored_pins(m), "") == 0,
	      "fresh pins restored: %s", es_monitor_restored_pins(m));
	check_repin(m, 0, "");

	/* While the monitor is open. */
	remove_pin("exits");
	remove_pin("link");
	check_repin(m, 2, "exits (removed), link (removed)");
	replace_pin("registrations");
	check_repin(m, 1, "registrations (replaced)");
	check_repin(m, 0, "");
	REQUIRE(umount2(pd, MNT_DETACH) == 0, "umount %s: %s", pd,
		strerror(errno));
	check_repin(m, 5,
		    "registrations (removed), exits (removed), recent "
		    "(removed), wakeups (removed), link (removed)");
	CHECK(es_is_bpffs(pd), "%s not a bpffs again", pd);

	/* The pins put back are the ones the next monitor reads: a exits
	 * while none is open. */
	tu_close(m);
	exit_now(&a);
	m = tu_open(0);
	CHECK(strcmp(es_monitor_restored_pins(m), "") == 0,
	      "restored at open: %s", es_monitor_restored_pins(m));
	check_record(m, &a, ida, 3, "exit after repin, monitor closed");

	/* Replaced while no monitor is open: the program's maps win. */
	tu_close(m);
	replace_pin("exits");
	exit_now(&b);
	m = tu_open(0);
	CHECK(strcmp(es_monitor_restored_pins(m), "exits (replaced)") == 0,
	      "restored at open: \"%s\"", es_monitor_restored_pins(m));
	check_record(m, &b, idb, 4, "exit while a foreign map was pinned");

	/* The link pin removed while no monitor is open detaches the
	 * program. Exits recorded before stay; one after has no record. */
	tu_close(m);
	exit_now(&c);
	link = tu_link_id(vdir);
	prog = tu_link_prog(link);
	remove_pin("link");
	/* The id goes first; the program is detached and put after it. */
	CHECK(tu_link_gone(link) && tu_prog_gone(prog),
	      "link %u or program %u still exists: attached", link, prog);
	exit_now(&d);

	m = tu_open(0);
	CHECK(tu_link_id(vdir) && tu_link_id(vdir) != link, "no new link: %u",
	      tu_link_id(vdir));
	check_record(m, &c, idc, 5, "exit before the program was detached");
	memset(&ev, 0, sizeof(ev));
	rc = es_monitor_lookup(m, d.pid, idd, &ev, NULL, 0);
	if (rc == 0)
		rc = tu_collect(m, &ev, 1, 5000);
	st = tu_reap(d.pid);
	CHECK(rc == 1 && ev.err != 0,
	      "exit while detached: rc %d err %d status %#x (waitpid %#x): "
	      "want no record",
	      rc, ev.err, ev.status, st);
	es_monitor_forget(m, d.pid, idd);

	/* The new program records. */
	track(m, &e, &ide);
	tu_release(&e);
	rc = tu_collect(m, &ev, 1, 5000);
	st = tu_reap(e.pid);
	CHECK(rc == 1 && ev.err == 0 && ev.status == (uint32_t)st &&
		      st == 7 << 8,
	      "exit after reattach: rc %d status %#x err %d, waitpid %#x", rc,
	      ev.status, ev.err, st);
	es_monitor_forget(m, e.pid, ide);
	CHECK(es_monitor_list(m, NULL, 0) == 0, "registrations left: %d",
	      es_monitor_list(m, NULL, 0));
	CHECK(es_monitor_count_exits(m) == 0, "records left: %d",
	      es_monitor_count_exits(m));
	tu_finish();
}
