/*
 * runner.h - queue runs: which entries are due, the retry schedule, expiry,
 * the outcome of a delivery on disk (remove, retry, bounce, failed/), the
 * daemon loop with its trigger (queue_poke() wakes it).
 */
#ifndef RELAYQ_RUNNER_H
#define RELAYQ_RUNNER_H

#include "config.h"
#include "queue.h"
#include "util.h"

struct run_opts {
	int force;                /* every entry, due or not */
	const char *only_id;      /* just this entry */
	int report;               /* print each outcome on stderr (-odi, -v) */
};

struct run_stats {
	unsigned delivered, deferred, bounced, skipped, errors;
};

/* One pass over the queue. */
int runner_run(const struct config *cfg, const struct run_opts *o,
               struct run_stats *st, struct err *err);
/* Run every interval seconds (and when poked) until SIGTERM/SIGINT. */
int runner_daemon(const struct config *cfg, long interval, struct err *err);
/*
 * Deliver these queue ids now (forced), over one session, in order: the
 * -odi of a -bs session's messages. Ids are checked (qid_valid).
 */
int runner_deliver_ids(const struct config *cfg, char *const *ids, size_t n,
                       int report, struct run_stats *st, struct err *err);
/*
 * -odi: open the relay session at once, then deliver each queue id read
 * from fd (one per line) as it arrives, until end of file. The front end
 * starts this before its commit, so that starting up, connecting and the
 * TLS handshake overlap the commit's fsyncs. A malformed line is reported
 * and skipped. settled (if not NULL) is called at end of file once every
 * outcome is on disk, before the session's QUIT; not when the queue could
 * not be opened (the error is yet to be told).
 */
int runner_deliver_stream(const struct config *cfg, int fd, int report,
                          void (*settled)(void), struct run_stats *st,
                          struct err *err);

#endif
