// SPDX-License-Identifier: Apache-2.0
/*
 * Upgrades: a new binary finds pins of an older layout version, with the
 * registrations of processes that still run and the records of those that
 * exited while no monitor was open. Where the old maps have the layout of
 * today's (same key and value sizes), their entries are moved into the new
 * maps and the old program detached; anything else is left alone, never
 * misread.
 *
 * The same moves take over a whole pin dir of this layout at another place
 * (es_take_over): the previous default location of the pins; and they fill
 * the maps of a new capacity from this layout's own old pins (resize.c).
 *
 * Order matters: registrations first, so that from then on the new program
 * records those processes' exits too; then the records; then the old link is
 * unpinned (the old program stops); then the records once more, for exits the
 * old program wrote in between.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "internal.h"

/* Copy every entry of map from_fd into to_fd; -ENOSPC if it does not fit. */
static int copy_entries(int from_fd, int to_fd, size_t value_size)
{
	struct es_key key, next;
	unsigned char value[64];
	void *prev = NULL;

	if (value_size > sizeof(value))
		return -EINVAL;
	while (bpf_map_get_next_key(from_fd, prev, &next) == 0) {
		if (bpf_map_lookup_elem(from_fd, &next, value) == 0 &&
		    bpf_map_update_elem(to_fd, &next, value, BPF_NOEXIST) < 0 &&
		    errno != EEXIST)
			return errno == E2BIG ? -ENOSPC : -errno;
		key = next;
		prev = &key;
	}
	return 0;
}

int es_maps_open(const char *vdir, struct es_maps *maps)
{
	char reg[PATH_MAX + 32], ex[PATH_MAX + 32];
	uint32_t max_reg = 0, max_ex = 0;

	snprintf(reg, sizeof(reg), "%s/registrations", vdir);
	snprintf(ex, sizeof(ex), "%s/exits", vdir);
	maps->reg_fd = es_open_pinned_map(reg, sizeof(struct es_key),
					  sizeof(struct es_reg), &max_reg, NULL,
					  0);
	maps->exits_fd = es_open_pinned_map(ex, sizeof(struct es_key),
					    sizeof(struct es_exit), &max_ex,
					    NULL, 0);
	maps->capacity = max_reg < max_ex ? max_reg : max_ex;
	if (maps->reg_fd >= 0 && maps->exits_fd >= 0)
		return 0;
	es_maps_close(maps);
	return maps->reg_fd < 0 ? maps->reg_fd : maps->exits_fd;
}

void es_maps_close(struct es_maps *maps)
{
	if (maps->reg_fd >= 0)
		close(maps->reg_fd);
	if (maps->exits_fd >= 0)
		close(maps->exits_fd);
	maps->reg_fd = maps->exits_fd = -1;
}

int es_move_version(const struct es_maps *to, const char *vdir, char *err,
		    size_t errlen)
{
	char path[PATH_MAX + 256];
	struct es_maps from;
	int rc;

	if (es_maps_open(vdir, &from) < 0)
		return 0; /* another layout: not ours to read */

	rc = copy_entries(from.reg_fd, to->reg_fd, sizeof(struct es_reg));
	if (!rc)
		rc = copy_entries(from.exits_fd, to->exits_fd,
				  sizeof(struct es_exit));
	if (rc) {
		es_err(err, errlen, rc,
		       "cannot take over the records of %s: %s (tracking "
		       "capacity %u)",
		       vdir, strerror(-rc), to->capacity);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/link", vdir);
	unlink(path);
	rc = copy_entries(from.exits_fd, to->exits_fd, sizeof(struct es_exit));
	if (rc) {
		es_err(err, errlen, rc,
		       "cannot take over the records of %s: %s", vdir,
		       strerror(-rc));
		goto out;
	}
	/* Everything is in the new maps: drop the old pins. */
	es_destroy_version(vdir);
	rc = 1;
out:
	es_maps_close(&from);
	return rc;
}

/* The maps of an open monitor, as es_move_version moves into. */
static struct es_maps monitor_maps(const struct es_monitor *m)
{
	return (struct es_maps){.reg_fd = m->reg_fd,
				.exits_fd = m->exits_fd,
				.capacity = m->capacity};
}

int es_migrate_older(struct es_monitor *m, const char *pin_dir, char *err,
		     size_t errlen)
{
	struct es_maps to = monitor_maps(m);
	char vdir[PATH_MAX];
	int v, rc, moved = 0;

	for (v = 1; v < ES_LAYOUT_VERSION; v++) {
		snprintf(vdir, sizeof(vdir), "%s/v%d", pin_dir, v);
		if (access(vdir, F_OK) != 0)
			continue;
		rc = es_move_version(&to, vdir, err, errlen);
		if (rc < 0)
			return rc;
		moved += rc;
	}
	return moved;
}

static bool same_dir(const char *a, const char *b)
{
	struct stat sa, sb;

	return stat(a, &sa) == 0 && stat(b, &sb) == 0 &&
	       sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Take over the pins in vdir, if there are any: counts what was moved and
 * what was left (another layout). */
static int take_over_dir(const struct es_maps *to, const char *vdir, int *moved,
			 int *left, char *err, size_t errlen)
{
	int rc;

	if (access(vdir, F_OK) != 0)
		return 0;
	rc = es_move_version(to, vdir, err, errlen);
	if (rc < 0)
		return rc;
	*moved += rc;
	*left += !rc;
	return 0;
}

int es_take_over(struct es_monitor *m, const char *pin_dir, const char *old_dir,
		 char *err, size_t errlen)
{
	struct es_maps to = monitor_maps(m);
	char vdir[PATH_MAX];
	int v, rc, moved = 0, left = 0;

	if (!old_dir || !*old_dir || access(old_dir, F_OK) != 0 ||
	    same_dir(pin_dir, old_dir))
		return 0;
	for (v = 1; v <= ES_LAYOUT_VERSION; v++) {
		snprintf(vdir, sizeof(vdir), "%s/v%d", old_dir, v);
		rc = take_over_dir(&to, vdir, &moved, &left, err, errlen);
		if (rc < 0)
			return rc;
	}
	/* The old pins of a resize a crash interrupted there (resize.c):
	 * they too would go with the bpffs. */
	es_resize_dir(old_dir, vdir, sizeof(vdir));
	rc = take_over_dir(&to, vdir, &moved, &left, err, errlen);
	if (rc < 0)
		return rc;
	/* Pins of a layout we cannot read (a newer binary's) stay, and so
	 * does their bpffs. */
	if (left)
		return moved;
	rc = es_remove_pin_dir(old_dir, err, errlen);
	return rc < 0 ? rc : moved;
}
