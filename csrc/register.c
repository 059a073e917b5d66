// SPDX-License-Identifier: Apache-2.0
/*
 * Registering processes: the pidfd (from the caller, or opened here), the
 * identity, the registration in the BPF map, the exit the BPF program may
 * have filed under "recent" meanwhile, then polling. Register, register a
 * pidfd and adopt are the same steps in different orders and checks.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "internal.h"

static bool pidfd_exited(int pidfd)
{
	struct pollfd p = {.fd = pidfd, .events = POLLIN};

	return poll(&p, 1, 0) == 1;
}

/* pidfd first: while it refers to a live process the pid is not recycled. */
static int open_pidfd(int pid, char *err, size_t errlen)
{
	int pidfd = es_pidfd_open(pid);

	if (pidfd == -ESRCH)
		return es_err(err, errlen, -ESRCH, "process %d already exited",
			      pid);
	if (pidfd == -EINVAL)
		return es_err(err, errlen, -EINVAL,
			      "pid %d is not a process (thread group leader)",
			      pid);
	if (pidfd < 0)
		return es_err(err, errlen, pidfd, "process %d: pidfd_open: %s",
			      pid, strerror(-pidfd));
	return pidfd;
}

/* The pid a pidfd refers to, from its fdinfo: -1 once reaped, -EBADF if fd
 * is no pidfd. */
static int pidfd_pid(int pidfd)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	p = strstr(buf, "\nPid:\t");
	return p ? atoi(p + 6) : -EBADF;
}

/* The key of the process behind pidfd, checked against expect_ident. */
static int identify(int pidfd, int pid, uint64_t expect_ident,
		    struct es_key *key, char *err, size_t errlen)
{
	uint64_t ident;
	int rc;

	rc = es_ident_of_pidfd(pidfd, pid, &ident);
	if (rc == -ENOENT || rc == -ESRCH)
		return es_err(err, errlen, -ESRCH,
			      "process %d exited before it was registered",
			      pid);
	if (rc)
		return es_err(err, errlen, rc,
			      "process %d: cannot read its identity: %s", pid,
			      strerror(-rc));
	if (expect_ident && ident != expect_ident)
		return es_err(err, errlen, -ESTALE,
			      "pid %d is not the expected process (identity "
			      "%llu, expected %llu): its pid was reused",
			      pid, (unsigned long long)ident,
			      (unsigned long long)expect_ident);
	*key = (struct es_key){.pid = pid, .ident = ident};
	return 0;
}

static int insert_registration(struct es_monitor *m, const struct es_key *key,
			       char *err, size_t errlen)
{
	struct es_reg reg = {.registered_ns = es_mono_ns()};
	int rc;

	if (bpf_map_update_elem(m->reg_fd, key, &reg, BPF_NOEXIST) == 0)
		return 0;
	rc = -errno;
	if (rc == -E2BIG)
		return es_err(err, errlen, -ENOSPC,
			      "tracking capacity %u reached", m->capacity);
	if (rc == -EEXIST)
		return es_err(err, errlen, rc,
			      "process %u is already registered", key->pid);
	if (rc == -EPERM || rc == -EACCES)
		return es_err(err, errlen, rc,
			      "no permission to update the registrations map: "
			      "run as root or with CAP_BPF");
	return es_err(err, errlen, rc, "cannot register process %u: %s",
		      key->pid, strerror(-rc));
}

/* If the process's last thread passed the tracepoint before the insert,
 * the BPF program filed its exit under "recent": make it its record. (Its
 * pidfd may not be readable yet: exit_notify comes after the tracepoint.)
 * Returns whether it has an exit record now. */
static bool take_recent(struct es_monitor *m, const struct es_key *key)
{
	struct es_exit rec;

	if (bpf_map_lookup_elem(m->exits_fd, key, &rec) == 0)
		return true;
	if (bpf_map_lookup_elem(m->recent_fd, key, &rec) != 0)
		return false;
	bpf_map_update_elem(m->exits_fd, key, &rec, BPF_NOEXIST);
	return true;
}

/* Poll the registered process; takes pidfd. On failure the registration is
 * dropped again. */
static int start_polling(struct es_monitor *m, int pidfd,
			 const struct es_key *key, uint64_t *ident_out,
			 char *err, size_t errlen)
{
	int rc = es_track(m, pidfd, key);

	if (rc) {
		bpf_map_delete_elem(m->reg_fd, key);
		return es_err(err, errlen, rc, "cannot poll process %u: %s",
			      key->pid, strerror(-rc));
	}
	if (ident_out)
		*ident_out = key->ident;
	return 0;
}

/* Register the process behind pidfd (owned by this call), which must not
 * have exited: a zombie's exit happened before we knew of it. */
static int register_live(struct es_monitor *m, int pidfd, int pid,
			 uint64_t expect_ident, uint64_t *ident_out, char *err,
			 size_t errlen)
{
	struct es_key key;
	int rc;

	rc = identify(pidfd, pid, expect_ident, &key, err, errlen);
	if (!rc && pidfd_exited(pidfd))
		rc = es_err(err, errlen, -ESRCH,
			    "process %d exited before it was registered", pid);
	if (!rc)
		rc = insert_registration(m, &key, err, errlen);
	if (rc) {
		close(pidfd);
		return rc;
	}
	take_recent(m, &key);
	return start_polling(m, pidfd, &key, ident_out, err, errlen);
}

int es_monitor_register(struct es_monitor *m, int pid, uint64_t expect_ident,
			uint64_t *ident_out, char *err, size_t errlen)
{
	int pidfd = open_pidfd(pid, err, errlen);

	if (pidfd < 0)
		return pidfd;
	return register_live(m, pidfd, pid, expect_ident, ident_out, err,
			     errlen);
}

int es_monitor_register_pidfd(struct es_monitor *m, int pidfd, int pid,
			      uint64_t *ident_out, char *err, size_t errlen)
{
	int fd, owner = pidfd_pid(pidfd);

	if (owner == -1)
		return es_err(err, errlen, -ESRCH, "process %d already exited",
			      pid);
	if (owner < 0)
		return es_err(err, errlen, -EBADF, "fd %d is not a pidfd",
			      pidfd);
	if (owner != pid)
		return es_err(err, errlen, -EINVAL,
			      "pidfd %d refers to process %d, not %d", pidfd,
			      owner, pid);
	/* Our own reference for the epoll set: the caller keeps its pidfd
	 * (for signals) and may close it at any time. */
	fd = fcntl(pidfd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return es_err(err, errlen, -errno,
			      "process %d: cannot duplicate its pidfd: %s", pid,
			      strerror(errno));
	return register_live(m, fd, pid, 0, ident_out, err, errlen);
}

int es_monitor_adopt(struct es_monitor *m, int pid, uint64_t *ident_out,
		     char *err, size_t errlen)
{
	struct es_key key;
	int pidfd, rc;

	pidfd = open_pidfd(pid, err, errlen);
	if (pidfd < 0)
		return pidfd;
	rc = identify(pidfd, pid, 0, &key, err, errlen);
	if (!rc)
		rc = insert_registration(m, &key, err, errlen);
	if (rc) {
		close(pidfd);
		return rc;
	}
	/* The caller kept it from being reaped, so an exit before the insert
	 * is still in "recent" unless more than ES_RECENT_EXITS followed; an
	 * exit after the insert (checked again once the pidfd says it exited)
	 * has its record. */
	if (!take_recent(m, &key) && pidfd_exited(pidfd) &&
	    !take_recent(m, &key)) {
		bpf_map_delete_elem(m->reg_fd, &key);
		close(pidfd);
		return es_err(err, errlen, -ESRCH,
			      "process %d exited and its status was already "
			      "dropped from the recent exits (more than %d "
			      "exits since)",
			      pid, ES_RECENT_EXITS);
	}
	return start_polling(m, pidfd, &key, ident_out, err, errlen);
}
