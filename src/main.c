/*
 * main.c - relayq's entry point: make the process safe, pick the
 * personality by argv[0] (sendmail, mailq, newaliases, runq), parse the
 * command line, read the config and dispatch. The only place where error
 * classes become sysexits(3) codes.
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

#include "address.h"
#include "aliases.h"
#include "cli.h"
#include "config.h"
#include "log.h"
#include "qtool.h"
#include "privsep.h"
#include "queue.h"
#include "relay.h"
#include "runner.h"
#include "selftest.h"
#include "smtp.h"
#include "smtpd.h"
#include "submit.h"
#include "tls.h"

#define DEFAULT_CONFIG SYSCONFDIR "/relayq.conf"
#define SAFE_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static int
exit_code(enum err_class cls)
{
	switch (cls) {
	case ERR_OK:        return EX_OK;
	case ERR_TEMP:      return EX_TEMPFAIL;
	case ERR_PERM:      return EX_UNAVAILABLE;
	case ERR_PROTO:     return EX_PROTOCOL;
	case ERR_CONFIG:    return EX_CONFIG;
	case ERR_INTERNAL:  return EX_SOFTWARE;
	case ERR_USAGE:     return EX_USAGE;
	case ERR_DATA:      return EX_DATAERR;
	case ERR_NOUSER:    return EX_NOUSER;
	case ERR_CANTCREAT: return EX_CANTCREAT;
	case ERR_IO:        return EX_IOERR;
	case ERR_NOPERM:    return EX_NOPERM;
	case ERR_OS:        return EX_OSERR;
	}
	return EX_SOFTWARE;
}

static int
fail(const struct err *err)
{
	log_user("%s", err->msg);
	return exit_code(err->cls);
}

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
		return fail(err);
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
	    "       relayq --test [address]      check each smarthost: DNS, TLS, AUTH, VRFY\n");
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
		return fail(&err);
	}
	rc = queue_list(&q, stdout, &err);
	queue_close(&q);
	if (fflush(stdout) != 0)
		return EX_IOERR;
	return rc < 0 ? fail(&err) : EX_OK;
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

/* What to do with each message the front end queued. */
struct deliveries {
	const struct config *cfg;
	enum delivery_mode mode;
	struct strlist ids;          /* foreground: delivered at the end */
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
		runner_background(d->cfg, qid);
		break;
	case DELIVERY_FOREGROUND:
		strlist_add(&d->ids, qid);
		break;
	case DELIVERY_QUEUE:
		runner_poke(d->cfg);
		break;
	}
}

/* -odi: deliver what was queued, reporting on stderr; it stays queued on
 * a temporary failure and the exit status is still 0. */
static void
deliver_foreground(struct deliveries *d, int report)
{
	for (size_t i = 0; i < d->ids.n; i++) {
		struct run_opts o = { .force = 1, .only_id = d->ids.v[i],
		    .report = report };
		struct run_stats st;
		struct err err;

		if (runner_run(d->cfg, &o, &st, &err) < 0)
			log_user("%s: delivery: %s (the message stays queued)",
			    d->ids.v[i], err.msg);
	}
	strlist_free(&d->ids);
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
		return fail(&err);
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

	code = privsep_run(cfg, submit_child, &a, queued, &d, &err);
	/*
	 * Once the message is durable the answer is 0, whatever became of the
	 * child: a caller told otherwise would send it again.
	 */
	if (d.committed > 0 && code != EX_OK) {
		log_warn("the message was queued although the front end reported "
		    "an error (%s); exit status 0", code < 0 ? err.msg : "see above");
		code = EX_OK;
	}
	if (code < 0) {
		strlist_free(&d.ids);
		return fail(&err);
	}
	deliver_foreground(&d, 1);
	return code;
}

static int
do_queue_run(const struct config *cfg, const struct request *req)
{
	struct run_opts o = { .force = req->queue_force || req->queue_id != NULL,
	    .only_id = req->queue_id, .report = req->verbose > 0 };
	struct run_stats st;
	struct err err;

	if (req->queue_interval > 0) {
		if (runner_daemon(cfg, req->queue_interval, &err) < 0)
			return fail(&err);
		return EX_OK;
	}
	if (runner_run(cfg, &o, &st, &err) < 0)
		return fail(&err);
	if (req->verbose)
		fprintf(stderr, "%s: queue run: %u delivered, %u deferred, %u bounced, "
		    "%u skipped, %u errors\n", log_progname(), st.delivered,
		    st.deferred, st.bounced, st.skipped, st.errors);
	return st.errors ? EX_TEMPFAIL : EX_OK;
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
		return exit_code(err.cls);
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
	code = privsep_run(cfg, smtp_child, &a, queued, &d, &err);
	if (code < 0) {
		strlist_free(&d.ids);
		log_warn("-bs session: %s", err.msg);
		return exit_code(err.cls);
	}
	deliver_foreground(&d, req->verbose > 0);
	return code;
}

/* -bv -v: ask the first smarthost about each address with VRFY. */
static int
verify_smarthost(const struct config *cfg, const struct strlist *addrs)
{
	const struct smarthost *sh;
	struct smtp_params p;
	struct tls_client *tls = NULL;
	struct smtp_session *s = NULL;
	struct buf secret;
	struct err err;
	int rc = EX_OK;

	if (cfg->nsmarthosts == 0) {
		log_user("-bv -v: no smarthost configured");
		return EX_UNAVAILABLE;
	}
	sh = &cfg->smarthosts[0];
	memset(&p, 0, sizeof(p));
	p.sh = sh;
	p.helo_name = cfg->hostname;
	p.max_reply_lines = (int)cfg->max_reply_lines;
	p.max_reply_line = (int)cfg->max_reply_line;
	buf_init(&secret, 0);
	if (sh->tls != TLS_NONE && (tls = tls_client_new(sh, &err)) == NULL)
		goto failed;
	p.tls = tls;
	if (sh->username != NULL && relay_secret(sh, &secret, &err) < 0)
		goto failed;
	p.secret = secret.data;
	if (smtp_open(&p, &s, &err) < 0) {
		buf_wipe_free(&secret);
		goto failed;
	}
	buf_wipe_free(&secret);
	for (size_t i = 0; i < addrs->n; i++) {
		struct smtp_reply r;

		if (smtp_vrfy(s, addrs->v[i], &r, &err) < 0) {
			smtp_close(s);
			goto failed;
		}
		printf("%s... smarthost %s (%s): %s\n", addrs->v[i], sh->name,
		    smtp_peer(s), r.text);
		if (r.code == 550 || r.code == 551 || r.code == 553)
			rc = EX_NOUSER;
	}
	smtp_close(s);
	tls_client_free(tls);
	return rc;
failed:
	tls_client_free(tls);
	log_user("smarthost %s (%s): %s", sh->name, sh->host, err.msg);
	return exit_code(err.cls);
}

/* One -bv address: its alias expansion and qualified result, or why not. */
static int
verify_address(const struct config *cfg, const struct aliases *al,
    const char *addr, struct strlist *all)
{
	struct alias_ctx actx = { cfg->hostname, cfg->domain,
	    cfg->max_alias_expansions };
	struct strlist exp = { 0 }, warn = { 0 };
	struct err err;
	int aliased = 0, rc;

	rc = addr_validate(addr, &err);
	if (rc == 0)
		rc = aliases_expand(al, addr, &actx, &exp, &aliased, &warn, &err);
	for (size_t i = 0; rc == 0 && i < exp.n; i++)
		rc = addr_validate(exp.v[i], &err);
	for (size_t i = 0; i < warn.n; i++)
		fprintf(stderr, "%s: %s\n", log_progname(), warn.v[i]);
	if (rc < 0) {
		printf("%s... undeliverable: %s\n", addr, err.msg);
	} else {
		printf("%s... deliverable: %s", addr, aliased ? "expands to " : "");
		for (size_t i = 0; i < exp.n; i++) {
			printf("%s<%s>", i > 0 ? ", " : "", exp.v[i]);
			if (!strlist_has_ci(all, exp.v[i]))
				strlist_add(all, exp.v[i]);
		}
		printf("\n");
	}
	strlist_free(&exp);
	strlist_free(&warn);
	return rc;
}

/*
 * -bv: for each address, the alias expansion and the qualified result
 * (EX_NOUSER when any is invalid); with -v the first smarthost is asked
 * with VRFY too, as Python's smtplib verify() does.
 */
static int
do_verify(const struct config *cfg, const struct request *req)
{
	struct aliases *al = NULL;
	struct strlist all = { 0 };
	struct err err;
	int rc = EX_OK;

	if (aliases_load(cfg->aliases, &al, &err) < 0)
		return fail(&err);
	for (int i = 0; i < req->nrcpts; i++) {
		struct strlist list = { 0 };
		char shown[256];

		str_escape(req->rcpts[i], strlen(req->rcpts[i]), shown, sizeof(shown));
		if (addr_parse_list(req->rcpts[i], &list, &err) < 0 || list.n == 0) {
			printf("%s... undeliverable: %s\n", shown,
			    list.n == 0 && err.cls == ERR_OK ? "no address" : err.msg);
			rc = EX_NOUSER;
		}
		for (size_t j = 0; j < list.n; j++)
			if (verify_address(cfg, al, list.v[j], &all) < 0)
				rc = EX_NOUSER;
		strlist_free(&list);
		err.cls = ERR_OK;
	}
	aliases_free(al);
	if (fflush(stdout) != 0)
		rc = EX_IOERR;
	if (req->verbose > 0 && all.n > 0) {
		int vrc = verify_smarthost(cfg, &all);

		if (rc == EX_OK)
			rc = vrc;
		if (fflush(stdout) != 0)
			rc = EX_IOERR;
	}
	strlist_free(&all);
	return rc;
}

/* --show, --delete, --retry, --hold, --release, --requeue, --summary. */
static int
do_queue_tool(const struct config *cfg, const struct request *req)
{
	struct err err;

	if (qtool_run(cfg, req, &err) < 0)
		return fail(&err);
	return EX_OK;
}

/* --test [address]: the connectivity self-test, for operators only. */
static int
do_selftest(const struct config *cfg, const struct request *req)
{
	struct err err;

	if (!qtool_caller_ok()) {
		log_user("--test: only root and members of the %s group may use it",
		    RELAYQ_GROUP);
		return EX_NOPERM;
	}
	if (selftest_run(cfg, req->nrcpts > 0 ? req->rcpts[0] : NULL, stdout,
	    &err) < 0)
		return fail(&err);
	return EX_OK;
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
		return fail(&err);
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
	/* -X (sendmail's traffic log) is accepted and ignored, as Postfix
	 * does: no file is opened, so no privilege needs to go. */
	log_set_verbose(req.verbose);
	if (config_load(config_path, &cfg, &err) < 0)
		return config_failed(&err);
	if (log_open(cfg->log, &err) < 0) {
		rc = fail(&err);
		config_free(cfg);
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
	case MODE_QUEUE_RUN:
		rc = do_queue_run(cfg, &req);
		break;
	case MODE_SHOW:
	case MODE_DELETE:
	case MODE_RETRY:
	case MODE_HOLD:
	case MODE_RELEASE:
	case MODE_REQUEUE:
	case MODE_SUMMARY:
		rc = do_queue_tool(cfg, &req);
		break;
	case MODE_SELFTEST:
		rc = do_selftest(cfg, &req);
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
