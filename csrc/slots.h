/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The table of processes being polled: slots indexed by a small number (the
 * epoll data carries the index and the slot's generation) and found by key
 * {pid, identity} through a hash, so that an exit, a lookup and a forget
 * cost O(1) however many processes are tracked. Not locked: the monitor
 * holds its lock around every call.
 */
#ifndef EMBEDSHIM_SLOTS_H
#define EMBEDSHIM_SLOTS_H

#include <stdint.h>
#include <linux/types.h>

#include "exitsnoop.h"

struct es_slot {
	int pidfd;    /* -1 when free */
	uint32_t gen; /* bumped on release: stale epoll events are dropped */
	int32_t next; /* next slot in the same hash bucket, or free list */
	struct es_key key;
};

struct es_slots {
	struct es_slot *slot;
	uint32_t n;	 /* slots allocated; grows, never shrinks */
	int32_t *bucket; /* heads of the hash chains, n of them */
	int32_t free;	 /* head of the free list, -1 if none */
	uint32_t used;
};

void es_slots_init(struct es_slots *t);
void es_slots_free(struct es_slots *t);

/* Index of the slot polling key, or -1. */
int es_slots_find(const struct es_slots *t, const struct es_key *key);

/* Take a free slot for key and pidfd; its index, or -ENOMEM. */
int es_slots_insert(struct es_slots *t, const struct es_key *key, int pidfd);

/* Free slot i (in use); returns its pidfd, which the caller closes. */
int es_slots_remove(struct es_slots *t, uint32_t i);

/* Bucket of key in a table of n slots (n a power of two). */
uint32_t es_slots_bucket(const struct es_key *key, uint32_t n);

#endif /* EMBEDSHIM_SLOTS_H */
