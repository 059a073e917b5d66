/* SPDX-License-Identifier: Apache-2.0 */
/*
 * embedshim exit monitor: tracks registered processes that are not our
 * children and reports how they exited, surviving restarts of the caller.
 *
 * When a process exits comes from its pidfd (polled with epoll); how it
 * exited comes from a BPF program on sched_process_exit that writes the wait
 * status into a map pinned in bpffs. The pins outlive the monitor, so exits
 * that happen while no monitor is open are found by es_monitor_lookup().
 *
 * Every function returning int returns 0 (or a count) on success and a
 * negative errno on failure; where it takes (err, errlen) it also writes a
 * message naming the cause.
 */
#ifndef EMBEDSHIM_MONITOR_H
#define EMBEDSHIM_MONITOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ES_DEFAULT_CAPACITY 65536u

struct es_monitor;

struct es_open_opts {
	/* Number of processes that can be tracked at once (registrations and
	 * exit records each). 0 means ES_DEFAULT_CAPACITY for new pins and,
	 * when existing pins are reopened, their capacity. Any other value
	 * that differs from the pins' is applied: the maps are made anew with
	 * it and every entry moved over; unless fewer than the processes
	 * tracked now, which keeps the pins' capacity (see
	 * es_monitor_refused_capacity). */
	uint32_t capacity;
	/* Another pin dir (e.g. a previous default location) whose pins, of
	 * this or an older layout, are taken over: registrations and exit
	 * records moved into this monitor's maps, the old program detached,
	 * the old pins removed and the bpffs mounted there unmounted. NULL or
	 * the pin dir itself: nothing to take over. */
	const char *take_over_dir;
};

/* A process, as the monitor knows it: host pid plus identity. */
struct es_proc {
	uint32_t pid;
	uint64_t ident;
};

struct es_exit_event {
	uint32_t pid;
	uint64_t ident;
	uint32_t status;  /* raw wait status, as waitpid(2) gives it */
	uint64_t exit_ns; /* CLOCK_MONOTONIC of the exit */
	int32_t err;	  /* 0, or -ENODATA if the process died unrecorded */
};

/*
 * Load and attach the BPF program and pin it with its maps under
 * pin_dir/v<layout>/, or reopen the pins left there by an earlier monitor.
 * A pin dir under /sys/fs/bpf/ is created in the host's bpffs (mounted there
 * if it is not); elsewhere a private bpffs (mode 0700) is mounted at pin_dir
 * unless it is on a bpffs already.
 */
int es_monitor_open(const char *pin_dir, const struct es_open_opts *opts,
		    struct es_monitor **out, char *err, size_t errlen);

/* Detach-free close: pins and records stay for the next es_monitor_open().
 * Must not race with es_monitor_wait(); call es_monitor_wake() first. */
void es_monitor_close(struct es_monitor *m);

/*
 * Pin the monitor's maps and link again wherever their pins went missing or
 * other objects were pinned in their place (by hand, or their bpffs was
 * unmounted), so that the next es_monitor_open, after a crash too, finds
 * the registrations and records. Returns how many pins were put back (0:
 * all in place) and names them in restored ("exits (removed), link
 * (replaced)"). Safe beside es_monitor_wait; not after es_monitor_close.
 */
int es_monitor_repin(struct es_monitor *m, char *restored, size_t len,
		     char *err, size_t errlen);

/* The pins es_monitor_open put back (pins that disagreed with the program
 * attached through the link pin), as es_monitor_repin names them; "" if
 * none. */
const char *es_monitor_restored_pins(const struct es_monitor *m);

/* Capacity of the open maps. */
uint32_t es_monitor_capacity(const struct es_monitor *m);

/* The capacity es_monitor_open was asked for and did not apply because more
 * processes than that were tracked (their number in *tracked, if not NULL);
 * 0 if it applied what it was asked. */
uint32_t es_monitor_refused_capacity(const struct es_monitor *m,
				     uint32_t *tracked);

/* Identity of a live (or zombie) process: pidfs inode where the kernel has
 * pidfs, else the start time in clock ticks. */
int es_process_ident(int pid, uint64_t *ident, char *err, size_t errlen);

/*
 * Start tracking pid. expect_ident, if not 0, must equal the process's
 * identity (guards against pid reuse). The identity is returned in
 * *ident_out. Errors: -ESRCH exited (or exited before registration
 * completed), -ESTALE not the expected process, -ENOSPC tracking capacity
 * reached, -EEXIST already registered, -EPERM not permitted.
 */
int es_monitor_register(struct es_monitor *m, int pid, uint64_t expect_ident,
			uint64_t *ident_out, char *err, size_t errlen);

/*
 * Like es_monitor_register with expect_ident 0, for the process behind the
 * caller's pidfd (pid is its pid), which the caller keeps: no pid-reuse race
 * between the caller's pidfd_open and the registration, and no other pidfd
 * opened. Errors as es_monitor_register, plus -EBADF (not a pidfd) and
 * -EINVAL (pidfd and pid name different processes).
 */
int es_monitor_register_pidfd(struct es_monitor *m, int pidfd, int pid,
			      uint64_t *ident_out, char *err, size_t errlen);

/*
 * Like es_monitor_register, for a process that may have exited already but
 * cannot have been reaped: the caller is its parent or subreaper and has not
 * waited for it. Its status then comes from the BPF program's record of
 * recent exits. Used by the exec helper.
 */
int es_monitor_adopt(struct es_monitor *m, int pid, uint64_t *ident_out,
		     char *err, size_t errlen);

/*
 * Run a detached command (`runc exec --detach --pid-file F ...`) as a child
 * subreaper, so the process it leaves behind cannot be reaped before its
 * registration: argv is the command, pid_file where it writes the pid, sync_fd
 * a socket to the registering side. Writes "<pid>\n" to sync_fd once the
 * command succeeded, waits for one byte (the registration is done) and
 * returns the exit code for the helper process: 0, or the command's own
 * failure code. The helper never reaps the process; when it exits, the
 * process is reparented to the nearest subreaper (the daemon's reaper, see
 * csrc/reaper.c, or init).
 */
int es_exec_helper(char **argv, const char *pid_file, int sync_fd);

/*
 * The reaper (csrc/reaper.c): run from a constructor when ES_REAPER_MODE_ENV
 * is set, before any Go code. The calling process stays as the front, forks
 * a child subreaper that re-executes /proc/self/exe with argv and
 * ES_REAPER_CHILD_ENV=1 as the daemon, forwards signals to it, reaps every
 * orphan of its tree at once, and returns only on set-up failure (otherwise
 * the front exits with the daemon's status).
 */
#define ES_REAPER_MODE_ENV "EMBEDSHIM_REAPER_MODE"
#define ES_REAPER_CHILD_ENV "EMBEDSHIM_REAPER_CHILD"
int es_reaper_run(char **argv);
/* Name the calling thread (the main thread: comm) after argv0's basename. */
void es_reaper_name(const char *argv0);

/*
 * Block until registered processes exit (timeout_ms < 0: forever) and return
 * up to max of them; each registered process is returned once. Returns the
 * count, 0 on timeout, -ECANCELED once es_monitor_wake() was called.
 */
int es_monitor_wait(struct es_monitor *m, struct es_exit_event *evs, int max,
		    int timeout_ms);

/* Make es_monitor_wait() return -ECANCELED, now and from then on. */
void es_monitor_wake(struct es_monitor *m);

/*
 * For a process registered by an earlier monitor: if it exited, fill *ev
 * and return 1; if it still runs, poll it again (its exit will come from
 * es_monitor_wait) and return 0. -ENOENT if it is not registered.
 */
int es_monitor_lookup(struct es_monitor *m, int pid, uint64_t ident,
		      struct es_exit_event *ev, char *err, size_t errlen);

/*
 * The exit of an unregistered process known only by its pid (it was reaped
 * before its identity could be read): the newest exit of pid at or after
 * since_ns (CLOCK_MONOTONIC, a time the process was known to be alive) among
 * the BPF program's recent exits. Fills *ev, removes it there and returns 1;
 * 0 if there is none (never exited, or dropped: more than ES_RECENT_EXITS
 * unregistered exits followed).
 */
int es_monitor_find_recent(struct es_monitor *m, int pid, uint64_t since_ns,
			   struct es_exit_event *ev);

/* Stop tracking and delete the registration and any exit record. */
int es_monitor_forget(struct es_monitor *m, int pid, uint64_t ident);

/* Up to max registrations in the pinned maps; returns the count. */
int es_monitor_list(struct es_monitor *m, struct es_proc *procs, int max);

/* Number of exit records in the pinned maps. */
int es_monitor_count_exits(struct es_monitor *m);

/* Remove the pins of every layout version under pin_dir (which detaches the
 * program once no monitor holds it), unmount the bpffs mounted at pin_dir,
 * if any, and remove pin_dir. A missing pin_dir is no error. For tests and
 * uninstall; stop the monitor's user first. */
int es_pins_destroy(const char *pin_dir, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* EMBEDSHIM_MONITOR_H */
