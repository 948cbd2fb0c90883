/*
 * fuzz_message.c - message_read() over hostile messages.
 *
 * Input: one option byte, then the message as the caller would pipe it.
 * Option bits: 0 dot_ends (no -i), 1 -t, 2 -G (no fix-ups), 3 a domain to
 * qualify with, 4 tight limits, 5 crlf_dots and 6 require_end (the -bs
 * DATA options, when message.h has them), 7 null sender; bits 6-7 also
 * pick the -F name.
 *
 * Properties checked on every accepted message (the wire-form contract of
 * message.h and what a smarthost relies on):
 *  - info.size is the number of bytes written; output is CRLF lines only,
 *    no bare CR or LF, no NUL, each line at most 998 octets once its
 *    stuffed dot is removed, and no line is "." (it would end DATA early);
 *  - the header section is well-formed: every line before the empty line
 *    is "name:" (printable name, obsolete blanks before the colon allowed)
 *    or a continuation, and the first is not a continuation;
 *  - Bcc, Resent-Bcc, Return-Path and Content-Length are gone; with
 *    fix-ups, Received comes first and Date, Message-ID and From exist;
 *  - -t recipients carry no control character but TAB;
 *  - with crlf_dots (the -bs DATA rule against SMTP smuggling) the
 *    message ends exactly where the raw bytes hold ".\r\n" at the start
 *    or "\r\n.\r\n", the sequence every other SMTP hop sees as the end;
 *  - the wire form is a fixed point: read back with "." handling and no
 *    fix-ups it comes out byte for byte the same;
 *  - errors are ERR_DATA with a message that is safe for one log line.
 */
#include "autoconf.h"

#include <strings.h>
#include <time.h>

#include "fuzz.h"
#include "message.h"

static int infd, outfd, out2fd;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setenv("TZ", "UTC", 1);
	tzset();
	infd = fuzz_memfd("fuzz-in");
	outfd = fuzz_memfd("fuzz-out");
	out2fd = fuzz_memfd("fuzz-out2");
	return 0;
}

static const char *const names[] = {
	NULL,
	"Joe \"Quoted\" O'User (admin) \\ back",
	"J\xc3\xb6rg M\xc3\xbcller-L\xc3\xbc""denscheidt "
	    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe5\x90\x8d\xe5\x89\x8d "
	    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe5\x90\x8d\xe5\x89\x8d "
	    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe5\x90\x8d\xe5\x89\x8d",
	"  evil\r\nBcc: victim@example.net\r\n\x01\x7f ",
};

static void
set_opts(struct msg_opts *o, unsigned f)
{
	msg_opts_init(o);
	o->dot_ends = f & 1;
	o->extract_rcpts = (f >> 1) & 1;
	o->no_fixups = (f >> 2) & 1;
	o->domain = (f & 8) ? "example.com" : NULL;
	if (f & 16) {
		o->max_header_size = 600;
		o->max_headers = 8;
		o->max_size = 3000;
	}
#ifdef MSG_INPUT_SIZE      /* the -bs additions to struct msg_opts */
	o->crlf_dots = (f >> 5) & 1;
	o->require_end = (f >> 6) & 1;
#endif
	o->full_name = names[(f >> 6) & 3];
	o->sender = (f & 128) ? "" : "alice@example.com";
	o->qid = "0A1B2C3D4E5F60718";
	o->hostname = "web1.example.com";
	o->uid = 1000;
	o->now = 1700000000;
}

/* Length of the field name on a header line, or 0 if it is not "name:". */
static size_t
field_name_len(const char *l, size_t n)
{
	size_t i = 0, nlen;

	while (i < n && l[i] != ':' && l[i] > ' ' && l[i] < 0x7f)
		i++;
	nlen = i;
	while (i < n && (l[i] == ' ' || l[i] == '\t'))
		i++;
	return nlen > 0 && i < n && l[i] == ':' ? nlen : 0;
}

static int
name_is(const char *l, size_t nlen, const char *name)
{
	return strlen(name) == nlen && strncasecmp(l, name, nlen) == 0;
}

/* The wire-form and header properties of one output. */
static void
check_wire(const char *out, size_t len, const struct msg_opts *o)
{
	static const char *const removed[] = {
		"Bcc", "Resent-Bcc", "Return-Path", "Content-Length", NULL,
	};
	int in_header = 1, lineno = 0, date = 0, mid = 0, from = 0;
	size_t pos = 0;

	FUZZ_CHECK(len >= 2 && memcmp(out + len - 2, "\r\n", 2) == 0,
	    "output does not end in CRLF (%zu bytes)", len);
	FUZZ_CHECK(memchr(out, '\0', len) == NULL, "NUL in output");
	while (pos < len) {
		const char *l = out + pos, *cr = memchr(l, '\r', len - pos);
		const char *lf = memchr(l, '\n', len - pos);
		size_t n, nlen;

		lineno++;
		FUZZ_CHECK(cr != NULL && cr + 1 < out + len && cr[1] == '\n' &&
		    (lf == NULL || lf == cr + 1),
		    "line %d: bare CR or LF", lineno);
		n = (size_t)(cr - l);
		pos += n + 2;
		FUZZ_CHECK(!(n == 1 && l[0] == '.'),
		    "line %d is \".\": DATA would end there", lineno);
		if (n > 0 && l[0] == '.') {
			FUZZ_CHECK(n >= 2 && l[1] == '.',
			    "line %d: leading dot not stuffed", lineno);
			l++;
			n--;
		}
		FUZZ_CHECK(n <= MSG_LINE_MAX, "line %d has %zu octets",
		    lineno, n);
		if (!in_header)
			continue;
		if (n == 0) {
			in_header = 0;
			continue;
		}
		if (l[0] == ' ' || l[0] == '\t') {
			FUZZ_CHECK(lineno > 1, "header starts with a "
			    "continuation line");
			continue;
		}
		nlen = field_name_len(l, n);
		FUZZ_CHECK(nlen > 0, "header line %d is not \"name:\" nor a "
		    "continuation: \"%.60s\"", lineno, l);
		for (int i = 0; removed[i] != NULL; i++)
			FUZZ_CHECK(!name_is(l, nlen, removed[i]),
			    "%s: header was not removed", removed[i]);
		FUZZ_CHECK(o->no_fixups || lineno > 1 ||
		    name_is(l, nlen, "Received"), "Received is not first");
		date |= name_is(l, nlen, "Date");
		mid |= name_is(l, nlen, "Message-ID");
		from |= name_is(l, nlen, "From");
	}
	FUZZ_CHECK(!in_header, "no empty line after the header");
	FUZZ_CHECK(o->no_fixups || (date && mid && from),
	    "fix-ups missing: Date %d, Message-ID %d, From %d", date, mid, from);
}

#ifdef MSG_INPUT_SIZE
/* Where an SMTP server that follows RFC 5321 to the letter ends DATA. */
static int
raw_end_marker(const uint8_t *p, size_t n)
{
	if (n >= 3 && memcmp(p, ".\r\n", 3) == 0)
		return 1;
	return memmem(p, n, "\r\n.\r\n", 5) != NULL;
}
#endif

/* Reading the wire form back ("." handling, no fix-ups) changes nothing. */
static void
check_fixed_point(const char *out, size_t len)
{
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	char *again;
	size_t len2;

	set_opts(&o, 1 | 4);
	fuzz_memfd_set(infd, out, len);
	fuzz_memfd_set(out2fd, NULL, 0);
	FUZZ_CHECK(message_read(infd, out2fd, &o, &info, &err) == 0,
	    "wire form not accepted again: %s", err.msg);
	again = fuzz_memfd_get(out2fd, &len2);
	FUZZ_CHECK(len2 == len && memcmp(again, out, len) == 0,
	    "wire form changed when read again (%zu -> %zu bytes)", len, len2);
	free(again);
	msg_info_free(&info);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msg_opts o;
	struct msg_info info;
	struct err err;
	char *out;
	size_t len;

	if (size < 1)
		return 0;
	set_opts(&o, data[0]);
	fuzz_memfd_set(infd, data + 1, size - 1);
	fuzz_memfd_set(outfd, NULL, 0);
	memset(&err, 0, sizeof(err));
	if (message_read(infd, outfd, &o, &info, &err) < 0) {
		FUZZ_CHECK(err.cls == ERR_DATA || (err.cls == ERR_PROTO &&
		    (data[0] & 64)), "error class %d: %s", (int)err.cls,
		    err.msg);
		FUZZ_CHECK(!fuzz_has_ctl(err.msg, strlen(err.msg)),
		    "control character in the error message");
		FUZZ_CHECK(info.rcpts.n == 0 && info.from_addr == NULL,
		    "info not freed on failure");
		return 0;
	}
#ifdef MSG_INPUT_SIZE
	if (o.dot_ends && o.crlf_dots)
		FUZZ_CHECK(info.ended == raw_end_marker(data + 1, size - 1),
		    "with crlf_dots the message %s, but the bytes %s \"\\r\\n."
		    "\\r\\n\"", info.ended ? "ended" : "did not end",
		    info.ended ? "hold no" : "hold a");
#endif
	out = fuzz_memfd_get(outfd, &len);
	FUZZ_CHECK(info.size == len, "info.size %llu, %zu bytes written",
	    info.size, len);
	check_wire(out, len, &o);
	for (size_t i = 0; i < info.rcpts.n; i++) {
		const char *r = info.rcpts.v[i];

		for (size_t k = 0; r[k] != '\0'; k++)
			FUZZ_CHECK(r[k] == '\t' || !fuzz_has_ctl(r + k, 1),
			    "control character in -t recipient %zu", i);
	}
	check_fixed_point(out, len);
	free(out);
	msg_info_free(&info);
	return 0;
}
