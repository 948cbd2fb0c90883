/*
 * qtool.c - the operator's queue tools. Each action goes through queue.c
 * under the entry's lock; this file turns the outcome for each id into a
 * line for the operator, a log line for the record, and the first failure
 * into the error main turns into the exit status. --summary prints one
 * stable line for monitoring:
 *
 *	queue: total=N new=N deferred=N active=N held=N failed=N corrupt=N oldest=S
 */
#include "autoconf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "qtool.h"
#include "queue.h"
#include "runner.h"

struct tally {
	struct err first;       /* the first failure */
	int failed;
	int several;            /* several ids: report each failure at once */
	int changed;            /* something was released or requeued */
};

static const char *
tool_name(enum mode m)
{
	switch (m) {
	case MODE_SHOW:     return "--show";
	case MODE_DELETE:   return "--delete";
	case MODE_RETRY:    return "--retry";
	case MODE_HOLD:     return "--hold";
	case MODE_RELEASE:  return "--release";
	case MODE_REQUEUE:  return "--requeue";
	case MODE_SUMMARY:  return "--summary";
	case MODE_SELFTEST: return "--test";
	case MODE_DELIVER:  return "--deliver";
	default:            return "this tool";
	}
}

int
qtool_caller_ok(void)
{
	gid_t *groups, egid = getegid();
	int n, ok = 0;

	if (getuid() == 0 || (egid == getgid() && geteuid() == getuid()))
		return 1;
	if ((n = getgroups(0, NULL)) <= 0)
		return 0;
	groups = xcalloc((size_t)n, sizeof(*groups));
	n = getgroups(n, groups);
	for (int i = 0; i < n && !ok; i++)
		ok = groups[i] == egid;
	free(groups);
	return ok;
}

/*
 * Remember a failure for one id; with several ids, report it at once on
 * stderr (a single id's failure is main's to report, once).
 */
static void PRINTF_LIKE(3, 4)
failure(struct tally *t, enum err_class cls, const char *fmt, ...)
{
	struct err e;
	va_list ap;

	e.cls = cls;
	va_start(ap, fmt);
	vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
	va_end(ap);
	if (t->several)
		log_user("%s", e.msg);
	if (t->failed++ == 0)
		t->first = e;
}

/* A malformed id's message already shows it (escaped). */
static void
failed_err(struct tally *t, const char *id, const struct err *e)
{
	if (qid_valid(id))
		failure(t, e->cls, "%s: %s", id, e->msg);
	else
		failure(t, e->cls, "%s", e->msg);
}

/* Not found where the action looks: say where it is, if anywhere. */
static void
missing(struct tally *t, struct queue *q, const char *id, const char *want)
{
	struct envelope env;
	enum qwhere where;
	struct err e;

	if (queue_find(q, id, &env, &where, NULL, &e) < 0)
		where = QW_NONE;
	envelope_free(&env);
	if (where == QW_FAILED)
		failure(t, ERR_DATA, "%s: is in failed/, not in the queue "
		    "(relayq --requeue %s puts it back)", id, id);
	else if (where == QW_QUEUE)
		failure(t, ERR_DATA, "%s: is in the queue, not in failed/", id);
	else
		failure(t, ERR_DATA, "%s: no such entry %s", id, want);
}

static void
busy(struct tally *t, const char *id)
{
	failure(t, ERR_TEMP, "%s: busy (being delivered or handled by another "
	    "tool), left as it is", id);
}

static void
do_show(struct queue *q, const char *id, int first, struct tally *t)
{
	struct err e;

	if (!first)
		fputs("\n", stdout);
	switch (queue_show(q, id, stdout, &e)) {
	case QOP_DONE:
	case QOP_UNCHANGED:
		break;
	case QOP_MISSING:
		failure(t, ERR_DATA, "%s: no such entry in the queue or in "
		    "failed/", id);
		break;
	case QOP_BUSY:
		busy(t, id);
		break;
	case QOP_ERROR:
		failed_err(t, id, &e);
		break;
	}
}

static void
do_delete(struct queue *q, const char *id, int all, struct tally *t)
{
	struct err e;

	switch (queue_delete(q, id, &e)) {
	case QOP_DONE:
	case QOP_UNCHANGED:
		printf("%s: deleted\n", id);
		log_info("%s: deleted by the operator (uid %ld)", id,
		    (long)getuid());
		break;
	case QOP_MISSING:
		if (!all)       /* ALL: delivered meanwhile, nothing to say */
			failure(t, ERR_DATA, "%s: no such entry in the queue or "
			    "in failed/", id);
		break;
	case QOP_BUSY:
		busy(t, id);
		break;
	case QOP_ERROR:
		failed_err(t, id, &e);
		break;
	}
}

static void
do_hold(struct queue *q, const char *id, int hold, int all, struct tally *t)
{
	struct err e;

	switch (queue_hold(q, id, hold, &e)) {
	case QOP_DONE:
		printf("%s: %s\n", id, hold ? "on hold" : "released");
		log_info("%s: %s by the operator (uid %ld)", id,
		    hold ? "put on hold" : "released", (long)getuid());
		t->changed |= !hold;
		break;
	case QOP_UNCHANGED:
		printf("%s: %s\n", id, hold ? "already on hold" : "not on hold");
		break;
	case QOP_MISSING:
		if (!all)
			missing(t, q, id, "in the queue");
		break;
	case QOP_BUSY:
		busy(t, id);
		break;
	case QOP_ERROR:
		failed_err(t, id, &e);
		break;
	}
}

static void
do_requeue(struct queue *q, const char *id, int all, struct tally *t)
{
	struct err e;

	switch (queue_requeue(q, id, &e)) {
	case QOP_DONE:
	case QOP_UNCHANGED:
		printf("%s: requeued\n", id);
		log_info("%s: requeued from failed/ by the operator (uid %ld)",
		    id, (long)getuid());
		t->changed = 1;
		break;
	case QOP_MISSING:
		if (!all)
			missing(t, q, id, "in failed/");
		break;
	case QOP_BUSY:
		busy(t, id);
		break;
	case QOP_ERROR:
		failed_err(t, id, &e);
		break;
	}
}

/* Deliver now, as -qI does; the runner reports each recipient on stderr. */
static void
do_retry(const struct config *cfg, qtool_deliver_fn deliver,
    struct queue *q, const char *id, struct tally *t)
{
	struct run_opts o = { .force = 1, .only_id = id, .report = 1 };
	struct envelope env;
	struct run_stats st;
	enum qwhere where;
	struct err e;
	int held;

	if (queue_find(q, id, &env, &where, NULL, &e) < 0) {
		failed_err(t, id, &e);
		return;
	}
	held = env.held;
	envelope_free(&env);
	if (where != QW_QUEUE) {
		missing(t, q, id, "in the queue");
		return;
	}
	if (held) {
		failure(t, ERR_DATA, "%s: on hold (relayq --release %s first)",
		    id, id);
		return;
	}
	if (deliver == NULL)
		failure(t, ERR_INTERNAL, "%s: no delivery in this program", id);
	else if (deliver(cfg, &o, &st, &e) < 0)
		failed_err(t, id, &e);
	else if (st.skipped > 0)
		busy(t, id);
	else if (st.errors > 0)
		failure(t, ERR_TEMP, "%s: delivery attempt failed (see the log)",
		    id);
}

static int
summary(const struct config *cfg, struct err *err)
{
	struct queue_counts c;
	struct queue q;

	memset(&c, 0, sizeof(c));
	if (queue_open(&q, cfg->queue_dir, 0, err) < 0) {
		/* A queue that was never created is simply empty. */
		if (access(cfg->queue_dir, F_OK) < 0 && errno == ENOENT)
			goto print;
		return -1;
	}
	if (queue_count(&q, time(NULL), &c, err) < 0) {
		queue_close(&q);
		return -1;
	}
	queue_close(&q);
print:
	printf("queue: total=%lu new=%lu deferred=%lu active=%lu held=%lu "
	    "failed=%lu corrupt=%lu oldest=%lld\n", c.total, c.fresh,
	    c.deferred, c.active, c.held, c.failed, c.corrupt,
	    c.oldest > 0 ? c.oldest : 0);
	if (fflush(stdout) == EOF || ferror(stdout))
		return err_sys(err, ERR_IO, "write the summary");
	return 0;
}

/* The ids to work on: the operands, or every entry for ALL. */
static int
target_ids(struct queue *q, const struct request *req, struct strlist *ids,
    int *all, struct err *err)
{
	*all = req->nrcpts == 1 && strcmp(req->rcpts[0], "ALL") == 0;
	if (!*all) {
		for (int i = 0; i < req->nrcpts; i++)
			strlist_add(ids, req->rcpts[i]);
		return 0;
	}
	if (req->mode == MODE_REQUEUE)
		return queue_scan_failed(q, ids, err);
	return queue_scan(q, ids, err);
}

static void
run_one(const struct config *cfg, qtool_deliver_fn deliver, struct queue *q,
    enum mode m, const char *id, size_t i, int all, struct tally *t)
{
	switch (m) {
	case MODE_SHOW:    do_show(q, id, i == 0, t); break;
	case MODE_DELETE:  do_delete(q, id, all, t); break;
	case MODE_HOLD:    do_hold(q, id, 1, all, t); break;
	case MODE_RELEASE: do_hold(q, id, 0, all, t); break;
	case MODE_REQUEUE: do_requeue(q, id, all, t); break;
	case MODE_RETRY:   do_retry(cfg, deliver, q, id, t); break;
	default:
		failure(t, ERR_INTERNAL, "%s is not a queue tool",
		    tool_name(m));
		break;
	}
}

int
qtool_run(const struct config *cfg, const struct request *req,
    qtool_deliver_fn deliver, struct err *err)
{
	struct strlist ids = { 0 };
	struct tally t;
	struct queue q;
	size_t n;
	int all;

	if (req->mode == MODE_SUMMARY)
		return summary(cfg, err);
	if (!qtool_caller_ok())
		return err_set(err, ERR_NOPERM, "%s: only root and members of "
		    "the %s group may use it", tool_name(req->mode),
		    RELAYQ_GROUP);
	/* A malformed id is a usage error: nothing is done at all. */
	for (int i = 0; i < req->nrcpts; i++)
		if (strcmp(req->rcpts[i], "ALL") != 0 && !qid_valid(req->rcpts[i])) {
			char esc[64];

			str_escape(req->rcpts[i], strlen(req->rcpts[i]), esc,
			    sizeof(esc));
			return err_set(err, ERR_USAGE, "%s: not a queue id: \"%s\"",
			    tool_name(req->mode), esc);
		}
	if (queue_open(&q, cfg->queue_dir, 0, err) < 0)
		return -1;
	if (target_ids(&q, req, &ids, &all, err) < 0) {
		queue_close(&q);
		return -1;
	}
	memset(&t, 0, sizeof(t));
	t.several = all || ids.n > 1;
	for (size_t i = 0; i < ids.n; i++)
		run_one(cfg, deliver, &q, req->mode, ids.v[i], i, all, &t);
	if (all && ids.n == 0)
		printf("%s\n", req->mode == MODE_REQUEUE ?
		    "nothing in failed/" : "Mail queue is empty");
	n = ids.n;
	strlist_free(&ids);
	queue_close(&q);
	/* Released or requeued entries are due now: wake the daemon. */
	if (t.changed)
		queue_poke(cfg->queue_dir);
	if (fflush(stdout) == EOF || ferror(stdout))
		return err_sys(err, ERR_IO, "write");
	if (t.failed == 0)
		return 0;
	if (!t.several) {
		*err = t.first;
		return -1;
	}
	return err_set(err, t.first.cls, "%s: %d of %zu entr%s failed",
	    tool_name(req->mode), t.failed, n, n == 1 ? "y" : "ies");
}
