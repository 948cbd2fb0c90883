/*
 * smtpd.c - the server side of SMTP for -bs: commands are read as lines
 * from the same buffer the message reader uses (struct msg_input), so
 * pipelined commands after a "." are never lost; replies are batched and
 * sent whenever the client's input is used up (RFC 2920). Each DATA goes
 * through submit(); its 250 is sent only after the message is durable.
 *
 * The parser (smtpd_parse) is pure and table-tested; the session keeps
 * the RFC 5321 state: greeting, optional HELO/EHLO, MAIL, RCPT..., DATA.
 */
#include "autoconf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "log.h"
#include "message.h"
#include "smtpd.h"
#include "submit.h"

#define VERB_MAX 16
#define REPLY_TEXT_MAX 300       /* error text quoted in a reply */

struct verb {
	const char *name;
	int verb;                /* enum smtpd_verb, or -1: not implemented */
};

static const struct verb verbs[] = {
	{ "HELO", SMTPD_HELO }, { "EHLO", SMTPD_EHLO }, { "MAIL", SMTPD_MAIL },
	{ "RCPT", SMTPD_RCPT }, { "DATA", SMTPD_DATA }, { "RSET", SMTPD_RSET },
	{ "NOOP", SMTPD_NOOP }, { "VRFY", SMTPD_VRFY }, { "HELP", SMTPD_HELP },
	{ "QUIT", SMTPD_QUIT },
	{ "EXPN", -1 }, { "TURN", -1 }, { "ETRN", -1 }, { "ATRN", -1 },
	{ "BDAT", -1 }, { "STARTTLS", -1 }, { "AUTH", -1 }, { "SEND", -1 },
	{ "SOML", -1 }, { "SAML", -1 },
};

/* --- the command parser --------------------------------------------- */

static int
set_reply(char *reply, size_t size, int code, const char *text)
{
	str_fmt(reply, size, "%d %s", code, text);
	return code;
}

/* Nothing but printable text, TAB and 8-bit bytes (UTF-8 addresses). */
static int
line_clean(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return 0;
	}
	return 1;
}

/*
 * A reverse-path or forward-path at s[0..n): "<addr>", "<>", an obsolete
 * source route "<@a,@b:addr>", or (leniently) a bare addr. The address
 * goes to out; *used is where the parameters start. -1 on bad syntax.
 */
static int
parse_path(const char *s, size_t n, char *out, size_t size, size_t *used)
{
	size_t i = 0, start, end;
	const char *colon;

	while (i < n && s[i] == ' ')
		i++;
	if (i < n && s[i] == '<') {
		int quoted = 0;

		for (start = ++i; i < n; i++) {
			if (quoted && s[i] == '\\' && i + 1 < n)
				i++;
			else if (s[i] == '"')
				quoted = !quoted;
			else if (!quoted && s[i] == '>')
				break;
		}
		if (i == n)
			return -1;
		end = i++;
		if (i < n && s[i] != ' ')
			return -1;
	} else {
		for (start = i; i < n && s[i] != ' '; i++)
			;
		end = i;
		if (start == end)
			return -1;
	}
	if (end > start && s[start] == '@') {
		if ((colon = memchr(s + start, ':', end - start)) == NULL)
			return -1;
		start = (size_t)(colon - s) + 1;
	}
	if (end - start >= size)
		return -1;
	memcpy(out, s + start, end - start);
	out[end - start] = '\0';
	*used = i;
	return 0;
}

static int
parse_size_param(const char *v, size_t n, unsigned long long *out)
{
	unsigned long long x = 0;

	if (n == 0 || n > 20)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		if (x > (~0ULL - (unsigned)(v[i] - '0')) / 10)
			return -1;
		x = x * 10 + (unsigned)(v[i] - '0');
	}
	*out = x;
	return 0;
}

static int
key_is(const char *k, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(k, name, n) == 0;
}

/* MAIL parameters (RCPT takes none). */
static int
parse_params(const char *s, size_t n, int mail, unsigned long long max_size,
    struct smtpd_cmd *cmd, char *reply, size_t rsize)
{
	size_t i = 0;

	while (i < n) {
		const char *k, *eq, *v = NULL;
		size_t b, klen, vlen = 0;

		while (i < n && s[i] == ' ')
			i++;
		if (i == n)
			break;
		for (b = i; i < n && s[i] != ' '; i++)
			;
		k = s + b;
		klen = i - b;
		if ((eq = memchr(k, '=', klen)) != NULL) {
			v = eq + 1;
			vlen = klen - (size_t)(v - k);
			klen = (size_t)(eq - k);
		}
		if (!mail)
			return set_reply(reply, rsize, 555,
			    "5.5.4 Error: RCPT parameters are not supported");
		if (key_is(k, klen, "SIZE")) {
			if (v == NULL || parse_size_param(v, vlen, &cmd->size) < 0)
				return set_reply(reply, rsize, 501,
				    "5.5.4 Error: bad SIZE parameter");
			if (max_size != 0 && cmd->size > max_size)
				return set_reply(reply, rsize, 552, "5.3.4 Error: "
				    "message size exceeds the fixed limit");
		} else if (key_is(k, klen, "BODY")) {
			if (v != NULL && key_is(v, vlen, "7BIT"))
				cmd->body = SMTPD_BODY_7BIT;
			else if (v != NULL && key_is(v, vlen, "8BITMIME"))
				cmd->body = SMTPD_BODY_8BITMIME;
			else
				return set_reply(reply, rsize, 501,
				    "5.5.4 Error: unsupported BODY parameter");
		} else if (key_is(k, klen, "SMTPUTF8")) {
			if (v != NULL)
				return set_reply(reply, rsize, 501,
				    "5.5.4 Error: SMTPUTF8 takes no value");
			cmd->smtputf8 = 1;
		} else {
			return set_reply(reply, rsize, 555,
			    "5.5.4 Error: unsupported MAIL parameter");
		}
	}
	return 0;
}

/* MAIL FROM:<path> params / RCPT TO:<path>. */
static int
parse_mail_rcpt(const char *a, size_t n, int mail, unsigned long long max_size,
    struct smtpd_cmd *cmd, char *reply, size_t rsize)
{
	const char *kw = mail ? "FROM:" : "TO:";
	size_t kwlen = strlen(kw), used;

	if (n < kwlen || strncasecmp(a, kw, kwlen) != 0)
		return set_reply(reply, rsize, 501, mail ?
		    "5.5.4 Syntax: MAIL FROM:<address>" :
		    "5.5.4 Syntax: RCPT TO:<address>");
	a += kwlen;
	n -= kwlen;
	if (parse_path(a, n, cmd->arg, sizeof(cmd->arg), &used) < 0 ||
	    (cmd->arg[0] == '\0' && !mail) ||
	    (cmd->arg[0] != '\0' && addr_validate(cmd->arg, NULL) < 0))
		return set_reply(reply, rsize, 501, mail ?
		    "5.1.7 Error: bad sender address syntax" :
		    "5.1.3 Error: bad recipient address syntax");
	return parse_params(a + used, n - used, mail, max_size, cmd, reply,
	    rsize);
}

int
smtpd_parse(const char *line, size_t len, unsigned long long max_size,
    struct smtpd_cmd *cmd, char *reply, size_t replysize)
{
	char name[VERB_MAX];
	size_t i = 0, alen;
	const char *a;
	int verb = -2;

	memset(cmd, 0, sizeof(*cmd));
	reply[0] = '\0';
	if (len > SMTPD_LINE_LIMIT)
		return set_reply(reply, replysize, 500,
		    "5.5.2 Error: line too long");
	if (!line_clean(line, len))
		return set_reply(reply, replysize, 500,
		    "5.5.2 Error: control character in command");
	while (i < len && line[i] != ' ' && i < VERB_MAX - 1) {
		name[i] = line[i];
		i++;
	}
	name[i] = '\0';
	if (i == len || line[i] == ' ') {
		for (size_t k = 0; k < sizeof(verbs) / sizeof(verbs[0]); k++)
			if (strcasecmp(name, verbs[k].name) == 0)
				verb = verbs[k].verb;
	}
	if (verb == -2)
		return set_reply(reply, replysize, 500,
		    "5.5.1 Error: command not recognized");
	if (verb == -1)
		return set_reply(reply, replysize, 502,
		    "5.5.1 Error: command not implemented");
	cmd->verb = (enum smtpd_verb)verb;
	while (i < len && line[i] == ' ')
		i++;
	a = line + i;
	alen = len - i;
	while (alen > 0 && (a[alen - 1] == ' ' || a[alen - 1] == '\t'))
		alen--;

	switch (cmd->verb) {
	case SMTPD_HELO:
	case SMTPD_EHLO:
		if (alen == 0)
			return set_reply(reply, replysize, 501,
			    cmd->verb == SMTPD_HELO ? "5.5.4 Syntax: HELO hostname" :
			    "5.5.4 Syntax: EHLO hostname");
		break;
	case SMTPD_MAIL:
	case SMTPD_RCPT:
		return parse_mail_rcpt(a, alen, cmd->verb == SMTPD_MAIL,
		    max_size, cmd, reply, replysize);
	case SMTPD_DATA:
	case SMTPD_RSET:
	case SMTPD_QUIT:
		if (alen > 0)
			return set_reply(reply, replysize, 501,
			    cmd->verb == SMTPD_DATA ? "5.5.4 Syntax: DATA" :
			    cmd->verb == SMTPD_RSET ? "5.5.4 Syntax: RSET" :
			    "5.5.4 Syntax: QUIT");
		break;
	case SMTPD_VRFY:
		if (alen == 0)
			return set_reply(reply, replysize, 501,
			    "5.5.4 Syntax: VRFY address");
		break;
	case SMTPD_NOOP:
	case SMTPD_HELP:
		break;
	}
	memcpy(cmd->arg, a, alen);
	cmd->arg[alen] = '\0';
	return 0;
}

/* --- the session ---------------------------------------------------- */

struct session {
	const struct config *cfg;
	const struct smtpd_opts *o;
	struct err *err;
	struct msg_input in;
	struct buf out;
	int out_failed;
	int errors;
	size_t line_max;         /* max_smtp_line */
	/* the transaction */
	int in_mail;
	char *sender;            /* "" = null sender; NULL outside MAIL */
	enum smtpd_body body;
	struct strlist rcpts;
	unsigned queued;
};

static void reply(struct session *ss, const char *fmt, ...) PRINTF_LIKE(2, 3);

static void
reply(struct session *ss, const char *fmt, ...)
{
	char line[SMTPD_REPLY_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	buf_puts(&ss->out, line);
	buf_puts(&ss->out, "\r\n");
}

/* Send the batched replies. */
static int
flush(struct session *ss)
{
	if (ss->out_failed)
		return -1;
	if (ss->out.len > 0 &&
	    write_all(ss->o->outfd, ss->out.data, ss->out.len) < 0) {
		ss->out_failed = 1;
		return err_sys(ss->err, ERR_IO, "cannot write to the SMTP client");
	}
	buf_reset(&ss->out);
	return 0;
}

static void
reset_transaction(struct session *ss)
{
	ss->in_mail = 0;
	free(ss->sender);
	ss->sender = NULL;
	ss->body = SMTPD_BODY_NONE;
	strlist_free(&ss->rcpts);
}

/*
 * One command line into line (NUL-terminated, line end removed). 1 when
 * a line was read (*toolong: it was cut, the rest discarded), 0 at end of
 * input, -1 on a read error or timeout. *crlf: it ended in CRLF. Replies
 * are flushed before waiting for input.
 */
static int
read_line(struct session *ss, char *line, size_t size, size_t *len,
    int *toolong, int *crlf)
{
	struct msg_input *in = &ss->in;

	*len = 0;
	*toolong = 0;
	*crlf = 0;
	for (;;) {
		const char *b, *nl;
		size_t avail, n, take;
		int r;

		if (in->pos == in->len) {
			if (flush(ss) < 0)
				return -1;
			if ((r = msg_input_fill(in, ss->err)) <= 0)
				return r;   /* a partial last line is dropped */
		}
		b = in->buf + in->pos;
		avail = in->len - in->pos;
		nl = memchr(b, '\n', avail);
		n = nl ? (size_t)(nl - b) : avail;
		take = n;
		if (take > size - 1 - *len) {
			take = size - 1 - *len;
			*toolong = 1;
		}
		memcpy(line + *len, b, take);
		*len += take;
		in->pos += n + (nl ? 1 : 0);
		if (nl != NULL)
			break;
	}
	if (*len > 0 && line[*len - 1] == '\r') {
		(*len)--;
		*crlf = 1;
	}
	line[*len] = '\0';
	return 1;
}

/* Error text safe for a reply line. */
static void
reply_text(const char *msg, char *out, size_t size)
{
	str_escape(msg, strlen(msg), out, size < REPLY_TEXT_MAX ? size :
	    REPLY_TEXT_MAX);
}

/* The reply for a DATA that submit() refused. */
static void
reply_refused(struct session *ss, const struct submit_result *res,
    const struct err *e)
{
	char t[REPLY_TEXT_MAX];

	reply_text(e->msg, t, sizeof(t));
	if (res->too_big) {
		reply(ss, "552 5.3.4 Error: message exceeds the size limit");
		return;
	}
	switch (e->cls) {
	case ERR_DATA:
		reply(ss, "554 5.6.0 Error: %s", t);
		break;
	case ERR_USAGE:
		reply(ss, "554 5.5.1 Error: %s", t);
		break;
	case ERR_NOUSER:
		reply(ss, "550 5.1.1 Error: %s", t);
		break;
	case ERR_CONFIG:
		reply(ss, "451 4.3.5 Error: %s", t);
		break;
	default:
		reply(ss, "451 4.3.0 Error: %s", t);
		break;
	}
}

/* DATA: 354, the message, then the outcome. -1 ends the session. */
static int
do_data(struct session *ss, int crlf)
{
	const struct smtpd_opts *o = ss->o;
	struct submission sub;
	struct submit_result res;
	struct msg_opts mo;
	struct err e, e2;
	char *sender;
	int rc = 0;

	reply(ss, "354 End data with <CR><LF>.<CR><LF>");
	if (flush(ss) < 0)
		return -1;
	memset(&sub, 0, sizeof(sub));
	sender = xstrdup(ss->sender != NULL && ss->sender[0] ? ss->sender :
	    "<>");
	sub.sender = sender;
	sub.rcpts = (const char *const *)ss->rcpts.v;
	sub.nrcpts = ss->rcpts.n;
	sub.dot_ends = 1;
	sub.smtp_data = 1;
	sub.crlf_dots = crlf;
	sub.no_fixups = o->no_fixups;
	sub.full_name = o->full_name;
	sub.body_type = ss->body == SMTPD_BODY_8BITMIME ? "8BITMIME" :
	    ss->body == SMTPD_BODY_7BIT ? "7BIT" : NULL;

	if (submit(ss->cfg, o->spool, &sub, &ss->in, &res, &e) == 0) {
		reset_transaction(ss);
		reply(ss, "250 2.0.0 Ok: queued as %s", res.qid);
		ss->queued++;
		if (flush(ss) < 0)
			rc = -1;
		else if (o->queued != NULL)
			o->queued(res.qid, o->arg);
		goto out;
	}
	reset_transaction(ss);
	if (!res.ended && (ss->in.eof || ss->in.failed)) {
		if (ss->in.failed && e.cls == ERR_TEMP) {
			reply(ss, "421 4.4.2 %s Error: timeout exceeded",
			    ss->cfg->hostname);
			flush(ss);
		}
		rc = err_set(ss->err, e.cls == ERR_TEMP ? ERR_TEMP : ERR_PROTO,
		    "SMTP client: %s; nothing queued", e.msg);
		goto out;
	}
	log_warn("SMTP message from <%s> refused: %s", sub.sender, e.msg);
	if (!res.ended) {
		/* Refused before the message was read: read it now. */
		msg_opts_init(&mo);
		mo.crlf_dots = crlf;
		if (message_skip(&ss->in, &mo, &e2) < 0) {
			rc = err_set(ss->err, ERR_PROTO, "SMTP client: %s; "
			    "nothing queued", e2.msg);
			goto out;
		}
	}
	reply_refused(ss, &res, &e);
out:
	free(sender);
	return rc;
}

static void
do_ehlo(struct session *ss)
{
	const char *host = ss->cfg->hostname;

	reply(ss, "250-%s", host);
	reply(ss, "250-PIPELINING");
	if (ss->cfg->max_message_size > 0)
		reply(ss, "250-SIZE %llu", ss->cfg->max_message_size);
	else
		reply(ss, "250-SIZE");
	reply(ss, "250-8BITMIME");
	reply(ss, "250-ENHANCEDSTATUSCODES");
	reply(ss, "250 SMTPUTF8");
}

/* One parsed command; returns 1 when the session is over. */
static int
command(struct session *ss, const struct smtpd_cmd *cmd, int crlf)
{
	const struct config *cfg = ss->cfg;

	switch (cmd->verb) {
	case SMTPD_HELO:
		reset_transaction(ss);
		reply(ss, "250 %s", cfg->hostname);
		break;
	case SMTPD_EHLO:
		reset_transaction(ss);
		do_ehlo(ss);
		break;
	case SMTPD_MAIL:
		if (ss->in_mail) {
			ss->errors++;
			reply(ss, "503 5.5.1 Error: nested MAIL command");
			break;
		}
		ss->in_mail = 1;
		free(ss->sender);
		ss->sender = xstrdup(cmd->arg);
		ss->body = cmd->body;
		reply(ss, "250 2.1.0 Ok");
		break;
	case SMTPD_RCPT:
		if (!ss->in_mail) {
			ss->errors++;
			reply(ss, "503 5.5.1 Error: need MAIL command");
		} else if (cfg->max_recipients > 0 &&
		    ss->rcpts.n >= (size_t)cfg->max_recipients) {
			reply(ss, "452 4.5.3 Error: too many recipients");
		} else {
			strlist_add(&ss->rcpts, cmd->arg);
			reply(ss, "250 2.1.5 Ok");
		}
		break;
	case SMTPD_DATA:
		if (!ss->in_mail || ss->rcpts.n == 0) {
			ss->errors++;
			reply(ss, "503 5.5.1 Error: need %s command",
			    ss->in_mail ? "RCPT" : "MAIL");
			break;
		}
		return do_data(ss, crlf) < 0 ? -1 : 0;
	case SMTPD_RSET:
		reset_transaction(ss);
		reply(ss, "250 2.0.0 Ok");
		break;
	case SMTPD_NOOP:
		reply(ss, "250 2.0.0 Ok");
		break;
	case SMTPD_VRFY:
		reply(ss, "252 2.5.2 Cannot VRFY user, but will accept message "
		    "and attempt delivery");
		break;
	case SMTPD_HELP:
		reply(ss, "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET "
		    "NOOP VRFY HELP QUIT");
		break;
	case SMTPD_QUIT:
		reply(ss, "221 2.0.0 %s closing connection", cfg->hostname);
		return 1;
	}
	return 0;
}

/* The command loop; 1 on QUIT, 0 at end of input, -1 on failure. */
static int
dialogue(struct session *ss)
{
	char *line = xmalloc(ss->line_max + 2), rbuf[SMTPD_REPLY_MAX];
	struct smtpd_cmd *cmd = xmalloc(sizeof(*cmd));
	int rc = 0;

	reply(ss, "220 %s ESMTP relayq", ss->cfg->hostname);
	for (;;) {
		size_t len;
		int toolong, crlf, r;

		if (ss->errors >= SMTPD_MAX_ERRORS) {
			reply(ss, "421 4.7.0 %s Error: too many errors",
			    ss->cfg->hostname);
			break;
		}
		/* + CR, NUL: a line of line_max octets and CRLF fits. */
		r = read_line(ss, line, ss->line_max + 2, &len, &toolong, &crlf);
		if (r <= 0) {
			if (r < 0 && ss->in.failed && ss->err->cls == ERR_TEMP) {
				reply(ss, "421 4.4.2 %s Error: timeout exceeded",
				    ss->cfg->hostname);
				r = 0;
			}
			rc = r;
			break;
		}
		if (toolong || len > ss->line_max) {
			ss->errors++;
			reply(ss, "500 5.5.2 Error: line too long");
			continue;
		}
		if (smtpd_parse(line, len, ss->cfg->max_message_size, cmd, rbuf,
		    sizeof(rbuf)) != 0) {
			ss->errors++;
			reply(ss, "%s", rbuf);
			continue;
		}
		if ((r = command(ss, cmd, crlf)) != 0) {
			rc = r;
			break;
		}
	}
	free(cmd);
	free(line);
	return rc;
}

int
smtpd_session(const struct config *cfg, const struct smtpd_opts *o,
    unsigned *nqueued, struct err *err)
{
	struct session ss;
	int rc;

	memset(&ss, 0, sizeof(ss));
	ss.cfg = cfg;
	ss.o = o;
	ss.err = err;
	ss.line_max = cfg->max_smtp_line > 0 ? (size_t)cfg->max_smtp_line :
	    SMTPD_LINE_MAX;
	if (ss.line_max > SMTPD_LINE_LIMIT)
		ss.line_max = SMTPD_LINE_LIMIT;
	err->cls = ERR_OK;
	err->msg[0] = '\0';
	msg_input_init(&ss.in, o->infd);
	ss.in.timeout = o->timeout > 0 ? o->timeout : SMTPD_TIMEOUT;
	buf_init(&ss.out, 0);

	rc = dialogue(&ss);
	if (flush(&ss) < 0)
		rc = -1;
	*nqueued = ss.queued;
	reset_transaction(&ss);
	buf_free(&ss.out);
	msg_input_free(&ss.in);
	return rc < 0 ? -1 : 0;
}
