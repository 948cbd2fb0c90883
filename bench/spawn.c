/*
 * spawn.c - the benchmark's stopwatch: run one command N times in a row,
 * each with its own standard input, and report for every run the wall time
 * the caller waited (spawn to wait4), the exit status and the peak RSS of
 * the process (wait4's rusage). At the end it reports the largest peak RSS
 * among all the processes it and its children waited for
 * (RUSAGE_CHILDREN), which covers helpers a peer forks and reaps itself.
 *
 *   spawn [-n N] [-i FILE | -g BYTES] [-t SECONDS] [-q] -- command [arg ...]
 *
 *   -i FILE   stdin of every run is FILE (opened afresh each time)
 *   -g BYTES  stdin is a pipe fed by a generator process with a message of
 *             about BYTES bytes (headers, then 76-column body lines), so a
 *             1 GB message never touches the disk on the way in
 *   -t SECS   kill a run (SIGKILL) that has not exited after SECS seconds;
 *             it counts as failed, with status 124
 *   -q        no per-run lines, only the summary
 *
 * The command's stdout is /dev/null; its stderr is ours.
 * Output, one line per run: "run I USEC STATUS MAXRSS_KIB", then
 * "failed F" (runs that did not exit 0) and "children_maxrss_kib K".
 * Exit status 0 if every run exited 0.
 * Part of bench/; never used by the test suite.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static void
die(const char *what)
{
	fprintf(stderr, "spawn: %s: %s\n", what, strerror(errno));
	exit(2);
}

static long long
now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int
write_full(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The generator: a plain message of about total bytes, written in 64 KiB blocks. */
static void
generate(int fd, unsigned long long total)
{
	static char block[65536];
	const char *hdr =
	    "From: Bench Sender <bench@example.com>\n"
	    "To: sink@example.net\n"
	    "Subject: relayq benchmark, large message\n"
	    "\n";
	size_t line = 77, nlines = sizeof(block) / line;
	unsigned long long sent;

	for (size_t i = 0; i < nlines; i++) {
		for (size_t j = 0; j < line - 1; j++)
			block[i * line + j] = (char)('A' + (i + j) % 26);
		block[i * line + line - 1] = '\n';
	}
	if (write_full(fd, hdr, strlen(hdr)) < 0)
		_exit(1);
	sent = strlen(hdr);
	while (sent < total) {
		size_t n = nlines * line;

		if (total - sent < n)
			n = (size_t)((total - sent) / line + 1) * line;
		if (write_full(fd, block, n) < 0)
			_exit(1);
		sent += n;
	}
	_exit(0);
}

/*
 * Wait for pid at most timeout seconds (0: forever) without polling in a
 * loop: a pidfd becomes readable when the process exits. Returns 1 if it
 * had to be killed.
 */
static int
wait_or_kill(pid_t pid, long timeout)
{
	struct pollfd pfd;
	int fd, r;

	if (timeout <= 0 || (fd = (int)syscall(SYS_pidfd_open, pid, 0)) < 0)
		return 0;
	pfd.fd = fd;
	pfd.events = POLLIN;
	while ((r = poll(&pfd, 1, (int)(timeout * 1000))) < 0 && errno == EINTR)
		;
	close(fd);
	if (r == 0) {
		kill(pid, SIGKILL);
		return 1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	const char *infile = NULL;
	unsigned long long gen = 0;
	long n = 1, timeout = 0;
	int quiet = 0, c, failed = 0;
	struct rusage ru;

	while ((c = getopt(argc, argv, "+n:i:g:t:q")) != -1) {
		switch (c) {
		case 'n': n = strtol(optarg, NULL, 10); break;
		case 't': timeout = strtol(optarg, NULL, 10); break;
		case 'i': infile = optarg; break;
		case 'g': gen = strtoull(optarg, NULL, 10); break;
		case 'q': quiet = 1; break;
		default:
			fprintf(stderr, "usage: spawn [-n N] [-i FILE | -g BYTES] [-t SECS] [-q] "
			    "-- cmd ...\n");
			return 2;
		}
	}
	if (optind >= argc || n < 1) {
		fprintf(stderr, "spawn: no command\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	for (long i = 0; i < n; i++) {
		posix_spawn_file_actions_t fa;
		pid_t pid, genpid = -1;
		int status = 0, in = -1, pfd[2] = { -1, -1 }, killed;
		long long t0, t1;

		if (infile != NULL && (in = open(infile, O_RDONLY | O_CLOEXEC)) < 0)
			die(infile);
		if (gen > 0) {
			if (pipe2(pfd, O_CLOEXEC) < 0)
				die("pipe");
			if ((genpid = fork()) < 0)
				die("fork");
			if (genpid == 0) {
				close(pfd[0]);
				generate(pfd[1], gen);
			}
			close(pfd[1]);
			in = pfd[0];
		}
		posix_spawn_file_actions_init(&fa);
		if (in >= 0)
			posix_spawn_file_actions_adddup2(&fa, in, STDIN_FILENO);
		/* Our stdout carries the results; the command's goes nowhere. */
		posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
		t0 = now_usec();
		errno = posix_spawnp(&pid, argv[optind], &fa, NULL, argv + optind, environ);
		if (errno != 0)
			die(argv[optind]);
		killed = wait_or_kill(pid, timeout);
		while (wait4(pid, &status, 0, &ru) < 0)
			if (errno != EINTR)
				die("wait4");
		t1 = now_usec();
		posix_spawn_file_actions_destroy(&fa);
		if (in >= 0)
			close(in);
		if (genpid > 0)
			while (waitpid(genpid, NULL, 0) < 0 && errno == EINTR)
				;
		if (killed || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed++;
		if (!quiet)
			printf("run %ld %lld %d %ld\n", i, t1 - t0, killed ? 124 :
			    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
			    ru.ru_maxrss);
	}
	getrusage(RUSAGE_CHILDREN, &ru);
	printf("failed %d\n", failed);
	printf("children_maxrss_kib %ld\n", ru.ru_maxrss);
	return failed ? 1 : 0;
}
