// SPDX-License-Identifier: Apache-2.0
/*
 * Moving pins: a monitor opened with take_over_dir set to the pins' previous
 * location (the old default, a private bpffs mounted at <plugin root>/bpf)
 * takes over their registrations and exit records, detaches the old program
 * and removes the old location, mount included; exits after the move are
 * delivered by the new monitor.
 */
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "exitsnoop.h"
#include "testutil.h"

static int exit_code(void *arg)
{
	return (int)(long)arg;
}

int main(void)
{
	/* <root>/bpf as the old default had it: its parent is a plain dir. */
	const char *old_dir = tu_new_pin_dir();
	const char *new_dir = tu_new_pin_dir();
	struct tu_child running = tu_spawn(exit_code, (void *)7);
	struct tu_child exited = tu_spawn(exit_code, (void *)5);
	struct es_open_opts opts = {.take_over_dir = old_dir};
	struct es_exit_event ev;
	uint64_t id_run, id_exit;
	char err[256] = "";
	struct es_monitor *m;
	char old_vdir[600];
	uint32_t old_link;
	int rc, st;

	/* The previous daemon: both registered, one exits while it is down. */
	m = tu_open_at(old_dir, 0);
	REQUIRE(es_monitor_register(m, running.pid, 0, &id_run, err,
				    sizeof(err)) == 0,
		"%s", err);
	REQUIRE(es_monitor_register(m, exited.pid, 0, &id_exit, err,
				    sizeof(err)) == 0,
		"%s", err);
	tu_close(m);
	tu_release(&exited);
	st = tu_reap(exited.pid);
	CHECK(st == 5 << 8, "oracle: %#x", st);
	snprintf(old_vdir, sizeof(old_vdir), "%s/v%d", old_dir,
		 ES_LAYOUT_VERSION);
	old_link = tu_link_id(old_vdir);
	REQUIRE(old_link, "no link pinned at %s", old_dir);

	/* The new daemon, at its new location. */
	m = NULL;
	rc = es_monitor_open(new_dir, &opts, &m, err, sizeof(err));
	REQUIRE(rc == 0, "open with take_over_dir: %d %s", rc, err);
	CHECK(access(old_dir, F_OK) != 0, "old pin dir %s still there",
	      old_dir);
	CHECK(tu_link_gone(old_link), "old program's link %u still exists",
	      old_link);
	CHECK(es_monitor_list(m, NULL, 0) == 2, "registrations: %d",
	      es_monitor_list(m, NULL, 0));
	rc = es_monitor_lookup(m, exited.pid, id_exit, &ev, err, sizeof(err));
	CHECK(rc == 1 && ev.status == 5 << 8 && ev.err == 0,
	      "record written before the move: rc %d status %#x %s", rc,
	      ev.status, err);
	rc = es_monitor_lookup(m, running.pid, id_run, &ev, err, sizeof(err));
	CHECK(rc == 0, "running process: rc %d %s", rc, err);
	tu_release(&running);
	rc = tu_collect(m, &ev, 1, 5000);
	st = tu_reap(running.pid);
	CHECK(rc == 1 && ev.pid == (uint32_t)running.pid && ev.err == 0 &&
		      ev.status == (uint32_t)st && st == 7 << 8,
	      "exit after the move: rc %d status %#x, waitpid %#x", rc,
	      ev.status, st);
	CHECK(es_monitor_forget(m, running.pid, id_run) == 0, "forget");
	CHECK(es_monitor_forget(m, exited.pid, id_exit) == 0, "forget");
	es_monitor_close(m);

	/* Taking over the pin dir itself, or one that is gone: nothing. */
	opts.take_over_dir = new_dir;
	rc = es_monitor_open(new_dir, &opts, &m, err, sizeof(err));
	CHECK(rc == 0, "take over itself: %d %s", rc, err);
	if (rc == 0)
		es_monitor_close(m);
	opts.take_over_dir = old_dir;
	rc = es_monitor_open(new_dir, &opts, &m, err, sizeof(err));
	CHECK(rc == 0, "take over a removed dir: %d %s", rc, err);
	if (rc == 0)
		es_monitor_close(m);
	printf("pins taken over from %s, old location removed\n", old_dir);
	tu_finish();
}
