// SPDX-License-Identifier: Apache-2.0
/*
 * Finding the exit of a process that was never registered, by its pid.
 *
 * A container init that is killed between `runc create` and its registration
 * (an OCI runtime wrapper may do that on purpose) is reaped by the daemon's
 * reaper before anyone opened a pidfd on it: its identity can no longer be
 * read, only its pid is known (from runc's pid file). The BPF program filed
 * its exit under "recent", keyed by pid and identity; this looks it up by pid
 * alone, among the exits at or after a time the caller knows the process was
 * alive (the start of `runc create`), so an older process that had the same
 * pid is never taken for it.
 */
#include <errno.h>

#include <bpf/bpf.h>

#include "internal.h"

int es_monitor_find_recent(struct es_monitor *m, int pid, uint64_t since_ns,
			   struct es_exit_event *ev)
{
	struct es_key key, next, best = {0};
	struct es_exit rec, best_rec = {0};
	bool first = true, found = false;
	int steps;

	if (pid <= 0)
		return -EINVAL;
	/* Bounded: a key evicted under us restarts the walk at the start. */
	for (steps = 0; steps < 2 * ES_RECENT_EXITS; steps++) {
		if (bpf_map_get_next_key(m->recent_fd, first ? NULL : &key,
					 &next) != 0)
			break;
		first = false;
		key = next;
		if (key.pid != (uint32_t)pid)
			continue;
		if (bpf_map_lookup_elem(m->recent_fd, &key, &rec) != 0)
			continue; /* evicted meanwhile */
		if (rec.exit_ns < since_ns)
			continue;
		if (!found || rec.exit_ns > best_rec.exit_ns) {
			best = key;
			best_rec = rec;
			found = true;
		}
	}
	if (!found)
		return 0;
	/* Taken: it is nobody else's, and must not be found twice. */
	bpf_map_delete_elem(m->recent_fd, &best);
	*ev = (struct es_exit_event){
		.pid = best.pid,
		.ident = best.ident,
		.status = best_rec.status,
		.exit_ns = best_rec.exit_ns,
	};
	return 1;
}
