/*
 * runner.c - queue runs. For each due entry: lock, deliver through the
 * relay (one session for the whole run), then settle it on disk: remove
 * when every recipient is done, queue a bounce for new permanent failures,
 * move to failed/ what failed, or schedule the next attempt from the
 * retry list; past queue_lifetime the pending recipients fail too.
 * Entries on hold are never delivered, not even by a forced run.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bounce.h"
#include "log.h"
#include "relay.h"
#include "runner.h"

#define TMP_GRACE (24 * 3600)   /* age after which tmp/ files are garbage */

static volatile sig_atomic_t stop_requested;

static long
retry_delay(const struct config *cfg, int attempts)
{
	size_t i;

	if (cfg->nretry == 0)
		return 300;
	i = attempts <= 0 ? 0 : (size_t)(attempts - 1);
	return cfg->retry[i < cfg->nretry ? i : cfg->nretry - 1];
}

static void
set_str(char **dst, const char *src)
{
	free(*dst);
	*dst = src ? xstrdup(src) : NULL;
}

/* Past its lifetime: every pending recipient fails with the last reason. */
static void
expire(const struct config *cfg, struct envelope *env)
{
	char life[32], why[1200];

	format_duration(cfg->queue_lifetime, life, sizeof(life));
	for (size_t i = 0; i < env->nrcpts; i++) {
		struct rcpt *rc = &env->rcpts[i];

		if (rc->status != RCPT_PENDING)
			continue;
		str_fmt(why, sizeof(why), "message expired after %s in the queue: %s",
		    life, rc->error ? rc->error : env->last_error ?
		    env->last_error : "not delivered");
		rc->status = RCPT_FAILED;
		set_str(&rc->dsn, "4.4.7");
		set_str(&rc->error, why);
		log_info("%s: to=<%s>, status=expired (%s)", env->id, rc->addr, why);
	}
}

static void
report_outcome(const struct envelope *env, const unsigned char *was_pending)
{
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct rcpt *rc = &env->rcpts[i];

		if (!was_pending[i])
			continue;
		fprintf(stderr, "%s: %s: <%s>: %s%s%s%s\n", log_progname(), env->id,
		    rc->addr, rc->status == RCPT_SENT ? "sent" :
		    rc->status == RCPT_FAILED ? "failed" : "deferred, will retry",
		    rc->error ? " (" : "", rc->error ? rc->error : "",
		    rc->error ? ")" : "");
	}
}

/*
 * After the update that names the prepared bounce: commit it if that
 * update reached env/ID (queue_update replaced e->fd, even if it failed
 * afterwards), else throw it away: those recipients are still pending on
 * disk and the next attempt decides again.
 */
static int
commit_bounce(struct qentry *e, struct queue_tx *tx, int rc, int recorded,
    struct err *err)
{
	struct err e2;

	if (!recorded) {
		queue_tx_abort(tx);
		return rc;
	}
	if (queue_tx_commit_prepared(tx, &e2) < 0) {
		/* env/ID names it: the next queue_lock commits it. */
		log_error("%s: bounce %s: %s", e->id, tx->id, e2.msg);
		if (rc == 0)
			*err = e2;
		return -1;
	}
	log_info("%s: sender non-delivery notification: %s", e->id, tx->id);
	return rc;
}

/*
 * Write the outcome of an attempt to the queue. A bounce goes in two
 * phases (queue_tx_prepare): prepared in tmp/, named in the original's
 * envelope by the same update that records the failures, then committed;
 * only then does the original move to failed/. A crash at any point gives
 * one bounce: before the update, the attempt is repeated as if it had not
 * happened; after it, queue_lock commits what the envelope names.
 */
static int
settle(const struct config *cfg, struct queue *q, struct qentry *e,
    const unsigned char *was_pending, struct run_stats *st, struct err *err)
{
	struct envelope *env = &e->env;
	unsigned char *report = xcalloc(env->nrcpts ? env->nrcpts : 1, 1);
	size_t pending = 0, failed = 0, newly_failed = 0;
	struct queue_tx btx;
	int rc = 0, bounce = 0, oldfd;

	env->attempts++;
	if (time(NULL) - env->created >= cfg->queue_lifetime)
		expire(cfg, env);
	for (size_t i = 0; i < env->nrcpts; i++) {
		int now_failed = env->rcpts[i].status == RCPT_FAILED;

		report[i] = was_pending[i] && now_failed;
		newly_failed += report[i];
		failed += now_failed;
		pending += env->rcpts[i].status == RCPT_PENDING;
	}
	if (newly_failed > 0) {
		int datafd = queue_open_data(q, e->id, err);

		bounce = datafd < 0 ? -1 :
		    bounce_prepare(cfg, q, env, report, datafd, &btx, err);
		if (bounce < 0) {
			/* No bounce, no failure: those recipients wait for the next run. */
			log_error("%s: cannot queue the bounce: %s", e->id, err->msg);
			for (size_t i = 0; i < env->nrcpts; i++)
				if (report[i])
					env->rcpts[i].status = RCPT_PENDING;
			pending += newly_failed;
			failed -= newly_failed;
			newly_failed = 0;
			bounce = 0;
		}
		if (datafd >= 0)
			close(datafd);
		st->bounced += newly_failed ? 1 : 0;
		if (bounce)
			memcpy(env->bounce, btx.id, QID_LEN + 1);
	}
	if (pending == 0 && failed == 0) {
		rc = queue_remove(q, e, err);
		st->delivered++;
		free(report);
		return rc;
	}
	if (pending > 0) {
		env->next_attempt = time(NULL) + retry_delay(cfg, env->attempts);
		st->deferred++;
	}
	/* One atomic write: the outcome, and the bounce decided for it.
	 * failed/ keeps this final state (reasons, dsn) for --show and
	 * --requeue. */
	oldfd = e->fd;
	rc = queue_update(q, e, err);
	if (bounce)
		rc = commit_bounce(e, &btx, rc, e->fd != oldfd, err);
	if (rc == 0 && pending == 0)
		rc = queue_move_failed(q, e, err);
	free(report);
	return rc;
}

/* Deliver one entry if it is due (or forced) and not on hold. */
static void
run_entry(const struct config *cfg, struct queue *q, struct relay *relay,
    const char *id, const struct run_opts *o, struct run_stats *st)
{
	struct qentry e;
	struct err err;
	unsigned char *was_pending;
	int locked = queue_lock(q, id, &e, &err);

	if (locked <= 0) {
		if (locked < 0) {
			log_error("%s: %s", id, err.msg);
			st->errors++;
		} else {
			st->skipped++;
		}
		return;
	}
	/* On hold: no run delivers it, forced or not, until it is released. */
	if (e.env.held || (!o->force && e.env.next_attempt > time(NULL))) {
		queue_unlock(&e);
		envelope_free(&e.env);
		st->skipped++;
		return;
	}
	was_pending = xcalloc(e.env.nrcpts ? e.env.nrcpts : 1, 1);
	for (size_t i = 0; i < e.env.nrcpts; i++)
		was_pending[i] = e.env.rcpts[i].status == RCPT_PENDING;
	if (relay_deliver(relay, q, &e, &err) < 0 ||
	    settle(cfg, q, &e, was_pending, st, &err) < 0) {
		log_error("%s: %s", id, err.msg);
		st->errors++;
	}
	if (o->report)
		report_outcome(&e.env, was_pending);
	free(was_pending);
	if (e.fd >= 0)
		queue_unlock(&e);
	envelope_free(&e.env);
}

/*
 * A run that could not record what it delivered would deliver it again
 * next time: refuse to start one on a spool that cannot be written.
 */
static int
spool_writable(const char *dir, struct err *err)
{
	char env[4096];
	struct statvfs vfs;

	if (statvfs(dir, &vfs) == 0 && (vfs.f_flag & ST_RDONLY))
		return err_set(err, ERR_TEMP, "queue directory %s is on a read-only "
		    "file system; not delivering (results could not be recorded)", dir);
	if (str_fmt(env, sizeof(env), "%s/env", dir) == 0 &&
	    faccessat(AT_FDCWD, env, W_OK, AT_EACCESS) < 0)
		return err_sys(err, ERR_TEMP, "cannot write %s; not delivering", env);
	return 0;
}

int
runner_run(const struct config *cfg, const struct run_opts *o,
    struct run_stats *st, struct err *err)
{
	struct queue q;
	struct strlist ids = { 0 };
	struct relay *relay;

	memset(st, 0, sizeof(*st));
	if (queue_open(&q, cfg->queue_dir, 0, err) < 0)
		return -1;
	if (spool_writable(cfg->queue_dir, err) < 0) {
		queue_close(&q);
		return -1;
	}
	if (o->only_id != NULL) {
		if (!qid_valid(o->only_id)) {
			queue_close(&q);
			return err_set(err, ERR_USAGE, "not a queue id: %s", o->only_id);
		}
		strlist_add(&ids, o->only_id);
	} else {
		queue_cleanup(&q, TMP_GRACE, NULL);
		if (queue_scan(&q, &ids, err) < 0) {
			queue_close(&q);
			return -1;
		}
	}
	relay = relay_new(cfg);
	for (size_t i = 0; i < ids.n && !stop_requested; i++)
		run_entry(cfg, &q, relay, ids.v[i], o, st);
	relay_free(relay);
	strlist_free(&ids);
	queue_close(&q);
	return 0;
}

static void
on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static char *
trigger_path(const struct config *cfg)
{
	return xasprintf("%s/trigger", cfg->queue_dir);
}

int
runner_daemon(const struct config *cfg, long interval, struct err *err)
{
	struct sigaction sa;
	struct run_opts o = { 0 };
	struct run_stats st;
	struct queue q;
	char *path;
	int fd;

	if (queue_open(&q, cfg->queue_dir, 1, err) < 0)
		return -1;
	queue_close(&q);
	path = trigger_path(cfg);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* A closed log pipe must not kill the daemon; writes report EPIPE. */
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	if (mkfifo(path, 0660) < 0 && errno != EEXIST) {
		err_sys(err, ERR_TEMP, "cannot create %s", path);
		free(path);
		return -1;
	}
	/* The umask took the group's write bit; submitters need it. */
	(void)chmod(path, 0660);
	/* O_RDWR keeps a writer open, so the FIFO never reports EOF. */
	if ((fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)) < 0) {
		err_sys(err, ERR_TEMP, "cannot open %s", path);
		free(path);
		return -1;
	}
	free(path);
	log_info("queue daemon started, interval %lds", interval);
	while (!stop_requested) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		char drain[256];

		if (runner_run(cfg, &o, &st, err) < 0)
			log_error("queue run: %s", err->msg);
		if (stop_requested)
			break;
		if (poll(&pfd, 1, interval > 2000000 ? 2000000000 : (int)(interval * 1000)) > 0)
			while (read(fd, drain, sizeof(drain)) > 0)
				;
	}
	close(fd);
	log_info("queue daemon stopped");
	return 0;
}

void
runner_poke(const struct config *cfg)
{
	char *path = trigger_path(cfg);
	int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);

	free(path);
	if (fd >= 0) {
		(void)!write(fd, "!", 1);
		close(fd);
	}
}

void
runner_background(const struct config *cfg, const char *id)
{
	struct run_opts o = { .only_id = id, .force = 1 };
	struct run_stats st;
	struct err err;
	pid_t pid = fork();
	int devnull;

	if (pid < 0) {
		log_warn("%s: cannot fork for delivery, it waits for the next queue run", id);
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
		log_error("%s: %s", id, err.msg);
	_exit(0);
}
