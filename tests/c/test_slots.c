// SPDX-License-Identifier: Apache-2.0
/*
 * The key -> slot table of polled processes, alone: keys that share a pid,
 * an identity or a hash bucket, random inserts and removes checked against
 * a plain array, and growth to the default capacity and back.
 */
#include <stdint.h>

#include "slots.h"
#include "testutil.h"

/* The reference: what the table must say. */
#define REF_MAX 8192
static struct {
	struct es_key key;
	int idx;
} ref[REF_MAX];
static int nref;

static void check_all(struct es_slots *t, const char *when)
{
	int i, found, bad = 0;

	for (i = 0; i < nref; i++) {
		found = es_slots_find(t, &ref[i].key);
		if (found != ref[i].idx || t->slot[found].pidfd != i + 1000)
			bad++;
	}
	CHECK(!bad, "%s: %d of %d keys not found at their slot", when, bad,
	      nref);
	CHECK(t->used == (uint32_t)nref, "%s: used %u, want %d", when, t->used,
	      nref);
}

static void ref_insert(struct es_slots *t, struct es_key key)
{
	ref[nref].key = key;
	ref[nref].idx = es_slots_insert(t, &key, nref + 1000);
	CHECK(ref[nref].idx >= 0, "insert: %d", ref[nref].idx);
	nref++;
}

/* Remove ref[i]; the last entry takes its place (and its pidfd tag). */
static void ref_remove(struct es_slots *t, int i)
{
	int fd = es_slots_remove(t, ref[i].idx);

	CHECK(fd == i + 1000, "remove returned pidfd %d, want %d", fd,
	      i + 1000);
	CHECK(es_slots_find(t, &ref[i].key) < 0, "removed key still found");
	ref[i] = ref[--nref];
	if (i < nref)
		t->slot[ref[i].idx].pidfd = i + 1000;
}

static void test_same_pid_same_ident(void)
{
	struct es_slots t;
	struct es_key k;
	int i;

	es_slots_init(&t);
	nref = 0;
	k = (struct es_key){.pid = 42, .ident = 7};
	CHECK(es_slots_find(&t, &k) < 0, "found in an empty table");
	/* One pid, many identities (a reused pid); one identity, many pids
	 * (start ticks of processes started in the same tick). */
	for (i = 0; i < 100; i++)
		ref_insert(&t, (struct es_key){.pid = 42, .ident = i});
	for (i = 0; i < 100; i++)
		ref_insert(&t, (struct es_key){.pid = 1000 + i, .ident = 7});
	k = (struct es_key){.pid = 42, .ident = 7}; /* in both families */
	CHECK(es_slots_find(&t, &k) == ref[7].idx, "pid 42 ident 7");
	check_all(&t, "same pid / same ident");
	k = (struct es_key){.pid = 43, .ident = 7};
	CHECK(es_slots_find(&t, &k) < 0, "pid 43 ident 7 found");
	k = (struct es_key){.pid = 42, .ident = 100};
	CHECK(es_slots_find(&t, &k) < 0, "pid 42 ident 100 found");
	while (nref)
		ref_remove(&t, nref / 2);
	check_all(&t, "same pid / same ident, emptied");
	es_slots_free(&t);
	printf("same pid, same identity: ok\n");
}

/* Keys that all hash to one bucket of the first table size: one chain,
 * removed from its head, middle and tail. */
static void test_one_bucket(void)
{
	struct es_slots t;
	struct es_key k, want;
	uint32_t b;
	int i, n = 0;

	es_slots_init(&t);
	nref = 0;
	want = (struct es_key){.pid = 1, .ident = 1};
	ref_insert(&t, want);
	b = es_slots_bucket(&want, t.n);
	for (i = 2; n < 40; i++) {
		k = (struct es_key){.pid = i % 7, .ident = i};
		if (es_slots_bucket(&k, t.n) != b)
			continue;
		ref_insert(&t, k);
		n++;
	}
	CHECK(t.n == 64, "table grew to %u with 41 keys", t.n);
	check_all(&t, "one bucket");
	ref_remove(&t, 0);	  /* chain tail (first inserted) */
	ref_remove(&t, nref - 1); /* chain head */
	ref_remove(&t, nref / 2); /* middle */
	check_all(&t, "one bucket, 3 removed");
	ref_insert(&t, want);
	check_all(&t, "one bucket, reinserted");
	while (nref)
		ref_remove(&t, 0);
	es_slots_free(&t);
	printf("one hash chain of 41: ok\n");
}

static uint64_t rng = 88172645463325252ull;

static uint64_t xorshift(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Random inserts and removes; indices of live slots never repeat. */
static void test_random(void)
{
	static unsigned char seen[65536];
	struct es_slots t;
	struct es_key k;
	uint32_t n_before;
	int op, i, dup = 0;

	es_slots_init(&t);
	nref = 0;
	for (op = 0; op < 200000; op++) {
		k = (struct es_key){.pid = xorshift() % 4096,
				    .ident = xorshift() % 64};
		/* The monitor never inserts a key twice (es_track). */
		if (nref < REF_MAX && (nref == 0 || xorshift() % 100 < 55)) {
			if (es_slots_find(&t, &k) < 0)
				ref_insert(&t, k);
		} else {
			ref_remove(&t, xorshift() % nref);
		}
		if (op % 20000 == 0)
			check_all(&t, "random");
	}
	check_all(&t, "random, end");
	for (i = 0; i < nref; i++)
		dup += seen[ref[i].idx]++ != 0;
	CHECK(!dup, "%d slots given twice", dup);
	n_before = t.n;
	while (nref)
		ref_remove(&t, xorshift() % nref);
	check_all(&t, "random, emptied");
	CHECK(t.n == n_before, "table shrank");
	es_slots_free(&t);
	printf("random inserts/removes: ok\n");
}

/* Growth to the default capacity, all found, emptied, refilled without
 * growing again (freed slots are reused). */
static void test_capacity(void)
{
	struct es_slots t;
	struct es_key k;
	uint32_t i, n, bad = 0;
	int idx;

	es_slots_init(&t);
	for (i = 0; i < ES_DEFAULT_CAPACITY; i++) {
		k = (struct es_key){.pid = 300 + i, .ident = 1000000 + i};
		idx = es_slots_insert(&t, &k, i);
		bad += idx < 0;
	}
	CHECK(!bad && t.used == ES_DEFAULT_CAPACITY &&
		      t.n == ES_DEFAULT_CAPACITY,
	      "%u failed inserts, used %u, size %u", bad, t.used, t.n);
	for (i = 0; i < ES_DEFAULT_CAPACITY; i++) {
		k = (struct es_key){.pid = 300 + i, .ident = 1000000 + i};
		idx = es_slots_find(&t, &k);
		bad += idx < 0 || t.slot[idx].pidfd != (int)i;
	}
	CHECK(!bad, "%u of %u not found", bad, ES_DEFAULT_CAPACITY);
	for (i = 0; i < ES_DEFAULT_CAPACITY; i += 2) {
		k = (struct es_key){.pid = 300 + i, .ident = 1000000 + i};
		bad += es_slots_remove(&t, es_slots_find(&t, &k)) != (int)i;
	}
	for (i = 0; i < ES_DEFAULT_CAPACITY; i++) {
		k = (struct es_key){.pid = 300 + i, .ident = 1000000 + i};
		bad += (es_slots_find(&t, &k) >= 0) != (i % 2 == 1);
	}
	CHECK(!bad, "%u wrong after removing every other key", bad);
	n = t.n;
	for (i = 0; i < ES_DEFAULT_CAPACITY; i += 2) {
		k = (struct es_key){.pid = 300 + i, .ident = 2000000 + i};
		bad += es_slots_insert(&t, &k, i) < 0;
	}
	CHECK(!bad && t.n == n && t.used == ES_DEFAULT_CAPACITY,
	      "refill: %u failed, size %u (was %u)", bad, t.n, n);
	es_slots_free(&t);
	printf("capacity %u: ok\n", ES_DEFAULT_CAPACITY);
}

int main(void)
{
	test_same_pid_same_ident();
	test_one_bucket();
	test_random();
	test_capacity();
	tu_finish();
}
