/*
 * runner.c - queue runs. For each due entry: lock, deliver through the
 * relay (one session for the whole run), then settle it on disk: remove
 * when every recipient is done, queue a bounce for new permanent failures,
 * move to failed/ what failed, or schedule the next attempt from the
 * retry list; past queue_lifetime the pending recipients fail too.
 * Entries on hold are never delivered, not even by a forced run.
 * A large backlog goes over several sessions in parallel, one per forked
 * process, up to the smarthost's sessions key (run_parallel).
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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
/*
 * Due entries that make one more session worth its connection, TLS
 * handshake and login (a few round trips, a few messages' worth): a run
 * opens one session per SESSION_BATCH due entries, up to the smarthost's
 * sessions key, so fewer than 2 * SESSION_BATCH always go over one.
 */
#define SESSION_BATCH 50

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

/* To be delivered in this run: due (or forced) and not on hold. */
static int
is_due(const struct envelope *env, const struct run_opts *o, time_t now)
{
	return !env->held && (o->force || env->next_attempt <= now);
}

/* An entry locked for delivery, from relay_start to relay_finish. */
struct flight {
	struct qentry e;
	unsigned char *was_pending;
};

/*
 * The deliveries of one session: the next entry's commands go out while
 * the server still takes the last one's content (relay.h), so a run holds
 * up to two entries. run_land() settles the last; it must be called
 * before the run waits for anything else.
 */
struct run {
	const struct config *cfg;
	struct queue *q;
	struct relay *relay;
	const struct run_opts *o;
	struct run_stats *st;
	struct flight f[2];
	struct flight *last;       /* content sent, outcome not yet read */
};

static void
run_init(struct run *rn, const struct config *cfg, struct queue *q,
    struct relay *relay, const struct run_opts *o, struct run_stats *st)
{
	memset(rn, 0, sizeof(*rn));
	rn->cfg = cfg;
	rn->q = q;
	rn->relay = relay;
	rn->o = o;
	rn->st = st;
}

static void
flight_end(struct run *rn, struct flight *f)
{
	if (rn->o->report)
		report_outcome(&f->e.env, f->was_pending);
	free(f->was_pending);
	f->was_pending = NULL;
	if (f->e.fd >= 0)
		queue_unlock(&f->e);
	envelope_free(&f->e.env);
}

/* Record on disk the outcome relay_finish read. */
static void
land(struct run *rn, struct flight *f)
{
	struct err err;

	if (settle(rn->cfg, rn->q, &f->e, f->was_pending, rn->st, &err) < 0) {
		log_error("%s: %s", f->e.id, err.msg);
		rn->st->errors++;
	}
	flight_end(rn, f);
}

/* Read the outcome of the last entry sent and record it. */
static void
run_land(struct run *rn)
{
	struct flight *f = rn->last;

	if (f == NULL)
		return;
	rn->last = NULL;
	relay_finish(rn->relay, &f->e);
	land(rn, f);
}

/* Deliver one entry if it is due (or forced) and not on hold. */
static void
run_entry(struct run *rn, const char *id)
{
	struct flight *f = rn->last == &rn->f[0] ? &rn->f[1] : &rn->f[0], *prev;
	struct qentry *e = &f->e;
	struct err err;
	int locked = queue_lock(rn->q, id, e, &err);

	if (locked <= 0) {
		if (locked < 0) {
			log_error("%s: %s", id, err.msg);
			rn->st->errors++;
		} else {
			rn->st->skipped++;
		}
		return;
	}
	/* On hold: no run delivers it, forced or not, until it is released. */
	if (!is_due(&e->env, rn->o, time(NULL))) {
		queue_unlock(e);
		envelope_free(&e->env);
		rn->st->skipped++;
		return;
	}
	f->was_pending = xcalloc(e->env.nrcpts ? e->env.nrcpts : 1, 1);
	for (size_t i = 0; i < e->env.nrcpts; i++)
		f->was_pending[i] = e->env.rcpts[i].status == RCPT_PENDING;
	if (relay_start(rn->relay, rn->q, e, &err) < 0) {
		log_error("%s: %s", id, err.msg);
		rn->st->errors++;
		flight_end(rn, f);
		return;
	}
	/* The last one's outcome, this one's content, then the disk work
	 * for the last one while the server takes this one. */
	if ((prev = rn->last) != NULL)
		relay_finish(rn->relay, &prev->e);
	relay_send(rn->relay, e);
	rn->last = f;
	if (prev != NULL)
		land(rn, prev);
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

/* Open the queue for delivery, refused on a spool that could not record
 * the outcomes; the run's removals share one fsync (queue_sync_removals). */
static int
open_for_delivery(const struct config *cfg, struct queue *q, struct err *err)
{
	if (queue_open(q, cfg->queue_dir, 0, err) < 0)
		return -1;
	if (spool_writable(cfg->queue_dir, err) < 0) {
		queue_close(q);
		return -1;
	}
	q->lazy_removal = 1;
	return 0;
}

/* ---- parallel sessions ---------------------------------------------------- */

/*
 * What the processes of a run with parallel sessions share, in an
 * anonymous MAP_SHARED mapping made before they fork. Every process holds
 * the same sorted list of ids; next is the index of the next entry to
 * claim, so each entry is tried by exactly one session, in queue order,
 * and no two sessions line up on the same lock. The per-entry lock still
 * keeps out other deliveries (the daemon, -odi, a background delivery).
 * The counts of each session are kept here, so that what a session did
 * before it died still adds up.
 */
struct run_share {
	atomic_size_t next;        /* index in ids of the next entry to claim */
	atomic_int sessions;       /* set by the first session; 0: none more */
	atomic_int stop;           /* a session was told to stop: all stop */
	struct run_stats st[SESSIONS_MAX];   /* [k] is session k's; [0] unused */
};

/* The most sessions any smarthost allows. */
static int
max_sessions(const struct config *cfg)
{
	int n = 1;

	for (size_t i = 0; i < cfg->nsmarthosts; i++)
		if (cfg->smarthosts[i].sessions > n)
			n = cfg->smarthosts[i].sessions;
	return n > SESSIONS_MAX ? SESSIONS_MAX : n;
}

/*
 * Sessions the backlog justifies: one per SESSION_BATCH due entries, at
 * most limit. An envelope that cannot be read counts as due (its own
 * attempt reports it). Reads only as far as the answer needs.
 */
static int
sessions_wanted(struct queue *q, const struct strlist *ids,
    const struct run_opts *o, int limit)
{
	size_t need = (size_t)limit * SESSION_BATCH, due = 0;
	time_t now = time(NULL);

	if (limit < 2 || ids->n < 2 * SESSION_BATCH)
		return 1;
	for (size_t i = 0; i < ids->n && due < need; i++) {
		struct envelope env;
		struct err err;

		if (due + (ids->n - i) < 2 * SESSION_BATCH)
			break;          /* too few left to reach two sessions */
		if (queue_peek(q, ids->v[i], &env, &err) < 0 || is_due(&env, o, now))
			due++;
		envelope_free(&env);
	}
	return due < 2 * SESSION_BATCH ? 1 : (int)(due / SESSION_BATCH);
}

/*
 * One session's share of the run: claim the next entry and deliver it,
 * until none is left, the run is stopped, or this session lost its way
 * out (every smarthost failed): then the others carry on without it.
 */
static void
run_claimed(struct run *rn, const struct strlist *ids, struct run_share *sh)
{
	for (;;) {
		size_t i;

		if (stop_requested)
			atomic_store(&sh->stop, 1);
		if (atomic_load(&sh->stop) || relay_down(rn->relay))
			break;
		if ((i = atomic_fetch_add(&sh->next, 1)) >= ids->n)
			break;
		run_entry(rn, ids->v[i]);
	}
	run_land(rn);
}

/*
 * Session k >= 1, in a child: wait until the first session has decided
 * how many sessions there are (go reaches end of file), then connect on
 * its own (failover as relay.c does it, among the smarthosts that allow
 * k + 1 sessions) and claim entries. One that cannot connect leaves the
 * backlog to those that could. Never returns.
 */
static void NORETURN
run_worker(const struct config *cfg, struct queue *q, const struct strlist *ids,
    const struct run_opts *o, struct run_share *sh, int k, int go)
{
	struct relay *relay;
	struct run rn;
	char c;

	while (read(go, &c, 1) < 0 && errno == EINTR)
		;
	close(go);
	if (k < atomic_load(&sh->sessions)) {
		relay = relay_new(cfg);
		relay_set_nth(relay, k);
		run_init(&rn, cfg, q, relay, o, &sh->st[k]);
		if (relay_connect(relay) == 0)
			run_claimed(&rn, ids, sh);
		relay_free(relay);
	}
	queue_sync_removals(q);
	fflush(NULL);
	_exit(0);
}

static void
add_stats(struct run_stats *to, const struct run_stats *from)
{
	to->delivered += from->delivered;
	to->deferred += from->deferred;
	to->bounced += from->bounced;
	to->skipped += from->skipped;
	to->errors += from->errors;
}

/*
 * Wait for sessions 1..n-1 and add up their counts. A session that died
 * (killed, crashed) is an error of the run; the entry it was delivering
 * was unlocked by its death and waits, still queued, for the next run.
 */
static void
wait_workers(const pid_t *pids, int n, struct run_share *sh,
    struct run_stats *st)
{
	for (int k = 1; k < n; k++) {
		int status = 0;
		pid_t rc;

		while ((rc = waitpid(pids[k], &status, 0)) < 0 && errno == EINTR)
			if (stop_requested)
				atomic_store(&sh->stop, 1);
		if (rc > 0 && (WIFSIGNALED(status) || WEXITSTATUS(status) != 0)) {
			if (WIFSIGNALED(status))
				log_error("queue run: session %d (pid %ld) was killed by "
				    "signal %d; the message it was delivering stays "
				    "queued", k + 1, (long)pids[k], WTERMSIG(status));
			else
				log_error("queue run: session %d (pid %ld) exited with "
				    "status %d; the message it was delivering stays "
				    "queued", k + 1, (long)pids[k], WEXITSTATUS(status));
			st->errors++;
		}
		add_stats(st, &sh->st[k]);
	}
}

/*
 * A backlog of n sessions' worth. This process is the first session: it
 * forks the others before it connects (so no child holds its connection),
 * then connects; the smarthost it gets decides how many of them go on
 * (its sessions key, at most n); the rest exit. All sessions claim from
 * one index. When they are done, whatever none of them could take (every
 * smarthost failed, or the sessions died) is handled here as a single
 * session would: delivered, or deferred with the reason. -1 (nothing
 * done) when the sessions cannot be set up: then one session does it all.
 */
static int
run_parallel(struct run *rn, const struct strlist *ids, int n)
{
	const struct config *cfg = rn->cfg;
	const struct smarthost *used;
	struct run_share *sh;
	pid_t pids[SESSIONS_MAX];
	int go[2], forked = 1;
	size_t i;

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		log_warn("queue run: one session only (shared memory: %s)",
		    strerror(errno));
		sh = NULL;
	} else if (pipe2(go, O_CLOEXEC) < 0) {
		log_warn("queue run: one session only (pipe: %s)", strerror(errno));
		munmap(sh, sizeof(*sh));
		sh = NULL;
	}
	if (sh == NULL)
		return -1;
	atomic_init(&sh->next, 0);
	atomic_init(&sh->sessions, 0);
	atomic_init(&sh->stop, 0);
	fflush(NULL);           /* no buffered output is written twice */
	for (; forked < n; forked++) {
		pid_t pid = fork();

		if (pid == 0) {
			close(go[1]);
			run_worker(cfg, rn->q, ids, rn->o, sh, forked, go[0]);
		}
		if (pid < 0) {
			log_warn("queue run: cannot start session %d: %s",
			    forked + 1, strerror(errno));
			break;
		}
		pids[forked] = pid;
	}
	close(go[0]);
	if (relay_connect(rn->relay) == 0 &&
	    (used = relay_smarthost(rn->relay)) != NULL)
		atomic_store(&sh->sessions, used->sessions < forked ?
		    used->sessions : forked);
	close(go[1]);           /* go */
	run_claimed(rn, ids, sh);
	wait_workers(pids, forked, sh, rn->st);
	while (!stop_requested && !atomic_load(&sh->stop) &&
	    (i = atomic_fetch_add(&sh->next, 1)) < ids->n)
		run_entry(rn, ids->v[i]);
	run_land(rn);
	munmap(sh, sizeof(*sh));
	return 0;
}

int
runner_run(const struct config *cfg, const struct run_opts *o,
    struct run_stats *st, struct err *err)
{
	struct queue q;
	struct strlist ids = { 0 };
	struct relay *relay;
	struct run rn;
	int nsessions;

	memset(st, 0, sizeof(*st));
	if (open_for_delivery(cfg, &q, err) < 0)
		return -1;
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
	run_init(&rn, cfg, &q, relay, o, st);
	nsessions = o->only_id != NULL ? 1 :
	    sessions_wanted(&q, &ids, o, max_sessions(cfg));
	if (nsessions < 2 || run_parallel(&rn, &ids, nsessions) < 0) {
		for (size_t i = 0; i < ids.n && !stop_requested; i++)
			run_entry(&rn, ids.v[i]);
		run_land(&rn);
	}
	relay_free(relay);
	queue_sync_removals(&q);
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
	path = queue_trigger_path(cfg->queue_dir);
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

/* Lines from a descriptor, buffered; a line too long is cut and flagged. */
struct line_reader {
	int fd, eof;
	size_t off, len;
	char buf[512];
};

/* The next line into line (at most size - 1 bytes); 0 at end of file. */
static int
next_line(struct line_reader *lr, char *line, size_t size, int *toolong)
{
	size_t n = 0;
	int any = 0;

	*toolong = 0;
	for (;;) {
		if (lr->off == lr->len) {
			ssize_t r;

			if (lr->eof)
				break;
			r = read(lr->fd, lr->buf, sizeof(lr->buf));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				lr->eof = 1;
				break;
			}
			lr->off = 0;
			lr->len = (size_t)r;
		}
		any = 1;
		if (lr->buf[lr->off] == '\n') {
			lr->off++;
			break;
		}
		if (n + 1 < size)
			line[n++] = lr->buf[lr->off];
		else
			*toolong = 1;
		lr->off++;
	}
	line[n] = '\0';
	return any;
}

int
runner_deliver_ids(const struct config *cfg, char *const *ids, size_t n,
    int report, struct run_stats *st, struct err *err)
{
	struct run_opts o = { .force = 1, .report = report };
	struct relay *relay;
	struct queue q;
	struct run rn;

	memset(st, 0, sizeof(*st));
	if (open_for_delivery(cfg, &q, err) < 0)
		return -1;
	relay = relay_new(cfg);
	run_init(&rn, cfg, &q, relay, &o, st);
	for (size_t i = 0; i < n && !stop_requested; i++) {
		if (!qid_valid(ids[i])) {
			log_error("--deliver: not a queue id: %s", ids[i]);
			st->errors++;
			continue;
		}
		run_entry(&rn, ids[i]);
	}
	run_land(&rn);
	relay_free(relay);
	queue_sync_removals(&q);
	queue_close(&q);
	return 0;
}

int
runner_deliver_stream(const struct config *cfg, int fd, int report,
    void (*settled)(void), struct run_stats *st, struct err *err)
{
	struct run_opts o = { .force = 1, .report = report };
	struct line_reader lr = { .fd = fd };
	char line[QID_LEN + 2];
	struct relay *relay;
	struct queue q;
	struct run rn;
	int toolong, opened = 0, rc = 0;

	memset(st, 0, sizeof(*st));
	relay = relay_new(cfg);
	run_init(&rn, cfg, &q, relay, &o, st);
	/* A failure here is every message's deferral reason, below. */
	(void)relay_connect(relay);
	for (;;) {
		/* Nothing more to read at once: settle the last entry before
		 * waiting for the next id (a -bs session may be slow to send). */
		if (lr.off == lr.len)
			run_land(&rn);
		if (!next_line(&lr, line, sizeof(line), &toolong))
			break;
		if (toolong || !qid_valid(line)) {
			log_error("--deliver: not a queue id on input");
			st->errors++;
			continue;
		}
		/* Opened at the first id: a first submission makes the queue. */
		if (!opened) {
			if (open_for_delivery(cfg, &q, err) < 0) {
				rc = -1;
				break;
			}
			opened = 1;
		}
		run_entry(&rn, line);
	}
	run_land(&rn);
	if (settled != NULL && rc == 0)
		settled();
	relay_free(relay);
	if (opened) {
		queue_sync_removals(&q);
		queue_close(&q);
	}
	return rc;
}
