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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "log.h"
#include "queue.h"
#include "runner.h"
#include "submit.h"

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
 * Descriptors 0-2 valid (a closed stdout must not become a queue file),
 * everything else closed, core dumps off, a umask that keeps spool files
 * to the relayq group, and an environment reduced to a safe minimum.
 * Returns the test-only config override, captured before the reset.
 */
static const char *
sanitize_process(void)
{
	static char override[PATH_MAX];
	struct rlimit nocore = { 0, 0 };
	const char *tz = getenv("TZ"), *conf = getenv("RELAYQ_CONFIG");
	char keep_tz[64] = "";
	int have_override = 0;
	long maxfd;

	for (int fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0) {
			int nfd = open("/dev/null", O_RDWR);

			if (nfd < 0)
				fatal(EX_OSERR, "cannot open /dev/null: %s", strerror(errno));
			if (nfd != fd)
				fatal(EX_OSERR, "descriptor %d could not be made valid", fd);
		}
	maxfd = sysconf(_SC_OPEN_MAX);
	if (maxfd < 0 || maxfd > 65536)
		maxfd = 65536;
	for (int fd = 3; fd < maxfd; fd++)
		close(fd);
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
	    "         -B 7BIT|8BITMIME, -G (no header fix-ups); see relayq(8).\n");
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

/*
 * Queue the message; exit 0 from here on means it is safe on disk. Then
 * deliver it as asked: in a detached child (the caller returns at once),
 * in the foreground with the outcome on stderr, or not at all.
 */
static int
do_submit(const struct config *cfg, const struct request *req)
{
	struct run_opts o = { .force = 1, .report = 1 };
	struct run_stats st;
	char qid[QID_LEN + 1];
	struct err err;

	if (submit_message(cfg, req, STDIN_FILENO, qid, &err) < 0)
		return fail(&err);
	if (req->verbose)
		fprintf(stderr, "%s: queued as %s\n", log_progname(), qid);
	switch (delivery_of(cfg, req)) {
	case DELIVERY_BACKGROUND:
		runner_background(cfg, qid);
		break;
	case DELIVERY_FOREGROUND:
		o.only_id = qid;
		if (runner_run(cfg, &o, &st, &err) < 0)
			log_user("%s: delivery: %s (the message stays queued)", qid, err.msg);
		break;
	case DELIVERY_QUEUE:
		runner_poke(cfg);
		break;
	}
	return EX_OK;
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

static int
do_newaliases(const struct config *cfg)
{
	if (access(cfg->aliases, R_OK) < 0 && errno != ENOENT) {
		log_user("cannot read %s: %s", cfg->aliases, strerror(errno));
		return EX_NOINPUT;
	}
	return EX_OK;
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
	if (req.log_path != NULL)
		drop_privileges();
	log_set_verbose(req.verbose);
	if (config_load(config_path, &cfg, &err) < 0)
		return fail(&err);
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
	case MODE_QUEUE_RUN:
		rc = do_queue_run(cfg, &req);
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
