/*
 * Unit tests for privsep.c: a child that has given up its privileges
 * writes messages through the privileged parent, which commits only
 * envelopes that pass the strict loader and the submission rules. Each
 * test runs privsep_run against a fresh spool under /tmp; the child
 * reports what it saw through a pipe (never with ck_assert, which must
 * run in Check's own process), and the test asserts on the report, the
 * parent's callbacks and the files on disk.
 */
#include "autoconf.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "privsep.h"
#include "queue.h"

#define NITEMS(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define PASSWORD "s3cret-Pw-for-privsep"
#define MESSAGE "From: a@example.com\r\nSubject: privsep\r\n\r\nbody\r\n"

/* The frame layout of privsep.c, for the tests that speak it raw. */
enum { FR_BEGIN = 1, FR_COMMIT, FR_ABORT, FR_OK, FR_ERR };
struct frame_head {
	uint32_t type, len;
};

static char dir[64], spool[128];
static struct config *cfg;
static int report[2];                   /* child -> test: what it saw */
static char committed[8][QID_LEN + 1];  /* ids the parent made durable */
static int ncommitted;

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static void
setup(void)
{
	char path[256];
	FILE *f;
	struct err err;

	str_copy(dir, "/tmp/check_privsep.XXXXXX", sizeof(dir));
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(str_fmt(spool, sizeof(spool), "%s/queue", dir), 0);
	ck_assert_int_eq(str_fmt(path, sizeof(path), "%s/relayq.conf", dir), 0);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fprintf(f, "hostname = \"host.example.com\"\n"
	    "queue_dir = \"%s\"\nlog = \"stderr\"\naliases = \"%s/aliases\"\n"
	    "smarthost main {\n host = \"127.0.0.1\"\n port = 2525\n"
	    " username = \"user\"\n password = \"" PASSWORD "\"\n}\n"
	    "smarthost other {\n host = \"127.0.0.2\"\n"
	    " username = \"user\"\n password_file = \"/etc/relayq.secret\"\n}\n",
	    spool, dir);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_msg(config_load(path, &cfg, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(pipe(report), 0);
	ncommitted = 0;
}

static void
teardown(void)
{
	config_free(cfg);
	cfg = NULL;
	close(report[0]);
	if (report[1] >= 0)
		close(report[1]);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- helpers ---------------------------------------------------------- */

/* In the child: one line for the test to read. */
static void PRINTF_LIKE(1, 2)
say(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	write_all(report[1], line, (size_t)n);
}

/* In the test, after privsep_run: everything the child said. */
static void
heard(char *out, size_t size)
{
	size_t len = 0;
	ssize_t n;

	close(report[1]);
	report[1] = -1;
	while (len + 1 < size && (n = read(report[0], out + len,
	    size - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
}

static void
on_commit(const char *qid, void *arg)
{
	int *calls = arg;

	(*calls)++;
	if (ncommitted < NITEMS(committed))
		str_copy(committed[ncommitted++], qid, QID_LEN + 1);
}

/* Entries in spool/sub (0 when it does not exist). */
static int
count(const char *sub)
{
	char path[256];
	struct dirent *d;
	DIR *dp;
	int n = 0;

	ck_assert_int_eq(str_fmt(path, sizeof(path), "%s/%s", spool, sub), 0);
	if ((dp = opendir(path)) == NULL)
		return 0;
	while ((d = readdir(dp)) != NULL)
		if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0)
			n++;
	closedir(dp);
	return n;
}

static void
assert_spool_empty(void)
{
	ck_assert_int_eq(count("tmp"), 0);
	ck_assert_int_eq(count("data"), 0);
	ck_assert_int_eq(count("env"), 0);
}

static int
exists(const char *sub, const char *id)
{
	char path[256];
	struct stat st;

	ck_assert_int_eq(str_fmt(path, sizeof(path), "%s/%s/%s", spool, sub, id), 0);
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* spool/sub/id into b (capped). */
static void
slurp(const char *sub, const char *id, struct buf *b)
{
	char path[256];
	int fd;

	ck_assert_int_eq(str_fmt(path, sizeof(path), "%s/%s/%s", spool, sub, id), 0);
	buf_init(b, ENVELOPE_MAX);
	ck_assert_int_ge(fd = open(path, O_RDONLY), 0);
	ck_assert_int_eq(read_file_capped(fd, b, ENVELOPE_MAX), 0);
	close(fd);
}

/* In the child: begin a queue file and write MESSAGE into it. */
static int
begin_message(struct spool *s, char id[QID_LEN + 1])
{
	struct err err;
	int fd;

	if (spool_begin(s, id, &fd, &err) < 0) {
		say("begin failed: %s", err.msg);
		return -1;
	}
	if (write_all(fd, MESSAGE, strlen(MESSAGE)) < 0) {
		say("write failed: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* An envelope a submission would send: one sender, one recipient. */
static void
good_envelope(struct envelope *env, const char *id, const char *rcpt)
{
	envelope_init(env);
	str_copy(env->id, id, sizeof(env->id));
	env->sender = xstrdup("a@example.com");
	envelope_add_rcpt(env, rcpt, NULL, 0);
}

/* In the child: the broker socket (the only stream socket it holds). */
static int
broker_socket(void)
{
	for (int fd = 3; fd < 1024; fd++) {
		struct stat st;
		int type;
		socklen_t len = sizeof(type);

		if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
		    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
		    type == SOCK_STREAM)
			return fd;
	}
	return -1;
}

/* In the child: send one raw frame and report the reply (or EOF). */
static void
raw_exchange(uint32_t type, uint32_t len, const void *body, size_t sent)
{
	struct frame_head h = { type, len };
	char reply[1024];
	int sock = broker_socket();
	ssize_t n;

	if (sock < 0) {
		say("no broker socket");
		return;
	}
	signal(SIGPIPE, SIG_IGN);       /* the parent may hang up mid-frame */
	if (write_all(sock, &h, sizeof(h)) < 0) {
		say("send failed: %s", strerror(errno));
		return;
	}
	if (sent > 0)
		(void)write_all(sock, body, sent);  /* EPIPE: the reply tells */
	if (sent < len)
		shutdown(sock, SHUT_WR);        /* a frame cut short */
	if (read(sock, &h, sizeof(h)) != (ssize_t)sizeof(h)) {
		say("reply: EOF");
		return;
	}
	if (h.len >= sizeof(reply))
		h.len = sizeof(reply) - 1;
	n = h.len > 0 ? read(sock, reply, h.len) : 0;
	reply[n > 0 ? n : 0] = '\0';
	say("reply: %s %s", h.type == FR_OK ? "OK" : h.type == FR_ERR ? "ERR" :
	    "?", h.type == FR_ERR && n > 0 ? reply + 1 : reply);
}

static int
run(privsep_child_fn child, void *arg, int *calls, struct err *err)
{
	*calls = 0;
	return privsep_run(cfg, 1, child, arg, on_commit, calls, err);
}

/* ---- (a) a valid message is committed ------------------------------------ */

static int
child_one(struct spool *s, void *arg)
{
	struct envelope env;
	struct err err;
	char id[QID_LEN + 1];
	int rc;

	(void)arg;
	if (begin_message(s, id) < 0)
		return 10;
	good_envelope(&env, id, "rcpt@example.org");
	rc = spool_commit(s, &env, &err);
	if (rc < 0)
		say("commit failed: %s", err.msg);
	else
		say("%s %llu", id, env.size);
	envelope_free(&env);
	return rc < 0 ? 11 : 0;
}

START_TEST(valid_message_is_committed)
{
	struct envelope env;
	struct buf b;
	struct err err;
	char said[2048], want[64];
	int calls;

	ck_assert_int_eq(run(child_one, NULL, &calls, &err), 0);
	heard(said, sizeof(said));
	ck_assert_int_eq(calls, 1);
	ck_assert_int_eq(str_fmt(want, sizeof(want), "%s %zu\n", committed[0],
	    strlen(MESSAGE)), 0);
	ck_assert_str_eq(said, want);
	ck_assert(exists("env", committed[0]));
	ck_assert(exists("data", committed[0]));
	ck_assert_int_eq(count("tmp"), 0);
	ck_assert_int_eq(count("env"), 1);

	slurp("data", committed[0], &b);
	ck_assert_uint_eq(b.len, strlen(MESSAGE));
	ck_assert_mem_eq(b.data, MESSAGE, b.len);
	buf_free(&b);
	slurp("env", committed[0], &b);
	ck_assert_msg(envelope_parse(b.data, b.len, &env, &err) == 0, "%s", err.msg);
	ck_assert_str_eq(env.id, committed[0]);
	ck_assert_str_eq(env.sender, "a@example.com");
	ck_assert_uint_eq(env.nrcpts, 1);
	ck_assert_str_eq(env.rcpts[0].addr, "rcpt@example.org");
	ck_assert_int_eq(env.rcpts[0].status, RCPT_PENDING);
	ck_assert_uint_eq(env.size, strlen(MESSAGE));
	envelope_free(&env);
	buf_free(&b);
}
END_TEST

/* The parent decides the bookkeeping, whatever the child claims. */
static int
child_claims_state(struct spool *s, void *arg)
{
	struct envelope env;
	struct err err;
	char id[QID_LEN + 1];
	int rc;

	(void)arg;
	if (begin_message(s, id) < 0)
		return 10;
	good_envelope(&env, id, "rcpt@example.org");
	env.attempts = 7;
	env.created = 1000;
	env.next_attempt = 2000000000;
	env.last_attempt = 1500;
	env.last_error = xstrdup("claimed by the child");
	env.held = 1;
	env.rcpts[0].dsn = xstrdup("4.4.1");
	env.rcpts[0].error = xstrdup("claimed error");
	env.size = 99999;
	rc = spool_commit(s, &env, &err);
	if (rc < 0)
		say("commit failed: %s", err.msg);
	envelope_free(&env);
	return rc < 0 ? 11 : 0;
}

START_TEST(parent_resets_delivery_state)
{
	struct envelope env;
	struct buf b;
	struct err err;
	char said[2048];
	int calls;
	time_t before = time(NULL);

	ck_assert_int_eq(run(child_claims_state, NULL, &calls, &err), 0);
	heard(said, sizeof(said));
	ck_assert_str_eq(said, "");
	ck_assert_int_eq(calls, 1);
	slurp("env", committed[0], &b);
	ck_assert_msg(envelope_parse(b.data, b.len, &env, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(env.attempts, 0);
	ck_assert_int_ge(env.created, before);
	ck_assert_int_eq(env.next_attempt, 0);
	ck_assert_int_eq(env.last_attempt, 0);
	ck_assert_ptr_null(env.last_error);
	ck_assert_int_eq(env.held, 0);
	ck_assert_ptr_null(env.rcpts[0].dsn);
	ck_assert_ptr_null(env.rcpts[0].error);
	ck_assert_uint_eq(env.size, strlen(MESSAGE));
	envelope_free(&env);
	buf_free(&b);
}
END_TEST

/* ---- (b) envelopes the parent must refuse -------------------------------- */

enum bad { BAD_OTHER_ID, BAD_UNKNOWN_ID, BAD_SENT, BAD_FAILED, BAD_RCPT,
    BAD_RCPT_CTRL, BAD_SENDER, BAD_NO_RCPT, BAD_SECOND_RCPT };

static const struct {
	enum bad kind;
	enum err_class cls;
	const char *msg;        /* in the error the child gets */
} bad_table[] = {
	{ BAD_OTHER_ID, ERR_INTERNAL, "envelope for the wrong queue file" },
	{ BAD_UNKNOWN_ID, ERR_INTERNAL, "envelope for the wrong queue file" },
	{ BAD_SENT, ERR_DATA, "invalid recipient <rcpt@example.org>" },
	{ BAD_FAILED, ERR_DATA, "invalid recipient <rcpt@example.org>" },
	{ BAD_RCPT, ERR_DATA, "invalid recipient <not an address>" },
	/* These two never leave the child: the envelope cannot be written. */
	{ BAD_RCPT_CTRL, ERR_DATA, "control character" },
	{ BAD_SENDER, ERR_DATA, "invalid sender" },
	{ BAD_NO_RCPT, ERR_DATA, "no recipients" },
	{ BAD_SECOND_RCPT, ERR_DATA, "invalid recipient <@x>" },
};

/*
 * First commit a good message (so a wrong id can name a real entry), then
 * begin a second one and commit the bad envelope for it.
 */
static int
child_bad(struct spool *s, void *arg)
{
	enum bad kind = *(enum bad *)arg;
	struct envelope env;
	struct err err;
	char first[QID_LEN + 1], id[QID_LEN + 1];

	if (begin_message(s, first) < 0)
		return 10;
	good_envelope(&env, first, "first@example.org");
	if (spool_commit(s, &env, &err) < 0) {
		say("first commit failed: %s", err.msg);
		return 11;
	}
	envelope_free(&env);
	if (begin_message(s, id) < 0)
		return 12;
	good_envelope(&env, id, "rcpt@example.org");
	switch (kind) {
	case BAD_OTHER_ID:
		str_copy(env.id, first, sizeof(env.id));
		break;
	case BAD_UNKNOWN_ID:
		str_copy(env.id, "0000000000000AAAA", sizeof(env.id));
		break;
	case BAD_SENT:
		env.rcpts[0].status = RCPT_SENT;
		break;
	case BAD_FAILED:
		env.rcpts[0].status = RCPT_FAILED;
		break;
	case BAD_RCPT:
		free(env.rcpts[0].addr);
		env.rcpts[0].addr = xstrdup("not an address");
		break;
	case BAD_RCPT_CTRL:
		free(env.rcpts[0].addr);
		env.rcpts[0].addr = xstrdup("a@b.example\r\nDATA");
		break;
	case BAD_SENDER:
		free(env.sender);
		env.sender = xstrdup("bad sender@");
		break;
	case BAD_NO_RCPT:
		envelope_free(&env);
		envelope_init(&env);
		str_copy(env.id, id, sizeof(env.id));
		env.sender = xstrdup("a@example.com");
		break;
	case BAD_SECOND_RCPT:
		envelope_add_rcpt(&env, "@x", NULL, 0);
		break;
	}
	if (spool_commit(s, &env, &err) == 0) {
		say("committed!");
		envelope_free(&env);
		return 13;
	}
	say("%s %d %s", first, (int)err.cls, err.msg);
	envelope_free(&env);
	return 0;
}

START_TEST(bad_envelope_is_refused)
{
	enum bad kind = bad_table[_i].kind;
	struct buf before, after;
	struct err err;
	char said[2048], first[QID_LEN + 1];
	int calls, cls;
	const char *msg;

	ck_assert_int_eq(run(child_bad, &kind, &calls, &err), 0);
	heard(said, sizeof(said));
	ck_assert_msg(sscanf(said, "%17s %d", first, &cls) == 2, "child said %s", said);
	msg = strchr(strchr(said, ' ') + 1, ' ') + 1;
	ck_assert_msg(strstr(msg, bad_table[_i].msg) != NULL,
	    "case %d: error \"%s\" lacks \"%s\"", _i, msg, bad_table[_i].msg);
	ck_assert_int_eq(cls, bad_table[_i].cls);
	/* Only the first message is in the queue, untouched. */
	ck_assert_int_eq(calls, 1);
	ck_assert_str_eq(committed[0], first);
	ck_assert_int_eq(count("env"), 1);
	ck_assert_int_eq(count("data"), 1);
	ck_assert_int_eq(count("tmp"), 0);
	slurp("env", first, &after);
	ck_assert_ptr_nonnull(strstr(after.data, "rcpt: pending first@example.org\n"));
	ck_assert_ptr_null(strstr(after.data, "rcpt@example.org"));
	slurp("data", first, &before);
	ck_assert_mem_eq(before.data, MESSAGE, strlen(MESSAGE));
	buf_free(&before);
	buf_free(&after);
}
END_TEST

/* Frames no honest child sends: garbage, cut short, out of order. */
enum raw { RAW_GARBAGE, RAW_TRUNCATED_ENV, RAW_TRAILING, RAW_NUL,
    RAW_NO_BEGIN, RAW_TWICE, RAW_UNKNOWN_TYPE, RAW_HUGE_LEN, RAW_CUT_FRAME };

static const struct {
	enum raw kind;
	const char *reply;      /* what the child hears back */
	int commits;            /* messages the parent committed */
} raw_table[] = {
	{ RAW_GARBAGE, "reply: ERR invalid envelope from the front end", 0 },
	{ RAW_TRUNCATED_ENV, "reply: ERR invalid envelope from the front end", 0 },
	{ RAW_TRAILING, "reply: ERR invalid envelope from the front end", 0 },
	{ RAW_NUL, "reply: ERR invalid envelope from the front end", 0 },
	{ RAW_NO_BEGIN, "reply: ERR commit without a queue file", 0 },
	{ RAW_TWICE, "reply: ERR commit without a queue file", 1 },
	{ RAW_UNKNOWN_TYPE, "reply: EOF", 0 },
	{ RAW_HUGE_LEN, "reply: EOF", 0 },
	{ RAW_CUT_FRAME, "reply: EOF", 0 },
};

static int
child_raw(struct spool *s, void *arg)
{
	enum raw kind = *(enum raw *)arg;
	struct envelope env;
	struct buf text;
	struct err err;
	char id[QID_LEN + 1];

	if (kind != RAW_NO_BEGIN && begin_message(s, id) < 0)
		return 10;
	buf_init(&text, ENVELOPE_MAX);
	if (kind != RAW_NO_BEGIN) {
		good_envelope(&env, id, "rcpt@example.org");
		if (envelope_format(&env, &text) < 0)
			return 11;
		envelope_free(&env);
	}
	switch (kind) {
	case RAW_GARBAGE:
		raw_exchange(FR_COMMIT, 11, "hello world", 11);
		break;
	case RAW_TRUNCATED_ENV:       /* without its "end" line */
		raw_exchange(FR_COMMIT, (uint32_t)text.len - 4, text.data,
		    text.len - 4);
		break;
	case RAW_TRAILING:
		buf_puts(&text, "rcpt: pending evil@example.org\n");
		raw_exchange(FR_COMMIT, (uint32_t)text.len, text.data, text.len);
		break;
	case RAW_NUL:
		text.data[text.len - 6] = '\0';
		raw_exchange(FR_COMMIT, (uint32_t)text.len, text.data, text.len);
		break;
	case RAW_NO_BEGIN:
		raw_exchange(FR_COMMIT, 4, "end\n", 4);
		break;
	case RAW_TWICE:         /* a second envelope for a committed file */
		good_envelope(&env, id, "rcpt@example.org");
		if (spool_commit(s, &env, &err) < 0)
			return 12;
		envelope_free(&env);
		buf_reset(&text);
		good_envelope(&env, id, "evil@example.org");
		if (envelope_format(&env, &text) < 0)
			return 13;
		envelope_free(&env);
		raw_exchange(FR_COMMIT, (uint32_t)text.len, text.data, text.len);
		break;
	case RAW_UNKNOWN_TYPE:
		raw_exchange(99, 0, NULL, 0);
		break;
	case RAW_HUGE_LEN:
		raw_exchange(FR_COMMIT, UINT32_MAX, text.data, text.len);
		break;
	case RAW_CUT_FRAME:
		raw_exchange(FR_COMMIT, (uint32_t)text.len, text.data, text.len / 2);
		break;
	}
	buf_free(&text);
	return 0;
}

START_TEST(raw_frames_are_refused)
{
	enum raw kind = raw_table[_i].kind;
	struct err err;
	char said[2048], want[256];
	int calls;

	ck_assert_int_eq(run(child_raw, &kind, &calls, &err), 0);
	heard(said, sizeof(said));
	ck_assert_int_eq(str_fmt(want, sizeof(want), "%s", raw_table[_i].reply), 0);
	ck_assert_msg(strncmp(said, want, strlen(want)) == 0,
	    "case %d: child heard \"%s\", want \"%s\"", _i, said, want);
	ck_assert_int_eq(calls, raw_table[_i].commits);
	ck_assert_int_eq(count("tmp"), 0);
	ck_assert_int_eq(count("data"), raw_table[_i].commits);
	ck_assert_int_eq(count("env"), raw_table[_i].commits);
	if (raw_table[_i].commits > 0) {
		struct buf b;

		slurp("env", committed[0], &b);
		ck_assert_ptr_nonnull(strstr(b.data, "rcpt: pending rcpt@example.org\n"));
		ck_assert_ptr_null(strstr(b.data, "evil"));
		buf_free(&b);
	}
}
END_TEST

/* ---- (c) begun, never committed -------------------------------------------- */

enum quit { QUIT_RETURN, QUIT_EXIT, QUIT_ABORT_THEN_EXIT, QUIT_REBEGIN };

static int
child_quits(struct spool *s, void *arg)
{
	enum quit how = *(enum quit *)arg;
	char id[QID_LEN + 1], id2[QID_LEN + 1];

	if (begin_message(s, id) < 0)
		return 10;
	switch (how) {
	case QUIT_RETURN:           /* privsep_run's own cleanup */
		return 3;
	case QUIT_EXIT:             /* no ABORT frame: only EOF */
		_exit(4);
	case QUIT_ABORT_THEN_EXIT:
		spool_abort(s);
		_exit(5);
	case QUIT_REBEGIN:          /* a second begin drops the first file */
		if (begin_message(s, id2) < 0)
			return 10;
		say("%s %s", id, id2);
		_exit(6);
	}
	return 0;
}

START_TEST(uncommitted_message_leaves_nothing)
{
	static const int codes[] = { 3, 4, 5, 6 };
	enum quit how = (enum quit)_i;
	struct err err;
	char said[2048];
	int calls;

	ck_assert_int_eq(run(child_quits, &how, &calls, &err), codes[_i]);
	heard(said, sizeof(said));
	if (how == QUIT_REBEGIN)
		ck_assert_int_eq(strlen(said), 2 * QID_LEN + 2);
	else
		ck_assert_str_eq(said, "");
	ck_assert_int_eq(calls, 0);
	assert_spool_empty();
}
END_TEST

/* ---- (d) the child crashes ------------------------------------------------ */

static int
child_crashes(struct spool *s, void *arg)
{
	int sig = *(int *)arg;
	struct rlimit nocore = { 0, 0 };
	char id[QID_LEN + 1];

	setrlimit(RLIMIT_CORE, &nocore);
	if (begin_message(s, id) < 0)
		return 10;
	if (sig != SIGKILL)
		signal(sig, SIG_DFL);   /* not Check's or ASan's handler */
	raise(sig);
	return 11;
}

START_TEST(crashed_child_is_reported)
{
	static const int sigs[] = { SIGABRT, SIGKILL, SIGSEGV };
	int sig = sigs[_i];
	struct err err;
	char want[64];
	int calls;

	ck_assert_int_eq(run(child_crashes, &sig, &calls, &err), -1);
	ck_assert_int_eq(err.cls, ERR_INTERNAL);
	ck_assert_int_eq(str_fmt(want, sizeof(want), "signal %d", sig), 0);
	ck_assert_msg(strstr(err.msg, want) != NULL, "%s", err.msg);
	ck_assert_int_eq(calls, 0);
	assert_spool_empty();
}
END_TEST

/* ---- (e) several messages in one child (-bs) ------------------------------ */

static int
child_several(struct spool *s, void *arg)
{
	int n = *(int *)arg;

	for (int i = 0; i < n; i++) {
		struct envelope env;
		struct err err;
		char id[QID_LEN + 1], rcpt[64];

		if (begin_message(s, id) < 0)
			return 10;
		snprintf(rcpt, sizeof(rcpt), "r%d@example.org", i);
		good_envelope(&env, id, rcpt);
		if (spool_commit(s, &env, &err) < 0) {
			say("commit %d failed: %s", i, err.msg);
			return 11;
		}
		envelope_free(&env);
		say("%s", id);
	}
	return 0;
}

START_TEST(several_messages_in_one_child)
{
	int n = 3, calls;
	struct err err;
	char said[2048], want[2048] = "";

	ck_assert_int_eq(run(child_several, &n, &calls, &err), 0);
	heard(said, sizeof(said));
	ck_assert_int_eq(calls, n);
	for (int i = 0; i < n; i++) {
		struct buf b;
		char line[64];

		ck_assert_int_eq(str_fmt(line, sizeof(line), "%s\n", committed[i]), 0);
		ck_assert_int_eq(str_fmt(want + strlen(want), sizeof(want) -
		    strlen(want), "%s", line), 0);
		ck_assert(exists("data", committed[i]));
		slurp("env", committed[i], &b);
		snprintf(line, sizeof(line), "rcpt: pending r%d@example.org\n", i);
		ck_assert_ptr_nonnull(strstr(b.data, line));
		buf_free(&b);
	}
	ck_assert_str_eq(said, want);               /* same ids, same order */
	ck_assert_str_ne(committed[0], committed[1]);
	ck_assert_str_ne(committed[1], committed[2]);
	ck_assert_int_eq(count("env"), n);
	ck_assert_int_eq(count("tmp"), 0);
}
END_TEST

/* ---- (f) what the child is left with --------------------------------------- */

struct creds_arg {
	const struct config *cfg;
	gid_t privgid;          /* the group to be gone, or (gid_t)-1 */
};

/* Report ids, whether the group can come back, and the passwords. */
static int
child_creds(struct spool *s, void *arg)
{
	struct creds_arg *a = arg;
	const struct smarthost *sh = &a->cfg->smarthosts[0];
	gid_t rg, eg, sg;
	uid_t ru, eu, su;
	char probe[256];
	int fd;

	(void)s;
	getresgid(&rg, &eg, &sg);
	getresuid(&ru, &eu, &su);
	say("gid %d %d %d", (int)rg, (int)eg, (int)sg);
	say("uid %d %d %d", (int)ru, (int)eu, (int)su);
	say("password %s", sh->password == NULL ? "(null)" : sh->password);
	say("password_file %s", a->cfg->smarthosts[1].password_file);
	if (a->privgid != (gid_t)-1) {
		say("regain %s", setegid(a->privgid) == 0 ? "yes" : "no");
		str_fmt(probe, sizeof(probe), "%s/probe", spool);
		fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0600);
		say("spool writable %s", fd >= 0 ? "yes" : strerror(errno));
	}
	return 0;
}

START_TEST(child_has_no_group_and_no_password)
{
	struct creds_arg a = { cfg, (gid_t)-1 };
	struct err err;
	char said[2048], want[512];
	int calls;

	ck_assert_int_eq(run(child_creds, &a, &calls, &err), 0);
	heard(said, sizeof(said));
	ck_assert_int_eq(str_fmt(want, sizeof(want),
	    "gid %d %d %d\nuid %d %d %d\npassword (null)\n"
	    "password_file /etc/relayq.secret\n",
	    (int)getgid(), (int)getgid(), (int)getgid(),
	    (int)getuid(), (int)getuid(), (int)getuid()), 0);
	ck_assert_str_eq(said, want);
	/* Only the child's copy is gone: the parent still delivers with it. */
	ck_assert_ptr_nonnull(cfg->smarthosts[0].password);
	ck_assert_str_eq(cfg->smarthosts[0].password, PASSWORD);
}
END_TEST

#define CALLER_ID 65534         /* nobody */
#define PRIV_GID 54321          /* stands in for the relayq group */

/*
 * As a setgid install runs: real ids the caller's, effective group the
 * spool's. Done in a process of its own, which reports on stdout-like
 * pipe lines; needs root to set it up.
 */
START_TEST(setgid_caller_loses_the_group)
{
	struct err err;
	char said[2048], want[512];
	int status, calls;
	pid_t pid;

	if (geteuid() != 0) {
		fprintf(stderr, "setgid_caller_loses_the_group: needs root, skipped\n");
		return;
	}
	ck_assert_int_eq(mkdir(spool, 0700), 0);
	ck_assert_int_eq(chmod(spool, 0770), 0);
	ck_assert_int_eq(chown(spool, 0, PRIV_GID), 0);
	ck_assert_int_eq(chmod(dir, 0755), 0);
	if ((pid = fork()) == 0) {
		struct creds_arg a = { cfg, PRIV_GID };
		int rc;

		if (setgroups(0, NULL) < 0 ||
		    setresgid(CALLER_ID, PRIV_GID, PRIV_GID) < 0 ||
		    setresuid(CALLER_ID, CALLER_ID, CALLER_ID) < 0)
			_exit(90);
		rc = privsep_run(cfg, 1, child_creds, &a, on_commit, &calls, &err);
		if (rc != 0)
			_exit(91);
		/* The parent kept its group: it can still write the spool. */
		_exit(getegid() == PRIV_GID &&
		    faccessat(AT_FDCWD, spool, W_OK, AT_EACCESS) == 0 ? 0 : 92);
	}
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	heard(said, sizeof(said));
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "status %d, child said %s", status, said);
	ck_assert_int_eq(str_fmt(want, sizeof(want),
	    "gid %d %d %d\nuid %d %d %d\npassword (null)\n"
	    "password_file /etc/relayq.secret\nregain no\n"
	    "spool writable %s\n", CALLER_ID, CALLER_ID, CALLER_ID,
	    CALLER_ID, CALLER_ID, CALLER_ID, strerror(EACCES)), 0);
	ck_assert_str_eq(said, want);
}
END_TEST

static Suite *
privsep_suite(void)
{
	Suite *s = suite_create("privsep");
	TCase *tc = tcase_create("privsep");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, valid_message_is_committed);
	tcase_add_test(tc, parent_resets_delivery_state);
	tcase_add_loop_test(tc, bad_envelope_is_refused, 0, NITEMS(bad_table));
	tcase_add_loop_test(tc, raw_frames_are_refused, 0, NITEMS(raw_table));
	tcase_add_loop_test(tc, uncommitted_message_leaves_nothing, 0, 4);
	tcase_add_loop_test(tc, crashed_child_is_reported, 0, 3);
	tcase_add_test(tc, several_messages_in_one_child);
	tcase_add_test(tc, child_has_no_group_and_no_password);
	tcase_add_test(tc, setgid_caller_loses_the_group);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(privsep_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
