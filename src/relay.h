/*
 * relay.h - delivery policy: which smarthost, failover in config order, one
 * SMTP session reused for every message of a run (each process of a run
 * with parallel sessions has a relay of its own), and the translation of
 * each recipient's SMTP result into queue state (sent / failed / pending
 * with the reason).
 */
#ifndef RELAYQ_RELAY_H
#define RELAYQ_RELAY_H

#include "config.h"
#include "queue.h"
#include "util.h"

struct relay;

struct relay *relay_new(const struct config *cfg);
/* QUIT the open session, if any, and free. */
void relay_free(struct relay *r);

/*
 * Open the session now rather than at the first message (a queue run
 * learns which smarthost it got before it lets further sessions start).
 * Failover as for a delivery; -1 when no smarthost took us, and then
 * every relay_deliver of this relay defers with the reason.
 */
int relay_connect(struct relay *r);
/*
 * Make r the nth session (0: the first) of a queue run with parallel
 * sessions: it then uses only the smarthosts whose sessions key is above
 * nth, so that none gets more sessions from one run than it allows.
 */
void relay_set_nth(struct relay *r, int nth);
/* The smarthost of the open session, or NULL. */
const struct smarthost *relay_smarthost(const struct relay *r);
/* Every smarthost failed in this relay's run: nothing more goes out. */
int relay_down(const struct relay *r);

/*
 * Deliver a locked entry, in three steps so that a queue run overlaps
 * messages on one session (smtp.h, smtp_start):
 *
 *   relay_start(next); relay_finish(last); relay_send(next); ...
 *
 * relay_start opens the data file and sends the entry's MAIL, RCPT and
 * DATA (opening a session first if none is open); relay_send sends its
 * content; relay_finish reads the reply to that and updates e->env in
 * memory: recipients accepted become RCPT_SENT, 5xx ones RCPT_FAILED
 * (with dsn and error), others stay RCPT_PENDING with the reason;
 * env.last_error and env.last_attempt are set. Logs one line per
 * recipient outcome. At most two entries may be under way. relay_start
 * returns -1 only when the data file cannot be read (err says why); then
 * the entry is not under way.
 */
int relay_start(struct relay *r, struct queue *q, struct qentry *e,
                struct err *err);
void relay_send(struct relay *r, struct qentry *e);
void relay_finish(struct relay *r, struct qentry *e);

/* Fetch the secret for a smarthost (password, file or command). */
int relay_secret(const struct smarthost *sh, struct buf *out, struct err *err);

#endif
