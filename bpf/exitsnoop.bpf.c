// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * exitsnoop: records the wait status of registered processes when their whole
 * thread group is dead, from the sched_process_exit raw tracepoint.
 *
 * The status is computed as wait_task_zombie() does: the group exit code when
 * the group was taken down together (exit_group, fatal signal), else the
 * leader's own exit code. Exits of single threads, of a leader that called
 * pthread_exit while other threads run on, and of the old leader replaced by
 * an execve from another thread (de_thread) are not exits of the process and
 * write nothing.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "exitsnoop.h"

#define SIGNAL_GROUP_EXIT 0x00000004 /* include/linux/sched/signal.h */

/* Set by the loader before load (see csrc/monitor_open.c). */
const volatile bool tp_has_group_dead = false; /* Linux >= 6.16 */
const volatile __u32 ident_kind = ES_IDENT_START_TICKS;
const volatile __u64 tick_ns = 10000000; /* NSEC_PER_SEC / USER_HZ */

/* struct pid gained the pidfs inode number in Linux 6.9. */
struct pid___pidfs {
	u64 ino;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536); /* resized by the loader */
	__type(key, struct es_key);
	__type(value, struct es_reg);
} registrations SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536); /* resized by the loader */
	__type(key, struct es_key);
	__type(value, struct es_exit);
} exits SEC(".maps");

/*
 * Exits of processes that were not registered (yet), newest kept. It closes
 * the registration race: a process that passes its tracepoint while user
 * space inserts its registration is found here instead of being lost.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ES_RECENT_EXITS);
	__type(key, struct es_key);
	__type(value, struct es_exit);
} recent SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, ES_WAKEUP_RING_BYTES);
} wakeups SEC(".maps");

static __always_inline __u64 process_ident(struct task_struct *leader)
{
	if (ident_kind == ES_IDENT_PIDFS_INO) {
		struct pid___pidfs *pid;

		if (!bpf_core_field_exists(pid->ino))
			return 0;
		pid = (void *)BPF_CORE_READ(leader, thread_pid);
		return BPF_CORE_READ(pid, ino);
	}
	/* execve from a non-leader copies the old leader's start time, so the
	 * identity of a process does not change across de_thread. */
	return BPF_CORE_READ(leader, start_boottime) / tick_ns;
}

SEC("raw_tracepoint/sched_process_exit")
int handle_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	struct task_struct *leader;
	struct es_exit rec = {};
	struct es_key key = {};
	bool group_dead;
	unsigned int flags;

	key.pid = BPF_CORE_READ(task, tgid);
	leader = BPF_CORE_READ(task, group_leader);
	if (tp_has_group_dead)
		group_dead = (bool)ctx->args[1];
	else
		/* do_exit() decrements live before the tracepoint; the thread
		 * that takes it to zero is the last one. */
		group_dead = BPF_CORE_READ(task, signal, live.counter) == 0;
	if (!group_dead)
		return 0;

	flags = BPF_CORE_READ(task, signal, flags);
	if (flags & SIGNAL_GROUP_EXIT)
		rec.status = BPF_CORE_READ(task, signal, group_exit_code);
	else
		rec.status = BPF_CORE_READ(leader, exit_code);
	rec.exit_ns = bpf_ktime_get_ns();
	key.ident = process_ident(leader);
	if (bpf_map_lookup_elem(&registrations, &key)) {
		bpf_map_update_elem(&exits, &key, &rec, BPF_ANY);
		/* Best effort: if the ring is full (no monitor reading), the
		 * pidfd still says when, and the record says how. */
		bpf_ringbuf_output(&wakeups, &key, sizeof(key), 0);
	} else
		bpf_map_update_elem(&recent, &key, &rec, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
