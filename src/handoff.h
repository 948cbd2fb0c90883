/*
 * handoff.h - the work that needs the network: queue runs and the queue
 * daemon (-q), --retry, --test, -bv -v, and the delivery of what was just
 * queued (in the background, or -odi). Two programs implement it.
 * relayq-deliver does it in process (handoff_local.c). The sendmail front
 * end, which parses untrusted input and must start fast, never loads
 * OpenSSL: it hands such work to relayq-deliver by exec (handoff_exec.c).
 * main.c is the same in both.
 */
#ifndef RELAYQ_HANDOFF_H
#define RELAYQ_HANDOFF_H

#include "cli.h"
#include "config.h"
#include "util.h"

/* How this program was started, for a hand-over. */
struct handoff {
	char **argv;                 /* the command line as given */
	const char *config_path;     /* -C file, or NULL */
	const char *config_override; /* $RELAYQ_CONFIG, kept only when
	                                unprivileged; or NULL */
	int privileged;              /* setgid (or setuid) in effect */
	int verbose;                 /* -v count */
};

/* Carry out a request that needs the network; returns the exit status. */
int handoff_mode(const struct handoff *h, const struct config *cfg,
                 const struct request *req);
/* Deliver qid in a process detached from the caller, who returns at once. */
void handoff_background(const struct handoff *h, const struct config *cfg,
                        const char *qid);
/*
 * Deliver ids now (-odi), each outcome on stderr when report; what cannot
 * be delivered stays queued for the next run.
 */
void handoff_foreground(const struct handoff *h, const struct config *cfg,
                        const struct strlist *ids, int report);

/*
 * -odi for a message from the command line, started before it is
 * committed: relayq-deliver starts up, connects and logs in while the
 * front end parses and commits, then delivers each id as it is added.
 * finish() says there are no more and waits for the outcome (reported on
 * stderr). NULL from start(): use handoff_foreground() instead.
 */
struct handoff_stream;
struct handoff_stream *handoff_stream_start(const struct handoff *h,
                                            const struct config *cfg);
void handoff_stream_add(struct handoff_stream *s, const char *qid);
void handoff_stream_finish(struct handoff_stream *s);

#endif
