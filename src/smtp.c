/*
 * smtp.c - the SMTP client (RFC 5321) for one session with one smarthost:
 * greeting, EHLO/HELO, STARTTLS (RFC 3207), AUTH (RFC 4954), then any
 * number of transactions with SIZE, 8BITMIME, SMTPUTF8, DSN and
 * PIPELINING (RFC 1870, 6152, 6531, 3461, 2920). An explicit state machine
 * whose name table is used in traces and error messages. Everything the
 * server sends is bounded and escaped before it is kept or logged; the
 * AUTH secret never reaches the transcript.
 */
#include "autoconf.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "smtp.h"
#include "config.h"
#include "log.h"
#include "net.h"
#include "sasl.h"
#include "util.h"

enum smtp_state {
	SMTP_CONNECT,
	SMTP_TLS,          /* SMTPS handshake before the greeting */
	SMTP_GREETING,
	SMTP_EHLO,
	SMTP_HELO,
	SMTP_STARTTLS,
	SMTP_EHLO_TLS,
	SMTP_HELO_TLS,
	SMTP_AUTH,
	SMTP_READY,
	SMTP_MAIL,
	SMTP_RCPT,
	SMTP_DATA,
	SMTP_BODY,
	SMTP_DOT,
	SMTP_RSET,
	SMTP_VRFY,
	SMTP_QUIT,
	SMTP_CLOSED,
	SMTP_NSTATES
};

static const char *const state_names[SMTP_NSTATES] = {
	[SMTP_CONNECT] = "CONNECT",
	[SMTP_TLS] = "TLS handshake",
	[SMTP_GREETING] = "greeting",
	[SMTP_EHLO] = "EHLO",
	[SMTP_HELO] = "HELO",
	[SMTP_STARTTLS] = "STARTTLS",
	[SMTP_EHLO_TLS] = "EHLO (after STARTTLS)",
	[SMTP_HELO_TLS] = "HELO (after STARTTLS)",
	[SMTP_AUTH] = "AUTH",
	[SMTP_READY] = "READY",
	[SMTP_MAIL] = "MAIL FROM",
	[SMTP_RCPT] = "RCPT TO",
	[SMTP_DATA] = "DATA",
	[SMTP_BODY] = "message body",
	[SMTP_DOT] = "end of data",
	[SMTP_RSET] = "RSET",
	[SMTP_VRFY] = "VRFY",
	[SMTP_QUIT] = "QUIT",
	[SMTP_CLOSED] = "CLOSED",
};

#define SMTP_CMD_MAX 4096          /* MAIL/RCPT line with every parameter */
#define SMTP_AUTH_LINE_MAX 16384   /* RFC 4954 allows 12288 for AUTH */
#define SMTP_AUTH_STEPS_MAX 10     /* 334 challenges before we give up */
#define SMTP_ADDR_MAX 512          /* longest path we put in a command */
#define SMTP_ENVID_MAX 100         /* RFC 3461 section 4.4 */
#define SMTP_PIPE_WINDOW 100       /* commands per pipelined group */
#define SMTP_DOT_TIMEOUT 600       /* RFC 5321 4.5.3.2.6 */
#define SMTP_QUIT_TIMEOUT 10
#define SMTP_CHUNK (64 * 1024)
#define SMTP_LOCAL " (generated locally)"

/* A transaction: what was sent and what came back. */
enum cmd_kind { CMD_MAIL, CMD_RCPT, CMD_DATA };

struct pending {
	enum cmd_kind kind;
	size_t i;                  /* recipient index for CMD_RCPT */
};

struct tx {
	const struct smtp_msg *m;
	struct smtp_reply *rcpt;   /* code 0 = no result yet */
	struct pending pend[SMTP_PIPE_WINDOW];   /* sent, reply not read */
	size_t npend;
	size_t next;               /* the next recipient to send */
	size_t accepted;
	int mail_sent, mail_failed, data_queued, data_code;
	struct smtp_reply mail_r, data_r;
};

struct smtp_session {
	const struct smarthost *sh;
	struct tls_client *tls;
	char *helo;
	struct conn *c;
	enum smtp_state state;
	long timeout;
	int max_lines;             /* lines in one reply */
	char *line;                /* one reply line: max_reply_line + NUL */
	size_t linesize;
	unsigned ext;              /* SMTP_EXT_* of the last EHLO */
	unsigned long long size_max;
	struct strlist auth;       /* mechanisms offered, upper case */
	struct strlist lines;      /* raw text of each line of the last reply */
	int redact;                /* hide 334 payloads in the transcript */
	int broken;                /* dialogue out of sync or gone: no QUIT */
	int need_rset;             /* last transaction left open */
	int in_tx;                 /* tx: between smtp_start and smtp_data */
	struct tx tx;
	struct smtp_reply *final;  /* "." sent for these; reply not read */
	size_t nfinal;
};

static const char *
peer(const struct smtp_session *s)
{
	return s->c ? conn_peer(s->c) : s->sh->host;
}

/* Enter a state: trace it and apply its timeout. */
static void
set_state(struct smtp_session *s, enum smtp_state st)
{
	long t = s->timeout;

	if (st != s->state)
		log_debug("smtp %s: %s -> %s", peer(s), state_names[s->state],
		    state_names[st]);
	s->state = st;
	if (st == SMTP_DOT && t < SMTP_DOT_TIMEOUT)
		t = SMTP_DOT_TIMEOUT;
	if (st == SMTP_QUIT && t > SMTP_QUIT_TIMEOUT)
		t = SMTP_QUIT_TIMEOUT;
	if (s->c)
		conn_set_timeout(s->c, t);
}

/* A network failure: the session is unusable; say where it happened. */
static int
io_fail(struct smtp_session *s, struct err *err, int sending)
{
	const char *name = state_names[s->state];

	s->broken = 1;
	switch (s->state) {
	case SMTP_TLS:
		return err_prefix(err, "%s: during the TLS handshake", peer(s));
	case SMTP_GREETING:
		return err_prefix(err, "%s: while waiting for the greeting",
		    peer(s));
	case SMTP_BODY:
		return err_prefix(err, "%s: while sending the message", peer(s));
	default:
		if (sending)
			return err_prefix(err, "%s: while sending %s", peer(s),
			    name);
		return err_prefix(err, "%s: while waiting for the reply to %s",
		    peer(s), name);
	}
}

/* The server broke the protocol: nothing it says can be trusted now. */
static int
proto_fail(struct smtp_session *s, struct err *err, const struct smtp_reply *r)
{
	s->broken = 1;
	return err_set(err, ERR_PROTO, "%s: unexpected reply to %s: %s",
	    peer(s), state_names[s->state], r->text);
}

/* Length of an RFC 3463 code "c.sss.ddd" at p whose class is cls, or 0. */
static size_t
enh_len(const char *p, char cls)
{
	const char *q = p;

	if (*q != cls || (cls != '2' && cls != '4' && cls != '5') || q[1] != '.')
		return 0;
	q += 2;
	for (int part = 0; part < 2; part++) {
		int n = 0;

		if (*q == '0' && isdigit((unsigned char)q[1]))
			return 0;      /* no leading zeros */
		while (isdigit((unsigned char)*q) && n < 4) {
			q++;
			n++;
		}
		if (n == 0 || n > 3)
			return 0;
		if (part == 0 && *q++ != '.')
			return 0;
	}
	if (*q != '\0' && *q != ' ')
		return 0;
	return (size_t)(q - p);
}

int
smtp_parse_line(const char *line, int *code, int *more, char *enh,
    size_t enhsize, const char **text)
{
	const char *t;
	size_t n;

	if (enh != NULL && enhsize > 0)
		enh[0] = '\0';
	if (line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' ||
	    !isdigit((unsigned char)line[2]))
		return -1;
	switch (line[3]) {
	case '\0':
		*more = 0;
		t = line + 3;
		break;
	case ' ':
		*more = 0;
		t = line + 4;
		break;
	case '-':
		*more = 1;
		t = line + 4;
		break;
	default:
		return -1;
	}
	*code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	/* Enhanced codes are taken whenever present: some servers use them
	 * without advertising ENHANCEDSTATUSCODES. */
	n = enh_len(t, line[0]);
	if (n > 0 && enh != NULL && n < enhsize) {
		memcpy(enh, t, n);
		enh[n] = '\0';
		t += n;
		while (*t == ' ')
			t++;
	}
	if (text != NULL)
		*text = t;
	return 0;
}

/* Append at most what still fits under the buffer's cap. */
static void
buf_append_capped(struct buf *b, const char *p, size_t n)
{
	size_t room = b->max - b->len;

	buf_append(b, p, n < room ? n : room);
}

/*
 * Read one complete reply. Lines are checked strictly (same code on every
 * line, at most s->max_lines, each at most max_reply_line octets); r->text
 * joins them escaped, and the raw text after each "NNN-" is kept in
 * s->lines for EHLO and AUTH.
 */
static int
read_reply(struct smtp_session *s, struct smtp_reply *r, struct err *err)
{
	char *line = s->line, esc[256], enh[sizeof(r->enh)];
	const char *text;
	struct buf raw;
	int code, more, n = 0;
	size_t len;

	memset(r, 0, sizeof(*r));
	strlist_free(&s->lines);
	buf_init(&raw, 4 * SMTP_TEXT_MAX);
	do {
		if (conn_read_line(s->c, line, s->linesize, &len, err) < 0) {
			buf_free(&raw);
			return io_fail(s, err, 0);
		}
		if (s->redact && strncmp(line, "334", 3) == 0)
			log_transcript("<-", "334 ***", 7);
		else
			log_transcript("<-", line, len);
		if (++n > s->max_lines) {
			buf_free(&raw);
			s->broken = 1;
			return err_set(err, ERR_PROTO, "%s: reply to %s has "
			    "more than %d lines", peer(s),
			    state_names[s->state], s->max_lines);
		}
		if (smtp_parse_line(line, &code, &more, enh, sizeof(enh),
		    &text) < 0) {
			buf_free(&raw);
			s->broken = 1;
			str_escape(line, len, esc, sizeof(esc));
			return err_set(err, ERR_PROTO, "%s: malformed reply "
			    "line to %s: \"%s\"", peer(s),
			    state_names[s->state], esc);
		}
		if (n == 1) {
			r->code = code;
			str_copy(r->enh, enh, sizeof(r->enh));
			buf_append_capped(&raw, line, 3);
			if (len > 3) {
				buf_append_capped(&raw, " ", 1);
				buf_append_capped(&raw, line + 4, len - 4);
			}
		} else if (code != r->code) {
			buf_free(&raw);
			s->broken = 1;
			return err_set(err, ERR_PROTO, "%s: reply to %s mixes "
			    "codes %d and %d", peer(s), state_names[s->state],
			    r->code, code);
		} else if (*text != '\0') {
			buf_append_capped(&raw, " ", 1);
			buf_append_capped(&raw, text, strlen(text));
		}
		strlist_add(&s->lines, len > 4 ? line + 4 : "");
	} while (more);
	str_escape(raw.data, raw.len, r->text, sizeof(r->text));
	buf_free(&raw);
	if (r->code == 421)
		s->broken = 1;     /* the server is closing the channel */
	return 0;
}

/* Queue one command line; the transcript shows "shown" when given. */
static int
put_line(struct smtp_session *s, const char *line, size_t len,
    const char *shown, struct err *err)
{
	if (shown != NULL)
		log_transcript("->", shown, strlen(shown));
	else
		log_transcript("->", line, len);
	if (conn_write(s->c, line, len, err) < 0 ||
	    conn_write(s->c, "\r\n", 2, err) < 0)
		return io_fail(s, err, 1);
	return 0;
}

static int
flush(struct smtp_session *s, struct err *err)
{
	if (conn_flush(s->c, err) < 0)
		return io_fail(s, err, 1);
	return 0;
}

/* Send one command (built by the caller, no CRLF) and read its reply. */
static int
command(struct smtp_session *s, enum smtp_state st, const char *line,
    struct smtp_reply *r, struct err *err)
{
	set_state(s, st);
	if (put_line(s, line, strlen(line), NULL, err) < 0 ||
	    flush(s, err) < 0)
		return -1;
	return read_reply(s, r, err);
}

/* Strict decimal number, optionally followed by spaces; -1 on overflow. */
static int
parse_ull(const char *p, unsigned long long *out)
{
	unsigned long long v = 0;

	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (~0ULL - 9) / 10)
			return -1;
		v = v * 10 + (unsigned)(*p - '0');
	}
	while (*p == ' ')
		p++;
	if (*p != '\0')
		return -1;
	*out = v;
	return 0;
}

/* Record one EHLO keyword line ("SIZE 1000", "AUTH PLAIN LOGIN"). */
static void
parse_ext(struct smtp_session *s, const char *line)
{
	static const struct { const char *kw; unsigned bit; } simple[] = {
		{ "STARTTLS", SMTP_EXT_STARTTLS },
		{ "8BITMIME", SMTP_EXT_8BITMIME },
		{ "SMTPUTF8", SMTP_EXT_SMTPUTF8 },
		{ "DSN", SMTP_EXT_DSN },
		{ "ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCED },
		{ "PIPELINING", SMTP_EXT_PIPELINING },
	};
	char kw[32], *p;
	const char *args;
	size_t n = strcspn(line, " =");

	if (n == 0 || n >= sizeof(kw))
		return;
	memcpy(kw, line, n);
	kw[n] = '\0';
	args = line + n + (line[n] != '\0');
	for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
		if (strcasecmp(kw, simple[i].kw) == 0 && line[n] != '=')
			s->ext |= simple[i].bit;
	if (strcasecmp(kw, "SIZE") == 0 && line[n] != '=') {
		unsigned long long v = 0;

		s->ext |= SMTP_EXT_SIZE;
		/* A missing or unparsable number means no fixed limit. */
		if (parse_ull(args, &v) == 0)
			s->size_max = v;
		return;
	}
	if (strcasecmp(kw, "AUTH") != 0)
		return;
	/* "AUTH PLAIN LOGIN" and the pre-standard "AUTH=PLAIN LOGIN". */
	while (*args != '\0') {
		char mech[21];
		size_t m = strcspn(args, " ");

		if (m > 0 && m < sizeof(mech)) {
			memcpy(mech, args, m);
			mech[m] = '\0';
			for (p = mech; *p; p++)
				*p = (char)toupper((unsigned char)*p);
			if (strspn(mech, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
			    == m && !strlist_has_ci(&s->auth, mech))
				strlist_add(&s->auth, mech);
		}
		args += m;
		args += strspn(args, " ");
	}
	if (s->auth.n > 0)
		s->ext |= SMTP_EXT_AUTH;
}

static void
forget_ext(struct smtp_session *s)
{
	s->ext = 0;
	s->size_max = 0;
	strlist_free(&s->auth);
}

/* EHLO, or HELO when the server does not know EHLO (5xx). */
static int
hello(struct smtp_session *s, int after_tls, struct err *err)
{
	struct smtp_reply r;
	char line[600];

	forget_ext(s);
	str_fmt(line, sizeof(line), "EHLO %s", s->helo);
	if (command(s, after_tls ? SMTP_EHLO_TLS : SMTP_EHLO, line, &r,
	    err) < 0)
		return -1;
	if (r.code == 250) {
		for (size_t i = 1; i < s->lines.n; i++)
			parse_ext(s, s->lines.v[i]);
		return 0;
	}
	if (r.code / 100 == 4)
		return err_set(err, ERR_TEMP, "%s: EHLO rejected: %s", peer(s),
		    r.text);
	if (r.code / 100 != 5)
		return proto_fail(s, err, &r);
	str_fmt(line, sizeof(line), "HELO %s", s->helo);
	if (command(s, after_tls ? SMTP_HELO_TLS : SMTP_HELO, line, &r,
	    err) < 0)
		return -1;
	if (r.code == 250)
		return 0;
	if (r.code / 100 == 4 || r.code / 100 == 5)
		return err_set(err, ERR_TEMP, "%s: HELO rejected: %s", peer(s),
		    r.text);
	return proto_fail(s, err, &r);
}

static int
greeting(struct smtp_session *s, struct err *err)
{
	struct smtp_reply r;

	set_state(s, SMTP_GREETING);
	if (read_reply(s, &r, err) < 0)
		return -1;
	if (r.code == 220)
		return 0;
	/* 554 (or a 4xx): refused here, another smarthost or later may work. */
	if (r.code / 100 == 4 || r.code / 100 == 5)
		return err_set(err, ERR_TEMP, "%s: connection refused by the "
		    "smarthost: %s", peer(s), r.text);
	return proto_fail(s, err, &r);
}

/* RFC 3207: required when configured, never a fallback to plaintext. */
static int
starttls(struct smtp_session *s, struct err *err)
{
	struct smtp_reply r;

	if (s->sh->tls != TLS_STARTTLS)
		return 0;
	if (!(s->ext & SMTP_EXT_STARTTLS))
		return err_set(err, ERR_TEMP, "%s: smarthost does not offer "
		    "STARTTLS; refusing to send in plaintext", peer(s));
	if (command(s, SMTP_STARTTLS, "STARTTLS", &r, err) < 0)
		return -1;
	if (r.code / 100 == 4 || r.code / 100 == 5)
		return err_set(err, ERR_TEMP, "%s: STARTTLS refused: %s",
		    peer(s), r.text);
	if (r.code != 220)
		return proto_fail(s, err, &r);
	/* conn_starttls refuses plaintext the server pipelined after 220. */
	if (conn_starttls(s->c, s->tls, s->sh->host, err) < 0) {
		s->broken = 1;
		return err_prefix(err, "%s: STARTTLS", peer(s));
	}
	return hello(s, 1, err);
}

int
smtp_auth_allowed(const struct smarthost *sh, int encrypted)
{
	if (encrypted)
		return 1;
	return sh->tls == TLS_NONE && host_is_loopback(sh->host);
}

/* Send an AUTH client response; the transcript shows only "***". */
static int
put_secret(struct smtp_session *s, const struct buf *b, struct err *err)
{
	if (put_line(s, b->data ? b->data : "", b->len, "***", err) < 0)
		return -1;
	return flush(s, err);
}

/* The SASL exchange proper; err says why on failure, never the secret. */
static int
auth_exchange(struct smtp_session *s, struct sasl *sasl, enum sasl_mech mech,
    struct err *err)
{
	const char *name = sasl_mech_name(mech);
	struct smtp_reply r;
	struct buf line, resp;
	char shown[64];
	struct err serr;
	int rc = -1;

	buf_init(&line, SMTP_AUTH_LINE_MAX);
	buf_init(&resp, SMTP_AUTH_LINE_MAX);
	set_state(s, SMTP_AUTH);
	if (sasl_initial(sasl, &resp, err) < 0) {
		err->cls = ERR_TEMP;
		err_prefix(err, "%s: authentication failed", peer(s));
		goto out;
	}
	/* An empty initial response reaches us as "=" from sasl.c. */
	if (buf_printf(&line, "AUTH %s%s%s", name, resp.len ? " " : "",
	    resp.len ? resp.data : "") < 0) {
		err_set(err, ERR_TEMP, "%s: AUTH %s initial response too long",
		    peer(s), name);
		goto out;
	}
	str_fmt(shown, sizeof(shown), "AUTH %s%s", name, resp.len ? " ***" : "");
	s->redact = 1;
	if (put_line(s, line.data, line.len, shown, err) < 0 ||
	    flush(s, err) < 0)
		goto out;
	for (int steps = 0;; steps++) {
		if (read_reply(s, &r, err) < 0)
			goto out;
		if (r.code != 334)
			break;
		buf_reset(&resp);
		if (steps >= SMTP_AUTH_STEPS_MAX ||
		    sasl_step(sasl, s->lines.v[0], &resp, &serr) < 0) {
			if (steps >= SMTP_AUTH_STEPS_MAX)
				err_set(&serr, ERR_PROTO, "too many challenges");
			/* "*" cancels the exchange (RFC 4954 section 4). */
			if (put_line(s, "*", 1, NULL, err) < 0 ||
			    flush(s, err) < 0 || read_reply(s, &r, err) < 0)
				goto out;
			err_set(err, ERR_TEMP, "%s: authentication failed: %s",
			    peer(s), serr.msg);
			goto out;
		}
		if (put_secret(s, &resp, err) < 0)
			goto out;
	}
	if (r.code == 235) {
		if (sasl_complete(sasl, &serr) < 0) {
			/* The server could not prove it knows the secret. */
			err_set(err, ERR_TEMP, "%s: authentication failed: %s",
			    peer(s), serr.msg);
			s->broken = 1;
			goto out;
		}
		rc = 0;
	} else {
		err_set(err, ERR_TEMP, "%s: authentication failed: %s",
		    peer(s), r.text);
	}
out:
	s->redact = 0;
	buf_wipe_free(&line);
	buf_wipe_free(&resp);
	return rc;
}

/* AUTH is all or nothing: any failure ends the session (ERR_TEMP). */
static int
authenticate(struct smtp_session *s, const char *secret, struct err *err)
{
	const struct smarthost *sh = s->sh;
	enum sasl_mech mech;
	struct sasl *sasl;
	int rc;

	if (secret == NULL)
		return 0;
	if (sh->username == NULL || sh->username[0] == '\0')
		return err_set(err, ERR_CONFIG, "smarthost %s: a password is "
		    "configured but no username", sh->name ? sh->name : sh->host);
	if (!smtp_auth_allowed(sh, conn_is_tls(s->c)))
		return err_set(err, ERR_TEMP, "%s: refusing to send AUTH in "
		    "plaintext (allowed only with tls = none to a loopback "
		    "host)", peer(s));
	if (!(s->ext & SMTP_EXT_AUTH))
		return err_set(err, ERR_TEMP, "%s: smarthost offers no AUTH%s",
		    peer(s), conn_is_tls(s->c) ? " after TLS" : "");
	if (sasl_choose(&s->auth, &sh->auth, &mech, err) < 0) {
		err->cls = ERR_TEMP;
		return err_prefix(err, "%s: authentication", peer(s));
	}
	sasl = sasl_new(mech, sh->username, secret, sh->host, sh->port);
	rc = auth_exchange(s, sasl, mech, err);
	sasl_free(sasl);
	return rc;
}

/* Polite end: QUIT unless the dialogue is out of sync or replies are
 * still due. */
static void
session_end(struct smtp_session *s)
{
	struct smtp_reply r;
	struct err e;

	if (s->c != NULL && !s->broken && s->state != SMTP_CLOSED &&
	    !s->in_tx && s->final == NULL) {
		set_state(s, SMTP_QUIT);
		if (put_line(s, "QUIT", 4, NULL, &e) == 0 && flush(s, &e) == 0)
			(void)read_reply(s, &r, &e);
	}
	set_state(s, SMTP_CLOSED);
	conn_close(s->c);
	s->c = NULL;
}

static void
session_free(struct smtp_session *s)
{
	session_end(s);
	strlist_free(&s->auth);
	strlist_free(&s->lines);
	free(s->line);
	free(s->helo);
	free(s);
}

static int
helo_name_ok(const char *h)
{
	size_t n = h ? strlen(h) : 0;

	if (n == 0 || n > 255)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)h[i] <= ' ' || (unsigned char)h[i] >= 0x7f)
			return 0;
	return 1;
}

struct conn *
smtp_connect(const struct smarthost *sh, struct err *err)
{
	return net_connect(sh->host, sh->port,
	    sh->connect_timeout > 0 ? sh->connect_timeout : 30,
	    sh->timeout > 0 ? sh->timeout : 300, err);
}

int
smtp_open(const struct smtp_params *p, struct smtp_session **out,
    struct err *err)
{
	const struct smarthost *sh = p->sh;
	struct smtp_session *s;
	size_t linemax;

	*out = NULL;
	if (!helo_name_ok(p->helo_name) || (sh->tls != TLS_NONE && p->tls == NULL)) {
		conn_close(p->conn);
		if (!helo_name_ok(p->helo_name))
			return err_set(err, ERR_CONFIG, "invalid EHLO name");
		return err_set(err, ERR_INTERNAL, "smarthost %s: TLS configured "
		    "but no TLS context given", sh->host);
	}
	s = xcalloc(1, sizeof(*s));
	s->sh = sh;
	s->tls = p->tls;
	s->helo = xstrdup(p->helo_name);
	s->timeout = sh->timeout > 0 ? sh->timeout : 300;
	s->max_lines = p->max_reply_lines > 0 ? p->max_reply_lines :
	    SMTP_REPLY_LINES_MAX;
	linemax = p->max_reply_line > 0 ? (size_t)p->max_reply_line :
	    SMTP_REPLY_LINE_MAX;
	if (linemax > NET_LINE_LIMIT)
		linemax = NET_LINE_LIMIT;
	s->linesize = linemax + 1;
	s->line = xmalloc(s->linesize);
	s->state = SMTP_CONNECT;
	s->c = p->conn != NULL ? p->conn : smtp_connect(sh, err);
	if (s->c == NULL) {
		session_free(s);
		return -1;
	}
	conn_set_line_max(s->c, linemax);
	if (sh->tls == TLS_SMTPS) {
		set_state(s, SMTP_TLS);
		if (conn_starttls(s->c, s->tls, sh->host, err) < 0) {
			io_fail(s, err, 0);
			session_free(s);
			return -1;
		}
	}
	if (greeting(s, err) < 0 || hello(s, 0, err) < 0 ||
	    starttls(s, err) < 0 || authenticate(s, p->secret, err) < 0) {
		session_free(s);
		return -1;
	}
	set_state(s, SMTP_READY);
	*out = s;
	return 0;
}

/* RFC 3461 xtext: printable ASCII except '+' and '=', the rest "+HH". */
static int
xtext(struct buf *b, const char *in)
{
	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		int rc = (*p >= 33 && *p <= 126 && *p != '+' && *p != '=') ?
		    buf_putc(b, *p) : buf_printf(b, "+%02X", *p);

		if (rc < 0)
			return -1;
	}
	return 0;
}

/* An address we are willing to put between <>: no controls, bounded. */
static int
path_ok(const char *a)
{
	size_t n;

	if (a == NULL || (n = strlen(a)) > SMTP_ADDR_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)a[i] < 0x20 || a[i] == 0x7f)
			return 0;
	return 1;
}

/* A reply decided here; the text says so, for mailq and bounces. */
static void
local_reply(struct smtp_reply *r, int code, const char *enh, const char *msg)
{
	r->code = code;
	str_copy(r->enh, enh, sizeof(r->enh));
	str_fmt(r->text, sizeof(r->text), "%d %s %s" SMTP_LOCAL, code, enh,
	    msg);
}

/* Give r to every recipient that has no result yet. */
static void
fill_pending(struct smtp_reply *rcpt, size_t n, const struct smtp_reply *r)
{
	for (size_t i = 0; i < n; i++)
		if (rcpt[i].code == 0)
			rcpt[i] = *r;
}

static int
build_mail(const struct smtp_session *s, const struct smtp_msg *m,
    struct buf *b)
{
	int rc = buf_printf(b, "MAIL FROM:<%s>", m->sender);

	if ((s->ext & SMTP_EXT_SIZE) && m->size > 0)
		rc |= buf_printf(b, " SIZE=%llu", m->size);
	if (m->eightbit && (s->ext & SMTP_EXT_8BITMIME))
		rc |= buf_puts(b, " BODY=8BITMIME");
	if (m->smtputf8)
		rc |= buf_puts(b, " SMTPUTF8");
	if (s->ext & SMTP_EXT_DSN) {
		if (m->ret != NULL && (strcasecmp(m->ret, "FULL") == 0 ||
		    strcasecmp(m->ret, "HDRS") == 0))
			rc |= buf_printf(b, " RET=%s", m->ret);
		if (m->envid != NULL && m->envid[0] != '\0' &&
		    strlen(m->envid) <= SMTP_ENVID_MAX && path_ok(m->envid)) {
			rc |= buf_puts(b, " ENVID=");
			rc |= xtext(b, m->envid);
		}
	}
	return rc;
}

static int
build_rcpt(const struct smtp_session *s, const struct smtp_msg *m, size_t i,
    struct buf *b)
{
	int rc = buf_printf(b, "RCPT TO:<%s>", m->rcpts[i]);

	if (!(s->ext & SMTP_EXT_DSN))
		return rc;
	if (m->notify != NULL && m->notify[i] != 0) {
		unsigned v = m->notify[i];
		char list[32] = "";

		/* NEVER excludes the others (RFC 3461 section 4.1). */
		if (v & SMTP_NOTIFY_NEVER)
			str_copy(list, ",NEVER", sizeof(list));
		if (!(v & SMTP_NOTIFY_NEVER) && (v & SMTP_NOTIFY_SUCCESS))
			str_append(list, ",SUCCESS", sizeof(list));
		if (!(v & SMTP_NOTIFY_NEVER) && (v & SMTP_NOTIFY_FAILURE))
			str_append(list, ",FAILURE", sizeof(list));
		if (!(v & SMTP_NOTIFY_NEVER) && (v & SMTP_NOTIFY_DELAY))
			str_append(list, ",DELAY", sizeof(list));
		if (list[0] != '\0')
			rc |= buf_printf(b, " NOTIFY=%s", list + 1);
	}
	if (m->orcpt != NULL && m->orcpt[i] != NULL && m->orcpt[i][0] != '\0' &&
	    path_ok(m->orcpt[i])) {
		rc |= buf_puts(b, " ORCPT=rfc822;");
		rc |= xtext(b, m->orcpt[i]);
	}
	return rc;
}

/* 421 at any point: the server is going away; it answers for everyone. */
static int
tx_closing(struct smtp_session *s, struct smtp_reply *rcpt, size_t n,
    const struct smtp_reply *r, struct err *err)
{
	fill_pending(rcpt, n, r);
	return err_set(err, ERR_TEMP, "%s: smarthost closed the session in "
	    "reply to %s: %s", peer(s), state_names[s->state], r->text);
}

/* Read and file the reply to one command sent earlier. */
static int
tx_reply(struct smtp_session *s, const struct pending *pd, struct err *err)
{
	static const enum smtp_state st[] = {
		[CMD_MAIL] = SMTP_MAIL, [CMD_RCPT] = SMTP_RCPT,
		[CMD_DATA] = SMTP_DATA,
	};
	struct tx *t = &s->tx;
	struct smtp_reply r;
	int cls;

	set_state(s, st[pd->kind]);
	if (read_reply(s, &r, err) < 0)
		return -1;
	if (r.code == 421)
		return tx_closing(s, t->rcpt, t->m->nrcpts, &r, err);
	cls = r.code / 100;
	switch (pd->kind) {
	case CMD_MAIL:
		if (cls == 4 || cls == 5) {
			t->mail_failed = 1;
			t->mail_r = r;
		}
		if (cls == 2 || cls == 4 || cls == 5)
			return 0;
		break;
	case CMD_RCPT:
		if (t->mail_failed)
			return 0;  /* "need MAIL first": MAIL's reply says it */
		if (cls == 2)
			t->accepted++;      /* result comes with the final "." */
		else if (cls == 4 || cls == 5)
			t->rcpt[pd->i] = r;
		else
			break;
		return 0;
	case CMD_DATA:
		if (r.code != 354 && cls != 4 && cls != 5)
			break;
		t->data_code = r.code;
		t->data_r = r;
		return 0;
	}
	return proto_fail(s, err, &r);
}

/*
 * Queue the next group of commands, unflushed: MAIL first, then RCPTs,
 * DATA after the last one. With PIPELINING a group holds up to
 * SMTP_PIPE_WINDOW commands and DATA ends the last (RFC 2920); without
 * it, one command, and DATA only when a recipient was accepted.
 */
static int
tx_queue(struct smtp_session *s, struct err *err)
{
	struct tx *t = &s->tx;
	const struct smtp_msg *m = t->m;
	size_t window = (s->ext & SMTP_EXT_PIPELINING) ? SMTP_PIPE_WINDOW : 1;
	struct buf line;
	int rc = -1;

	buf_init(&line, SMTP_CMD_MAX);
	if (!t->mail_sent) {
		if (build_mail(s, m, &line) < 0) {
			s->broken = 1;
			err_set(err, ERR_INTERNAL, "MAIL command too long");
			goto out;
		}
		set_state(s, SMTP_MAIL);
		s->need_rset = 1;
		if (put_line(s, line.data, line.len, NULL, err) < 0)
			goto out;
		t->pend[t->npend++] = (struct pending){ CMD_MAIL, 0 };
		t->mail_sent = 1;
	}
	for (; t->npend < window && t->next < m->nrcpts; t->next++) {
		if (t->rcpt[t->next].code != 0)
			continue;      /* refused locally */
		buf_reset(&line);
		if (build_rcpt(s, m, t->next, &line) < 0) {
			s->broken = 1;   /* MAIL is queued, unsent */
			err_set(err, ERR_INTERNAL, "RCPT command too long");
			goto out;
		}
		set_state(s, SMTP_RCPT);
		if (put_line(s, line.data, line.len, NULL, err) < 0)
			goto out;
		t->pend[t->npend++] = (struct pending){ CMD_RCPT, t->next };
	}
	if (t->next == m->nrcpts && t->npend < window && !t->data_queued &&
	    !t->mail_failed && (window > 1 || t->accepted > 0)) {
		set_state(s, SMTP_DATA);
		if (put_line(s, "DATA", 4, NULL, err) < 0)
			goto out;
		t->pend[t->npend++] = (struct pending){ CMD_DATA, 0 };
		t->data_queued = 1;
	}
	rc = 0;
out:
	buf_free(&line);
	return rc;
}

/* The rest of MAIL, RCPT..., DATA: read the replies of the group already
 * sent (smtp_start's), send the next group, until DATA or a failed MAIL. */
static int
tx_commands(struct smtp_session *s, struct err *err)
{
	struct tx *t = &s->tx;

	for (;;) {
		if (t->npend == 0) {
			if (tx_queue(s, err) < 0)
				return -1;
			if (t->npend == 0)
				return 0;
			if (flush(s, err) < 0)
				return -1;
		}
		for (size_t k = 0; k < t->npend; k++)
			if (tx_reply(s, &t->pend[k], err) < 0)
				return -1;
		t->npend = 0;
		if (t->mail_failed || t->data_queued)
			return 0;
	}
}

/*
 * Copy the wire-form data file (it must be exactly m->size bytes) and send
 * the final "."; its reply is read by smtp_end, so that the next message's
 * commands can go out meanwhile.
 */
static int
tx_body(struct smtp_session *s, struct err *err)
{
	const struct smtp_msg *m = s->tx.m;
	unsigned long long total = 0;
	char *chunk, last[2] = { '\r', '\n' };
	int rc = -1;

	set_state(s, SMTP_BODY);
	if (lseek(m->datafd, 0, SEEK_SET) < 0 && errno != ESPIPE) {
		s->broken = 1;
		return err_sys(err, ERR_TEMP, "cannot rewind the message data");
	}
	chunk = xmalloc(SMTP_CHUNK);
	for (;;) {
		ssize_t n = read(m->datafd, chunk, SMTP_CHUNK);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			/* Mid-DATA there is no way back but hanging up. */
			s->broken = 1;
			err_sys(err, ERR_TEMP, "reading the message data");
			goto out;
		}
		if (n == 0)
			break;
		if (conn_write(s->c, chunk, (size_t)n, err) < 0) {
			io_fail(s, err, 1);
			goto out;
		}
		if (n >= 2) {
			last[0] = chunk[n - 2];
		} else {
			last[0] = last[1];
		}
		last[1] = chunk[n - 1];
		total += (unsigned long long)n;
	}
	if (m->size != 0 && total != m->size) {
		s->broken = 1;
		err_set(err, ERR_TEMP, "message data is %llu bytes, expected "
		    "%llu; not sending it", total, m->size);
		goto out;
	}
	/* Wire form ends with CRLF; if not, the "." must not join a line. */
	if ((last[0] != '\r' || last[1] != '\n') &&
	    conn_write(s->c, "\r\n", 2, err) < 0) {
		io_fail(s, err, 1);
		goto out;
	}
	log_debug("smtp %s: sent %llu bytes of message data", peer(s), total);
	set_state(s, SMTP_DOT);
	if (put_line(s, ".", 1, NULL, err) < 0 || flush(s, err) < 0)
		goto out;
	/* Whatever its reply, the "." ends the transaction. */
	s->final = s->tx.rcpt;
	s->nfinal = m->nrcpts;
	s->need_rset = 0;
	rc = 0;
out:
	free(chunk);
	return rc;
}

/* DATA was accepted with nobody to deliver to: end it empty (RFC 2920). */
static int
tx_end_empty(struct smtp_session *s, struct err *err)
{
	struct smtp_reply r;

	set_state(s, SMTP_DOT);
	if (put_line(s, ".", 1, NULL, err) < 0 || flush(s, err) < 0 ||
	    read_reply(s, &r, err) < 0)
		return -1;
	if (r.code == 421)
		return tx_closing(s, s->tx.rcpt, s->tx.m->nrcpts, &r, err);
	return 0;
}

static void
refuse_all(const struct smtp_msg *m, struct smtp_reply *rcpt, int code,
    const char *enh, const char *text)
{
	for (size_t i = 0; i < m->nrcpts; i++)
		local_reply(&rcpt[i], code, enh, text);
}

static int
unusable(struct smtp_session *s, struct err *err)
{
	return err_set(err, ERR_INTERNAL, "%s: SMTP session is no longer "
	    "usable", peer(s));
}

/* Another transaction's replies are still to be read. */
static int
out_of_turn(struct smtp_session *s, const char *what, struct err *err)
{
	s->broken = 1;
	return err_set(err, ERR_INTERNAL, "%s: %s while another transaction "
	    "is under way", peer(s), what);
}

int
smtp_start(struct smtp_session *s, const struct smtp_msg *m,
    struct smtp_reply *rcpt, struct err *err)
{
	size_t nvalid = 0;
	char text[256];

	for (size_t i = 0; i < m->nrcpts; i++)
		memset(&rcpt[i], 0, sizeof(rcpt[i]));
	if (s->broken || s->c == NULL)
		return unusable(s, err);
	if (s->in_tx)
		return out_of_turn(s, "smtp_start", err);
	if (m->nrcpts == 0)
		return 0;
	/* need_rset is never set while a "." awaits its reply. */
	if (s->need_rset && smtp_rset(s, err) < 0)
		return -1;
	/* Refusals decided here never reach the server. */
	if (!path_ok(m->sender)) {
		refuse_all(m, rcpt, 553, "5.1.7", "invalid sender address");
		return 0;
	}
	if (m->smtputf8 && !(s->ext & SMTP_EXT_SMTPUTF8)) {
		refuse_all(m, rcpt, 553, "5.6.7", "message needs SMTPUTF8 but "
		    "the smarthost does not offer it");
		return 0;
	}
	if (s->size_max > 0 && m->size > s->size_max) {
		str_fmt(text, sizeof(text), "message size %llu exceeds "
		    "smarthost limit %llu", m->size, s->size_max);
		refuse_all(m, rcpt, 552, "5.3.4", text);
		return 0;
	}
	for (size_t i = 0; i < m->nrcpts; i++) {
		if (m->rcpts[i] == NULL || m->rcpts[i][0] == '\0' ||
		    !path_ok(m->rcpts[i]))
			local_reply(&rcpt[i], 553, "5.1.3",
			    "invalid recipient address");
		else
			nvalid++;
	}
	if (nvalid == 0)
		return 0;
	/* Like Postfix: 8-bit data goes out unchanged even without
	 * 8BITMIME; most servers cope, and downgrading would alter it. */
	if (m->eightbit && !(s->ext & SMTP_EXT_8BITMIME))
		log_info("%s: smarthost does not offer 8BITMIME; sending 8-bit "
		    "message unchanged", peer(s));
	memset(&s->tx, 0, sizeof(s->tx));
	s->tx.m = m;
	s->tx.rcpt = rcpt;
	s->in_tx = 1;
	/* Without PIPELINING nothing may go out before the last reply. */
	if (!(s->ext & SMTP_EXT_PIPELINING))
		return 0;
	if (tx_queue(s, err) < 0 || flush(s, err) < 0)
		return -1;
	return 0;
}

int
smtp_data(struct smtp_session *s, struct err *err)
{
	struct tx *t = &s->tx;

	if (!s->in_tx)
		return 0;          /* decided in smtp_start, or nothing to do */
	if (s->final != NULL)
		return out_of_turn(s, "smtp_data", err);
	s->in_tx = 0;
	if (s->broken || s->c == NULL)
		return unusable(s, err);
	if (tx_commands(s, err) < 0)
		return -1;
	if (t->mail_failed)
		fill_pending(t->rcpt, t->m->nrcpts, &t->mail_r);
	if (t->data_code == 354 && (t->mail_failed || t->accepted == 0)) {
		if (tx_end_empty(s, err) < 0)
			return -1;
	} else if (t->data_code == 354) {
		return tx_body(s, err);
	} else if (t->data_code != 0) {
		fill_pending(t->rcpt, t->m->nrcpts, &t->data_r);  /* refused */
	}
	set_state(s, SMTP_READY);
	return 0;
}

/*
 * The reply to the final "." is read even when the session broke after
 * it was sent (a later command could not be written): it is the one that
 * says whether the message was taken.
 */
int
smtp_end(struct smtp_session *s, struct err *err)
{
	struct smtp_reply r, *rcpt = s->final;
	size_t n = s->nfinal;

	if (rcpt == NULL)
		return 0;
	s->final = NULL;
	if (s->c == NULL)
		return unusable(s, err);
	set_state(s, SMTP_DOT);
	if (read_reply(s, &r, err) < 0)
		return -1;
	if (r.code == 421)
		return tx_closing(s, rcpt, n, &r, err);
	if (r.code / 100 != 2 && r.code / 100 != 4 && r.code / 100 != 5)
		return proto_fail(s, err, &r);
	fill_pending(rcpt, n, &r);
	if (!s->in_tx)
		set_state(s, SMTP_READY);
	return 0;
}

int
smtp_send(struct smtp_session *s, const struct smtp_msg *m,
    struct smtp_reply *rcpt, struct err *err)
{
	if (s->final != NULL)
		return out_of_turn(s, "smtp_send", err);
	if (smtp_start(s, m, rcpt, err) < 0 || smtp_data(s, err) < 0 ||
	    smtp_end(s, err) < 0)
		return -1;
	return 0;
}

int
smtp_usable(const struct smtp_session *s)
{
	return s != NULL && s->c != NULL && !s->broken;
}

int
smtp_rset(struct smtp_session *s, struct err *err)
{
	struct smtp_reply r;

	if (s->broken || s->c == NULL)
		return unusable(s, err);
	if (s->in_tx || s->final != NULL)
		return out_of_turn(s, "RSET", err);
	if (command(s, SMTP_RSET, "RSET", &r, err) < 0)
		return -1;
	if (r.code / 100 != 2) {
		s->broken = 1;
		return err_set(err, r.code / 100 == 3 ? ERR_PROTO : ERR_TEMP,
		    "%s: RSET failed: %s", peer(s), r.text);
	}
	s->need_rset = 0;
	set_state(s, SMTP_READY);
	return 0;
}

int
smtp_vrfy(struct smtp_session *s, const char *addr, struct smtp_reply *r,
    struct err *err)
{
	char line[SMTP_ADDR_MAX + 8];

	memset(r, 0, sizeof(*r));
	if (s->broken || s->c == NULL)
		return unusable(s, err);
	if (s->in_tx || s->final != NULL)
		return out_of_turn(s, "VRFY", err);
	if (addr == NULL || addr[0] == '\0' || !path_ok(addr))
		return err_set(err, ERR_DATA, "invalid address for VRFY");
	str_fmt(line, sizeof(line), "VRFY %s", addr);
	if (command(s, SMTP_VRFY, line, r, err) < 0)
		return -1;
	if (!s->broken)
		set_state(s, SMTP_READY);
	return 0;
}

const char *
smtp_peer(const struct smtp_session *s)
{
	return peer(s);
}

const char *
smtp_tls_info(const struct smtp_session *s)
{
	return s->c ? conn_tls_info(s->c) : "";
}

struct conn *
smtp_conn(const struct smtp_session *s)
{
	return s->c;
}

unsigned
smtp_extensions(const struct smtp_session *s)
{
	return s->ext;
}

unsigned long long
smtp_size_limit(const struct smtp_session *s)
{
	return s->size_max;
}

void
smtp_close(struct smtp_session *s)
{
	if (s != NULL)
		session_free(s);
}
