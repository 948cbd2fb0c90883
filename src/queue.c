/*
 * queue.c - the durable spool. Owns queue ids, the envelope file format,
 * the commit protocol (tmp -> fsync -> rename -> fsync dir), per-entry
 * flocks, state updates, removal, failed/ and corrupt/, garbage cleanup and
 * the mailq listing, and the operator's tools (show, delete, hold, requeue,
 * counts). Nothing outside this file knows the on-disk layout.
 *
 * Envelope format (env/ID), version 1. Plain text, LF line endings, every
 * line at most ENV_LINE_MAX bytes, no control characters anywhere:
 *
 *	relayq-envelope 1
 *	id: 0A1B2C3D4E5F60718          queue id, equal to the file name
 *	created: 1700000000            arrival, unix seconds
 *	size: 1234                     bytes in data/ID
 *	sender: alice@example.com      empty ("sender:" or "sender: ") = <>
 *	body: 7bit                     7bit | 8bitmime
 *	smtputf8: 0                    0 | 1
 *	ret: full                      optional: full | hdrs
 *	envid: xyz                     optional DSN ENVID
 *	attempts: 0
 *	last-attempt: 0                unix seconds, 0 = never
 *	next-attempt: 0                unix seconds, 0 = now
 *	last-error: text               optional, shown by mailq
 *	held: 1                        optional: on hold, never delivered
 *	                               by a run until released
 *	rcpt: pending bob@example.com  pending | sent | failed, and address
 *	rcpt-orcpt: rfc822;bob@x       optional lines that belong to the
 *	rcpt-notify: success,failure     rcpt line above them; notify is a
 *	rcpt-dsn: 4.4.1                  comma list of never, success,
 *	rcpt-error: text                 failure, delay
 *	end
 *
 * A value follows ":" and at most one space. Header keys come before the
 * first rcpt line and appear at most once; id, created, size, sender,
 * attempts and at least one rcpt are required. Text that came from outside
 * (errors, orcpt, envid) is sanitised when written: line breaks become a
 * space, other control characters '?', and it is truncated to TEXT_MAX
 * bytes. Addresses are written verbatim and must already be clean. Parsing
 * is strict: anything unknown, repeated, out of range, unterminated or
 * followed by more data is ERR_DATA naming the line.
 *
 * Locking: a delivery holds LOCK_EX on the env/ID inode. Every writer of
 * env/ID holds that lock, and a replacement file is locked before it is
 * renamed into place, so whoever wins the lock and still finds its inode at
 * env/ID owns the entry. tmp/ files are locked by their writer so cleanup
 * never removes a live submission, and the data file stays locked until its
 * envelope is committed.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue.h"
#include "log.h"

#define ENV_MAGIC      "relayq-envelope"
#define ENV_LINE_MAX   4096        /* bytes per line, without the LF */
#define ENV_RCPT_MAX   100000
#define TEXT_MAX       1000        /* sanitised error/orcpt/envid text */
#define TIME_MAX       253402300799LL   /* 9999-12-31 */
#define SIZE_MAX_MSG   (1LL << 53)
#define ATTEMPTS_MAX   1000000
#define QPATH_MAX      4096
#define ID_TRIES       100         /* fresh ids tried on EEXIST */
#define LOCK_TRIES     5           /* env/ID replaced under us */

#define DIR_MODE       0770
#define FILE_MODE      0640

#define NITEMS(a)      (sizeof(a) / sizeof((a)[0]))

static const char *const subdirs[] = {
	"tmp", "data", "env", "failed", "corrupt",
};

/* Paths are built from q->dir, checked for length in queue_open. */
static int PRINTF_LIKE(4, 5)
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
static enum err_class
create_class(int e)
{
	if (e == EACCES || e == EPERM || e == EROFS)
		return ERR_CANTCREAT;
	return ERR_TEMP;
}

static void
escape_str(const char *s, char *out, size_t size)
{
	str_escape(s, strlen(s), out, size);
}

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

/* ---- small file-system helpers ---------------------------------------- */

/* rename that never replaces an existing target. */
static int
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

static int
fsync_subdir(const struct queue *q, const char *sub)
{
	char path[QPATH_MAX];

	if (qpath(q, path, sizeof(path), "%s", sub) < 0) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return fsync_dir(path);
}

/* Create a new file for writing, locked, with exactly FILE_MODE. */
static int
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
static int
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

/* ---- envelopes: memory ------------------------------------------------- */

void
envelope_init(struct envelope *env)
{
	memset(env, 0, sizeof(*env));
	env->ret = RET_DEFAULT;
}

void
envelope_add_rcpt(struct envelope *env, const char *addr, const char *orcpt,
    unsigned notify)
{
	struct rcpt *r;
	size_t n = env->nrcpts;

	/* Capacity is the next power of two: grow when n is one. */
	if (n == 0 || (n & (n - 1)) == 0)
		env->rcpts = xreallocarray(env->rcpts, n ? n * 2 : 1,
		    sizeof(*env->rcpts));
	r = &env->rcpts[n];
	memset(r, 0, sizeof(*r));
	r->addr = xstrdup(addr);
	r->orcpt = orcpt ? xstrdup(orcpt) : NULL;
	r->status = RCPT_PENDING;
	r->notify = notify;
	env->nrcpts = n + 1;
}

void
envelope_free(struct envelope *env)
{
	for (size_t i = 0; i < env->nrcpts; i++) {
		free(env->rcpts[i].addr);
		free(env->rcpts[i].orcpt);
		free(env->rcpts[i].dsn);
		free(env->rcpts[i].error);
	}
	free(env->rcpts);
	free(env->sender);
	free(env->envid);
	free(env->last_error);
	envelope_init(env);
}

/* ---- envelopes: writing ----------------------------------------------- */

static const char *const status_names[] = {
	[RCPT_PENDING] = "pending",
	[RCPT_SENT] = "sent",
	[RCPT_FAILED] = "failed",
};

static const struct {
	const char *name;
	unsigned bit;
} notify_names[] = {
	{ "never", NOTIFY_NEVER }, { "success", NOTIFY_SUCCESS },
	{ "failure", NOTIFY_FAILURE }, { "delay", NOTIFY_DELAY },
};

/*
 * Make outside text safe for one line: CR/LF runs become one space, other
 * controls '?', at most TEXT_MAX bytes (not splitting a UTF-8 sequence).
 * Idempotent, so repeated updates do not grow or change it.
 */
static void
sanitise(const char *in, char *out, size_t size)
{
	size_t o = 0, limit = size - 1 < TEXT_MAX ? size - 1 : TEXT_MAX;
	const unsigned char *p = (const unsigned char *)in;

	for (; *p != '\0' && o < limit; p++) {
		if (*p == '\r' || *p == '\n') {
			if (o == 0 || (p[-1] != '\r' && p[-1] != '\n'))
				out[o++] = ' ';
		} else if (*p < 0x20 || *p == 0x7f)
			out[o++] = '?';
		else
			out[o++] = (char)*p;
	}
	if ((*p & 0xc0) == 0x80) {
		/* Cut inside a UTF-8 sequence: drop its first bytes too. */
		while (o > 0 && ((unsigned char)out[o - 1] & 0xc0) == 0x80)
			o--;
		if (o > 0 && ((unsigned char)out[o - 1] & 0xc0) == 0xc0)
			o--;
	}
	out[o] = '\0';
}

static int
has_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

static int
dsn_valid(const char *s)
{
	int digits;

	if (s == NULL || strchr("245", s[0]) == NULL || s[0] == '\0' ||
	    s[1] != '.')
		return 0;
	s += 2;
	for (int part = 0; part < 2; part++) {
		for (digits = 0; isdigit((unsigned char)*s); s++)
			digits++;
		if (digits < 1 || digits > 3)
			return 0;
		if (part == 0 && *s++ != '.')
			return 0;
	}
	return *s == '\0';
}

/* One "key: value" line, within the line limit. */
static int
put_line(struct buf *b, const char *key, const char *val, struct err *err)
{
	size_t len = strlen(key) + 2 + strlen(val);

	if (len > ENV_LINE_MAX)
		return err_set(err, ERR_DATA,
		    "envelope %s line too long (%zu bytes)", key, len);
	if (buf_printf(b, "%s: %s\n", key, val) < 0)
		return err_set(err, ERR_DATA, "envelope larger than %d bytes",
		    ENVELOPE_MAX);
	return 0;
}

static int
put_text(struct buf *b, const char *key, const char *val, struct err *err)
{
	char clean[TEXT_MAX + 1];

	sanitise(val, clean, sizeof(clean));
	return put_line(b, key, clean, err);
}

static int
put_num(struct buf *b, const char *key, long long v, long long max,
    struct err *err)
{
	char num[32];

	if (v < 0 || v > max)
		return err_set(err, ERR_DATA, "envelope %s out of range: %lld",
		    key, v);
	snprintf(num, sizeof(num), "%lld", v);
	return put_line(b, key, num, err);
}

static int
put_addr(struct buf *b, const char *key, const char *prefix, const char *addr,
    struct err *err)
{
	char line[ENV_LINE_MAX + 1];

	if (has_ctl(addr))
		return err_set(err, ERR_DATA,
		    "envelope %s contains a control character", key);
	if (str_fmt(line, sizeof(line), "%s%s", prefix, addr) < 0)
		return err_set(err, ERR_DATA, "envelope %s line too long", key);
	return put_line(b, key, line, err);
}

static int
put_rcpt(struct buf *b, const struct rcpt *r, struct err *err)
{
	char prefix[16], notify[64] = "";

	if (r->addr == NULL || r->addr[0] == '\0')
		return err_set(err, ERR_DATA,
		    "envelope recipient address is empty");
	if ((unsigned)r->status > RCPT_FAILED)
		return err_set(err, ERR_INTERNAL, "bad recipient status %d",
		    r->status);
	snprintf(prefix, sizeof(prefix), "%s ", status_names[r->status]);
	if (put_addr(b, "rcpt", prefix, r->addr, err) < 0)
		return -1;
	if (r->orcpt != NULL && put_text(b, "rcpt-orcpt", r->orcpt, err) < 0)
		return -1;
	for (size_t i = 0; i < NITEMS(notify_names); i++) {
		unsigned bit = notify_names[i].bit;

		/* NEVER excludes the others (RFC 3461); keep it alone. */
		if (!(r->notify & bit) ||
		    ((r->notify & NOTIFY_NEVER) && bit != NOTIFY_NEVER))
			continue;
		if (notify[0])
			str_append(notify, ",", sizeof(notify));
		str_append(notify, notify_names[i].name, sizeof(notify));
	}
	if (notify[0] && put_line(b, "rcpt-notify", notify, err) < 0)
		return -1;
	if (dsn_valid(r->dsn) && put_line(b, "rcpt-dsn", r->dsn, err) < 0)
		return -1;
	if (r->error != NULL && put_text(b, "rcpt-error", r->error, err) < 0)
		return -1;
	return 0;
}

static int
format_envelope(const struct envelope *env, struct buf *out, struct err *err)
{
	struct buf b;
	size_t i;
	int rc = -1;

	if (!qid_valid(env->id))
		return err_set(err, ERR_INTERNAL,
		    "envelope has no valid queue id");
	if (env->nrcpts == 0 || env->nrcpts > ENV_RCPT_MAX)
		return err_set(err, ERR_DATA, "envelope has %zu recipients "
		    "(1 to %d allowed)", env->nrcpts, ENV_RCPT_MAX);
	buf_init(&b, ENVELOPE_MAX);
	if (buf_printf(&b, "%s %d\n", ENV_MAGIC, ENVELOPE_VERSION) < 0 ||
	    put_line(&b, "id", env->id, err) < 0 ||
	    put_num(&b, "created", env->created, TIME_MAX, err) < 0 ||
	    put_num(&b, "size", (long long)env->size, SIZE_MAX_MSG, err) < 0 ||
	    put_addr(&b, "sender", "", env->sender ? env->sender : "",
	    err) < 0 ||
	    put_line(&b, "body", env->eightbit ? "8bitmime" : "7bit",
	    err) < 0 ||
	    put_line(&b, "smtputf8", env->smtputf8 ? "1" : "0", err) < 0)
		goto out;
	if (env->ret != RET_DEFAULT && put_line(&b, "ret",
	    env->ret == RET_HDRS ? "hdrs" : "full", err) < 0)
		goto out;
	if (env->envid != NULL && put_text(&b, "envid", env->envid, err) < 0)
		goto out;
	if (put_num(&b, "attempts", env->attempts, ATTEMPTS_MAX, err) < 0 ||
	    put_num(&b, "last-attempt", env->last_attempt, TIME_MAX, err) < 0 ||
	    put_num(&b, "next-attempt", env->next_attempt, TIME_MAX, err) < 0)
		goto out;
	if (env->last_error != NULL &&
	    put_text(&b, "last-error", env->last_error, err) < 0)
		goto out;
	if (env->held && put_line(&b, "held", "1", err) < 0)
		goto out;
	for (i = 0; i < env->nrcpts; i++)
		if (put_rcpt(&b, &env->rcpts[i], err) < 0)
			goto out;
	if (buf_puts(&b, "end\n") < 0) {
		err_set(err, ERR_DATA, "envelope larger than %d bytes",
		    ENVELOPE_MAX);
		goto out;
	}
	if (buf_append(out, b.data, b.len) < 0) {
		err_set(err, ERR_INTERNAL,
		    "envelope does not fit the output buffer");
		goto out;
	}
	rc = 0;
out:
	buf_free(&b);
	return rc;
}

int
envelope_format(const struct envelope *env, struct buf *out)
{
	return format_envelope(env, out, NULL);
}

/* ---- envelopes: reading ----------------------------------------------- */

enum key {
	K_ID, K_CREATED, K_SIZE, K_SENDER, K_BODY, K_SMTPUTF8, K_RET, K_ENVID,
	K_ATTEMPTS, K_LAST_ATTEMPT, K_NEXT_ATTEMPT, K_LAST_ERROR, K_HELD,
	K_RCPT, K_RCPT_ORCPT, K_RCPT_NOTIFY, K_RCPT_DSN, K_RCPT_ERROR,
	K_NKEYS
};

static const char *const key_names[K_NKEYS] = {
	[K_ID] = "id", [K_CREATED] = "created", [K_SIZE] = "size",
	[K_SENDER] = "sender", [K_BODY] = "body", [K_SMTPUTF8] = "smtputf8",
	[K_RET] = "ret", [K_ENVID] = "envid", [K_ATTEMPTS] = "attempts",
	[K_LAST_ATTEMPT] = "last-attempt", [K_NEXT_ATTEMPT] = "next-attempt",
	[K_LAST_ERROR] = "last-error", [K_HELD] = "held", [K_RCPT] = "rcpt",
	[K_RCPT_ORCPT] = "rcpt-orcpt", [K_RCPT_NOTIFY] = "rcpt-notify",
	[K_RCPT_DSN] = "rcpt-dsn", [K_RCPT_ERROR] = "rcpt-error",
};

struct parser {
	struct envelope *env;
	struct err *err;
	size_t lineno;
	unsigned seen;          /* header keys, bit per enum key */
	unsigned rseen;         /* rcpt-* keys of the current recipient */
};

static int PRINTF_LIKE(2, 3)
perr(struct parser *p, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set(p->err, ERR_DATA, "envelope line %zu: %s", p->lineno,
	    msg);
}

/* Strict unsigned decimal in [0, max]. */
static int
parse_num(struct parser *p, const char *key, const char *s, long long max,
    long long *out)
{
	long long v = 0;

	if (*s == '\0')
		return perr(p, "%s: empty number", key);
	for (const char *c = s; *c; c++) {
		if (!isdigit((unsigned char)*c))
			return perr(p, "%s: not a number", key);
		if (v > (max - (*c - '0')) / 10)
			return perr(p, "%s: number out of range", key);
		v = v * 10 + (*c - '0');
	}
	*out = v;
	return 0;
}

static int
parse_notify(struct parser *p, const char *val, unsigned *out)
{
	unsigned bits = 0;
	const char *s = val;

	while (*s) {
		size_t len = strcspn(s, ","), i;

		for (i = 0; i < NITEMS(notify_names); i++)
			if (strlen(notify_names[i].name) == len &&
			    memcmp(notify_names[i].name, s, len) == 0)
				break;
		if (i == NITEMS(notify_names) ||
		    (bits & notify_names[i].bit))
			return perr(p, "rcpt-notify: bad or repeated keyword");
		bits |= notify_names[i].bit;
		s += len;
		if (*s == ',' && *++s == '\0')
			return perr(p, "rcpt-notify: trailing comma");
	}
	if (bits == 0 || ((bits & NOTIFY_NEVER) && bits != NOTIFY_NEVER))
		return perr(p, "rcpt-notify: bad keyword list");
	*out = bits;
	return 0;
}

static int
parse_rcpt_line(struct parser *p, const char *val)
{
	const char *sp = strchr(val, ' ');
	size_t n = sp ? (size_t)(sp - val) : 0;
	int status = -1;

	for (int i = 0; sp != NULL && i <= RCPT_FAILED; i++)
		if (strlen(status_names[i]) == n &&
		    memcmp(status_names[i], val, n) == 0)
			status = i;
	if (status < 0)
		return perr(p, "rcpt: expected pending, sent or failed "
		    "and an address");
	if (sp[1] == '\0')
		return perr(p, "rcpt: empty address");
	if (p->env->nrcpts >= ENV_RCPT_MAX)
		return perr(p, "more than %d recipients", ENV_RCPT_MAX);
	envelope_add_rcpt(p->env, sp + 1, NULL, 0);
	p->env->rcpts[p->env->nrcpts - 1].status = (enum rcpt_status)status;
	p->rseen = 0;
	return 0;
}

static int
parse_rcpt_attr(struct parser *p, enum key k, const char *val)
{
	struct rcpt *r;

	if (p->env->nrcpts == 0)
		return perr(p, "%s before any rcpt", key_names[k]);
	if (p->rseen & (1u << k))
		return perr(p, "%s repeated for one recipient", key_names[k]);
	p->rseen |= 1u << k;
	r = &p->env->rcpts[p->env->nrcpts - 1];
	switch (k) {
	case K_RCPT_ORCPT:
		r->orcpt = xstrdup(val);
		return 0;
	case K_RCPT_NOTIFY:
		return parse_notify(p, val, &r->notify);
	case K_RCPT_DSN:
		if (!dsn_valid(val))
			return perr(p, "rcpt-dsn: not an x.y.z status code");
		r->dsn = xstrdup(val);
		return 0;
	case K_RCPT_ERROR:
		r->error = xstrdup(val);
		return 0;
	default:
		return perr(p, "internal: bad recipient key");
	}
}

static int
parse_header(struct parser *p, enum key k, const char *val)
{
	struct envelope *env = p->env;
	long long n;

	if (env->nrcpts > 0)
		return perr(p, "%s after the recipients", key_names[k]);
	if (p->seen & (1u << k))
		return perr(p, "%s repeated", key_names[k]);
	p->seen |= 1u << k;
	switch (k) {
	case K_ID:
		if (!qid_valid(val))
			return perr(p, "id: not a valid queue id");
		memcpy(env->id, val, QID_LEN + 1);
		return 0;
	case K_CREATED:
	case K_LAST_ATTEMPT:
	case K_NEXT_ATTEMPT:
		if (parse_num(p, key_names[k], val, TIME_MAX, &n) < 0)
			return -1;
		if (k == K_CREATED)
			env->created = (time_t)n;
		else if (k == K_LAST_ATTEMPT)
			env->last_attempt = (time_t)n;
		else
			env->next_attempt = (time_t)n;
		return 0;
	case K_SIZE:
		if (parse_num(p, "size", val, SIZE_MAX_MSG, &n) < 0)
			return -1;
		env->size = (unsigned long long)n;
		return 0;
	case K_ATTEMPTS:
		if (parse_num(p, "attempts", val, ATTEMPTS_MAX, &n) < 0)
			return -1;
		env->attempts = (int)n;
		return 0;
	case K_SENDER:
		env->sender = xstrdup(val);
		return 0;
	case K_BODY:
		if (strcmp(val, "7bit") != 0 && strcmp(val, "8bitmime") != 0)
			return perr(p, "body: expected 7bit or 8bitmime");
		env->eightbit = val[0] == '8';
		return 0;
	case K_SMTPUTF8:
		if (strcmp(val, "0") != 0 && strcmp(val, "1") != 0)
			return perr(p, "smtputf8: expected 0 or 1");
		env->smtputf8 = val[0] == '1';
		return 0;
	case K_RET:
		if (strcmp(val, "full") == 0)
			env->ret = RET_FULL;
		else if (strcmp(val, "hdrs") == 0)
			env->ret = RET_HDRS;
		else
			return perr(p, "ret: expected full or hdrs");
		return 0;
	case K_ENVID:
		env->envid = xstrdup(val);
		return 0;
	case K_LAST_ERROR:
		env->last_error = xstrdup(val);
		return 0;
	case K_HELD:
		/* Written only when set, so "1" is the one form that round-trips. */
		if (strcmp(val, "1") != 0)
			return perr(p, "held: expected 1");
		env->held = 1;
		return 0;
	default:
		return perr(p, "internal: bad header key");
	}
}

static int
parse_line(struct parser *p, char *line)
{
	char *colon = strchr(line, ':'), *val, name[40];
	int k;

	if (colon == NULL) {
		escape_str(line, name, sizeof(name));
		return perr(p, "expected \"key: value\", got \"%s\"", name);
	}
	*colon = '\0';
	val = colon[1] == ' ' ? colon + 2 : colon + 1;
	for (k = 0; k < K_NKEYS; k++)
		if (strcmp(line, key_names[k]) == 0)
			break;
	if (k == K_NKEYS) {
		escape_str(line, name, sizeof(name));
		return perr(p, "unknown key \"%s\"", name);
	}
	if (k == K_RCPT)
		return parse_rcpt_line(p, val);
	if (k > K_RCPT)
		return parse_rcpt_attr(p, (enum key)k, val);
	return parse_header(p, (enum key)k, val);
}

static int
parse_lines(struct parser *p, const char *text, size_t len)
{
	char version[32], line[ENV_LINE_MAX + 1];
	size_t pos = 0;
	int ended = 0;

	snprintf(version, sizeof(version), "%s %d", ENV_MAGIC,
	    ENVELOPE_VERSION);
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;

		p->lineno++;
		if (ended)
			return perr(p, "data after end");
		if (n > ENV_LINE_MAX)
			return perr(p, "line longer than %d bytes",
			    ENV_LINE_MAX);
		if (nl == NULL)
			return perr(p, "last line has no newline (truncated)");
		memcpy(line, text + pos, n);
		line[n] = '\0';
		pos += n + 1;
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
				return perr(p, "control character at "
				    "column %zu", i + 1);
		if (p->lineno == 1) {
			if (strncmp(line, ENV_MAGIC " ",
			    sizeof(ENV_MAGIC)) != 0)
				return perr(p, "not a relayq envelope");
			if (strcmp(line, version) != 0)
				return perr(p, "unsupported envelope version");
			continue;
		}
		if (strcmp(line, "end") == 0) {
			ended = 1;
			continue;
		}
		if (parse_line(p, line) < 0)
			return -1;
	}
	if (p->lineno == 0) {
		p->lineno = 1;
		return perr(p, "empty envelope");
	}
	if (!ended) {
		p->lineno++;
		return perr(p, "missing end line (truncated)");
	}
	return 0;
}

int
envelope_parse(const char *text, size_t len, struct envelope *env,
    struct err *err)
{
	static const enum key required[] = { K_ID, K_CREATED, K_SIZE, K_SENDER,
	    K_ATTEMPTS };
	struct parser p = { .env = env, .err = err };

	envelope_init(env);
	if (len > ENVELOPE_MAX) {
		envelope_free(env);
		return err_set(err, ERR_DATA, "envelope larger than %d bytes",
		    ENVELOPE_MAX);
	}
	if (parse_lines(&p, text, len) < 0)
		goto fail;
	for (size_t i = 0; i < NITEMS(required); i++)
		if (!(p.seen & (1u << required[i]))) {
			perr(&p, "required key %s missing",
			    key_names[required[i]]);
			goto fail;
		}
	if (env->nrcpts == 0) {
		perr(&p, "no rcpt lines");
		goto fail;
	}
	return 0;
fail:
	envelope_free(env);
	return -1;
}

/* ---- loading from disk ------------------------------------------------ */

/* Read and parse an open envelope; check it belongs to id. */
static int
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
	int fd, tries, missing;

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
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			int e2 = errno;

			close(fd);
			if (e2 == EWOULDBLOCK)
				return 0;
			errno = e2;
			return err_sys(err, ERR_TEMP, "lock %s", path);
		}
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
	missing = lstat(dpath, &pst) < 0;
	if (missing && errno != ENOENT) {
		err_sys(err, ERR_TEMP, "stat %s", dpath);
		drop_entry(e, fd);
		return -1;
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
	if (fsync_subdir(q, "env") < 0)
		rc = err_sys(err, ERR_TEMP, "fsync %s/env", q->dir);
	qpath(q, path, sizeof(path), "data/%s", e->id);
	/* The entry is gone; a leftover data file is cleanup's garbage. */
	if (unlink(path) < 0 && errno != ENOENT)
		log_warn("%s: remove %s: %s", e->id, path, strerror(errno));
	fsync_subdir(q, "data");
	queue_unlock(e);
	return rc;
}

int
queue_move_failed(struct queue *q, struct qentry *e, struct err *err)
{
	char env[QPATH_MAX], data[QPATH_MAX], fenv[QPATH_MAX], fdata[QPATH_MAX];
	int rc = 0;

	if (e->fd < 0 || !qid_valid(e->id))
		return err_set(err, ERR_INTERNAL, "move without a lock");
	qpath(q, env, sizeof(env), "env/%s", e->id);
	qpath(q, data, sizeof(data), "data/%s", e->id);
	qpath(q, fenv, sizeof(fenv), "failed/%s.env", e->id);
	qpath(q, fdata, sizeof(fdata), "failed/%s.data", e->id);
	if (rename(data, fdata) < 0) {
		err_sys(err, ERR_TEMP, "rename %s to %s", data, fdata);
		queue_unlock(e);
		return -1;
	}
	if (rename(env, fenv) < 0) {
		err_sys(err, ERR_TEMP, "rename %s to %s", env, fenv);
		if (rename(fdata, data) < 0)
			log_error("%s: cannot move %s back: %s", e->id, fdata,
			    strerror(errno));
		queue_unlock(e);
		return -1;
	}
	if (fsync_subdir(q, "failed") < 0 || fsync_subdir(q, "env") < 0 ||
	    fsync_subdir(q, "data") < 0)
		rc = err_sys(err, ERR_TEMP, "fsync queue directories in %s",
		    q->dir);
	queue_unlock(e);
	return rc;
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
	tx->committed = 0;
	tx->id[0] = '\0';
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
	close(tx->datafd);
	tx->datafd = -1;
	if (qpath(tx->q, path, sizeof(path), "tmp/%s.data", tx->id) == 0)
		unlink(path);
}

int
queue_tx_commit(struct queue_tx *tx, struct envelope *env, struct err *err)
{
	struct queue *q = tx->q;
	char tdata[QPATH_MAX], data[QPATH_MAX];
	char tenv[QPATH_MAX], envp[QPATH_MAX];
	struct stat st;
	struct buf b;
	int envfd = -1, data_in = 0, env_in = 0;

	if (tx->datafd < 0 || tx->committed)
		return err_set(err, ERR_INTERNAL,
		    "commit without a transaction");
	qpath(q, tdata, sizeof(tdata), "tmp/%s.data", tx->id);
	qpath(q, data, sizeof(data), "data/%s", tx->id);
	qpath(q, tenv, sizeof(tenv), "tmp/%s.env", tx->id);
	qpath(q, envp, sizeof(envp), "env/%s", tx->id);
	buf_init(&b, ENVELOPE_MAX);

	if (fstat(tx->datafd, &st) < 0) {
		err_sys(err, ERR_TEMP, "fstat %s", tdata);
		goto fail;
	}
	memcpy(env->id, tx->id, QID_LEN + 1);
	env->size = (unsigned long long)st.st_size;
	if (env->created == 0)
		env->created = time(NULL);
	if (format_envelope(env, &b, err) < 0)
		goto fail;
	if (fsync(tx->datafd) < 0) {
		err_sys(err, ERR_TEMP, "fsync %s", tdata);
		goto fail;
	}
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
	fsync_subdir(q, "tmp");         /* only makes the cleanup durable */
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

/* ---- scanning, peeking, cleanup --------------------------------------- */

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

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
static int
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

/*
 * Remove name in sub/ if it is older than cutoff and nobody holds its
 * lock; for data/, only while env/ID is absent (checked under the lock, as
 * commit keeps the data file locked until its envelope is in place).
 */
static int
cleanup_one(struct queue *q, const char *sub, const char *name, time_t cutoff)
{
	char path[QPATH_MAX], envp[QPATH_MAX];
	struct stat st, fst;
	int fd, removed = 0;

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
		} else
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
	char path[QPATH_MAX];
	struct dirent *de;
	int count = 0;
	DIR *d;

	for (size_t i = 0; i < NITEMS(dirs); i++) {
		int is_data = strcmp(dirs[i], "data") == 0, n = 0;

		qpath(q, path, sizeof(path), "%s", dirs[i]);
		if ((d = opendir(path)) == NULL)
			return err_sys(err, ERR_TEMP,
			    "open queue directory %s", path);
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			if (is_data && !qid_valid(de->d_name))
				continue;
			n += cleanup_one(q, dirs[i], de->d_name, cutoff);
		}
		closedir(d);
		if (n > 0)
			fsync_subdir(q, dirs[i]);
		count += n;
	}
	return count;
}

/* ---- mailq ------------------------------------------------------------ */

/*
 * Postfix postqueue -p layout: its header and 41-column recipient indent,
 * which scripts and eyes know; the longer id just widens the entry line.
 * After the id comes a status char: ' ', '*' being delivered, '!' on
 * hold (as Postfix marks its hold queue).
 */
#define LIST_HEADER    "-Queue ID-  --Size-- ----Arrival Time---- " \
	"-Sender/Recipient-------"
#define LIST_INDENT    41

static void
list_entry(FILE *out, const char *id, const struct envelope *env, int busy)
{
	char when[64] = "??", *esc;
	struct tm tm;
	time_t t = env->created;
	size_t escsize = 4 * ENV_LINE_MAX + 1;
	int pad;

	if (localtime_r(&t, &tm) != NULL)
		strftime(when, sizeof(when), "%a %b %e %H:%M:%S", &tm);
	esc = xmalloc(escsize);
	if (env->sender == NULL || env->sender[0] == '\0')
		str_copy(esc, "MAILER-DAEMON", escsize);
	else
		escape_str(env->sender, esc, escsize);
	fprintf(out, "%s%c %8llu %-20s %s\n", id,
	    env->held ? '!' : busy ? '*' : ' ', env->size, when, esc);
	if (env->last_error != NULL && env->last_error[0] != '\0') {
		escape_str(env->last_error, esc, escsize);
		/* Postfix right-aligns the reason in 78 columns. */
		pad = 76 - (int)strlen(esc);
		fprintf(out, "%*s(%s)\n", pad > 0 ? pad : 0, "", esc);
	}
	for (size_t i = 0; i < env->nrcpts; i++) {
		if (env->rcpts[i].status != RCPT_PENDING)
			continue;
		escape_str(env->rcpts[i].addr, esc, escsize);
		fprintf(out, "%*s%s\n", LIST_INDENT, "", esc);
	}
	free(esc);
}

int
queue_list(struct queue *q, FILE *out, struct err *err)
{
	struct strlist ids = { 0 };
	unsigned long long total = 0;
	unsigned long count = 0;
	struct envelope env;
	struct err e2;

	if (queue_scan(q, &ids, err) < 0)
		return -1;
	for (size_t i = 0; i < ids.n; i++) {
		int busy = 0, rc = peek_entry(q, ids.v[i], &env, &busy, &e2);

		if (rc < 0) {
			fprintf(stderr, "%s: warning: %s\n", log_progname(),
			    e2.msg);
			continue;
		}
		if (rc == 0)
			continue;       /* delivered meanwhile */
		if (count == 0)
			fprintf(out, "%s\n", LIST_HEADER);
		else
			fputc('\n', out);
		list_entry(out, ids.v[i], &env, busy);
		total += env.size;
		count++;
		envelope_free(&env);
	}
	strlist_free(&ids);
	if (count == 0)
		fprintf(out, "Mail queue is empty\n");
	else
		fprintf(out, "\n-- %llu Kbytes in %lu Request%s.\n",
		    (total + 1023) / 1024, count, count == 1 ? "" : "s");
	if (fflush(out) == EOF || ferror(out))
		return err_sys(err, ERR_IO, "write queue listing");
	return 0;
}

/* ---- operator tools ----------------------------------------------------- */

#define SHOW_HEADER_MAX (1024 * 1024)   /* header bytes --show prints */
#define SHOW_LINE_MAX   4096            /* longer lines are cut with "..." */

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
	int fd, e;

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
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		e = errno;
		close(fd);
		if (e == EWOULDBLOCK)
			return QOP_BUSY;
		errno = e;
		err_sys(err, ERR_TEMP, "lock %s", path);
		return QOP_ERROR;
	}
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

/*
 * Length of the UTF-8 sequence at p if it is valid and printable on a
 * terminal (no C1 controls, no surrogates, no overlong forms), else 0.
 */
static size_t
utf8_printable(const unsigned char *p, size_t n)
{
	unsigned cp;
	size_t len;

	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4;
		cp = p[0] & 0x07;
	} else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if (cp < 0xa0 || (len == 3 && cp < 0x800) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* Untrusted text for the operator's terminal: printable ASCII, tabs and
 * printable UTF-8 as they are, every other byte as \xNN. */
static void
put_safe(FILE *out, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;

	for (size_t i = 0; i < n;) {
		size_t u;

		if (p[i] == '\\') {
			fputs("\\\\", out);
			i++;
		} else if ((p[i] >= 0x20 && p[i] < 0x7f) || p[i] == '\t') {
			fputc(p[i++], out);
		} else if ((u = utf8_printable(p + i, n - i)) > 0) {
			fwrite(p + i, 1, u, out);
			i += u;
		} else
			fprintf(out, "\\x%02x", p[i++]);
	}
}

static void
show_field(FILE *out, const char *key, const char *val)
{
	fprintf(out, "%s: ", key);
	put_safe(out, val, strlen(val));
	fputc('\n', out);
}

/* "2024-01-02 03:04:05 +0000 (1704164645)", or never_text for 0. */
static void
show_time(FILE *out, const char *key, time_t t, const char *never_text)
{
	char when[64];
	struct tm tm;

	if (t == 0 && never_text != NULL) {
		fprintf(out, "%s: %s\n", key, never_text);
		return;
	}
	if (localtime_r(&t, &tm) == NULL ||
	    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %z", &tm) == 0)
		str_copy(when, "?", sizeof(when));
	fprintf(out, "%s: %s (%lld)\n", key, when, (long long)t);
}

static void
show_rcpt(FILE *out, const struct rcpt *r)
{
	char notify[64] = "";

	show_field(out, "recipient", r->addr);
	fprintf(out, "  status: %s\n", status_names[r->status]);
	if (r->dsn != NULL)
		fprintf(out, "  dsn: %s\n", r->dsn);
	if (r->error != NULL)
		show_field(out, "  error", r->error);
	if (r->orcpt != NULL)
		show_field(out, "  orcpt", r->orcpt);
	for (size_t i = 0; i < NITEMS(notify_names); i++)
		if (r->notify & notify_names[i].bit) {
			if (notify[0])
				str_append(notify, ",", sizeof(notify));
			str_append(notify, notify_names[i].name, sizeof(notify));
		}
	if (notify[0])
		fprintf(out, "  notify: %s\n", notify);
}

static void
show_envelope(FILE *out, const struct envelope *env, enum qwhere where,
    int busy)
{
	const char *state = where == QW_FAILED ?
	    "failed (in failed/; --requeue puts it back)" :
	    env->held ? "on hold" : busy ? "being delivered" :
	    env->attempts > 0 ? "deferred" : "queued, not tried yet";

	fprintf(out, "id: %s\nstate: %s\n", env->id, state);
	show_time(out, "arrival", env->created, NULL);
	fprintf(out, "sender: <");
	put_safe(out, env->sender, strlen(env->sender));
	fprintf(out, ">\nsize: %llu\nbody: %s\nsmtputf8: %s\n", env->size,
	    env->eightbit ? "8bitmime" : "7bit", env->smtputf8 ? "yes" : "no");
	if (env->ret != RET_DEFAULT)
		fprintf(out, "ret: %s\n", env->ret == RET_HDRS ? "hdrs" : "full");
	if (env->envid != NULL)
		show_field(out, "envid", env->envid);
	fprintf(out, "attempts: %d\n", env->attempts);
	show_time(out, "last attempt", env->last_attempt, "never");
	if (where == QW_QUEUE)
		show_time(out, "next attempt", env->next_attempt, "now");
	fprintf(out, "held: %s\n", env->held ? "yes" : "no");
	if (env->last_error != NULL)
		show_field(out, "last error", env->last_error);
	for (size_t i = 0; i < env->nrcpts; i++)
		show_rcpt(out, &env->rcpts[i]);
}

/* The message header from a wire-form data file: CRLF and dot-stuffing
 * undone, stopped at the empty line or after SHOW_HEADER_MAX bytes. */
static int
show_header(FILE *out, int fd, struct err *err)
{
	FILE *in = fdopen(fd, "r");
	char *line = xmalloc(SHOW_LINE_MAX);
	size_t n = 0, total = 0;
	int c, cut = 0, ended = 0;

	if (in == NULL) {
		close(fd);
		free(line);
		return err_sys(err, ERR_TEMP, "read message file");
	}
	fputs("\n", out);
	while (!ended && (c = getc(in)) != EOF) {
		if (++total > SHOW_HEADER_MAX) {
			fputs("(header longer than 1 MiB; the rest is not shown)\n",
			    out);
			break;
		}
		if (c != '\n') {
			if (n < SHOW_LINE_MAX)
				line[n++] = (char)c;
			else
				cut = 1;
			continue;
		}
		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (n == 0)
			ended = 1;
		else {
			size_t skip = line[0] == '.';

			put_safe(out, line + skip, n - skip);
			fputs(cut ? "...\n" : "\n", out);
		}
		n = 0;
		cut = 0;
	}
	if (n > 0) {
		put_safe(out, line, n);
		fputc('\n', out);
	}
	c = ferror(in);
	fclose(in);
	free(line);
	if (c)
		return err_sys(err, ERR_TEMP, "read message file");
	return 0;
}

enum qop
queue_show(struct queue *q, const char *id, FILE *out, struct err *err)
{
	char path[QPATH_MAX];
	struct envelope env;
	enum qwhere where;
	enum qop r = QOP_DONE;
	int busy, fd;

	if (queue_find(q, id, &env, &where, &busy, err) < 0)
		return QOP_ERROR;
	if (where == QW_NONE)
		return QOP_MISSING;
	show_envelope(out, &env, where, busy);
	if (where == QW_QUEUE)
		qpath(q, path, sizeof(path), "data/%s", id);
	else
		qpath(q, path, sizeof(path), "failed/%s.data", id);
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		err_sys(err, ERR_TEMP, "open %s", path);
		r = QOP_ERROR;
	} else if (show_header(out, fd, err) < 0)
		r = QOP_ERROR;
	envelope_free(&env);
	if (fflush(out) == EOF || ferror(out)) {
		err_sys(err, ERR_IO, "write");
		return QOP_ERROR;
	}
	return r;
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
