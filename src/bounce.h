/*
 * bounce.h - RFC 3464 delivery status notifications, written in wire form
 * and queued from the null sender like any other message, in two phases so
 * that each decision to bounce gives exactly one (see queue_tx_prepare).
 */
#ifndef RELAYQ_BOUNCE_H
#define RELAYQ_BOUNCE_H

#include "config.h"
#include "queue.h"
#include "util.h"

/*
 * Prepare a DSN to orig->sender for every recipient in state RCPT_FAILED
 * whose index has its flag set in report[] (so one attempt's failures are
 * reported once), honouring NOTIFY and RET: written and fsynced in tmp/
 * with queue_tx_prepare for orig->id, not yet visible to queue runs.
 * 1: prepared in *tx; the caller records tx->id in orig's envelope
 * (env.bounce) and then calls queue_tx_commit_prepared, or throws it away
 * with queue_tx_abort if the record could not be written. 0: nothing to
 * send (the null sender: a bounce is never bounced; or NOTIFY excludes
 * every such recipient); tx is untouched. -1: error, nothing left behind.
 * datafd is the original's data file (read from its start).
 */
int bounce_prepare(const struct config *cfg, struct queue *q,
                   const struct envelope *orig, const unsigned char *report,
                   int datafd, struct queue_tx *tx, struct err *err);

#endif
