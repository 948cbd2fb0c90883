/*
 * queue.h - the durable spool: ids, enqueue (tmp -> fsync -> rename ->
 * fsync dir), strict envelope loading, per-entry locks, state updates,
 * removal, failed/ and corrupt/ (queue.c); the mailq listing and --show
 * (queue_print.c); the operator's tools (queue_admin.c). The envelope
 * itself is envelope.h's, included here for every user of the queue.
 *
 * Layout under the queue directory:
 *   tmp/      files being written (garbage after a crash; cleaned up),
 *             and prepared transactions: ID.data.for-OTHER and
 *             ID.env.for-OTHER, kept while env/OTHER names ID
 *   data/ID   the message in wire form, immutable once committed
 *   env/ID    envelope and per-recipient state; its rename commits
 *   failed/   ID.env + ID.data of permanently failed messages
 *   corrupt/  files that failed validation; never deleted automatically
 */
#ifndef RELAYQ_QUEUE_H
#define RELAYQ_QUEUE_H

#include <stdio.h>
#include <time.h>
#include "envelope.h"
#include "util.h"

struct queue {
	char *dir;
	int lazy_removal;          /* queue_remove leaves env/'s fsync to */
	int removed;               /* queue_sync_removals (a queue run)   */
};

/* Validate an id from disk or argv before it becomes part of a path. */
int qid_valid(const char *id);

/* Open the queue; with create, make the directory and subdirectories. */
int queue_open(struct queue *q, const char *dir, int create, struct err *err);
void queue_close(struct queue *q);

/* The queue daemon's wake-up FIFO, DIR/trigger (malloc'd). */
char *queue_trigger_path(const char *dir);
/* Wake a running queue daemon (best effort: no daemon, nothing done). */
void queue_poke(const char *dir);

/* One submission being written. */
struct queue_tx {
	struct queue *q;
	char id[QID_LEN + 1];
	int datafd;                /* write the wire-form message here */
	int envfd;                 /* prepared: tmp/'s envelope, locked */
	char for_id[QID_LEN + 1];  /* prepared for this entry; "" if not */
	int committed;
};
/* Reserve a new id and open tmp/ID.data for writing (mode 0640). */
int queue_tx_begin(struct queue *q, struct queue_tx *tx, struct err *err);
/*
 * Make the message durable: fsync data, rename to data/ID, write the
 * envelope to tmp, fsync, rename to env/ID (the commit point), fsync both
 * directories. Returns 0 only when all of that succeeded; on failure
 * everything written is removed. env->id and env->size are filled in here
 * (and env->created, if it is 0). ERR_DATA: the envelope cannot be written
 * (an address with a control character, no recipients, too large).
 */
int queue_tx_commit(struct queue_tx *tx, struct envelope *env, struct err *err);
/*
 * Two-phase commit, for a message that is the consequence of another
 * entry's state change (the bounce of entry for_id), so that it exists
 * exactly when that change does:
 *   1. queue_tx_prepare: data and envelope written and fsynced in tmp/
 *      under names that tie them to for_id, tmp/ fsynced; no run sees them.
 *   2. the caller records tx->id in for_id's envelope (env.bounce) with
 *      queue_update, under for_id's lock: the decision.
 *   3. queue_tx_commit_prepared: the renames into data/ and env/ and the
 *      directory fsyncs, as queue_tx_commit.
 * A crash between 2 and 3 is finished by the next queue_lock of for_id,
 * which commits what its envelope names and tmp/ still holds; until then
 * queue_cleanup keeps those files. A crash before 2 leaves garbage that
 * cleanup removes. env->id, size and created are filled in as by
 * queue_tx_commit. On failure everything written is removed.
 */
int queue_tx_prepare(struct queue_tx *tx, struct envelope *env,
                     const char *for_id, struct err *err);
/*
 * Step 3. On failure nothing is removed (for_id's envelope already names
 * the transaction: its next queue_lock retries); the tx is closed either
 * way.
 */
int queue_tx_commit_prepared(struct queue_tx *tx, struct err *err);
/*
 * Throw away an uncommitted submission, prepared or not (safe to call
 * after commit). Call it for a prepared one only while no envelope names
 * it, i.e. when the update of step 2 did not happen.
 */
void queue_tx_abort(struct queue_tx *tx);

/* A locked, loaded entry. */
struct qentry {
	char id[QID_LEN + 1];
	int fd;                    /* env/ID, holding LOCK_EX */
	struct envelope env;
};
/*
 * Lock env/ID without waiting and load it. 1: locked and loaded; 0: busy
 * (another process holds it) or gone; -1: error. A corrupt envelope, or one
 * whose data file is missing, is moved to corrupt/ and reported as -1 with
 * ERR_DATA. Work a crash interrupted is finished first: a prepared
 * transaction the envelope names (env.bounce) is committed; an entry whose
 * data file already went to failed/ (a move interrupted in the order
 * relayq used before: data first) is moved there too if no recipient is
 * pending (0: gone), else its data file is restored from failed/.
 */
int queue_lock(struct queue *q, const char *id, struct qentry *e, struct err *err);
/*
 * Replace env/ID atomically with e->env, keeping the lock throughout. If
 * only the final directory fsync fails, -1 is returned but the new file is
 * in place and e->fd holds it locked.
 */
int queue_update(struct queue *q, struct qentry *e, struct err *err);
/*
 * Delivered: remove env/ID (the commit point), then data/ID. Unlocks, also
 * on failure; e->env stays loaded.
 */
int queue_remove(struct queue *q, struct qentry *e, struct err *err);
/*
 * With q->lazy_removal set, queue_remove does not fsync env/ for each
 * entry; this does it once, for all of them (a queue run, at its end). A
 * removal lost to a crash before then only means the message is sent
 * again: a duplicate, never a loss.
 */
void queue_sync_removals(struct queue *q);
/*
 * Permanently failed: link (or copy) data/ID to failed/ID.data, rename
 * env/ID to failed/ID.env (the commit point), fsync, then unlink data/ID
 * (a leftover after a crash is cleanup's garbage). Unlocks, also on
 * failure (then the entry is still queued, whole); e->env stays loaded.
 */
int queue_move_failed(struct queue *q, struct qentry *e, struct err *err);
/*
 * Release the lock (safe if not held). e->env stays loaded: free it with
 * envelope_free, which is also safe after queue_lock returned 0 or -1.
 */
void queue_unlock(struct qentry *e);
/* Open data/ID read-only. */
int queue_open_data(struct queue *q, const char *id, struct err *err);

/* Ids in env/, sorted (that is, by arrival time). Invalid names skipped. */
int queue_scan(struct queue *q, struct strlist *ids, struct err *err);
/* Load an envelope without locking (for listing); never moves anything. */
int queue_peek(struct queue *q, const char *id, struct envelope *env, struct err *err);
/*
 * Remove garbage: files in tmp/ and data files without an envelope that are
 * older than grace seconds and unlocked. A prepared transaction (and its
 * data file, once renamed into data/) stays while the envelope it was
 * prepared for names it. Returns the number removed, or -1.
 */
int queue_cleanup(struct queue *q, long grace, struct err *err);

/* ---- for people (queue_print.c) ----------------------------------------- */

/*
 * Postfix-style mailq listing of the queue to out. Corrupt entries are
 * skipped with a warning on stderr. After the id, '!' marks an entry on
 * hold and '*' one being delivered.
 */
int queue_list(struct queue *q, FILE *out, struct err *err);

/* ---- operator tools (queue_admin.c; queue_show: queue_print.c) ---------- */

/* Outcome of an operator action on one entry. */
enum qop {
	QOP_DONE,       /* done */
	QOP_UNCHANGED,  /* nothing to do (already on hold, already released) */
	QOP_BUSY,       /* locked by a delivery or another tool: untouched */
	QOP_MISSING,    /* no such entry where the action looks */
	QOP_ERROR,      /* err says why */
};

/* Where queue_find found an entry. */
enum qwhere { QW_NONE, QW_QUEUE, QW_FAILED };

/*
 * Load ID's envelope from env/ or else failed/, without locking or moving
 * anything. *where is QW_NONE (and env empty) when it is in neither; busy
 * (may be NULL) tells whether a delivery holds a queued entry. -1 with
 * ERR_USAGE for a malformed id, ERR_DATA for an unreadable envelope.
 */
int queue_find(struct queue *q, const char *id, struct envelope *env,
               enum qwhere *where, int *busy, struct err *err);
/*
 * Print one entry for the operator: the envelope (dates, attempts, hold,
 * last error, every recipient with status, dsn and error) and then the
 * message header, unstuffed, with unsafe bytes escaped. Looks in env/ and
 * then failed/.
 */
enum qop queue_show(struct queue *q, const char *id, FILE *out,
                    struct err *err);
/*
 * Remove an entry under its lock: env/ID (the commit point) then data/ID;
 * an id that is not queued is looked for in failed/ (ID.env, then
 * ID.data). A locked entry is QOP_BUSY and stays.
 */
enum qop queue_delete(struct queue *q, const char *id, struct err *err);
/*
 * Put an entry on hold or release it (the envelope's "held" key). A
 * release also makes the entry due at once (next-attempt 0).
 */
enum qop queue_hold(struct queue *q, const char *id, int hold,
                    struct err *err);
/*
 * Move failed/ID back into the queue: failed recipients become pending
 * (dsn and error cleared), attempts 0, next attempt now, last error
 * cleared; arrival time and sent recipients are kept. Crash-safe order:
 * the data file is linked (or copied) to data/ID and synced, then the new
 * envelope is committed to env/ID, and only then are failed/ID.env and
 * failed/ID.data removed. A requeue interrupted after its commit is
 * finished (the stale copy in failed/ removed).
 */
enum qop queue_requeue(struct queue *q, const char *id, struct err *err);
/* Ids in failed/ (from ID.env names), sorted. */
int queue_scan_failed(struct queue *q, struct strlist *ids, struct err *err);

/* Counts for the one-line monitoring summary (relayq --summary). */
struct queue_counts {
	unsigned long total;     /* readable entries in env/ */
	unsigned long fresh;     /* never tried, not held, not being delivered */
	unsigned long deferred;  /* tried at least once, not held, not active */
	unsigned long active;    /* being delivered (locked), not held */
	unsigned long held;      /* on hold */
	unsigned long failed;    /* entries in failed/ */
	unsigned long corrupt;   /* files in corrupt/ + unreadable envelopes */
	long long oldest;        /* now - arrival of the oldest entry; 0 if none */
};
int queue_count(struct queue *q, time_t now, struct queue_counts *c,
                struct err *err);

#endif
