/*
 * queue_util.c - helpers the spool files share (declared in queue_int.h):
 * paths under the queue directory, the crash-safe file primitives
 * (no-replace rename, locked exclusive create, durable write, directory
 * fsync, link-or-copy), how a failed creation is classed, and two string
 * helpers; and the daemon's wake-up FIFO.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "queue_int.h"

#define FILE_MODE      0640

/* Paths are built from q->dir, checked for length in queue_open. */
int PRINTF_LIKE(4, 5)
qpath(const struct queue *q, char *out, size_t size, const char *fmt, ...)
{
	char rel[QPATH_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(rel))
		return -1;
	return str_fmt(out, size, "%s/%s", q->dir, rel);
}

/* Creation failures the caller cannot fix by waiting. */
enum err_class
create_class(int e)
{
	if (e == EACCES || e == EPERM || e == EROFS)
		return ERR_CANTCREAT;
	return ERR_TEMP;
}

void
escape_str(const char *s, char *out, size_t size)
{
	str_escape(s, strlen(s), out, size);
}

/* For qsort over a strlist's strings. */
int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- small file-system helpers ---------------------------------------- */

/* rename that never replaces an existing target. */
int
rename_noreplace(const char *from, const char *to)
{
#ifdef HAVE_RENAMEAT2
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
		return -1;
#endif
	if (link(from, to) < 0)
		return -1;
	if (unlink(from) < 0) {
		int saved = errno;

		unlink(to);
		errno = saved;
		return -1;
	}
	return 0;
}

int
fsync_subdir(const struct queue *q, const char *sub)
{
	char path[QPATH_MAX];

	if (qpath(q, path, sizeof(path), "%s", sub) < 0) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return fsync_dir(path);
}

int
try_lock(int fd, const char *path, struct err *err)
{
	int e;

	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return 1;
	e = errno;
	close(fd);
	if (e == EWOULDBLOCK)
		return 0;
	errno = e;
	return err_sys(err, ERR_TEMP, "lock %s", path);
}

/* Create a new file for writing, locked, with exactly FILE_MODE. */
int
create_locked(const char *path)
{
	int fd, saved;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    FILE_MODE);
	if (fd < 0)
		return -1;
	if (fchmod(fd, FILE_MODE) < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
		saved = errno;
		close(fd);
		unlink(path);
		errno = saved;
		return -1;
	}
	return fd;
}

/* Write and fsync a whole buffer; on failure the file is closed and gone. */
int
fill_file(int fd, const char *path, const struct buf *b, struct err *err)
{
	if (write_all(fd, b->data, b->len) < 0 || fsync(fd) < 0) {
		err_sys(err, ERR_TEMP, "write %s", path);
		close(fd);
		unlink(path);
		return -1;
	}
	return 0;
}

/* Copy the rest of in to out and fsync out. */
static int
copy_fd(int in, int out)
{
	char chunk[65536];
	ssize_t n;

	while ((n = read(in, chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || write_all(out, chunk, (size_t)n) < 0)
			return -1;
	}
	return fsync(out);
}

int
link_or_copy(const struct queue *q, const char *id, const char *from,
    const char *to, struct err *err)
{
	static unsigned seq;
	char tmp[QPATH_MAX];
	struct stat a, b;
	int e, in, fd = -1, linked = 0, rc = -1;

	if (link(from, to) == 0)
		return 0;
	e = errno;
	if (e == EEXIST && stat(from, &a) == 0 && lstat(to, &b) == 0 &&
	    a.st_ino == b.st_ino && a.st_dev == b.st_dev)
		return 0;
	if (e != EEXIST && e != EPERM && e != EMLINK && e != EXDEV) {
		errno = e;
		return err_sys(err, e == ENOENT ? ERR_DATA : create_class(e),
		    "link %s to %s", from, to);
	}
	if ((in = open(from, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return err_sys(err, ERR_TEMP, "open %s", from);
	/* Locked (by us or whoever holds it): cleanup leaves the tmp name. */
	(void)flock(in, LOCK_EX | LOCK_NB);
	for (int i = 0; i < ID_TRIES; i++) {
		if (qpath(q, tmp, sizeof(tmp), "tmp/%s.copy.%ld.%u", id,
		    (long)getpid(), seq++) < 0) {
			errno = ENAMETOOLONG;
			break;
		}
		if (link(from, tmp) == 0) {
			linked = 1;
			break;
		}
		if (errno == EEXIST)
			continue;
		if ((fd = create_locked(tmp)) >= 0 || errno != EEXIST)
			break;
	}
	if (!linked && fd < 0) {
		err_sys(err, create_class(errno), "create %s", tmp);
		goto out;
	}
	if (!linked && copy_fd(in, fd) < 0) {
		err_sys(err, ERR_TEMP, "copy %s to %s", from, tmp);
		unlink(tmp);
		goto out;
	}
	if (rename(tmp, to) < 0) {
		err_sys(err, ERR_TEMP, "rename %s to %s", tmp, to);
		unlink(tmp);
		goto out;
	}
	/* rename does nothing when both names are one file already. */
	unlink(tmp);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	close(in);
	return rc;
}

char *
queue_trigger_path(const char *dir)
{
	return xasprintf("%s/trigger", dir);
}

void
queue_poke(const char *dir)
{
	char *path = queue_trigger_path(dir);
	int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);

	free(path);
	if (fd >= 0) {
		(void)!write(fd, "!", 1);
		close(fd);
	}
}
