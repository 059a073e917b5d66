// SPDX-License-Identifier: Apache-2.0
/* The key -> slot table of polled processes (see slots.h). */
#include <errno.h>
#include <stdlib.h>

#include "slots.h"

#define ES_SLOTS_MIN 64

/* One bucket per slot keeps chains short (load factor <= 1). pids are
 * dense and identities (inode numbers, start ticks) close together, so
 * both are mixed (splitmix64's finaliser) before taking the low bits. */
uint32_t es_slots_bucket(const struct es_key *key, uint32_t n)
{
	uint64_t x = key->ident ^ ((uint64_t)key->pid << 32 | key->pid);

	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return (uint32_t)x & (n - 1);
}

static void link_bucket(struct es_slots *t, uint32_t i)
{
	uint32_t b = es_slots_bucket(&t->slot[i].key, t->n);

	t->slot[i].next = t->bucket[b];
	t->bucket[b] = i;
}

/* Double the table (n stays a power of two) and rehash the used slots. */
static int grow(struct es_slots *t)
{
	uint32_t n = t->n ? t->n * 2 : ES_SLOTS_MIN, old, i;
	struct es_slot *s;
	int32_t *b;

	b = malloc(n * sizeof(*b));
	s = b ? realloc(t->slot, n * sizeof(*s)) : NULL;
	if (!s) {
		free(b);
		return -ENOMEM;
	}
	free(t->bucket);
	t->slot = s;
	t->bucket = b;
	for (i = 0; i < n; i++)
		b[i] = -1;
	/* New slots go on the free list, lowest index first. */
	for (i = n; i-- > t->n;) {
		s[i] = (struct es_slot){.pidfd = -1, .next = t->free};
		t->free = i;
	}
	old = t->n;
	t->n = n;
	for (i = 0; i < old; i++)
		if (s[i].pidfd >= 0)
			link_bucket(t, i);
	return 0;
}

void es_slots_init(struct es_slots *t)
{
	*t = (struct es_slots){.free = -1};
}

void es_slots_free(struct es_slots *t)
{
	free(t->slot);
	free(t->bucket);
	es_slots_init(t);
}

int es_slots_find(const struct es_slots *t, const struct es_key *key)
{
	int32_t i;

	if (!t->n)
		return -1;
	for (i = t->bucket[es_slots_bucket(key, t->n)]; i >= 0;
	     i = t->slot[i].next)
		if (t->slot[i].key.pid == key->pid &&
		    t->slot[i].key.ident == key->ident)
			return i;
	return -1;
}

int es_slots_insert(struct es_slots *t, const struct es_key *key, int pidfd)
{
	int32_t i;
	int rc;

	if (t->free < 0 && (rc = grow(t)) < 0)
		return rc;
	i = t->free;
	t->free = t->slot[i].next;
	t->slot[i].pidfd = pidfd;
	t->slot[i].key = *key;
	link_bucket(t, i);
	t->used++;
	return i;
}

int es_slots_remove(struct es_slots *t, uint32_t i)
{
	int32_t *p = &t->bucket[es_slots_bucket(&t->slot[i].key, t->n)];
	int pidfd = t->slot[i].pidfd;

	while (*p != (int32_t)i)
		p = &t->slot[*p].next;
	*p = t->slot[i].next;
	t->slot[i].pidfd = -1;
	t->slot[i].gen++;
	t->slot[i].next = t->free;
	t->free = i;
	t->used--;
	return pidfd;
}
