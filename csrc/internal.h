/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by the C core's files; not part of the public API. */
#ifndef EMBEDSHIM_INTERNAL_H
#define EMBEDSHIM_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <linux/types.h>

#include "embedshim/monitor.h"
#include "exitsnoop.h"

/* A process being polled: its pidfd sits in the epoll set with the slot
 * index and generation as data, so an event for a slot that was forgotten
 * (and maybe reused) meanwhile is recognised and dropped. */
struct es_slot {
	int pidfd; /* -1 when free */
	uint32_t gen;
	struct es_key key;
};

#define ES_MAX_WOKEN 64

struct ring_buffer;

struct es_monitor {
	int reg_fd;	/* registrations map */
	int exits_fd;	/* exit-records map */
	int recent_fd;	/* LRU of unregistered exits */
	int wakeups_fd; /* ring buffer of recorded exits */
	struct ring_buffer *ring;
	/* Keys read from the ring by the current es_monitor_wait call. */
	struct es_key woken[ES_MAX_WOKEN];
	int nwoken;
	int epfd;
	int wakefd; /* eventfd in the epoll set; readable once woken */
	uint32_t capacity;

	pthread_mutex_t lock; /* guards slots */
	struct es_slot *slots;
	uint32_t nslots;
};

#define ES_WAKE_TOKEN UINT64_MAX
#define ES_RING_TOKEN (UINT64_MAX - 1)

/* printf into the caller's error buffer (may be NULL); returns rc. */
int es_err(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Take over the entries of older layout versions' pins under pin_dir
 * (see migrate.c); returns how many versions were migrated. */
int es_migrate_older(struct es_monitor *m, const char *pin_dir, char *err,
		     size_t errlen);

/* Is this kernel (release string, BTF file) able to run the monitor? */
int es_check_kernel(const char *release, const char *btf_path, char *err,
		    size_t errlen);

/* Identity kind this kernel supports (pidfs inode or start ticks). */
enum es_ident_kind es_ident_kind(void);

/* Identity of the process behind pidfd (pid is its number). */
int es_ident_of_pidfd(int pidfd, int pid, uint64_t *ident);

int es_pidfd_open(int pid);

/* Add a live pidfd to the epoll set; takes ownership of pidfd. With once,
 * a process polled already is not added again: -EEXIST. */
int es_track(struct es_monitor *m, int pidfd, const struct es_key *key,
	     bool once);

#endif /* EMBEDSHIM_INTERNAL_H */
