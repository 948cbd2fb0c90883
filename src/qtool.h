/*
 * qtool.h - relayq's queue tools for the operator: --show, --delete,
 * --retry, --hold, --release, --requeue and the monitoring --summary.
 */
#ifndef RELAYQ_QTOOL_H
#define RELAYQ_QTOOL_H

#include "cli.h"
#include "config.h"
#include "runner.h"
#include "util.h"

/*
 * Run the tool req->mode names on its operands (req->rcpts: queue ids,
 * or ALL where the tool takes it). One line per id on stdout for what was
 * done, on stderr for what was not; every id is tried. 0 when all went
 * well; else -1 with err holding the first failure: ERR_USAGE (malformed
 * id), ERR_DATA (no such entry, or one in the wrong state: on hold, in
 * failed/), ERR_TEMP (busy: locked by a delivery or another tool),
 * ERR_NOPERM (the caller may not use the tools), or the spool's error.
 */
/*
 * --retry delivers with `deliver` (runner_run, in relayq-deliver); the other
 * tools need none (NULL), and --retry without one is an internal error.
 */
typedef int (*qtool_deliver_fn)(const struct config *cfg,
    const struct run_opts *o, struct run_stats *st, struct err *err);
int qtool_run(const struct config *cfg, const struct request *req,
              qtool_deliver_fn deliver, struct err *err);

/*
 * May the caller use the operator tools? Root, a member of the queue's
 * group, or a caller without our setgid privilege (the file system then
 * decides). mailq and --summary are for everybody.
 */
int qtool_caller_ok(void);

#endif
