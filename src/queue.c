/*
 * queue.c - the durable spool's core, used by the runner and the front
 * end: queue ids, the queue directory, submission transactions (tmp ->
 * fsync -> rename -> fsync dir), per-entry flocks, loading with quarantine
 * to corrupt/, state updates, removal and the move to failed/, scanning,
 * peeking and garbage cleanup. The envelope's text format is envelope.c's,
 * the operator's tools are queue_admin.c's and the mailq listing and
 * --show are queue_print.c's; no file outside these knows the on-disk
 * layout.
 *
 * Locking: a delivery holds LOCK_EX on the env/ID inode. Every writer of
 * env/ID holds that lock, and a replacement file is locked before it is
 * renamed into place, so whoever wins the lock and still finds its inode at
 * env/ID owns the entry. tmp/ files are locked by their writer so cleanup
 * never removes a live submission, and the data file stays locked until its
 * envelope is committed.
 *
 * Prepared transactions (a bounce, committed in two phases with the
 * decision recorded in between; see queue_tx_prepare) live in tmp/ as
 * BID.data.for-ID and BID.env.for-ID. They belong to whoever holds ID's
 * lock: queue_lock of ID commits them when env/ID names BID, and cleanup
 * keeps them while it does.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/file.h>
#include <sys/random.h>
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

#define LOCK_TRIES     5           /* env/ID replaced under us */

#define DIR_MODE       0770

static const char *const subdirs[] = {
	"tmp", "data", "env", "failed", "corrupt",
};

/* ---- ids ------------------------------------------------------------- */

int
qid_valid(const char *id)
{
	size_t i;

	if (id == NULL)
		return 0;
	for (i = 0; i < QID_LEN; i++) {
		char c = id[i];

		if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')))
			return 0;
	}
	return id[QID_LEN] == '\0';
}

static unsigned
qid_random16(void)
{
	static unsigned fallback;
	unsigned short r;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) == (ssize_t)sizeof(r))
		return r;
	/* No entropy yet: uniqueness still comes from O_EXCL. */
	fallback = fallback * 1103515245u + 12345u + (unsigned)getpid();
	return (fallback >> 8) & 0xffff;
}

static void
qid_new(char id[QID_LEN + 1])
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(id, QID_LEN + 1, "%08llX%05lX%04X",
	    (unsigned long long)ts.tv_sec & 0xffffffffULL,
	    (unsigned long)(ts.tv_nsec / 1000) & 0xfffffUL, qid_random16());
}

/* ---- queue directory -------------------------------------------------- */

static int
check_dir(const char *path, struct err *err)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return err_sys(err, ERR_TEMP, "queue directory %s", path);
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return err_sys(err, ERR_TEMP, "queue directory %s", path);
	}
	return 0;
}

static int
make_dir(const char *path, struct err *err)
{
	if (mkdir(path, DIR_MODE) == 0) {
		/* Exact mode whatever the umask: the group must write. */
		if (chmod(path, DIR_MODE) < 0)
			return err_sys(err, ERR_TEMP, "chmod %s", path);
		return 0;
	}
	if (errno != EEXIST)
		return err_sys(err, create_class(errno),
		    "create queue directory %s", path);
	return check_dir(path, err);
}

int
queue_open(struct queue *q, const char *dir, int create, struct err *err)
{
	char path[QPATH_MAX];
	size_t i;

	q->dir = NULL;
	q->lazy_removal = q->removed = 0;
	if (dir == NULL || *dir == '\0')
		return err_set(err, ERR_CONFIG, "queue directory not set");
	if (strlen(dir) > QPATH_MAX - 64)
		return err_set(err, ERR_CONFIG,
		    "queue directory name too long");
	if (create ? make_dir(dir, err) < 0 : check_dir(dir, err) < 0)
		return -1;
	for (i = 0; i < NITEMS(subdirs); i++) {
		str_fmt(path, sizeof(path), "%s/%s", dir, subdirs[i]);
		if (create ? make_dir(path, err) < 0 : check_dir(path, err) < 0)
			return -1;
	}
	q->dir = xstrdup(dir);
	return 0;
}

void
queue_close(struct queue *q)
{
	free(q->dir);
	q->dir = NULL;
}

/* ---- loading from disk ------------------------------------------------ */

/* Read and parse an open envelope; check it belongs to id. */
int
load_fd(int fd, const char *id, struct envelope *env, struct err *err)
{
	struct buf b;
	int rc;

	envelope_init(env);
	buf_init(&b, ENVELOPE_MAX + 1);
	if (read_file_capped(fd, &b, ENVELOPE_MAX) < 0) {
		int e = errno;

		buf_free(&b);
		if (e == EFBIG)
			return err_set(err, ERR_DATA,
			    "envelope larger than %d bytes", ENVELOPE_MAX);
		errno = e;
		return err_sys(err, ERR_TEMP, "read envelope");
	}
	rc = envelope_parse(b.data ? b.data : "", b.len, env, err);
	buf_free(&b);
	if (rc == 0 && strcmp(env->id, id) != 0) {
		envelope_free(env);
		return err_set(err, ERR_DATA,
		    "envelope id %s does not match the file name", env->id);
	}
	return rc;
}

/* Move one file into corrupt/ without ever replacing an older one there. */
static int
quarantine_file(struct queue *q, const char *from, const char *name)
{
	char to[QPATH_MAX];

	for (int i = 0; i < 100; i++) {
		int rc = i == 0 ?
		    qpath(q, to, sizeof(to), "corrupt/%s", name) :
		    qpath(q, to, sizeof(to), "corrupt/%s.%d", name, i);

		if (rc < 0) {
			errno = ENAMETOOLONG;
			return -1;
		}
		if (rename_noreplace(from, to) == 0)
			return 0;
		if (errno != EEXIST)
			return -1;
	}
	return -1;
}

/* Move env/ID (and data/ID if any) into corrupt/; err gets why. */
static int
quarantine(struct queue *q, const char *id, struct err *err)
{
	char path[QPATH_MAX], name[QID_LEN + 8];
	int moved_data = 0;

	snprintf(name, sizeof(name), "%s.env", id);
	qpath(q, path, sizeof(path), "env/%s", id);
	if (quarantine_file(q, path, name) < 0)
		return err_prefix(err, "queue file %s (could not move it to "
		    "corrupt/: %s)", id, strerror(errno));
	snprintf(name, sizeof(name), "%s.data", id);
	qpath(q, path, sizeof(path), "data/%s", id);
	if (quarantine_file(q, path, name) == 0)
		moved_data = 1;
	fsync_subdir(q, "env");
	fsync_subdir(q, "data");
	fsync_subdir(q, "corrupt");
	if (err == NULL)
		return -1;
	err_prefix(err, "queue file %s", id);
	str_append(err->msg, moved_data ? "; moved to corrupt/ with its data" :
	    "; moved to corrupt/", sizeof(err->msg));
	return -1;
}

/* ---- prepared transactions ------------------------------------------- */

/* tmp/BID.KIND.for-OID: a transaction prepared for entry OID. */
static int
prepared_path(const struct queue *q, char *out, size_t size, const char *bid,
    const char *kind, const char *oid)
{
	return qpath(q, out, size, "tmp/%s.%s.for-%s", bid, kind, oid);
}

/* Is name (in tmp/) a prepared file? Then bid, oid and *is_env are set. */
static int
prepared_name(const char *name, char bid[QID_LEN + 1], char oid[QID_LEN + 1],
    int *is_env)
{
	static const char dsuf[] = ".data.for-", esuf[] = ".env.for-";
	const char *p = name + QID_LEN;

	if (strlen(name) <= QID_LEN)
		return 0;
	if (strncmp(p, dsuf, sizeof(dsuf) - 1) == 0) {
		*is_env = 0;
		p += sizeof(dsuf) - 1;
	} else if (strncmp(p, esuf, sizeof(esuf) - 1) == 0) {
		*is_env = 1;
		p += sizeof(esuf) - 1;
	} else
		return 0;
	memcpy(bid, name, QID_LEN);
	bid[QID_LEN] = '\0';
	if (strlen(p) != QID_LEN)
		return 0;
	memcpy(oid, p, QID_LEN + 1);
	return qid_valid(bid) && qid_valid(oid);
}

/*
 * rename_noreplace that accepts a move a crash left done: from gone and to
 * there, or (after rename_noreplace's link fallback) both names for one
 * file.
 */
static int
move_once(const char *from, const char *to)
{
	struct stat a, b;
	int e;

	if (rename_noreplace(from, to) == 0)
		return 0;
	e = errno;
	if (e == ENOENT && lstat(from, &a) < 0 && lstat(to, &b) == 0)
		return 0;
	if (e == EEXIST && lstat(from, &a) == 0 && lstat(to, &b) == 0 &&
	    a.st_ino == b.st_ino && a.st_dev == b.st_dev)
		return unlink(from) == 0 || errno == ENOENT ? 0 : -1;
	errno = e;
	return -1;
}

/*
 * Rename a prepared transaction's files into data/ and env/, as
 * queue_tx_commit does, skipping what an interrupted attempt did. The
 * caller holds the data file's lock.
 */
static int
publish_prepared(struct queue *q, const char *bid, const char *oid,
    struct err *err)
{
	char from[QPATH_MAX], to[QPATH_MAX];

	prepared_path(q, from, sizeof(from), bid, "data", oid);
	qpath(q, to, sizeof(to), "data/%s", bid);
	if (move_once(from, to) < 0)
		return err_sys(err, ERR_TEMP, "rename %s to %s", from, to);
	/* Data must be durable before an envelope can point at it. */
	if (fsync_subdir(q, "data") < 0)
		return err_sys(err, ERR_TEMP, "fsync %s/data", q->dir);
	prepared_path(q, from, sizeof(from), bid, "env", oid);
	qpath(q, to, sizeof(to), "env/%s", bid);
	if (move_once(from, to) < 0)
		return err_sys(err, ERR_TEMP, "rename %s to %s", from, to);
	if (fsync_subdir(q, "env") < 0)
		return err_sys(err, ERR_TEMP, "fsync %s/env", q->dir);
	fsync_subdir(q, "tmp");         /* only makes the renames durable */
	return 0;
}

/*
 * The envelope names a bounce (env.bounce) that tmp/ still holds prepared:
 * a crash came between the decision and the commit, so commit it now. If
 * tmp/ does not hold it, it was committed long ago (and maybe delivered):
 * nothing to do. 1: done; 0: its data file is busy; -1: error.
 */
static int
recover_prepared(struct queue *q, const char *id, const struct envelope *env,
    struct err *err)
{
	const char *bid = env->bounce;
	char penv[QPATH_MAX], path[QPATH_MAX];
	struct stat st;
	int fd, rc;

	if (bid[0] == '\0')
		return 1;
	prepared_path(q, penv, sizeof(penv), bid, "env", id);
	if (lstat(penv, &st) < 0)
		return errno == ENOENT ? 1 :
		    err_sys(err, ERR_TEMP, "stat %s", penv);
	/* Its lock, as a live transaction holds it: cleanup keeps off. */
	prepared_path(q, path, sizeof(path), bid, "data", id);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		qpath(q, path, sizeof(path), "data/%s", bid);
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	}
	if (fd < 0) {
		if (errno != ENOENT)
			return err_sys(err, ERR_TEMP, "open %s", path);
		/* Not a state relayq writes: say so, and do not stay stuck. */
		log_error("%s: the prepared bounce %s lost its data file; it "
		    "cannot be sent", id, bid);
		unlink(penv);
		return 1;
	}
	if ((rc = try_lock(fd, path, err)) <= 0)
		return rc;
	rc = publish_prepared(q, bid, id, err);
	close(fd);
	if (rc < 0)
		return err_prefix(err, "queue file %s: bounce %s", id, bid);
	log_info("%s: bounce %s committed (prepared before an interruption)",
	    id, bid);
	return 1;
}

/*
 * env/ID without data/ID, but failed/ID.data of the size the envelope
 * says: a move to failed/ interrupted in the order relayq used before
 * (data first, then the envelope). Finish it when no recipient is pending;
 * otherwise put the data back (a link or copy, not a move: a stale
 * failed/ID.env may need it). ID names one message, so those bytes are its.
 */
enum recovered { RD_NONE, RD_MOVED, RD_RESTORED, RD_ERROR };

static enum recovered
recover_data(struct queue *q, const char *id, const struct envelope *env,
    struct err *err)
{
	char fdata[QPATH_MAX], path[QPATH_MAX], to[QPATH_MAX];
	struct stat st;
	size_t i;

	qpath(q, fdata, sizeof(fdata), "failed/%s.data", id);
	if (lstat(fdata, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (unsigned long long)st.st_size != env->size)
		return RD_NONE;
	for (i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].status == RCPT_PENDING)
			break;
	if (i < env->nrcpts) {
		qpath(q, to, sizeof(to), "data/%s", id);
		if (link_or_copy(q, id, fdata, to, err) < 0)
			return RD_ERROR;
		if (fsync_subdir(q, "data") < 0) {
			err_sys(err, ERR_TEMP, "fsync %s/data", q->dir);
			return RD_ERROR;
		}
		log_warn("%s: data file restored from failed/", id);
		return RD_RESTORED;
	}
	qpath(q, path, sizeof(path), "env/%s", id);
	qpath(q, to, sizeof(to), "failed/%s.env", id);
	if (rename(path, to) < 0) {
		err_sys(err, ERR_TEMP, "rename %s to %s", path, to);
		return RD_ERROR;
	}
	if (fsync_subdir(q, "failed") < 0 || fsync_subdir(q, "env") < 0) {
		err_sys(err, ERR_TEMP, "fsync queue directories in %s", q->dir);
		return RD_ERROR;
	}
	log_info("%s: finished an interrupted move to failed/", id);
	return RD_MOVED;
}

static void
qentry_reset(struct qentry *e)
{
	e->id[0] = '\0';
	e->fd = -1;
	envelope_init(&e->env);
}

static void
drop_entry(struct qentry *e, int fd)
{
	close(fd);
	envelope_free(&e->env);
}

int
queue_lock(struct queue *q, const char *id, struct qentry *e, struct err *err)
{
	char path[QPATH_MAX], dpath[QPATH_MAX];
	struct stat fst, pst;
	struct err local;
	int fd, tries, missing, rc;

	if (err == NULL)
		err = &local;
	qentry_reset(e);
	if (!qid_valid(id))
		return err_set(err, ERR_DATA, "invalid queue id");
	qpath(q, path, sizeof(path), "env/%s", id);
	qpath(q, dpath, sizeof(dpath), "data/%s", id);
	for (tries = 0; tries < LOCK_TRIES; tries++) {
		/* Read-only suffices for flock; files are only 0640. */
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT)
				return 0;
			if (errno == ELOOP) {
				err_set(err, ERR_DATA,
				    "envelope is a symbolic link");
				return quarantine(q, id, err);
			}
			return err_sys(err, ERR_TEMP, "open %s", path);
		}
		if ((rc = try_lock(fd, path, err)) <= 0)
			return rc;
		if (fstat(fd, &fst) < 0) {
			err_sys(err, ERR_TEMP, "fstat %s", path);
			close(fd);
			return -1;
		}
		if (lstat(path, &pst) < 0) {
			int e2 = errno;

			close(fd);
			if (e2 == ENOENT)
				return 0;       /* finished by someone else */
			errno = e2;
			return err_sys(err, ERR_TEMP, "stat %s", path);
		}
		if (fst.st_ino == pst.st_ino && fst.st_dev == pst.st_dev)
			break;
		close(fd);              /* replaced since we opened it */
	}
	if (tries == LOCK_TRIES)
		return 0;
	if (!S_ISREG(fst.st_mode)) {
		err_set(err, ERR_DATA, "envelope is not a regular file");
		quarantine(q, id, err);
		close(fd);
		return -1;
	}
	if (load_fd(fd, id, &e->env, err) < 0) {
		if (err->cls == ERR_DATA)
			quarantine(q, id, err);
		close(fd);
		return -1;
	}
	if ((rc = recover_prepared(q, id, &e->env, err)) <= 0) {
		drop_entry(e, fd);
		return rc;
	}
	missing = lstat(dpath, &pst) < 0;
	if (missing && errno != ENOENT) {
		err_sys(err, ERR_TEMP, "stat %s", dpath);
		drop_entry(e, fd);
		return -1;
	}
	if (missing) {
		enum recovered r = recover_data(q, id, &e->env, err);

		if (r == RD_MOVED || r == RD_ERROR) {
			drop_entry(e, fd);
			return r == RD_MOVED ? 0 : -1;
		}
		if (r == RD_RESTORED)
			missing = lstat(dpath, &pst) < 0;
	}
	if (missing || !S_ISREG(pst.st_mode)) {
		err_set(err, ERR_DATA, missing ? "data file missing" :
		    "data file is not a regular file");
		quarantine(q, id, err);
		drop_entry(e, fd);
		return -1;
	}
	memcpy(e->id, id, QID_LEN + 1);
	e->fd = fd;
	return 1;
}

/* Only the lock: callers still report from e->env, then free it. */
void
queue_unlock(struct qentry *e)
{
	if (e->fd >= 0)
		close(e->fd);
	e->fd = -1;
}

int
queue_update(struct queue *q, struct qentry *e, struct err *err)
{
	static unsigned seq;
	char tmp[QPATH_MAX], path[QPATH_MAX];
	struct buf b;
	int fd = -1, rc;

	if (e->fd < 0 || !qid_valid(e->id))
		return err_set(err, ERR_INTERNAL, "update without a lock");
	memcpy(e->env.id, e->id, QID_LEN + 1);
	buf_init(&b, ENVELOPE_MAX);
	if (format_envelope(&e->env, &b, err) < 0) {
		buf_free(&b);
		return err_prefix(err, "queue file %s", e->id);
	}
	qpath(q, path, sizeof(path), "env/%s", e->id);
	for (int i = 0; i < ID_TRIES; i++) {
		qpath(q, tmp, sizeof(tmp), "tmp/%s.env.%ld.%u", e->id,
		    (long)getpid(), seq++);
		if ((fd = create_locked(tmp)) >= 0 || errno != EEXIST)
			break;
	}
	if (fd < 0)
		err_sys(err, create_class(errno), "create %s", tmp);
	rc = fd < 0 ? -1 : fill_file(fd, tmp, &b, err);
	buf_free(&b);
	if (rc < 0)
		return -1;
	/* fd is locked: a competitor holding the old inode sees the swap. */
	if (rename(tmp, path) < 0) {
		err_sys(err, ERR_TEMP, "rename %s to %s", tmp, path);
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(e->fd);
	e->fd = fd;
	if (fsync_subdir(q, "env") < 0)
		return err_sys(err, ERR_TEMP, "fsync %s/env", q->dir);
	return 0;
}

int
queue_remove(struct queue *q, struct qentry *e, struct err *err)
{
	char path[QPATH_MAX];
	int rc = 0;

	if (e->fd < 0 || !qid_valid(e->id))
		return err_set(err, ERR_INTERNAL, "remove without a lock");
	qpath(q, path, sizeof(path), "env/%s", e->id);
	if (unlink(path) < 0 && errno != ENOENT) {
		err_sys(err, ERR_TEMP, "remove %s", path);
		queue_unlock(e);
		return -1;
	}
	if (q->lazy_removal)
		q->removed = 1;
	else if (fsync_subdir(q, "env") < 0)
		rc = err_sys(err, ERR_TEMP, "fsync %s/env", q->dir);
	qpath(q, path, sizeof(path), "data/%s", e->id);
	/*
	 * The entry is gone; a leftover data file is cleanup's garbage, so
	 * its removal needs no fsync of data/ (one fsync less per message).
	 */
	if (unlink(path) < 0 && errno != ENOENT)
		log_warn("%s: remove %s: %s", e->id, path, strerror(errno));
	queue_unlock(e);
	return rc;
}

void
queue_sync_removals(struct queue *q)
{
	if (q->removed && fsync_subdir(q, "env") < 0)
		log_warn("fsync %s/env: %s", q->dir, strerror(errno));
	q->removed = 0;
}

int
queue_move_failed(struct queue *q, struct qentry *e, struct err *err)
{
	char env[QPATH_MAX], data[QPATH_MAX], fenv[QPATH_MAX], fdata[QPATH_MAX];
	int rc = 0, sfd;

	if (e->fd < 0 || !qid_valid(e->id))
		return err_set(err, ERR_INTERNAL, "move without a lock");
	qpath(q, env, sizeof(env), "env/%s", e->id);
	qpath(q, data, sizeof(data), "data/%s", e->id);
	qpath(q, fenv, sizeof(fenv), "failed/%s.env", e->id);
	qpath(q, fdata, sizeof(fdata), "failed/%s.data", e->id);
	/*
	 * A stale copy of this entry in failed/ (a requeue interrupted after
	 * its commit) is replaced below: hold its lock, so that an operator's
	 * requeue or delete cannot remove the data meanwhile.
	 */
	sfd = open(fenv, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (sfd >= 0 && flock(sfd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			err_set(err, ERR_TEMP, "%s is busy (an operator's tool "
			    "holds it)", fenv);
		else
			err_sys(err, ERR_TEMP, "lock %s", fenv);
		close(sfd);
		queue_unlock(e);
		return -1;
	}
	/* data/ID stays until the commit: a crash here leaves a whole entry. */
	if (link_or_copy(q, e->id, data, fdata, err) < 0)
		goto fail;
	/* The commit point. */
	if (rename(env, fenv) < 0) {
		err_sys(err, ERR_TEMP, "rename %s to %s", env, fenv);
		goto fail;
	}
	if (fsync_subdir(q, "failed") < 0 || fsync_subdir(q, "env") < 0)
		rc = err_sys(err, ERR_TEMP, "fsync queue directories in %s",
		    q->dir);
	/* A second name now; left by a crash, it is cleanup's garbage. */
	if (unlink(data) < 0 && errno != ENOENT)
		log_warn("%s: remove %s: %s", e->id, data, strerror(errno));
	fsync_subdir(q, "data");
	if (sfd >= 0)
		close(sfd);
	queue_unlock(e);
	return rc;
fail:
	if (sfd >= 0)
		close(sfd);
	queue_unlock(e);
	return -1;
}

int
queue_open_data(struct queue *q, const char *id, struct err *err)
{
	char path[QPATH_MAX];
	int fd;

	if (!qid_valid(id))
		return err_set(err, ERR_DATA, "invalid queue id");
	qpath(q, path, sizeof(path), "data/%s", id);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return err_sys(err, ERR_TEMP, "open %s", path);
	return fd;
}

/* ---- submission ------------------------------------------------------- */

int
queue_tx_begin(struct queue *q, struct queue_tx *tx, struct err *err)
{
	char path[QPATH_MAX], other[QPATH_MAX];
	struct stat st;

	tx->q = q;
	tx->datafd = -1;
	tx->envfd = -1;
	tx->committed = 0;
	tx->id[0] = '\0';
	tx->for_id[0] = '\0';
	for (int i = 0; i < ID_TRIES; i++) {
		qid_new(tx->id);
		/* A committed entry with this id would make commit fail. */
		qpath(q, other, sizeof(other), "env/%s", tx->id);
		if (lstat(other, &st) == 0)
			continue;
		qpath(q, other, sizeof(other), "data/%s", tx->id);
		if (lstat(other, &st) == 0)
			continue;
		qpath(q, path, sizeof(path), "tmp/%s.data", tx->id);
		tx->datafd = create_locked(path);
		if (tx->datafd >= 0)
			return 0;
		if (errno != EEXIST)
			return err_sys(err, create_class(errno), "create %s",
			    path);
	}
	return err_set(err, ERR_TEMP, "cannot find a free queue id in %s/tmp",
	    q->dir);
}

void
queue_tx_abort(struct queue_tx *tx)
{
	char path[QPATH_MAX];

	if (tx->q == NULL || tx->datafd < 0)
		return;         /* never begun, already committed or aborted */
	if (tx->for_id[0] != '\0') {
		/* Prepared: the envelope first, so no crash leaves it alone. */
		prepared_path(tx->q, path, sizeof(path), tx->id, "env",
		    tx->for_id);
		unlink(path);
		prepared_path(tx->q, path, sizeof(path), tx->id, "data",
		    tx->for_id);
		unlink(path);
		close(tx->envfd);
		tx->envfd = -1;
	} else if (qpath(tx->q, path, sizeof(path), "tmp/%s.data",
	    tx->id) == 0)
		unlink(path);
	close(tx->datafd);
	tx->datafd = -1;
}

/*
 * What commit and prepare share: the envelope gets the id, size and
 * arrival time, is formatted into b, and the data is fsynced.
 */
static int
seal(struct queue_tx *tx, struct envelope *env, const char *tdata,
    struct buf *b, struct err *err)
{
	struct stat st;

	if (fstat(tx->datafd, &st) < 0)
		return err_sys(err, ERR_TEMP, "fstat %s", tdata);
	memcpy(env->id, tx->id, QID_LEN + 1);
	env->size = (unsigned long long)st.st_size;
	if (env->created == 0)
		env->created = time(NULL);
	if (format_envelope(env, b, err) < 0)
		return -1;
	if (fsync(tx->datafd) < 0)
		return err_sys(err, ERR_TEMP, "fsync %s", tdata);
	return 0;
}

int
queue_tx_commit(struct queue_tx *tx, struct envelope *env, struct err *err)
{
	struct queue *q = tx->q;
	char tdata[QPATH_MAX], data[QPATH_MAX];
	char tenv[QPATH_MAX], envp[QPATH_MAX];
	struct buf b;
	int envfd = -1, data_in = 0, env_in = 0;

	if (tx->datafd < 0 || tx->committed || tx->for_id[0] != '\0')
		return err_set(err, ERR_INTERNAL,
		    "commit without a transaction");
	qpath(q, tdata, sizeof(tdata), "tmp/%s.data", tx->id);
	qpath(q, data, sizeof(data), "data/%s", tx->id);
	qpath(q, tenv, sizeof(tenv), "tmp/%s.env", tx->id);
	qpath(q, envp, sizeof(envp), "env/%s", tx->id);
	buf_init(&b, ENVELOPE_MAX);

	if (seal(tx, env, tdata, &b, err) < 0)
		goto fail;
	if (rename_noreplace(tdata, data) < 0) {
		err_sys(err, ERR_TEMP, "rename %s to %s", tdata, data);
		goto fail;
	}
	data_in = 1;
	/* Data must be durable before an envelope can point at it. */
	if (fsync_subdir(q, "data") < 0) {
		err_sys(err, ERR_TEMP, "fsync %s/data", q->dir);
		goto fail;
	}
	if ((envfd = create_locked(tenv)) < 0) {
		err_sys(err, create_class(errno), "create %s", tenv);
		goto fail;
	}
	if (fill_file(envfd, tenv, &b, err) < 0) {
		envfd = -1;
		goto fail;
	}
	if (rename_noreplace(tenv, envp) < 0) {
		err_sys(err, ERR_TEMP, "rename %s to %s", tenv, envp);
		goto fail;
	}
	env_in = 1;
	if (fsync_subdir(q, "env") < 0) {
		err_sys(err, ERR_TEMP, "fsync %s/env", q->dir);
		goto fail;
	}
	/* No fsync of tmp/: the renames out of it are made durable by the
	 * fsyncs of data/ and env/, and a name that came back would only be
	 * garbage for queue_cleanup. One fsync less on every submission. */
	close(envfd);
	close(tx->datafd);
	tx->datafd = -1;
	tx->committed = 1;
	buf_free(&b);
	return 0;

fail:
	/* Still holding both locks: no runner can have started on this. */
	if (env_in)
		unlink(envp);
	else if (envfd >= 0)
		unlink(tenv);
	if (envfd >= 0)
		close(envfd);
	unlink(data_in ? data : tdata);
	if (env_in)
		fsync_subdir(q, "env");
	if (data_in)
		fsync_subdir(q, "data");
	close(tx->datafd);
	tx->datafd = -1;
	buf_free(&b);
	return -1;
}

int
queue_tx_prepare(struct queue_tx *tx, struct envelope *env, const char *for_id,
    struct err *err)
{
	struct queue *q = tx->q;
	char tdata[QPATH_MAX], pdata[QPATH_MAX], penv[QPATH_MAX];
	struct buf b;
	int envfd = -1, moved = 0;

	if (tx->datafd < 0 || tx->committed || tx->for_id[0] != '\0')
		return err_set(err, ERR_INTERNAL,
		    "prepare without a transaction");
	if (!qid_valid(for_id))
		return err_set(err, ERR_INTERNAL,
		    "prepare for an invalid queue id");
	qpath(q, tdata, sizeof(tdata), "tmp/%s.data", tx->id);
	prepared_path(q, pdata, sizeof(pdata), tx->id, "data", for_id);
	prepared_path(q, penv, sizeof(penv), tx->id, "env", for_id);
	buf_init(&b, ENVELOPE_MAX);
	if (seal(tx, env, tdata, &b, err) < 0)
		goto fail;
	if (rename_noreplace(tdata, pdata) < 0) {
		err_sys(err, ERR_TEMP, "rename %s to %s", tdata, pdata);
		goto fail;
	}
	moved = 1;
	if ((envfd = create_locked(penv)) < 0) {
		err_sys(err, create_class(errno), "create %s", penv);
		goto fail;
	}
	if (fill_file(envfd, penv, &b, err) < 0) {
		envfd = -1;
		goto fail;
	}
	/* The names must be durable before an envelope can point at them. */
	if (fsync_subdir(q, "tmp") < 0) {
		err_sys(err, ERR_TEMP, "fsync %s/tmp", q->dir);
		goto fail;
	}
	tx->envfd = envfd;
	memcpy(tx->for_id, for_id, QID_LEN + 1);
	buf_free(&b);
	return 0;

fail:
	if (envfd >= 0) {
		unlink(penv);
		close(envfd);
	}
	unlink(moved ? pdata : tdata);
	close(tx->datafd);
	tx->datafd = -1;
	buf_free(&b);
	return -1;
}

int
queue_tx_commit_prepared(struct queue_tx *tx, struct err *err)
{
	int rc;

	if (tx->datafd < 0 || tx->committed || tx->for_id[0] == '\0')
		return err_set(err, ERR_INTERNAL,
		    "commit without a prepared transaction");
	/* Both files are still locked by tx: cleanup leaves them alone. */
	rc = publish_prepared(tx->q, tx->id, tx->for_id, err);
	close(tx->envfd);
	close(tx->datafd);
	tx->envfd = tx->datafd = -1;
	tx->committed = rc == 0;
	return rc;
}

/* ---- scanning, peeking, cleanup --------------------------------------- */

int
queue_scan(struct queue *q, struct strlist *ids, struct err *err)
{
	char path[QPATH_MAX];
	struct dirent *de;
	DIR *d;

	qpath(q, path, sizeof(path), "env");
	if ((d = opendir(path)) == NULL)
		return err_sys(err, ERR_TEMP, "open queue directory %s", path);
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		if (qid_valid(de->d_name))
			strlist_add(ids, de->d_name);
		errno = 0;
	}
	if (errno != 0) {
		err_sys(err, ERR_TEMP, "read queue directory %s", path);
		closedir(d);
		return -1;
	}
	closedir(d);
	if (ids->n > 1)
		qsort(ids->v, ids->n, sizeof(ids->v[0]), cmp_str);
	return 0;
}

/*
 * Load env/ID read-only. 1: loaded; 0: gone. *busy (if not NULL) tells
 * whether a delivery holds the entry, found with a shared lock that is
 * dropped at once.
 */
int
peek_entry(struct queue *q, const char *id, struct envelope *env, int *busy,
    struct err *err)
{
	char path[QPATH_MAX];
	int fd, rc;

	envelope_init(env);
	if (!qid_valid(id))
		return err_set(err, ERR_DATA, "invalid queue id");
	qpath(q, path, sizeof(path), "env/%s", id);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return err_sys(err, errno == ELOOP ? ERR_DATA : ERR_TEMP,
		    "open %s", path);
	}
	if (busy != NULL) {
		*busy = flock(fd, LOCK_SH | LOCK_NB) < 0 &&
		    errno == EWOULDBLOCK;
		if (!*busy)
			flock(fd, LOCK_UN);
	}
	rc = load_fd(fd, id, env, err);
	close(fd);
	if (rc < 0)
		return err_prefix(err, "queue file %s", id);
	return 1;
}

int
queue_peek(struct queue *q, const char *id, struct envelope *env,
    struct err *err)
{
	int rc = peek_entry(q, id, env, NULL, err);

	if (rc == 0) {
		errno = ENOENT;
		return err_sys(err, ERR_TEMP, "queue file %s", id);
	}
	return rc < 0 ? -1 : 0;
}

/* Does env/oid name bid as its bounce? When it cannot tell: yes. */
static int
prepared_wanted(struct queue *q, const char *bid, const char *oid)
{
	struct envelope env;
	int rc, named;

	rc = peek_entry(q, oid, &env, NULL, NULL);
	named = rc < 0 || (rc == 1 && strcmp(env.bounce, bid) == 0);
	envelope_free(&env);
	return named;
}

/*
 * Remove name in sub/ if it is older than cutoff and nobody holds its
 * lock; for data/, only while env/ID is absent (checked under the lock, as
 * commit keeps the data file locked until its envelope is in place); for a
 * prepared transaction in tmp/, only while the entry it was prepared for
 * does not name it.
 */
static int
cleanup_one(struct queue *q, const char *sub, const char *name, time_t cutoff)
{
	char path[QPATH_MAX], envp[QPATH_MAX];
	char bid[QID_LEN + 1], oid[QID_LEN + 1];
	struct stat st, fst;
	int fd, removed = 0, is_env;

	if (qpath(q, path, sizeof(path), "%s/%s", sub, name) < 0 ||
	    lstat(path, &st) < 0 || st.st_mtime >= cutoff)
		return 0;
	if (!S_ISREG(st.st_mode)) {
		/* A stray symlink in tmp/ is garbage; in data/ not ours. */
		if (S_ISDIR(st.st_mode) || strcmp(sub, "tmp") != 0)
			return 0;
		return unlink(path) == 0;
	}
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &fst) == 0 &&
	    fst.st_ino == st.st_ino && fst.st_dev == st.st_dev &&
	    fst.st_mtime < cutoff) {
		if (strcmp(sub, "data") == 0) {
			qpath(q, envp, sizeof(envp), "env/%s", name);
			if (lstat(envp, &st) < 0 && errno == ENOENT)
				removed = unlink(path) == 0;
		} else if (!prepared_name(name, bid, oid, &is_env) ||
		    !prepared_wanted(q, bid, oid))
			removed = unlink(path) == 0;
	}
	close(fd);
	return removed;
}

int
queue_cleanup(struct queue *q, long grace, struct err *err)
{
	static const char *const dirs[] = { "tmp", "data" };
	time_t cutoff = time(NULL) - grace;
	struct strlist keep = { 0 };    /* prepared ids whose envelope stays */
	char path[QPATH_MAX], bid[QID_LEN + 1], oid[QID_LEN + 1];
	struct dirent *de;
	int count = 0, is_env;
	DIR *d;

	/* tmp/ first: a prepared envelope kept there keeps its data/ file. */
	for (size_t i = 0; i < NITEMS(dirs); i++) {
		int is_data = strcmp(dirs[i], "data") == 0, n = 0, r;

		qpath(q, path, sizeof(path), "%s", dirs[i]);
		if ((d = opendir(path)) == NULL) {
			strlist_free(&keep);
			return err_sys(err, ERR_TEMP,
			    "open queue directory %s", path);
		}
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			if (is_data && (!qid_valid(de->d_name) ||
			    strlist_has_ci(&keep, de->d_name)))
				continue;
			r = cleanup_one(q, dirs[i], de->d_name, cutoff);
			n += r;
			if (!is_data && r == 0 &&
			    prepared_name(de->d_name, bid, oid, &is_env) &&
			    is_env)
				strlist_add(&keep, bid);
		}
		closedir(d);
		if (n > 0)
			fsync_subdir(q, dirs[i]);
		count += n;
	}
	strlist_free(&keep);
	return count;
}
