/*
 * Unit tests for message.c: the caller's message in, the exact wire form
 * out (CRLF, dot-stuffing, header fix-ups, limits, errors).
 */
#include "autoconf.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "message.h"
#include "util.h"

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Fixed values so that every added header is known exactly. */
#define NOW ((time_t)1700000000)    /* Tue, 14 Nov 2023 22:13:20 UTC */
#define DATESTR "Tue, 14 Nov 2023 22:13:20 +0000"
#define RECV "Received: by host.example.com (relayq, from userid 1000)\r\n" \
	"\tid QID123; " DATESTR "\r\n"
#define DATE "Date: " DATESTR "\r\n"
#define MID "Message-ID: <QID123.1700000000@host.example.com>\r\n"
#define FROM "From: \"Joe User\" <user@example.com>\r\n"

static char tmpdir[64];
static char inpath[128], outpath[128];

static void
setup(void)
{
	str_copy(tmpdir, "/tmp/check_message.XXXXXX", sizeof(tmpdir));
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	str_fmt(inpath, sizeof(inpath), "%s/in", tmpdir);
	str_fmt(outpath, sizeof(outpath), "%s/out", tmpdir);
}

static void
teardown(void)
{
	unlink(inpath);
	unlink(outpath);
	rmdir(tmpdir);
}

static void
opts_fixed(struct msg_opts *o)
{
	msg_opts_init(o);
	o->qid = "QID123";
	o->hostname = "host.example.com";
	o->domain = "example.com";
	o->sender = "user@example.com";
	o->full_name = "Joe User";
	o->uid = 1000;
	o->now = NOW;
}

static int
open_input(const char *in, size_t len)
{
	int fd = open(inpath, O_RDWR | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write_all(fd, in, len), 0);
	ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

static char *
slurp(const char *path, size_t *len)
{
	struct buf b;
	int fd = open(path, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	buf_init(&b, 0);
	ck_assert_int_eq(read_file_capped(fd, &b, 64 * 1024 * 1024), 0);
	close(fd);
	*len = b.len;
	if (b.data == NULL)
		return xstrdup("");
	return b.data;
}

/* Run message_read on in[0..len) from a file; the output in *out. */
static int
run(const char *in, size_t len, const struct msg_opts *o,
    struct msg_info *info, struct err *err, char **out, size_t *outlen)
{
	int ifd = open_input(in, len);
	int ofd = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int rc;

	ck_assert_int_ge(ofd, 0);
	rc = message_read(ifd, ofd, o, info, err);
	close(ifd);
	close(ofd);
	*out = slurp(outpath, outlen);
	return rc;
}

/* The tests' usual locals: o, info, err, out, outlen. */
#define RUN(in, len) run((in), (len), &o, &info, &err, &out, &outlen)

static void
assert_bytes(const char *got, size_t glen, const char *want, size_t wlen)
{
	if (glen != wlen || memcmp(got, want, wlen) != 0) {
		char eg[2048], ew[2048];

		str_escape(got, glen, eg, sizeof(eg));
		str_escape(want, wlen, ew, sizeof(ew));
		ck_abort_msg("output differs:\n got: %s\nwant: %s", eg, ew);
	}
}

/* --- transformations, table-driven ---------------------------------- */

enum { G = 1, I = 2, T = 4 };      /* -G (no fix-ups), -i, -t */

static const struct xcase {
	const char *name;
	const char *in;
	size_t inlen;              /* 0: strlen(in) */
	int flags;
	const char *out;
} xcases[] = {
	{ "lf", "Subject: a\n\nbody\n", 0, G,
	  "Subject: a\r\n\r\nbody\r\n" },
	{ "crlf", "Subject: a\r\n\r\nbody\r\n", 0, G,
	  "Subject: a\r\n\r\nbody\r\n" },
	{ "bare cr", "Subject: a\r\rline1\rline2\r\r\nx\n", 0, G,
	  "Subject: a\r\n\r\nline1\r\nline2\r\n\r\nx\r\n" },
	{ "nul dropped", "Subj\0ect: a\0b\n\nbo\0dy\n\0", 22, G,
	  "Subject: ab\r\n\r\nbody\r\n" },
	{ "no final newline", "Subject: a\n\nbody", 0, G,
	  "Subject: a\r\n\r\nbody\r\n" },
	{ "no final newline in header", "Subject: a", 0, G,
	  "Subject: a\r\n\r\n" },
	{ "empty input", "", 0, G, "\r\n" },
	{ "dot ends", "S: a\n\nx\n.\nafter\n", 0, G,
	  "S: a\r\n\r\nx\r\n" },
	{ "dot ends crlf", "S: a\r\n\r\nx\r\n.\r\nafter\r\n", 0, G,
	  "S: a\r\n\r\nx\r\n" },
	{ "dot ends at eof", "S: a\n\nx\n.", 0, G,
	  "S: a\r\n\r\nx\r\n" },
	{ "dot ends in header", "S: a\n.\nT: b\n", 0, G, "S: a\r\n\r\n" },
	{ "dot unstuffing", "S: a\n\n..\n..x\n...\n.x\n. \n", 0, G,
	  "S: a\r\n\r\n..\r\n..x\r\n...\r\n..x\r\n.. \r\n" },
	{ "dots with -i", "S: a\n\n.\n..\n.x\n...\nend\n", 0, G | I,
	  "S: a\r\n\r\n..\r\n...\r\n..x\r\n....\r\nend\r\n" },
	{ "dot line at eof with -i", "S: a\n\nx\n.", 0, G | I,
	  "S: a\r\n\r\nx\r\n..\r\n" },
	{ "dot field name", ".X: y\n\nb\n", 0, G | I, "..X: y\r\n\r\nb\r\n" },
	{ "mbox from line",
	  "From joe@x.org Sat Jan  3 01:05:34 1996\nSubject: a\n\nFrom me\n", 0,
	  G, "Subject: a\r\n\r\nFrom me\r\n" },
	{ "mbox from line, no header", "From joe@x.org\n\nbody\n", 0, G,
	  "\r\nbody\r\n" },
	{ "obsolete From : field", "From : joe@x.org\n\nb\n", 0, G,
	  "From : joe@x.org\r\n\r\nb\r\n" },
	{ "removed fields",
	  "Bcc: a@x.org,\n  b@y.org\nTo: c@z.org\nReturn-Path: <x@y.org>\n"
	  "resent-bcc: q@r.org\nCONTENT-LENGTH: 5\nSubject: s\n\nBcc: body\n",
	  0, G, "To: c@z.org\r\nSubject: s\r\n\r\nBcc: body\r\n" },
	{ "continuation lines", "Subject: a\n\tb\n c\n\nx\n", 0, G,
	  "Subject: a\r\n\tb\r\n c\r\n\r\nx\r\n" },
	{ "header ends at a non-header line",
	  "Subject: a\nthis is body\nmore\n", 0, G,
	  "Subject: a\r\n\r\nthis is body\r\nmore\r\n" },
	{ "bad field name", "Subject: a\nBad Name: x\n", 0, G,
	  "Subject: a\r\n\r\nBad Name: x\r\n" },
	{ "8-bit field name", "\xc3\x9c: x\n", 0, G, "\r\n\xc3\x9c: x\r\n" },
	{ "colon first", ": x\n", 0, G, "\r\n: x\r\n" },
	{ "no header", "\nbody: x\n", 0, G, "\r\nbody: x\r\n" },
	{ "first line indented", " indented\nS: x\n", 0, G,
	  "\r\n indented\r\nS: x\r\n" },
	{ "obs space before colon", "Subject : a\n\nb\n", 0, G,
	  "Subject : a\r\n\r\nb\r\n" },
	{ "body dot stuffing with -i", "S: a\n\n.\n\n..", 0, G | I,
	  "S: a\r\n\r\n..\r\n\r\n...\r\n" },

	/* fix-ups */
	{ "fixups added", "Subject: hi\n\nbody\n", 0, 0,
	  RECV "Subject: hi\r\n" DATE MID FROM "\r\nbody\r\n" },
	{ "fixups on empty input", "", 0, 0, RECV DATE MID FROM "\r\n" },
	{ "fixups not needed",
	  "From: a@b.org\nDate: x\nMessage-ID: <1@x>\n\nb\n", 0, 0,
	  RECV "From: a@b.org\r\nDate: x\r\nMessage-ID: <1@x>\r\n\r\nb\r\n" },
	{ "fixups case-insensitive",
	  "FROM: a@b.org\ndate: x\nmessage-id: <1@x>\n\nb\n", 0, 0,
	  RECV "FROM: a@b.org\r\ndate: x\r\nmessage-id: <1@x>\r\n\r\nb\r\n" },
	{ "received goes first", "Received: from x\nS: y\n\nb\n", 0, 0,
	  RECV "Received: from x\r\nS: y\r\n" DATE MID FROM "\r\nb\r\n" },
	{ "no header gets fixups", "just text\n", 0, 0,
	  RECV DATE MID FROM "\r\njust text\r\n" },
	{ "qualify cron",
	  "From: root (Cron Daemon)\nTo: root\nSubject: x\n\nb\n", 0, 0,
	  RECV "From: root@example.com (Cron Daemon)\r\n"
	  "To: root@example.com\r\nSubject: x\r\n" DATE MID "\r\nb\r\n" },
	{ "qualify keeps folding",
	  "To: a,\n b@x.org,\n\tc\nCc: Joe <joe>\nReply-To: r\nSender: s\n"
	  "Resent-From: rf\nResent-To: rt\nResent-Cc: rc\nResent-Sender: rs\n"
	  "X-Other: root\n\nb\n", 0, 0,
	  RECV "To: a@example.com,\r\n b@x.org,\r\n\tc@example.com\r\n"
	  "Cc: Joe <joe@example.com>\r\nReply-To: r@example.com\r\n"
	  "Sender: s@example.com\r\nResent-From: rf@example.com\r\n"
	  "Resent-To: rt@example.com\r\nResent-Cc: rc@example.com\r\n"
	  "Resent-Sender: rs@example.com\r\nX-Other: root\r\n"
	  DATE MID FROM "\r\nb\r\n" },
	{ "qualify fold right after a bare name",
	  "To: root\n\t, x@y.org\n\nb\n", 0, 0,
	  RECV "To: root@example.com\r\n\t, x@y.org\r\n" DATE MID FROM
	  "\r\nb\r\n" },
	{ "-G adds nothing", "To: root\nBcc: x@y.org\n\nb\n", 0, G,
	  "To: root\r\n\r\nb\r\n" },
};

START_TEST(test_transform)
{
	const struct xcase *c = &xcases[_i];
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	size_t len = c->inlen ? c->inlen : strlen(c->in), outlen;
	char *out;
	int rc;

	opts_fixed(&o);
	o.no_fixups = (c->flags & G) != 0;
	o.dot_ends = (c->flags & I) == 0;
	o.extract_rcpts = (c->flags & T) != 0;
	rc = RUN(c->in, len);
	ck_assert_msg(rc == 0, "%s: %s", c->name, err.msg);
	assert_bytes(out, outlen, c->out, strlen(c->out));
	ck_assert_uint_eq(info.size, outlen);
	ck_assert_int_eq(info.eightbit, strchr(c->out, '\xc3') != NULL);
	msg_info_free(&info);
	free(out);
}
END_TEST

/* A CR that ends one read(2) and an LF that starts the next: one line end. */
START_TEST(test_crlf_across_reads)
{
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	struct buf in, want;
	char *out;
	size_t outlen;

	msg_opts_init(&o);
	o.no_fixups = 1;
	buf_init(&in, 0);
	buf_init(&want, 0);
	buf_puts(&in, "S: a\n\n");
	buf_puts(&want, "S: a\r\n\r\n");
	while (in.len < 65535 - 3) {
		buf_puts(&in, "ab\r\n");
		buf_puts(&want, "ab\r\n");
	}
	while (in.len < 65535) {
		buf_putc(&in, 'z');
		buf_putc(&want, 'z');
	}
	buf_puts(&in, "\r\nlast\r\n");     /* CR is byte 65535, LF 65536 */
	buf_puts(&want, "\r\nlast\r\n");
	ck_assert_int_eq(in.data[65535], '\r');
	ck_assert_int_eq(RUN(in.data, in.len), 0);
	assert_bytes(out, outlen, want.data, want.len);
	buf_free(&in);
	buf_free(&want);
	free(out);
	msg_info_free(&info);
}
END_TEST

/* --- the From: the caller did not write ----------------------------- */

static const struct fcase {
	const char *full_name, *sender, *from;
} fcases[] = {
	{ "Joe User", "user@example.com",
	  "From: \"Joe User\" <user@example.com>" },
	{ NULL, "user@example.com", "From: user@example.com" },
	{ "", "user@example.com", "From: user@example.com" },
	{ "   ", "user@example.com", "From: user@example.com" },
	{ "Joe \"JJ\" User, Jr.", "u@x.org",
	  "From: \"Joe \\\"JJ\\\" User, Jr.\" <u@x.org>" },
	{ "back\\slash", "u@x.org", "From: \"back\\\\slash\" <u@x.org>" },
	{ "evil\r\nBcc: x@y.org", "u@x.org",
	  "From: \"evilBcc: x@y.org\" <u@x.org>" },
	{ "Joe User", "",
	  "From: \"Joe User\" <MAILER-DAEMON@host.example.com>" },
	{ NULL, "", "From: MAILER-DAEMON@host.example.com" },
	{ "J\xc3\xb6rg", "u@x.org", "From: =?UTF-8?B?SsO2cmc=?= <u@x.org>" },
};

START_TEST(test_added_from)
{
	const struct fcase *c = &fcases[_i];
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	char want[512], *out;
	size_t outlen;

	opts_fixed(&o);
	o.full_name = c->full_name;
	o.sender = c->sender;
	str_fmt(want, sizeof(want), "%sS: x\r\n%s%s%s\r\n\r\nb\r\n",
	    RECV, DATE, MID, c->from);
	ck_assert_int_eq(RUN("S: x\n\nb\n", 8), 0);
	assert_bytes(out, outlen, want, strlen(want));
	ck_assert(!info.had_from && !info.had_date && !info.had_message_id);
	ck_assert_int_eq(info.eightbit, 0);
	free(out);
	msg_info_free(&info);
}
END_TEST

/* base64 of 22 and 16 times U+00E9 (44 and 32 octets) */
#define W44 "w6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6k="
#define W32 "w6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6k="

/* A long 8-bit name becomes several encoded-words, none split mid-character. */
START_TEST(test_added_from_long_utf8)
{
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	char name[200], *out, *p;
	size_t outlen, n = 0;

	for (int i = 0; i < 60; i++) {   /* 60 x U+00E9, 120 bytes */
		name[n++] = '\xc3';
		name[n++] = '\xa9';
	}
	name[n] = '\0';
	opts_fixed(&o);
	o.full_name = name;
	ck_assert_int_eq(RUN("S: x\n\n", 6), 0);
	p = strstr(out, "From: =?UTF-8?B?");
	ck_assert_ptr_nonnull(p);
	/* 45 bytes would split a character: 44 + 44 + 32. */
	ck_assert_str_eq(p, "From: =?UTF-8?B?" W44 "?= =?UTF-8?B?" W44 "?= "
	    "=?UTF-8?B?" W32 "?= <user@example.com>\r\n\r\n");
	free(out);
	msg_info_free(&info);
}
END_TEST

/* --- -t and From: addresses ----------------------------------------- */

static const struct tcase_rcpt {
	const char *in;
	const char *rcpts;      /* space-separated; NULL: ERR_DATA expected */
	const char *errpart;
} tcases[] = {
	{ "To: a@x.org, B <b@y.org>\nCc: c@z.org\nBcc: d@w.org\n\nb\n",
	  "a@x.org b@y.org c@z.org d@w.org", NULL },
	{ "To: a@x.org\nResent-To: r@x.org\nCc: c@x.org\nResent-Bcc: rb@x.org\n"
	  "resent-cc: rc@x.org\n\n", "r@x.org rb@x.org rc@x.org", NULL },
	{ "To: undisclosed-recipients:;\nCc: team: a@x.org, b@y.org;\n\n",
	  "a@x.org b@y.org", NULL },
	{ "To: a@x.org,\n  b@y.org,\n\t\"Doe, John\" <j@z.org>\n\n",
	  "a@x.org b@y.org j@z.org", NULL },
	{ "To: root, Joe <joe>\nSubject: s\n\n", "root joe", NULL },
	{ "Subject: no recipients\n\n", "", NULL },
	{ "To:\nCc: c@x.org\n\n", "c@x.org", NULL },
	{ "To: a@x.org\nCc: <broken@\n\n", NULL, "Cc" },
	{ "To: a@x.org, (unclosed comment\n\n", NULL, "To" },
};

START_TEST(test_extract)
{
	const struct tcase_rcpt *c = &tcases[_i];
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	struct buf got;
	char *out;
	size_t outlen;
	int rc;

	opts_fixed(&o);
	o.extract_rcpts = 1;
	rc = RUN(c->in, strlen(c->in));
	if (c->rcpts == NULL) {
		ck_assert_int_eq(rc, -1);
		ck_assert_int_eq(err.cls, ERR_DATA);
		ck_assert_msg(strstr(err.msg, c->errpart) != NULL, "%s",
		    err.msg);
		ck_assert_uint_eq(info.rcpts.n, 0);
		free(out);
		return;
	}
	ck_assert_msg(rc == 0, "%s", err.msg);
	buf_init(&got, 0);
	buf_puts(&got, "");
	for (size_t i = 0; i < info.rcpts.n; i++) {
		if (i > 0)
			buf_putc(&got, ' ');
		buf_puts(&got, info.rcpts.v[i]);
	}
	ck_assert_str_eq(got.data, c->rcpts);
	/* Bcc and Resent-Bcc never reach the queue. */
	ck_assert_ptr_null(strstr(out, "Bcc"));
	ck_assert_ptr_null(strstr(out, "rb@x.org"));
	buf_free(&got);
	free(out);
	msg_info_free(&info);
}
END_TEST

START_TEST(test_no_extract_without_t)
{
	static const char in[] = "To: a@x.org\nCc: <broken@\n\n";
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	char *out;
	size_t outlen;

	opts_fixed(&o);
	ck_assert_int_eq(RUN(in, strlen(in)), 0);
	ck_assert_uint_eq(info.rcpts.n, 0);
	free(out);
	msg_info_free(&info);
}
END_TEST

static const struct {
	const char *in, *from;
	int fixups;
} fromcases[] = {
	{ "From: \"X, Y\" <f@x.org>, g@y.org\n\n", "f@x.org", 1 },
	{ "From: root (Cron Daemon)\n\n", "root", 1 },
	{ "From: f@x.org\n\n", "f@x.org", 0 },
	{ "Subject: none\n\n", NULL, 1 },
	{ "From: <broken\n\n", NULL, 1 },
};

START_TEST(test_from_addr)
{
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	char *out;
	size_t outlen;
	const char *in = fromcases[_i].in;

	opts_fixed(&o);
	o.no_fixups = !fromcases[_i].fixups;
	ck_assert_int_eq(RUN(in, strlen(in)), 0);
	if (fromcases[_i].from == NULL)
		ck_assert_ptr_null(info.from_addr);
	else
		ck_assert_str_eq(info.from_addr, fromcases[_i].from);
	ck_assert_int_eq(info.had_from, strncmp(in, "From:", 5) == 0);
	free(out);
	msg_info_free(&info);
}
END_TEST

/* --- long lines ----------------------------------------------------- */

static void
assert_line_lengths(const char *out, size_t len)
{
	size_t start = 0;

	for (size_t i = 0; i < len; i++) {
		if (out[i] == '\n') {
			size_t octets = i + 1 - start;

			ck_assert_msg(i > 0 && out[i - 1] == '\r',
			    "bare LF at %zu", i);
			/* a stuffed dot does not count (RFC 5321 4.5.3.1.6) */
			ck_assert_msg(octets <= MSG_LINE_MAX + 2 +
			    (out[start] == '.'), "line of %zu octets", octets);
			start = i + 1;
		} else if (out[i] == '\r') {
			ck_assert_msg(i + 1 < len && out[i + 1] == '\n',
			    "bare CR at %zu", i);
		}
	}
	ck_assert_uint_eq(start, len);
}

START_TEST(test_long_header_no_space)
{
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	struct buf in, want;
	char *out;
	size_t outlen;

	msg_opts_init(&o);
	o.no_fixups = 1;
	buf_init(&in, 0);
	buf_init(&want, 0);
	buf_puts(&in, "X-Long: ");
	for (int i = 0; i < 2000; i++)
		buf_putc(&in, 'a');
	buf_puts(&in, "\n\nb\n");
	/* folded at the only usable space, then split with CRLF SP */
	buf_puts(&want, "X-Long:\r\n ");
	for (int i = 0; i < 997; i++)
		buf_putc(&want, 'a');
	buf_puts(&want, "\r\n ");
	for (int i = 0; i < 997; i++)
		buf_putc(&want, 'a');
	buf_puts(&want, "\r\n aaaaaa\r\n\r\nb\r\n");
	ck_assert_int_eq(RUN(in.data, in.len), 0);
	assert_bytes(out, outlen, want.data, want.len);
	assert_line_lengths(out, outlen);
	buf_free(&in);
	buf_free(&want);
	free(out);
	msg_info_free(&info);
}
END_TEST

START_TEST(test_long_header_words)
{
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	struct buf in, unfolded;
	char *out;
	size_t outlen, nlines = 0;

	msg_opts_init(&o);
	o.no_fixups = 1;
	buf_init(&in, 0);
	buf_init(&unfolded, 0);
	buf_puts(&in, "Subject:");
	while (in.len < 2000)
		buf_puts(&in, " word");
	ck_assert_int_eq(RUN(in.data, in.len), 0);
	assert_line_lengths(out, outlen);
	/* Folding only added CRLF before white space: unfolding restores it. */
	for (size_t i = 0; i < outlen; i++) {
		if (out[i] == '\r' && i + 2 < outlen && out[i + 2] == ' ') {
			i++;
			nlines++;
			continue;
		}
		buf_putc(&unfolded, out[i]);
	}
	ck_assert_uint_eq(nlines, 2);   /* 2000 octets: three lines */
	buf_puts(&in, "\r\n\r\n");
	ck_assert_str_eq(unfolded.data, in.data);
	buf_free(&in);
	buf_free(&unfolded);
	free(out);
	msg_info_free(&info);
}
END_TEST

START_TEST(test_long_body_line)
{
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	struct buf in, want;
	char *out;
	size_t outlen;

	msg_opts_init(&o);
	o.no_fixups = 1;
	buf_init(&in, 0);
	buf_init(&want, 0);
	buf_puts(&in, "S: a\n\n");
	buf_puts(&want, "S: a\r\n\r\n");
	for (int i = 0; i < 2000; i++)
		buf_putc(&in, 'b');
	buf_putc(&in, '\n');
	for (int k = 0; k < 2; k++) {
		for (int i = 0; i < 998; i++)
			buf_putc(&want, 'b');
		buf_puts(&want, "\r\n");
	}
	buf_puts(&want, "bbbb\r\n");
	/* exactly 998 octets: not split */
	for (int i = 0; i < 998; i++) {
		buf_putc(&in, 'c');
		buf_putc(&want, 'c');
	}
	buf_puts(&in, "\n");
	buf_puts(&want, "\r\n");
	/* the piece after a split starts with "." and is stuffed */
	for (int i = 0; i < 998; i++) {
		buf_putc(&in, 'd');
		buf_putc(&want, 'd');
	}
	buf_puts(&in, ".end\n");
	buf_puts(&want, "\r\n..end\r\n");
	ck_assert_int_eq(RUN(in.data, in.len), 0);
	assert_bytes(out, outlen, want.data, want.len);
	assert_line_lengths(out, outlen);
	buf_free(&in);
	buf_free(&want);
	free(out);
	msg_info_free(&info);
}
END_TEST

/* A message without a header whose first line is huge is body, not header. */
START_TEST(test_huge_first_line)
{
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	size_t n = 2 * 1024 * 1024, outlen;
	char *in = xmalloc(n + 1), *out;

	memset(in, 'x', n);
	in[n] = '\n';
	msg_opts_init(&o);
	o.no_fixups = 1;
	o.max_header_size = 4096;
	ck_assert_int_eq(RUN(in, n + 1), 0);
	/* separator + lines of 998 + CRLF */
	ck_assert_uint_eq(outlen, 2 + n + 2 * ((n + 997) / 998));
	assert_line_lengths(out, outlen);
	free(in);
	free(out);
	msg_info_free(&info);
}
END_TEST

/* --- flags, limits, errors ------------------------------------------ */

static const struct { const char *in; int eightbit; } eights[] = {
	{ "S: plain\n\nbody\n", 0 },
	{ "S: caf\xc3\xa9\n\nbody\n", 1 },
	{ "S: plain\n\nbody \xff\n", 1 },
	{ "S: plain\n\nbody\n\x80", 1 },
};

START_TEST(test_eightbit)
{
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	char *out;
	size_t outlen;

	opts_fixed(&o);
	ck_assert_int_eq(RUN(eights[_i].in, strlen(eights[_i].in)), 0);
	ck_assert_int_eq(info.eightbit, eights[_i].eightbit);
	free(out);
	msg_info_free(&info);
}
END_TEST

START_TEST(test_size_limit)
{
	static const char in[] = "S: a\n\nbody line\n";
	static const char wire[] = "S: a\r\n\r\nbody line\r\n";
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	char *out;
	size_t outlen;

	msg_opts_init(&o);
	o.no_fixups = 1;
	o.max_size = sizeof(wire) - 1;
	ck_assert_int_eq(RUN(in, strlen(in)), 0);
	ck_assert_uint_eq(info.size, sizeof(wire) - 1);
	free(out);
	msg_info_free(&info);

	o.max_size = sizeof(wire) - 2;
	ck_assert_int_eq(RUN(in, strlen(in)), -1);
	ck_assert_int_eq(err.cls, ERR_DATA);
	ck_assert_str_eq(err.msg, "message exceeds the size limit of 18 bytes");
	ck_assert_ptr_null(info.rcpts.v);
	free(out);
}
END_TEST

/* The limit stops reading: input beyond it is never consumed. */
START_TEST(test_size_limit_stops_early)
{
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	int p[2], ofd;
	pid_t pid;
	char line[100];

	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* An endless writer: the reader must give up by itself. */
		close(p[0]);
		signal(SIGPIPE, SIG_DFL);
		memset(line, 'x', sizeof(line) - 1);
		line[sizeof(line) - 1] = '\n';
		(void)write_all(p[1], "S: a\n\n", 6);
		while (write_all(p[1], line, sizeof(line)) == 0)
			;
		_exit(0);
	}
	close(p[1]);
	msg_opts_init(&o);
	o.no_fixups = 1;
	o.max_size = 1024 * 1024;
	ofd = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_eq(message_read(p[0], ofd, &o, &info, &err), -1);
	ck_assert_int_eq(err.cls, ERR_DATA);
	close(p[0]);
	close(ofd);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
}
END_TEST

START_TEST(test_header_limits)
{
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	struct buf in;
	char *out;
	size_t outlen;

	msg_opts_init(&o);
	o.no_fixups = 1;
	buf_init(&in, 0);
	for (int i = 0; i < 3; i++)
		buf_printf(&in, "X-%d: value\n", i);
	buf_puts(&in, "\nbody\n");
	o.max_headers = 3;
	ck_assert_int_eq(RUN(in.data, in.len), 0);
	free(out);
	msg_info_free(&info);

	o.max_headers = 2;
	ck_assert_int_eq(RUN(in.data, in.len), -1);
	ck_assert_int_eq(err.cls, ERR_DATA);
	ck_assert_str_eq(err.msg, "message header has more than 2 fields");
	free(out);

	o.max_headers = 1000;
	o.max_header_size = 20;
	ck_assert_int_eq(RUN(in.data, in.len), -1);
	ck_assert_int_eq(err.cls, ERR_DATA);
	ck_assert_str_eq(err.msg,
	    "message header exceeds the limit of 20 bytes");
	free(out);

	/* one endless folded field */
	buf_reset(&in);
	buf_puts(&in, "Subject: x\n");
	for (int i = 0; i < 1000; i++)
		buf_puts(&in, " continued\n");
	o.max_header_size = 4096;
	ck_assert_int_eq(RUN(in.data, in.len), -1);
	ck_assert_int_eq(err.cls, ERR_DATA);
	free(out);
	buf_free(&in);
}
END_TEST

START_TEST(test_write_error_full)
{
	static const char in[] = "S: a\n\nbody\n";
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	int ifd = open_input(in, strlen(in));
	int ofd = open("/dev/full", O_WRONLY);

	ck_assert_int_ge(ofd, 0);
	opts_fixed(&o);
	ck_assert_int_eq(message_read(ifd, ofd, &o, &info, &err), -1);
	ck_assert_int_eq(err.cls, ERR_TEMP);
	ck_assert_str_eq(err.msg,
	    "cannot write queue file: No space left on device");
	close(ifd);
	close(ofd);
}
END_TEST

START_TEST(test_write_error_pipe)
{
	static const char in[] = "S: a\n\nbody\n";
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	int ifd = open_input(in, strlen(in)), p[2];

	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(pipe(p), 0);
	close(p[0]);
	opts_fixed(&o);
	ck_assert_int_eq(message_read(ifd, p[1], &o, &info, &err), -1);
	ck_assert_int_eq(err.cls, ERR_TEMP);
	ck_assert_msg(strstr(err.msg, strerror(EPIPE)) != NULL, "%s", err.msg);
	close(ifd);
	close(p[1]);
}
END_TEST

START_TEST(test_read_error)
{
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	int ifd = open(tmpdir, O_RDONLY | O_DIRECTORY);
	int ofd = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	opts_fixed(&o);
	ck_assert_int_eq(message_read(ifd, ofd, &o, &info, &err), -1);
	ck_assert_int_eq(err.cls, ERR_IO);
	ck_assert_msg(strstr(err.msg, strerror(EISDIR)) != NULL, "%s", err.msg);
	close(ifd);
	close(ofd);
}
END_TEST

/* --- streaming ------------------------------------------------------ */

#define BIG_LINES 280000            /* 75-octet lines: about 20 MB */

static void
big_line(char l[80], long i)
{
	/* 74 octets + LF; every 7th line starts with a dot */
	snprintf(l, 80, "%c%010u-abcdefghijklmnopqrstuvwxyz0123456789"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ\n", i % 7 == 0 ? '.' : 'L',
	    (unsigned)i);
}

START_TEST(test_stream_20mb)
{
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	struct rusage ru0, ru1;
	int p[2], ofd, fd;
	pid_t pid;
	char line[80], want[80], got[80];
	long i;

	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char chunk[75 * 64];
		size_t n = 0;

		close(p[0]);
		(void)write_all(p[1], "Subject: big\n\n", 14);
		for (i = 0; i < BIG_LINES; i++) {
			big_line(line, i);
			memcpy(chunk + n, line, 75);
			n += 75;
			if (n == sizeof(chunk) || i == BIG_LINES - 1) {
				if (write_all(p[1], chunk, n) < 0)
					_exit(1);
				n = 0;
			}
		}
		_exit(0);
	}
	close(p[1]);
	getrusage(RUSAGE_SELF, &ru0);
	opts_fixed(&o);
	ofd = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(ofd, 0);
	ck_assert_int_eq(message_read(p[0], ofd, &o, &info, &err), 0);
	getrusage(RUSAGE_SELF, &ru1);
	close(p[0]);
	close(ofd);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	/* The body went through fixed buffers: no growth near 20 MB. */
	ck_assert_int_lt(ru1.ru_maxrss - ru0.ru_maxrss, 8 * 1024);

	/* Check the body line by line from the file, without loading it. */
	fd = open(outpath, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	{
		struct stat sb;
		size_t hdr = strlen(RECV "Subject: big\r\n" DATE MID FROM
		    "\r\n");

		ck_assert_int_eq(fstat(fd, &sb), 0);
		ck_assert_uint_eq((unsigned long long)sb.st_size, info.size);
		/* 74 octets + CRLF per line, one stuffed dot in 7 */
		ck_assert_uint_eq(info.size, hdr +
		    (unsigned long long)BIG_LINES * 76 + (BIG_LINES + 6) / 7);
		ck_assert_int_eq(lseek(fd, (off_t)hdr, SEEK_SET), (off_t)hdr);
	}
	{
		FILE *f = fdopen(fd, "r");

		ck_assert_ptr_nonnull(f);
		for (i = 0; i < BIG_LINES; i++) {
			size_t wl;

			big_line(line, i);
			wl = 0;
			if (line[0] == '.')
				want[wl++] = '.';
			memcpy(want + wl, line, 74);
			wl += 74;
			memcpy(want + wl, "\r\n", 3);
			ck_assert_ptr_nonnull(fgets(got, sizeof(got), f));
			ck_assert_str_eq(got, want);
		}
		ck_assert_int_eq(fgetc(f), EOF);
		fclose(f);
	}
	msg_info_free(&info);
}
END_TEST

/* --- dates and defaults --------------------------------------------- */

static const struct { const char *tz; time_t t; const char *date; } dates[] = {
	{ "UTC0", 1700000000, "Tue, 14 Nov 2023 22:13:20 +0000" },
	{ "CET-1", 1700000000, "Tue, 14 Nov 2023 23:13:20 +0100" },
	{ "<-0330>3:30", 1700000000, "Tue, 14 Nov 2023 18:43:20 -0330" },
	{ "<+0545>-5:45", 0, "Thu, 1 Jan 1970 05:45:00 +0545" },
	{ "UTC0", 1709175070, "Thu, 29 Feb 2024 02:51:10 +0000" },
};

START_TEST(test_date)
{
	char out[64];

	setenv("TZ", dates[_i].tz, 1);
	tzset();
	rfc5322_date(dates[_i].t, out, sizeof(out));
	ck_assert_str_eq(out, dates[_i].date);
}
END_TEST

START_TEST(test_opts_init)
{
	struct msg_opts o;
	time_t before = time(NULL);

	memset(&o, 0x5a, sizeof(o));
	msg_opts_init(&o);
	ck_assert_int_eq(o.dot_ends, 1);
	ck_assert_int_eq(o.extract_rcpts, 0);
	ck_assert_int_eq(o.no_fixups, 0);
	ck_assert_ptr_null(o.qid);
	ck_assert_ptr_null(o.full_name);
	ck_assert_uint_eq(o.max_size, 0);
	ck_assert_uint_eq(o.max_header_size, 1024 * 1024);
	ck_assert_uint_eq(o.max_headers, 1000);
	ck_assert_int_eq(o.uid, getuid());
	ck_assert(o.now >= before && o.now <= time(NULL));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("message");
	TCase *tc = tcase_create("core");
	TCase *big = tcase_create("big");
	SRunner *sr;
	int failed;

	setenv("TZ", "UTC0", 1);
	tzset();
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_transform, 0, NELEM(xcases));
	tcase_add_test(tc, test_crlf_across_reads);
	tcase_add_loop_test(tc, test_added_from, 0, NELEM(fcases));
	tcase_add_test(tc, test_added_from_long_utf8);
	tcase_add_loop_test(tc, test_extract, 0, NELEM(tcases));
	tcase_add_test(tc, test_no_extract_without_t);
	tcase_add_loop_test(tc, test_from_addr, 0, NELEM(fromcases));
	tcase_add_test(tc, test_long_header_no_space);
	tcase_add_test(tc, test_long_header_words);
	tcase_add_test(tc, test_long_body_line);
	tcase_add_test(tc, test_huge_first_line);
	tcase_add_loop_test(tc, test_eightbit, 0, NELEM(eights));
	tcase_add_test(tc, test_size_limit);
	tcase_add_test(tc, test_size_limit_stops_early);
	tcase_add_test(tc, test_header_limits);
	tcase_add_test(tc, test_write_error_full);
	tcase_add_test(tc, test_write_error_pipe);
	tcase_add_test(tc, test_read_error);
	tcase_add_loop_test(tc, test_date, 0, NELEM(dates));
	tcase_add_test(tc, test_opts_init);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(big, setup, teardown);
	tcase_set_timeout(big, 120);
	tcase_add_test(big, test_stream_20mb);
	suite_add_tcase(s, big);

	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
