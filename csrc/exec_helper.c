// SPDX-License-Identifier: Apache-2.0
/*
 * The exec helper closes the race of `runc exec --detach`: that command
 * starts the process and exits, and the process may finish before anyone
 * registered it; once reaped, its status is gone. Run under this helper, a
 * child subreaper, the process is reparented to the helper instead of init,
 * and the helper does not reap it until the registering side has said it is
 * done, so the pid stays valid and its exit (if any) stays in the BPF
 * program's recent exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

static int read_pid_file(const char *path)
{
	char buf[32] = "";
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	return atoi(buf) > 0 ? atoi(buf) : -EIO;
}

int es_exec_helper(char **argv, const char *pid_file, int sync_fd)
{
	char line[32], ack;
	pid_t child;
	int st, pid, n;

	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
		perror("embedshim exec helper: PR_SET_CHILD_SUBREAPER");
		return 125;
	}
	/* The command must not hold the sync socket: its EOF tells the other
	 * side that the helper is gone. */
	fcntl(sync_fd, F_SETFD, FD_CLOEXEC);
	child = fork();
	if (child < 0) {
		perror("embedshim exec helper: fork");
		return 125;
	}
	if (child == 0) {
		execvp(argv[0], argv);
		fprintf(stderr, "embedshim exec helper: exec %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}
	while (waitpid(child, &st, 0) < 0)
		if (errno != EINTR)
			return 125;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);

	pid = read_pid_file(pid_file);
	if (pid < 0) {
		fprintf(stderr, "embedshim exec helper: pid file %s: %s\n",
			pid_file, strerror(-pid));
		return 125;
	}
	n = snprintf(line, sizeof(line), "%d\n", pid);
	if (write(sync_fd, line, n) != n)
		return 125;
	/* Hold the process (alive or zombie) until registered; EOF means the
	 * other side gave up, and then nothing more is owed to it. */
	while (read(sync_fd, &ack, 1) < 0 && errno == EINTR)
		;
	return 0;
}
