/*
 * queue_int.h - internals shared by the spool's files (queue.c,
 * queue_util.c, envelope.c, queue_admin.c, queue_print.c); nothing else
 * includes this.
 */
#ifndef RELAYQ_QUEUE_INT_H
#define RELAYQ_QUEUE_INT_H

#include <stddef.h>
#include "queue.h"

#define ENV_LINE_MAX   4096        /* envelope bytes per line, without the LF */
#define QPATH_MAX      4096
#define ID_TRIES       100         /* fresh ids tried on EEXIST */

#define NITEMS(a)      (sizeof(a) / sizeof((a)[0]))

/* queue_util.c */
/* Paths are built from q->dir, checked for length in queue_open. */
int qpath(const struct queue *q, char *out, size_t size, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
/* Creation failures the caller cannot fix by waiting. */
enum err_class create_class(int e);
void escape_str(const char *s, char *out, size_t size);
int cmp_str(const void *a, const void *b);
/* rename that never replaces an existing target. */
int rename_noreplace(const char *from, const char *to);
int fsync_subdir(const struct queue *q, const char *sub);
/*
 * Lock fd without waiting: 1 locked; 0 someone else holds it, -1 error
 * (err names path). On 0 and -1 fd is closed.
 */
int try_lock(int fd, const char *path, struct err *err);
/* Create a new file for writing, locked, with exactly mode 0640. */
int create_locked(const char *path);
/* Write and fsync a whole buffer; on failure the file is closed and gone. */
int fill_file(int fd, const char *path, const struct buf *b, struct err *err);
/*
 * Give the file at from the name to: a hard link, or a copy made durable
 * in tmp/ first where the link is refused (protected_hardlinks, when the
 * runner does not own the file). An existing to is replaced unless it is
 * already that file. id names the tmp/ file; the caller fsyncs to's
 * directory.
 */
int link_or_copy(const struct queue *q, const char *id, const char *from,
                 const char *to, struct err *err);

/* queue.c */
/* Read and parse an open envelope; check it belongs to id. */
int load_fd(int fd, const char *id, struct envelope *env, struct err *err);
/*
 * Load env/ID read-only. 1: loaded; 0: gone. *busy (if not NULL) tells
 * whether a delivery holds the entry.
 */
int peek_entry(struct queue *q, const char *id, struct envelope *env,
               int *busy, struct err *err);

/* envelope.c */
/* envelope_format, with the reason for a failure in err. */
int format_envelope(const struct envelope *env, struct buf *out,
                    struct err *err);
const char *rcpt_status_name(enum rcpt_status s);
/* The NOTIFY_* bits set in notify as a comma list ("success,delay"). */
void notify_list(unsigned notify, char *out, size_t size);

#endif
