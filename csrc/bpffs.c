// SPDX-License-Identifier: Apache-2.0
/*
 * Where pins live: a pin dir is either inside the host's bpffs
 * (/sys/fs/bpf/..., mounted here if nobody did) or a private bpffs mounted at
 * the pin dir itself. Only a bpffs mounted at a pin dir is ever unmounted.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "internal.h"

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

#define BPFFS_FLAGS (MS_NOSUID | MS_NODEV | MS_NOEXEC)

/* Every directory created is root's only: pins are nobody else's business. */
static int mkdir_p(const char *path)
{
	char buf[PATH_MAX], *p;

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

bool es_is_bpffs(const char *path)
{
	struct statfs sfs;

	return statfs(path, &sfs) == 0 && sfs.f_type == BPF_FS_MAGIC;
}

static bool is_mount_point(const char *path)
{
	char parent[PATH_MAX];
	struct stat a, b;

	snprintf(parent, sizeof(parent), "%s/..", path);
	return stat(path, &a) == 0 && stat(parent, &b) == 0 &&
	       a.st_dev != b.st_dev;
}

/* Inside the host's bpffs mount point (not the mount point itself)? */
static bool under_host_bpffs(const char *pin_dir)
{
	size_t n = strlen(ES_HOST_BPFFS);

	return strncmp(pin_dir, ES_HOST_BPFFS "/", n + 1) == 0 &&
	       pin_dir[n + 1] != '\0';
}

/* The host's bpffs, as systemd mounts it, if it is not mounted yet. */
static int ensure_host_bpffs(char *err, size_t errlen)
{
	int rc;

	if (es_is_bpffs(ES_HOST_BPFFS))
		return 0;
	if (mount("bpffs", ES_HOST_BPFFS, "bpf", BPFFS_FLAGS, "mode=0700") <
	    0) {
		rc = -errno;
		return es_err(err, errlen, rc,
			      "bpffs cannot be mounted at %s: %s",
			      ES_HOST_BPFFS, strerror(-rc));
	}
	return 0;
}

int es_ensure_bpffs(const char *pin_dir, char *err, size_t errlen)
{
	struct stat st;
	int rc;

	if (under_host_bpffs(pin_dir)) {
		rc = ensure_host_bpffs(err, errlen);
		if (rc)
			return rc;
	}
	rc = mkdir_p(pin_dir);
	if (rc < 0)
		return es_err(err, errlen, rc, "cannot create pin dir %s: %s",
			      pin_dir, strerror(-rc));
	if (stat(pin_dir, &st) == 0 && !S_ISDIR(st.st_mode))
		return es_err(err, errlen, -ENOTDIR,
			      "pin dir %s is not a directory", pin_dir);
	if (es_is_bpffs(pin_dir))
		return 0;
	/* A private bpffs per pin dir keeps monitors independent and the
	 * pins unreadable to others. */
	if (mount("bpffs", pin_dir, "bpf", BPFFS_FLAGS, "mode=0700") < 0) {
		rc = -errno;
		return es_err(err, errlen, rc,
			      "bpffs cannot be mounted at %s: %s", pin_dir,
			      strerror(-rc));
	}
	return 0;
}

int es_remove_pin_dir(const char *pin_dir, char *err, size_t errlen)
{
	if (es_is_bpffs(pin_dir) && is_mount_point(pin_dir) &&
	    umount2(pin_dir, MNT_DETACH) < 0)
		return es_err(err, errlen, -errno, "cannot unmount %s: %s",
			      pin_dir, strerror(errno));
	if (rmdir(pin_dir) < 0 && errno != ENOENT && errno != ENOTEMPTY &&
	    errno != EBUSY)
		return es_err(err, errlen, -errno, "cannot remove %s: %s",
			      pin_dir, strerror(errno));
	return 0;
}
