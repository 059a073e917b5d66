/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Map layouts shared by the exitsnoop BPF program and the C core.
 *
 * Both maps are keyed by the process (its host pid plus an identity), not by
 * the pid alone: pids are reused, and a record must never be attributed to a
 * later process that happens to get the same pid.
 *
 * Changing anything in this file changes the pinned layout: bump
 * ES_LAYOUT_VERSION so that a binary never misreads pins of another layout
 * (the version is part of the pin path).
 */
#ifndef EMBEDSHIM_EXITSNOOP_H
#define EMBEDSHIM_EXITSNOOP_H

#define ES_LAYOUT_VERSION 3

/* Capacity of the LRU of unregistered exits (see exitsnoop.bpf.c): it only
 * has to outlive the microseconds of a registration. */
#define ES_RECENT_EXITS 4096

/* Ring buffer of struct es_key, one per recorded exit of a registered
 * process: wakes user space at the exit itself, before the pidfd is readable
 * (a pid namespace's init only becomes a zombie once every other process of
 * the namespace has been reaped, which the host's init may do late). */
#define ES_WAKEUP_RING_BYTES (256 * 1024)

/* How a process is identified, chosen at load time (see es_ident_kind()). */
enum es_ident_kind {
	/* pidfs inode number of the process's struct pid (Linux >= 6.9): exact,
	 * unique per process per boot; equals fstat(pidfd).st_ino. */
	ES_IDENT_PIDFS_INO = 1,
	/* start time in clock ticks, as /proc/<pid>/stat field 22 gives it. */
	ES_IDENT_START_TICKS = 2,
};

struct es_key {
	__u32 pid; /* tgid in the initial pid namespace */
	__u32 _pad;
	__u64 ident; /* see enum es_ident_kind */
};

/* Value of the registrations map; nothing is needed beyond the key yet. */
struct es_reg {
	__u64 registered_ns; /* CLOCK_MONOTONIC at registration */
};

/* Value of the exit-records map: what waitpid() would have returned. */
struct es_exit {
	__u32 status; /* wait status, as in waitpid(2) */
	__u32 _pad;
	__u64 exit_ns; /* CLOCK_MONOTONIC when the thread group died */
};

#endif /* EMBEDSHIM_EXITSNOOP_H */
