// SPDX-License-Identifier: Apache-2.0
/*
 * The reaper: gives the daemon's process tree a prompt reaper of its own,
 * whatever the host's pid 1 does. Without it, container inits (orphaned when
 * `runc create` exits), exec processes (orphaned when the exec helper exits)
 * and double-forked runc.v2 shims are reaped by the host's init, which may
 * do so seconds late: an exited process then stays visible (`ps` in the
 * container, kill(pid, 0)), and a pid namespace is not torn down (runc
 * delete waits) until its zombies are gone.
 *
 * Three processes, all this binary, none running the Go runtime but the
 * daemon:
 *
 *   front (pid P, the pid the user, systemd or a test started)
 *     `- reaper (child subreaper, comm "es-reaper", own process group)
 *          `- daemon (containerd, this binary re-executed)
 *
 * The front forwards every catchable signal to the reaper, which forwards it
 * to the daemon; when the daemon exits, the reaper reports its wait status
 * through a pipe and the front exits with that status (or dies of the same
 * signal), so a supervisor sees the daemon's exit as P's.
 *
 * The reaper is the nearest subreaper above containerd, so every orphan of
 * the daemon's tree is reparented to it and reaped at once (SIGCHLD through
 * a signalfd, then waitpid(-1)). containerd's own children are not affected:
 * they stay containerd's, and containerd waits for them (os/exec, go-runc);
 * waitpid(-1) here only ever sees the daemon itself and orphans.
 *
 * The reaper outlives the daemon for as long as it has children: containers
 * keep their parent across a daemon crash or restart, and so stay promptly
 * reaped, as runc.v2's do under their shims. It exits once its last child is
 * reaped. If the front dies (SIGKILL), the reaper SIGKILLs the daemon, so no
 * daemon runs on without the pid its supervisor knows; if the reaper itself
 * is SIGKILLed, the daemon dies with it (PR_SET_PDEATHSIG) and the
 * containers, which keep running, fall back to the host's init for reaping.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "embedshim/monitor.h"

/* Signals that stay with their receiver: uncatchable ones, SIGCHLD (each
 * process waits for its own children), the synchronous faults (raised by the
 * kernel for the receiver's own code) and SIGPIPE (ignored by the reaper,
 * which may write its status pipe after the front died). */
static int forwarded(int sig)
{
	switch (sig) {
	case SIGKILL:
	case SIGSTOP:
	case SIGCHLD:
	case SIGSEGV:
	case SIGBUS:
	case SIGFPE:
	case SIGILL:
	case SIGTRAP:
	case SIGSYS:
	case SIGPIPE:
		return 0;
	}
	return 1;
}

/* What the daemon gets back before exec: the signal mask and dispositions
 * the front started with (SIG_IGN survives exec, so it is restored too). */
static sigset_t orig_mask;
static struct sigaction orig_pipe;

static void msg(const char *what, int err)
{
	fprintf(stderr, "embedshim reaper: %s: %s\n", what, strerror(err));
}

/* Exit as the daemon did: same code, or death by the same signal (without a
 * core dump of this process, which would say nothing about the daemon). */
static void mirror(int st)
{
	struct rlimit no_core = {0, 0};
	sigset_t one;
	int sig;

	if (WIFEXITED(st))
		_exit(WEXITSTATUS(st));
	if (!WIFSIGNALED(st))
		_exit(125);
	sig = WTERMSIG(st);
	setrlimit(RLIMIT_CORE, &no_core);
	signal(sig, SIG_DFL);
	sigemptyset(&one);
	sigaddset(&one, sig);
	sigprocmask(SIG_UNBLOCK, &one, NULL);
	raise(sig);
	_exit(128 + sig);
}

static void exec_daemon(char **argv, pid_t reaper)
{
	/* No daemon without its reaper: a new one would be started next to
	 * it, and its orphans would go to the host's init again. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != reaper)
		_exit(125);
	sigaction(SIGPIPE, &orig_pipe, NULL);
	sigprocmask(SIG_SETMASK, &orig_mask, NULL);
	setenv(ES_REAPER_CHILD_ENV, "1", 1);
	execv("/proc/self/exe", argv);
	msg("exec /proc/self/exe", errno);
	_exit(127);
}

static int null_stdio(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -1;
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	if (fd > 2)
		close(fd);
	return 0;
}

/* Reap every child that has exited; report the daemon's status once. Returns
 * 1 when no child is left. */
static int reap(pid_t *daemon, int *status_fd)
{
	pid_t pid;
	int st;

	for (;;) {
		pid = waitpid(-1, &st, WNOHANG);
		if (pid > 0) {
			if (pid == *daemon) {
				*daemon = 0;
				if (write(*status_fd, &st, sizeof(st)) < 0) {
					/* the front is gone: nobody to tell */
				}
				close(*status_fd);
				*status_fd = -1;
			}
			continue;
		}
		if (pid < 0 && errno == EINTR)
			continue;
		return pid < 0 && errno == ECHILD;
	}
}

static int reaper_main(char **argv, int sfd, int status_fd, int life_fd)
{
	struct signalfd_siginfo si;
	pid_t self = getpid(), daemon;
	struct pollfd pfd[2];

	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
		msg("PR_SET_CHILD_SUBREAPER", errno);
		return 125;
	}
	/* Terminal signals reach the front's process group only; the front
	 * forwards them, so the daemon gets each once. */
	setpgid(0, 0);
	prctl(PR_SET_NAME, "es-reaper");
	daemon = fork();
	if (daemon < 0) {
		msg("fork", errno);
		return 125;
	}
	if (daemon == 0)
		exec_daemon(argv, self);
	/* The reaper may outlive the front by long: it must not keep the
	 * daemon's log pipe or terminal open. */
	null_stdio();

	for (;;) {
		pfd[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = life_fd, .events = POLLIN};
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 125;
		}
		if (pfd[1].revents) {
			/* The front died (it holds the only write end and never
			 * writes): take the daemon down with it. */
			close(life_fd);
			life_fd = -1;
			if (daemon > 0)
				kill(daemon, SIGKILL);
		}
		if (!(pfd[0].revents & POLLIN))
			continue;
		if (read(sfd, &si, sizeof(si)) != sizeof(si))
			continue;
		if (si.ssi_signo != SIGCHLD) {
			if (daemon > 0)
				kill(daemon, si.ssi_signo);
			continue;
		}
		if (reap(&daemon, &status_fd) && daemon == 0)
			return 0;
	}
}

void es_reaper_name(const char *argv0)
{
	const char *slash = strrchr(argv0, '/');

	/* exec of /proc/self/exe names the process "exe": keep the name it
	 * was started as (ps, pgrep), for the front and the daemon alike. */
	prctl(PR_SET_NAME, slash ? slash + 1 : argv0);
}

int es_reaper_run(char **argv)
{
	int status_pipe[2], life_pipe[2], sfd, st;
	struct signalfd_siginfo si;
	struct pollfd pfd[2];
	sigset_t all;
	pid_t reaper;
	ssize_t n;

	unsetenv(ES_REAPER_MODE_ENV);
	es_reaper_name(argv[0]);
	sigemptyset(&all);
	for (int sig = 1; sig < SIGRTMIN; sig++)
		if (forwarded(sig))
			sigaddset(&all, sig);
	for (int sig = SIGRTMIN; sig <= SIGRTMAX; sig++)
		sigaddset(&all, sig);
	sigaddset(&all, SIGCHLD);
	sigprocmask(SIG_BLOCK, &all, &orig_mask);
	sigaction(SIGPIPE, NULL, &orig_pipe);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &all, SFD_CLOEXEC);
	if (sfd < 0 || pipe2(status_pipe, O_CLOEXEC) < 0 ||
	    pipe2(life_pipe, O_CLOEXEC) < 0) {
		msg("set-up", errno);
		return 125;
	}
	reaper = fork();
	if (reaper < 0) {
		msg("fork", errno);
		return 125;
	}
	if (reaper == 0) {
		close(status_pipe[0]);
		close(life_pipe[1]);
		_exit(reaper_main(argv, sfd, status_pipe[1], life_pipe[0]));
	}
	close(status_pipe[1]);
	close(life_pipe[0]);

	/* The front: forward signals, wait for the daemon's status. */
	for (;;) {
		pfd[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
		pfd[1] =
			(struct pollfd){.fd = status_pipe[0], .events = POLLIN};
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			msg("poll", errno);
			return 125;
		}
		if ((pfd[0].revents & POLLIN) &&
		    read(sfd, &si, sizeof(si)) == sizeof(si) &&
		    si.ssi_signo != SIGCHLD)
			kill(reaper, si.ssi_signo);
		if (!pfd[1].revents)
			continue;
		n = read(status_pipe[0], &st, sizeof(st));
		if (n == sizeof(st))
			mirror(st);
		if (n < 0 && errno == EINTR)
			continue;
		/* No status: the reaper died first (and the daemon with it,
		 * by its parent-death signal). Exit as the reaper did. */
		while (waitpid(reaper, &st, 0) < 0)
			if (errno != EINTR)
				return 125;
		fprintf(stderr, "embedshim reaper: the reaper exited before "
				"the daemon\n");
		mirror(WIFEXITED(st) && WEXITSTATUS(st) == 0 ?
			       W_EXITCODE(125, 0) :
			       st);
	}
}
