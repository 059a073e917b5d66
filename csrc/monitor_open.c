// SPDX-License-Identifier: Apache-2.0
/*
 * Opening and closing the monitor: load, attach and pin the BPF object, or
 * reopen the pins an earlier monitor left; removing pins; capability checks
 * with messages that name what is missing.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "internal.h"
#include "exitsnoop.skel.h"

static int quiet_libbpf(enum libbpf_print_level level, const char *fmt,
			va_list args)
{
	if (level == LIBBPF_DEBUG || !getenv("EMBEDSHIM_DEBUG_LIBBPF"))
		return 0;
	return vfprintf(stderr, fmt, args);
}

/* Raw tracepoint link pinning needs Linux 5.7, the BPF ring buffer 5.8; CO-RE
 * needs the kernel's BTF. */
int es_check_kernel(const char *release, const char *btf_path, char *err,
		    size_t errlen)
{
	int major = 0, minor = 0;

	if (sscanf(release, "%d.%d", &major, &minor) == 2 &&
	    (major < 5 || (major == 5 && minor < 8)))
		return es_err(err, errlen, -ENOTSUP,
			      "kernel %s too old: embedshim needs Linux >= 5.8",
			      release);
	if (access(btf_path, R_OK) != 0)
		return es_err(err, errlen, -ENOTSUP,
			      "kernel has no BTF (%s missing): build it with "
			      "CONFIG_DEBUG_INFO_BTF=y",
			      btf_path);
	return 0;
}

static int check_kernel(char *err, size_t errlen)
{
	struct utsname u;

	if (uname(&u) < 0)
		return es_err(err, errlen, -errno, "uname: %s",
			      strerror(errno));
	return es_check_kernel(u.release, "/sys/kernel/btf/vmlinux", err,
			       errlen);
}

bool es_compat_no_group_dead;

/* Linux 6.16 added group_dead as the tracepoint's second argument. */
static bool tp_has_group_dead(void)
{
	const struct btf_type *t;
	struct btf *btf;
	bool has = false;
	int id;

	if (es_compat_no_group_dead)
		return false;
	btf = btf__load_vmlinux_btf();
	if (!btf)
		return false;
	id = btf__find_by_name_kind(btf, "btf_trace_sched_process_exit",
				    BTF_KIND_TYPEDEF);
	if (id > 0) {
		t = btf__type_by_id(btf, id);	   /* typedef */
		t = btf__type_by_id(btf, t->type); /* pointer */
		t = btf__type_by_id(btf, t->type); /* func proto */
		/* (void *ctx, struct task_struct *p, bool group_dead) */
		has = t && btf_is_func_proto(t) && btf_vlen(t) >= 3;
	}
	btf__free(btf);
	return has;
}

struct pin_paths {
	char vdir[PATH_MAX - 32]; /* room for the file names below */
	char reg[PATH_MAX];
	char exits[PATH_MAX];
	char recent[PATH_MAX];
	char wakeups[PATH_MAX];
	char link[PATH_MAX];
};

/* The pins of one set: vdir is pin_dir/v<layout>, or where a resize set
 * them aside. */
static void pin_paths(const char *vdir, struct pin_paths *p)
{
	snprintf(p->vdir, sizeof(p->vdir), "%s", vdir);
	snprintf(p->reg, PATH_MAX, "%s/registrations", p->vdir);
	snprintf(p->exits, PATH_MAX, "%s/exits", p->vdir);
	snprintf(p->recent, PATH_MAX, "%s/recent", p->vdir);
	snprintf(p->wakeups, PATH_MAX, "%s/wakeups", p->vdir);
	snprintf(p->link, PATH_MAX, "%s/link", p->vdir);
}

static void unlink_maps(const struct pin_paths *p)
{
	unlink(p->reg);
	unlink(p->exits);
	unlink(p->recent);
	unlink(p->wakeups);
}

int es_check_map_layout(int fd, const char *path, uint32_t key_size,
			uint32_t value_size, uint32_t *max_entries, char *err,
			size_t errlen)
{
	struct bpf_map_info info = {};
	uint32_t len = sizeof(info);
	int rc;

	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0) {
		rc = -errno;
		return es_err(err, errlen, rc, "cannot inspect map %s: %s",
			      path, strerror(-rc));
	}
	if (info.key_size != key_size || info.value_size != value_size)
		return es_err(err, errlen, -EPROTO,
			      "layout version mismatch: map %s has "
			      "key/value size %u/%u, layout v%d expects %u/%u",
			      path, info.key_size, info.value_size,
			      ES_LAYOUT_VERSION, key_size, value_size);
	if (max_entries)
		*max_entries = info.max_entries;
	return 0;
}

int es_open_pinned_map(const char *path, uint32_t key_size, uint32_t value_size,
		       uint32_t *max_entries, char *err, size_t errlen)
{
	int fd, rc;

	fd = bpf_obj_get(path);
	if (fd < 0) {
		rc = -errno;
		return es_err(err, errlen, rc, "cannot open pinned map %s: %s",
			      path, strerror(-rc));
	}
	rc = es_check_map_layout(fd, path, key_size, value_size, max_entries,
				 err, errlen);
	if (rc) {
		close(fd);
		return rc;
	}
	return fd;
}

/* The link's pin went while no monitor held the link (removed by hand),
 * which detached the program; the maps pinned beside it still hold the
 * registrations and the records written until then. A program loaded anew
 * onto them keeps all of that: if all four are there with this layout, the
 * skeleton takes them; else it is left as it was and -ENOENT or -EPROTO
 * returned. */
static int reuse_pinned_maps(struct exitsnoop_bpf *skel,
			     const struct pin_paths *p)
{
	const struct {
		struct bpf_map *map;
		const char *path;
		uint32_t key, value;
	} maps[] = {
		{skel->maps.registrations, p->reg, sizeof(struct es_key),
		 sizeof(struct es_reg)},
		{skel->maps.exits, p->exits, sizeof(struct es_key),
		 sizeof(struct es_exit)},
		{skel->maps.recent, p->recent, sizeof(struct es_key),
		 sizeof(struct es_exit)},
		{skel->maps.wakeups, p->wakeups, 0, 0},
	};
	int fds[4] = {-1, -1, -1, -1};
	int i, rc = 0;

	for (i = 0; i < 4 && !rc; i++) {
		fds[i] = es_open_pinned_map(maps[i].path, maps[i].key,
					    maps[i].value, NULL, NULL, 0);
		if (fds[i] < 0)
			rc = fds[i];
	}
	for (i = 0; i < 4 && !rc; i++)
		rc = bpf_map__reuse_fd(maps[i].map, fds[i]); /* dups it */
	for (i = 0; i < 4; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return rc;
}

/* Fresh load, or onto kept maps: the link is pinned last, so its pin means
 * "complete". */
int es_load_and_pin(const char *vdir, uint32_t capacity, bool keep_maps,
		    bool *kept, char *err, size_t errlen)
{
	struct exitsnoop_bpf *skel;
	struct bpf_link *link = NULL;
	struct pin_paths paths, *p = &paths;
	bool reuse;
	int rc;

	if (kept)
		*kept = false;
	pin_paths(vdir, p);
	if (mkdir(p->vdir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		return es_err(err, errlen, rc, "cannot create %s: %s", p->vdir,
			      strerror(-rc));
	}

	skel = exitsnoop_bpf__open();
	if (!skel)
		return es_err(err, errlen, errno ? -errno : -EINVAL,
			      "cannot open BPF object: %s", strerror(errno));
	skel->rodata->tp_has_group_dead = tp_has_group_dead();
	skel->rodata->ident_kind = es_ident_kind();
	skel->rodata->tick_ns = 1000000000ull / sysconf(_SC_CLK_TCK);
	bpf_map__set_max_entries(skel->maps.registrations, capacity);
	bpf_map__set_max_entries(skel->maps.exits, capacity);
	reuse = keep_maps && reuse_pinned_maps(skel, p) == 0;
	/* Otherwise the maps are an interrupted load's leftovers, which hold
	 * no records worth keeping: no program was attached to write them. */
	if (!reuse)
		unlink_maps(p);

	rc = exitsnoop_bpf__load(skel);
	if (rc == -EPERM || rc == -EACCES) {
		es_err(err, errlen, rc,
		       "bpf() not permitted: run as root or with "
		       "CAP_BPF+CAP_PERFMON+CAP_SYS_ADMIN");
		goto cleanup;
	}
	if (rc) {
		es_err(err, errlen, rc, "cannot load BPF program: %s",
		       strerror(-rc));
		goto cleanup;
	}
	link = bpf_program__attach_raw_tracepoint(skel->progs.handle_exit,
						  "sched_process_exit");
	if (!link) {
		rc = -errno;
		es_err(err, errlen, rc,
		       "cannot attach to raw tracepoint sched_process_exit: %s",
		       strerror(-rc));
		goto cleanup;
	}
	rc = 0;
	if (!reuse)
		rc = bpf_map__pin(skel->maps.registrations, p->reg);
	if (!rc && !reuse)
		rc = bpf_map__pin(skel->maps.exits, p->exits);
	if (!rc && !reuse)
		rc = bpf_map__pin(skel->maps.recent, p->recent);
	if (!rc && !reuse)
		rc = bpf_map__pin(skel->maps.wakeups, p->wakeups);
	if (!rc)
		rc = bpf_link__pin(link, p->link);
	if (rc) {
		es_err(err, errlen, rc, "cannot pin BPF objects under %s: %s",
		       p->vdir, strerror(-rc));
		if (!reuse)
			unlink_maps(p);
		unlink(p->link);
	}
	if (!rc && kept)
		*kept = reuse;
cleanup:
	/* Pinned objects live on without these fds. */
	bpf_link__destroy(link);
	exitsnoop_bpf__destroy(skel);
	return rc;
}

static int on_wakeup(void *ctx, void *data, size_t size)
{
	struct es_monitor *m = ctx;

	if (size == sizeof(struct es_key) && m->nwoken < ES_MAX_WOKEN)
		m->woken[m->nwoken++] = *(struct es_key *)data;
	/* Past the cap the pidfd path delivers: stop consuming for now. */
	return m->nwoken < ES_MAX_WOKEN ? 0 : 1;
}

static int open_wakeups(struct es_monitor *m, char *err, size_t errlen)
{
	int rc;

	m->ring = ring_buffer__new(m->wakeups_fd, on_wakeup, m, NULL);
	if (!m->ring) {
		rc = -errno;
		return es_err(err, errlen, rc, "cannot map ring buffer %s: %s",
			      m->vdir, strerror(-rc));
	}
	return 0;
}

int es_monitor_open(const char *pin_dir, const struct es_open_opts *opts,
		    struct es_monitor **out, char *err, size_t errlen)
{
	uint32_t asked = opts ? opts->capacity : 0;
	struct es_resize_refusal refused = {0};
	struct epoll_event ev = {.events = EPOLLIN};
	char vdir[PATH_MAX - 32], restored[256];
	int fds[ES_PIN_LINK];
	struct pin_paths p;
	struct es_monitor *m;
	bool kept;
	int rc;

	libbpf_set_print(quiet_libbpf);
	rc = check_kernel(err, errlen);
	if (rc)
		return rc;
	rc = es_ensure_bpffs(pin_dir, err, errlen);
	if (rc)
		return rc;
	snprintf(vdir, sizeof(vdir), "%s/v%d", pin_dir, ES_LAYOUT_VERSION);
	pin_paths(vdir, &p);
	/* Pins removed or replaced while no monitor ran: the attached
	 * program's maps are the ones with the records. */
	rc = es_repair_pins(pin_dir, vdir, restored, sizeof(restored), err,
			    errlen);
	if (rc < 0)
		return rc;
	rc = es_resize_pins(pin_dir, asked, &refused, err, errlen);
	if (rc)
		return rc;
	if (access(p.link, F_OK) != 0) {
		rc = es_load_and_pin(vdir, asked ? asked : ES_DEFAULT_CAPACITY,
				     true, &kept, err, errlen);
		/* Kept maps have their old capacity: apply the one asked. */
		if (!rc && kept)
			rc = es_resize_pins(pin_dir, asked, &refused, err,
					    errlen);
		if (rc)
			return rc;
	}

	m = calloc(1, sizeof(*m));
	if (!m)
		return es_err(err, errlen, -ENOMEM, "out of memory");
	m->reg_fd = m->exits_fd = m->recent_fd = m->wakeups_fd = m->epfd =
		m->wakefd = m->link_fd = -1;
	pthread_mutex_init(&m->lock, NULL);
	es_slots_init(&m->slots);
	snprintf(m->pin_dir, sizeof(m->pin_dir), "%s", pin_dir);
	snprintf(m->vdir, sizeof(m->vdir), "%s", vdir);
	snprintf(m->restored, sizeof(m->restored), "%s", restored);

	m->link_fd = es_open_link(p.link, err, errlen);
	if (m->link_fd < 0) {
		rc = m->link_fd;
		goto cleanup;
	}
	/* The maps the program writes into, whatever is pinned meanwhile. */
	rc = es_program_maps(m->link_fd, vdir, fds, &m->capacity, err, errlen);
	if (rc < 0)
		goto cleanup;
	m->reg_fd = fds[0];
	m->exits_fd = fds[1];
	m->recent_fd = fds[2];
	m->wakeups_fd = fds[3];
	rc = open_wakeups(m, err, errlen);
	if (rc < 0)
		goto cleanup;
	m->refused = refused;
	rc = es_migrate_older(m, pin_dir, err, errlen);
	if (rc < 0)
		goto cleanup;
	rc = es_take_over(m, pin_dir, opts ? opts->take_over_dir : NULL, err,
			  errlen);
	if (rc < 0)
		goto cleanup;

	m->epfd = epoll_create1(EPOLL_CLOEXEC);
	m->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ev.data.u64 = ES_WAKE_TOKEN;
	if (m->epfd < 0 || m->wakefd < 0 ||
	    epoll_ctl(m->epfd, EPOLL_CTL_ADD, m->wakefd, &ev) < 0) {
		rc = -errno;
		es_err(err, errlen, rc, "cannot set up epoll: %s",
		       strerror(-rc));
		goto cleanup;
	}
	ev.data.u64 = ES_RING_TOKEN;
	if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, ring_buffer__epoll_fd(m->ring),
		      &ev) < 0) {
		rc = -errno;
		es_err(err, errlen, rc, "cannot set up epoll: %s",
		       strerror(-rc));
		goto cleanup;
	}
	*out = m;
	return 0;
cleanup:
	es_monitor_close(m);
	return rc;
}

void es_monitor_close(struct es_monitor *m)
{
	uint32_t i;

	if (!m)
		return;
	for (i = 0; i < m->slots.n; i++)
		if (m->slots.slot[i].pidfd >= 0)
			close(m->slots.slot[i].pidfd);
	es_slots_free(&m->slots);
	if (m->wakefd >= 0)
		close(m->wakefd);
	if (m->link_fd >= 0)
		close(m->link_fd);
	if (m->epfd >= 0)
		close(m->epfd);
	if (m->exits_fd >= 0)
		close(m->exits_fd);
	if (m->recent_fd >= 0)
		close(m->recent_fd);
	ring_buffer__free(m->ring);
	if (m->wakeups_fd >= 0)
		close(m->wakeups_fd);
	if (m->reg_fd >= 0)
		close(m->reg_fd);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

uint32_t es_monitor_capacity(const struct es_monitor *m)
{
	return m->capacity;
}

uint32_t es_monitor_refused_capacity(const struct es_monitor *m,
				     uint32_t *tracked)
{
	if (tracked)
		*tracked = m->refused.tracked;
	return m->refused.asked;
}

/* A layout version's pin directory: "v" and digits, or the same with the
 * suffix of pins a resize set aside (resize.c). */
static bool is_version_dir(const char *name)
{
	const char *p = name + 1;

	if (name[0] != 'v' || !name[1])
		return false;
	while (*p >= '0' && *p <= '9')
		p++;
	return p > name + 1 && (!*p || strcmp(p, ES_RESIZE_SUFFIX) == 0);
}

/* Link first: once its pin is gone the program is detached (when no fd
 * holds it), so no record is written into half-removed maps. */
int es_destroy_version(const char *vdir)
{
	char path[PATH_MAX + 256];
	struct dirent *e;
	int rc = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/link", vdir);
	if (unlink(path) < 0 && errno != ENOENT)
		rc = -errno;
	d = opendir(vdir);
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", vdir, e->d_name);
		if (unlink(path) < 0 && errno != ENOENT && !rc)
			rc = -errno;
	}
	if (d)
		closedir(d);
	if (rmdir(vdir) < 0 && errno != ENOENT && !rc)
		rc = -errno;
	return rc;
}

int es_pins_destroy(const char *pin_dir, char *err, size_t errlen)
{
	char vdirs[16][32];
	struct dirent *e;
	int i, n = 0, rc = 0;
	DIR *d;

	d = opendir(pin_dir);
	if (!d && errno == ENOENT)
		return 0;
	if (!d)
		return es_err(err, errlen, -errno, "cannot read %s: %s",
			      pin_dir, strerror(errno));
	/* Every layout version's pins, nothing else. */
	while ((e = readdir(d)) && n < 16)
		if (is_version_dir(e->d_name) && strlen(e->d_name) < 32)
			strcpy(vdirs[n++], e->d_name);
	closedir(d);
	for (i = 0; i < n; i++) {
		char vdir[PATH_MAX];
		int r;

		snprintf(vdir, sizeof(vdir), "%s/%s", pin_dir, vdirs[i]);
		r = es_destroy_version(vdir);

		if (r && !rc)
			rc = r;
	}
	if (rc)
		return es_err(err, errlen, rc,
			      "cannot remove pins under %s: %s", pin_dir,
			      strerror(-rc));
	return es_remove_pin_dir(pin_dir, err, errlen);
}
