/*
 * message.c - the one pass from the caller's message to the queue's wire
 * form. Input is cut into logical lines (LF, CRLF or bare CR; NULs
 * dropped), the "." end marker and ".." unstuffing are applied, the header
 * section is held in memory (bounded) so it can be inspected and fixed up,
 * and the body streams through fixed buffers. Output lines end in CRLF,
 * never exceed MSG_LINE_MAX octets and are dot-stuffed.
 */
#include "autoconf.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "message.h"
#include "util.h"

#define OBUF_SIZE (128 * 1024)
#define DEF_MAX_HEADER_SIZE (1024 * 1024)
#define DEF_MAX_HEADERS 1000
#define NAME_MAX_CHARS 256         /* -F / gecos name kept for From: */

#define IS_WSP(c) ((c) == ' ' || (c) == '\t')
#define IS_UTF8_CONT(c) (((unsigned char)(c) & 0xc0) == 0x80)

/* What the current header-area line turned out to be. */
enum line_class {
	LC_UNDECIDED,      /* not enough of the line seen yet */
	LC_FIELD,          /* "Name: value" */
	LC_CONT,           /* continuation of the previous field */
	LC_EMPTY,          /* the empty line ending the header */
	LC_FROM_LINE,      /* mbox "From " line, dropped */
	LC_BODY,           /* not a header line: the body starts here */
};

/* One header field in hdr: text is "Name: value" with "\n" between lines. */
struct field {
	size_t off, len;
	size_t nlen;       /* length of the name, without trailing WSP */
	size_t voff;       /* value start, relative to off (after ':') */
};

struct mstate {
	const struct msg_opts *o;
	struct msg_info *info;
	struct err *err;
	size_t max_hsize, max_fields;

	struct msg_input *in;

	int outfd;
	char *obuf;
	size_t olen;

	int at_bol;        /* at the start of an input line */
	int dots_here;     /* this line may be "." or dot-stuffed (crlf_dots) */
	int dot_spoiled;   /* a NUL followed the pending dot (crlf_dots) */
	int dot_pending;   /* a line began with '.', the next byte decides */
	int done;          /* the "." line was seen */
	int discard;       /* read to the end marker, store nothing */

	int in_header;
	int from_checked;  /* a field was seen or a "From " line dropped */
	int skip_line;     /* dropping the rest of a "From " line */
	enum line_class cls;
	struct buf line;   /* the current header-area line */
	struct buf hdr;    /* all fields */
	struct field *fields;
	size_t nfields, fcap;

	size_t bcol;       /* octets in the current body output line */
};

static const char *const wday_names[] = {
	"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat",
};
static const char *const month_names[] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

void
msg_opts_init(struct msg_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->dot_ends = 1;
	o->max_header_size = DEF_MAX_HEADER_SIZE;
	o->max_headers = DEF_MAX_HEADERS;
	o->now = time(NULL);
	o->uid = getuid();
}

void
msg_info_free(struct msg_info *info)
{
	strlist_free(&info->rcpts);
	free(info->from_addr);
	info->from_addr = NULL;
}

/* Built by hand: strftime's %a/%b follow LC_TIME, RFC 5322 wants English. */
void
rfc5322_date(time_t t, char *out, size_t size)
{
	struct tm tm;
	long off, aoff;

	if (size == 0)
		return;
	if (localtime_r(&t, &tm) == NULL) {
		str_copy(out, "Thu, 1 Jan 1970 00:00:00 +0000", size);
		return;
	}
	off = tm.tm_gmtoff / 60;
	aoff = off < 0 ? -off : off;
	snprintf(out, size, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld",
	    wday_names[tm.tm_wday % 7], tm.tm_mday, month_names[tm.tm_mon % 12],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    off < 0 ? '-' : '+', aoff / 60, aoff % 60);
}

/* --- output --------------------------------------------------------- */

static int
out_flush(struct mstate *st)
{
	if (st->olen == 0)
		return 0;
	if (write_all(st->outfd, st->obuf, st->olen) < 0)
		return err_sys(st->err, ERR_TEMP, "cannot write queue file");
	st->olen = 0;
	return 0;
}

/* Every output byte passes here: size limit, 8-bit detection, buffering. */
static int
out_put(struct mstate *st, const char *p, size_t n)
{
	struct msg_info *info = st->info;

	info->size += n;
	if (st->o->max_size != 0 && info->size > st->o->max_size) {
		info->too_big = 1;
		return err_set(st->err, ERR_DATA,
		    "message exceeds the size limit of %llu bytes",
		    st->o->max_size);
	}
	if (!info->eightbit) {
		for (size_t i = 0; i < n; i++) {
			if ((unsigned char)p[i] >= 0x80) {
				info->eightbit = 1;
				break;
			}
		}
	}
	if (st->olen + n > OBUF_SIZE && out_flush(st) < 0)
		return -1;
	if (n >= OBUF_SIZE) {
		if (write_all(st->outfd, p, n) < 0)
			return err_sys(st->err, ERR_TEMP,
			    "cannot write queue file");
		return 0;
	}
	memcpy(st->obuf + st->olen, p, n);
	st->olen += n;
	return 0;
}

/*
 * One header line (no line end) as one or more output lines. Over-long
 * lines are folded before white space; a run with no usable white space is
 * split and the rest continued after an inserted SP.
 */
static int
emit_hline(struct mstate *st, const char *l, size_t n, size_t floor)
{
	size_t lead = 0;   /* 1 when we inserted the SP that starts the line */

	if (n > 0 && l[0] == '.' && out_put(st, ".", 1) < 0)
		return -1;
	while (lead + n > MSG_LINE_MAX) {
		size_t room = MSG_LINE_MAX - lead, first = 0, cut = 0;

		while (first < n && IS_WSP(l[first]))
			first++;
		if (first < floor)
			first = floor;
		for (size_t i = room; i > first; i--) {
			if (IS_WSP(l[i])) {
				cut = i;
				break;
			}
		}
		if (cut == 0)
			cut = room;
		if ((lead && out_put(st, " ", 1) < 0) ||
		    out_put(st, l, cut) < 0 || out_put(st, "\r\n", 2) < 0)
			return -1;
		lead = IS_WSP(l[cut]) ? 0 : 1;
		l += cut;
		n -= cut;
		floor = 0;
	}
	if ((lead && out_put(st, " ", 1) < 0) || out_put(st, l, n) < 0)
		return -1;
	return out_put(st, "\r\n", 2);
}

/* Header text with "\n" between its lines. */
static int
emit_htext(struct mstate *st, const char *t, size_t len)
{
	int first = 1;

	while (len > 0) {
		const char *nl = memchr(t, '\n', len);
		size_t n = nl ? (size_t)(nl - t) : len;

		const char *colon = memchr(t, ':', n);
		size_t floor = first && colon && !IS_WSP(t[0]) ?
		    (size_t)(colon - t) : 0;

		first = 0;
		if (emit_hline(st, t, n, floor) < 0)
			return -1;
		if (nl == NULL)
			break;
		t += n + 1;
		len -= n + 1;
	}
	return 0;
}

/* Body bytes of one line; long lines are split every MSG_LINE_MAX octets. */
static int
body_put(struct mstate *st, const char *p, size_t n)
{
	while (n > 0) {
		size_t chunk;

		if (st->bcol == MSG_LINE_MAX) {
			if (out_put(st, "\r\n", 2) < 0)
				return -1;
			st->bcol = 0;
		}
		if (st->bcol == 0 && p[0] == '.' && out_put(st, ".", 1) < 0)
			return -1;
		chunk = MSG_LINE_MAX - st->bcol;
		if (chunk > n)
			chunk = n;
		if (out_put(st, p, chunk) < 0)
			return -1;
		st->bcol += chunk;
		p += chunk;
		n -= chunk;
	}
	return 0;
}

static int
body_eol(struct mstate *st)
{
	st->bcol = 0;
	return out_put(st, "\r\n", 2);
}

/* --- header analysis ------------------------------------------------ */

static const char *
ftext(const struct mstate *st, const struct field *f)
{
	return st->hdr.data + f->off;
}

static int
fname_is(const struct mstate *st, const struct field *f, const char *name)
{
	size_t n = strlen(name);

	return f->nlen == n && strncasecmp(ftext(st, f), name, n) == 0;
}

static int
fname_in(const struct mstate *st, const struct field *f,
    const char *const *names)
{
	for (; *names != NULL; names++)
		if (fname_is(st, f, *names))
			return 1;
	return 0;
}

/* The field value with its line breaks removed (the WSP stays). */
static char *
field_unfold(const struct mstate *st, const struct field *f)
{
	const char *v = ftext(st, f) + f->voff;
	size_t n = f->len - f->voff, o = 0;
	char *u = xmalloc(n + 1);

	for (size_t i = 0; i < n; i++)
		if (v[i] != '\n')
			u[o++] = v[i];
	u[o] = '\0';
	return u;
}

static int
is_blank(const char *s)
{
	for (; *s != '\0'; s++)
		if (!IS_WSP(*s))
			return 0;
	return 1;
}

static const char *const rcpt_fields[] = { "To", "Cc", "Bcc", NULL };
static const char *const resent_rcpt_fields[] = {
	"Resent-To", "Resent-Cc", "Resent-Bcc", NULL,
};
static const char *const removed_fields[] = {
	"Bcc", "Resent-Bcc", "Return-Path", "Content-Length", NULL,
};
static const char *const addr_fields[] = {
	"From", "To", "Cc", "Reply-To", "Sender",
	"Resent-From", "Resent-To", "Resent-Cc", "Resent-Reply-To",
	"Resent-Sender", NULL,
};

/* -t: To/Cc/Bcc, or only the Resent-* ones when any is present. */
static int
extract_rcpts(struct mstate *st)
{
	const char *const *names = rcpt_fields;

	for (size_t i = 0; i < st->nfields; i++)
		if (fname_in(st, &st->fields[i], resent_rcpt_fields))
			names = resent_rcpt_fields;
	for (size_t i = 0; i < st->nfields; i++) {
		const struct field *f = &st->fields[i];
		struct err perr;
		char *v;
		int rc = 0;

		if (!fname_in(st, f, names))
			continue;
		v = field_unfold(st, f);
		if (!is_blank(v) &&
		    addr_parse_list(v, &st->info->rcpts, &perr) < 0)
			rc = err_set(st->err, ERR_DATA,
			    "invalid address list in the %.*s: header: %s",
			    (int)f->nlen, ftext(st, f), perr.msg);
		free(v);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static void
find_from_addr(struct mstate *st)
{
	for (size_t i = 0; i < st->nfields; i++) {
		struct strlist l = { 0 };
		struct err perr;
		char *v;

		if (!fname_is(st, &st->fields[i], "From"))
			continue;
		v = field_unfold(st, &st->fields[i]);
		if (addr_parse_list(v, &l, &perr) == 0 && l.n > 0)
			st->info->from_addr = xstrdup(l.v[0]);
		strlist_free(&l);
		free(v);
		return;
	}
}

/*
 * Put the line breaks of the folded value v back into q, the qualified
 * form of v unfolded. q is v with text inserted, so v's characters are
 * matched in order; a break goes right before the WSP that followed it.
 * Returns -1 if q is not such a superset (then it is used unfolded).
 */
static int
refold(const char *v, size_t vlen, const char *q, struct buf *out)
{
	size_t j = 0, qlen = strlen(q);
	int pending = 0;

	for (size_t i = 0; i < vlen; i++) {
		if (v[i] == '\n') {
			pending = 1;
			continue;
		}
		while (j < qlen && q[j] != v[i])
			buf_putc(out, q[j++]);
		if (j == qlen)
			return -1;
		if (pending && buf_putc(out, '\n') < 0)
			return -1;
		pending = 0;
		buf_putc(out, q[j++]);
	}
	return buf_append(out, q + j, qlen - j);
}

/*
 * An address field, From: rewritten (sender_rewrite) when rewrite is set,
 * bare local names qualified when qualify is set; as is if unchanged.
 */
static int
emit_address_field(struct mstate *st, const struct field *f, int rewrite,
    int qualify)
{
	const char *t = ftext(st, f), *v = t + f->voff, *cur;
	size_t vlen = f->len - f->voff;
	struct buf r, q, nf;
	char *u = field_unfold(st, f);
	int rc;

	buf_init(&r, 0);
	buf_init(&q, 0);
	buf_init(&nf, 0);
	cur = u;
	if (rewrite && st->o->from_rewrite(u, &r, st->o->from_rewrite_arg) == 1 &&
	    r.data != NULL)
		cur = r.data;
	if (qualify && addr_qualify_header(cur, st->o->domain, &q) == 0 &&
	    q.data != NULL)
		cur = q.data;
	if (strcmp(cur, u) == 0) {
		rc = emit_htext(st, t, f->len);
	} else {
		buf_append(&nf, t, f->voff);
		if (refold(v, vlen, cur, &nf) < 0) {
			buf_reset(&nf);
			buf_append(&nf, t, f->voff);
			buf_puts(&nf, cur);
		}
		rc = emit_htext(st, nf.data, nf.len);
	}
	buf_free(&r);
	buf_free(&q);
	buf_free(&nf);
	free(u);
	return rc;
}

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void
b64_append(struct buf *b, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16;
		size_t k = n - i;

		if (k > 1)
			v |= (unsigned)p[i + 1] << 8;
		if (k > 2)
			v |= p[i + 2];
		buf_putc(b, b64chars[(v >> 18) & 63]);
		buf_putc(b, b64chars[(v >> 12) & 63]);
		buf_putc(b, k > 1 ? b64chars[(v >> 6) & 63] : '=');
		buf_putc(b, k > 2 ? b64chars[v & 63] : '=');
	}
}

/* A non-ASCII name as RFC 2047 encoded-words, each at most 75 chars. */
static void
phrase_encoded(struct buf *b, const char *name, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t e = i + 45 < n ? i + 45 : n;

		/* Never split a UTF-8 sequence between two words. */
		while (e < n && e > i + 1 && IS_UTF8_CONT(name[e]))
			e--;
		if (i > 0)
			buf_putc(b, ' ');
		buf_puts(b, "=?UTF-8?B?");
		b64_append(b, (const unsigned char *)name + i, e - i);
		buf_puts(b, "?=");
		i = e;
	}
}

/* Length of the UTF-8 sequence that lead byte c starts (1 if not a lead). */
static size_t
utf8_len(unsigned char c)
{
	if (c >= 0xf0)
		return 4;
	if (c >= 0xe0)
		return 3;
	if (c >= 0xc0)
		return 2;
	return 1;
}

/* The caller's name without control characters, trimmed and capped. */
static size_t
clean_name(const char *in, char *out, size_t size, int *eight)
{
	size_t o = 0, k;

	*eight = 0;
	for (; in != NULL && *in != '\0'; in++) {
		unsigned char c = (unsigned char)*in;

		if (c < 0x20 || c == 0x7f || (c == ' ' && o == 0))
			continue;
		if (o + 1 == size) {
			/* Capped: do not keep half a UTF-8 sequence. */
			for (k = o; k > 0 && IS_UTF8_CONT(out[k - 1]); k--)
				;
			if (k > 0 &&
			    o - (k - 1) < utf8_len((unsigned char)out[k - 1]))
				o = k - 1;
			break;
		}
		if (c >= 0x80)
			*eight = 1;
		out[o++] = (char)c;
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
	return o;
}

static void
build_from(struct mstate *st, struct buf *b)
{
	const struct msg_opts *o = st->o;
	const char *host = o->hostname ? o->hostname : "localhost";
	char name[NAME_MAX_CHARS + 1];
	size_t n;
	int eight;

	buf_puts(b, "From: ");
	n = clean_name(o->full_name, name, sizeof(name), &eight);
	if (n > 0 && eight) {
		phrase_encoded(b, name, n);
		buf_puts(b, " <");
	} else if (n > 0) {
		buf_putc(b, '"');
		for (size_t i = 0; i < n; i++) {
			if (name[i] == '"' || name[i] == '\\')
				buf_putc(b, '\\');
			buf_putc(b, name[i]);
		}
		buf_puts(b, "\" <");
	}
	if (o->sender != NULL && o->sender[0] != '\0')
		buf_puts(b, o->sender);
	else
		buf_printf(b, "MAILER-DAEMON@%s", host);
	if (n > 0)
		buf_putc(b, '>');
}

static int
emit_built(struct mstate *st, struct buf *b)
{
	int rc = emit_htext(st, b->data, b->len);

	buf_reset(b);
	return rc;
}

/* Fix-ups go before (Received) and after (Date, Message-ID, From) the
 * caller's fields; then the empty line that ends the header. */
static int
end_header(struct mstate *st)
{
	const struct msg_opts *o = st->o;
	struct msg_info *info = st->info;
	const char *host = o->hostname ? o->hostname : "localhost";
	const char *qid = o->qid ? o->qid : "unknown";
	int fix = !o->no_fixups;
	int qualify = fix && o->domain != NULL && o->domain[0] != '\0';
	int rewrite = fix && o->from_rewrite != NULL;
	char date[64];
	struct buf b;
	int rc = -1;

	st->in_header = 0;
	for (size_t i = 0; i < st->nfields; i++) {
		const struct field *f = &st->fields[i];

		if (fname_is(st, f, "Date"))
			info->had_date = 1;
		else if (fname_is(st, f, "Message-ID"))
			info->had_message_id = 1;
		else if (fname_is(st, f, "From"))
			info->had_from = 1;
	}
	find_from_addr(st);
	if (o->extract_rcpts && extract_rcpts(st) < 0)
		return -1;

	buf_init(&b, 0);
	rfc5322_date(o->now, date, sizeof(date));
	if (fix) {
		buf_printf(&b, "Received: by %s (relayq, from userid %lu)\n"
		    "\tid %s; %s", host, (unsigned long)o->uid, qid, date);
		if (emit_built(st, &b) < 0)
			goto out;
	}
	for (size_t i = 0; i < st->nfields; i++) {
		const struct field *f = &st->fields[i];

		if (fname_in(st, f, removed_fields))
			continue;
		if (rewrite && fname_is(st, f, "From")) {
			if (emit_address_field(st, f, 1, qualify) < 0)
				goto out;
		} else if (qualify && fname_in(st, f, addr_fields)) {
			if (emit_address_field(st, f, 0, 1) < 0)
				goto out;
		} else if (emit_htext(st, ftext(st, f), f->len) < 0) {
			goto out;
		}
	}
	if (fix && !info->had_date) {
		buf_printf(&b, "Date: %s", date);
		if (emit_built(st, &b) < 0)
			goto out;
	}
	if (fix && !info->had_message_id) {
		buf_printf(&b, "Message-ID: <%s.%lld@%s>", qid,
		    (long long)o->now, host);
		if (emit_built(st, &b) < 0)
			goto out;
	}
	if (fix && !info->had_from) {
		build_from(st, &b);
		if (emit_built(st, &b) < 0)
			goto out;
	}
	rc = out_put(st, "\r\n", 2);
out:
	buf_free(&b);
	/* The header is no longer needed; the body streams. */
	buf_free(&st->hdr);
	buf_free(&st->line);
	free(st->fields);
	st->fields = NULL;
	return rc;
}

/* --- the header area, line by line ------------------------------- */

/* Decide what the line in st->line is, as soon as enough of it is seen. */
static enum line_class
classify(const struct mstate *st, int complete)
{
	const char *l = st->line.data;
	size_t len = st->line.len, i;

	if (len == 0)
		return complete ? LC_EMPTY : LC_UNDECIDED;
	if (IS_WSP(l[0]))
		return st->nfields > 0 ? LC_CONT : LC_BODY;
	if (!st->from_checked && len >= 5 &&
	    memcmp(l, "From ", 5) == 0) {
		for (i = 5; i < len && i < MSG_LINE_MAX && IS_WSP(l[i]); i++)
			;
		if (i >= MSG_LINE_MAX)
			return LC_BODY;
		if (i == len)
			return complete ? LC_FROM_LINE : LC_UNDECIDED;
		return l[i] == ':' ? LC_FIELD : LC_FROM_LINE;
	}
	/* The name and colon must fit the first output line. */
	for (i = 0; i < len && i < MSG_LINE_MAX; i++) {
		unsigned char c = (unsigned char)l[i];

		if (c == ':')
			return i > 0 ? LC_FIELD : LC_BODY;
		if (IS_WSP(c))
			break;
		if (c < 33 || c > 126)
			return LC_BODY;
	}
	/* obs-syntax: white space between the name and the colon */
	for (; i < len && i < MSG_LINE_MAX && IS_WSP(l[i]); i++)
		;
	if (i >= MSG_LINE_MAX)
		return LC_BODY;
	if (i < len)
		return l[i] == ':' ? LC_FIELD : LC_BODY;
	return complete ? LC_BODY : LC_UNDECIDED;
}

/* The header ends at a line that is not a header line; it starts the body. */
static int
header_to_body(struct mstate *st, int complete)
{
	struct buf l = st->line;
	int rc;

	buf_init(&st->line, 0);    /* end_header must not free this line */
	rc = end_header(st);
	if (rc == 0)
		rc = body_put(st, l.data, l.len);
	if (rc == 0 && complete)
		rc = body_eol(st);
	buf_free(&l);
	return rc;
}

static int
add_field(struct mstate *st)
{
	struct field *f;
	const char *l = st->line.data;
	size_t nlen = 0, colon;

	if (st->nfields == st->max_fields)
		return err_set(st->err, ERR_DATA,
		    "message header has more than %zu fields", st->max_fields);
	if (st->nfields == st->fcap) {
		st->fcap = st->fcap ? st->fcap * 2 : 32;
		st->fields = xreallocarray(st->fields, st->fcap,
		    sizeof(*st->fields));
	}
	colon = (size_t)((const char *)memchr(l, ':', st->line.len) - l);
	for (nlen = colon; nlen > 0 && IS_WSP(l[nlen - 1]); nlen--)
		;
	f = &st->fields[st->nfields++];
	f->off = st->hdr.len;
	f->len = st->line.len;
	f->nlen = nlen;
	f->voff = colon + 1;
	return buf_append(&st->hdr, l, st->line.len);
}

static int
header_limit(struct mstate *st)
{
	return err_set(st->err, ERR_DATA,
	    "message header exceeds the limit of %zu bytes", st->max_hsize);
}

/*
 * Header-area bytes. Past the size limit a line may still turn out to be
 * the start of the body (it is classified on its first octets); anything
 * else that big is an error.
 */
static int
header_data(struct mstate *st, const char *p, size_t n)
{
	size_t used = st->hdr.len + st->line.len + 1, take = n;

	if (st->skip_line)
		return 0;
	if (used >= st->max_hsize)
		take = 0;
	else if (n > st->max_hsize - used)
		take = st->max_hsize - used;
	if (take > 0 && buf_append(&st->line, p, take) < 0)
		return header_limit(st);
	if (st->cls == LC_UNDECIDED) {
		st->cls = classify(st, 0);
		if (st->cls == LC_FROM_LINE) {
			st->skip_line = 1;
			buf_reset(&st->line);
			return 0;
		}
		if (st->cls == LC_BODY) {
			if (header_to_body(st, 0) < 0)
				return -1;
			return body_put(st, p + take, n - take);
		}
	}
	return take < n ? header_limit(st) : 0;
}

static int
header_eol(struct mstate *st)
{
	int rc = 0;

	if (st->cls == LC_UNDECIDED)
		st->cls = classify(st, 1);
	switch (st->cls) {
	case LC_FROM_LINE:
		st->skip_line = 0;
		st->from_checked = 1;
		break;
	case LC_EMPTY:
		return end_header(st);
	case LC_BODY:
		return header_to_body(st, 1);
	case LC_FIELD:
		rc = add_field(st);
		st->from_checked = 1;
		break;
	case LC_CONT:
		if (buf_putc(&st->hdr, '\n') < 0 ||
		    buf_append(&st->hdr, st->line.data, st->line.len) < 0)
			return header_limit(st);
		st->fields[st->nfields - 1].len += st->line.len + 1;
		break;
	case LC_UNDECIDED:
		return err_set(st->err, ERR_INTERNAL,
		    "unclassified header line");
	}
	buf_reset(&st->line);
	st->cls = LC_UNDECIDED;
	return rc;
}

/* --- input ---------------------------------------------------------- */

void
msg_input_init(struct msg_input *in, int fd)
{
	memset(in, 0, sizeof(*in));
	in->fd = fd;
	in->buf = xmalloc(MSG_INPUT_SIZE);
}

void
msg_input_free(struct msg_input *in)
{
	free(in->buf);
	in->buf = NULL;
	in->pos = in->len = 0;
}

/* Wait at most in->timeout seconds for something to read. */
static int
input_wait(struct msg_input *in, struct err *err)
{
	struct pollfd pfd = { .fd = in->fd, .events = POLLIN };
	long long deadline = now_ms() + in->timeout * 1000LL;

	for (;;) {
		long long left = deadline - now_ms();
		int r;

		if (left <= 0)
			return err_set(err, ERR_TEMP,
			    "no input for %ld seconds", in->timeout);
		r = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return err_sys(err, ERR_IO, "cannot wait for input");
	}
}

int
msg_input_fill(struct msg_input *in, struct err *err)
{
	ssize_t r;

	if (in->pos < in->len)
		return 1;
	if (in->eof)
		return 0;
	if (in->failed)
		return err_set(err, ERR_IO, "input failed before");
	if (in->timeout > 0 && input_wait(in, err) < 0) {
		in->failed = 1;
		return -1;
	}
	do
		r = read(in->fd, in->buf, MSG_INPUT_SIZE);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		in->failed = 1;
		return err_sys(err, ERR_IO, "cannot read the message");
	}
	in->pos = 0;
	in->len = 0;
	if (r == 0) {
		in->eof = 1;
		return 0;
	}
	in->len = (size_t)r;
	return 1;
}

static int
content(struct mstate *st, const char *p, size_t n)
{
	if (st->discard)
		return 0;
	return st->in_header ? header_data(st, p, n) : body_put(st, p, n);
}

static int
content_eol(struct mstate *st)
{
	if (st->discard)
		return 0;
	return st->in_header ? header_eol(st) : body_eol(st);
}

/* Line data as read: the "." end marker and ".." unstuffing happen here. */
static int
line_data(struct mstate *st, const char *p, size_t n)
{
	if (st->at_bol) {
		st->at_bol = 0;
		if (st->o->dot_ends && st->dots_here && p[0] == '.') {
			st->dot_pending = 1;
			p++;
			n--;
			if (n == 0)
				return 0;
		}
	}
	if (st->dot_pending) {
		st->dot_pending = 0;
		st->dot_spoiled = 0;
		/* ".." loses one dot; ".x" keeps its dot */
		if (p[0] != '.' && content(st, ".", 1) < 0)
			return -1;
	}
	return content(st, p, n);
}

/* A line end; crlf says whether it was CRLF (not a bare LF or CR). */
static int
line_end(struct mstate *st, int crlf)
{
	if (st->dot_pending) {
		st->dot_pending = 0;
		if (!st->o->crlf_dots || (crlf && !st->dot_spoiled)) {
			st->done = 1;
			return 0;
		}
		/* "." ended by a bare LF or CR: content, not the end */
		if (content(st, ".", 1) < 0)
			return -1;
	}
	st->dot_spoiled = 0;
	st->at_bol = 1;
	st->dots_here = !st->o->crlf_dots || crlf;
	return content_eol(st);
}

/*
 * The next run of line bytes (*eol = 0) or a line end (*eol = 1): LF, CRLF
 * (*crlf = 1) or a bare CR. NULs are skipped. 1, 0 at end of input, -1 on
 * error. Never consumes input past the line end it returns.
 */
static int
rd_segment(struct mstate *st, const char **p, size_t *n, int *eol, int *crlf)
{
	struct msg_input *in = st->in;

	for (;;) {
		const char *b;
		size_t avail, i;
		int r;

		if (in->pos == in->len && (r = msg_input_fill(in, st->err)) <= 0)
			return r;
		b = in->buf + in->pos;
		avail = in->len - in->pos;
		for (i = 0; i < avail; i++)
			if (b[i] == '\n' || b[i] == '\r' || b[i] == '\0')
				break;
		if (i > 0) {
			*p = b;
			*n = i;
			*eol = 0;
			in->pos += i;
			return 1;
		}
		in->pos++;
		if (b[0] == '\0') {
			/* Dropped, but other SMTP hops keep it: a line with a
			 * NUL is never the end marker (SMTP smuggling). */
			if (st->o->crlf_dots && st->at_bol)
				st->dots_here = 0;
			if (st->o->crlf_dots && st->dot_pending)
				st->dot_spoiled = 1;
			continue;
		}
		*crlf = 0;
		if (b[0] == '\r') {
			if (in->pos == in->len &&
			    (r = msg_input_fill(in, st->err)) < 0)
				return -1;
			if (in->pos < in->len && in->buf[in->pos] == '\n') {
				in->pos++;
				*crlf = 1;
			}
		}
		*p = NULL;
		*n = 0;
		*eol = 1;
		return 1;
	}
}

static int
run(struct mstate *st)
{
	const char *p;
	size_t n;
	int eol, crlf = 0, r, failed = 0;

	while (!st->done && (r = rd_segment(st, &p, &n, &eol, &crlf)) != 0) {
		if (r < 0)
			return -1;
		if ((eol ? line_end(st, crlf) : line_data(st, p, n)) < 0) {
			if (!st->o->require_end)
				return -1;
			/* Read on to the "." so that the session stays in step;
			 * err keeps this first error. */
			failed = 1;
			st->discard = 1;
		}
	}
	if (st->done)
		st->info->ended = 1;
	if (failed)
		return -1;
	if (st->o->require_end && !st->done)
		return err_set(st->err, ERR_PROTO,
		    "input ended before the \".\" line that ends the message");
	if (st->discard)
		return 0;
	if (st->dot_pending) {
		/* "." as the last line, without a line end: the marker too */
		st->dot_pending = 0;
	} else if (!st->done && !st->at_bol && line_end(st, 1) < 0) {
		return -1;
	}
	if (st->in_header && end_header(st) < 0)
		return -1;
	return out_flush(st);
}

static void
mstate_init(struct mstate *st, struct msg_input *in, int outfd,
    const struct msg_opts *o, struct msg_info *info, struct err *err)
{
	memset(info, 0, sizeof(*info));
	memset(st, 0, sizeof(*st));
	st->o = o;
	st->info = info;
	st->err = err;
	st->max_hsize = o->max_header_size ? o->max_header_size :
	    DEF_MAX_HEADER_SIZE;
	st->max_fields = o->max_headers ? o->max_headers : DEF_MAX_HEADERS;
	st->in = in;
	st->outfd = outfd;
	st->at_bol = 1;
	st->dots_here = 1;
	st->in_header = 1;
	st->cls = LC_UNDECIDED;
	buf_init(&st->line, st->max_hsize);
	buf_init(&st->hdr, st->max_hsize);
}

static void
mstate_free(struct mstate *st)
{
	free(st->obuf);
	buf_free(&st->line);
	buf_free(&st->hdr);
	free(st->fields);
}

int
message_read_input(struct msg_input *in, int outfd, const struct msg_opts *o,
    struct msg_info *info, struct err *err)
{
	struct mstate st;
	int rc;

	mstate_init(&st, in, outfd, o, info, err);
	st.obuf = xmalloc(OBUF_SIZE);
	rc = run(&st);
	mstate_free(&st);
	if (rc < 0)
		msg_info_free(info);
	return rc;
}

int
message_read(int infd, int outfd, const struct msg_opts *o,
    struct msg_info *info, struct err *err)
{
	struct msg_input in;
	int rc;

	msg_input_init(&in, infd);
	rc = message_read_input(&in, outfd, o, info, err);
	msg_input_free(&in);
	return rc;
}

int
message_skip(struct msg_input *in, const struct msg_opts *o, struct err *err)
{
	struct mstate st;
	struct msg_info info;
	int rc;

	mstate_init(&st, in, -1, o, &info, err);
	st.discard = 1;
	rc = run(&st);
	mstate_free(&st);
	msg_info_free(&info);
	if (rc == 0 && !info.ended)
		rc = err_set(err, ERR_PROTO,
		    "input ended before the \".\" line that ends the message");
	return rc;
}
