// SPDX-License-Identifier: Apache-2.0
/*
 * Process identity: what, besides the pid, says "this is the process we
 * registered". It must be computable both here (from a pidfd) and in the BPF
 * program (from the task), with the same value.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#ifndef PID_FS_MAGIC
#define PID_FS_MAGIC 0x50494446
#endif

int es_pidfd_open(int pid)
{
	int fd = syscall(SYS_pidfd_open, pid, 0);

	return fd < 0 ? -errno : fd;
}

bool es_compat_start_ticks;

enum es_ident_kind es_ident_kind(void)
{
	static enum es_ident_kind kind;
	struct statfs sfs;
	int fd;

	if (es_compat_start_ticks)
		return ES_IDENT_START_TICKS;
	if (kind)
		return kind;
	/* With pidfs (Linux >= 6.9) every process has its own inode number,
	 * which the BPF program reads as task->thread_pid->ino. Before that
	 * all pidfds share one anonymous inode. */
	fd = es_pidfd_open(getpid());
	if (fd >= 0 && fstatfs(fd, &sfs) == 0 && sfs.f_type == PID_FS_MAGIC)
		kind = ES_IDENT_PIDFS_INO;
	else
		kind = ES_IDENT_START_TICKS;
	if (fd >= 0)
		close(fd);
	return kind;
}

/* Field 22 of /proc/<pid>/stat: start time in clock ticks since boot. */
static int start_ticks(int pid, uint64_t *ticks)
{
	char path[64], buf[1024], *p;
	unsigned long long v;
	ssize_t n;
	int fd, i;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return n < 0 ? -errno : -EIO;
	buf[n] = '\0';
	/* comm may hold spaces and ')': fields resume after the last ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return -EIO;
	/* p[2] is field 3 (state); skip to field 22. */
	p += 2;
	for (i = 3; i < 22 && p; i++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (!p || sscanf(p, "%llu", &v) != 1)
		return -EIO;
	*ticks = v;
	return 0;
}

int es_ident_of_pidfd(int pidfd, int pid, uint64_t *ident)
{
	struct stat st;
	int rc;

	if (es_ident_kind() == ES_IDENT_PIDFS_INO) {
		if (fstat(pidfd, &st) < 0)
			return -errno;
		*ident = st.st_ino;
		return 0;
	}
	rc = start_ticks(pid, ident);
	if (rc)
		return rc;
	/* The pidfd keeps the struct pid, not the number: once the process
	 * is reaped, /proc/<pid> may be another process. Still there (alive
	 * or a zombie) after the read, the pid was the pidfd's process's. */
	if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) < 0)
		return -errno;
	return 0;
}

int es_process_ident(int pid, uint64_t *ident, char *err, size_t errlen)
{
	int fd, rc;

	fd = es_pidfd_open(pid);
	if (fd < 0)
		return es_err(err, errlen, fd, "process %d: pidfd_open: %s",
			      pid, strerror(-fd));
	rc = es_ident_of_pidfd(fd, pid, ident);
	close(fd);
	if (rc < 0)
		return es_err(err, errlen, rc, "process %d: identity: %s", pid,
			      strerror(-rc));
	return 0;
}
