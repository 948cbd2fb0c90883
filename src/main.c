/*
 * main.c - the entry point of both programs, relayq (the sendmail front
 * end) and relayq-deliver: make the process safe, pick the personality by
 * argv[0] (sendmail, mailq, newaliases, runq), parse the command line,
 * read the config and dispatch. What needs the network goes through
 * handoff.h: in process in relayq-deliver, by exec in the front end.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sysexits.h>
#include <unistd.h>

#include "aliases.h"
#include "cli.h"
#include "config.h"
#include "handoff.h"
#include "log.h"
#include "qtool.h"
#include "privsep.h"
#include "queue.h"
#include "smtpd.h"
#include "submit.h"
#include "verify.h"

#define DEFAULT_CONFIG SYSCONFDIR "/relayq.conf"
#define SAFE_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/*
 * A caller who may not read the config must not learn its contents from
 * an error message either (an unquoted password can end up as "unknown
 * key"): such a caller gets the file and line, the system log the rest.
 */
static int
config_failed(const struct err *err)
{
	char where[256];
	const char *p;
	size_t n;

	if (getuid() == 0 || (getegid() == getgid() && geteuid() == getuid()))
		return log_failure(err);
	/* "file:line: key: reason" -> "file:line" */
	p = strchr(err->msg, ':');
	p = p ? strchr(p + 1, ':') : NULL;
	n = p ? (size_t)(p - err->msg) : strlen(err->msg);
	str_fmt(where, sizeof(where), "%.*s", (int)(n < 200 ? n : 200), err->msg);
	if (log_open("syslog", NULL) == 0)
		log_error("%s", err->msg);
	log_close();
	log_user("%s: configuration error (details in the mail log)", where);
	return EX_CONFIG;
}

/* Are we running with more privilege than the caller (setgid install)? */
static int
privileged(void)
{
	return getegid() != getgid() || geteuid() != getuid();
}

static int separate_always;     /* $RELAYQ_PRIVSEP=always, unprivileged */

/*
 * Parse the caller's input in a separated child (privsep.h)? Only when
 * there is a privilege to keep from it: setgid, and a caller other than
 * root (root could read everything anyway).
 */
static int
separate(void)
{
	return separate_always || (privileged() && getuid() != 0);
}

/* Give up the setgid group for good: the caller named a file of its own. */
static void
drop_privileges(void)
{
	if (getuid() == 0 || !privileged())
		return;
	if (setresgid(getgid(), getgid(), getgid()) < 0 || privileged())
		fatal(EX_OSERR, "cannot drop group privileges: %s", strerror(errno));
}

/*
 * Close every descriptor above stderr. The caller may have lowered
 * RLIMIT_NOFILE below descriptors it left open, so the limit is no bound:
 * close_range(2) where the kernel has it, else a generous loop.
 */
static void
close_inherited(void)
{
	long maxfd;

#ifdef SYS_close_range
	if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
		return;
#endif
	maxfd = sysconf(_SC_OPEN_MAX);
	if (maxfd < 65536)
		maxfd = 65536;
	for (long fd = 3; fd < maxfd; fd++)
		close((int)fd);
}

/*
 * Ignored signals, the signal mask and timers survive exec: a caller that
 * ignores SIGCHLD would make every waitpid() fail (and a queued message
 * look lost), a blocked signal would never arrive, a pending alarm would
 * fire in the middle of a commit. Start from the defaults (handlers set
 * before main, such as a sanitizer's, are ours and stay).
 */
static void
reset_signals(void)
{
	static const int timers[] = { ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF };
	struct itimerval off;
	struct sigaction old, dfl;
	sigset_t none;

	memset(&off, 0, sizeof(off));
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	for (int sig = 1; sig < NSIG; sig++)
		if (sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN)
			(void)sigaction(sig, &dfl, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++)
		setitimer(timers[i], &off, NULL);
}

/*
 * Descriptors 0-2 valid (a closed stdout must not become a queue file),
 * everything else closed, signals at their defaults, core dumps off, a
 * umask that keeps spool files to the relayq group, and an environment
 * reduced to a safe minimum. Returns the test-only config override,
 * captured before the reset.
 */
static const char *
sanitize_process(void)
{
	static char override[PATH_MAX];
	struct rlimit nocore = { 0, 0 };
	const char *tz = getenv("TZ"), *conf = getenv("RELAYQ_CONFIG");
	char keep_tz[64] = "";
	int have_override = 0;

	for (int fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0) {
			int nfd = open("/dev/null", O_RDWR);

			if (nfd < 0)
				fatal(EX_OSERR, "cannot open /dev/null: %s", strerror(errno));
			if (nfd != fd)
				fatal(EX_OSERR, "descriptor %d could not be made valid", fd);
		}
	close_inherited();
	reset_signals();
	setrlimit(RLIMIT_CORE, &nocore);
	umask(027);

	if (!privileged() && conf != NULL)
		have_override = str_copy(override, conf, sizeof(override)) == 0;
	/* Tests: the separated front end even without privilege to drop. */
	if (!privileged() && (conf = getenv("RELAYQ_PRIVSEP")) != NULL)
		separate_always = strcmp(conf, "always") == 0;
	/* A TZ too long to keep whole is dropped, never cut short. */
	if (tz != NULL && strstr(tz, "..") == NULL &&
	    str_copy(keep_tz, tz, sizeof(keep_tz)) < 0)
		keep_tz[0] = '\0';
	if (clearenv() != 0)
		fatal(EX_OSERR, "cannot reset the environment");
	setenv("PATH", SAFE_PATH, 1);
	if (keep_tz[0] != '\0')
		setenv("TZ", keep_tz, 1);
	return have_override ? override : NULL;
}

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: sendmail [-t] [-i] [-f sender] [-F name] [-odb|-odi|-odq] [-v] [address ...]\n"
	    "       mailq | sendmail -bp        list the queue\n"
	    "       sendmail -bP                print the effective configuration\n"
	    "       newaliases | sendmail -bi   check the aliases file\n"
	    "options: -C file (other config; drops privileges), -N dsn, -R full|hdrs, -V envid,\n"
	    "         -B 7BIT|8BITMIME, -G (no header fix-ups); see relayq(8).\n"
	    "queue tools (first argument; -v and -C file may follow):\n"
	    "       relayq --show ID...          envelope, recipients and header of an entry\n"
	    "       relayq --delete ID...|ALL    remove entries (also from failed/)\n"
	    "       relayq --retry ID...         deliver now (as -qI)\n"
	    "       relayq --hold ID...|ALL      keep entries from delivery ('!' in mailq)\n"
	    "       relayq --release ID...|ALL   deliver held entries again\n"
	    "       relayq --requeue ID...|ALL   move entries from failed/ back to the queue\n"
	    "       relayq --summary             one line of queue counts for monitoring\n"
	    "       relayq --test [address]      check each smarthost: DNS, TLS, AUTH, VRFY\n"
	    "       relayq --deliver ID...       deliver now, outcome on stderr (as -odi)\n");
}

static int
do_list(const struct config *cfg)
{
	struct queue q;
	struct err err;
	int rc;

	if (queue_open(&q, cfg->queue_dir, 0, &err) < 0) {
		/* A queue that was never created is simply empty. */
		if (access(cfg->queue_dir, F_OK) < 0 && errno == ENOENT) {
			printf("Mail queue is empty\n");
			return EX_OK;
		}
		return log_failure(&err);
	}
	rc = queue_list(&q, stdout, &err);
	queue_close(&q);
	if (fflush(stdout) != 0)
		return EX_IOERR;
	return rc < 0 ? log_failure(&err) : EX_OK;
}

/* Which delivery the caller asked for: -od* wins over the config. */
static enum delivery_mode
delivery_of(const struct config *cfg, const struct request *req)
{
	switch (req->deliver) {
	case DELIVER_BACKGROUND: return DELIVERY_BACKGROUND;
	case DELIVER_FOREGROUND: return DELIVERY_FOREGROUND;
	case DELIVER_QUEUE:      return DELIVERY_QUEUE;
	case DELIVER_CONFIG:     break;
	}
	return cfg->delivery;
}

/* How this process was started (for relayq-deliver, see handoff.h). */
static struct handoff self;

/* What to do with each message the front end queued. */
struct deliveries {
	const struct config *cfg;
	enum delivery_mode mode;
	struct strlist ids;          /* foreground: delivered at the end */
	struct handoff_stream *stream;   /* or as each is committed */
	unsigned committed;          /* messages made durable */
};

/* In the privileged parent, right after a message became durable. */
static void
queued(const char *qid, void *arg)
{
	struct deliveries *d = arg;

	d->committed++;
	switch (d->mode) {
	case DELIVERY_BACKGROUND:
		handoff_background(&self, d->cfg, qid);
		break;
	case DELIVERY_FOREGROUND:
		if (d->stream != NULL)
			handoff_stream_add(d->stream, qid);
		else
			strlist_add(&d->ids, qid);
		break;
	case DELIVERY_QUEUE:
		queue_poke(d->cfg->queue_dir);
		break;
	}
}

struct submit_args {
	const struct config *cfg;
	const struct request *req;
};

/* The unprivileged half of a command-line submission. */
static int
submit_child(struct spool *spool, void *arg)
{
	struct submit_args *a = arg;
	char qid[QID_LEN + 1];
	struct err err;

	if (submit_message(a->cfg, spool, a->req, STDIN_FILENO, qid, &err) < 0)
		return log_failure(&err);
	if (a->req->verbose)
		fprintf(stderr, "%s: queued as %s\n", log_progname(), qid);
	return EX_OK;
}

/*
 * Queue the message (exit 0 means it is safe on disk), parsing it in a
 * process without the relayq group (privsep.h). Then deliver it as asked:
 * in a detached child (the caller returns at once), in the foreground with
 * the outcome on stderr, or not at all.
 */
static int
do_submit(const struct config *cfg, const struct request *req)
{
	struct deliveries d = { .cfg = cfg, .mode = delivery_of(cfg, req) };
	struct submit_args a = { cfg, req };
	struct err err;
	int code;

	/* -odi: relayq-deliver connects while the message is committed. */
	if (d.mode == DELIVERY_FOREGROUND)
		d.stream = handoff_stream_start(&self, cfg);
	code = privsep_run(cfg, separate(), submit_child, &a, queued, &d, &err);
	/*
	 * Once the message is durable the answer is 0, whatever became of the
	 * child: a caller told otherwise would send it again.
	 */
	if (d.committed > 0 && code != EX_OK) {
		log_warn("the message was queued although the front end reported "
		    "an error (%s); exit status 0", code < 0 ? err.msg : "see above");
		code = EX_OK;
	}
	if (d.stream != NULL)
		handoff_stream_finish(d.stream);
	if (code < 0) {
		strlist_free(&d.ids);
		return log_failure(&err);
	}
	handoff_foreground(&self, cfg, &d.ids, 1);
	strlist_free(&d.ids);
	return code;
}

/*
 * Under inetd (and systemd with StandardError=inherit) stderr is the
 * client's socket: nothing but SMTP replies may go there.
 */
static void
protect_smtp_stream(void)
{
	struct stat e, o;
	int fd;

	if (fstat(STDERR_FILENO, &e) < 0 || fstat(STDOUT_FILENO, &o) < 0 ||
	    e.st_dev != o.st_dev || e.st_ino != o.st_ino)
		return;
	if ((fd = open("/dev/null", O_WRONLY)) >= 0) {
		dup2(fd, STDERR_FILENO);
		if (fd != STDERR_FILENO)
			close(fd);
	}
}

struct smtp_args {
	const struct config *cfg;
	const struct request *req;
};

/* The unprivileged half of -bs: the whole SMTP dialogue. */
static int
smtp_child(struct spool *spool, void *arg)
{
	struct smtp_args *a = arg;
	struct smtpd_opts o = {
		.infd = STDIN_FILENO, .outfd = STDOUT_FILENO,
		.no_fixups = a->req->no_fixups, .full_name = a->req->full_name,
		.spool = spool,
	};
	struct err err;
	unsigned nqueued;

	if (smtpd_session(a->cfg, &o, &nqueued, &err) < 0) {
		log_warn("-bs session: %s", err.msg);
		return err_exit_code(err.cls);
	}
	return EX_OK;
}

/*
 * -bs: an SMTP session on stdin/stdout, in a process without the relayq
 * group. Each queued message is delivered as -od/the config say: a
 * background child per message, a poke to the queue daemon, or (-odi) once
 * the session is over, so the client's dialogue is never held up.
 */
static int
do_smtp(const struct config *cfg, const struct request *req)
{
	struct deliveries d = { .cfg = cfg, .mode = delivery_of(cfg, req) };
	struct smtp_args a = { cfg, req };
	struct err err;
	int code;

	signal(SIGPIPE, SIG_IGN);
	protect_smtp_stream();
	code = privsep_run(cfg, separate(), smtp_child, &a, queued, &d, &err);
	if (code < 0) {
		strlist_free(&d.ids);
		log_warn("-bs session: %s", err.msg);
		return err_exit_code(err.cls);
	}
	handoff_foreground(&self, cfg, &d.ids, req->verbose > 0);
	strlist_free(&d.ids);
	return code;
}

/* --show, --delete, --hold, --release, --requeue, --summary. */
static int
do_queue_tool(const struct config *cfg, const struct request *req)
{
	struct err err;

	if (qtool_run(cfg, req, NULL, &err) < 0)
		return log_failure(&err);
	return EX_OK;
}

/* Does the request need the network, and so relayq-deliver (handoff.h)? */
static int
needs_network(const struct request *req)
{
	switch (req->mode) {
	case MODE_QUEUE_RUN:
	case MODE_RETRY:
	case MODE_SELFTEST:
	case MODE_DELIVER:
		return 1;
	case MODE_VERIFY:
		return req->verbose > 0;    /* -bv -v asks the smarthost */
	default:
		return 0;
	}
}

/* -bv without -v: the addresses alone. */
static int
do_verify(const struct config *cfg, const struct request *req)
{
	struct strlist all = { 0 };
	int rc = verify_addresses(cfg, req, &all);

	strlist_free(&all);
	return rc;
}

/*
 * -bi, newaliases: there is no database to build; check the file and
 * report each problem as FILE:LINE: message. Silent when all is well
 * (as Postfix's newaliases); a missing file is no aliases.
 */
static int
do_newaliases(const struct config *cfg)
{
	struct alias_ctx actx = { cfg->hostname, cfg->domain,
	    cfg->max_alias_expansions };
	struct strlist problems = { 0 };
	struct aliases *al;
	struct err err;
	size_t errors;

	if (aliases_load(cfg->aliases, &al, &err) < 0) {
		log_user("%s", err.msg);
		return err.cls == ERR_DATA ? EX_DATAERR : EX_NOINPUT;
	}
	errors = aliases_check(al, &actx, &problems);
	for (size_t i = 0; i < problems.n; i++)
		fprintf(stderr, "%s\n", problems.v[i]);
	strlist_free(&problems);
	aliases_free(al);
	return errors > 0 ? EX_DATAERR : EX_OK;
}

int
main(int argc, char **argv)
{
	struct request req;
	struct config *cfg = NULL;
	struct err err;
	const char *config_path = DEFAULT_CONFIG;
	const char *override;
	int rc;

	override = sanitize_process();
	log_init(argc > 0 ? argv[0] : "sendmail");
	if (cli_parse(argc, argv, cli_personality(argc > 0 ? argv[0] : "sendmail"),
	    &req, &err) < 0) {
		return log_failure(&err);
	}
	switch (req.mode) {
	case MODE_HELP:
		usage(stdout);
		return EX_OK;
	case MODE_VERSION:
		printf("relayq %s\n", PACKAGE_VERSION);
		return EX_OK;
	case MODE_NOOP:
		return EX_OK;
	case MODE_UNAVAILABLE:
		log_user("relayq relays outgoing mail only; it never runs as an SMTP daemon");
		return EX_UNAVAILABLE;
	default:
		break;
	}

	if (req.config_path != NULL) {
		drop_privileges();
		config_path = req.config_path;
	} else if (override != NULL) {
		config_path = override;
	}
	self.argv = argv;
	self.config_path = req.config_path;
	self.config_override = req.config_path == NULL ? override : NULL;
	self.privileged = privileged();
	self.verbose = req.verbose;
	/* -X (sendmail's traffic log) is accepted and ignored, as Postfix
	 * does: no file is opened, so no privilege needs to go. */
	log_set_verbose(req.verbose);
	if (config_load(config_path, &cfg, &err) < 0)
		return config_failed(&err);
	if (log_open(cfg->log, &err) < 0) {
		rc = log_failure(&err);
		config_free(cfg);
		return rc;
	}

	if (needs_network(&req)) {
		rc = handoff_mode(&self, cfg, &req);
		config_free(cfg);
		log_close();
		return rc;
	}
	switch (req.mode) {
	case MODE_SUBMIT:
		rc = do_submit(cfg, &req);
		break;
	case MODE_LIST:
		rc = do_list(cfg);
		break;
	case MODE_PRINT_CONFIG:
		config_print(stdout, cfg);
		rc = fflush(stdout) == 0 ? EX_OK : EX_IOERR;
		break;
	case MODE_NEWALIASES:
		rc = do_newaliases(cfg);
		break;
	case MODE_SMTP:
		rc = do_smtp(cfg, &req);
		break;
	case MODE_VERIFY:
		rc = do_verify(cfg, &req);
		break;
	case MODE_SHOW:
	case MODE_DELETE:
	case MODE_HOLD:
	case MODE_RELEASE:
	case MODE_REQUEUE:
	case MODE_SUMMARY:
		rc = do_queue_tool(cfg, &req);
		break;
	default:
		log_user("this mode is not available yet in relayq %s", PACKAGE_VERSION);
		rc = EX_UNAVAILABLE;
		break;
	}
	config_free(cfg);
	log_close();
	return rc;
}
