/*
 * bounce.h - RFC 3464 delivery status notifications, written in wire form
 * and queued from the null sender like any other message.
 */
#ifndef RELAYQ_BOUNCE_H
#define RELAYQ_BOUNCE_H

#include "config.h"
#include "queue.h"
#include "util.h"

/*
 * Queue a DSN to orig->sender for every recipient in state RCPT_FAILED whose
 * index has its flag set in report[] (so one attempt's failures are
 * reported once), honouring NOTIFY and RET. Nothing is queued (and 0 is
 * returned, *qid empty) for the null sender: a bounce is never bounced.
 * datafd is the original's data file (read from its start).
 */
int bounce_queue(const struct config *cfg, struct queue *q,
                 const struct envelope *orig, const unsigned char *report,
                 int datafd, char qid[QID_LEN + 1], struct err *err);

#endif
