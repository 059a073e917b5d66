/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by the C core's files; not part of the public API. */
#ifndef EMBEDSHIM_INTERNAL_H
#define EMBEDSHIM_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <linux/types.h>

#include "embedshim/monitor.h"
#include "error.h"
#include "exitsnoop.h"
#include "slots.h"

#define ES_MAX_WOKEN 64

struct ring_buffer;

/* An explicit capacity that was not applied (see resize.c): asked is 0 if
 * none was refused. */
struct es_resize_refusal {
	uint32_t asked;
	uint32_t tracked; /* processes with entries, more than asked */
};

struct es_monitor {
	int reg_fd;	/* registrations map */
	int exits_fd;	/* exit-records map */
	int recent_fd;	/* LRU of unregistered exits */
	int wakeups_fd; /* ring buffer of recorded exits */
	/* The program's link, held open: the program stays attached while the
	 * monitor is open even if its pin goes (pins removed, bpffs unmounted
	 * under the daemon), so no exit goes unrecorded meanwhile. */
	int link_fd;
	struct ring_buffer *ring;
	/* Keys read from the ring by the current es_monitor_wait call. */
	struct es_key woken[ES_MAX_WOKEN];
	int nwoken;
	int epfd;
	int wakefd; /* eventfd in the epoll set; readable once woken */
	uint32_t capacity;
	struct es_resize_refusal refused;

	/* Processes being polled: each pidfd sits in the epoll set with its
	 * slot's index and generation as data, so an event for a slot that
	 * was forgotten (and maybe reused) meanwhile is recognised and
	 * dropped; the ring-buffer path finds slots by key. Both claim a slot
	 * under the lock, so each exit is delivered once. */
	pthread_mutex_t lock; /* guards slots */
	struct es_slots slots;

	/* Where the objects above are pinned, to put the pins back when they
	 * go behind the monitor's back (pin_guard.c); restored names the pins
	 * es_monitor_open put back, "" if none. */
	char pin_dir[PATH_MAX];
	char vdir[PATH_MAX];
	char restored[256];
};

#define ES_WAKE_TOKEN UINT64_MAX
#define ES_RING_TOKEN (UINT64_MAX - 1)

/* The registrations and exit-records maps of one set of pins. */
struct es_maps {
	int reg_fd;
	int exits_fd;
	uint32_t capacity; /* the smaller max_entries of the two */
};

/* Open the maps pinned in vdir if they have this binary's layout: -ENOENT
 * if one is missing, -EPROTO if it has another layout. */
int es_maps_open(const char *vdir, struct es_maps *maps);
void es_maps_close(struct es_maps *maps);

/* Move the entries of the pins in vdir into to, in the order that loses no
 * exit (see migrate.c), and remove vdir's pins; 1 if moved, 0 if vdir holds
 * no maps of this layout (left alone). -ENOSPC if they do not fit. */
int es_move_version(const struct es_maps *to, const char *vdir, char *err,
		    size_t errlen);

/* Load the BPF object with maps of the given capacity, attach it and pin it
 * all in vdir (created if needed); the link last, so its pin means complete.
 * With keep_maps, maps pinned in vdir already (all of them, of this layout)
 * are used instead of new ones and only the link is pinned: *kept says so. */
int es_load_and_pin(const char *vdir, uint32_t capacity, bool keep_maps,
		    bool *kept, char *err, size_t errlen);

/* Check that fd is a map of this layout's key and value sizes (both 0 for
 * a ring buffer); *max_entries, if not NULL, is its capacity. path names
 * it in the message. */
int es_check_map_layout(int fd, const char *path, uint32_t key_size,
			uint32_t value_size, uint32_t *max_entries, char *err,
			size_t errlen);

/* Open the map pinned at path if it has that layout (es_check_map_layout):
 * its fd, or -ENOENT (not pinned), -EPROTO (another layout), ... */
int es_open_pinned_map(const char *path, uint32_t key_size, uint32_t value_size,
		       uint32_t *max_entries, char *err, size_t errlen);

/* Unpin everything in vdir, link first, and remove it. */
int es_destroy_version(const char *vdir);

/* Where a resize sets the current version's pins aside: pin_dir/v<N>-resize
 * (bpffs refuses names with dots). */
#define ES_RESIZE_SUFFIX "-resize"
void es_resize_dir(const char *pin_dir, char *out, size_t outlen);

/* Before the monitor opens pin_dir/v<N>: finish a resize a crash
 * interrupted, then, if asked is not 0 and differs from the pinned
 * capacity, move the pins to maps of capacity asked (see resize.c). A
 * shrink below the processes tracked is not made: *refused says so. */
int es_resize_pins(const char *pin_dir, uint32_t asked,
		   struct es_resize_refusal *refused, char *err, size_t errlen);

/* Take over the entries of older layout versions' pins under pin_dir
 * (see migrate.c); returns how many versions were migrated. */
int es_migrate_older(struct es_monitor *m, const char *pin_dir, char *err,
		     size_t errlen);

/* Take over the pins under another pin dir, old_dir (NULL: none), then
 * remove it with the bpffs mounted there (see migrate.c). */
int es_take_over(struct es_monitor *m, const char *pin_dir, const char *old_dir,
		 char *err, size_t errlen);

/* The pinned objects, in this order: registrations, exits, recent,
 * wakeups, link (see pin_guard.c). */
#define ES_PINS 5
#define ES_PIN_LINK 4

/* Pin the objects of fds (ES_PINS, in that order) in vdir under pin_dir
 * wherever their pin is missing or another object sits (a bpffs unmounted
 * under them is mounted again); returns how many were pinned again and
 * names them, with "removed" or "replaced", in restored. */
int es_repin(const char *pin_dir, const char *vdir, const int fds[ES_PINS],
	     char *restored, size_t len, char *err, size_t errlen);

/* The maps (ES_PIN_LINK of them, in the order above) of the program
 * attached through link_fd, pinned in vdir, with this layout checked; the
 * caller closes them. *capacity is the smaller of the first two's. */
int es_program_maps(int link_fd, const char *vdir, int fds[ES_PIN_LINK],
		    uint32_t *capacity, char *err, size_t errlen);

/* Open the link pinned at path, refusing anything else pinned there. */
int es_open_link(const char *path, char *err, size_t errlen);

/* Before a monitor opens vdir: if its link is pinned, pin the maps of its
 * program where their pins are missing or others sit (es_repin). */
int es_repair_pins(const char *pin_dir, const char *vdir, char *restored,
		   size_t len, char *err, size_t errlen);

/* The host's bpffs mount point. */
#define ES_HOST_BPFFS "/sys/fs/bpf"

bool es_is_bpffs(const char *path);

/* Create pin_dir (mode 0700) on a bpffs: the host's, mounted if needed, for
 * a pin dir under ES_HOST_BPFFS, else a private one mounted at pin_dir. */
int es_ensure_bpffs(const char *pin_dir, char *err, size_t errlen);

/* Unmount the bpffs mounted at pin_dir, if any, and remove the directory
 * if it is empty. */
int es_remove_pin_dir(const char *pin_dir, char *err, size_t errlen);

/* Is this kernel (release string, BTF file) able to run the monitor? */
int es_check_kernel(const char *release, const char *btf_path, char *err,
		    size_t errlen);

/* Identity kind this kernel supports (pidfs inode or start ticks). */
enum es_ident_kind es_ident_kind(void);

/*
 * For the C tests only: behave as on a kernel before pidfs (start-tick
 * identities, < 6.9) and before the tracepoint's group_dead argument
 * (< 6.16), so the fallback paths run on a newer kernel. Takes effect for
 * monitors opened afterwards on fresh pins (the program's read-only data is
 * set at load).
 */
extern bool es_compat_start_ticks;
extern bool es_compat_no_group_dead;

/* Identity of the process behind pidfd (pid is its number); -ESRCH if it
 * was reaped meanwhile. */
int es_ident_of_pidfd(int pidfd, int pid, uint64_t *ident);

int es_pidfd_open(int pid);

/* CLOCK_MONOTONIC in ns, the BPF program's bpf_ktime_get_ns() clock. */
uint64_t es_mono_ns(void);

/* Add a live pidfd to the epoll set; takes ownership of pidfd. A process
 * polled already is not added again (its exit would come twice): -EEXIST. */
int es_track(struct es_monitor *m, int pidfd, const struct es_key *key);

#endif /* EMBEDSHIM_INTERNAL_H */
