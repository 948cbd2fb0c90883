/*
 * envelope.c - the envelope in memory and its text format: building and
 * freeing one, formatting it (outside text sanitised on the way) and the
 * strict parser every queue run applies to the files on disk. No file
 * system access here; queue.c reads and writes the files.
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
 *	bounce: 0A1B2C3D4E5F60719      optional: queue id of the bounce
 *	                               reporting the failed recipients;
 *	                               while tmp/ holds it prepared, it is
 *	                               decided but not yet committed
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
 */
#include "autoconf.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "envelope.h"
#include "queue_int.h"

#define ENV_MAGIC      "relayq-envelope"
#define ENV_RCPT_MAX   100000
#define TEXT_MAX       1000        /* sanitised error/orcpt/envid text */
#define TIME_MAX       253402300799LL   /* 9999-12-31 */
#define SIZE_MAX_MSG   (1LL << 53)
#define ATTEMPTS_MAX   1000000

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

const char *
rcpt_status_name(enum rcpt_status s)
{
	return status_names[s];
}

void
notify_list(unsigned notify, char *out, size_t size)
{
	out[0] = '\0';
	for (size_t i = 0; i < NITEMS(notify_names); i++)
		if (notify & notify_names[i].bit) {
			if (out[0])
				str_append(out, ",", size);
			str_append(out, notify_names[i].name, size);
		}
}

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
	/* NEVER excludes the others (RFC 3461); keep it alone. */
	notify_list(r->notify & NOTIFY_NEVER ? NOTIFY_NEVER : r->notify,
	    notify, sizeof(notify));
	if (notify[0] && put_line(b, "rcpt-notify", notify, err) < 0)
		return -1;
	if (dsn_valid(r->dsn) && put_line(b, "rcpt-dsn", r->dsn, err) < 0)
		return -1;
	if (r->error != NULL && put_text(b, "rcpt-error", r->error, err) < 0)
		return -1;
	return 0;
}

int
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
	if (env->bounce[0] != '\0') {
		if (!qid_valid(env->bounce)) {
			err_set(err, ERR_INTERNAL, "bad bounce queue id");
			goto out;
		}
		if (put_line(&b, "bounce", env->bounce, err) < 0)
			goto out;
	}
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
	K_BOUNCE, K_RCPT, K_RCPT_ORCPT, K_RCPT_NOTIFY, K_RCPT_DSN, K_RCPT_ERROR,
	K_NKEYS
};

static const char *const key_names[K_NKEYS] = {
	[K_ID] = "id", [K_CREATED] = "created", [K_SIZE] = "size",
	[K_SENDER] = "sender", [K_BODY] = "body", [K_SMTPUTF8] = "smtputf8",
	[K_RET] = "ret", [K_ENVID] = "envid", [K_ATTEMPTS] = "attempts",
	[K_LAST_ATTEMPT] = "last-attempt", [K_NEXT_ATTEMPT] = "next-attempt",
	[K_LAST_ERROR] = "last-error", [K_HELD] = "held",
	[K_BOUNCE] = "bounce", [K_RCPT] = "rcpt",
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
	case K_BOUNCE:
		if (!qid_valid(val))
			return perr(p, "bounce: not a valid queue id");
		memcpy(env->bounce, val, QID_LEN + 1);
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
