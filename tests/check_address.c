/*
 * check_address.c - unit tests for address.c: address-list parsing, the
 * -f/-r sender, envelope validation, qualification and header rewriting.
 */
#include "autoconf.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define DOM "example.com"

/* Join a list with "|" so a whole result compares as one string. */
static void
join(const struct strlist *l, char *out, size_t size)
{
	out[0] = '\0';
	for (size_t i = 0; i < l->n; i++) {
		if (i > 0)
			str_append(out, "|", size);
		str_append(out, l->v[i], size);
	}
}

static void
assert_err(int rc, const struct err *err, const char *frag, int i,
    const char *in)
{
	ck_assert_msg(rc == -1, "case %d (%s): expected failure", i, in);
	ck_assert_int_eq(err->cls, ERR_DATA);
	ck_assert_msg(strstr(err->msg, frag) != NULL,
	    "case %d (%s): error '%s' lacks '%s'", i, in, err->msg, frag);
}

/* addr_parse_list(in) must fail with frag in the message. */
static void
list_fails(const char *in, const char *frag)
{
	struct strlist l = { 0 };
	struct err err;

	assert_err(addr_parse_list(in, &l, &err), &err, frag, -1, "generated");
	ck_assert_int_eq(l.n, 0);
	strlist_free(&l);
}

/* ---- addr_parse_list ------------------------------------------------- */

static const struct {
	const char *in;
	const char *want;       /* addr-specs joined by "|", or NULL: error */
	const char *frag;       /* expected error message fragment */
} list_cases[] = {
	{ "a@b", "a@b", NULL },
	{ "a@b, c@d", "a@b|c@d", NULL },
	{ "a@b,,c@d", "a@b|c@d", NULL },
	{ ", a@b ,", "a@b", NULL },
	{ "", "", NULL },
	{ "  \t ", "", NULL },
	{ "Name <a@b>", "a@b", NULL },
	{ "<a@b>", "a@b", NULL },
	{ "\"Doe, John\" <j@x>", "j@x", NULL },
	{ "a@b, \"Doe, John\" <j@x>", "a@b|j@x", NULL },
	{ "John Q. Public <j@x>", "j@x", NULL },
	{ "a@b (Comment)", "a@b", NULL },
	{ "a@b (comment with <, and , inside), c@d", "a@b|c@d", NULL },
	{ "(lead) a (x) . (y) b @ (z) c . d (tail)", "a.b@c.d", NULL },
	{ "a(x)@b", "a@b", NULL },
	{ "((nested (deep)) comment) a@b", "a@b", NULL },
	{ "(escaped \\) paren \\( ) a@b", "a@b", NULL },
	{ "root", "root", NULL },
	{ "root (Cron Daemon)", "root", NULL },
	{ "\"Cron Daemon\" <root>", "root", NULL },
	{ "Cron Daemon <root>", "root", NULL },
	{ "root, bin", "root|bin", NULL },
	{ "undisclosed-recipients:;", "", NULL },
	{ "undisclosed-recipients: ;", "", NULL },
	{ "undisclosed-recipients:", "", NULL },
	{ "team: a@x, b@y;", "a@x|b@y", NULL },
	{ "team: a@x, b@y;, c@d", "a@x|b@y|c@d", NULL },
	{ "A: a@x;, B:;, \"C\": Carol <c@z>,, root;", "a@x|c@z|root", NULL },
	{ "<@r1,@r2:a@b>", "a@b", NULL },
	{ "Name <@r1.example,,@r2 : a@b>", "a@b", NULL },
	{ "\"john doe\"@x", "\"john doe\"@x", NULL },
	{ "\"john\"@x", "john@x", NULL },
	{ "\"john\".\"doe\"@x", "john.doe@x", NULL },
	{ "\"a\\\"b\"@x", "\"a\\\"b\"@x", NULL },
	{ "\"a\\\\b\"@x", "\"a\\\\b\"@x", NULL },
	{ "\"a\\b\"@x", "ab@x", NULL },
	{ "\"a@b\"@x", "\"a@b\"@x", NULL },
	{ "\"\"@x", "\"\"@x", NULL },
	{ "\"john doe\"", "\"john doe\"", NULL },
	{ "john.@docomo.ne.jp", "\"john.\"@docomo.ne.jp", NULL },
	{ "a..b@x", "\"a..b\"@x", NULL },
	{ "a@[127.0.0.1]", "a@[127.0.0.1]", NULL },
	{ "a@[IPv6:::1]", "a@[IPv6:::1]", NULL },
	{ "=?UTF-8?B?SsO2cmcgTcO8bGxlcg==?= <a@b>", "a@b", NULL },
	{ "=?utf-8?q?J=C3=B6rg_M=C3=BCller?= <a@b>", "a@b", NULL },
	{ "J\xc3\xb6rg <j\xc3\xb6rg@b\xc3\xbc" "cher.de>",
	    "j\xc3\xb6rg@b\xc3\xbc" "cher.de", NULL },
	{ "\"J\xc3\xb6rg\" <j@x>", "j@x", NULL },
	{ "J\xf6rg (latin-1) <j@x>", "j@x", NULL },
	{ "a@b,\r\n c@d", "a@b|c@d", NULL },
	{ "a@b,\n\tc@d", "a@b|c@d", NULL },
	{ "\"folded\r\n name\" <a@b>", "a@b", NULL },
	{ "a@b\r\n", "a@b", NULL },
	{ "Mr. Smith@x", "Mr.Smith@x", NULL },
	/* errors */
	{ "\"unterminated", NULL, "unterminated quoted string" },
	{ "a@b (unterminated", NULL, "unterminated comment" },
	{ "((a) b", NULL, "unterminated comment" },
	{ "Name <a@b", NULL, "unterminated '<'" },
	{ "Name <", NULL, "unterminated '<'" },
	{ "a@b)", NULL, "unbalanced ')'" },
	{ "a@b>", NULL, "unbalanced '>'" },
	{ "<a@b>>", NULL, "unbalanced '>'" },
	{ ">", NULL, "unbalanced '>'" },
	{ "a@b]", NULL, "unbalanced ']'" },
	{ "a@[1.2.3.4", NULL, "unterminated domain literal" },
	{ "a@[1.2 .3.4]", NULL, "space in domain literal" },
	{ "a@[1.[2]", NULL, "'[' inside domain literal" },
	{ "a@b\r\nBcc: evil@x", NULL, "CR or LF" },
	{ "a@b\nc@d", NULL, "CR or LF" },
	{ "a@b\r c@d", NULL, "CR or LF" },
	{ "\"a\r\nb\"@x", NULL, "CR or LF" },
	{ "(a\nb) a@b", NULL, "CR or LF" },
	{ "a\x01@b", NULL, "control character 0x01" },
	{ "\"a\\\x7f\"@b", NULL, "control character 0x7f" },
	{ "a\\b@c", NULL, "'\\' outside a quoted string" },
	{ "a@b c@d", NULL, "missing ',' between addresses" },
	{ "a@b <c@d>", NULL, "missing ',' between addresses" },
	{ "<a@b> junk", NULL, "missing ',' between addresses" },
	{ "John Doe", NULL, "display name without an address" },
	{ "a, John Doe, b", NULL, "display name without an address" },
	{ "John Doe@x", NULL, "not separated by '.'" },
	{ "<John Doe>", NULL, "display name without an address" },
	{ "a@", NULL, "missing domain after '@'" },
	{ "a@, b@c", NULL, "missing domain after '@'" },
	{ "a@\"b\"", NULL, "missing domain after '@'" },
	{ "@b", NULL, "missing local part before '@'" },
	{ "a@b..c", NULL, "empty label in domain" },
	{ "a@b.", NULL, "domain ends with '.'" },
	{ "a@.b", NULL, "domain starts with '.'" },
	{ "a@b@c", NULL, "missing ',' between addresses" },
	{ "<>", NULL, "empty address '<>'" },
	{ "a: b: c@d;;", NULL, "nested group" },
	{ ": a@b;", NULL, "group without a name" },
	{ "a@b; c@d", NULL, "';' outside a group" },
	{ "a@b:c", NULL, "unexpected ':'" },
	{ "<a@b <c@d>>", NULL, "nested '<'" },
	{ "<a@b, c@d>", NULL, "missing '>'" },
	{ "<@r1 a@b>", NULL, "bad source route" },
	{ "<@r1, a@b>", NULL, "bad source route" },
	{ "<:a@b>", NULL, "expected an address" },
	{ "[1.2.3.4]", NULL, "domain literal without local part" },
};

START_TEST(test_parse_list)
{
	struct strlist l = { 0 };
	const char *in = list_cases[_i].in;
	struct err err = { 0 };
	char got[4096];
	int rc = addr_parse_list(in, &l, &err);

	if (list_cases[_i].want == NULL) {
		assert_err(rc, &err, list_cases[_i].frag, _i, in);
		ck_assert_int_eq(l.n, 0);
	} else {
		ck_assert_msg(rc == 0, "case %d (%s): %s", _i, in, err.msg);
		join(&l, got, sizeof(got));
		ck_assert_str_eq(got, list_cases[_i].want);
	}
	strlist_free(&l);
}
END_TEST

/* Results are appended; on error nothing is. */
START_TEST(test_parse_list_appends)
{
	struct strlist l = { 0 };
	struct err err;

	strlist_add(&l, "first@x");
	ck_assert_int_eq(addr_parse_list("a@b, c@d", &l, &err), 0);
	ck_assert_int_eq(l.n, 3);
	ck_assert_str_eq(l.v[2], "c@d");
	ck_assert_int_eq(addr_parse_list("e@f, g@h, \"broken", &l, &err), -1);
	ck_assert_int_eq(l.n, 3);
	strlist_free(&l);
}
END_TEST

static char *
repeat(const char *unit, size_t n, const char *tail)
{
	size_t u = strlen(unit), t = strlen(tail);
	char *s = malloc(u * n + t + 1);

	ck_assert_ptr_nonnull(s);
	for (size_t i = 0; i < n; i++)
		memcpy(s + i * u, unit, u);
	memcpy(s + u * n, tail, t + 1);
	return s;
}

START_TEST(test_hostile_sizes)
{
	struct strlist l = { 0 };
	struct err err;
	char *s;

	/* 100 KB of commas: over the list limit, rejected before parsing. */
	s = repeat(",", 100 * 1024, "");
	list_fails(s, "longer than 65536");
	free(s);
	/* Just under the limit: all empty elements, parsed fine. */
	s = repeat(",", 65000, "a@b");
	ck_assert_int_eq(addr_parse_list(s, &l, &err), 0);
	ck_assert_int_eq(l.n, 1);
	strlist_free(&l);
	free(s);
	/* Many addresses. */
	s = repeat("a@b,", 10000, "");
	ck_assert_int_eq(addr_parse_list(s, &l, &err), 0);
	ck_assert_int_eq(l.n, 10000);
	strlist_free(&l);
	free(s);
	/* One address longer than ADDR_MAX. */
	s = repeat("x", ADDR_MAX, "@b");
	list_fails(s, "longer than 320");
	free(s);
	s = repeat("x", ADDR_MAX - 2, "@b");
	ck_assert_int_eq(addr_parse_list(s, &l, &err), 0);
	ck_assert_int_eq(strlen(l.v[0]), ADDR_MAX);
	strlist_free(&l);
	free(s);
	s = repeat("y", 400, "");
	list_fails(s, "longer than 320");
	free(s);
	/* A long quoted string that needs re-quoting with escapes. */
	s = repeat("\\\"", 200, "\"@b");
	{
		char *q = xasprintf("\"%s", s);

		free(s);
		s = q;
	}
	list_fails(s, "longer than 320");
	free(s);
	/* An unterminated quote at the end of a long list. */
	s = repeat("a@b, ", 5000, "\"x");
	list_fails(s, "unterminated quoted");
	free(s);
	ck_assert_int_eq(l.n, 0);
}
END_TEST

/* "(((...)))" n deep before an address. */
static char *
nested(size_t n)
{
	char *open = repeat("(", n, ""), *s;
	char *close = repeat(")", n, " a@b");

	s = malloc(2 * n + 5);
	ck_assert_ptr_nonnull(s);
	memcpy(s, open, n);
	memcpy(s + n, close, n + 5);
	free(open);
	free(close);
	return s;
}

START_TEST(test_comment_depth)
{
	struct strlist l = { 0 };
	struct err err;
	char *s;

	/* 32 levels are fine; 33, or a huge unclosed nest, are refused. */
	s = nested(32);
	ck_assert_int_eq(addr_parse_list(s, &l, &err), 0);
	ck_assert_int_eq(l.n, 1);
	strlist_free(&l);
	free(s);
	s = nested(33);
	list_fails(s, "nested deeper");
	free(s);
	s = repeat("(", 50000, "");
	list_fails(s, "nested deeper");
	free(s);
	ck_assert_int_eq(l.n, 0);
}
END_TEST

/* ---- addr_parse_sender ----------------------------------------------- */

static const struct {
	const char *in, *want, *frag;
} sender_cases[] = {
	{ "", "", NULL },
	{ "<>", "", NULL },
	{ "\"\"", "", NULL },
	{ "  <>  ", "", NULL },
	{ "<a@b>", "a@b", NULL },
	{ "a@b", "a@b", NULL },
	{ " a@b ", "a@b", NULL },
	{ "Name <a@b>", "a@b", NULL },
	{ "a@b (comment)", "a@b", NULL },
	{ "root", "root", NULL },
	{ "\"john doe\"@x", "\"john doe\"@x", NULL },
	{ "<@relay:a@b>", "a@b", NULL },
	{ "<\"\">", "", NULL },
	{ "a@b, c@d", NULL, "more than one sender address" },
	{ "team: a@b, c@d;", NULL, "more than one sender address" },
	{ "a@b\r\n", NULL, "CR or LF" },
	{ "a@b\nRCPT TO:<x@y>", NULL, "CR or LF" },
	{ "<a@b", NULL, "unterminated '<'" },
	{ "undisclosed-recipients:;", NULL, "no address in sender" },
	{ "(just a comment)", NULL, "no address in sender" },
	{ "John Doe", NULL, "display name without an address" },
};

START_TEST(test_parse_sender)
{
	struct err err = { 0 };
	char out[ADDR_MAX + 1] = "junk";
	const char *in = sender_cases[_i].in;
	int rc = addr_parse_sender(in, out, sizeof(out), &err);

	if (sender_cases[_i].want == NULL) {
		assert_err(rc, &err, sender_cases[_i].frag, _i, in);
		ck_assert_str_eq(out, "");
	} else {
		ck_assert_msg(rc == 0, "case %d: %s", _i, err.msg);
		ck_assert_str_eq(out, sender_cases[_i].want);
	}
}
END_TEST

START_TEST(test_parse_sender_small)
{
	struct err err;
	char out[4];

	ck_assert_int_eq(addr_parse_sender("abc@d", out, sizeof(out), &err),
	    -1);
	ck_assert_int_eq(err.cls, ERR_DATA);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(addr_parse_sender("a@b", out, sizeof(out), &err), 0);
	ck_assert_str_eq(out, "a@b");
}
END_TEST

/* ---- addr_validate --------------------------------------------------- */

static char long_local[80], long_label[80], long_addr[300], long_domain[300];
static char max_local[80], max_label[80], max_addr[300];

static void
fill(char *dst, const char *parts)
{
	/* parts: "64l@63d.63d.61d": runs of <count><char>, literals kept */
	while (*parts != '\0') {
		char *end;
		long n = strtol(parts, &end, 10);

		if (end == parts) {
			*dst++ = *parts++;
			continue;
		}
		memset(dst, *end, (size_t)n);
		dst += n;
		parts = end + 1;
	}
	*dst = '\0';
}

/* Build the boundary addresses (the table holds pointers to them). */
static void
setup_long(void)
{
	fill(max_local, "64l@x");
	fill(long_local, "65l@x");
	fill(max_label, "a@63d.com");
	fill(long_label, "a@64d.com");
	fill(max_addr, "64l@63d.63d.61d");          /* 254 octets */
	fill(long_addr, "64l@63d.63d.62d");         /* 255 */
	fill(long_domain, "a@63d.63d.63d.63d.x");   /* domain 257 */
}

static const struct {
	const char *addr, *frag;    /* frag NULL: valid */
} validate_cases[] = {
	{ "a@b", NULL },
	{ "root", NULL },
	{ "first.last@example.com", NULL },
	{ "user+tag@sub-domain.example.co.uk", NULL },
	{ "x!#$%&'*/=?^_`{|}~-@example.com", NULL },
	{ "\"john doe\"@example.com", NULL },
	{ "\"a\\\"b\"@x", NULL },
	{ "\"a@b\"@x", NULL },
	{ "\"\"@x", NULL },
	{ "\"john doe\"", NULL },
	{ "a@[127.0.0.1]", NULL },
	{ "a@[IPv6:2001:db8::1]", NULL },
	{ "a@[ipv6:::1]", NULL },
	{ "j\xc3\xb6rg@b\xc3\xbc" "cher.de", NULL },
	{ "x@xn--bcher-kva.de", NULL },
	{ "a@123.456", NULL },
	{ "a@B-2.EXAMPLE", NULL },
	{ max_local, NULL },
	{ max_label, NULL },
	{ max_addr, NULL },
	{ "", "empty address" },
	{ "a@", "empty domain" },
	{ "@b", "empty local part" },
	{ ".a@b", "local part starts with '.'" },
	{ "a.@b", "local part ends with '.'" },
	{ "a..b@c", "consecutive dots in local part" },
	{ "a b@c", "unquoted space in local part" },
	{ "a(b)@c", "invalid character '(' in local part" },
	{ "a,b", "invalid character ',' in local part" },
	{ "\"abc@d", "unterminated quoted string" },
	{ "\"abc\\", "unterminated quoted string" },
	{ "\"a\"b@c", "text after quoted local part" },
	{ long_local, "local part longer than 64 octets" },
	{ long_label, "domain label longer than 63 octets" },
	{ long_addr, "address longer than 254 octets" },
	{ long_domain, "domain longer than 255 octets" },
	{ "a@-b.c", "domain label starts with '-'" },
	{ "a@b-.c", "domain label ends with '-'" },
	{ "a@b.c-", "domain label ends with '-'" },
	{ "a@b..c", "empty label in domain" },
	{ "a@b.", "domain ends with '.'" },
	{ "a@.b", "domain starts with '.'" },
	{ "a@b_c.d", "invalid character '_' in domain" },
	{ "a@b c", "invalid character ' ' in domain" },
	{ "a@b@c", "invalid character '@' in domain" },
	{ "a\r\n@b", "control character 0x0d" },
	{ "a\t@b", "control character 0x09" },
	{ "\"a\tb\"@c", "control character 0x09" },
	{ "a@b\x7f", "control character 0x7f" },
	{ "j\xc3\x28@x", "invalid UTF-8" },
	{ "j@\xc0\xaf.x", "invalid UTF-8" },
	{ "j@\xed\xa0\x80.x", "invalid UTF-8" },
	{ "j\xf6rg@x", "invalid UTF-8" },
	{ "a@[1.2.3]", "invalid IPv4 address literal" },
	{ "a@[256.1.1.1]", "invalid IPv4 address literal" },
	{ "a@[IPv6:zz]", "invalid IPv6 address literal" },
	{ "a@[IPv6:1.2.3.4]", "invalid IPv6 address literal" },
	{ "a@[x-tag:y]", "unsupported address literal tag" },
	{ "a@[1.2.3.4", "unterminated address literal" },
	{ "a@[1.2.3.4]x", "unterminated address literal" },
	{ "a@[]", "invalid IPv4 address literal" },
};

START_TEST(test_validate)
{
	struct err err = { 0 };
	int rc;

	rc = addr_validate(validate_cases[_i].addr, &err);
	if (validate_cases[_i].frag == NULL)
		ck_assert_msg(rc == 0, "case %d: %s", _i, err.msg);
	else
		assert_err(rc, &err, validate_cases[_i].frag, _i,
		    validate_cases[_i].addr);
}
END_TEST

/* Whatever the list parser produces from valid input validates. */
START_TEST(test_parse_then_validate)
{
	static const char *in = "\"john doe\"@x, \"john\"@x, "
	    "Jörg <jörg@bücher.de>, root, <@r:a@[1.2.3.4]>, "
	    "\"a\\\"b\"@x, \"a..b\"@x";
	struct strlist l = { 0 };
	struct err err;

	ck_assert_int_eq(addr_parse_list(in, &l, &err), 0);
	ck_assert_int_eq(l.n, 7);
	for (size_t i = 0; i < l.n; i++)
		ck_assert_msg(addr_validate(l.v[i], &err) == 0, "%s: %s",
		    l.v[i], err.msg);
	strlist_free(&l);
}
END_TEST

/* ---- qualification --------------------------------------------------- */

static const struct {
	const char *addr, *domain;
	size_t size;
	const char *want;       /* NULL: -1 */
} qualify_cases[] = {
	{ "root", "example.com", 64, "root@example.com" },
	{ "a@b", "example.com", 64, "a@b" },
	{ "\"john doe\"", "example.com", 64, "\"john doe\"@example.com" },
	{ "\"a@b\"", "example.com", 64, "\"a@b\"@example.com" },
	{ "\"a\\\"@b\"", "example.com", 64, "\"a\\\"@b\"@example.com" },
	{ "\"a\"@b", "example.com", 64, "\"a\"@b" },
	{ "", "example.com", 64, "" },
	{ "root", "", 64, "root" },
	{ "root", NULL, 64, "root" },
	{ "root", "example.com", 17, "root@example.com" },
	{ "root", "example.com", 16, NULL },
	{ "a@example.com", "x", 13, NULL },
};

START_TEST(test_qualify)
{
	char out[64];
	int rc = addr_qualify(qualify_cases[_i].addr, qualify_cases[_i].domain,
	    out, qualify_cases[_i].size);

	if (qualify_cases[_i].want == NULL) {
		ck_assert_int_eq(rc, -1);
	} else {
		ck_assert_int_eq(rc, 0);
		ck_assert_str_eq(out, qualify_cases[_i].want);
	}
}
END_TEST

static const struct {
	const char *addr;
	int bare, utf8;
} predicate_cases[] = {
	{ "root", 1, 0 },
	{ "a@b", 0, 0 },
	{ "\"a@b\"", 1, 0 },
	{ "\"a\\\"@b\"", 1, 0 },
	{ "\"a\"@b", 0, 0 },
	{ "", 0, 0 },
	{ "j\xc3\xb6rg", 1, 1 },
	{ "a@b\xc3\xbc" "cher.de", 0, 1 },
};

START_TEST(test_predicates)
{
	const char *a = predicate_cases[_i].addr;

	ck_assert_int_eq(addr_is_bare(a), predicate_cases[_i].bare);
	ck_assert_int_eq(addr_is_utf8(a), predicate_cases[_i].utf8);
}
END_TEST

/* ---- addr_qualify_header --------------------------------------------- */

static const struct {
	const char *in, *want;
} header_cases[] = {
	{ "root (Cron Daemon)", "root@example.com (Cron Daemon)" },
	{ "Cron Daemon <root>", "Cron Daemon <root@example.com>" },
	{ "\"Cron Daemon\" <root>", "\"Cron Daemon\" <root@example.com>" },
	{ "\"x\" <a@b>, root", "\"x\" <a@b>, root@example.com" },
	{ "root", "root@example.com" },
	{ "a@b", "a@b" },
	{ "", "" },
	{ "  root  ", "  root@example.com  " },
	{ "root(comment)", "root@example.com(comment)" },
	{ "root (a <b>, c)", "root@example.com (a <b>, c)" },
	{ "undisclosed-recipients:;", "undisclosed-recipients:;" },
	{ "team: root, a@b;", "team: root@example.com, a@b;" },
	{ "team: root", "team: root@example.com" },
	{ "a@b,\r\n root,\r\n\tbin (Bin)",
	    "a@b,\r\n root@example.com,\r\n\tbin@example.com (Bin)" },
	{ "\"john doe\"", "\"john doe\"@example.com" },
	{ "john . doe (x)", "john . doe@example.com (x)" },
	{ "<@r1:root>", "<@r1:root@example.com>" },
	{ "J\xc3\xb6rg <j\xc3\xb6rg>",
	    "J\xc3\xb6rg <j\xc3\xb6rg@example.com>" },
	{ "=?UTF-8?B?SsO2cmc=?= <root>",
	    "=?UTF-8?B?SsO2cmc=?= <root@example.com>" },
	{ "root,,bin", "root@example.com,,bin@example.com" },
	{ "root\r\n", "root@example.com\r\n" },
	{ "\"Doe, John\" <j@x>, (a comment) root",
	    "\"Doe, John\" <j@x>, (a comment) root@example.com" },
	/* does not parse: copied unchanged */
	{ "root, \"broken", "root, \"broken" },
	{ "Cron Daemon", "Cron Daemon" },
	{ "root\r\nBcc: x", "root\r\nBcc: x" },
	{ "<root", "<root" },
};

START_TEST(test_qualify_header)
{
	struct buf b;

	buf_init(&b, 4096);
	ck_assert_int_eq(buf_puts(&b, "To: "), 0);
	ck_assert_int_eq(addr_qualify_header(header_cases[_i].in, DOM, &b), 0);
	ck_assert_str_eq(b.data + 4, header_cases[_i].want);
	ck_assert_uint_eq(b.len, 4 + strlen(header_cases[_i].want));
	buf_free(&b);
}
END_TEST

START_TEST(test_qualify_header_cap)
{
	struct buf b;

	const char *want = "To: root@example.com, bin@example.com";

	buf_init(&b, strlen(want) - 1);
	ck_assert_int_eq(buf_puts(&b, "To: "), 0);
	ck_assert_int_eq(addr_qualify_header("root, bin", DOM, &b), -1);
	ck_assert_str_eq(b.data, "To: ");
	ck_assert_uint_eq(b.len, 4);
	/* Unparsable values are copied, and the cap still applies. */
	ck_assert_int_eq(addr_qualify_header(
	    "\"unterminated, and too long for the cap", DOM, &b), -1);
	ck_assert_str_eq(b.data, "To: ");
	buf_free(&b);
	buf_init(&b, strlen(want));
	ck_assert_int_eq(buf_puts(&b, "To: "), 0);
	ck_assert_int_eq(addr_qualify_header("root, bin", DOM, &b), 0);
	ck_assert_str_eq(b.data, want);
	buf_free(&b);
	/* Too long to parse (100 KB of commas): copied unchanged. */
	{
		char *s = repeat(",", 100 * 1024, "root");

		buf_init(&b, 0);
		ck_assert_int_eq(addr_qualify_header(s, DOM, &b), 0);
		ck_assert_str_eq(b.data, s);
		buf_free(&b);
		free(s);
	}
	/* No domain: nothing to qualify with, copied unchanged. */
	buf_init(&b, 0);
	ck_assert_int_eq(addr_qualify_header("root", "", &b), 0);
	ck_assert_str_eq(b.data, "root");
	buf_free(&b);
}
END_TEST

/* The rewriter and the parser agree: rewritten output parses to the
 * qualified forms of what the original parsed to. */
START_TEST(test_rewrite_agrees)
{
	struct strlist before = { 0 }, after = { 0 };
	struct err err;
	struct buf b;
	char q[ADDR_MAX + 1];

	buf_init(&b, 0);
	ck_assert_int_eq(addr_qualify_header(header_cases[_i].in, DOM, &b), 0);
	if (addr_parse_list(header_cases[_i].in, &before, &err) == 0) {
		ck_assert_int_eq(addr_parse_list(b.data, &after, &err), 0);
		ck_assert_uint_eq(before.n, after.n);
		for (size_t i = 0; i < before.n; i++) {
			ck_assert_int_eq(addr_qualify(before.v[i], DOM, q,
			    sizeof(q)), 0);
			ck_assert_str_eq(after.v[i], q);
		}
	}
	strlist_free(&before);
	strlist_free(&after);
	buf_free(&b);
}
END_TEST

static Suite *
address_suite(void)
{
	Suite *s = suite_create("address");
	TCase *tc;

	tc = tcase_create("parse_list");
	tcase_add_loop_test(tc, test_parse_list, 0, NELEM(list_cases));
	tcase_add_test(tc, test_parse_list_appends);
	tcase_add_test(tc, test_hostile_sizes);
	tcase_add_test(tc, test_comment_depth);
	suite_add_tcase(s, tc);

	tc = tcase_create("parse_sender");
	tcase_add_loop_test(tc, test_parse_sender, 0, NELEM(sender_cases));
	tcase_add_test(tc, test_parse_sender_small);
	suite_add_tcase(s, tc);

	tc = tcase_create("validate");
	tcase_add_checked_fixture(tc, setup_long, NULL);
	tcase_add_loop_test(tc, test_validate, 0, NELEM(validate_cases));
	tcase_add_test(tc, test_parse_then_validate);
	suite_add_tcase(s, tc);

	tc = tcase_create("qualify");
	tcase_add_loop_test(tc, test_qualify, 0, NELEM(qualify_cases));
	tcase_add_loop_test(tc, test_predicates, 0, NELEM(predicate_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("qualify_header");
	tcase_add_loop_test(tc, test_qualify_header, 0, NELEM(header_cases));
	tcase_add_test(tc, test_qualify_header_cap);
	tcase_add_loop_test(tc, test_rewrite_agrees, 0, NELEM(header_cases));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(address_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
