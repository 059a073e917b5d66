// SPDX-License-Identifier: Apache-2.0
/*
 * Capacity changes. A map's max_entries is fixed when it is created, so pins
 * keep the capacity they were made with; a monitor opened with another one
 * makes a new set and moves the entries over with the moves of an upgrade
 * (migrate.c):
 *
 *   1. v<N> is renamed v<N>-resize: one rename(2) on bpffs. The old program
 *      stays attached through its link, pinned there now, and keeps
 *      recording into the old maps.
 *   2. A new set with the new capacity is loaded and pinned at v<N>.
 *   3. The entries are moved (registrations, records, old link unpinned,
 *      records again) and v<N>-resize is removed.
 *
 * A crash after 1 leaves v<N>-resize whole, its program attached, so nothing
 * is lost: the next open finishes 2 and 3 before anything else. A shrink
 * below the processes tracked now is not made (their entries would not fit):
 * the old capacity stays and the caller is told, to warn.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "internal.h"

void es_resize_dir(const char *pin_dir, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s/v%d" ES_RESIZE_SUFFIX, pin_dir,
		 ES_LAYOUT_VERSION);
}

static void version_dir(const char *pin_dir, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s/v%d", pin_dir, ES_LAYOUT_VERSION);
}

static bool has_pin(const char *vdir, const char *name)
{
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/%s", vdir, name);
	return access(path, F_OK) == 0;
}

/* Processes with an entry: registered, or with an exit record alone (forget
 * deletes the registration first). Exits still to come are of registered
 * processes, so neither map will ever need more entries than this. */
static uint32_t count_tracked(const struct es_maps *maps)
{
	struct es_key key, next;
	struct es_reg reg;
	void *prev = NULL;
	uint32_t n = 0;

	while (bpf_map_get_next_key(maps->reg_fd, prev, &next) == 0) {
		n++;
		key = next;
		prev = &key;
	}
	prev = NULL;
	while (bpf_map_get_next_key(maps->exits_fd, prev, &next) == 0) {
		if (bpf_map_lookup_elem(maps->reg_fd, &next, &reg) != 0)
			n++;
		key = next;
		prev = &key;
	}
	return n;
}

/* The capacity new maps for the entries in vdir get: asked if they fit in
 * it, else (and if asked is 0) vdir's own; *pinned is vdir's. */
static int plan_capacity(const char *vdir, uint32_t asked, uint32_t *capacity,
			 uint32_t *pinned, struct es_resize_refusal *refused,
			 char *err, size_t errlen)
{
	struct es_maps maps;
	uint32_t tracked;
	int rc;

	rc = es_maps_open(vdir, &maps);
	if (rc < 0)
		return es_err(err, errlen, rc,
			      "cannot open the pinned maps in %s: %s", vdir,
			      strerror(-rc));
	*pinned = *capacity = maps.capacity;
	if (asked && asked != maps.capacity) {
		tracked = count_tracked(&maps);
		if (tracked <= asked)
			*capacity = asked;
		else
			*refused = (struct es_resize_refusal){asked, tracked};
	}
	es_maps_close(&maps);
	return 0;
}

/* Steps 2 (unless done) and 3: fill v<N> from v<N>-resize. */
static int finish_resize(const char *pin_dir, uint32_t asked,
			 struct es_resize_refusal *refused, char *err,
			 size_t errlen)
{
	char vdir[PATH_MAX], rdir[PATH_MAX];
	uint32_t capacity, pinned;
	struct es_maps to;
	int rc;

	version_dir(pin_dir, vdir, sizeof(vdir));
	es_resize_dir(pin_dir, rdir, sizeof(rdir));
	/* Maps are unpinned only once everything was moved: a crash while
	 * removing them left the rest. */
	if (!has_pin(rdir, "registrations") || !has_pin(rdir, "exits"))
		goto remove;
	if (!has_pin(vdir, "link")) {
		rc = plan_capacity(rdir, asked, &capacity, &pinned, refused,
				   err, errlen);
		if (!rc)
			rc = es_load_and_pin(vdir, capacity, false, NULL, err,
					     errlen);
		if (rc)
			return rc;
	}
	rc = es_maps_open(vdir, &to);
	if (rc < 0)
		return es_err(err, errlen, rc,
			      "cannot open the pinned maps in %s: %s", vdir,
			      strerror(-rc));
	rc = es_move_version(&to, rdir, err, errlen);
	es_maps_close(&to);
	if (rc < 0)
		return rc;
remove:
	rc = es_destroy_version(rdir);
	if (rc < 0)
		return es_err(err, errlen, rc, "cannot remove %s: %s", rdir,
			      strerror(-rc));
	return 0;
}

/* Step 1 if asked differs from the pinned capacity and the entries fit. */
static int start_resize(const char *pin_dir, uint32_t asked,
			struct es_resize_refusal *refused, char *err,
			size_t errlen)
{
	char vdir[PATH_MAX], rdir[PATH_MAX], why[256] = "";
	uint32_t capacity, pinned;
	int rc;

	version_dir(pin_dir, vdir, sizeof(vdir));
	es_resize_dir(pin_dir, rdir, sizeof(rdir));
	if (!asked || !has_pin(vdir, "link"))
		return 0; /* new pins get the capacity asked at their load */
	rc = plan_capacity(vdir, asked, &capacity, &pinned, refused, err,
			   errlen);
	if (rc || capacity == pinned)
		return rc;
	if (rename(vdir, rdir) < 0) {
		rc = -errno;
		return es_err(err, errlen, rc,
			      "cannot move %s aside to change its capacity "
			      "from %u to %u: %s",
			      vdir, pinned, capacity, strerror(-rc));
	}
	rc = es_load_and_pin(vdir, capacity, false, NULL, why, sizeof(why));
	if (rc) {
		/* Maps of that size refused (the load left vdir empty): the
		 * old pins go back, untouched. */
		rmdir(vdir);
		rename(rdir, vdir);
		return es_err(err, errlen, rc,
			      "cannot change the tracking capacity from %u to "
			      "%u: %s",
			      pinned, capacity, why);
	}
	return finish_resize(pin_dir, asked, refused, err, errlen);
}

int es_resize_pins(const char *pin_dir, uint32_t asked,
		   struct es_resize_refusal *refused, char *err, size_t errlen)
{
	char rdir[PATH_MAX];
	int rc;

	es_resize_dir(pin_dir, rdir, sizeof(rdir));
	if (access(rdir, F_OK) == 0) {
		rc = finish_resize(pin_dir, asked, refused, err, errlen);
		if (rc)
			return rc;
	}
	return start_resize(pin_dir, asked, refused, err, errlen);
}
