/*
 * check_smtp.c - the SMTP client: reply-line parsing, the AUTH decision,
 * and whole dialogues against a scripted peer on 127.0.0.1 (a forked
 * child that plays lines and records every byte it receives).
 */
#include "autoconf.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "smtp.h"
#include "util.h"

/* ---- smtp_parse_line ------------------------------------------------- */

static const struct {
	const char *line;
	int rc, code, more;
	const char *enh, *text;
} parse_cases[] = {
	{ "250 ok", 0, 250, 0, "", "ok" },
	{ "250-PIPELINING", 0, 250, 1, "", "PIPELINING" },
	{ "250", 0, 250, 0, "", "" },
	{ "250-", 0, 250, 1, "", "" },
	{ "250 ", 0, 250, 0, "", "" },
	{ "550 5.1.1 <x@y>: user unknown", 0, 550, 0, "5.1.1", "<x@y>: user unknown" },
	{ "550-5.1.1 first line", 0, 550, 1, "5.1.1", "first line" },
	{ "451 4.3.0  two spaces", 0, 451, 0, "4.3.0", "two spaces" },
	{ "250 2.0.0", 0, 250, 0, "2.0.0", "" },
	{ "550 5.100.999 widest", 0, 550, 0, "5.100.999", "widest" },
	{ "550 2.1.1 class differs from code", 0, 550, 0, "", "2.1.1 class differs from code" },
	{ "550 5.1 too short", 0, 550, 0, "", "5.1 too short" },
	{ "550 5.1234.1 subject too long", 0, 550, 0, "", "5.1234.1 subject too long" },
	{ "550 5.01.1 leading zero", 0, 550, 0, "", "5.01.1 leading zero" },
	{ "550 5.1.1x glued", 0, 550, 0, "", "5.1.1x glued" },
	{ "354 Start mail input", 0, 354, 0, "", "Start mail input" },
	{ "334 VXNlcm5hbWU6", 0, 334, 0, "", "VXNlcm5hbWU6" },
	{ "221 2.0.0 bye", 0, 221, 0, "2.0.0", "bye" },
	{ "", -1, 0, 0, NULL, NULL },
	{ "2", -1, 0, 0, NULL, NULL },
	{ "25", -1, 0, 0, NULL, NULL },
	{ "25 ok", -1, 0, 0, NULL, NULL },
	{ "250x", -1, 0, 0, NULL, NULL },
	{ "250\tok", -1, 0, 0, NULL, NULL },
	{ "2500 ok", -1, 0, 0, NULL, NULL },
	{ "abc ok", -1, 0, 0, NULL, NULL },
	{ " 250 ok", -1, 0, 0, NULL, NULL },
	{ "150 preliminary", -1, 0, 0, NULL, NULL },
	{ "650 no such class", -1, 0, 0, NULL, NULL },
	{ "260 second digit", -1, 0, 0, NULL, NULL },
	{ "25a ok", -1, 0, 0, NULL, NULL },
	{ "PIPELINING", -1, 0, 0, NULL, NULL },
};

START_TEST(test_parse_line)
{
	int code = -7, more = -7, rc;
	char enh[16] = "junk";
	const char *text = NULL;

	rc = smtp_parse_line(parse_cases[_i].line, &code, &more, enh,
	    sizeof(enh), &text);
	ck_assert_msg(rc == parse_cases[_i].rc, "\"%s\": rc %d",
	    parse_cases[_i].line, rc);
	if (rc < 0)
		return;
	ck_assert_int_eq(code, parse_cases[_i].code);
	ck_assert_int_eq(more, parse_cases[_i].more);
	ck_assert_str_eq(enh, parse_cases[_i].enh);
	ck_assert_str_eq(text, parse_cases[_i].text);
}
END_TEST

/* ---- the AUTH decision ------------------------------------------------ */

static const struct {
	enum tls_mode tls;
	const char *host;
	int encrypted, allowed;
} auth_cases[] = {
	{ TLS_NONE, "127.0.0.1", 0, 1 },
	{ TLS_NONE, "localhost", 0, 1 },
	{ TLS_NONE, "::1", 0, 1 },
	{ TLS_NONE, "smtp.example.com", 0, 0 },
	{ TLS_NONE, "192.0.2.1", 0, 0 },
	{ TLS_STARTTLS, "127.0.0.1", 0, 0 },
	{ TLS_STARTTLS, "smtp.example.com", 0, 0 },
	{ TLS_STARTTLS, "smtp.example.com", 1, 1 },
	{ TLS_SMTPS, "smtp.example.com", 1, 1 },
	{ TLS_SMTPS, "127.0.0.1", 0, 0 },
};

START_TEST(test_auth_allowed)
{
	struct smarthost sh;

	memset(&sh, 0, sizeof(sh));
	sh.tls = auth_cases[_i].tls;
	sh.host = (char *)auth_cases[_i].host;
	ck_assert_msg(smtp_auth_allowed(&sh, auth_cases[_i].encrypted) ==
	    auth_cases[_i].allowed, "%s tls=%d encrypted=%d",
	    auth_cases[_i].host, auth_cases[_i].tls, auth_cases[_i].encrypted);
}
END_TEST

/* ---- the scripted peer ------------------------------------------------ */

/*
 * A script step: 'S' sends s + CRLF (n times when n > 0), 'R' reads one
 * line, 'D' reads message data through the "." line, 'C' hangs up at
 * once, 'W' waits for the client to hang up without a word. After the last
 * step the peer keeps reading and answers QUIT with 221 until EOF. Every
 * byte read is recorded in the record file.
 */
struct step {
	char op;
	const char *s;
	int n;
};
#define END { 0, NULL, 0 }

static char dir[64];
static char recpath[128], datapath[128], errpath[128];

static void
setup(void)
{
	str_copy(dir, "/tmp/check_smtp.XXXXXX", sizeof(dir));
	ck_assert_ptr_nonnull(mkdtemp(dir));
	str_fmt(recpath, sizeof(recpath), "%s/record", dir);
	str_fmt(datapath, sizeof(datapath), "%s/data", dir);
	str_fmt(errpath, sizeof(errpath), "%s/stderr", dir);
}

static void
teardown(void)
{
	unlink(recpath);
	unlink(datapath);
	unlink(errpath);
	rmdir(dir);
}

struct rd {
	int fd;
	char b[8192];
	size_t len;
};

/* Read one line (through LF) into line; 0 at EOF. */
static int
rd_line(struct rd *r, struct buf *line)
{
	buf_reset(line);
	for (;;) {
		char *nl = memchr(r->b, '\n', r->len);
		ssize_t n;

		if (nl != NULL) {
			size_t k = (size_t)(nl - r->b) + 1;

			buf_append(line, r->b, k);
			memmove(r->b, r->b + k, r->len - k);
			r->len -= k;
			return 1;
		}
		buf_append(line, r->b, r->len);
		r->len = 0;
		n = read(r->fd, r->b, sizeof(r->b));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return line->len > 0;
		r->len = (size_t)n;
	}
}

static void
say(int fd, const char *s)
{
	(void)write_all(fd, s, strlen(s));
	(void)write_all(fd, "\r\n", 2);
}

static void NORETURN
peer_main(int lfd, const struct step *script)
{
	struct rd r = { .len = 0 };
	struct buf line, rec;
	int recfd;

	signal(SIGPIPE, SIG_IGN);
	alarm(20);
	buf_init(&line, 0);
	buf_init(&rec, 0);
	r.fd = accept(lfd, NULL, NULL);
	if (r.fd < 0)
		_exit(2);
	for (const struct step *st = script; st->op; st++) {
		switch (st->op) {
		case 'S':
			for (int i = 0; i < (st->n ? st->n : 1); i++)
				say(r.fd, st->s);
			break;
		case 'R':
			if (rd_line(&r, &line))
				buf_append(&rec, line.data, line.len);
			break;
		case 'D':
			while (rd_line(&r, &line)) {
				buf_append(&rec, line.data, line.len);
				if (strcmp(line.data, ".\r\n") == 0)
					break;
			}
			break;
		case 'C':
			goto done;
		case 'W':
			while (rd_line(&r, &line))
				buf_append(&rec, line.data, line.len);
			goto done;
		}
	}
	while (rd_line(&r, &line)) {
		buf_append(&rec, line.data, line.len);
		if (strncasecmp(line.data, "QUIT", 4) == 0)
			say(r.fd, "221 2.0.0 bye");
	}
done:
	recfd = open(recpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (recfd < 0 || write_all(recfd, rec.data ? rec.data : "", rec.len) < 0)
		_exit(3);
	close(recfd);
	close(r.fd);
	_exit(0);
}

struct peer {
	pid_t pid;
	int port;
};

static void
peer_start(struct peer *p, const struct step *script)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(fd, 1), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	p->port = ntohs(sin.sin_port);
	p->pid = fork();
	ck_assert_int_ge(p->pid, 0);
	if (p->pid == 0)
		peer_main(fd, script);
	close(fd);
}

/* Wait for the peer and return what it received (caller frees). */
static char *
peer_finish(struct peer *p)
{
	struct buf b;
	int status, fd;

	ck_assert_int_eq(waitpid(p->pid, &status, 0), p->pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "peer failed (status %d)", status);
	buf_init(&b, 0);
	fd = open(recpath, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read_file_capped(fd, &b, 1 << 20), 0);
	close(fd);
	if (b.data == NULL)
		buf_puts(&b, "");
	return b.data;
}

static void
sh_init(struct smarthost *sh, int port)
{
	memset(sh, 0, sizeof(*sh));
	sh->name = "test";
	sh->host = "127.0.0.1";
	sh->port = port;
	sh->tls = TLS_NONE;
	sh->timeout = 5;
	sh->connect_timeout = 5;
}

static int
open_session(const struct smarthost *sh, const char *secret,
    struct smtp_session **s, struct err *e)
{
	/* Never dereferenced by smtp.c: only passed on to net. */
	static char fake_tls;
	struct smtp_params p = {
		.sh = sh, .helo_name = "client.test",
		.tls = sh->tls == TLS_NONE ? NULL : (struct tls_client *)&fake_tls,
		.secret = secret,
	};

	memset(e, 0, sizeof(*e));
	return smtp_open(&p, s, e);
}

static int
write_data(const char *content)
{
	int fd = open(datapath, O_RDWR | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write_all(fd, content, strlen(content)), 0);
	return fd;
}

static const char data_wire[] =
    "From: a@example.org\r\nSubject: dots\r\n\r\n..leading dot\r\n"
    "line\r\n..\r\n";

static void
msg_init(struct smtp_msg *m, const char *const *rcpts, size_t n)
{
	memset(m, 0, sizeof(*m));
	m->sender = "sender@example.org";
	m->rcpts = rcpts;
	m->nrcpts = n;
	m->datafd = write_data(data_wire);
	m->size = sizeof(data_wire) - 1;
}

/* ---- dialogues -------------------------------------------------------- */

START_TEST(test_plain_delivery)
{
	static const struct step script[] = {
		{ 'S', "220 mx.test ESMTP", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test hello", 0 }, { 'S', "250 8BITMIME", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 2.1.0 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "550 5.1.1 <bad@example.net>: user unknown", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 2.1.5 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "354 go ahead", 0 },
		{ 'D', NULL, 0 }, { 'S', "250 2.0.0 queued as ABC", 0 },
		END,
	};
	static const char *const rcpts[] = { "bad@example.net", "good@example.net" };
	struct smarthost sh;
	struct smtp_session *s;
	struct smtp_reply res[2];
	struct smtp_msg m;
	struct peer p;
	struct err e;
	char *got;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(smtp_extensions(s), SMTP_EXT_8BITMIME);
	ck_assert_str_eq(smtp_tls_info(s), "");
	msg_init(&m, rcpts, 2);
	ck_assert_msg(smtp_send(s, &m, res, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(res[0].code, 550);
	ck_assert_str_eq(res[0].enh, "5.1.1");
	ck_assert_str_eq(res[0].text, "550 5.1.1 <bad@example.net>: user unknown");
	ck_assert_int_eq(res[1].code, 250);
	ck_assert_str_eq(res[1].enh, "2.0.0");
	ck_assert_str_eq(res[1].text, "250 2.0.0 queued as ABC");
	smtp_close(s);
	got = peer_finish(&p);
	ck_assert_str_eq(got,
	    "EHLO client.test\r\n"
	    "MAIL FROM:<sender@example.org>\r\n"
	    "RCPT TO:<bad@example.net>\r\n"
	    "RCPT TO:<good@example.net>\r\n"
	    "DATA\r\n"
	    "From: a@example.org\r\nSubject: dots\r\n\r\n..leading dot\r\n"
	    "line\r\n..\r\n"
	    ".\r\n"
	    "QUIT\r\n");
	free(got);
	close(m.datafd);
}
END_TEST

/* A refused MAIL goes to every recipient; the next message starts with RSET. */
START_TEST(test_mail_refused_then_rset)
{
	static const struct step script[] = {
		{ 'S', "220 mx.test ESMTP", 0 }, { 'R', NULL, 0 },
		{ 'S', "250 mx.test", 0 },
		{ 'R', NULL, 0 }, { 'S', "451 4.3.0 try later", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 2.0.0 flushed", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "354 go", 0 },
		{ 'D', NULL, 0 }, { 'S', "250 2.0.0 done", 0 },
		END,
	};
	static const char *const rcpts[] = { "a@example.net", "b@example.net" };
	struct smarthost sh;
	struct smtp_session *s;
	struct smtp_reply res[2];
	struct smtp_msg m;
	struct peer p;
	struct err e;
	char *got;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	msg_init(&m, rcpts, 2);
	ck_assert_msg(smtp_send(s, &m, res, &e) == 0, "%s", e.msg);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(res[i].code, 451);
		ck_assert_str_eq(res[i].text, "451 4.3.0 try later");
	}
	m.nrcpts = 1;
	ck_assert_msg(smtp_send(s, &m, res, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(res[0].code, 250);
	ck_assert_str_eq(res[0].text, "250 2.0.0 done");
	smtp_close(s);
	got = peer_finish(&p);
	ck_assert_str_eq(got,
	    "EHLO client.test\r\n"
	    "MAIL FROM:<sender@example.org>\r\n"
	    "RSET\r\n"
	    "MAIL FROM:<sender@example.org>\r\n"
	    "RCPT TO:<a@example.net>\r\n"
	    "DATA\r\n"
	    "From: a@example.org\r\nSubject: dots\r\n\r\n..leading dot\r\n"
	    "line\r\n..\r\n"
	    ".\r\n"
	    "QUIT\r\n");
	free(got);
	close(m.datafd);
}
END_TEST

/* Without PIPELINING and with every recipient refused, DATA is not sent. */
START_TEST(test_no_rcpt_no_data)
{
	static const struct step script[] = {
		{ 'S', "220 mx.test ESMTP", 0 }, { 'R', NULL, 0 },
		{ 'S', "250 mx.test", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "550 5.1.1 no such user", 0 },
		END,
	};
	static const char *const rcpts[] = { "a@example.net" };
	struct smarthost sh;
	struct smtp_session *s;
	struct smtp_reply res[1];
	struct smtp_msg m;
	struct peer p;
	struct err e;
	char *got;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	msg_init(&m, rcpts, 1);
	ck_assert_int_eq(smtp_send(s, &m, res, &e), 0);
	ck_assert_int_eq(res[0].code, 550);
	smtp_close(s);
	got = peer_finish(&p);
	ck_assert_str_eq(got, "EHLO client.test\r\nMAIL FROM:<sender@example.org>\r\n"
	    "RCPT TO:<a@example.net>\r\nQUIT\r\n");
	free(got);
	close(m.datafd);
}
END_TEST

START_TEST(test_helo_fallback)
{
	static const struct step script[] = {
		{ 'S', "220 old.test SMTP", 0 }, { 'R', NULL, 0 },
		{ 'S', "502 5.5.2 command not recognized", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 old.test", 0 },
		END,
	};
	struct smarthost sh;
	struct smtp_session *s;
	struct peer p;
	struct err e;
	char *got;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(smtp_extensions(s), 0);
	smtp_close(s);
	got = peer_finish(&p);
	ck_assert_str_eq(got, "EHLO client.test\r\nHELO client.test\r\nQUIT\r\n");
	free(got);
}
END_TEST

START_TEST(test_multiline_ehlo)
{
	static const struct step script[] = {
		{ 'S', "220-mx.test ESMTP", 0 }, { 'S', "220 second greeting line", 0 },
		{ 'R', NULL, 0 },
		{ 'S', "250-mx.test hello client.test", 0 },
		{ 'S', "250-pipelining", 0 },
		{ 'S', "250-SIZE 10240000", 0 },
		{ 'S', "250-AUTH=LOGIN", 0 },
		{ 'S', "250-AUTH PLAIN LOGIN CRAM-MD5", 0 },
		{ 'S', "250-8BITMIME", 0 },
		{ 'S', "250-DSN", 0 },
		{ 'S', "250-ENHANCEDSTATUSCODES", 0 },
		{ 'S', "250-SMTPUTF8", 0 },
		{ 'S', "250-X-UNKNOWN whatever", 0 },
		{ 'S', "250 STARTTLS", 0 },
		END,
	};
	struct smarthost sh;
	struct smtp_session *s;
	struct peer p;
	struct err e;
	char *got;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(smtp_extensions(s), SMTP_EXT_STARTTLS | SMTP_EXT_AUTH |
	    SMTP_EXT_SIZE | SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8 |
	    SMTP_EXT_DSN | SMTP_EXT_ENHANCED | SMTP_EXT_PIPELINING);
	ck_assert_uint_eq(smtp_size_limit(s), 10240000ULL);
	smtp_close(s);
	got = peer_finish(&p);
	ck_assert_str_eq(got, "EHLO client.test\r\nQUIT\r\n");
	free(got);
}
END_TEST

#define PLAIN_IR "AHVzZXIAczNjcmV0IQ=="   /* "\0user\0s3cret!" */

/*
 * Sessions smtp_open must refuse: the error class and words, and exactly
 * what the server received (QUIT only when the dialogue is still in step).
 */
static const struct {
	const char *name;
	enum tls_mode tls;
	const char *secret;
	struct step script[12];
	enum err_class cls;
	const char *words;
	const char *sent;
} bad_open[] = {
	{ "mismatched codes", TLS_NONE, NULL, {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', "550 oops", 0 }, END },
	  ERR_PROTO, "mixes codes 250 and 550", "EHLO client.test\r\n" },
	{ "endless reply", TLS_NONE, NULL, {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-more", SMTP_REPLY_LINES_MAX + 50 },
		{ 'S', "250 end", 0 }, { 'W', NULL, 0 }, END },
	  ERR_PROTO, "more than 100 lines", "EHLO client.test\r\n" },
	{ "garbage greeting", TLS_NONE, NULL, {
		{ 'S', "hello there", 0 }, { 'W', NULL, 0 }, END },
	  ERR_PROTO, "malformed reply line to greeting: \"hello there\"", "" },
	{ "continuation without code", TLS_NONE, NULL, {
		{ 'S', "220-mx.test", 0 }, { 'S', "more text", 0 },
		{ 'W', NULL, 0 }, END },
	  ERR_PROTO, "malformed reply line", "" },
	{ "greeting 554", TLS_NONE, NULL, {
		{ 'S', "554 5.7.1 no service for you", 0 }, END },
	  ERR_TEMP, "554 5.7.1 no service for you", "QUIT\r\n" },
	{ "EHLO 421", TLS_NONE, NULL, {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "421 4.3.2 shutting down", 0 }, { 'W', NULL, 0 }, END },
	  ERR_TEMP, "EHLO rejected: 421 4.3.2 shutting down",
	  "EHLO client.test\r\n" },
	{ "no greeting at all", TLS_NONE, NULL, {
		{ 'W', NULL, 0 }, END },
	  ERR_TEMP, "while waiting for the greeting", "" },
	{ "STARTTLS not offered", TLS_STARTTLS, "s3cret!", {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', "250 AUTH PLAIN", 0 }, END },
	  ERR_TEMP, "does not offer STARTTLS; refusing to send in plaintext",
	  "EHLO client.test\r\nQUIT\r\n" },
	{ "STARTTLS after HELO", TLS_STARTTLS, NULL, {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "500 what?", 0 }, { 'R', NULL, 0 },
		{ 'S', "250 mx.test", 0 }, END },
	  ERR_TEMP, "does not offer STARTTLS",
	  "EHLO client.test\r\nHELO client.test\r\nQUIT\r\n" },
	{ "STARTTLS refused", TLS_STARTTLS, NULL, {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', "250 STARTTLS", 0 }, { 'R', NULL, 0 },
		{ 'S', "454 4.7.0 TLS not available", 0 }, END },
	  ERR_TEMP, "STARTTLS refused: 454 4.7.0 TLS not available",
	  "EHLO client.test\r\nSTARTTLS\r\nQUIT\r\n" },
	{ "no AUTH offered", TLS_NONE, "s3cret!", {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', "250 PIPELINING", 0 }, END },
	  ERR_TEMP, "smarthost offers no AUTH",
	  "EHLO client.test\r\nQUIT\r\n" },
	{ "no common mechanism", TLS_NONE, "s3cret!", {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', "250 AUTH GSSAPI", 0 }, END },
	  ERR_TEMP, "authentication", "EHLO client.test\r\nQUIT\r\n" },
	{ "AUTH 535", TLS_NONE, "s3cret!", {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', "250 AUTH PLAIN LOGIN", 0 }, { 'R', NULL, 0 },
		{ 'S', "535 5.7.8 bad credentials", 0 }, END },
	  ERR_TEMP, "authentication failed: 535 5.7.8 bad credentials",
	  "EHLO client.test\r\nAUTH PLAIN " PLAIN_IR "\r\nQUIT\r\n" },
	{ "AUTH 454", TLS_NONE, "s3cret!", {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', "250 AUTH PLAIN", 0 }, { 'R', NULL, 0 },
		{ 'S', "454 4.7.0 temporary failure", 0 }, END },
	  ERR_TEMP, "authentication failed: 454 4.7.0 temporary failure",
	  "EHLO client.test\r\nAUTH PLAIN " PLAIN_IR "\r\nQUIT\r\n" },
	{ "AUTH cancelled", TLS_NONE, "s3cret!", {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', "250 AUTH PLAIN", 0 }, { 'R', NULL, 0 },
		{ 'S', "334 bW9yZT8=", 0 }, { 'R', NULL, 0 },
		{ 'S', "501 5.7.0 cancelled", 0 }, END },
	  ERR_TEMP, "authentication failed",
	  "EHLO client.test\r\nAUTH PLAIN " PLAIN_IR "\r\n*\r\nQUIT\r\n" },
};

START_TEST(test_bad_open)
{
	struct smarthost sh;
	struct smtp_session *s = NULL;
	struct peer p;
	struct err e;
	char *got;
	int rc;

	peer_start(&p, bad_open[_i].script);
	sh_init(&sh, p.port);
	sh.tls = bad_open[_i].tls;
	sh.username = "user";
	if (strcmp(bad_open[_i].name, "no greeting at all") == 0)
		sh.timeout = 1;
	rc = open_session(&sh, bad_open[_i].secret, &s, &e);
	ck_assert_msg(rc == -1, "%s: smtp_open succeeded", bad_open[_i].name);
	ck_assert_ptr_null(s);
	ck_assert_msg(e.cls == bad_open[_i].cls, "%s: class %s (%s)",
	    bad_open[_i].name, err_class_name(e.cls), e.msg);
	ck_assert_msg(strstr(e.msg, bad_open[_i].words) != NULL, "%s: \"%s\"",
	    bad_open[_i].name, e.msg);
	ck_assert_ptr_null(strstr(e.msg, "s3cret"));
	got = peer_finish(&p);
	ck_assert_msg(strcmp(got, bad_open[_i].sent) == 0, "%s: sent \"%s\"",
	    bad_open[_i].name, got);
	free(got);
}
END_TEST

/* Exactly SMTP_REPLY_LINES_MAX lines is still a good reply. */
START_TEST(test_longest_reply)
{
	static const struct step script[] = {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-more", SMTP_REPLY_LINES_MAX - 1 },
		{ 'S', "250 end", 0 },
		END,
	};
	struct smarthost sh;
	struct smtp_session *s;
	struct peer p;
	struct err e;
	char *got;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	smtp_close(s);
	got = peer_finish(&p);
	ck_assert_str_eq(got, "EHLO client.test\r\nQUIT\r\n");
	free(got);
}
END_TEST

/*
 * smtp_params.max_reply_lines and max_reply_line (the config keys): a
 * reply at the limit is taken, one line or one octet more ends the session
 * with ERR_PROTO before any AUTH, and 0 means the built-in default.
 */
static const struct {
	int max_lines, max_line;   /* smtp_params; 0: default */
	int nlines;                /* lines in the EHLO reply */
	size_t linelen;            /* octets in its last line, without CRLF */
	int ok;
	const char *words;
} limit_cases[] = {
	{ 0, 0, SMTP_REPLY_LINES_MAX, 20, 1, NULL },
	{ 0, 0, SMTP_REPLY_LINES_MAX + 1, 20, 0, "more than 100 lines" },
	{ 20, 0, 20, 20, 1, NULL },
	{ 20, 0, 21, 20, 0, "reply to EHLO has more than 20 lines" },
	{ 500, 0, 300, 20, 1, NULL },
	{ 500, 0, 100000, 20, 0, "more than 500 lines" },
	{ 0, 0, 2, SMTP_REPLY_LINE_MAX, 1, NULL },
	{ 0, 0, 2, SMTP_REPLY_LINE_MAX + 1, 0, "line longer than 2048 bytes" },
	{ 0, 600, 2, 600, 1, NULL },
	{ 0, 600, 2, 601, 0, "while waiting for the reply to EHLO: line "
	  "longer than 600 bytes from 127.0.0.1[" },
	{ 0, 8000, 2, 8000, 1, NULL },
	{ 0, 8000, 2, 100 * 1024, 0, "line longer than 8000 bytes" },
};

START_TEST(test_reply_limits)
{
	static char last[128 * 1024];
	struct step script[] = {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", limit_cases[_i].nlines - 1 },
		{ 'S', last, 0 }, { 'W', NULL, 0 }, END,
	};
	struct smtp_params par;
	struct smarthost sh;
	struct smtp_session *s = NULL;
	struct peer p;
	struct err e;
	char *got;

	/* The last line: "250 AUTH PLAIN" padded to linelen. */
	memset(last, 'x', sizeof(last));
	memcpy(last, "250 AUTH PLAIN ", 15);
	last[limit_cases[_i].linelen] = '\0';
	if (limit_cases[_i].ok)
		script[4].op = 0;      /* answer QUIT */
	peer_start(&p, script);
	sh_init(&sh, p.port);
	sh.username = "user";
	memset(&par, 0, sizeof(par));
	par.sh = &sh;
	par.helo_name = "client.test";
	par.max_reply_lines = limit_cases[_i].max_lines;
	par.max_reply_line = limit_cases[_i].max_line;
	memset(&e, 0, sizeof(e));
	if (limit_cases[_i].ok) {
		ck_assert_msg(smtp_open(&par, &s, &e) == 0, "case %d: %s", _i,
		    e.msg);
		/* The long last line was read whole. */
		ck_assert_uint_eq(smtp_extensions(s), SMTP_EXT_AUTH);
		smtp_close(s);
		got = peer_finish(&p);
		ck_assert_str_eq(got, "EHLO client.test\r\nQUIT\r\n");
	} else {
		/* With a secret: the broken reply must stop us before AUTH. */
		par.secret = "s3cret!";
		ck_assert_int_eq(smtp_open(&par, &s, &e), -1);
		ck_assert_ptr_null(s);
		ck_assert_msg(e.cls == ERR_PROTO, "case %d: %s", _i, e.msg);
		ck_assert_msg(strstr(e.msg, limit_cases[_i].words) != NULL,
		    "case %d: %s", _i, e.msg);
		got = peer_finish(&p);
		ck_assert_str_eq(got, "EHLO client.test\r\n");
	}
	free(got);
}
END_TEST

START_TEST(test_reply_escaped)
{
	static const struct step script[] = {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250 mx.test", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 },
		{ 'S', "550-5.7.1 bad \x1b[31mred\x1b[0m", 0 },
		{ 'S', "550 5.7.1 tab\there \xff\\", 0 },
		END,
	};
	static const char *const rcpts[] = { "a@example.net" };
	struct smarthost sh;
	struct smtp_session *s;
	struct smtp_reply res[1];
	struct smtp_msg m;
	struct peer p;
	struct err e;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	msg_init(&m, rcpts, 1);
	ck_assert_int_eq(smtp_send(s, &m, res, &e), 0);
	ck_assert_int_eq(res[0].code, 550);
	ck_assert_str_eq(res[0].enh, "5.7.1");
	ck_assert_str_eq(res[0].text,
	    "550 5.7.1 bad \\x1b[31mred\\x1b[0m tab\\there \\xff\\\\");
	smtp_close(s);
	free(peer_finish(&p));
	close(m.datafd);
}
END_TEST

/*
 * PIPELINING: the peer reads MAIL, every RCPT and DATA before it answers
 * anything, so a client that waited for each reply would time out here.
 * Replies are then matched to commands in order.
 */
START_TEST(test_pipelining)
{
	static const struct step script[] = {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', "250 PIPELINING", 0 },
		{ 'R', NULL, 0 }, { 'R', NULL, 0 }, { 'R', NULL, 0 },
		{ 'R', NULL, 0 }, { 'R', NULL, 0 },
		{ 'S', "250 2.1.0 sender ok", 0 },
		{ 'S', "550 5.1.1 r1 unknown", 0 },
		{ 'S', "250 2.1.5 r2 ok", 0 },
		{ 'S', "452 4.2.2 r3 mailbox full", 0 },
		{ 'S', "354 go", 0 },
		{ 'D', NULL, 0 }, { 'S', "250 2.0.0 accepted", 0 },
		END,
	};
	static const char *const rcpts[] = { "r1@x.test", "r2@x.test", "r3@x.test" };
	struct smarthost sh;
	struct smtp_session *s;
	struct smtp_reply res[3];
	struct smtp_msg m;
	struct peer p;
	struct err e;
	char *got;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	sh.timeout = 3;
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	msg_init(&m, rcpts, 3);
	ck_assert_msg(smtp_send(s, &m, res, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(res[0].text, "550 5.1.1 r1 unknown");
	ck_assert_str_eq(res[1].text, "250 2.0.0 accepted");
	ck_assert_str_eq(res[2].text, "452 4.2.2 r3 mailbox full");
	smtp_close(s);
	got = peer_finish(&p);
	ck_assert_str_eq(got,
	    "EHLO client.test\r\n"
	    "MAIL FROM:<sender@example.org>\r\n"
	    "RCPT TO:<r1@x.test>\r\nRCPT TO:<r2@x.test>\r\nRCPT TO:<r3@x.test>\r\n"
	    "DATA\r\n"
	    "From: a@example.org\r\nSubject: dots\r\n\r\n..leading dot\r\n"
	    "line\r\n..\r\n"
	    ".\r\n"
	    "QUIT\r\n");
	free(got);
	close(m.datafd);
}
END_TEST

/*
 * With PIPELINING the next message's MAIL, RCPT and DATA go out before
 * the reply to the last ".": the peer reads them before it answers it
 * (a client that waited would time out here).
 */
START_TEST(test_overlap_next_commands)
{
	static const struct step script[] = {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', "250 PIPELINING", 0 },
		{ 'R', NULL, 0 }, { 'R', NULL, 0 }, { 'R', NULL, 0 },
		{ 'S', "250 ok", 0 }, { 'S', "250 ok", 0 }, { 'S', "354 go", 0 },
		{ 'D', NULL, 0 },
		{ 'R', NULL, 0 }, { 'R', NULL, 0 }, { 'R', NULL, 0 },
		{ 'S', "250 2.0.0 first queued", 0 },
		{ 'S', "250 ok", 0 }, { 'S', "550 5.1.1 b unknown", 0 },
		{ 'S', "250 ok", 0 }, { 'S', "354 go", 0 },
		{ 'D', NULL, 0 }, { 'S', "451 4.3.0 second deferred", 0 },
		END,
	};
	static const char *const r1[] = { "a@x.test" };
	static const char *const r2[] = { "b@x.test", "c@x.test" };
	struct smarthost sh;
	struct smtp_session *s;
	struct smtp_reply res1[1], res2[2];
	struct smtp_msg m1, m2;
	struct peer p;
	struct err e;
	char *got;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	sh.timeout = 3;
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	msg_init(&m1, r1, 1);
	m2 = m1;
	m2.rcpts = r2;
	m2.nrcpts = 2;
	ck_assert_msg(smtp_start(s, &m1, res1, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(smtp_end(s, &e), 0);      /* nothing due yet */
	ck_assert_msg(smtp_data(s, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(res1[0].code, 0);         /* the reply is not read */
	ck_assert_msg(smtp_start(s, &m2, res2, &e) == 0, "%s", e.msg);
	ck_assert_msg(smtp_end(s, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(res1[0].text, "250 2.0.0 first queued");
	ck_assert_msg(smtp_data(s, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(res2[0].text, "550 5.1.1 b unknown");
	ck_assert_int_eq(res2[1].code, 0);
	ck_assert_msg(smtp_end(s, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(res2[1].text, "451 4.3.0 second deferred");
	ck_assert_str_eq(res2[0].text, "550 5.1.1 b unknown");
	smtp_close(s);
	got = peer_finish(&p);
	ck_assert_str_eq(got,
	    "EHLO client.test\r\n"
	    "MAIL FROM:<sender@example.org>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n"
	    "From: a@example.org\r\nSubject: dots\r\n\r\n..leading dot\r\n"
	    "line\r\n..\r\n.\r\n"
	    "MAIL FROM:<sender@example.org>\r\nRCPT TO:<b@x.test>\r\n"
	    "RCPT TO:<c@x.test>\r\nDATA\r\n"
	    "From: a@example.org\r\nSubject: dots\r\n\r\n..leading dot\r\n"
	    "line\r\n..\r\n.\r\n"
	    "QUIT\r\n");
	free(got);
	close(m1.datafd);
}
END_TEST

/*
 * The server takes the message and hangs up before it answers the next
 * one's commands: the reply to "." still counts; the next message fails
 * with the session and nothing more is sent on it.
 */
START_TEST(test_overlap_hangup_after_dot)
{
	static const struct step script[] = {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', "250 PIPELINING", 0 },
		{ 'R', NULL, 0 }, { 'R', NULL, 0 }, { 'R', NULL, 0 },
		{ 'S', "250 ok", 0 }, { 'S', "250 ok", 0 }, { 'S', "354 go", 0 },
		{ 'D', NULL, 0 },
		{ 'R', NULL, 0 }, { 'R', NULL, 0 }, { 'R', NULL, 0 },
		{ 'S', "250 2.0.0 first queued", 0 },
		{ 'C', NULL, 0 },
		END,
	};
	static const char *const r1[] = { "a@x.test" };
	struct smarthost sh;
	struct smtp_session *s;
	struct smtp_reply res1[1], res2[1];
	struct smtp_msg m1;
	struct peer p;
	struct err e;
	char *got;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	sh.timeout = 3;
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	msg_init(&m1, r1, 1);
	ck_assert_msg(smtp_start(s, &m1, res1, &e) == 0, "%s", e.msg);
	ck_assert_msg(smtp_data(s, &e) == 0, "%s", e.msg);
	ck_assert_msg(smtp_start(s, &m1, res2, &e) == 0, "%s", e.msg);
	ck_assert_msg(smtp_end(s, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(res1[0].text, "250 2.0.0 first queued");
	ck_assert_int_eq(smtp_data(s, &e), -1);
	ck_assert_int_eq(res2[0].code, 0);
	ck_assert_msg(strstr(e.msg, "MAIL FROM") != NULL, "%s", e.msg);
	ck_assert_int_eq(smtp_usable(s), 0);
	ck_assert_int_eq(smtp_end(s, &e), 0);      /* no "." went out */
	smtp_close(s);
	got = peer_finish(&p);
	ck_assert_str_eq(got,
	    "EHLO client.test\r\n"
	    "MAIL FROM:<sender@example.org>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n"
	    "From: a@example.org\r\nSubject: dots\r\n\r\n..leading dot\r\n"
	    "line\r\n..\r\n.\r\n"
	    "MAIL FROM:<sender@example.org>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n");
	free(got);
	close(m1.datafd);
}
END_TEST

/* Without PIPELINING smtp_start sends nothing: each command waits for
 * the reply before it, the one to the last "." included. */
START_TEST(test_overlap_without_pipelining)
{
	static const struct step script[] = {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250 mx.test", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "354 go", 0 },
		{ 'D', NULL, 0 }, { 'S', "250 2.0.0 first queued", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "354 go", 0 },
		{ 'D', NULL, 0 }, { 'S', "250 2.0.0 second queued", 0 },
		END,
	};
	static const char *const r1[] = { "a@x.test" };
	struct smarthost sh;
	struct smtp_session *s;
	struct smtp_reply res1[1], res2[1];
	struct smtp_msg m1;
	struct peer p;
	struct err e;
	char *got;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	sh.timeout = 3;
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	msg_init(&m1, r1, 1);
	ck_assert_msg(smtp_start(s, &m1, res1, &e) == 0, "%s", e.msg);
	ck_assert_msg(smtp_data(s, &e) == 0, "%s", e.msg);
	ck_assert_msg(smtp_start(s, &m1, res2, &e) == 0, "%s", e.msg);
	ck_assert_msg(smtp_end(s, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(res1[0].text, "250 2.0.0 first queued");
	ck_assert_msg(smtp_data(s, &e) == 0, "%s", e.msg);
	ck_assert_msg(smtp_end(s, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(res2[0].text, "250 2.0.0 second queued");
	/* Out of turn: a second start before the first one's data. */
	ck_assert_msg(smtp_start(s, &m1, res1, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(smtp_start(s, &m1, res2, &e), -1);
	ck_assert_int_eq(smtp_usable(s), 0);
	smtp_close(s);
	got = peer_finish(&p);
	ck_assert_str_eq(got,
	    "EHLO client.test\r\n"
	    "MAIL FROM:<sender@example.org>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n"
	    "From: a@example.org\r\nSubject: dots\r\n\r\n..leading dot\r\n"
	    "line\r\n..\r\n.\r\n"
	    "MAIL FROM:<sender@example.org>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n"
	    "From: a@example.org\r\nSubject: dots\r\n\r\n..leading dot\r\n"
	    "line\r\n..\r\n.\r\n");
	free(got);
	close(m1.datafd);
}
END_TEST

/* PIPELINING, nobody accepted, yet 354 to DATA: end it with "." alone. */
START_TEST(test_pipelining_empty_data)
{
	static const struct step script[] = {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', "250 PIPELINING", 0 },
		{ 'R', NULL, 0 }, { 'R', NULL, 0 }, { 'R', NULL, 0 },
		{ 'S', "250 ok", 0 }, { 'S', "550 5.1.1 unknown", 0 },
		{ 'S', "354 go", 0 },
		{ 'R', NULL, 0 }, { 'S', "554 5.5.1 no valid recipients", 0 },
		END,
	};
	static const char *const rcpts[] = { "r1@x.test" };
	struct smarthost sh;
	struct smtp_session *s;
	struct smtp_reply res[1];
	struct smtp_msg m;
	struct peer p;
	struct err e;
	char *got;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	msg_init(&m, rcpts, 1);
	ck_assert_msg(smtp_send(s, &m, res, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(res[0].text, "550 5.1.1 unknown");
	smtp_close(s);
	got = peer_finish(&p);
	ck_assert_str_eq(got, "EHLO client.test\r\nMAIL FROM:<sender@example.org>\r\n"
	    "RCPT TO:<r1@x.test>\r\nDATA\r\n.\r\nQUIT\r\n");
	free(got);
	close(m.datafd);
}
END_TEST

/* PIPELINING and MAIL refused: its reply, not the 503s, goes to everyone. */
START_TEST(test_pipelining_mail_refused)
{
	static const struct step script[] = {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', "250 PIPELINING", 0 },
		{ 'R', NULL, 0 }, { 'R', NULL, 0 }, { 'R', NULL, 0 }, { 'R', NULL, 0 },
		{ 'S', "553 5.7.1 sender rejected", 0 },
		{ 'S', "503 5.5.1 need MAIL", 0 }, { 'S', "503 5.5.1 need MAIL", 0 },
		{ 'S', "503 5.5.1 need RCPT", 0 },
		END,
	};
	static const char *const rcpts[] = { "r1@x.test", "r2@x.test" };
	struct smarthost sh;
	struct smtp_session *s;
	struct smtp_reply res[2];
	struct smtp_msg m;
	struct peer p;
	struct err e;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	msg_init(&m, rcpts, 2);
	ck_assert_msg(smtp_send(s, &m, res, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(res[0].text, "553 5.7.1 sender rejected");
	ck_assert_str_eq(res[1].text, "553 5.7.1 sender rejected");
	smtp_close(s);
	free(peer_finish(&p));
	close(m.datafd);
}
END_TEST

/* Losing the server mid-transaction: -1, and no one has a result. */
START_TEST(test_connection_lost)
{
	static const struct step script[] = {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250 mx.test", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 }, { 'C', NULL, 0 },
		END,
	};
	static const char *const rcpts[] = { "r1@x.test", "r2@x.test" };
	struct smarthost sh;
	struct smtp_session *s;
	struct smtp_reply res[2];
	struct smtp_msg m;
	struct peer p;
	struct err e;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	msg_init(&m, rcpts, 2);
	ck_assert_int_eq(smtp_send(s, &m, res, &e), -1);
	ck_assert_int_eq(e.cls, ERR_TEMP);
	ck_assert_msg(strstr(e.msg, "while waiting for the reply to RCPT TO") != NULL,
	    "%s", e.msg);
	ck_assert_int_eq(res[0].code, 0);   /* accepted, but never delivered */
	ck_assert_int_eq(res[1].code, 0);
	ck_assert_int_eq(smtp_send(s, &m, res, &e), -1);
	ck_assert_int_eq(e.cls, ERR_INTERNAL);
	smtp_close(s);
	free(peer_finish(&p));
	close(m.datafd);
}
END_TEST

/* 421 after the final ".": everyone accepted gets it; session over. */
START_TEST(test_421_after_dot)
{
	static const struct step script[] = {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250 mx.test", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "354 go", 0 },
		{ 'D', NULL, 0 }, { 'S', "421 4.4.2 timeout", 0 }, { 'W', NULL, 0 },
		END,
	};
	static const char *const rcpts[] = { "r1@x.test" };
	struct smarthost sh;
	struct smtp_session *s;
	struct smtp_reply res[1];
	struct smtp_msg m;
	struct peer p;
	struct err e;
	char *got;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	msg_init(&m, rcpts, 1);
	ck_assert_int_eq(smtp_send(s, &m, res, &e), -1);
	ck_assert_int_eq(e.cls, ERR_TEMP);
	ck_assert_int_eq(res[0].code, 421);
	smtp_close(s);
	got = peer_finish(&p);
	ck_assert_ptr_null(strstr(got, "QUIT"));
	free(got);
	close(m.datafd);
}
END_TEST

/* Data without a final CRLF still gets a "." on a line of its own. */
START_TEST(test_data_without_crlf)
{
	static const struct step script[] = {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250 mx.test", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "354 go", 0 },
		{ 'D', NULL, 0 }, { 'S', "250 ok", 0 },
		END,
	};
	static const char *const rcpts[] = { "r1@x.test" };
	struct smarthost sh;
	struct smtp_session *s;
	struct smtp_reply res[1];
	struct smtp_msg m;
	struct peer p;
	struct err e;
	char *got;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	memset(&m, 0, sizeof(m));
	m.sender = "";
	m.rcpts = rcpts;
	m.nrcpts = 1;
	m.datafd = write_data("Subject: x\r\n\r\nno newline");
	ck_assert_msg(smtp_send(s, &m, res, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(res[0].code, 250);
	smtp_close(s);
	got = peer_finish(&p);
	ck_assert_str_eq(got, "EHLO client.test\r\nMAIL FROM:<>\r\n"
	    "RCPT TO:<r1@x.test>\r\nDATA\r\nSubject: x\r\n\r\nno newline\r\n"
	    ".\r\nQUIT\r\n");
	free(got);
	close(m.datafd);
}
END_TEST

/* Refusals decided locally: the server never sees MAIL. */
static const struct {
	const char *name;
	const char *ext;            /* last EHLO line */
	unsigned long long size;
	int smtputf8;
	int code;
	const char *enh, *words;
} local_cases[] = {
	{ "size", "250 SIZE 1000", 2000, 0, 552, "5.3.4",
	  "message size 2000 exceeds smarthost limit 1000 (generated locally)" },
	{ "smtputf8", "250 8BITMIME", 10, 1, 553, "5.6.7", "SMTPUTF8" },
};

START_TEST(test_local_refusal)
{
	struct step script[] = {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', local_cases[_i].ext, 0 }, END,
	};
	static const char *const rcpts[] = { "r1@x.test", "r2@x.test" };
	struct smarthost sh;
	struct smtp_session *s;
	struct smtp_reply res[2];
	struct smtp_msg m;
	struct peer p;
	struct err e;
	char *got;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	msg_init(&m, rcpts, 2);
	m.size = local_cases[_i].size;
	m.smtputf8 = local_cases[_i].smtputf8;
	ck_assert_msg(smtp_send(s, &m, res, &e) == 0, "%s", e.msg);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(res[i].code, local_cases[_i].code);
		ck_assert_str_eq(res[i].enh, local_cases[_i].enh);
		ck_assert_msg(strstr(res[i].text, local_cases[_i].words) != NULL,
		    "%s", res[i].text);
	}
	smtp_close(s);
	got = peer_finish(&p);
	ck_assert_str_eq(got, "EHLO client.test\r\nQUIT\r\n");
	free(got);
	close(m.datafd);
}
END_TEST

/* A recipient with a line break is refused here; the others go out. */
START_TEST(test_bad_rcpt_local)
{
	static const struct step script[] = {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250 mx.test", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "354 go", 0 },
		{ 'D', NULL, 0 }, { 'S', "250 ok", 0 },
		END,
	};
	static const char *const rcpts[] = { "evil@x.test>\r\nRSET", "good@x.test" };
	struct smarthost sh;
	struct smtp_session *s;
	struct smtp_reply res[2];
	struct smtp_msg m;
	struct peer p;
	struct err e;
	char *got;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	msg_init(&m, rcpts, 2);
	ck_assert_msg(smtp_send(s, &m, res, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(res[0].code, 553);
	ck_assert_str_eq(res[0].enh, "5.1.3");
	ck_assert_int_eq(res[1].code, 250);
	smtp_close(s);
	got = peer_finish(&p);
	ck_assert_ptr_null(strstr(got, "evil"));
	ck_assert_ptr_nonnull(strstr(got, "RCPT TO:<good@x.test>\r\nDATA\r\n"));
	free(got);
	close(m.datafd);
}
END_TEST

/* DSN, SIZE, BODY and SMTPUTF8 parameters only when advertised. */
static const struct {
	const char *ext;
	const char *mail, *rcpt;
} param_cases[] = {
	{ "250 DSN",
	  "MAIL FROM:<sender@example.org> SMTPUTF8 RET=HDRS ENVID=id+2Bx+3Dy",
	  "RCPT TO:<r1@x.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb+3Dc@x.test" },
	{ "250 8BITMIME",
	  "MAIL FROM:<sender@example.org> BODY=8BITMIME SMTPUTF8",
	  "RCPT TO:<r1@x.test>" },
	{ "250 SIZE 100000",
	  "MAIL FROM:<sender@example.org> SIZE=63 SMTPUTF8",
	  "RCPT TO:<r1@x.test>" },
	{ "250 SIZE",
	  "MAIL FROM:<sender@example.org> SIZE=63 SMTPUTF8",
	  "RCPT TO:<r1@x.test>" },
};

START_TEST(test_params)
{
	struct step script[] = {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', "250-SMTPUTF8", 0 },
		{ 'S', param_cases[_i].ext, 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "354 go", 0 },
		{ 'D', NULL, 0 }, { 'S', "250 ok", 0 },
		END,
	};
	static const char *const rcpts[] = { "r1@x.test" };
	static const char *const orcpt[] = { "a+b=c@x.test" };
	static const unsigned notify[] = { SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE };
	struct smarthost sh;
	struct smtp_session *s;
	struct smtp_reply res[1];
	struct smtp_msg m;
	struct peer p;
	struct err e;
	char *got, want[512];

	ck_assert_uint_eq(sizeof(data_wire) - 1, 63);
	peer_start(&p, script);
	sh_init(&sh, p.port);
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	msg_init(&m, rcpts, 1);
	m.eightbit = 1;
	m.smtputf8 = 1;
	m.ret = "HDRS";
	m.envid = "id+x=y";
	m.notify = notify;
	m.orcpt = orcpt;
	ck_assert_msg(smtp_send(s, &m, res, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(res[0].code, 250);
	smtp_close(s);
	got = peer_finish(&p);
	str_fmt(want, sizeof(want), "EHLO client.test\r\n%s\r\n%s\r\nDATA\r\n",
	    param_cases[_i].mail, param_cases[_i].rcpt);
	ck_assert_msg(strncmp(got, want, strlen(want)) == 0, "got:\n%s", got);
	free(got);
	close(m.datafd);
}
END_TEST

static const struct {
	unsigned bits;
	const char *param;
} notify_cases[] = {
	{ SMTP_NOTIFY_NEVER, " NOTIFY=NEVER" },
	{ SMTP_NOTIFY_SUCCESS, " NOTIFY=SUCCESS" },
	{ SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY, " NOTIFY=FAILURE,DELAY" },
	{ SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY,
	  " NOTIFY=SUCCESS,FAILURE,DELAY" },
	{ 0, "" },
};

START_TEST(test_notify)
{
	static const struct step script[] = {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', "250 DSN", 0 },
		{ 'R', NULL, 0 }, { 'S', "250 ok", 0 },
		{ 'R', NULL, 0 }, { 'S', "550 no", 0 },
		END,
	};
	static const char *const rcpts[] = { "r@x.test" };
	unsigned notify[1] = { notify_cases[_i].bits };
	struct smarthost sh;
	struct smtp_session *s;
	struct smtp_reply res[1];
	struct smtp_msg m;
	struct peer p;
	struct err e;
	char *got, want[256];

	peer_start(&p, script);
	sh_init(&sh, p.port);
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	msg_init(&m, rcpts, 1);
	m.notify = notify;
	ck_assert_int_eq(smtp_send(s, &m, res, &e), 0);
	smtp_close(s);
	got = peer_finish(&p);
	str_fmt(want, sizeof(want), "EHLO client.test\r\nMAIL FROM:<sender@"
	    "example.org>\r\nRCPT TO:<r@x.test>%s\r\nQUIT\r\n",
	    notify_cases[_i].param);
	ck_assert_str_eq(got, want);
	free(got);
	close(m.datafd);
}
END_TEST

/* AUTH PLAIN in clear is allowed to a loopback host with tls = none. */
START_TEST(test_auth_plain)
{
	static const struct step script[] = {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', "250 AUTH LOGIN PLAIN", 0 },
		{ 'R', NULL, 0 }, { 'S', "235 2.7.0 authenticated", 0 },
		END,
	};
	struct smarthost sh;
	struct smtp_session *s;
	struct peer p;
	struct err e;
	char *got;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	sh.username = "user";
	ck_assert_msg(open_session(&sh, "s3cret!", &s, &e) == 0, "%s", e.msg);
	smtp_close(s);
	got = peer_finish(&p);
	ck_assert_str_eq(got, "EHLO client.test\r\nAUTH PLAIN " PLAIN_IR
	    "\r\nQUIT\r\n");
	free(got);
}
END_TEST

/*
 * The -v transcript never shows the secret: neither in clear nor as
 * base64, neither in AUTH PLAIN's initial response nor in LOGIN's steps.
 */
static const struct {
	const char *mech;
	struct step script[12];
	const char *sent;
	const char *shown;
} redact_cases[] = {
	{ "PLAIN", {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', "250 AUTH PLAIN LOGIN", 0 },
		{ 'R', NULL, 0 }, { 'S', "235 2.7.0 ok", 0 }, END },
	  "EHLO client.test\r\nAUTH PLAIN " PLAIN_IR "\r\nQUIT\r\n",
	  "-> AUTH PLAIN ***\n<- 235 2.7.0 ok\n" },
	{ "LOGIN", {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250-mx.test", 0 }, { 'S', "250 AUTH PLAIN LOGIN", 0 },
		{ 'R', NULL, 0 }, { 'S', "334 VXNlcm5hbWU6", 0 },
		{ 'R', NULL, 0 }, { 'S', "334 UGFzc3dvcmQ6", 0 },
		{ 'R', NULL, 0 }, { 'S', "235 2.7.0 ok", 0 }, END },
	  "EHLO client.test\r\nAUTH LOGIN\r\ndXNlcg==\r\nczNjcmV0IQ==\r\n"
	  "QUIT\r\n",
	  "-> AUTH LOGIN\n<- 334 ***\n-> ***\n<- 334 ***\n-> ***\n"
	  "<- 235 2.7.0 ok\n" },
};

START_TEST(test_transcript_redacted)
{
	struct smarthost sh;
	struct smtp_session *s;
	struct peer p;
	struct err e;
	struct buf log;
	char *got;
	int fd, saved;

	peer_start(&p, redact_cases[_i].script);
	sh_init(&sh, p.port);
	sh.username = "user";
	strlist_add(&sh.auth, redact_cases[_i].mech);
	fd = open(errpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	fflush(stderr);
	saved = dup(2);
	dup2(fd, 2);
	log_set_verbose(1);
	ck_assert_int_eq(open_session(&sh, "s3cret!", &s, &e), 0);
	smtp_close(s);
	log_set_verbose(0);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	strlist_free(&sh.auth);
	got = peer_finish(&p);
	ck_assert_str_eq(got, redact_cases[_i].sent);
	free(got);
	buf_init(&log, 0);
	ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
	ck_assert_int_eq(read_file_capped(fd, &log, 1 << 20), 0);
	close(fd);
	ck_assert_ptr_nonnull(log.data);
	ck_assert_msg(strstr(log.data, redact_cases[_i].shown) != NULL,
	    "transcript:\n%s", log.data);
	ck_assert_ptr_nonnull(strstr(log.data, "-> EHLO client.test\n"));
	ck_assert_ptr_null(strstr(log.data, "s3cret"));
	ck_assert_ptr_null(strstr(log.data, "czNjcmV0IQ"));     /* base64 */
	ck_assert_ptr_null(strstr(log.data, PLAIN_IR));
	ck_assert_ptr_null(strstr(log.data, "AHVzZXIA"));
	ck_assert_ptr_null(strstr(log.data, "dXNlcg=="));
	buf_free(&log);
}
END_TEST

START_TEST(test_vrfy)
{
	static const struct step script[] = {
		{ 'S', "220 mx.test", 0 }, { 'R', NULL, 0 },
		{ 'S', "250 mx.test", 0 },
		{ 'R', NULL, 0 }, { 'S', "252 2.1.5 cannot verify, will try", 0 },
		{ 'R', NULL, 0 }, { 'S', "550 5.1.1 no such user", 0 },
		END,
	};
	struct smarthost sh;
	struct smtp_session *s;
	struct smtp_reply r;
	struct peer p;
	struct err e;
	char *got;

	peer_start(&p, script);
	sh_init(&sh, p.port);
	ck_assert_msg(open_session(&sh, NULL, &s, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(smtp_vrfy(s, "a@x.test", &r, &e), 0);
	ck_assert_int_eq(r.code, 252);
	ck_assert_int_eq(smtp_vrfy(s, "b@x.test", &r, &e), 0);
	ck_assert_int_eq(r.code, 550);
	ck_assert_str_eq(r.enh, "5.1.1");
	ck_assert_int_eq(smtp_vrfy(s, "c@x.test\r\nQUIT", &r, &e), -1);
	ck_assert_int_eq(e.cls, ERR_DATA);
	ck_assert_ptr_nonnull(strstr(smtp_peer(s), "127.0.0.1"));
	smtp_close(s);
	got = peer_finish(&p);
	ck_assert_str_eq(got, "EHLO client.test\r\nVRFY a@x.test\r\n"
	    "VRFY b@x.test\r\nQUIT\r\n");
	free(got);
}
END_TEST

static Suite *
smtp_suite(void)
{
	Suite *s = suite_create("smtp");
	TCase *tc;

	tc = tcase_create("parse");
	tcase_add_loop_test(tc, test_parse_line, 0,
	    sizeof(parse_cases) / sizeof(parse_cases[0]));
	tcase_add_loop_test(tc, test_auth_allowed, 0,
	    sizeof(auth_cases) / sizeof(auth_cases[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("dialogue");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_plain_delivery);
	tcase_add_test(tc, test_mail_refused_then_rset);
	tcase_add_test(tc, test_no_rcpt_no_data);
	tcase_add_test(tc, test_helo_fallback);
	tcase_add_test(tc, test_multiline_ehlo);
	tcase_add_loop_test(tc, test_bad_open, 0,
	    sizeof(bad_open) / sizeof(bad_open[0]));
	tcase_add_test(tc, test_longest_reply);
	tcase_add_loop_test(tc, test_reply_limits, 0,
	    sizeof(limit_cases) / sizeof(limit_cases[0]));
	tcase_add_test(tc, test_reply_escaped);
	tcase_add_test(tc, test_pipelining);
	tcase_add_test(tc, test_pipelining_empty_data);
	tcase_add_test(tc, test_overlap_next_commands);
	tcase_add_test(tc, test_overlap_hangup_after_dot);
	tcase_add_test(tc, test_overlap_without_pipelining);
	tcase_add_test(tc, test_pipelining_mail_refused);
	tcase_add_test(tc, test_connection_lost);
	tcase_add_test(tc, test_421_after_dot);
	tcase_add_test(tc, test_data_without_crlf);
	tcase_add_loop_test(tc, test_local_refusal, 0,
	    sizeof(local_cases) / sizeof(local_cases[0]));
	tcase_add_test(tc, test_bad_rcpt_local);
	tcase_add_loop_test(tc, test_params, 0,
	    sizeof(param_cases) / sizeof(param_cases[0]));
	tcase_add_loop_test(tc, test_notify, 0,
	    sizeof(notify_cases) / sizeof(notify_cases[0]));
	tcase_add_test(tc, test_auth_plain);
	tcase_add_loop_test(tc, test_transcript_redacted, 0,
	    sizeof(redact_cases) / sizeof(redact_cases[0]));
	tcase_add_test(tc, test_vrfy);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(smtp_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
