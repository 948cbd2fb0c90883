/*
 * privsep.h - the front end's privilege separation.
 *
 * relayq is installed setgid relayq so that any user can queue mail into a
 * spool nobody else can read. The code that parses what the caller sends
 * (the message and its header, addresses, -bs commands) must not run with
 * that group: a bug there must not become a way into other people's mail
 * or the smarthost password. So the front end forks. The child gives up the
 * group for good, wipes the passwords it inherited, and parses; for each
 * message it asks the privileged parent for a queue file (the parent
 * creates it and passes the open descriptor) and then hands over the
 * envelope as text. The parent only checks that text with the runner's own
 * strict loader and commits it (fsync, rename). It never reads the message.
 */
#ifndef RELAYQ_PRIVSEP_H
#define RELAYQ_PRIVSEP_H

#include "config.h"
#include "queue.h"
#include "util.h"

/* The front end's way into the queue: direct, or through the parent. */
struct spool;

/* Direct access, for a process that may write the queue itself. */
struct spool *spool_direct(const char *queue_dir);
void spool_free(struct spool *s);

/* A new queue file: its id and a descriptor to write the message to. */
int spool_begin(struct spool *s, char id[QID_LEN + 1], int *datafd,
                struct err *err);
/*
 * Ask for the next queue file now and take the answer at spool_begin():
 * the parent creates it while the caller does other work. No-op for
 * direct access or when a request is already out.
 */
void spool_prefetch(struct spool *s);
/* Commit env (env->id is the begun id); env->size is set here. */
int spool_commit(struct spool *s, struct envelope *env, struct err *err);
/* Throw away the begun file (no-op when nothing is open). */
void spool_abort(struct spool *s);

/* Runs unprivileged; returns the process's exit code. */
typedef int (*privsep_child_fn)(struct spool *s, void *arg);
/* Runs in the privileged parent after each commit. */
typedef void (*privsep_commit_fn)(const char *qid, void *arg);

/*
 * Run child(spool, arg) separated as described above; committed(qid,
 * carg) is called in the parent for every message made durable. Returns
 * the child's exit code, or -1 with err if the separation itself failed.
 * With separate 0 (nothing to separate: no setgid privilege, or a root
 * caller, whom no child could be kept from) child runs in this process on
 * a direct spool, and committed is called the same way: a fork, a
 * socketpair and every message's round trips less.
 */
int privsep_run(const struct config *cfg, int separate, privsep_child_fn child,
                void *arg, privsep_commit_fn committed, void *carg,
                struct err *err);

#endif
