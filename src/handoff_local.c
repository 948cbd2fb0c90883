/*
 * handoff_local.c - the network work of handoff.h, done in this process:
 * the half of relayq-deliver that main.c does not share with the front
 * end. Queue runs, the daemon, --retry, --test, -bv -v, --deliver and the
 * detached delivery after a submit.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "handoff.h"
#include "log.h"
#include "qtool.h"
#include "queue.h"
#include "relay.h"
#include "runner.h"
#include "selftest.h"
#include "smtp.h"
#include "tls.h"
#include "verify.h"

static int
do_queue_run(const struct config *cfg, const struct request *req)
{
	struct run_opts o = { .force = req->queue_force || req->queue_id != NULL,
	    .only_id = req->queue_id, .report = req->verbose > 0 };
	struct run_stats st;
	struct err err;

	if (req->queue_interval > 0) {
		/* The daemon's user may make the key that seals cached TLS
		 * sessions; deliveries by other users can then use it too. */
		tls_cache_prepare(cfg->queue_dir);
		if (runner_daemon(cfg, req->queue_interval, &err) < 0)
			return log_failure(&err);
		return EX_OK;
	}
	if (runner_run(cfg, &o, &st, &err) < 0)
		return log_failure(&err);
	if (req->verbose)
		fprintf(stderr, "%s: queue run: %u delivered, %u deferred, %u bounced, "
		    "%u skipped, %u errors\n", log_progname(), st.delivered,
		    st.deferred, st.bounced, st.skipped, st.errors);
	return st.errors ? EX_TEMPFAIL : EX_OK;
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
		return log_failure(&err);
	return EX_OK;
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
	return err_exit_code(err.cls);
}

/* -bv -v: the addresses as -bv shows them, then the smarthost's VRFY. */
static int
do_verify(const struct config *cfg, const struct request *req)
{
	struct strlist all = { 0 };
	int rc, vrc;

	rc = verify_addresses(cfg, req, &all);
	if (all.n > 0 && rc != EX_IOERR) {
		vrc = verify_smarthost(cfg, &all);
		if (rc == EX_OK)
			rc = vrc;
		if (fflush(stdout) != 0)
			rc = EX_IOERR;
	}
	strlist_free(&all);
	return rc;
}

/* --retry: the queue tool, delivering with the runner. */
static int
do_retry(const struct config *cfg, const struct request *req)
{
	struct err err;

	if (qtool_run(cfg, req, runner_run, &err) < 0)
		return log_failure(&err);
	return EX_OK;
}

/* Deliver the entries now, over one session; a failure leaves them
 * queued and is only told. */
static void
deliver_ids(const struct config *cfg, char *const *ids, size_t n, int report)
{
	struct run_stats st;
	struct err err;

	if (n > 0 && runner_deliver_ids(cfg, ids, n, report, &st, &err) < 0)
		log_user("delivery: %s (the message%s stay%s queued)", err.msg,
		    n > 1 ? "s" : "", n > 1 ? "" : "s");
}

/*
 * Every outcome of --deliver - is settled and reported: give the caller
 * back its stdout and stderr, so that it can return while the session is
 * closed (the front end waits for end of file on our stdout). Not under
 * -v: the transcript goes on to the QUIT.
 */
static void
release_caller(void)
{
	int devnull;

	fflush(NULL);
	if ((devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0)
		return;
	dup2(devnull, STDOUT_FILENO);
	dup2(devnull, STDERR_FILENO);
	close(devnull);
}

/*
 * --deliver ID...: what -odi does after queuing; exit 0 either way.
 * --deliver -: the ids come on stdin, one per line, as the front end
 * commits them (handoff_stream_start).
 */
static int
do_deliver(const struct config *cfg, const struct request *req)
{
	if (req->nrcpts == 1 && strcmp(req->rcpts[0], "-") == 0) {
		struct run_stats st;
		struct err err;

		if (runner_deliver_stream(cfg, STDIN_FILENO, 1,
		    req->verbose > 0 ? NULL : release_caller, &st, &err) < 0)
			log_user("delivery: %s (the message stays queued)", err.msg);
		return EX_OK;
	}
	for (int i = 0; i < req->nrcpts; i++)
		if (!qid_valid(req->rcpts[i])) {
			char esc[64];

			str_escape(req->rcpts[i], strlen(req->rcpts[i]), esc,
			    sizeof(esc));
			log_user("--deliver: not a queue id: \"%s\"", esc);
			return EX_USAGE;
		}
	deliver_ids(cfg, req->rcpts, (size_t)req->nrcpts, 1);
	return EX_OK;
}

int
handoff_mode(const struct handoff *h, const struct config *cfg,
    const struct request *req)
{
	(void)h;
	switch (req->mode) {
	case MODE_QUEUE_RUN: return do_queue_run(cfg, req);
	case MODE_RETRY:     return do_retry(cfg, req);
	case MODE_SELFTEST:  return do_selftest(cfg, req);
	case MODE_VERIFY:    return do_verify(cfg, req);
	case MODE_DELIVER:   return do_deliver(cfg, req);
	default:
		log_user("internal error: mode %d needs no network", (int)req->mode);
		return EX_SOFTWARE;
	}
}

void
handoff_foreground(const struct handoff *h, const struct config *cfg,
    const struct strlist *ids, int report)
{
	(void)h;
	deliver_ids(cfg, ids->v, ids->n, report);
}

void
handoff_background(const struct handoff *h, const struct config *cfg,
    const char *qid)
{
	struct run_opts o = { .only_id = qid, .force = 1 };
	struct run_stats st;
	struct err err;
	pid_t pid = fork();
	int devnull;

	(void)h;
	if (pid < 0) {
		log_warn("%s: cannot fork for delivery, it waits for the next queue run", qid);
		return;
	}
	if (pid > 0) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		return;
	}
	/* Detach: new session, reparented to init, the caller's pipes closed. */
	setsid();
	if (fork() != 0)
		_exit(0);
	if ((devnull = open("/dev/null", O_RDWR)) >= 0) {
		dup2(devnull, STDIN_FILENO);
		dup2(devnull, STDOUT_FILENO);
		dup2(devnull, STDERR_FILENO);
		if (devnull > STDERR_FILENO)
			close(devnull);
	}
	if (runner_run(cfg, &o, &st, &err) < 0)
		log_error("%s: %s", qid, err.msg);
	_exit(0);
}

/* In this process there is nothing to overlap: deliver at the end. */
struct handoff_stream {
	const struct config *cfg;
	struct strlist ids;
};

struct handoff_stream *
handoff_stream_start(const struct handoff *h, const struct config *cfg)
{
	struct handoff_stream *s = xcalloc(1, sizeof(*s));

	(void)h;
	s->cfg = cfg;
	return s;
}

void
handoff_stream_add(struct handoff_stream *s, const char *qid)
{
	strlist_add(&s->ids, qid);
}

void
handoff_stream_finish(struct handoff_stream *s)
{
	deliver_ids(s->cfg, s->ids.v, s->ids.n, 1);
	strlist_free(&s->ids);
	free(s);
}
