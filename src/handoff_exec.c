/*
 * handoff_exec.c - the front end's side of handoff.h: network work is
 * done by relayq-deliver, started by exec. The front end (src/relayq, the
 * sendmail that every caller runs) so never maps OpenSSL: it starts in
 * half the time, and the code that reads untrusted stdin holds no TLS.
 *
 * relayq-deliver is found at its installed path (RELAYQ_DELIVER_PATH).
 * Only an unprivileged front end (a build tree, a test, a DESTDIR install)
 * may use one next to its own executable instead: a setgid program must
 * never run a file its caller could have placed.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "handoff.h"
#include "log.h"
#include "queue.h"

#define DELIVER_NAME "relayq-deliver"
#define MAX_VERBOSE  4           /* -v flags passed on */
#define MAX_REAPED   64          /* background children remembered */

extern char **environ;

static pid_t background[MAX_REAPED];
static size_t nbackground;

/* relayq-deliver's path: see the top of this file. */
static const char *
find_deliver(const struct handoff *h, char *buf, size_t size)
{
	char self[PATH_MAX];
	ssize_t n;
	char *slash;

	if (h->privileged)
		return RELAYQ_DELIVER_PATH;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return RELAYQ_DELIVER_PATH;
	self[n] = '\0';
	if ((slash = strrchr(self, '/')) == NULL)
		return RELAYQ_DELIVER_PATH;
	*slash = '\0';
	if (str_fmt(buf, size, "%s/%s", self, DELIVER_NAME) < 0 ||
	    access(buf, X_OK) < 0)
		return RELAYQ_DELIVER_PATH;
	return buf;
}

/* The same for every hand-over of this process: found once. */
static const char *
deliver_path(const struct handoff *h)
{
	static char buf[PATH_MAX];
	static const char *path;

	if (path == NULL)
		path = find_deliver(h, buf, sizeof(buf));
	return path;
}

/* The test-only config override must reach relayq-deliver too. */
static void
pass_config_override(const struct handoff *h)
{
	if (h->config_override != NULL)
		setenv("RELAYQ_CONFIG", h->config_override, 1);
}

/*
 * argv for "relayq-deliver --deliver [-v...] [-C file] -- ID...", under
 * the caller's program name (which the logs show). Freed by the caller.
 */
static char **
deliver_argv(const struct handoff *h, char *const *ids, size_t n)
{
	char **av = xcalloc(n + MAX_VERBOSE + 6, sizeof(*av));
	size_t k = 0;

	av[k++] = h->argv[0] != NULL ? h->argv[0] : (char *)"sendmail";
	av[k++] = (char *)"--deliver";
	for (int v = 0; v < h->verbose && v < MAX_VERBOSE; v++)
		av[k++] = (char *)"-v";
	if (h->config_path != NULL) {
		av[k++] = (char *)"-C";
		av[k++] = (char *)h->config_path;
	}
	av[k++] = (char *)"--";
	for (size_t i = 0; i < n; i++)
		av[k++] = ids[i];
	av[k] = NULL;
	return av;
}

/*
 * Start relayq-deliver; quiet sends its stdout and stderr to /dev/null;
 * infd and outfd (>= 0) become its stdin and stdout.
 */
static pid_t
spawn_deliver(const struct handoff *h, char **av, int detach, int quiet,
    int infd, int outfd)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	const char *prog = deliver_path(h);
	sigset_t dfl;
	pid_t pid = -1;
	int rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	/* The front end may ignore SIGPIPE (-bs, a stream); its child not. */
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF |
	    (detach ? POSIX_SPAWN_SETSID : 0));
	if (infd >= 0)
		posix_spawn_file_actions_adddup2(&fa, infd, STDIN_FILENO);
	if (outfd >= 0)
		posix_spawn_file_actions_adddup2(&fa, outfd, STDOUT_FILENO);
	if (detach) {
		posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null",
		    O_RDONLY, 0);
	}
	if (quiet) {
		posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null",
		    O_WRONLY, 0);
		posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO,
		    STDERR_FILENO);
	}
	pass_config_override(h);
	rc = posix_spawn(&pid, prog, &fa, &attr, av, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (rc != 0) {
		log_warn("cannot run %s: %s", prog, strerror(rc));
		return -1;
	}
	return pid;
}

/* Collect background children that are done, so none lingers as a zombie. */
static void
reap_background(void)
{
	size_t kept = 0;

	for (size_t i = 0; i < nbackground; i++)
		if (waitpid(background[i], NULL, WNOHANG) == 0)
			background[kept++] = background[i];
	nbackground = kept;
}

int
handoff_mode(const struct handoff *h, const struct config *cfg,
    const struct request *req)
{
	const char *prog = deliver_path(h);

	(void)cfg;
	(void)req;
	fflush(NULL);
	pass_config_override(h);
	execv(prog, h->argv);
	log_user("cannot run %s: %s", prog, strerror(errno));
	return EX_OSERR;
}

void
handoff_background(const struct handoff *h, const struct config *cfg,
    const char *qid)
{
	char *ids[1] = { (char *)qid };
	char **av = deliver_argv(h, ids, 1);
	pid_t pid;

	(void)cfg;
	reap_background();
	pid = spawn_deliver(h, av, 1, 1, -1, -1);
	free(av);
	if (pid < 0)
		log_warn("%s: not delivered now, it waits for the next queue run",
		    qid);
	else if (nbackground < MAX_REAPED)
		background[nbackground++] = pid;
}

void
handoff_foreground(const struct handoff *h, const struct config *cfg,
    const struct strlist *ids, int report)
{
	char **av;
	pid_t pid;

	(void)cfg;
	if (ids->n == 0)
		return;
	fflush(NULL);
	av = deliver_argv(h, ids->v, ids->n);
	pid = spawn_deliver(h, av, 0, !report, -1, -1);
	free(av);
	if (pid < 0) {
		log_user("delivery not started (the message stays queued)");
		return;
	}
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

/* relayq-deliver reading ids from a pipe (see handoff.h). */
struct handoff_stream {
	pid_t pid;
	int fd;                      /* the pipe's write end; -1 once broken */
	int done;                    /* relayq-deliver's stdout, read end */
};

struct handoff_stream *
handoff_stream_start(const struct handoff *h, const struct config *cfg)
{
	char *ids[1] = { (char *)"-" };
	struct handoff_stream *s;
	char **av;
	int p[2], q[2];

	(void)cfg;
	if (pipe2(p, O_CLOEXEC) < 0)
		return NULL;
	if (pipe2(q, O_CLOEXEC) < 0) {
		close(p[0]);
		close(p[1]);
		return NULL;
	}
	/* A delivery process that is gone must not kill us with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	fflush(NULL);
	av = deliver_argv(h, ids, 1);
	s = xcalloc(1, sizeof(*s));
	s->pid = spawn_deliver(h, av, 0, 0, p[0], q[1]);
	free(av);
	close(p[0]);
	close(q[1]);
	if (s->pid < 0) {
		close(p[1]);
		close(q[0]);
		free(s);
		return NULL;
	}
	s->fd = p[1];
	s->done = q[0];
	return s;
}

void
handoff_stream_add(struct handoff_stream *s, const char *qid)
{
	char line[QID_LEN + 2];
	int n = snprintf(line, sizeof(line), "%s\n", qid);

	if (s->fd >= 0 && (n < 0 || write_all(s->fd, line, (size_t)n) < 0)) {
		log_warn("%s: not delivered now, it waits for the next queue run",
		    qid);
		close(s->fd);
		s->fd = -1;
	}
}

/*
 * relayq-deliver closes its stdout (our pipe) once every outcome is
 * settled and reported; its QUIT and the fsync of the removals are not
 * waited for (under -v it keeps it until it exits, so that the caller
 * sees the whole transcript). A delivery still running then is left to
 * finish on its own: init reaps it.
 */
void
handoff_stream_finish(struct handoff_stream *s)
{
	char c;

	if (s->fd >= 0)
		close(s->fd);
	for (;;) {
		ssize_t n = read(s->done, &c, 1);

		if (n == 0 || (n < 0 && errno != EINTR))
			break;
	}
	close(s->done);
	(void)waitpid(s->pid, NULL, WNOHANG);
	free(s);
}
