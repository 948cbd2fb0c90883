/*
 * queue_admin.c - the operator's actions on entries: find one in env/ or
 * failed/, delete, hold and release, requeue from failed/, list failed/,
 * and the counts for --summary. A queued entry is changed only under its
 * lock (queue_lock), one in failed/ under failed/ID.env's, so a tool never
 * races a delivery or another operator.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue_int.h"
#include "log.h"

static int
bad_id(const char *id, struct err *err)
{
	char esc[64];

	escape_str(id != NULL ? id : "", esc, sizeof(esc));
	return err_set(err, ERR_USAGE, "not a queue id: \"%s\"", esc);
}

/* Does sub/<id><suffix> exist (as anything)? */
static int
entry_exists(const struct queue *q, const char *sub, const char *id,
    const char *suffix)
{
	char path[QPATH_MAX];
	struct stat st;

	if (qpath(q, path, sizeof(path), "%s/%s%s", sub, id, suffix) < 0)
		return 0;
	return lstat(path, &st) == 0;
}

/*
 * Open failed/ID.env and lock it without waiting: requeue and delete hold
 * that lock, so two operators never work on one failed entry at once.
 */
static enum qop
lock_failed(struct queue *q, const char *id, int *fdp, struct err *err)
{
	char path[QPATH_MAX];
	struct stat fst, pst;
	int fd, locked;

	*fdp = -1;
	qpath(q, path, sizeof(path), "failed/%s.env", id);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return QOP_MISSING;
		err_sys(err, errno == ELOOP ? ERR_DATA : ERR_TEMP, "open %s",
		    path);
		return QOP_ERROR;
	}
	if ((locked = try_lock(fd, path, err)) <= 0)
		return locked == 0 ? QOP_BUSY : QOP_ERROR;
	/* Removed or replaced before we had the lock: not ours any more. */
	if (fstat(fd, &fst) < 0 || lstat(path, &pst) < 0 ||
	    fst.st_ino != pst.st_ino || fst.st_dev != pst.st_dev) {
		close(fd);
		return QOP_MISSING;
	}
	if (!S_ISREG(fst.st_mode)) {
		close(fd);
		err_set(err, ERR_DATA, "%s is not a regular file", path);
		return QOP_ERROR;
	}
	*fdp = fd;
	return QOP_DONE;
}

/* Remove failed/ID.env, then failed/ID.data; the caller holds the lock. */
static enum qop
drop_failed(struct queue *q, const char *id, struct err *err)
{
	char path[QPATH_MAX];

	qpath(q, path, sizeof(path), "failed/%s.env", id);
	if (unlink(path) < 0) {
		err_sys(err, ERR_TEMP, "remove %s", path);
		return QOP_ERROR;
	}
	qpath(q, path, sizeof(path), "failed/%s.data", id);
	if (unlink(path) < 0 && errno != ENOENT) {
		err_sys(err, ERR_TEMP, "remove %s", path);
		fsync_subdir(q, "failed");
		return QOP_ERROR;
	}
	if (fsync_subdir(q, "failed") < 0) {
		err_sys(err, ERR_TEMP, "fsync %s/failed", q->dir);
		return QOP_ERROR;
	}
	return QOP_DONE;
}

int
queue_find(struct queue *q, const char *id, struct envelope *env,
    enum qwhere *where, int *busy, struct err *err)
{
	char path[QPATH_MAX];
	int fd, rc, dummy;

	*where = QW_NONE;
	envelope_init(env);
	if (busy == NULL)
		busy = &dummy;
	*busy = 0;
	if (!qid_valid(id))
		return bad_id(id, err);
	rc = peek_entry(q, id, env, busy, err);
	if (rc != 0) {
		if (rc == 1)
			*where = QW_QUEUE;
		return rc < 0 ? -1 : 0;
	}
	qpath(q, path, sizeof(path), "failed/%s.env", id);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return err_sys(err, errno == ELOOP ? ERR_DATA : ERR_TEMP,
		    "open %s", path);
	}
	rc = load_fd(fd, id, env, err);
	close(fd);
	if (rc < 0)
		return err_prefix(err, "failed/%s.env", id);
	*where = QW_FAILED;
	return 0;
}

enum qop
queue_delete(struct queue *q, const char *id, struct err *err)
{
	struct qentry e;
	enum qop r;
	int rc, fd;

	if (!qid_valid(id)) {
		bad_id(id, err);
		return QOP_ERROR;
	}
	rc = queue_lock(q, id, &e, err);
	if (rc < 0)
		return QOP_ERROR;
	if (rc == 1) {
		rc = queue_remove(q, &e, err);
		envelope_free(&e.env);
		return rc < 0 ? QOP_ERROR : QOP_DONE;
	}
	if (entry_exists(q, "env", id, ""))
		return QOP_BUSY;
	if ((r = lock_failed(q, id, &fd, err)) != QOP_DONE)
		return r;
	r = drop_failed(q, id, err);
	close(fd);
	return r;
}

enum qop
queue_hold(struct queue *q, const char *id, int hold, struct err *err)
{
	struct qentry e;
	enum qop r = QOP_DONE;
	int rc;

	if (!qid_valid(id)) {
		bad_id(id, err);
		return QOP_ERROR;
	}
	rc = queue_lock(q, id, &e, err);
	if (rc < 0)
		return QOP_ERROR;
	if (rc == 0)
		return entry_exists(q, "env", id, "") ? QOP_BUSY : QOP_MISSING;
	if (e.env.held == (hold != 0)) {
		r = QOP_UNCHANGED;
	} else {
		e.env.held = hold != 0;
		if (!hold)
			e.env.next_attempt = 0;
		if (queue_update(q, &e, err) < 0)
			r = QOP_ERROR;
	}
	queue_unlock(&e);
	envelope_free(&e.env);
	return r;
}

/* A new locked file tmp/ID.<kind>.<pid>.<n>; path receives its name. */
static int
create_tmp(struct queue *q, const char *id, const char *kind, char *path,
    size_t size)
{
	static unsigned seq;
	int fd = -1;

	for (int i = 0; i < ID_TRIES; i++) {
		qpath(q, path, size, "tmp/%s.%s.%ld.%u", id, kind,
		    (long)getpid(), seq++);
		if ((fd = create_locked(path)) >= 0 || errno != EEXIST)
			break;
	}
	return fd;
}

/* Copy in to a new tmp file and rename it to data/ID; returns it locked. */
static int
copy_data(struct queue *q, const char *id, int in, struct err *err)
{
	char tmp[QPATH_MAX], to[QPATH_MAX], chunk[65536];
	ssize_t n;
	int fd;

	qpath(q, to, sizeof(to), "data/%s", id);
	if ((fd = create_tmp(q, id, "data", tmp, sizeof(tmp))) < 0)
		return err_sys(err, create_class(errno), "create %s", tmp);
	while ((n = read(in, chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || write_all(fd, chunk, (size_t)n) < 0) {
			err_sys(err, ERR_TEMP, "copy to %s", tmp);
			goto fail;
		}
	}
	if (fsync(fd) < 0) {
		err_sys(err, ERR_TEMP, "fsync %s", tmp);
		goto fail;
	}
	if (rename_noreplace(tmp, to) < 0) {
		err_sys(err, ERR_TEMP, "rename %s to %s", tmp, to);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	unlink(tmp);
	return -1;
}

/*
 * data/ID with the bytes of failed/ID.data: a hard link, or a copy where
 * the link is refused (protected_hardlinks, another file system). The
 * descriptor returned holds data/ID's lock until the envelope is
 * committed, so cleanup cannot take the file for garbage meanwhile.
 */
static int
requeue_data(struct queue *q, const char *id, struct err *err)
{
	char from[QPATH_MAX], to[QPATH_MAX];
	struct stat st;
	int in, fd;

	qpath(q, from, sizeof(from), "failed/%s.data", id);
	qpath(q, to, sizeof(to), "data/%s", id);
	if ((in = open(from, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return err_sys(err, errno == ENOENT || errno == ELOOP ?
		    ERR_DATA : ERR_TEMP, "open %s", from);
	if (fstat(in, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(in);
		return err_set(err, ERR_DATA, "%s is not a regular file", from);
	}
	if (flock(in, LOCK_EX | LOCK_NB) == 0 && link(from, to) == 0)
		return in;
	fd = copy_data(q, id, in, err);
	close(in);
	return fd;
}

/* Failed recipients pending again, the attempt history cleared. */
static void
reset_for_requeue(struct envelope *env)
{
	for (size_t i = 0; i < env->nrcpts; i++) {
		struct rcpt *r = &env->rcpts[i];

		if (r->status != RCPT_FAILED)
			continue;
		r->status = RCPT_PENDING;
		free(r->dsn);
		free(r->error);
		r->dsn = r->error = NULL;
	}
	env->attempts = 0;
	env->next_attempt = 0;
	free(env->last_error);
	env->last_error = NULL;
}

/* Write env as tmp/..., fsync, and rename it to env/ID: the commit. */
static int
commit_env(struct queue *q, const char *id, const struct buf *b,
    struct err *err)
{
	char tmp[QPATH_MAX], path[QPATH_MAX];
	int fd;

	qpath(q, path, sizeof(path), "env/%s", id);
	if ((fd = create_tmp(q, id, "env", tmp, sizeof(tmp))) < 0)
		return err_sys(err, create_class(errno), "create %s", tmp);
	if (fill_file(fd, tmp, b, err) < 0)
		return -1;
	if (rename_noreplace(tmp, path) < 0) {
		err_sys(err, ERR_TEMP, "rename %s to %s", tmp, path);
		close(fd);
		unlink(tmp);
		return -1;
	}
	if (fsync_subdir(q, "env") < 0)
		log_warn("%s: fsync %s/env: %s", id, q->dir, strerror(errno));
	close(fd);
	return 0;
}

enum qop
queue_requeue(struct queue *q, const char *id, struct err *err)
{
	char path[QPATH_MAX];
	struct envelope env;
	struct buf b;
	enum qop r;
	int lockfd, datafd = -1;

	if (!qid_valid(id)) {
		bad_id(id, err);
		return QOP_ERROR;
	}
	if ((r = lock_failed(q, id, &lockfd, err)) != QOP_DONE)
		return r;
	r = QOP_ERROR;
	buf_init(&b, ENVELOPE_MAX);
	if (load_fd(lockfd, id, &env, err) < 0) {
		err_prefix(err, "failed/%s.env", id);
		goto out;
	}
	if (entry_exists(q, "env", id, "")) {
		/* A requeue that stopped after its commit: finish it. */
		log_warn("%s: already back in the queue; removing the stale "
		    "copy in failed/", id);
		r = drop_failed(q, id, err);
		goto out;
	}
	/* A data file from a requeue that stopped before its commit. */
	qpath(q, path, sizeof(path), "data/%s", id);
	if (unlink(path) < 0 && errno != ENOENT) {
		err_sys(err, ERR_TEMP, "remove %s", path);
		goto out;
	}
	reset_for_requeue(&env);
	if (format_envelope(&env, &b, err) < 0)
		goto out;
	if ((datafd = requeue_data(q, id, err)) < 0)
		goto out;
	if (fsync_subdir(q, "data") < 0) {
		err_sys(err, ERR_TEMP, "fsync %s/data", q->dir);
		unlink(path);
		goto out;
	}
	if (commit_env(q, id, &b, err) < 0) {
		unlink(path);
		goto out;
	}
	/* Back in the queue; a copy left in failed/ is finished next time. */
	if (drop_failed(q, id, err) != QOP_DONE)
		log_warn("%s: requeued, but the copy in failed/ stays: %s", id,
		    err->msg);
	r = QOP_DONE;
out:
	if (datafd >= 0)
		close(datafd);
	close(lockfd);
	envelope_free(&env);
	buf_free(&b);
	return r;
}

int
queue_scan_failed(struct queue *q, struct strlist *ids, struct err *err)
{
	char path[QPATH_MAX], id[QID_LEN + 1];
	struct dirent *de;
	DIR *d;

	qpath(q, path, sizeof(path), "failed");
	if ((d = opendir(path)) == NULL)
		return err_sys(err, ERR_TEMP, "open queue directory %s", path);
	while ((de = readdir(d)) != NULL) {
		if (strlen(de->d_name) != QID_LEN + 4 ||
		    strcmp(de->d_name + QID_LEN, ".env") != 0)
			continue;
		memcpy(id, de->d_name, QID_LEN);
		id[QID_LEN] = '\0';
		if (qid_valid(id))
			strlist_add(ids, id);
	}
	closedir(d);
	if (ids->n > 1)
		qsort(ids->v, ids->n, sizeof(ids->v[0]), cmp_str);
	return 0;
}

static int
count_files(struct queue *q, const char *sub, unsigned long *n,
    struct err *err)
{
	char path[QPATH_MAX];
	struct dirent *de;
	DIR *d;

	qpath(q, path, sizeof(path), "%s", sub);
	if ((d = opendir(path)) == NULL)
		return err_sys(err, ERR_TEMP, "open queue directory %s", path);
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			(*n)++;
	closedir(d);
	return 0;
}

int
queue_count(struct queue *q, time_t now, struct queue_counts *c,
    struct err *err)
{
	struct strlist ids = { 0 };
	struct envelope env;
	struct err e2;

	memset(c, 0, sizeof(*c));
	if (queue_scan(q, &ids, err) < 0)
		return -1;
	for (size_t i = 0; i < ids.n; i++) {
		int busy = 0, rc = peek_entry(q, ids.v[i], &env, &busy, &e2);

		if (rc <= 0) {
			c->corrupt += rc < 0;   /* 0: delivered meanwhile */
			continue;
		}
		c->total++;
		if (now - env.created > c->oldest)
			c->oldest = now - env.created;
		if (env.held)
			c->held++;
		else if (busy)
			c->active++;
		else if (env.attempts > 0)
			c->deferred++;
		else
			c->fresh++;
		envelope_free(&env);
	}
	strlist_free(&ids);
	if (queue_scan_failed(q, &ids, err) < 0)
		return -1;
	c->failed = ids.n;
	strlist_free(&ids);
	return count_files(q, "corrupt", &c->corrupt, err);
}
