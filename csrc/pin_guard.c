// SPDX-License-Identifier: Apache-2.0
/*
 * Pins put back. The pins are how the next monitor finds the registrations
 * and exit records after a restart or a crash. An open monitor holds every
 * pinned object by fd, so pins removed by hand, their bpffs unmounted or
 * other objects pinned in their place lose nothing while it runs, but would
 * lose every record at the next start. So the monitor pins its own objects
 * again wherever they went missing or something else sits (es_monitor_repin,
 * called every few seconds by the runtime), and an opening monitor first
 * makes the pins agree with the program attached through the link pin:
 * the maps that program writes into are the ones holding the records.
 *
 * The program itself cannot be detached behind an open monitor's back: raw
 * tracepoint links refuse BPF_LINK_DETACH (EOPNOTSUPP), and the monitor's
 * link fd keeps it attached until the last fd and pin are gone. A link pin
 * removed while no monitor runs does detach it; the next open attaches a
 * new program to the maps left pinned (es_load_and_pin with keep_maps).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "internal.h"

/* Order of the fds below: maps first, the link last (its pin means the set
 * is complete). */
static const char *const pin_names[ES_PINS] = {
	"registrations", "exits", "recent", "wakeups", "link",
};

/* The kind of BPF object behind fd, as its anon inode is named:
 * "bpf-map", "bpf-link", "bpf-prog"; "" if it is none. */
static void bpf_kind(int fd, char *kind, size_t len)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = '\0';
	snprintf(kind, len, "%s",
		 strncmp(target, "anon_inode:", 11) == 0 ? target + 11 : "");
}

/* Do fds a and b refer to the same object? Ids are unique per kind. */
static bool same_object(int a, int b)
{
	struct bpf_map_info ia = {}, ib = {}; /* id: 2nd field of each kind */
	uint32_t la = sizeof(ia), lb = sizeof(ib);
	char ka[64], kb[64];

	bpf_kind(a, ka, sizeof(ka));
	bpf_kind(b, kb, sizeof(kb));
	return strcmp(ka, kb) == 0 &&
	       bpf_obj_get_info_by_fd(a, &ia, &la) == 0 &&
	       bpf_obj_get_info_by_fd(b, &ib, &lb) == 0 && ia.id == ib.id;
}

int es_open_link(const char *path, char *err, size_t errlen)
{
	char kind[64];
	int fd, rc;

	fd = bpf_obj_get(path);
	if (fd < 0) {
		rc = -errno;
		return es_err(err, errlen, rc,
			      "cannot open the program's link %s: %s", path,
			      strerror(-rc));
	}
	bpf_kind(fd, kind, sizeof(kind));
	if (strcmp(kind, "bpf-link") != 0) {
		close(fd);
		return es_err(err, errlen, -EPROTO,
			      "layout version mismatch: %s is a %s, not the "
			      "program's link",
			      path, kind[0] ? kind : "file");
	}
	return fd;
}

static void note(char *restored, size_t len, const char *name, const char *how)
{
	size_t n = strlen(restored);

	snprintf(restored + n, len - n, "%s%s (%s)", n ? ", " : "", name, how);
}

int es_repin(const char *pin_dir, const char *vdir, const int fds[ES_PINS],
	     char *restored, size_t len, char *err, size_t errlen)
{
	char path[PATH_MAX + 32];
	const char *how;
	int i, fd, rc, n = 0;

	restored[0] = '\0';
	/* A bpffs unmounted under the pins: mounted again, empty. */
	rc = es_ensure_bpffs(pin_dir, err, errlen);
	if (rc)
		return rc;
	if (mkdir(vdir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		return es_err(err, errlen, rc, "cannot create %s: %s", vdir,
			      strerror(-rc));
	}
	for (i = 0; i < ES_PINS; i++) {
		snprintf(path, sizeof(path), "%s/%s", vdir, pin_names[i]);
		fd = bpf_obj_get(path);
		if (fd < 0 && errno == ENOENT) {
			how = "removed";
		} else {
			/* Something else sits there: made way for ours. */
			how = fd < 0 ? "unreadable" : "replaced";
			if (fd >= 0) {
				bool same = same_object(fds[i], fd);

				close(fd);
				if (same)
					continue;
			}
			if (unlink(path) < 0 && errno != ENOENT) {
				rc = -errno;
				return es_err(err, errlen, rc,
					      "cannot remove %s, which is not "
					      "the runtime's: %s",
					      path, strerror(-rc));
			}
		}
		if (bpf_obj_pin(fds[i], path) < 0) {
			rc = -errno;
			return es_err(err, errlen, rc,
				      "cannot pin %s again: %s", path,
				      strerror(-rc));
		}
		note(restored, len, pin_names[i], how);
		n++;
	}
	return n;
}

/* The ids of the maps of the program behind link_fd (its read-only data
 * among them); *n of at most max. */
static int program_map_ids(int link_fd, uint32_t *ids, uint32_t max,
			   uint32_t *n)
{
	struct bpf_link_info link = {};
	struct bpf_prog_info prog = {};
	uint32_t len = sizeof(link);
	int prog_fd, rc;

	if (bpf_obj_get_info_by_fd(link_fd, &link, &len) < 0)
		return -errno;
	prog_fd = bpf_prog_get_fd_by_id(link.prog_id);
	if (prog_fd < 0)
		return -errno;
	prog.nr_map_ids = max;
	prog.map_ids = (uint64_t)(uintptr_t)ids;
	len = sizeof(prog);
	rc = bpf_obj_get_info_by_fd(prog_fd, &prog, &len) < 0 ? -errno : 0;
	close(prog_fd);
	*n = prog.nr_map_ids < max ? prog.nr_map_ids : max;
	return rc;
}

int es_program_maps(int link_fd, const char *vdir, int fds[ES_PIN_LINK],
		    uint32_t *capacity, char *err, size_t errlen)
{
	/* Key and value sizes of each map of this layout (0/0: ring). */
	static const uint32_t sizes[ES_PIN_LINK][2] = {
		{sizeof(struct es_key), sizeof(struct es_reg)},
		{sizeof(struct es_key), sizeof(struct es_exit)},
		{sizeof(struct es_key), sizeof(struct es_exit)},
		{0, 0},
	};
	uint32_t ids[16], n = 0, j, len, max[ES_PIN_LINK] = {0};
	int i, fd, rc;

	for (i = 0; i < ES_PIN_LINK; i++)
		fds[i] = -1;
	rc = program_map_ids(link_fd, ids, 16, &n);
	if (rc)
		return es_err(err, errlen, rc,
			      "cannot inspect the program attached through "
			      "%s/link: %s",
			      vdir, strerror(-rc));
	for (j = 0; j < n; j++) {
		struct bpf_map_info info = {};

		len = sizeof(info);
		fd = bpf_map_get_fd_by_id(ids[j]);
		if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len) < 0) {
			rc = -errno;
			es_err(err, errlen, rc,
			       "cannot open map %u of the program attached "
			       "through %s/link: %s",
			       ids[j], vdir, strerror(-rc));
			if (fd >= 0)
				close(fd);
			goto cleanup;
		}
		for (i = 0; i < ES_PIN_LINK; i++)
			if (strcmp(info.name, pin_names[i]) == 0)
				break;
		if (i == ES_PIN_LINK || fds[i] >= 0) {
			close(fd); /* its read-only data */
			continue;
		}
		fds[i] = fd;
		rc = es_check_map_layout(fd, pin_names[i], sizes[i][0],
					 sizes[i][1], &max[i], err, errlen);
		if (rc)
			goto cleanup;
	}
	for (i = 0; i < ES_PIN_LINK; i++)
		if (fds[i] < 0) {
			rc = es_err(err, errlen, -ENOENT,
				    "the program attached through %s/link has "
				    "no map named %s",
				    vdir, pin_names[i]);
			goto cleanup;
		}
	*capacity = max[0] < max[1] ? max[0] : max[1];
	return 0;
cleanup:
	for (i = 0; i < ES_PIN_LINK; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return rc;
}
int es_repair_pins(const char *pin_dir, const char *vdir, char *restored,
		   size_t len, char *err, size_t errlen)
{
	char path[PATH_MAX + 32];
	int fds[ES_PINS], i, rc;
	uint32_t capacity;

	restored[0] = '\0';
	snprintf(path, sizeof(path), "%s/link", vdir);
	if (access(path, F_OK) != 0)
		return 0; /* nothing attached: no maps to prefer */
	fds[ES_PIN_LINK] = es_open_link(path, err, errlen);
	if (fds[ES_PIN_LINK] < 0)
		return fds[ES_PIN_LINK];
	rc = es_program_maps(fds[ES_PIN_LINK], vdir, fds, &capacity, err,
			     errlen);
	if (!rc) {
		rc = es_repin(pin_dir, vdir, fds, restored, len, err, errlen);
		for (i = 0; i < ES_PIN_LINK; i++)
			close(fds[i]);
	}
	close(fds[ES_PIN_LINK]);
	return rc;
}

int es_monitor_repin(struct es_monitor *m, char *restored, size_t len,
		     char *err, size_t errlen)
{
	const int fds[ES_PINS] = {m->reg_fd, m->exits_fd, m->recent_fd,
				  m->wakeups_fd, m->link_fd};

	return es_repin(m->pin_dir, m->vdir, fds, restored, len, err, errlen);
}

const char *es_monitor_restored_pins(const struct es_monitor *m)
{
	return m->restored;
}
