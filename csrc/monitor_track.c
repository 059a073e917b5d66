// SPDX-License-Identifier: Apache-2.0
/*
 * Tracking: the pidfd epoll loop and the ring buffer that say when
 * registered processes exited, and reading, listing and deleting their
 * records.
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "internal.h"

uint64_t es_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static bool have_record(struct es_monitor *m, const struct es_key *key,
			struct es_exit *rec)
{
	return bpf_map_lookup_elem(m->exits_fd, key, rec) == 0;
}

/* Under m->lock: take slot i off the poll set and free it. */
static void slot_release(struct es_monitor *m, uint32_t i)
{
	int pidfd = es_slots_remove(&m->slots, i);

	epoll_ctl(m->epfd, EPOLL_CTL_DEL, pidfd, NULL);
	close(pidfd);
}

int es_track(struct es_monitor *m, int pidfd, const struct es_key *key)
{
	struct epoll_event ev = {.events = EPOLLIN};
	int i, rc = 0;

	pthread_mutex_lock(&m->lock);
	/* Polled already (a repeated lookup): a second slot would deliver
	 * the exit twice. */
	if (es_slots_find(&m->slots, key) >= 0) {
		rc = -EEXIST;
		goto out;
	}
	i = es_slots_insert(&m->slots, key, pidfd);
	if (i < 0) {
		rc = i;
		goto out;
	}
	ev.data.u64 = ((uint64_t)m->slots.slot[i].gen << 32) | (uint32_t)i;
	if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, pidfd, &ev) < 0) {
		rc = -errno;
		es_slots_remove(&m->slots, i);
	}
out:
	pthread_mutex_unlock(&m->lock);
	if (rc)
		close(pidfd);
	return rc;
}

static void fill_event(struct es_exit_event *ev, const struct es_key *key,
		       const struct es_exit *rec)
{
	ev->pid = key->pid;
	ev->ident = key->ident;
	ev->status = rec ? rec->status : 0;
	ev->exit_ns = rec ? rec->exit_ns : es_mono_ns();
	ev->err = rec ? 0 : -ENODATA;
}

/* Take the process in slot idx (if it is still gen) off the poll set; true
 * if the caller now owns delivering its exit. */
static bool claim_slot(struct es_monitor *m, uint32_t idx, uint32_t gen,
		       struct es_key *key)
{
	bool ours = false;

	pthread_mutex_lock(&m->lock);
	/* A slot forgotten (and perhaps reused) since epoll_wait returned is
	 * not this event's process any more. */
	if (idx < m->slots.n && m->slots.slot[idx].pidfd >= 0 &&
	    m->slots.slot[idx].gen == gen) {
		*key = m->slots.slot[idx].key;
		slot_release(m, idx);
		ours = true;
	}
	pthread_mutex_unlock(&m->lock);
	return ours;
}

/* Exits announced by the BPF program through the ring: claim those still
 * polled here (each is delivered once, by whichever path comes first). */
static int drain_ring(struct es_monitor *m, struct es_exit_event *evs, int max)
{
	struct es_exit rec;
	struct es_key key;
	int i, idx, out = 0;

	m->nwoken = 0;
	ring_buffer__consume(m->ring);
	for (i = 0; i < m->nwoken && out < max; i++) {
		pthread_mutex_lock(&m->lock);
		idx = es_slots_find(&m->slots, &m->woken[i]);
		if (idx >= 0) {
			key = m->slots.slot[idx].key;
			slot_release(m, idx);
		}
		pthread_mutex_unlock(&m->lock);
		if (idx >= 0)
			fill_event(&evs[out++], &key,
				   have_record(m, &key, &rec) ? &rec : NULL);
	}
	return out;
}

int es_monitor_wait(struct es_monitor *m, struct es_exit_event *evs, int max,
		    int timeout_ms)
{
	struct epoll_event eps[ES_MAX_WOKEN];
	struct es_exit rec;
	struct es_key key;
	bool woken = false;
	int n, i, out = 0;

	if (max > ES_MAX_WOKEN)
		max = ES_MAX_WOKEN;
	n = epoll_wait(m->epfd, eps, max, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (i = 0; i < n && out < max; i++) {
		uint64_t data = eps[i].data.u64;

		if (data == ES_WAKE_TOKEN) {
			woken = true;
		} else if (data == ES_RING_TOKEN) {
			out += drain_ring(m, evs + out, max - out);
		} else if (claim_slot(m, (uint32_t)data, data >> 32, &key)) {
			fill_event(&evs[out++], &key,
				   have_record(m, &key, &rec) ? &rec : NULL);
		}
	}
	if (!out && woken)
		return -ECANCELED;
	return out;
}

void es_monitor_wake(struct es_monitor *m)
{
	/* Never read back: the eventfd stays readable, so every later wait
	 * returns at once. It only fails if the counter would overflow, that
	 * is when woken already. */
	eventfd_write(m->wakefd, 1);
}

int es_monitor_lookup(struct es_monitor *m, int pid, uint64_t ident,
		      struct es_exit_event *ev, char *err, size_t errlen)
{
	struct es_key key = {.pid = pid, .ident = ident};
	struct es_reg reg;
	struct es_exit rec;
	uint64_t now;
	int pidfd, rc;

	if (bpf_map_lookup_elem(m->reg_fd, &key, &reg) < 0)
		return es_err(err, errlen, -ENOENT,
			      "process %d (identity %llu) is not registered",
			      pid, (unsigned long long)ident);
	if (have_record(m, &key, &rec)) {
		fill_event(ev, &key, &rec);
		return 1;
	}
	pidfd = es_pidfd_open(pid);
	if (pidfd >= 0 &&
	    (es_ident_of_pidfd(pidfd, pid, &now) < 0 || now != ident)) {
		close(pidfd);
		pidfd = -ESRCH;
	}
	if (pidfd < 0) {
		/* Gone, reaped, pid maybe reused: its record is written before
		 * the reap, so look once more in case it just exited. */
		if (have_record(m, &key, &rec)) {
			fill_event(ev, &key, &rec);
			return 1;
		}
		return es_err(err, errlen, -ENODATA,
			      "process %d (identity %llu) is gone but left "
			      "no exit record",
			      pid, (unsigned long long)ident);
	}
	rc = es_track(m, pidfd, &key);
	if (rc == -EEXIST)
		return 0; /* polled already: its exit comes once */
	if (rc)
		return es_err(err, errlen, rc, "cannot poll process %d: %s",
			      pid, strerror(-rc));
	return 0;
}

int es_monitor_forget(struct es_monitor *m, int pid, uint64_t ident)
{
	struct es_key key = {.pid = pid, .ident = ident};
	int i, rc = 0;

	pthread_mutex_lock(&m->lock);
	i = es_slots_find(&m->slots, &key);
	if (i >= 0)
		slot_release(m, i);
	pthread_mutex_unlock(&m->lock);
	if (bpf_map_delete_elem(m->reg_fd, &key) < 0 && errno != ENOENT)
		rc = -errno;
	if (bpf_map_delete_elem(m->exits_fd, &key) < 0 && errno != ENOENT &&
	    !rc)
		rc = -errno;
	return rc;
}

static int count_or_list(int fd, struct es_proc *procs, int max)
{
	struct es_key key, next;
	void *prev = NULL;
	int n = 0;

	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		if (procs && n < max)
			procs[n] = (struct es_proc){next.pid, next.ident};
		n++;
		if (procs && n >= max)
			break;
		key = next;
		prev = &key;
	}
	return n;
}

int es_monitor_list(struct es_monitor *m, struct es_proc *procs, int max)
{
	return count_or_list(m->reg_fd, procs, max);
}

int es_monitor_count_exits(struct es_monitor *m)
{
	return count_or_list(m->exits_fd, NULL, 0);
}
