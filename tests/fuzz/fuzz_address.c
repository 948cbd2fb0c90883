/*
 * fuzz_address.c - the address parser, validator and header qualifier.
 *
 * Input: one byte choosing the qualification domain and the sender buffer
 * size, then the text (up to its first NUL) given to every entry point.
 *
 * addr_parse_list() is the RFC 5322 (syntax) parser and addr_validate()
 * the stricter RFC 5321 envelope check: "a@b_c" or a 70-octet local part
 * parse but do not validate, by design, so "every parsed address
 * validates" is not a property. These are:
 *  - parse_list: on failure nothing is appended and the error is ERR_DATA,
 *    one safe line; on success each address is 1..ADDR_MAX octets with no
 *    control character but TAB, is a fixed point (parsing it again gives
 *    exactly itself), reads back as the same -f sender, and qualifies to
 *    an address that parses to itself;
 *  - validate: anything it accepts parses to exactly one address, which
 *    validates too;
 *  - parse_sender: never lets CR or LF through, fails with an empty out;
 *  - qualify_header: a value that does not parse is copied unchanged; one
 *    that does gives a value that parses to the same list with every bare
 *    name qualified; a capped buffer that overflows is left as it was.
 */
#include "autoconf.h"

#include "address.h"
#include "fuzz.h"

#define LIST_MAX 65536              /* address.c's longest list */

static const char *const domains[] = {
	"example.com", "[192.0.2.1]", "xn--bcher-kva.example", "d-1.x.example",
};

static void
check_err(const struct err *e, const char *what)
{
	FUZZ_CHECK(e->cls == ERR_DATA, "%s: error class %d: %s", what,
	    (int)e->cls, e->msg);
	FUZZ_CHECK(!fuzz_has_ctl(e->msg, strlen(e->msg)),
	    "%s: control character in the error message", what);
}

/* The list parser's output for text, which must succeed. */
static void
parse_ok(const char *text, struct strlist *l, const char *what)
{
	struct err err;

	FUZZ_CHECK(addr_parse_list(text, l, &err) == 0,
	    "%s: \"%s\" does not parse: %s", what, text, err.msg);
}

/* One address from a successful parse. */
static void
check_parsed(const char *a, const char *domain)
{
	char sender[ADDR_MAX + 1], q[ADDR_MAX + 300];
	struct strlist again = { 0 };
	size_t len = strlen(a);
	struct err err;

	FUZZ_CHECK(len > 0 && len <= ADDR_MAX, "address of %zu octets", len);
	for (size_t i = 0; i < len; i++)
		FUZZ_CHECK(a[i] == '\t' || !fuzz_has_ctl(a + i, 1),
		    "control character 0x%02x in \"%s\"", (unsigned char)a[i],
		    a);
	parse_ok(a, &again, "parsed address");
	FUZZ_CHECK(again.n == 1 && strcmp(again.v[0], a) == 0,
	    "\"%s\" is not a fixed point (%zu addresses, first \"%s\")", a,
	    again.n, again.n ? again.v[0] : "");
	strlist_free(&again);

	FUZZ_CHECK(addr_parse_sender(a, sender, sizeof(sender), &err) == 0,
	    "parsed address \"%s\" refused as sender: %s", a, err.msg);
	FUZZ_CHECK(strcmp(sender, strcmp(a, "\"\"") == 0 ? "" : a) == 0,
	    "sender \"%s\" read back as \"%s\"", a, sender);

	if (addr_qualify(a, domain, q, sizeof(q)) == 0 &&
	    strlen(q) <= ADDR_MAX) {
		FUZZ_CHECK(addr_is_bare(a) == (strcmp(q, a) != 0),
		    "addr_is_bare(\"%s\") disagrees with qualify", a);
		parse_ok(q, &again, "qualified address");
		FUZZ_CHECK(again.n == 1 && strcmp(again.v[0], q) == 0,
		    "qualified \"%s\" parses as \"%s\"", q,
		    again.n ? again.v[0] : "");
		strlist_free(&again);
	}
}

static void
check_validate(const char *text)
{
	struct strlist l = { 0 };
	struct err err;

	if (addr_validate(text, &err) < 0) {
		check_err(&err, "addr_validate");
		return;
	}
	parse_ok(text, &l, "validated address");
	FUZZ_CHECK(l.n == 1, "validated \"%s\" parses to %zu addresses", text,
	    l.n);
	FUZZ_CHECK(addr_validate(l.v[0], &err) == 0,
	    "validated \"%s\" normalised to \"%s\", which fails: %s", text,
	    l.v[0], err.msg);
	strlist_free(&l);
}

static void
check_sender(const char *text, size_t size)
{
	char out[ADDR_MAX + 1];
	struct err err;

	memset(out, 'X', sizeof(out));
	if (addr_parse_sender(text, out, size, &err) < 0) {
		check_err(&err, "addr_parse_sender");
		FUZZ_CHECK(out[0] == '\0', "failed sender left \"%.20s\"", out);
		return;
	}
	FUZZ_CHECK(!has_crlf(text), "sender with CR or LF accepted");
	FUZZ_CHECK(strlen(out) < size, "sender overflows its buffer");
}

static void
check_qualify_header(const char *text, const char *domain,
    const struct strlist *l, int parsed)
{
	struct strlist l2 = { 0 };
	struct buf out, capped;
	int fits = 1;

	buf_init(&out, 0);
	FUZZ_CHECK(addr_qualify_header(text, domain, &out) == 0,
	    "qualify_header failed without a cap");
	if (!parsed) {
		FUZZ_CHECK(strcmp(out.data ? out.data : "", text) == 0,
		    "unparsable value was changed");
		buf_free(&out);
		return;
	}
	for (size_t i = 0; i < l->n; i++)
		if (strlen(l->v[i]) + 1 + strlen(domain) > ADDR_MAX)
			fits = 0;
	if (fits && out.len <= LIST_MAX) {
		parse_ok(out.data ? out.data : "", &l2, "qualified header");
		FUZZ_CHECK(l2.n == l->n, "qualified header has %zu addresses, "
		    "the value had %zu", l2.n, l->n);
		for (size_t i = 0; i < l->n; i++) {
			char q[ADDR_MAX + 1];

			FUZZ_CHECK(addr_qualify(l->v[i], domain, q,
			    sizeof(q)) == 0, "qualify \"%s\"", l->v[i]);
			FUZZ_CHECK(strcmp(l2.v[i], q) == 0, "address %zu: "
			    "\"%s\" qualified in the header as \"%s\"", i, q,
			    l2.v[i]);
		}
		strlist_free(&l2);
	}

	/* Over a cap: -1 and the buffer as it was. */
	buf_init(&capped, 8 + out.len / 2);
	buf_puts(&capped, "prefix:");
	if (addr_qualify_header(text, domain, &capped) < 0)
		FUZZ_CHECK(capped.len == 7 &&
		    strcmp(capped.data, "prefix:") == 0,
		    "capped buffer changed on failure");
	buf_free(&capped);
	buf_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *domain;
	struct strlist l = { 0 };
	struct err err;
	char *text;
	int parsed;

	if (size < 1)
		return 0;
	domain = domains[data[0] & 3];
	text = fuzz_str(data + 1, size - 1);

	parsed = addr_parse_list(text, &l, &err) == 0;
	if (parsed) {
		for (size_t i = 0; i < l.n; i++)
			check_parsed(l.v[i], domain);
	} else {
		check_err(&err, "addr_parse_list");
		FUZZ_CHECK(l.n == 0, "failed parse appended %zu addresses", l.n);
	}
	check_validate(text);
	check_sender(text, (data[0] & 4) ? 16 : ADDR_MAX + 1);
	check_qualify_header(text, domain, &l, parsed);
	strlist_free(&l);
	free(text);
	return 0;
}
