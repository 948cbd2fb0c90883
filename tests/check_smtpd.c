/*
 * Unit tests for smtpd.c and the -bs data path of message.c: the command
 * parser (table: command -> parsed result or reply), the buffered message
 * reader (nothing read past the "." line, CRLF-only end marker, reading on
 * after a refusal), and whole sessions from a scripted client against a
 * temporary queue (reply codes, what is on disk).
 */
#include "autoconf.h"

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aliases.h"
#include "config.h"
#include "log.h"
#include "message.h"
#include "smtpd.h"
#include "util.h"

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* --- the parser ----------------------------------------------------- */

static const struct pcase {
	const char *line;
	int code;                  /* 0: parsed */
	int verb;
	const char *arg;
	unsigned long long size;
	int body, utf8;
	const char *reply;         /* prefix of the reply (code != 0) */
} pcases[] = {
	{ "HELO client.example.org", 0, SMTPD_HELO, "client.example.org", 0, 0, 0, NULL },
	{ "ehlo [127.0.0.1]", 0, SMTPD_EHLO, "[127.0.0.1]", 0, 0, 0, NULL },
	{ "HELO", 501, 0, NULL, 0, 0, 0, "501 5.5.4 Syntax: HELO hostname" },
	{ "EHLO   ", 501, 0, NULL, 0, 0, 0, "501 5.5.4 Syntax: EHLO" },
	{ "MAIL FROM:<a@example.org>", 0, SMTPD_MAIL, "a@example.org", 0, 0, 0, NULL },
	{ "mail from:<>", 0, SMTPD_MAIL, "", 0, 0, 0, NULL },
	{ "MAIL FROM: <a@example.org>", 0, SMTPD_MAIL, "a@example.org", 0, 0, 0, NULL },
	{ "MAIL FROM:a@example.org", 0, SMTPD_MAIL, "a@example.org", 0, 0, 0, NULL },
	{ "MAIL FROM:<root>", 0, SMTPD_MAIL, "root", 0, 0, 0, NULL },
	{ "MAIL FROM:<@relay.org,@b.org:a@example.org>", 0, SMTPD_MAIL, "a@example.org",
	  0, 0, 0, NULL },
	{ "MAIL FROM:<\"a > b\"@example.org> SIZE=1000", 0, SMTPD_MAIL,
	  "\"a > b\"@example.org", 1000, 0, 0, NULL },
	{ "MAIL FROM:<a@example.org> SIZE=1000 BODY=8BITMIME SMTPUTF8", 0, SMTPD_MAIL,
	  "a@example.org", 1000, SMTPD_BODY_8BITMIME, 1, NULL },
	{ "MAIL FROM:<a@example.org> body=7bit", 0, SMTPD_MAIL, "a@example.org", 0,
	  SMTPD_BODY_7BIT, 0, NULL },
	{ "MAIL FROM:<a@example.org> SIZE=5000", 552, 0, NULL, 0, 0, 0,
	  "552 5.3.4 Error: message size exceeds the fixed limit" },
	{ "MAIL FROM:<a@example.org> SIZE=12x", 501, 0, NULL, 0, 0, 0,
	  "501 5.5.4 Error: bad SIZE parameter" },
	{ "MAIL FROM:<a@example.org> SIZE=99999999999999999999999", 501, 0, NULL, 0, 0, 0,
	  "501 5.5.4" },
	{ "MAIL FROM:<a@example.org> BODY=BINARYMIME", 501, 0, NULL, 0, 0, 0,
	  "501 5.5.4 Error: unsupported BODY parameter" },
	{ "MAIL FROM:<a@example.org> RET=HDRS", 555, 0, NULL, 0, 0, 0,
	  "555 5.5.4 Error: unsupported MAIL parameter" },
	{ "MAIL FROM:<a@example.org>x", 501, 0, NULL, 0, 0, 0, "501 5.1.7" },
	{ "MAIL FROM:<a@example.org", 501, 0, NULL, 0, 0, 0, "501 5.1.7" },
	{ "MAIL FROM:<a@@example.org>", 501, 0, NULL, 0, 0, 0,
	  "501 5.1.7 Error: bad sender address syntax" },
	{ "MAIL FROM:", 501, 0, NULL, 0, 0, 0, "501 5.1.7" },
	{ "MAIL TO:<a@example.org>", 501, 0, NULL, 0, 0, 0,
	  "501 5.5.4 Syntax: MAIL FROM:<address>" },
	{ "MAIL", 501, 0, NULL, 0, 0, 0, "501 5.5.4 Syntax: MAIL FROM:<address>" },
	{ "RCPT TO:<b@example.org>", 0, SMTPD_RCPT, "b@example.org", 0, 0, 0, NULL },
	{ "RCPT TO:<root>", 0, SMTPD_RCPT, "root", 0, 0, 0, NULL },
	{ "rcpt to: <\"Joe Q\"@example.org>  ", 0, SMTPD_RCPT, "\"Joe Q\"@example.org",
	  0, 0, 0, NULL },
	{ "RCPT TO:<>", 501, 0, NULL, 0, 0, 0, "501 5.1.3 Error: bad recipient" },
	{ "RCPT TO:<b@example.org> NOTIFY=NEVER", 555, 0, NULL, 0, 0, 0, "555 5.5.4" },
	{ "RCPT FROM:<b@example.org>", 501, 0, NULL, 0, 0, 0,
	  "501 5.5.4 Syntax: RCPT TO:<address>" },
	{ "DATA", 0, SMTPD_DATA, "", 0, 0, 0, NULL },
	{ "data ", 0, SMTPD_DATA, "", 0, 0, 0, NULL },
	{ "DATA now", 501, 0, NULL, 0, 0, 0, "501 5.5.4 Syntax: DATA" },
	{ "RSET", 0, SMTPD_RSET, "", 0, 0, 0, NULL },
	{ "RSET x", 501, 0, NULL, 0, 0, 0, "501 5.5.4 Syntax: RSET" },
	{ "NOOP", 0, SMTPD_NOOP, "", 0, 0, 0, NULL },
	{ "NOOP anything at all", 0, SMTPD_NOOP, "anything at all", 0, 0, 0, NULL },
	{ "VRFY root", 0, SMTPD_VRFY, "root", 0, 0, 0, NULL },
	{ "VRFY", 501, 0, NULL, 0, 0, 0, "501 5.5.4 Syntax: VRFY address" },
	{ "HELP", 0, SMTPD_HELP, "", 0, 0, 0, NULL },
	{ "QUIT", 0, SMTPD_QUIT, "", 0, 0, 0, NULL },
	{ "QUIT now", 501, 0, NULL, 0, 0, 0, "501 5.5.4 Syntax: QUIT" },
	{ "EXPN staff", 502, 0, NULL, 0, 0, 0, "502 5.5.1 Error: command not implemented" },
	{ "STARTTLS", 502, 0, NULL, 0, 0, 0, "502 5.5.1" },
	{ "AUTH PLAIN AGFiYwBkZWY=", 502, 0, NULL, 0, 0, 0, "502 5.5.1" },
	{ "FOO", 500, 0, NULL, 0, 0, 0, "500 5.5.1 Error: command not recognized" },
	{ "", 500, 0, NULL, 0, 0, 0, "500 5.5.1" },
	{ "MAILFROM:<a@example.org>", 500, 0, NULL, 0, 0, 0, "500 5.5.1" },
	{ "HELOTHEREVERYLONGVERB x", 500, 0, NULL, 0, 0, 0, "500 5.5.1" },
	{ "MAIL FROM:<a@example.org>\rRCPT TO:<x@evil.org>", 500, 0, NULL, 0, 0, 0,
	  "500 5.5.2 Error: control character in command" },
	{ "HELO a\001b", 500, 0, NULL, 0, 0, 0, "500 5.5.2" },
};

START_TEST(test_parse)
{
	const struct pcase *c = &pcases[_i];
	struct smtpd_cmd cmd;
	char reply[SMTPD_REPLY_MAX];
	int code = smtpd_parse(c->line, strlen(c->line), 4096, &cmd, reply,
	    sizeof(reply));

	ck_assert_msg(code == c->code, "%s: code %d (%s)", c->line, code, reply);
	if (code == 0) {
		ck_assert_int_eq(cmd.verb, c->verb);
		ck_assert_str_eq(cmd.arg, c->arg);
		ck_assert_uint_eq(cmd.size, c->size);
		ck_assert_int_eq(cmd.body, c->body);
		ck_assert_int_eq(cmd.smtputf8, c->utf8);
	} else {
		ck_assert_msg(strncmp(reply, c->reply, strlen(c->reply)) == 0,
		    "%s: reply %s", c->line, reply);
		ck_assert_int_eq(atoi(reply), code);
	}
}
END_TEST

/* The parser's own bound is the most max_smtp_line may be. */
START_TEST(test_parse_limits)
{
	static char line[SMTPD_LINE_LIMIT + 2];
	static struct smtpd_cmd cmdbuf;
	struct smtpd_cmd *cmd = &cmdbuf;
	char reply[SMTPD_REPLY_MAX];

	memset(line, 'x', sizeof(line));
	memcpy(line, "NOOP ", 5);
	ck_assert_int_eq(smtpd_parse(line, SMTPD_LINE_LIMIT, 0, cmd, reply,
	    sizeof(reply)), 0);
	ck_assert_uint_eq(strlen(cmd->arg), SMTPD_LINE_LIMIT - 5);
	ck_assert_int_eq(smtpd_parse(line, SMTPD_LINE_LIMIT + 1, 0, cmd, reply,
	    sizeof(reply)), 500);
	ck_assert_str_eq(reply, "500 5.5.2 Error: line too long");
	/* a NUL inside the counted length */
	ck_assert_int_eq(smtpd_parse("NOOP a\0b", 8, 0, cmd, reply, sizeof(reply)), 500);
	/* no size limit */
	ck_assert_int_eq(smtpd_parse("MAIL FROM:<> SIZE=999999999999", 30, 0, cmd,
	    reply, sizeof(reply)), 0);
	ck_assert_uint_eq(cmd->size, 999999999999ULL);
}
END_TEST

/* --- the -bs message reader ----------------------------------------- */

static char tmpdir[64];

static void
setup(void)
{
	str_copy(tmpdir, "/tmp/check_smtpd.XXXXXX", sizeof(tmpdir));
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
rm_tree(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;

	if (d == NULL) {
		unlink(path);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		char sub[512];

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		str_fmt(sub, sizeof(sub), "%s/%s", path, de->d_name);
		rm_tree(sub);
	}
	closedir(d);
	rmdir(path);
}

static void
teardown(void)
{
	rm_tree(tmpdir);
}

/* A file holding text, opened for reading. */
static int
input_file(const char *name, const char *text, size_t len)
{
	char path[128];
	int fd;

	str_fmt(path, sizeof(path), "%s/%s", tmpdir, name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write_all(fd, text, len), 0);
	ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

static char *
slurp_fd(int fd, size_t *len)
{
	struct buf b;

	buf_init(&b, 0);
	ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
	ck_assert_int_eq(read_file_capped(fd, &b, 64 * 1024 * 1024), 0);
	*len = b.len;
	return b.data ? b.data : xstrdup("");
}

static const struct dcase {
	const char *in;
	int crlf_dots;
	unsigned long long max_size;
	int rc, ended, too_big;
	const char *body;          /* wire form after the header's empty line */
	const char *rest;          /* left in the input buffer */
} dcases[] = {
	/* pipelined: the next command stays in the buffer */
	{ "\r\nbody\r\n..dot\r\n.\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<c@d.org>\r\n",
	  1, 0, 0, 1, 0, "body\r\n..dot\r\n", "MAIL FROM:<a@b.org>\r\nRCPT TO:<c@d.org>\r\n" },
	/* bare LF and bare CR never end the message in a CRLF session */
	{ "\r\na\n.\nb\r.\rc\r\n.\r\nQUIT\r\n", 1, 0, 0, 1, 0,
	  "a\r\n..\r\nb\r\n..\r\nc\r\n", "QUIT\r\n" },
	{ "\r\na\r\n.\nMAIL FROM:<x@evil.org>\r\n.\r\nQUIT\r\n", 1, 0, 0, 1, 0,
	  "a\r\n..\r\nMAIL FROM:<x@evil.org>\r\n", "QUIT\r\n" },
	/* ... nor unstuff a dot after a bare LF */
	{ "\r\na\n..x\r\n..y\r\n.\r\n", 1, 0, 0, 1, 0, "a\r\n...x\r\n..y\r\n", "" },
	/* an LF session: LF is the line end for everything */
	{ "\na\n..x\n.\nQUIT\n", 0, 0, 0, 1, 0, "a\r\n..x\r\n", "QUIT\n" },
	/* input ends before the "." line: an error, nothing usable */
	{ "\r\nbody\r\n", 1, 0, -1, 0, 0, NULL, "" },
	{ "\r\nbody\r\n.", 1, 0, -1, 0, 0, NULL, "" },
	/* too big: read on to the ".", the next command is kept */
	{ "\r\n0123456789012345678901234567890123456789\r\nmore\r\n.\r\nRSET\r\n", 1, 20,
	  -1, 1, 1, NULL, "RSET\r\n" },
	{ "\r\n0123456789012345678901234567890123456789\r\nmore\r\n", 1, 20,
	  -1, 0, 1, NULL, "" },
};

START_TEST(test_data)
{
	const struct dcase *c = &dcases[_i];
	struct msg_input in;
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	int ofd, rc;
	char path[128];

	msg_opts_init(&o);
	o.no_fixups = 1;
	o.require_end = 1;
	o.crlf_dots = c->crlf_dots;
	o.max_size = c->max_size;
	msg_input_init(&in, input_file("in", c->in, strlen(c->in)));
	str_fmt(path, sizeof(path), "%s/out", tmpdir);
	ofd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(ofd, 0);
	rc = message_read_input(&in, ofd, &o, &info, &err);
	ck_assert_int_eq(rc, c->rc);
	ck_assert_int_eq(info.ended, c->ended);
	ck_assert_int_eq(info.too_big, c->too_big);
	if (rc == 0) {
		size_t len;
		char *out = slurp_fd(ofd, &len);

		ck_assert(strncmp(out, "\r\n", 2) == 0);
		ck_assert_str_eq(out + 2, c->body);
		free(out);
		msg_info_free(&info);
	} else {
		ck_assert_int_eq(err.cls, c->too_big ? ERR_DATA : ERR_PROTO);
	}
	ck_assert_uint_eq(in.len - in.pos, strlen(c->rest));
	ck_assert(memcmp(in.buf + in.pos, c->rest, strlen(c->rest)) == 0);
	close(ofd);
	close(in.fd);
	msg_input_free(&in);
}
END_TEST

START_TEST(test_skip)
{
	const char *text = "Subject: x\r\n\r\n..\r\n.x\n.\r\n.x\r\n.\r\nNOOP\r\n";
	struct msg_input in;
	struct msg_opts o;
	struct err err;

	msg_opts_init(&o);
	o.crlf_dots = 1;
	msg_input_init(&in, input_file("in", text, strlen(text)));
	ck_assert_int_eq(message_skip(&in, &o, &err), 0);
	ck_assert_uint_eq(in.len - in.pos, 6);
	ck_assert(memcmp(in.buf + in.pos, "NOOP\r\n", 6) == 0);
	/* nothing more: the end never comes */
	ck_assert_int_eq(message_skip(&in, &o, &err), -1);
	ck_assert_int_eq(err.cls, ERR_PROTO);
	close(in.fd);
	msg_input_free(&in);
}
END_TEST

/* The message reader's hook for sender_rewrite, as submit.c sets it. */
static int
rewrite_cb(const char *value, struct buf *out, const void *arg)
{
	(void)arg;
	return sender_rewrite_from(value, "alerts@example.com", "host.example.com", out);
}

static const struct fcase {
	const char *in;
	int no_fixups;
	const char *from;          /* the From: line expected in the output */
} fcases[] = {
	{ "From: root (Cron Daemon)\n\nx\n", 0,
	  "From: \"Cron Daemon\" <alerts@example.com>\r\n" },
	{ "From: Cron Daemon <root>\n\nx\n", 0,
	  "From: Cron Daemon <alerts@example.com>\r\n" },
	{ "From: Cron Daemon\n <root@host.example.com>\n\nx\n", 0,
	  "From: Cron Daemon <alerts@example.com>\r\n" },
	{ "From: Bob <bob@example.org>\n\nx\n", 0, "From: Bob <bob@example.org>\r\n" },
	/* other local names in the header are qualified, not rewritten */
	{ "From: root, www-data@elsewhere.org\nTo: root\n\nx\n", 0,
	  "From: alerts@example.com, www-data@elsewhere.org\r\nTo: root@example.com\r\n" },
	{ "From: root (Cron Daemon)\n\nx\n", 1, "From: root (Cron Daemon)\r\n" },
};

START_TEST(test_from_rewrite)
{
	const struct fcase *c = &fcases[_i];
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	char path[128], *out;
	size_t len;
	int ifd, ofd;

	msg_opts_init(&o);
	o.hostname = "host.example.com";
	o.domain = "example.com";
	o.no_fixups = c->no_fixups;
	o.from_rewrite = rewrite_cb;
	ifd = input_file("in", c->in, strlen(c->in));
	str_fmt(path, sizeof(path), "%s/out", tmpdir);
	ofd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(ofd, 0);
	ck_assert_int_eq(message_read(ifd, ofd, &o, &info, &err), 0);
	out = slurp_fd(ofd, &len);
	ck_assert_msg(strstr(out, c->from) != NULL, "output: %s", out);
	/* the From: address as written is what sender_from_header sees */
	ck_assert_ptr_nonnull(info.from_addr);
	free(out);
	msg_info_free(&info);
	close(ifd);
	close(ofd);
}
END_TEST

/* --- whole sessions ------------------------------------------------- */

static const struct scase {
	const char *name;
	const char *client;        /* everything the client sends, at once */
	long max_rcpts;            /* 0: 100 */
	unsigned long long max_size;   /* 0: 1M */
	int rc;
	const char *codes;         /* every reply's code, in order */
	unsigned queued;
} scases[] = {
	{ "one message",
	  "EHLO client\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n"
	  "Subject: one\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n",
	  0, 0, 0, "220 250 250 250 354 250 221", 1 },
	{ "two messages, LF only, no QUIT",
	  "HELO client\nMAIL FROM:<>\nRCPT TO:<r@example.org>\nDATA\nSubject: a\n\nx\n.\n"
	  "MAIL FROM:<s@example.org>\nRCPT TO:<r@example.org>\nRCPT TO:<q@example.org>\n"
	  "DATA\nSubject: b\n\ny\n.\n",
	  0, 0, 0, "220 250 250 250 354 250 250 250 250 354 250", 2 },
	{ "RSET, NOOP, VRFY, HELP",
	  "MAIL FROM:<s@example.org>\r\nRCPT TO:<r@example.org>\r\nRSET\r\nDATA\r\n"
	  "NOOP\r\nVRFY root\r\nHELP\r\nQUIT\r\n",
	  0, 0, 0, "220 250 250 250 503 250 252 214 221", 0 },
	{ "bad sequence",
	  "RCPT TO:<r@example.org>\r\nDATA\r\nMAIL FROM:<s@example.org>\r\n"
	  "MAIL FROM:<s@example.org>\r\nDATA\r\nQUIT\r\n",
	  0, 0, 0, "220 503 503 250 503 503 221", 0 },
	{ "unknown and unimplemented",
	  "FOO\r\nEXPN root\r\nSTARTTLS\r\nQUIT\r\n", 0, 0, 0, "220 500 502 502 221", 0 },
	{ "too many recipients",
	  "MAIL FROM:<s@example.org>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
	  "RCPT TO:<c@example.org>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
	  2, 0, 0, "220 250 250 250 452 354 250 221", 1 },
	{ "SIZE over the limit at MAIL",
	  "MAIL FROM:<s@example.org> SIZE=5000\r\nQUIT\r\n", 0, 4000, 0, "220 552 221", 0 },
	{ "message over the limit, then another",
	  "MAIL FROM:<s@example.org>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n"
	  "Subject: big\r\n\r\n"
	  "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
	  "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
	  "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
	  "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
	  "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
	  "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
	  ".\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n"
	  "Subject: small\r\n\r\nx\r\n.\r\nQUIT\r\n",
	  0, 400, 0, "220 250 250 354 552 250 250 354 250 221", 1 },
	{ "end of input inside a message",
	  "MAIL FROM:<s@example.org>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n"
	  "Subject: cut\r\n\r\npartial\r\n",
	  0, 0, -1, "220 250 250 354", 0 },
	{ "end of input right after DATA",
	  "MAIL FROM:<s@example.org>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n",
	  0, 0, -1, "220 250 250 354", 0 },
	{ "smuggled commands stay in the message",
	  "MAIL FROM:<s@example.org>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n"
	  "Subject: s\r\n\r\nx\n.\nMAIL FROM:<evil@example.net>\nRCPT TO:<v@example.net>\n"
	  "DATA\nforged\n.\n\r\n.\r\nQUIT\r\n",
	  0, 0, 0, "220 250 250 354 250 221", 1 },
	{ "too many errors",
	  "A\r\nB\r\nC\r\nD\r\nE\r\nF\r\nG\r\nH\r\nI\r\nJ\r\nK\r\nL\r\nM\r\nN\r\nO\r\n"
	  "P\r\nQ\r\nR\r\nS\r\nT\r\nU\r\nV\r\nQUIT\r\n",
	  0, 0, 0, "220 500 500 500 500 500 500 500 500 500 500 500 500 500 500 500 500 "
	  "500 500 500 500 421", 0 },
	{ "bad addresses",
	  "MAIL FROM:<a b@example.org>\r\nMAIL FROM:<s@example.org>\r\n"
	  "RCPT TO:<r@@example.org>\r\nQUIT\r\n", 0, 0, 0, "220 501 250 501 221", 0 },
};

/* A config for a queue under tmpdir, as config_load would fill it. */
static struct config *
test_config(const struct scase *c)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));

	cfg->path = xstrdup("/test/relayq.conf");
	cfg->hostname = xstrdup("host.example.com");
	cfg->domain = xstrdup("example.com");
	cfg->queue_dir = xasprintf("%s/queue", tmpdir);
	cfg->aliases = xasprintf("%s/aliases", tmpdir);
	cfg->max_message_size = c->max_size ? c->max_size : 1024 * 1024;
	cfg->max_header_size = 64 * 1024;
	cfg->max_headers = 100;
	cfg->max_recipients = c->max_rcpts ? c->max_rcpts : 100;
	cfg->max_alias_expansions = 100;
	return cfg;
}

static void
free_config(struct config *cfg)
{
	free(cfg->path);
	free(cfg->hostname);
	free(cfg->domain);
	free(cfg->queue_dir);
	free(cfg->aliases);
	free(cfg);
}

/* "220 250 ..." from the replies: the code of each final reply line. */
static char *
reply_codes(const char *out)
{
	struct buf b;

	buf_init(&b, 0);
	for (const char *l = out; *l != '\0';) {
		const char *e = strstr(l, "\r\n");

		ck_assert_ptr_nonnull(e);
		ck_assert_msg(e - l >= 4 && (l[3] == ' ' || l[3] == '-'), "reply %s", l);
		if (l[3] == ' ')
			buf_printf(&b, "%s%.3s", b.len ? " " : "", l);
		l = e + 2;
	}
	return b.data ? b.data : xstrdup("");
}

static unsigned ncallbacks;

static void
on_queued(const char *qid, void *arg)
{
	(void)arg;
	ck_assert_uint_eq(strlen(qid), 17);
	ncallbacks++;
}

static int
count_files(const char *sub)
{
	char path[128];
	DIR *d;
	struct dirent *de;
	int n = 0;

	str_fmt(path, sizeof(path), "%s/queue/%s", tmpdir, sub);
	if ((d = opendir(path)) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* The data file of the only (or first) queued message. */
static char *
first_data(size_t *len)
{
	char path[128], first[64] = "";
	DIR *d;
	struct dirent *de;
	int fd;
	char *text;

	str_fmt(path, sizeof(path), "%s/queue/data", tmpdir);
	ck_assert_ptr_nonnull(d = opendir(path));
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.' && (first[0] == '\0' || strcmp(de->d_name, first) < 0))
			str_copy(first, de->d_name, sizeof(first));
	closedir(d);
	str_fmt(path, sizeof(path), "%s/queue/data/%s", tmpdir, first);
	ck_assert_int_ge(fd = open(path, O_RDONLY), 0);
	text = slurp_fd(fd, len);
	close(fd);
	return text;
}

/* Run one session of client input under cfg (freed here); the replies. */
static char *
run_with(struct config *cfg, const char *client, int *rc, unsigned *nq,
    struct err *err)
{
	char path[128], *out;
	size_t len;
	struct smtpd_opts o = { .queued = on_queued };

	o.infd = input_file("client", client, strlen(client));
	str_fmt(path, sizeof(path), "%s/server", tmpdir);
	o.outfd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(o.outfd, 0);
	ncallbacks = 0;
	*rc = smtpd_session(cfg, &o, nq, err);
	out = slurp_fd(o.outfd, &len);
	ck_assert_uint_eq(strlen(out), len);
	close(o.infd);
	close(o.outfd);
	free_config(cfg);
	return out;
}

static char *
run_session(const struct scase *c, int *rc, unsigned *nq, struct err *err)
{
	return run_with(test_config(c), c->client, rc, nq, err);
}

START_TEST(test_session)
{
	const struct scase *c = &scases[_i];
	struct err err;
	unsigned nq;
	int rc;
	char *out = run_session(c, &rc, &nq, &err), *codes = reply_codes(out);

	ck_assert_msg(strcmp(codes, c->codes) == 0, "%s: got %s\n%s", c->name, codes, out);
	ck_assert_int_eq(rc, c->rc);
	ck_assert_uint_eq(nq, c->queued);
	ck_assert_uint_eq(ncallbacks, c->queued);
	ck_assert_int_eq(count_files("env"), (int)c->queued);
	ck_assert_int_eq(count_files("data"), (int)c->queued);
	ck_assert_int_eq(count_files("tmp"), 0);
	if (rc < 0)
		ck_assert_ptr_nonnull(strstr(err.msg, "nothing queued"));
	free(codes);
	free(out);
}
END_TEST

START_TEST(test_session_replies)
{
	const struct scase *c = &scases[0];
	struct err err;
	unsigned nq;
	int rc;
	size_t len;
	char *out = run_session(c, &rc, &nq, &err), *data, *queued, idstr[64];

	ck_assert_ptr_nonnull(strstr(out, "220 host.example.com ESMTP relayq\r\n"));
	ck_assert_ptr_nonnull(strstr(out, "250-host.example.com\r\n250-PIPELINING\r\n"
	    "250-SIZE 1048576\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n"
	    "250 SMTPUTF8\r\n"));
	ck_assert_ptr_nonnull(queued = strstr(out, "250 2.0.0 Ok: queued as "));
	ck_assert_ptr_nonnull(strstr(out, "221 2.0.0 "));
	data = first_data(&len);
	/* the queue id in the reply is the one on disk, in Received */
	queued += strlen("250 2.0.0 Ok: queued as ");
	ck_assert_ptr_nonnull(strchr(queued, '\r'));
	str_fmt(idstr, sizeof(idstr), "\tid %.*s; ", (int)(strchr(queued, '\r') - queued),
	    queued);
	ck_assert_msg(strstr(data, idstr) != NULL, "%s not in %s", idstr, data);
	ck_assert_ptr_nonnull(strstr(data, "Subject: one\r\n"));
	ck_assert_ptr_nonnull(strstr(data, "\r\n\r\n..leading dot\r\n"));
	ck_assert_ptr_nonnull(strstr(data, "\r\nFrom: "));
	ck_assert_ptr_nonnull(strstr(data, "\r\nMessage-ID: "));
	ck_assert_ptr_nonnull(strstr(data, "\r\nDate: "));
	free(data);
	free(out);
}
END_TEST

START_TEST(test_session_smuggling)
{
	const struct scase *c = &scases[10];
	struct err err;
	unsigned nq;
	int rc;
	size_t len;
	char *out = run_session(c, &rc, &nq, &err), *data;

	data = first_data(&len);
	ck_assert_ptr_nonnull(strstr(data, "\r\nx\r\n..\r\nMAIL FROM:<evil@example.net>\r\n"
	    "RCPT TO:<v@example.net>\r\nDATA\r\nforged\r\n..\r\n\r\n"));
	free(data);
	free(out);
}
END_TEST

/* A client that connects and says nothing is dropped with 421. */
START_TEST(test_session_timeout)
{
	struct config *cfg = test_config(&scases[0]);
	struct smtpd_opts o = { .timeout = 1 };
	struct err err;
	unsigned nq;
	char path[128], *out;
	size_t len;
	int p[2];

	ck_assert_int_eq(pipe(p), 0);
	o.infd = p[0];
	str_fmt(path, sizeof(path), "%s/server", tmpdir);
	o.outfd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(o.outfd, 0);
	ck_assert_int_eq(smtpd_session(cfg, &o, &nq, &err), 0);
	out = slurp_fd(o.outfd, &len);
	ck_assert_str_eq(out, "220 host.example.com ESMTP relayq\r\n"
	    "421 4.4.2 host.example.com Error: timeout exceeded\r\n");
	free(out);
	close(p[0]);
	close(p[1]);
	close(o.outfd);
	free_config(cfg);
}
END_TEST

/* A command of exactly SMTPD_LINE_MAX octets (plus CRLF) is accepted. */
START_TEST(test_session_longest_line)
{
	struct scase c = scases[0];
	struct buf in;
	struct err err;
	unsigned nq;
	int rc;
	char *out, *codes;

	buf_init(&in, 0);
	buf_puts(&in, "NOOP ");
	for (int i = 5; i < SMTPD_LINE_MAX; i++)
		buf_putc(&in, 'x');
	buf_puts(&in, "\r\nNOOP x");
	for (int i = 6; i < SMTPD_LINE_MAX + 1; i++)
		buf_putc(&in, 'x');
	buf_puts(&in, "\r\nQUIT\r\n");
	c.client = in.data;
	out = run_session(&c, &rc, &nq, &err);
	codes = reply_codes(out);
	ck_assert_str_eq(codes, "220 250 500 221");
	free(codes);
	free(out);
	buf_free(&in);
}
END_TEST

/*
 * max_smtp_line from the config: a command of exactly the limit passes,
 * one octet more is answered 500, and what was cut off is thrown away,
 * never read as a command.
 */
static const struct lcase {
	long max_line;             /* cfg->max_smtp_line; 0: the default */
	size_t len;                /* the NOOP command, without CRLF */
	const char *codes;
	int refused;               /* answered 500 line too long */
} lcases[] = {
	{ 0, SMTPD_LINE_MAX, "220 250 221", 0 },
	{ 0, SMTPD_LINE_MAX + 1, "220 500 221", 1 },
	{ 512, 512, "220 250 221", 0 },
	{ 512, 513, "220 500 221", 1 },
	{ 4096, 4096, "220 250 221", 0 },
	{ 4096, 4097, "220 500 221", 1 },
	{ 600, 100000, "220 500 221", 1 },
	{ SMTPD_LINE_LIMIT, SMTPD_LINE_LIMIT, "220 250 221", 0 },
	{ SMTPD_LINE_LIMIT * 2, SMTPD_LINE_LIMIT + 1, "220 500 221", 1 },
};

START_TEST(test_session_max_line)
{
	const struct lcase *t = &lcases[_i];
	struct config *cfg = test_config(&scases[0]);
	struct buf in;
	struct err err;
	unsigned nq;
	int rc;
	char *out, *codes;

	cfg->max_smtp_line = t->max_line;
	buf_init(&in, 0);
	buf_puts(&in, "NOOP ");
	/* Parsing the cut-off rest as a line would add a reply. */
	while (in.len < t->len)
		buf_putc(&in, 'x');
	buf_puts(&in, "\r\nQUIT\r\n");
	out = run_with(cfg, in.data, &rc, &nq, &err);
	codes = reply_codes(out);
	ck_assert_msg(strcmp(codes, t->codes) == 0, "case %d: %s\n%.300s", _i,
	    codes, out);
	if (t->refused)
		ck_assert_msg(strstr(out, "\r\n500 5.5.2 Error: line too long\r\n")
		    != NULL, "case %d: %s", _i, out);
	ck_assert_int_eq(rc, 0);
	free(codes);
	free(out);
	buf_free(&in);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("smtpd");
	TCase *tc = tcase_create("parser");
	TCase *td = tcase_create("data");
	TCase *ts = tcase_create("session");
	SRunner *sr;
	int failed;

	log_init("check_smtpd");
	tcase_add_loop_test(tc, test_parse, 0, NELEM(pcases));
	tcase_add_test(tc, test_parse_limits);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(td, setup, teardown);
	tcase_add_loop_test(td, test_data, 0, NELEM(dcases));
	tcase_add_test(td, test_skip);
	tcase_add_loop_test(td, test_from_rewrite, 0, NELEM(fcases));
	suite_add_tcase(s, td);
	tcase_add_checked_fixture(ts, setup, teardown);
	tcase_add_loop_test(ts, test_session, 0, NELEM(scases));
	tcase_add_test(ts, test_session_replies);
	tcase_add_test(ts, test_session_smuggling);
	tcase_add_test(ts, test_session_timeout);
	tcase_add_test(ts, test_session_longest_line);
	tcase_add_loop_test(ts, test_session_max_line, 0, NELEM(lcases));
	suite_add_tcase(s, ts);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
