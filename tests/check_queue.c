/*
 * Unit tests for queue.c: ids, the envelope format, the commit protocol,
 * locks across processes, updates, removal, failed/ and corrupt/, cleanup
 * and the mailq listing. Every test gets a fresh spool under /tmp.
 */
#include "autoconf.h"

#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue.h"
#include "queue_int.h"              /* link_or_copy */

#undef NITEMS
#define NITEMS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static char spool[64];
static struct queue q;

static void
setup(void)
{
	struct err err;

	str_copy(spool, "/tmp/check_queue.XXXXXX", sizeof(spool));
	ck_assert_ptr_nonnull(mkdtemp(spool));
	ck_assert_int_eq(queue_open(&q, spool, 1, &err), 0);
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static void
teardown(void)
{
	queue_close(&q);
	nftw(spool, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- helpers ---------------------------------------------------------- */

static void
vpath(char *out, size_t size, const char *fmt, va_list ap)
{
	char rel[256];

	vsnprintf(rel, sizeof(rel), fmt, ap);
	ck_assert_int_eq(str_fmt(out, size, "%s/%s", spool, rel), 0);
}

/* out = spool/fmt... */
static void PRINTF_LIKE(3, 4)
path_of(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vpath(out, size, fmt, ap);
	va_end(ap);
}

static int PRINTF_LIKE(1, 2)
exists(const char *fmt, ...)
{
	char path[512];
	struct stat st;
	va_list ap;

	va_start(ap, fmt);
	vpath(path, sizeof(path), fmt, ap);
	va_end(ap);
	return lstat(path, &st) == 0;
}

/* Number of entries in a spool subdirectory. */
static int
count_dir(const char *sub)
{
	char path[512];
	struct dirent *de;
	int n = 0;
	DIR *d;

	path_of(path, sizeof(path), "%s", sub);
	ck_assert_ptr_nonnull(d = opendir(path));
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static char * PRINTF_LIKE(2, 3)
slurp(size_t *lenp, const char *fmt, ...)
{
	char path[512];
	struct buf b;
	va_list ap;
	int fd;

	va_start(ap, fmt);
	vpath(path, sizeof(path), fmt, ap);
	va_end(ap);
	ck_assert_int_ge(fd = open(path, O_RDONLY), 0);
	buf_init(&b, 0);
	ck_assert_int_eq(read_file_capped(fd, &b, 4 * ENVELOPE_MAX), 0);
	close(fd);
	if (lenp)
		*lenp = b.len;
	if (b.data == NULL)
		return xstrdup("");
	return b.data;
}

static void PRINTF_LIKE(3, 4)
spew(const char *text, size_t len, const char *fmt, ...)
{
	char path[512];
	va_list ap;
	int fd;

	va_start(ap, fmt);
	vpath(path, sizeof(path), fmt, ap);
	va_end(ap);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write_all(fd, text, len), 0);
	close(fd);
}

static void PRINTF_LIKE(2, 3)
set_age(time_t age, const char *fmt, ...)
{
	char path[512];
	struct timespec ts[2];
	va_list ap;

	va_start(ap, fmt);
	vpath(path, sizeof(path), fmt, ap);
	va_end(ap);
	ts[0].tv_sec = ts[1].tv_sec = time(NULL) - age;
	ts[0].tv_nsec = ts[1].tv_nsec = 0;
	ck_assert_int_eq(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0);
}

static void
simple_env(struct envelope *env, const char *sender)
{
	envelope_init(env);
	env->sender = xstrdup(sender);
	envelope_add_rcpt(env, "bob@example.com", NULL, 0);
}

/* Queue body with env; the id lands in id. */
static void
enqueue(const char *body, size_t len, struct envelope *env,
    char id[QID_LEN + 1])
{
	struct queue_tx tx;
	struct err err;

	ck_assert_int_eq(queue_tx_begin(&q, &tx, &err), 0);
	ck_assert_int_eq(write_all(tx.datafd, body, len), 0);
	ck_assert_msg(queue_tx_commit(&tx, env, &err) == 0, "commit: %s",
	    err.msg);
	ck_assert_int_eq(tx.committed, 1);
	memcpy(id, tx.id, QID_LEN + 1);
	queue_tx_abort(&tx);            /* a no-op after commit */
}

static void
enqueue_simple(char id[QID_LEN + 1])
{
	struct envelope env;

	simple_env(&env, "alice@example.com");
	enqueue("Subject: x\r\n\r\nhi\r\n", 18, &env, id);
	envelope_free(&env);
}

/* queue_lock from a separate process; returns its result. */
static int
lock_in_child(const char *id)
{
	struct qentry e;
	struct err err;
	pid_t pid;
	int status;

	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int rc = queue_lock(&q, id, &e, &err);

		queue_unlock(&e);
		envelope_free(&e.env);
		_exit(rc + 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	return WEXITSTATUS(status) - 1;
}

/* ---- ids -------------------------------------------------------------- */

static const struct { const char *id; int ok; } ids[] = {
	{ "0A1B2C3D4E5F60718", 1 }, { "00000000000000000", 1 },
	{ "FFFFFFFFFFFFFFFFF", 1 }, { "5FC30D7E0A3C19F2E", 1 },
	{ "", 0 }, { "0A1B2C3D4E5F6071", 0 }, { "0A1B2C3D4E5F607181", 0 },
	{ "0a1b2c3d4e5f60718", 0 }, { "0A1B2C3D4E5F6071g", 0 },
	{ "0A1B2C3D4E5F6071G", 0 }, { "../x", 0 }, { "a/b", 0 }, { "..", 0 },
	{ ".", 0 }, { "0A1B2C3D/E5F60718", 0 }, { "0A1B2C3D4E5F6071 ", 0 },
	{ " 0A1B2C3D4E5F6071", 0 }, { "../0A1B2C3D4E5F60", 0 },
	{ "0A1B2C3D4E5F60718\n", 0 }, { "0A1B2C3D4E5F60718.env", 0 },
};

START_TEST(test_qid_valid)
{
	ck_assert_int_eq(qid_valid(ids[_i].id), ids[_i].ok);
}
END_TEST

START_TEST(test_qid_generated)
{
	struct queue_tx a, b;
	struct err err;
	unsigned long secs;
	char hex[9];
	time_t now = time(NULL);

	ck_assert_int_eq(queue_tx_begin(&q, &a, &err), 0);
	ck_assert_int_eq(queue_tx_begin(&q, &b, &err), 0);
	ck_assert(qid_valid(a.id));
	ck_assert(qid_valid(b.id));
	ck_assert_str_ne(a.id, b.id);
	/* The first 8 hex digits are the time: ids sort by arrival. */
	memcpy(hex, a.id, 8);
	hex[8] = '\0';
	secs = strtoul(hex, NULL, 16);
	ck_assert_uint_ge(secs, (unsigned long)now - 1);
	ck_assert_uint_le(secs, (unsigned long)now + 2);
	ck_assert_int_le(strncmp(a.id, b.id, 13), 0);
	ck_assert(exists("tmp/%s.data", a.id));
	queue_tx_abort(&a);
	queue_tx_abort(&b);
	ck_assert_int_eq(count_dir("tmp"), 0);
}
END_TEST

/* ---- queue_open ------------------------------------------------------- */

START_TEST(test_open_missing)
{
	struct queue q2;
	struct err err;
	char path[512];

	path_of(path, sizeof(path), "%s", "nope");
	ck_assert_int_eq(queue_open(&q2, path, 0, &err), -1);
	ck_assert_int_eq(err.cls, ERR_TEMP);
	ck_assert_str_eq(strstr(err.msg, "queue directory "), err.msg);
	ck_assert_ptr_nonnull(strstr(err.msg,
	    "/nope: No such file or directory"));

	path_of(path, sizeof(path), "%s", "env");
	ck_assert_int_eq(rmdir(path), 0);
	ck_assert_int_eq(queue_open(&q2, spool, 0, &err), -1);
	ck_assert_int_eq(err.cls, ERR_TEMP);
	ck_assert_ptr_nonnull(strstr(err.msg,
	    "/env: No such file or directory"));

	/* create repairs it and accepts what exists */
	ck_assert_int_eq(queue_open(&q2, spool, 1, &err), 0);
	queue_close(&q2);
	ck_assert_int_eq(queue_open(&q2, spool, 0, &err), 0);
	queue_close(&q2);
}
END_TEST

START_TEST(test_modes)
{
	static const char *const subs[] = {
		"tmp", "data", "env", "failed", "corrupt",
	};
	struct queue q2;
	struct envelope env;
	struct err err;
	struct stat st;
	char path[512], id[QID_LEN + 1];
	mode_t old = umask(077);

	/* a strict umask must not lock the relayq group out */
	path_of(path, sizeof(path), "%s", "q2");
	ck_assert_int_eq(queue_open(&q2, path, 1, &err), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0770);
	for (size_t i = 0; i < 5; i++) {
		char sub[600];

		snprintf(sub, sizeof(sub), "%s/%s", path, subs[i]);
		ck_assert_int_eq(stat(sub, &st), 0);
		ck_assert_int_eq(st.st_mode & 07777, 0770);
	}
	queue_close(&q2);

	simple_env(&env, "alice@example.com");
	enqueue("x\r\n", 3, &env, id);
	envelope_free(&env);
	umask(old);
	path_of(path, sizeof(path), "data/%s", id);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(st.st_mode & 07777, 0640);
	path_of(path, sizeof(path), "env/%s", id);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0640);
	ck_assert_int_eq(count_dir("tmp"), 0);
}
END_TEST

/* ---- round trip --------------------------------------------------------- */

START_TEST(test_roundtrip)
{
	static const char body[] =
	    "From: a@b\r\nSubject: t\r\n\r\n\xc3\xa9t\xc3\xa9\r\n";
	struct envelope env, got, again;
	struct strlist list = { 0 };
	struct err err;
	struct buf f1, f2;
	char id[QID_LEN + 1], *text, *data;
	size_t len;

	envelope_init(&env);
	env.sender = xstrdup("");
	env.eightbit = 1;
	env.smtputf8 = 1;
	env.ret = RET_HDRS;
	env.envid = xstrdup("env\r\nid");
	env.attempts = 2;
	env.last_attempt = 1700000000;
	env.next_attempt = 1700000300;
	env.last_error = xstrdup("451 4.3.0 try\r\n451 later\x01");
	envelope_add_rcpt(&env, "bob@example.com", "rfc822;Bob@Example.COM\n",
	    NOTIFY_SUCCESS | NOTIFY_FAILURE);
	env.rcpts[0].dsn = xstrdup("4.4.1");
	env.rcpts[0].error = xstrdup("550-5.1.1 no\r\n550 5.1.1 such user");
	envelope_add_rcpt(&env, "carol@example.com", NULL, NOTIFY_NEVER);
	env.rcpts[1].status = RCPT_SENT;
	envelope_add_rcpt(&env, "d\xc3\xa9@example.com", NULL, NOTIFY_DELAY);
	env.rcpts[2].status = RCPT_FAILED;
	env.rcpts[2].dsn = xstrdup("5.7.1");
	enqueue(body, sizeof(body) - 1, &env, id);

	ck_assert(qid_valid(id));
	ck_assert_str_eq(env.id, id);
	ck_assert_uint_eq(env.size, sizeof(body) - 1);
	ck_assert_int_ne(env.created, 0);
	ck_assert_int_eq(queue_scan(&q, &list, &err), 0);
	ck_assert_uint_eq(list.n, 1);
	ck_assert_str_eq(list.v[0], id);
	strlist_free(&list);

	data = slurp(&len, "data/%s", id);
	ck_assert_uint_eq(len, sizeof(body) - 1);
	ck_assert_mem_eq(data, body, len);
	free(data);
	text = slurp(&len, "env/%s", id);
	ck_assert_ptr_null(memchr(text, '\r', len));
	ck_assert_ptr_null(strstr(text, "\x01"));
	ck_assert_ptr_nonnull(strstr(text, "\nsender: \n"));
	ck_assert_ptr_nonnull(strstr(text,
	    "\nrcpt: sent carol@example.com\nrcpt-notify: never\n"));
	ck_assert_str_eq(text + len - 4, "end\n");
	free(text);

	ck_assert_msg(queue_peek(&q, id, &got, &err) == 0, "%s", err.msg);
	ck_assert_str_eq(got.id, id);
	ck_assert_int_eq(got.created, env.created);
	ck_assert_uint_eq(got.size, sizeof(body) - 1);
	ck_assert_str_eq(got.sender, "");
	ck_assert_int_eq(got.eightbit, 1);
	ck_assert_int_eq(got.smtputf8, 1);
	ck_assert_int_eq(got.ret, RET_HDRS);
	ck_assert_str_eq(got.envid, "env id");
	ck_assert_int_eq(got.attempts, 2);
	ck_assert_int_eq(got.last_attempt, 1700000000);
	ck_assert_int_eq(got.next_attempt, 1700000300);
	ck_assert_str_eq(got.last_error, "451 4.3.0 try 451 later?");
	ck_assert_uint_eq(got.nrcpts, 3);
	ck_assert_str_eq(got.rcpts[0].addr, "bob@example.com");
	ck_assert_str_eq(got.rcpts[0].orcpt, "rfc822;Bob@Example.COM ");
	ck_assert_int_eq(got.rcpts[0].status, RCPT_PENDING);
	ck_assert_uint_eq(got.rcpts[0].notify, NOTIFY_SUCCESS | NOTIFY_FAILURE);
	ck_assert_str_eq(got.rcpts[0].dsn, "4.4.1");
	ck_assert_str_eq(got.rcpts[0].error,
	    "550-5.1.1 no 550 5.1.1 such user");
	ck_assert_str_eq(got.rcpts[1].addr, "carol@example.com");
	ck_assert_int_eq(got.rcpts[1].status, RCPT_SENT);
	ck_assert_uint_eq(got.rcpts[1].notify, NOTIFY_NEVER);
	ck_assert_ptr_null(got.rcpts[1].orcpt);
	ck_assert_ptr_null(got.rcpts[1].dsn);
	ck_assert_ptr_null(got.rcpts[1].error);
	ck_assert_str_eq(got.rcpts[2].addr, "d\xc3\xa9@example.com");
	ck_assert_int_eq(got.rcpts[2].status, RCPT_FAILED);
	ck_assert_uint_eq(got.rcpts[2].notify, NOTIFY_DELAY);
	ck_assert_str_eq(got.rcpts[2].dsn, "5.7.1");

	/* Sanitising is stable: rewriting a loaded envelope changes nothing. */
	buf_init(&f1, 0);
	buf_init(&f2, 0);
	ck_assert_int_eq(envelope_format(&got, &f1), 0);
	ck_assert_int_eq(envelope_parse(f1.data, f1.len, &again, &err), 0);
	ck_assert_int_eq(envelope_format(&again, &f2), 0);
	ck_assert_str_eq(f1.data, f2.data);
	text = slurp(&len, "env/%s", id);
	ck_assert_str_eq(text, f1.data);
	free(text);
	buf_free(&f1);
	buf_free(&f2);
	envelope_free(&again);
	envelope_free(&got);
	envelope_free(&env);
}
END_TEST

START_TEST(test_long_error_truncated)
{
	struct envelope env, got;
	struct err err;
	char big[9000], id[QID_LEN + 1];

	/* A huge server reply must not make the envelope unwritable. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[999] = '\xc3';              /* a UTF-8 pair cut at the limit */
	big[1000] = '\xa9';
	simple_env(&env, "a@b");
	env.last_error = xstrdup(big);
	enqueue("x", 1, &env, id);
	ck_assert_int_eq(queue_peek(&q, id, &got, &err), 0);
	ck_assert_uint_eq(strlen(got.last_error), 999);
	ck_assert_int_eq(got.last_error[998], 'x');
	envelope_free(&got);
	envelope_free(&env);
}
END_TEST

/* ---- commit failures leave nothing ------------------------------------ */

static void
assert_spool_empty(void)
{
	ck_assert_int_eq(count_dir("tmp"), 0);
	ck_assert_int_eq(count_dir("data"), 0);
	ck_assert_int_eq(count_dir("env"), 0);
}

START_TEST(test_tx_abort)
{
	struct queue_tx tx;
	struct err err;

	ck_assert_int_eq(queue_tx_begin(&q, &tx, &err), 0);
	ck_assert_int_ge(tx.datafd, 0);
	ck_assert_int_eq(write_all(tx.datafd, "hello\r\n", 7), 0);
	ck_assert_int_eq(count_dir("tmp"), 1);
	queue_tx_abort(&tx);
	ck_assert_int_eq(tx.datafd, -1);
	queue_tx_abort(&tx);            /* twice is harmless */
	assert_spool_empty();
}
END_TEST

START_TEST(test_commit_bad_envelope)
{
	struct queue_tx tx;
	struct envelope env;
	struct err err;

	/* an address with a line break would forge envelope lines */
	simple_env(&env, "a@b\nrcpt: pending evil@x");
	ck_assert_int_eq(queue_tx_begin(&q, &tx, &err), 0);
	ck_assert_int_eq(write_all(tx.datafd, "x\r\n", 3), 0);
	ck_assert_int_eq(queue_tx_commit(&tx, &env, &err), -1);
	ck_assert_int_eq(err.cls, ERR_DATA);
	ck_assert_ptr_nonnull(strstr(err.msg, "sender"));
	ck_assert_int_eq(tx.committed, 0);
	queue_tx_abort(&tx);
	assert_spool_empty();
	envelope_free(&env);

	/* no recipients */
	envelope_init(&env);
	env.sender = xstrdup("a@b");
	ck_assert_int_eq(queue_tx_begin(&q, &tx, &err), 0);
	ck_assert_int_eq(queue_tx_commit(&tx, &env, &err), -1);
	ck_assert_int_eq(err.cls, ERR_DATA);
	assert_spool_empty();
	envelope_free(&env);
}
END_TEST

START_TEST(test_commit_disk_full)
{
	struct queue_tx tx;
	struct envelope env;
	struct err err;
	struct rlimit old, lim;
	char pad[200];

	/* The file size limit makes the envelope write fail like ENOSPC. */
	memset(pad, 'p', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	simple_env(&env, "alice@example.com");
	env.last_error = xstrdup(pad);
	ck_assert_int_eq(queue_tx_begin(&q, &tx, &err), 0);
	ck_assert_int_eq(write_all(tx.datafd, "x\r\n", 3), 0);
	signal(SIGXFSZ, SIG_IGN);
	ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 100;
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	ck_assert_int_eq(queue_tx_commit(&tx, &env, &err), -1);
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	ck_assert_int_eq(err.cls, ERR_TEMP);
	ck_assert_ptr_nonnull(strstr(err.msg, "File too large"));
	ck_assert_int_eq(tx.committed, 0);
	queue_tx_abort(&tx);
	assert_spool_empty();
	envelope_free(&env);
}
END_TEST

START_TEST(test_commit_env_dir_unwritable)
{
	struct queue_tx tx;
	struct envelope env;
	struct err err;
	char path[512];

	if (geteuid() == 0)
		return;                 /* root ignores directory modes */
	path_of(path, sizeof(path), "%s", "env");
	ck_assert_int_eq(chmod(path, 0550), 0);
	simple_env(&env, "alice@example.com");
	ck_assert_int_eq(queue_tx_begin(&q, &tx, &err), 0);
	ck_assert_int_eq(write_all(tx.datafd, "x\r\n", 3), 0);
	ck_assert_int_eq(queue_tx_commit(&tx, &env, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "Permission denied"));
	ck_assert_int_eq(chmod(path, 0770), 0);
	assert_spool_empty();
	envelope_free(&env);
}
END_TEST

/* ---- strict parsing ---------------------------------------------------- */

#define HEAD "relayq-envelope 1\nid: 0A1B2C3D4E5F60718\ncreated: 1606618270\n" \
	"size: 10\nsender: a@b\nbody: 7bit\nsmtputf8: 0\nattempts: 0\n" \
	"last-attempt: 0\nnext-attempt: 0\n"
#define RCPT "rcpt: pending c@d\n"
#define GOOD HEAD RCPT "end\n"

static char long_line[ENVELOPE_MAX + 2];

static const struct { const char *name, *text, *expect; } bad[] = {
	{ "empty", "", "line 1: empty" },
	{ "no end", HEAD RCPT, "line 12: missing end" },
	{ "end without newline",
	  HEAD RCPT "end",
	  "line 12: last line has no newline" },
	{ "truncated mid-line", HEAD "rcpt: pend", "line 11: last line" },
	{ "garbage after end", GOOD "x\n", "line 13: data after end" },
	{ "blank line after end", GOOD "\n", "line 13: data after end" },
	{ "second end", GOOD "end\n", "line 13: data after end" },
	{ "unknown key",
	  HEAD "color: blue\n" RCPT "end\n",
	  "line 11: unknown key \"color\"" },
	{ "key case", HEAD "Rcpt: pending c@d\nend\n", "line 11: unknown key" },
	{ "no colon", HEAD "rcpt pending c@d\nend\n", "line 11: expected" },
	{ "blank line", HEAD "\n" RCPT "end\n", "line 11: expected" },
	{ "duplicate key",
	  HEAD "size: 10\n" RCPT "end\n",
	  "line 11: size repeated" },
	{ "duplicate sender",
	  HEAD "sender: x@y\n" RCPT "end\n",
	  "line 11: sender repeated" },
	{ "bad number",
	  "relayq-envelope 1\nid: 0A1B2C3D4E5F60718\nsize: 1x\n",
	  "line 3: size: not a number" },
	{ "negative",
	  "relayq-envelope 1\ncreated: -5\n",
	  "line 2: created: not a number" },
	{ "plus sign",
	  "relayq-envelope 1\nattempts: +1\n",
	  "line 2: attempts: not a number" },
	{ "empty number",
	  "relayq-envelope 1\nattempts:\n",
	  "line 2: attempts: empty" },
	{ "huge number",
	  "relayq-envelope 1\nsize: 99999999999999999999999\n",
	  "line 2: size: number out of range" },
	{ "attempts bound",
	  "relayq-envelope 1\nattempts: 1000001\n",
	  "out of range" },
	{ "missing rcpt", HEAD "end\n", "no rcpt" },
	{ "missing id",
	  "relayq-envelope 1\ncreated: 1\nsize: 1\nsender: \nattempts: 0\n"
	  RCPT "end\n",
	  "required key id missing" },
	{ "missing sender",
	  "relayq-envelope 1\nid: 0A1B2C3D4E5F60718\ncreated: 1\nsize: 1\n"
	  "attempts: 0\n" RCPT "end\n",
	  "required key sender missing" },
	{ "wrong version",
	  "relayq-envelope 2\n",
	  "line 1: unsupported envelope version" },
	{ "version suffix", "relayq-envelope 1 \n", "line 1: unsupported" },
	{ "not an envelope", "From: x\n", "line 1: not a relayq envelope" },
	{ "bad id",
	  "relayq-envelope 1\nid: ../../etc/passwd\n",
	  "line 2: id: not a valid queue id" },
	{ "lower-case id",
	  "relayq-envelope 1\nid: 0a1b2c3d4e5f60718\n",
	  "line 2: id" },
	{ "bad body", "relayq-envelope 1\nbody: 8bit\n", "line 2: body" },
	{ "bad smtputf8",
	  "relayq-envelope 1\nsmtputf8: yes\n",
	  "line 2: smtputf8" },
	{ "bad ret", "relayq-envelope 1\nret: all\n", "line 2: ret" },
	{ "bad status",
	  HEAD "rcpt: queued c@d\nend\n",
	  "line 11: rcpt: expected" },
	{ "empty rcpt",
	  HEAD "rcpt: pending \nend\n",
	  "line 11: rcpt: empty address" },
	{ "rcpt no address",
	  HEAD "rcpt: pending\nend\n",
	  "line 11: rcpt: expected" },
	{ "rcpt attr first",
	  HEAD "rcpt-dsn: 4.4.1\n" RCPT "end\n",
	  "line 11: rcpt-dsn before any rcpt" },
	{ "rcpt attr twice",
	  HEAD RCPT "rcpt-error: a\nrcpt-error: b\nend\n",
	  "line 13: rcpt-error repeated" },
	{ "header after rcpt",
	  HEAD RCPT "envid: x\nend\n",
	  "line 12: envid after the recipients" },
	{ "notify never+",
	  HEAD RCPT "rcpt-notify: never,delay\nend\n",
	  "line 12: rcpt-notify" },
	{ "notify unknown",
	  HEAD RCPT "rcpt-notify: sometimes\nend\n",
	  "line 12: rcpt-notify" },
	{ "notify repeated",
	  HEAD RCPT "rcpt-notify: delay,delay\nend\n",
	  "line 12: rcpt-notify" },
	{ "notify comma",
	  HEAD RCPT "rcpt-notify: delay,\nend\n",
	  "line 12: rcpt-notify" },
	{ "notify empty",
	  HEAD RCPT "rcpt-notify: \nend\n",
	  "line 12: rcpt-notify" },
	{ "bad dsn", HEAD RCPT "rcpt-dsn: 4.4\nend\n", "line 12: rcpt-dsn" },
	{ "dsn class",
	  HEAD RCPT "rcpt-dsn: 3.0.0\nend\n",
	  "line 12: rcpt-dsn" },
	{ "carriage return",
	  "relayq-envelope 1\r\n",
	  "line 1: control character" },
	{ "control char",
	  HEAD "last-error: a\x1b[31m\n" RCPT "end\n",
	  "line 11: control character at column 14" },
	{ "NUL byte",
	  HEAD "last-error: a\0b\n" RCPT "end\n",
	  "line 11: control character" },
	{ "held 0", HEAD "held: 0\n" RCPT "end\n", "line 11: held: expected 1" },
	{ "held yes", HEAD "held: yes\n" RCPT "end\n", "line 11: held: expected 1" },
	{ "held empty", HEAD "held:\n" RCPT "end\n", "line 11: held: expected 1" },
	{ "held twice",
	  HEAD "held: 1\nheld: 1\n" RCPT "end\n",
	  "line 12: held repeated" },
	{ "held after rcpt",
	  HEAD RCPT "held: 1\nend\n",
	  "line 12: held after the recipients" },
	{ "bounce bad id",
	  HEAD "bounce: ../../etc/passwd\n" RCPT "end\n",
	  "line 11: bounce: not a valid queue id" },
	{ "bounce lower-case",
	  HEAD "bounce: 0a1b2c3d4e5f60719\n" RCPT "end\n",
	  "line 11: bounce: not a valid queue id" },
	{ "bounce empty", HEAD "bounce:\n" RCPT "end\n",
	  "line 11: bounce: not a valid queue id" },
	{ "bounce trailing space",
	  HEAD "bounce: 0A1B2C3D4E5F60719 \n" RCPT "end\n",
	  "line 11: bounce: not a valid queue id" },
	{ "bounce twice",
	  HEAD "bounce: 0A1B2C3D4E5F60719\nbounce: 0A1B2C3D4E5F60719\n"
	  RCPT "end\n",
	  "line 12: bounce repeated" },
	{ "bounce after rcpt",
	  HEAD RCPT "bounce: 0A1B2C3D4E5F60719\nend\n",
	  "line 12: bounce after the recipients" },
	{ "bounce case", HEAD "Bounce: 0A1B2C3D4E5F60719\n" RCPT "end\n",
	  "line 11: unknown key \"Bounce\"" },
	{ "long line", NULL, "line 11: line longer than 4096" },
	{ "too large", NULL, "larger than 1048576" },
};

START_TEST(test_parse_bad)
{
	struct envelope env;
	struct err err = { 0 };
	const char *text = bad[_i].text;
	size_t len;

	if (strcmp(bad[_i].name, "NUL byte") == 0)
		len = sizeof(HEAD "last-error: a\0b\n" RCPT "end\n") - 1;
	else if (text == NULL && strcmp(bad[_i].name, "long line") == 0) {
		size_t h = strlen(HEAD "last-error: ");

		memcpy(long_line, HEAD "last-error: ", h);
		memset(long_line + h, 'x', 4100);
		memcpy(long_line + h + 4100, "\n" RCPT "end\n",
		    sizeof("\n" RCPT "end\n"));
		text = long_line;
		len = strlen(text);
	} else if (text == NULL) {
		memset(long_line, 'x', sizeof(long_line));
		text = long_line;
		len = ENVELOPE_MAX + 1;
	} else
		len = strlen(text);
	ck_assert_int_eq(envelope_parse(text, len, &env, &err), -1);
	ck_assert_int_eq(err.cls, ERR_DATA);
	ck_assert_msg(strstr(err.msg, bad[_i].expect) != NULL,
	    "%s: got \"%s\", want \"%s\"", bad[_i].name, err.msg,
	    bad[_i].expect);
	/* failure leaves an empty envelope that is safe to free */
	ck_assert_uint_eq(env.nrcpts, 0);
	ck_assert_ptr_null(env.sender);
	envelope_free(&env);
}
END_TEST

static const struct { const char *text, *sender; } good[] = {
	{ GOOD, "a@b" },
	{ "relayq-envelope 1\nid: 0A1B2C3D4E5F60718\ncreated: 1\nsize: 0\n"
	  "sender:\nattempts: 0\nrcpt: sent x\nend\n", "" },
	{ "relayq-envelope 1\nid: 0A1B2C3D4E5F60718\ncreated: 1\nsize: 0\n"
	  "sender: \nattempts: 7\nlast-error:\nrcpt: failed x\nrcpt-error: \n"
	  "rcpt-notify: failure,success,delay\nrcpt: pending \"a b\"@c\nend\n",
	  "" },
};

START_TEST(test_parse_good)
{
	struct envelope env;
	struct err err;

	ck_assert_msg(envelope_parse(good[_i].text, strlen(good[_i].text), &env,
	    &err) == 0, "%s", err.msg);
	ck_assert_str_eq(env.sender, good[_i].sender);
	ck_assert_str_eq(env.id, "0A1B2C3D4E5F60718");
	ck_assert_uint_ge(env.nrcpts, 1);
	envelope_free(&env);
}
END_TEST

/* Envelopes as queue.c writes them: parse and format give the same bytes. */
static const struct {
	const char *text;
	int held;
	const char *bounce;
} canonical[] = {
	{ GOOD, 0, "" },
	{ HEAD "held: 1\n" RCPT "end\n", 1, "" },
	{ HEAD "last-error: 451 4.3.0 later\nheld: 1\n" RCPT
	  "rcpt: failed e@f\nrcpt-dsn: 5.1.1\nrcpt-error: 550 no\nend\n", 1, "" },
	{ HEAD "last-error: x\n" RCPT "end\n", 0, "" },
	{ HEAD "bounce: 0A1B2C3D4E5F60719\nrcpt: failed e@f\n"
	  "rcpt-dsn: 5.1.1\nrcpt-error: 550 no\nend\n", 0, "0A1B2C3D4E5F60719" },
	{ HEAD "last-error: x\nheld: 1\nbounce: FFFFFFFFFFFFFFFFF\n" RCPT
	  "rcpt: failed e@f\nend\n", 1, "FFFFFFFFFFFFFFFFF" },
};

START_TEST(test_canonical_roundtrip)
{
	struct envelope env;
	struct err err;
	struct buf b;
	const char *t = canonical[_i].text;

	ck_assert_msg(envelope_parse(t, strlen(t), &env, &err) == 0, "%s",
	    err.msg);
	ck_assert_int_eq(env.held, canonical[_i].held);
	ck_assert_str_eq(env.bounce, canonical[_i].bounce);
	buf_init(&b, 0);
	ck_assert_int_eq(envelope_format(&env, &b), 0);
	ck_assert_str_eq(b.data, t);
	buf_free(&b);
	envelope_free(&env);
}
END_TEST

START_TEST(test_parse_fields)
{
	struct envelope env;
	struct err err;
	const char *t = good[2].text;

	ck_assert_int_eq(envelope_parse(t, strlen(t), &env, &err), 0);
	ck_assert_int_eq(env.attempts, 7);
	ck_assert_str_eq(env.last_error, "");
	ck_assert_uint_eq(env.nrcpts, 2);
	ck_assert_int_eq(env.rcpts[0].status, RCPT_FAILED);
	ck_assert_uint_eq(env.rcpts[0].notify,
	    NOTIFY_FAILURE | NOTIFY_SUCCESS | NOTIFY_DELAY);
	ck_assert_str_eq(env.rcpts[1].addr, "\"a b\"@c");
	ck_assert_uint_eq(env.rcpts[1].notify, 0);
	ck_assert_str_eq(env.bounce, "");               /* none */
	envelope_free(&env);
}
END_TEST

/* The bounce key: written only when set, and never with a bad id. */
START_TEST(test_bounce_key_format)
{
	struct queue_tx tx;
	struct envelope env;
	struct err err;
	struct buf b;

	simple_env(&env, "a@b");
	str_copy(env.id, "0A1B2C3D4E5F60718", sizeof(env.id));
	buf_init(&b, 0);
	ck_assert_int_eq(envelope_format(&env, &b), 0);
	ck_assert_ptr_null(strstr(b.data, "bounce"));
	buf_reset(&b);
	str_copy(env.bounce, "0A1B2C3D4E5F6071F", sizeof(env.bounce));
	ck_assert_int_eq(envelope_format(&env, &b), 0);
	ck_assert_ptr_nonnull(strstr(b.data,
	    "\nbounce: 0A1B2C3D4E5F6071F\nrcpt: pending bob@example.com\n"));
	buf_reset(&b);
	str_copy(env.bounce, "../../x", sizeof(env.bounce));
	ck_assert_int_eq(envelope_format(&env, &b), -1);
	/* the queue refuses to write it, and says why */
	ck_assert_int_eq(queue_tx_begin(&q, &tx, &err), 0);
	ck_assert_int_eq(write_all(tx.datafd, "x\r\n", 3), 0);
	ck_assert_int_eq(queue_tx_commit(&tx, &env, &err), -1);
	ck_assert_int_eq(err.cls, ERR_INTERNAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "bounce"));
	queue_tx_abort(&tx);
	ck_assert_int_eq(count_dir("tmp"), 0);
	ck_assert_int_eq(count_dir("env"), 0);
	buf_free(&b);
	envelope_free(&env);
}
END_TEST

/* ---- locking, corrupt entries ------------------------------------------- */

START_TEST(test_lock_basic)
{
	struct qentry e;
	struct err err;
	char id[QID_LEN + 1];

	enqueue_simple(id);
	ck_assert_int_eq(queue_lock(&q, "0A1B2C3D4E5F60718", &e, &err), 0);
	ck_assert_int_eq(queue_lock(&q, "../env/x", &e, &err), -1);
	ck_assert_int_eq(err.cls, ERR_DATA);
	ck_assert_int_eq(queue_lock(&q, id, &e, &err), 1);
	ck_assert_str_eq(e.id, id);
	ck_assert_int_ge(e.fd, 0);
	ck_assert_str_eq(e.env.sender, "alice@example.com");
	ck_assert_str_eq(e.env.rcpts[0].addr, "bob@example.com");
	ck_assert_uint_eq(e.env.size, 18);

	/* another process, and another open file here, find it busy */
	ck_assert_int_eq(lock_in_child(id), 0);
	{
		struct qentry e2;

		ck_assert_int_eq(queue_lock(&q, id, &e2, &err), 0);
		ck_assert_int_eq(e2.fd, -1);
		queue_unlock(&e2);
		envelope_free(&e2.env);
	}
	queue_unlock(&e);
	ck_assert_int_eq(e.fd, -1);
	/* the envelope outlives the lock, for the caller's report */
	ck_assert_str_eq(e.env.sender, "alice@example.com");
	envelope_free(&e.env);
	ck_assert_int_eq(e.fd, -1);
	ck_assert_int_eq(lock_in_child(id), 1);
}
END_TEST

START_TEST(test_lock_truncated)
{
	struct qentry e;
	struct err err;
	char id[QID_LEN + 1], *text;
	size_t len;

	enqueue_simple(id);
	text = slurp(&len, "env/%s", id);
	spew(text, len - 4, "env/%s", id);      /* drop "end\n" */
	ck_assert_int_eq(queue_lock(&q, id, &e, &err), -1);
	ck_assert_int_eq(err.cls, ERR_DATA);
	ck_assert_ptr_nonnull(strstr(err.msg, id));
	ck_assert_ptr_nonnull(strstr(err.msg, "missing end"));
	ck_assert_ptr_nonnull(strstr(err.msg, "corrupt/"));
	ck_assert_int_eq(e.fd, -1);
	ck_assert_ptr_null(e.env.sender);
	queue_unlock(&e);
	envelope_free(&e.env);
	ck_assert(!exists("env/%s", id));
	ck_assert(!exists("data/%s", id));
	ck_assert(exists("corrupt/%s.env", id));
	ck_assert(exists("corrupt/%s.data", id));

	/* the same id going bad again never replaces the earlier evidence */
	spew(text, len - 4, "env/%s", id);
	spew("x", 1, "data/%s", id);
	ck_assert_int_eq(queue_lock(&q, id, &e, &err), -1);
	ck_assert(exists("corrupt/%s.env", id));
	ck_assert(exists("corrupt/%s.env.1", id));
	ck_assert(exists("corrupt/%s.data.1", id));
	ck_assert_int_eq(count_dir("corrupt"), 4);
	free(text);

	/* peek reports, but never moves anything */
	enqueue_simple(id);
	text = slurp(&len, "env/%s", id);
	spew(text, len - 4, "env/%s", id);
	{
		struct envelope env;

		ck_assert_int_eq(queue_peek(&q, id, &env, &err), -1);
		ck_assert_int_eq(err.cls, ERR_DATA);
		envelope_free(&env);
	}
	ck_assert(exists("env/%s", id));
	free(text);
}
END_TEST

START_TEST(test_lock_no_data)
{
	struct qentry e;
	struct err err;
	char id[QID_LEN + 1], path[512];

	enqueue_simple(id);
	path_of(path, sizeof(path), "data/%s", id);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(queue_lock(&q, id, &e, &err), -1);
	ck_assert_int_eq(err.cls, ERR_DATA);
	ck_assert_ptr_nonnull(strstr(err.msg, "data file missing"));
	ck_assert_ptr_null(e.env.sender);
	ck_assert(!exists("env/%s", id));
	ck_assert(exists("corrupt/%s.env", id));
	ck_assert_int_eq(count_dir("corrupt"), 1);
}
END_TEST

START_TEST(test_lock_id_mismatch)
{
	static const char other[] = "0000000000000000A";
	struct qentry e;
	struct envelope env;
	struct err err;
	char id[QID_LEN + 1], from[512], to[512];

	enqueue_simple(id);
	path_of(from, sizeof(from), "env/%s", id);
	path_of(to, sizeof(to), "env/%s", other);
	ck_assert_int_eq(rename(from, to), 0);
	spew("x", 1, "data/%s", other);
	ck_assert_int_eq(queue_peek(&q, other, &env, &err), -1);
	ck_assert_int_eq(err.cls, ERR_DATA);
	ck_assert_ptr_nonnull(strstr(err.msg, "does not match"));
	ck_assert_int_eq(queue_lock(&q, other, &e, &err), -1);
	ck_assert_int_eq(err.cls, ERR_DATA);
	ck_assert_ptr_nonnull(strstr(err.msg, "does not match"));
	ck_assert(exists("corrupt/%s.env", other));
	ck_assert(exists("corrupt/%s.data", other));
	ck_assert(exists("data/%s", id));       /* not the corrupt one's */
}
END_TEST

START_TEST(test_lock_symlink)
{
	struct qentry e;
	struct err err;
	char id[QID_LEN + 1], path[512], target[512];

	enqueue_simple(id);
	path_of(path, sizeof(path), "env/%s", id);
	path_of(target, sizeof(target), "failed/%s", "x");
	ck_assert_int_eq(rename(path, target), 0);
	ck_assert_int_eq(symlink(target, path), 0);
	ck_assert_int_eq(queue_lock(&q, id, &e, &err), -1);
	ck_assert_int_eq(err.cls, ERR_DATA);
	ck_assert(exists("corrupt/%s.env", id));
	ck_assert(exists("failed/%s", "x"));    /* the target is not touched */
}
END_TEST

/* ---- update, remove, failed --------------------------------------------- */

START_TEST(test_update)
{
	struct qentry e;
	struct envelope env;
	struct err err;
	char id[QID_LEN + 1], path[512];
	int oldfd;

	simple_env(&env, "alice@example.com");
	envelope_add_rcpt(&env, "carol@example.com", NULL, 0);
	enqueue("x", 1, &env, id);
	envelope_free(&env);
	ck_assert_int_eq(queue_lock(&q, id, &e, &err), 1);

	/* a competitor that opened the envelope before the update */
	path_of(path, sizeof(path), "env/%s", id);
	ck_assert_int_ge(oldfd = open(path, O_RDONLY), 0);

	e.env.attempts = 3;
	e.env.next_attempt = 1700000900;
	e.env.last_error = xstrdup("421 busy\r\n");
	e.env.rcpts[0].status = RCPT_SENT;
	e.env.rcpts[1].dsn = xstrdup("4.2.0");
	e.env.rcpts[1].error = xstrdup("421 4.2.0 busy");
	ck_assert_msg(queue_update(&q, &e, &err) == 0, "%s", err.msg);
	ck_assert_int_ge(e.fd, 0);
	ck_assert_int_eq(count_dir("tmp"), 0);

	/* the old inode is free now, but it is no longer env/ID ... */
	ck_assert_int_eq(flock(oldfd, LOCK_EX | LOCK_NB), 0);
	close(oldfd);
	/* ... and the new one has been locked all along */
	ck_assert_int_eq(lock_in_child(id), 0);

	ck_assert_int_eq(queue_peek(&q, id, &env, &err), 0);
	ck_assert_int_eq(env.attempts, 3);
	ck_assert_int_eq(env.next_attempt, 1700000900);
	ck_assert_str_eq(env.last_error, "421 busy ");
	ck_assert_int_eq(env.rcpts[0].status, RCPT_SENT);
	ck_assert_int_eq(env.rcpts[1].status, RCPT_PENDING);
	ck_assert_str_eq(env.rcpts[1].dsn, "4.2.0");
	ck_assert_str_eq(env.rcpts[1].error, "421 4.2.0 busy");
	envelope_free(&env);

	/* a second update works from the new descriptor */
	e.env.attempts = 4;
	ck_assert_int_eq(queue_update(&q, &e, &err), 0);
	ck_assert_int_eq(lock_in_child(id), 0);
	queue_unlock(&e);
	envelope_free(&e.env);
	ck_assert_int_eq(lock_in_child(id), 1);
	ck_assert_int_eq(queue_lock(&q, id, &e, &err), 1);
	ck_assert_int_eq(e.env.attempts, 4);
	queue_unlock(&e);
	envelope_free(&e.env);
}
END_TEST

START_TEST(test_remove)
{
	struct qentry e;
	struct strlist list = { 0 };
	struct err err;
	char id[QID_LEN + 1];

	enqueue_simple(id);
	ck_assert_int_eq(queue_lock(&q, id, &e, &err), 1);
	ck_assert_int_eq(queue_remove(&q, &e, &err), 0);
	ck_assert_int_eq(e.fd, -1);
	ck_assert_str_eq(e.env.rcpts[0].addr, "bob@example.com");
	envelope_free(&e.env);
	assert_spool_empty();
	ck_assert_int_eq(queue_scan(&q, &list, &err), 0);
	ck_assert_uint_eq(list.n, 0);
	ck_assert_int_eq(queue_lock(&q, id, &e, &err), 0);      /* gone */
}
END_TEST

START_TEST(test_move_failed)
{
	struct qentry e;
	struct err err;
	char id[QID_LEN + 1], *data;
	size_t len;

	enqueue_simple(id);
	ck_assert_int_eq(queue_lock(&q, id, &e, &err), 1);
	ck_assert_int_eq(queue_move_failed(&q, &e, &err), 0);
	ck_assert_int_eq(e.fd, -1);
	ck_assert_str_eq(e.env.rcpts[0].addr, "bob@example.com");
	envelope_free(&e.env);
	assert_spool_empty();
	ck_assert(exists("failed/%s.env", id));
	ck_assert(exists("failed/%s.data", id));
	ck_assert_int_eq(count_dir("failed"), 2);
	data = slurp(&len, "failed/%s.data", id);
	ck_assert_uint_eq(len, 18);
	ck_assert_mem_eq(data, "Subject: x\r\n\r\nhi\r\n", 18);
	free(data);
}
END_TEST

START_TEST(test_open_data)
{
	struct err err;
	char id[QID_LEN + 1], buf[64];
	int fd;

	enqueue_simple(id);
	ck_assert_int_ge(fd = queue_open_data(&q, id, &err), 0);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 18);
	close(fd);
	ck_assert_int_eq(queue_open_data(&q, "..", &err), -1);
	ck_assert_int_eq(err.cls, ERR_DATA);
	ck_assert_int_eq(queue_open_data(&q, "0000000000000000F", &err), -1);
	ck_assert_int_eq(err.cls, ERR_TEMP);
}
END_TEST

/* ---- two-phase bounces ------------------------------------------------- */

#define BOUNCE_BODY "Subject: bounce\r\n\r\nsorry\r\n"

/* A bounce envelope as bounce.c makes one. */
static void
bounce_env(struct envelope *env)
{
	envelope_init(env);
	env->sender = xstrdup("");
	envelope_add_rcpt(env, "alice@example.com", NULL, 0);
}

/* Begin a transaction holding BOUNCE_BODY and prepare it for oid. */
static void
prepare_bounce(struct queue_tx *tx, const char *oid)
{
	struct envelope env;
	struct err err;

	ck_assert_int_eq(queue_tx_begin(&q, tx, &err), 0);
	ck_assert_int_eq(write_all(tx->datafd, BOUNCE_BODY,
	    sizeof(BOUNCE_BODY) - 1), 0);
	bounce_env(&env);
	ck_assert_msg(queue_tx_prepare(tx, &env, oid, &err) == 0, "prepare: %s",
	    err.msg);
	ck_assert_str_eq(env.id, tx->id);
	ck_assert_uint_eq(env.size, sizeof(BOUNCE_BODY) - 1);
	envelope_free(&env);
}

/* The bounce bid is queued, whole, from the null sender. */
static void
assert_bounce_queued(const char *bid)
{
	struct envelope env;
	struct err err;
	char *data;
	size_t len;

	ck_assert_msg(queue_peek(&q, bid, &env, &err) == 0, "%s", err.msg);
	ck_assert_str_eq(env.sender, "");
	ck_assert_str_eq(env.rcpts[0].addr, "alice@example.com");
	ck_assert_uint_eq(env.size, sizeof(BOUNCE_BODY) - 1);
	envelope_free(&env);
	data = slurp(&len, "data/%s", bid);
	ck_assert_uint_eq(len, sizeof(BOUNCE_BODY) - 1);
	ck_assert_mem_eq(data, BOUNCE_BODY, len);
	free(data);
}

START_TEST(test_prepare_commit)
{
	struct strlist list = { 0 };
	struct queue_tx tx;
	struct qentry e;
	struct envelope env;
	struct err err;
	char oid[QID_LEN + 1];

	enqueue_simple(oid);
	ck_assert_int_eq(queue_lock(&q, oid, &e, &err), 1);
	prepare_bounce(&tx, oid);
	/* prepared: in tmp/ under names tied to oid, invisible to runs */
	ck_assert(exists("tmp/%s.data.for-%s", tx.id, oid));
	ck_assert(exists("tmp/%s.env.for-%s", tx.id, oid));
	ck_assert_int_eq(count_dir("tmp"), 2);
	ck_assert(!exists("data/%s", tx.id));
	ck_assert(!exists("env/%s", tx.id));
	ck_assert_int_eq(queue_scan(&q, &list, &err), 0);
	ck_assert_uint_eq(list.n, 1);
	strlist_free(&list);
	/* a prepared transaction is committed only one way */
	ck_assert_int_eq(queue_tx_commit(&tx, &env, &err), -1);
	ck_assert_int_eq(err.cls, ERR_INTERNAL);

	/* the decision, then the commit */
	str_copy(e.env.bounce, tx.id, sizeof(e.env.bounce));
	e.env.rcpts[0].status = RCPT_FAILED;
	ck_assert_int_eq(queue_update(&q, &e, &err), 0);
	ck_assert_msg(queue_tx_commit_prepared(&tx, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(tx.committed, 1);
	ck_assert_int_eq(tx.datafd, -1);
	ck_assert_int_eq(count_dir("tmp"), 0);
	assert_bounce_queued(tx.id);
	queue_tx_abort(&tx);            /* a no-op after commit */
	ck_assert(exists("env/%s", tx.id));
	ck_assert_int_eq(queue_tx_commit_prepared(&tx, &err), -1);
	ck_assert_int_eq(err.cls, ERR_INTERNAL);

	/* the original keeps the key: its next lock finds nothing to do */
	queue_unlock(&e);
	envelope_free(&e.env);
	ck_assert_int_eq(queue_lock(&q, oid, &e, &err), 1);
	ck_assert_str_eq(e.env.bounce, tx.id);
	ck_assert_int_eq(count_dir("env"), 2);
	ck_assert_int_eq(count_dir("tmp"), 0);
	queue_unlock(&e);
	envelope_free(&e.env);
}
END_TEST

START_TEST(test_prepare_abort)
{
	struct queue_tx tx;
	struct envelope env;
	struct err err;
	char oid[QID_LEN + 1];

	enqueue_simple(oid);
	prepare_bounce(&tx, oid);
	queue_tx_abort(&tx);
	ck_assert_int_eq(count_dir("tmp"), 0);
	ck_assert_int_eq(count_dir("env"), 1);
	ck_assert_int_eq(count_dir("data"), 1);
	queue_tx_abort(&tx);            /* twice is harmless */

	/* for a bad id, and twice: refused, and nothing is left */
	ck_assert_int_eq(queue_tx_begin(&q, &tx, &err), 0);
	bounce_env(&env);
	ck_assert_int_eq(queue_tx_prepare(&tx, &env, "../x", &err), -1);
	ck_assert_int_eq(err.cls, ERR_INTERNAL);
	ck_assert_int_eq(queue_tx_commit_prepared(&tx, &err), -1);
	ck_assert_int_eq(err.cls, ERR_INTERNAL);
	ck_assert_int_eq(queue_tx_prepare(&tx, &env, oid, &err), 0);
	ck_assert_int_eq(queue_tx_prepare(&tx, &env, oid, &err), -1);
	ck_assert_int_eq(err.cls, ERR_INTERNAL);
	queue_tx_abort(&tx);
	ck_assert_int_eq(count_dir("tmp"), 0);

	/* an envelope that cannot be written: nothing left either */
	envelope_free(&env);
	envelope_init(&env);
	env.sender = xstrdup("");
	ck_assert_int_eq(queue_tx_begin(&q, &tx, &err), 0);
	ck_assert_int_eq(queue_tx_prepare(&tx, &env, oid, &err), -1);
	ck_assert_int_eq(err.cls, ERR_DATA);
	ck_assert_int_eq(count_dir("tmp"), 0);
	queue_tx_abort(&tx);
	envelope_free(&env);
}
END_TEST

/* How far a runner killed during a bounce of oid had come. */
enum crash_stage {
	CS_PREPARED,            /* prepared, not named: the decision lost */
	CS_NAMED,               /* named in env/oid, nothing renamed */
	CS_DATA_LINKED,         /* data in data/ and tmp/ (link fallback) */
	CS_DATA_MOVED,          /* data renamed into data/, envelope not */
	CS_COMMITTED,           /* committed, original not finished */
	CS_NSTAGES
};

/*
 * A runner that locks oid, prepares a bounce, names it in oid's envelope
 * (the recipient failed) and dies at stage. Returns the bounce id.
 */
static void
crash_during_bounce(const char *oid, enum crash_stage stage,
    char bid[QID_LEN + 1])
{
	int fds[2], status;
	pid_t pid;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char from[512], to[512];
		struct queue_tx tx;
		struct qentry e;
		struct err err;

		close(fds[0]);
		if (queue_lock(&q, oid, &e, &err) != 1)
			_exit(2);
		prepare_bounce(&tx, oid);
		if (write(fds[1], tx.id, QID_LEN) != QID_LEN)
			_exit(3);
		if (stage == CS_PREPARED)
			_exit(0);
		str_copy(e.env.bounce, tx.id, sizeof(e.env.bounce));
		e.env.rcpts[0].status = RCPT_FAILED;
		if (queue_update(&q, &e, &err) < 0)
			_exit(4);
		path_of(from, sizeof(from), "tmp/%s.data.for-%s", tx.id, oid);
		path_of(to, sizeof(to), "data/%s", tx.id);
		if (stage == CS_DATA_LINKED && link(from, to) < 0)
			_exit(5);
		if (stage == CS_DATA_MOVED && rename(from, to) < 0)
			_exit(6);
		if (stage == CS_COMMITTED &&
		    queue_tx_commit_prepared(&tx, &err) < 0)
			_exit(7);
		_exit(0);       /* killed: no commit, no unlock, no cleanup */
	}
	close(fds[1]);
	ck_assert_int_eq(read(fds[0], bid, QID_LEN), QID_LEN);
	bid[QID_LEN] = '\0';
	close(fds[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}

/* The next lock of the original finishes the bounce, exactly once. */
START_TEST(test_bounce_recovered_by_lock)
{
	enum crash_stage stage = (enum crash_stage)_i;
	struct qentry e;
	struct err err;
	char oid[QID_LEN + 1], bid[QID_LEN + 1];

	enqueue_simple(oid);
	crash_during_bounce(oid, stage, bid);
	ck_assert_int_eq(queue_lock(&q, oid, &e, &err), 1);
	if (stage == CS_PREPARED) {
		/* not decided: the attempt is repeated, the files are garbage */
		ck_assert_str_eq(e.env.bounce, "");
		ck_assert_int_eq(e.env.rcpts[0].status, RCPT_PENDING);
		ck_assert(!exists("env/%s", bid));
		ck_assert(!exists("data/%s", bid));
		ck_assert_int_eq(count_dir("tmp"), 2);
	} else {
		ck_assert_str_eq(e.env.bounce, bid);
		ck_assert_int_eq(e.env.rcpts[0].status, RCPT_FAILED);
		assert_bounce_queued(bid);
		ck_assert_int_eq(count_dir("tmp"), 0);
		ck_assert_int_eq(count_dir("env"), 2);
		ck_assert_int_eq(count_dir("data"), 2);
	}
	ck_assert_int_eq(count_dir("corrupt"), 0);
	queue_unlock(&e);
	envelope_free(&e.env);

	/* again: nothing more happens (the key stays, the bounce is one) */
	ck_assert_int_eq(queue_lock(&q, oid, &e, &err), 1);
	ck_assert_int_eq(count_dir("env"), stage == CS_PREPARED ? 1 : 2);
	queue_unlock(&e);
	envelope_free(&e.env);

	/* delivered and removed since: the stale key commits nothing */
	if (stage != CS_PREPARED) {
		ck_assert_int_eq(queue_lock(&q, bid, &e, &err), 1);
		ck_assert_int_eq(queue_remove(&q, &e, &err), 0);
		envelope_free(&e.env);
		ck_assert_int_eq(queue_lock(&q, oid, &e, &err), 1);
		ck_assert(!exists("env/%s", bid));
		ck_assert_int_eq(count_dir("env"), 1);
		ck_assert_int_eq(count_dir("tmp"), 0);
		queue_unlock(&e);
		envelope_free(&e.env);
	}
}
END_TEST

/* Prepared files stay exactly while the envelope they belong to names them. */
START_TEST(test_cleanup_prepared)
{
	struct qentry e;
	struct err err;
	char named[QID_LEN + 1], moved[QID_LEN + 1], stale[QID_LEN + 1];
	char b1[QID_LEN + 1], b2[QID_LEN + 1], b3[QID_LEN + 1];
	static const char gone[] = "0000000000000000E";
	static const char b4[] = "0000000000000000F";

	enqueue_simple(named);
	crash_during_bounce(named, CS_NAMED, b1);
	enqueue_simple(moved);
	crash_during_bounce(moved, CS_DATA_MOVED, b2);
	enqueue_simple(stale);
	crash_during_bounce(stale, CS_PREPARED, b3);
	/* prepared for an entry that is gone */
	spew("x", 1, "tmp/%s.data.for-%s", b4, gone);
	spew("x", 1, "tmp/%s.env.for-%s", b4, gone);
	/* a day later */
	set_age(7200, "tmp/%s.data.for-%s", b1, named);
	set_age(7200, "tmp/%s.env.for-%s", b1, named);
	set_age(7200, "data/%s", b2);
	set_age(7200, "tmp/%s.env.for-%s", b2, moved);
	set_age(7200, "tmp/%s.data.for-%s", b3, stale);
	set_age(7200, "tmp/%s.env.for-%s", b3, stale);
	set_age(7200, "tmp/%s.data.for-%s", b4, gone);
	set_age(7200, "tmp/%s.env.for-%s", b4, gone);

	ck_assert_int_eq(queue_cleanup(&q, 3600, &err), 4);
	ck_assert(exists("tmp/%s.data.for-%s", b1, named));
	ck_assert(exists("tmp/%s.env.for-%s", b1, named));
	ck_assert(exists("tmp/%s.env.for-%s", b2, moved));
	ck_assert(exists("data/%s", b2));       /* no env/b2 yet, but named */
	ck_assert(!exists("tmp/%s.data.for-%s", b3, stale));
	ck_assert(!exists("tmp/%s.env.for-%s", b3, stale));
	ck_assert(!exists("tmp/%s.data.for-%s", b4, gone));
	ck_assert(!exists("tmp/%s.env.for-%s", b4, gone));
	ck_assert_int_eq(count_dir("tmp"), 3);

	/* the named ones are committed by their originals' next lock */
	ck_assert_int_eq(queue_lock(&q, named, &e, &err), 1);
	queue_unlock(&e);
	envelope_free(&e.env);
	ck_assert_int_eq(queue_lock(&q, moved, &e, &err), 1);
	queue_unlock(&e);
	envelope_free(&e.env);
	ck_assert_int_eq(count_dir("tmp"), 0);
	assert_bounce_queued(b1);
	assert_bounce_queued(b2);
	ck_assert_int_eq(queue_cleanup(&q, 3600, &err), 0);
	ck_assert_int_eq(count_dir("env"), 5);
}
END_TEST

/* ---- failed/: crash-safe move ------------------------------------------ */

/* An entry with one failed recipient, locked in e. */
static void
failed_entry(struct qentry *e, char id[QID_LEN + 1], int pending)
{
	struct err err;

	enqueue_simple(id);
	ck_assert_int_eq(queue_lock(&q, id, e, &err), 1);
	if (!pending) {
		e->env.rcpts[0].status = RCPT_FAILED;
		e->env.rcpts[0].dsn = xstrdup("5.1.1");
	}
	ck_assert_int_eq(queue_update(&q, e, &err), 0);
}

static void
assert_in_failed(const char *id)
{
	struct envelope env;
	enum qwhere where;
	struct err err;
	char *data;
	size_t len;

	ck_assert(!exists("env/%s", id));
	ck_assert(!exists("data/%s", id));
	ck_assert_int_eq(queue_find(&q, id, &env, &where, NULL, &err), 0);
	ck_assert_int_eq(where, QW_FAILED);
	envelope_free(&env);
	data = slurp(&len, "failed/%s.data", id);
	ck_assert_uint_eq(len, 18);
	ck_assert_mem_eq(data, "Subject: x\r\n\r\nhi\r\n", 18);
	free(data);
	ck_assert_int_eq(count_dir("corrupt"), 0);
}

START_TEST(test_move_failed_retried)
{
	struct qentry e;
	struct err err;
	struct stat st;
	char id[QID_LEN + 1], from[512], to[512];
	ino_t ino;

	/* killed after the link: the retry accepts it */
	failed_entry(&e, id, 0);
	path_of(from, sizeof(from), "data/%s", id);
	path_of(to, sizeof(to), "failed/%s.data", id);
	ck_assert_int_eq(link(from, to), 0);
	ck_assert_int_eq(stat(from, &st), 0);
	ino = st.st_ino;
	ck_assert_int_eq(queue_move_failed(&q, &e, &err), 0);
	envelope_free(&e.env);
	assert_in_failed(id);
	ck_assert_int_eq(stat(to, &st), 0);
	ck_assert_uint_eq(st.st_ino, ino);      /* linked, not copied */
	ck_assert_uint_eq(st.st_nlink, 1);

	/* killed after the commit, before data/ID went: cleanup's garbage,
	 * and removing it leaves failed/ whole */
	ck_assert_int_eq(link(to, from), 0);
	set_age(7200, "data/%s", id);
	ck_assert_int_eq(queue_cleanup(&q, 3600, &err), 1);
	assert_in_failed(id);
	ck_assert_int_eq(count_dir("failed"), 2);
}
END_TEST

START_TEST(test_move_failed_replaces_stale)
{
	struct qentry e;
	struct err err;
	char id[QID_LEN + 1], path[512];
	int fd;

	/* a requeue that stopped after its commit left an older copy */
	failed_entry(&e, id, 0);
	spew("stale", 5, "failed/%s.data", id);
	spew("stale", 5, "failed/%s.env", id);

	/* an operator's tool holds it: nothing moves, the entry stays whole */
	path_of(path, sizeof(path), "failed/%s.env", id);
	ck_assert_int_ge(fd = open(path, O_RDONLY), 0);
	ck_assert_int_eq(flock(fd, LOCK_EX), 0);
	ck_assert_int_eq(queue_move_failed(&q, &e, &err), -1);
	ck_assert_int_eq(err.cls, ERR_TEMP);
	ck_assert_ptr_nonnull(strstr(err.msg, "is busy"));
	ck_assert_int_eq(e.fd, -1);
	envelope_free(&e.env);
	close(fd);
	ck_assert(exists("env/%s", id));
	ck_assert(exists("data/%s", id));

	ck_assert_int_eq(queue_lock(&q, id, &e, &err), 1);
	ck_assert_int_eq(queue_move_failed(&q, &e, &err), 0);
	envelope_free(&e.env);
	assert_in_failed(id);
	ck_assert_int_eq(count_dir("failed"), 2);
	ck_assert_int_eq(count_dir("tmp"), 0);
}
END_TEST

/* A second name for a data file: linked, or copied across file systems. */
START_TEST(test_link_or_copy)
{
	struct err err;
	struct stat a, b;
	char from[512], to[512], shm[64], *data;
	size_t len;
	int fd;

	spew("payload\r\n", 9, "data/%s", "0000000000000000A");
	path_of(from, sizeof(from), "data/%s", "0000000000000000A");
	path_of(to, sizeof(to), "failed/%s", "0000000000000000A.data");
	ck_assert_int_eq(link_or_copy(&q, "0000000000000000A", from, to, &err), 0);
	ck_assert_int_eq(stat(from, &a), 0);
	ck_assert_int_eq(stat(to, &b), 0);
	ck_assert_uint_eq(a.st_ino, b.st_ino);
	/* again: already that file, nothing more */
	ck_assert_int_eq(link_or_copy(&q, "0000000000000000A", from, to, &err), 0);
	ck_assert_int_eq(stat(from, &a), 0);
	ck_assert_uint_eq(a.st_nlink, 2);
	/* another file there: replaced by this one */
	ck_assert_int_eq(unlink(to), 0);
	spew("other", 5, "failed/%s", "0000000000000000A.data");
	ck_assert_int_eq(link_or_copy(&q, "0000000000000000A", from, to, &err), 0);
	ck_assert_int_eq(stat(to, &b), 0);
	ck_assert_uint_eq(a.st_ino, b.st_ino);
	ck_assert_int_eq(count_dir("tmp"), 0);
	/* gone: ERR_DATA */
	path_of(from, sizeof(from), "data/%s", "0000000000000000B");
	ck_assert_int_eq(link_or_copy(&q, "0000000000000000B", from, to, &err), -1);
	ck_assert_int_eq(err.cls, ERR_DATA);

	/* the link refused (another file system): a durable copy, mode 0640 */
	str_copy(shm, "/dev/shm/check_queue.XXXXXX", sizeof(shm));
	if ((fd = mkstemp(shm)) < 0)
		return;                 /* no /dev/shm here */
	ck_assert_int_eq(write_all(fd, "copied\r\n", 8), 0);
	close(fd);
	ck_assert_int_eq(stat(shm, &a), 0);
	ck_assert_int_eq(stat(spool, &b), 0);
	if (a.st_dev == b.st_dev) {
		unlink(shm);            /* one file system: nothing to test */
		return;
	}
	path_of(to, sizeof(to), "data/%s", "0000000000000000C");
	ck_assert_int_eq(link_or_copy(&q, "0000000000000000C", shm, to, &err), 0);
	unlink(shm);
	ck_assert_int_eq(stat(to, &b), 0);
	ck_assert_int_eq(b.st_mode & 07777, 0640);      /* mkstemp's was 0600 */
	ck_assert_uint_eq(b.st_nlink, 1);
	data = slurp(&len, "data/%s", "0000000000000000C");
	ck_assert_uint_eq(len, 8);
	ck_assert_mem_eq(data, "copied\r\n", 8);
	free(data);
	ck_assert_int_eq(count_dir("tmp"), 0);
}
END_TEST

/* env/ID whose data already went to failed/ (the order used before). */
START_TEST(test_lock_finishes_old_move)
{
	struct qentry e;
	struct err err;
	char id[QID_LEN + 1], from[512], to[512], *data;
	size_t len;

	/* every recipient done: the move is finished */
	failed_entry(&e, id, 0);
	queue_unlock(&e);
	envelope_free(&e.env);
	path_of(from, sizeof(from), "data/%s", id);
	path_of(to, sizeof(to), "failed/%s.data", id);
	ck_assert_int_eq(rename(from, to), 0);
	ck_assert_int_eq(queue_lock(&q, id, &e, &err), 0);
	envelope_free(&e.env);
	assert_in_failed(id);

	/* a recipient pending: the data is put back, the entry stays */
	failed_entry(&e, id, 1);
	queue_unlock(&e);
	envelope_free(&e.env);
	path_of(from, sizeof(from), "data/%s", id);
	path_of(to, sizeof(to), "failed/%s.data", id);
	ck_assert_int_eq(rename(from, to), 0);
	ck_assert_int_eq(queue_lock(&q, id, &e, &err), 1);
	data = slurp(&len, "data/%s", id);
	ck_assert_uint_eq(len, 18);
	ck_assert_mem_eq(data, "Subject: x\r\n\r\nhi\r\n", 18);
	free(data);
	ck_assert_int_eq(count_dir("corrupt"), 0);
	queue_unlock(&e);
	envelope_free(&e.env);

	/* not its data (another size): corrupt, as before */
	failed_entry(&e, id, 0);
	queue_unlock(&e);
	envelope_free(&e.env);
	path_of(from, sizeof(from), "data/%s", id);
	ck_assert_int_eq(unlink(from), 0);
	spew("other", 5, "failed/%s.data", id);
	ck_assert_int_eq(queue_lock(&q, id, &e, &err), -1);
	ck_assert_int_eq(err.cls, ERR_DATA);
	ck_assert_ptr_nonnull(strstr(err.msg, "data file missing"));
	envelope_free(&e.env);
	ck_assert(exists("corrupt/%s.env", id));
}
END_TEST

/* ---- scan and cleanup ------------------------------------------------- */

START_TEST(test_scan)
{
	struct strlist list = { 0 };
	struct err err;

	spew("x", 1, "env/%s", "0000000000000000B");
	spew("x", 1, "env/%s", "00000000000000001");
	spew("x", 1, "env/%s", "00000000000000005");
	spew("x", 1, "env/%s", "junk");
	spew("x", 1, "env/%s", "0000000000000000b");
	spew("x", 1, "env/%s", "00000000000000005.tmp");
	ck_assert_int_eq(queue_scan(&q, &list, &err), 0);
	ck_assert_uint_eq(list.n, 3);
	ck_assert_str_eq(list.v[0], "00000000000000001");
	ck_assert_str_eq(list.v[1], "00000000000000005");
	ck_assert_str_eq(list.v[2], "0000000000000000B");
	strlist_free(&list);
}
END_TEST

START_TEST(test_cleanup)
{
	struct queue_tx live;
	struct qentry e;
	struct err err;
	struct timespec old[2];
	char id[QID_LEN + 1];

	enqueue_simple(id);
	set_age(7200, "data/%s", id);           /* committed: never garbage */
	set_age(7200, "env/%s", id);
	spew("old", 3, "tmp/%s", "0000000000000000A.data");
	set_age(7200, "tmp/%s", "0000000000000000A.data");
	spew("old", 3, "tmp/%s", "0000000000000000B.env.1.2");
	set_age(7200, "tmp/%s", "0000000000000000B.env.1.2");
	spew("fresh", 5, "tmp/%s", "0000000000000000C.data");
	spew("orphan", 6, "data/%s", "0000000000000000D");
	set_age(7200, "data/%s", "0000000000000000D");
	spew("fresh orphan", 12, "data/%s", "0000000000000000E");
	/* a submission stalled for hours is still alive: its file is locked */
	ck_assert_int_eq(queue_tx_begin(&q, &live, &err), 0);
	old[0].tv_sec = old[1].tv_sec = time(NULL) - 7200;
	old[0].tv_nsec = old[1].tv_nsec = 0;
	ck_assert_int_eq(futimens(live.datafd, old), 0);

	ck_assert_int_eq(queue_cleanup(&q, 3600, &err), 3);
	ck_assert(!exists("tmp/%s", "0000000000000000A.data"));
	ck_assert(!exists("tmp/%s", "0000000000000000B.env.1.2"));
	ck_assert(!exists("data/%s", "0000000000000000D"));
	ck_assert(exists("tmp/%s", "0000000000000000C.data"));
	ck_assert(exists("data/%s", "0000000000000000E"));
	ck_assert(exists("tmp/%s.data", live.id));
	ck_assert(exists("data/%s", id));
	ck_assert(exists("env/%s", id));
	ck_assert_int_eq(queue_lock(&q, id, &e, &err), 1);
	queue_unlock(&e);
	envelope_free(&e.env);
	ck_assert_int_eq(queue_cleanup(&q, 3600, &err), 0);
	queue_tx_abort(&live);
}
END_TEST

/* ---- mailq ------------------------------------------------------------ */

static char *
list_to_string(void)
{
	struct err err;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(queue_list(&q, f, &err), 0);
	fclose(f);
	return out;
}

START_TEST(test_list_empty)
{
	char *out = list_to_string();

	ck_assert_str_eq(out, "Mail queue is empty\n");
	free(out);
}
END_TEST

static void
make_two(char a[QID_LEN + 1], char b[QID_LEN + 1])
{
	struct envelope env;
	char body[1234];

	memset(body, 'x', sizeof(body));
	simple_env(&env, "sender@example.com");
	free(env.rcpts[0].addr);
	env.rcpts[0].addr = xstrdup("rcpt1@example.com");
	envelope_add_rcpt(&env, "rcpt2@example.com", NULL, 0);
	envelope_add_rcpt(&env, "done@example.com", NULL, 0);
	env.rcpts[2].status = RCPT_SENT;
	env.created = 1606618270;
	env.last_error = xstrdup("connect to smtp.example.com[192.0.2.1]:587: "
	    "Connection refused");
	enqueue(body, sizeof(body), &env, a);
	envelope_free(&env);

	simple_env(&env, "");
	env.created = 1609556645;
	enqueue(body, 100, &env, b);
	envelope_free(&env);
}

START_TEST(test_list_two)
{
	char a[QID_LEN + 1], b[QID_LEN + 1], ea[1024], eb[1024], want[4096];
	const char *first, *second;
	struct qentry e;
	struct err err;
	char *out;

	setenv("TZ", "UTC", 1);
	tzset();
	make_two(a, b);
	snprintf(ea, sizeof(ea),
	    "%s      1234 Sun Nov 29 02:51:10  sender@example.com\n"
	    "              (connect to smtp.example.com[192.0.2.1]:587: Connection refused)\n"
	    "                                         rcpt1@example.com\n"
	    "                                         rcpt2@example.com\n", a);
	snprintf(eb, sizeof(eb),
	    "%s       100 Sat Jan  2 03:04:05  MAILER-DAEMON\n"
	    "                                         bob@example.com\n", b);
	/* listed in id order, which is arrival order */
	first = strcmp(a, b) < 0 ? ea : eb;
	second = strcmp(a, b) < 0 ? eb : ea;

	snprintf(want, sizeof(want),
	    "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
	    "%s\n%s\n-- 2 Kbytes in 2 Requests.\n", first, second);
	out = list_to_string();
	ck_assert_str_eq(out, want);
	free(out);

	/* an entry being delivered is marked with '*' */
	ck_assert_int_eq(queue_lock(&q, b, &e, &err), 1);
	out = list_to_string();
	{
		char line[64];

		snprintf(line, sizeof(line), "%s*      100 ", b);
		ck_assert_ptr_nonnull(strstr(out, line));
		snprintf(line, sizeof(line), "%s      1234 ", a);
		ck_assert_ptr_nonnull(strstr(out, line));
	}
	free(out);
	queue_unlock(&e);
	envelope_free(&e.env);
}
END_TEST

START_TEST(test_list_one_and_corrupt)
{
	char id[QID_LEN + 1], want[1024], errpath[512], *out, *warn;
	struct envelope env;
	int saved, fd;

	setenv("TZ", "UTC", 1);
	tzset();
	simple_env(&env, "ab@example.com");
	env.created = 1609556645;
	enqueue("0123456789", 10, &env, id);
	envelope_free(&env);
	spew("garbage\n", 8, "env/%s", "00000000000000001");

	path_of(errpath, sizeof(errpath), "%s", "stderr");
	fflush(stderr);
	saved = dup(2);
	fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	dup2(fd, 2);
	close(fd);
	out = list_to_string();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);

	snprintf(want, sizeof(want),
	    "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
	    "%s        10 Sat Jan  2 03:04:05  ab@example.com\n"
	    "                                         bob@example.com\n"
	    "\n-- 1 Kbytes in 1 Request.\n", id);
	ck_assert_str_eq(out, want);
	free(out);
	warn = slurp(NULL, "%s", "stderr");
	ck_assert_ptr_nonnull(strstr(warn,
	    "warning: queue file 00000000000000001: "
	    "envelope line 1: not a relayq envelope"));
	free(warn);
	/* listing moves nothing */
	ck_assert(exists("env/%s", "00000000000000001"));
}
END_TEST

/* ---- operator tools ------------------------------------------------------ */

/* An entry in failed/ as a run leaves it: bob failed, carol was sent. */
static void
make_failed(char id[QID_LEN + 1])
{
	struct envelope env;
	struct qentry e;
	struct err err;

	simple_env(&env, "alice@example.com");
	envelope_add_rcpt(&env, "carol@example.com", NULL, 0);
	env.created = 1609556645;
	enqueue("Subject: x\r\n\r\nhi\r\n", 18, &env, id);
	envelope_free(&env);
	ck_assert_int_eq(queue_lock(&q, id, &e, &err), 1);
	e.env.attempts = 3;
	e.env.last_attempt = 1609556700;
	e.env.next_attempt = 1609557000;
	e.env.last_error = xstrdup("550 5.1.1 no such user");
	e.env.rcpts[0].status = RCPT_FAILED;
	e.env.rcpts[0].dsn = xstrdup("5.1.1");
	e.env.rcpts[0].error = xstrdup("550 5.1.1 no such user");
	e.env.rcpts[1].status = RCPT_SENT;
	e.env.rcpts[1].dsn = xstrdup("2.0.0");
	ck_assert_int_eq(queue_update(&q, &e, &err), 0);
	ck_assert_int_eq(queue_move_failed(&q, &e, &err), 0);
	envelope_free(&e.env);
}

START_TEST(test_hold_release)
{
	struct envelope env;
	struct qentry e;
	struct err err;
	char id[QID_LEN + 1], line[64], *text, *out;

	enqueue_simple(id);
	ck_assert_int_eq(queue_hold(&q, id, 1, &err), QOP_DONE);
	text = slurp(NULL, "env/%s", id);
	ck_assert_ptr_nonnull(strstr(text, "\nnext-attempt: 0\nheld: 1\nrcpt: "));
	free(text);
	ck_assert_int_eq(queue_peek(&q, id, &env, &err), 0);
	ck_assert_int_eq(env.held, 1);
	envelope_free(&env);
	ck_assert_int_eq(queue_hold(&q, id, 1, &err), QOP_UNCHANGED);
	/* mailq marks it as Postfix marks its hold queue */
	out = list_to_string();
	snprintf(line, sizeof(line), "\n%s!       18 ", id);
	ck_assert_msg(strstr(out, line) != NULL, "%s", out);
	free(out);

	/* a locked entry is left alone */
	ck_assert_int_eq(queue_lock(&q, id, &e, &err), 1);
	ck_assert_int_eq(queue_hold(&q, id, 0, &err), QOP_BUSY);
	e.env.next_attempt = 1900000000;
	ck_assert_int_eq(queue_update(&q, &e, &err), 0);
	queue_unlock(&e);
	envelope_free(&e.env);

	/* released: the key is gone and the entry is due at once */
	ck_assert_int_eq(queue_hold(&q, id, 0, &err), QOP_DONE);
	ck_assert_int_eq(queue_peek(&q, id, &env, &err), 0);
	ck_assert_int_eq(env.held, 0);
	ck_assert_int_eq(env.next_attempt, 0);
	envelope_free(&env);
	text = slurp(NULL, "env/%s", id);
	ck_assert_ptr_null(strstr(text, "held"));
	free(text);
	ck_assert_int_eq(queue_hold(&q, id, 0, &err), QOP_UNCHANGED);
	ck_assert_int_eq(queue_hold(&q, "0000000000000000F", 1, &err),
	    QOP_MISSING);
	ck_assert_int_eq(queue_hold(&q, "../x", 1, &err), QOP_ERROR);
	ck_assert_int_eq(err.cls, ERR_USAGE);
}
END_TEST

START_TEST(test_delete)
{
	struct qentry e;
	struct err err;
	char a[QID_LEN + 1], b[QID_LEN + 1], f[QID_LEN + 1];

	enqueue_simple(a);
	enqueue_simple(b);
	ck_assert_int_eq(queue_lock(&q, b, &e, &err), 1);
	ck_assert_int_eq(queue_delete(&q, b, &err), QOP_BUSY);
	queue_unlock(&e);
	envelope_free(&e.env);
	ck_assert(exists("env/%s", b));
	ck_assert(exists("data/%s", b));
	ck_assert_int_eq(queue_delete(&q, a, &err), QOP_DONE);
	ck_assert(!exists("env/%s", a));
	ck_assert(!exists("data/%s", a));
	ck_assert_int_eq(queue_delete(&q, a, &err), QOP_MISSING);
	ck_assert_int_eq(queue_delete(&q, "env", &err), QOP_ERROR);
	ck_assert_int_eq(err.cls, ERR_USAGE);
	/* an id that is not queued is looked for in failed/ */
	make_failed(f);
	ck_assert_int_eq(queue_delete(&q, f, &err), QOP_DONE);
	ck_assert_int_eq(count_dir("failed"), 0);
	ck_assert(exists("env/%s", b));
}
END_TEST

START_TEST(test_requeue)
{
	struct strlist list = { 0 };
	struct envelope env;
	struct stat before, after;
	struct err err;
	char id[QID_LEN + 1], path[512], *data;
	size_t len;

	make_failed(id);
	ck_assert_int_eq(queue_scan_failed(&q, &list, &err), 0);
	ck_assert_uint_eq(list.n, 1);
	ck_assert_str_eq(list.v[0], id);
	strlist_free(&list);
	path_of(path, sizeof(path), "failed/%s.data", id);
	ck_assert_int_eq(stat(path, &before), 0);

	ck_assert_int_eq(queue_requeue(&q, id, &err), QOP_DONE);
	ck_assert_int_eq(count_dir("failed"), 0);
	ck_assert_int_eq(count_dir("tmp"), 0);
	path_of(path, sizeof(path), "data/%s", id);
	ck_assert_int_eq(stat(path, &after), 0);
	ck_assert_uint_eq(after.st_ino, before.st_ino);    /* linked, not copied */
	data = slurp(&len, "data/%s", id);
	ck_assert_uint_eq(len, 18);
	ck_assert_mem_eq(data, "Subject: x\r\n\r\nhi\r\n", 18);
	free(data);
	ck_assert_int_eq(queue_peek(&q, id, &env, &err), 0);
	ck_assert_int_eq(env.created, 1609556645);
	ck_assert_int_eq(env.attempts, 0);
	ck_assert_int_eq(env.last_attempt, 1609556700);
	ck_assert_int_eq(env.next_attempt, 0);
	ck_assert_ptr_null(env.last_error);
	ck_assert_int_eq(env.rcpts[0].status, RCPT_PENDING);
	ck_assert_ptr_null(env.rcpts[0].dsn);
	ck_assert_ptr_null(env.rcpts[0].error);
	ck_assert_int_eq(env.rcpts[1].status, RCPT_SENT);
	ck_assert_str_eq(env.rcpts[1].dsn, "2.0.0");
	envelope_free(&env);

	ck_assert_int_eq(queue_requeue(&q, id, &err), QOP_MISSING);
	ck_assert_int_eq(queue_requeue(&q, "0A1B2C3D4E5F6071", &err), QOP_ERROR);
	ck_assert_int_eq(err.cls, ERR_USAGE);
}
END_TEST

START_TEST(test_requeue_interrupted)
{
	char a[QID_LEN + 1], b[QID_LEN + 1], c[QID_LEN + 1], path[512];
	struct err err;
	char *text, *data;
	size_t len;
	int fd;

	/* stopped after the commit: queued, and still in failed/ */
	make_failed(a);
	text = slurp(&len, "failed/%s.env", a);
	spew(text, len, "env/%s", a);
	free(text);
	spew("Subject: x\r\n\r\nhi\r\n", 18, "data/%s", a);
	ck_assert_int_eq(queue_requeue(&q, a, &err), QOP_DONE);
	ck_assert_int_eq(count_dir("failed"), 0);
	ck_assert(exists("env/%s", a));

	/* stopped before the commit: a stray data/ID and no env/ID */
	make_failed(b);
	spew("partial", 7, "data/%s", b);
	ck_assert_int_eq(queue_requeue(&q, b, &err), QOP_DONE);
	data = slurp(&len, "data/%s", b);
	ck_assert_uint_eq(len, 18);
	free(data);

	/* another tool holds failed/ID.env */
	make_failed(c);
	path_of(path, sizeof(path), "failed/%s.env", c);
	ck_assert_int_ge(fd = open(path, O_RDONLY), 0);
	ck_assert_int_eq(flock(fd, LOCK_EX), 0);
	ck_assert_int_eq(queue_requeue(&q, c, &err), QOP_BUSY);
	ck_assert_int_eq(queue_delete(&q, c, &err), QOP_BUSY);
	close(fd);
	ck_assert(exists("failed/%s.env", c));
	ck_assert(exists("failed/%s.data", c));
	ck_assert(!exists("env/%s", c));
	ck_assert_int_eq(count_dir("tmp"), 0);
}
END_TEST

START_TEST(test_count)
{
	struct queue_counts c;
	struct envelope env;
	struct qentry e;
	struct err err;
	time_t now = time(NULL);
	char fresh[QID_LEN + 1], deferred[QID_LEN + 1], held[QID_LEN + 1];
	char active[QID_LEN + 1], failed[QID_LEN + 1];

	ck_assert_int_eq(queue_count(&q, now, &c, &err), 0);
	ck_assert_uint_eq(c.total + c.failed + c.corrupt, 0);
	ck_assert_int_eq(c.oldest, 0);

	simple_env(&env, "a@b");
	env.created = now - 100;
	enqueue("x", 1, &env, fresh);
	env.created = now - 50;
	env.attempts = 1;
	enqueue("x", 1, &env, deferred);
	env.created = now;
	env.attempts = 0;
	enqueue("x", 1, &env, held);
	enqueue("x", 1, &env, active);
	envelope_free(&env);
	ck_assert_int_eq(queue_hold(&q, held, 1, &err), QOP_DONE);
	make_failed(failed);
	spew("garbage\n", 8, "env/%s", "00000000000000001");
	spew("x", 1, "corrupt/%s", "00000000000000002.env");

	ck_assert_int_eq(queue_lock(&q, active, &e, &err), 1);
	ck_assert_int_eq(queue_count(&q, now, &c, &err), 0);
	queue_unlock(&e);
	envelope_free(&e.env);
	ck_assert_uint_eq(c.total, 4);
	ck_assert_uint_eq(c.fresh, 1);
	ck_assert_uint_eq(c.deferred, 1);
	ck_assert_uint_eq(c.held, 1);
	ck_assert_uint_eq(c.active, 1);
	ck_assert_uint_eq(c.failed, 1);
	ck_assert_uint_eq(c.corrupt, 2);
	ck_assert_int_eq(c.oldest, 100);
	/* counting moves nothing */
	ck_assert(exists("env/%s", "00000000000000001"));
}
END_TEST

static char *
show_to_string(const char *id, enum qop want)
{
	struct err err;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(queue_show(&q, id, f, &err), want);
	fclose(f);
	return out;
}

START_TEST(test_show)
{
	static const char body[] = "Subject: caf\xc3\xa9\r\nX-Esc: a\x1b[2J\x80\r\n"
	    "\tfolded\\\r\n..dot\r\n\r\nbody\r\n";
	struct envelope env;
	char id[QID_LEN + 1], f[QID_LEN + 1], want[2048], *out;

	setenv("TZ", "UTC", 1);
	tzset();
	simple_env(&env, "alice@example.com");
	env.created = 1609556645;
	env.attempts = 2;
	env.last_attempt = 1609556700;
	env.envid = xstrdup("e1");
	env.last_error = xstrdup("451 4.3.0 later");
	env.rcpts[0].dsn = xstrdup("4.3.0");
	env.rcpts[0].error = xstrdup("451 4.3.0 later");
	env.rcpts[0].notify = NOTIFY_SUCCESS | NOTIFY_FAILURE;
	enqueue(body, sizeof(body) - 1, &env, id);
	envelope_free(&env);
	snprintf(want, sizeof(want),
	    "id: %s\nstate: deferred\n"
	    "arrival: 2021-01-02 03:04:05 +0000 (1609556645)\n"
	    "sender: <alice@example.com>\nsize: %zu\nbody: 7bit\nsmtputf8: no\n"
	    "envid: e1\nattempts: 2\n"
	    "last attempt: 2021-01-02 03:05:00 +0000 (1609556700)\n"
	    "next attempt: now\nheld: no\nlast error: 451 4.3.0 later\n"
	    "recipient: bob@example.com\n  status: pending\n  dsn: 4.3.0\n"
	    "  error: 451 4.3.0 later\n  notify: success,failure\n"
	    "\nSubject: caf\xc3\xa9\nX-Esc: a\\x1b[2J\\x80\n\tfolded\\\\\n.dot\n",
	    id, sizeof(body) - 1);
	out = show_to_string(id, QOP_DONE);
	ck_assert_str_eq(out, want);
	free(out);

	make_failed(f);
	out = show_to_string(f, QOP_DONE);
	ck_assert_ptr_nonnull(strstr(out, "\nstate: failed (in failed/"));
	ck_assert_ptr_nonnull(strstr(out, "\nrecipient: bob@example.com\n"
	    "  status: failed\n  dsn: 5.1.1\n  error: 550 5.1.1 no such user\n"
	    "recipient: carol@example.com\n  status: sent\n  dsn: 2.0.0\n"
	    "\nSubject: x\n"));
	ck_assert_ptr_null(strstr(out, "next attempt"));
	free(out);
	out = show_to_string("0000000000000000F", QOP_MISSING);
	ck_assert_str_eq(out, "");
	free(out);
}
END_TEST

static Suite *
queue_suite(void)
{
	Suite *s = suite_create("queue");
	TCase *tc;

	tc = tcase_create("ids");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_qid_valid, 0, NITEMS(ids));
	tcase_add_test(tc, test_qid_generated);
	tcase_add_test(tc, test_open_missing);
	tcase_add_test(tc, test_modes);
	suite_add_tcase(s, tc);

	tc = tcase_create("envelope");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_roundtrip);
	tcase_add_test(tc, test_long_error_truncated);
	tcase_add_loop_test(tc, test_parse_bad, 0, NITEMS(bad));
	tcase_add_loop_test(tc, test_parse_good, 0, NITEMS(good));
	tcase_add_loop_test(tc, test_canonical_roundtrip, 0, NITEMS(canonical));
	tcase_add_test(tc, test_parse_fields);
	tcase_add_test(tc, test_bounce_key_format);
	suite_add_tcase(s, tc);

	tc = tcase_create("commit");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_tx_abort);
	tcase_add_test(tc, test_commit_bad_envelope);
	tcase_add_test(tc, test_commit_disk_full);
	tcase_add_test(tc, test_commit_env_dir_unwritable);
	suite_add_tcase(s, tc);

	tc = tcase_create("lock");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_lock_basic);
	tcase_add_test(tc, test_lock_truncated);
	tcase_add_test(tc, test_lock_no_data);
	tcase_add_test(tc, test_lock_id_mismatch);
	tcase_add_test(tc, test_lock_symlink);
	tcase_add_test(tc, test_update);
	tcase_add_test(tc, test_remove);
	tcase_add_test(tc, test_move_failed);
	tcase_add_test(tc, test_open_data);
	suite_add_tcase(s, tc);

	tc = tcase_create("bounce");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_prepare_commit);
	tcase_add_test(tc, test_prepare_abort);
	tcase_add_loop_test(tc, test_bounce_recovered_by_lock, 0, CS_NSTAGES);
	tcase_add_test(tc, test_cleanup_prepared);
	tcase_add_test(tc, test_link_or_copy);
	tcase_add_test(tc, test_move_failed_retried);
	tcase_add_test(tc, test_move_failed_replaces_stale);
	tcase_add_test(tc, test_lock_finishes_old_move);
	suite_add_tcase(s, tc);

	tc = tcase_create("maintenance");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_scan);
	tcase_add_test(tc, test_cleanup);
	tcase_add_test(tc, test_list_empty);
	tcase_add_test(tc, test_list_two);
	tcase_add_test(tc, test_list_one_and_corrupt);
	suite_add_tcase(s, tc);

	tc = tcase_create("tools");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_hold_release);
	tcase_add_test(tc, test_delete);
	tcase_add_test(tc, test_requeue);
	tcase_add_test(tc, test_requeue_interrupted);
	tcase_add_test(tc, test_count);
	tcase_add_test(tc, test_show);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(queue_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
