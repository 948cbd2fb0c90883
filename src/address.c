/*
 * address.c - RFC 5322 address-list parsing (with the obsolete syntax of
 * section 4.4 that real mail still uses), RFC 5321 envelope address
 * validation, and qualification of bare local names.
 *
 * One tokenizer feeds one parser. For every mailbox the parser records the
 * normalized addr-spec and, for a bare local name, the input offset where
 * it ends, so addr_parse_list() and the header rewriter cannot disagree
 * about what is an address and where it is.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"

#define LIST_MAX        65536   /* longest address list we parse */
#define COMMENT_DEPTH   32      /* deepest comment nesting accepted */
#define LOCAL_MAX       64      /* RFC 5321 4.5.3.1.1 */
#define DOMAIN_MAX      255     /* RFC 5321 4.5.3.1.2 */
#define LABEL_MAX       63
#define ENVELOPE_MAX    254     /* 256-octet path minus the angle brackets */

#define STR(x)          STR_(x)
#define STR_(x)         #x
#define TOO_LONG        "address longer than " STR(ADDR_MAX) " octets"
#define IS_CTL(c)       ((c) < 0x20 || (c) == 0x7f)

/* Token types; the specials < > @ , ; : . stand for themselves. */
enum { T_END = 0, T_ATOM = 'a', T_QSTR = '"', T_DLIT = '[' };

#define TYPE(p)         ((p)->tok[(p)->pos].type)
#define IS_WORD(type)   ((type) == T_ATOM || (type) == T_QSTR)

struct token {
	int type;
	size_t start, end;      /* byte offsets in the input */
};

struct mailbox {
	char *addr;             /* normalized addr-spec */
	size_t bare_end;        /* bare name: where "@domain" goes; else 0 */
};

struct parser {
	const char *text;
	struct token *tok;
	size_t ntok, captok, pos;
	struct mailbox *mb;
	size_t nmb, capmb;
	struct err *err;
};

static int
fail(struct err *err, const char *msg)
{
	return err_set(err, ERR_DATA, "%s", msg);
}

/* ---- tokenizer ------------------------------------------------------- */

/* RFC 5322 atext, plus any 8-bit byte (RFC 6532 UTF-8, or legacy 8-bit). */
static int
is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c >= 0x80 ||
	    (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Length of the folding white space at s: SP, HTAB, CRLF or LF before
 * WSP or the end. Other CR/LF could smuggle in a header; callers reject. */
static size_t
fws_len(const char *s)
{
	size_t n = 0, nl;

	for (;;) {
		nl = s[n] == '\r' && s[n + 1] == '\n' ? 2 : s[n] == '\n';
		if (s[n] == ' ' || s[n] == '\t')
			n++;
		else if (nl > 0 && (s[n + nl] == ' ' || s[n + nl] == '\t' ||
		    s[n + nl] == '\0'))
			n += nl;
		else
			return n;
	}
}

static int
bad_char(struct err *err, unsigned char c)
{
	if (c == ')' || c == ']')
		return err_set(err, ERR_DATA, "unbalanced '%c'", c);
	if (c == '\\')
		return fail(err, "'\\' outside a quoted string");
	if (c == '\r' || c == '\n')
		return fail(err, "CR or LF in address list");
	return err_set(err, ERR_DATA,
	    "control character 0x%02x in address list", c);
}

/* Skip the quoted string, comment or domain literal opening at s[*i], with
 * its quoted-pairs and folding; comments nest, to a bounded depth. */
static int
skip_delimited(const char *s, size_t *i, struct err *err)
{
	char open = s[*i], close = open == '(' ? ')' : open == '[' ? ']' : '"';
	const char *what = open == '(' ? "comment" :
	    open == '[' ? "domain literal" : "quoted string";
	size_t j = *i + 1, w;
	int depth = 1;

	while (depth > 0) {
		unsigned char c = (unsigned char)s[j];

		if ((w = fws_len(s + j)) > 0) {
			if (open == '[')
				return fail(err, "space in domain literal");
			j += w;
			continue;
		}
		if (c == '\\')
			c = (unsigned char)s[++j];
		else if (c == close)
			depth--;
		else if (c == '(' && open == '(' && ++depth > COMMENT_DEPTH)
			return fail(err, "comments nested deeper than "
			    STR(COMMENT_DEPTH) " levels");
		else if (c == '[' && open == '[')
			return fail(err, "'[' inside domain literal");
		if (c == '\0')
			return err_set(err, ERR_DATA, "unterminated %s", what);
		if (IS_CTL(c) && c != '\t')
			return bad_char(err, c);
		j++;
	}
	*i = j;
	return 0;
}

/* Split the text into atoms, quoted strings, domain literals and specials;
 * white space and comments (CFWS) only separate tokens and are dropped. */
static int
tokenize(struct parser *p)
{
	const char *s = p->text;
	size_t i = 0, w;

	for (;;) {
		unsigned char c = (unsigned char)s[i];
		struct token t = { c, i, i };

		if ((w = fws_len(s + i)) > 0) {
			i += w;
			continue;
		}
		if (c == '(' || c == '"' || c == '[') {
			if (skip_delimited(s, &i, p->err) < 0)
				return -1;
			if (c == '(')
				continue;
		} else if (is_atext(c)) {
			t.type = T_ATOM;
			while (is_atext((unsigned char)s[i]))
				i++;
		} else if (c != '\0' && strchr("<>@,;:.", c) != NULL) {
			i++;
		} else if (c != '\0') {
			return bad_char(p->err, c);
		}
		t.end = i;
		if (p->ntok == p->captok) {
			p->captok = p->captok ? p->captok * 2 : 32;
			p->tok = xreallocarray(p->tok, p->captok, sizeof(t));
		}
		p->tok[p->ntok++] = t;
		if (c == '\0')
			return 0;
	}
}

/* ---- parser ---------------------------------------------------------- */

/* Append the content of tokens [from, to): quoted strings lose their
 * quotes, the backslash of each quoted-pair, and the CR/LF of folding. */
static int
put_tokens(struct parser *p, struct buf *b, size_t from, size_t to)
{
	const char *s = p->text;
	int rc = 0;

	for (size_t k = from; k < to && rc == 0; k++) {
		const struct token *t = &p->tok[k];

		if (t->type != T_QSTR) {
			rc = buf_append(b, s + t->start, t->end - t->start);
			continue;
		}
		for (size_t i = t->start + 1; i < t->end - 1 && rc == 0; i++) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '\r' || s[i] == '\n')
				continue;
			rc = buf_putc(b, s[i]);
		}
	}
	return rc < 0 ? fail(p->err, TOO_LONG) : 0;
}

static int
is_dot_atom(const char *s, size_t len)
{
	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return 0;
	for (size_t i = 0; i < len; i++)
		if (s[i] == '.' ? s[i - 1] == '.' :
		    !is_atext((unsigned char)s[i]))
			return 0;
	return 1;
}

/* Append a local part, quoted (RFC 5322 3.2.4) only if not a dot-atom. */
static int
put_local(struct buf *b, const struct buf *lp)
{
	const char *s = lp->data ? lp->data : "";

	if (is_dot_atom(s, lp->len))
		return buf_append(b, s, lp->len);
	if (buf_putc(b, '"') < 0)
		return -1;
	for (size_t i = 0; i < lp->len; i++) {
		if ((s[i] == '"' || s[i] == '\\') && buf_putc(b, '\\') < 0)
			return -1;
		if (buf_putc(b, s[i]) < 0)
			return -1;
	}
	return buf_putc(b, '"');
}

/*
 * local-part: words joined by dots. Stray dots ("john.@x", "a..b@x", as
 * some carriers issue) are kept and the result quoted; words with no dot
 * between them ("John Doe") are an error, never silently joined.
 */
static int
parse_local(struct parser *p, struct buf *addr, size_t *end)
{
	size_t first = p->pos, nwords = 0;
	int rc, adjacent = 0;
	struct buf lp;

	for (; IS_WORD(TYPE(p)) || TYPE(p) == '.'; p->pos++) {
		adjacent |= IS_WORD(TYPE(p)) && p->pos > first &&
		    IS_WORD(p->tok[p->pos - 1].type);
		nwords += IS_WORD(TYPE(p));
	}
	if (nwords == 0)
		return fail(p->err, TYPE(p) == '@' ?
		    "missing local part before '@'" : "expected an address");
	if (adjacent)
		return fail(p->err, TYPE(p) == '@' ?
		    "words in local part not separated by '.'" :
		    "display name without an address");
	buf_init(&lp, ADDR_MAX);
	rc = put_tokens(p, &lp, first, p->pos);
	if (rc == 0 && put_local(addr, &lp) < 0)
		rc = fail(p->err, TOO_LONG);
	buf_free(&lp);
	*end = p->tok[p->pos - 1].end;
	return rc;
}

/* domain: a domain literal, or atoms joined by dots (with the obsolete
 * CFWS around the dots). Syntax only; the caller copies the tokens. */
static int
skip_domain(struct parser *p)
{
	if (TYPE(p) == T_DLIT) {
		p->pos++;
		return 0;
	}
	if (TYPE(p) != T_ATOM)
		return fail(p->err, TYPE(p) == '.' ? "domain starts with '.'" :
		    "missing domain after '@'");
	for (p->pos++; TYPE(p) == '.'; p->pos++) {
		if (p->tok[++p->pos].type != T_ATOM)
			return fail(p->err, TYPE(p) == '.' ?
			    "empty label in domain" : "domain ends with '.'");
	}
	return 0;
}

/* addr-spec, or a bare local name ("root") that still needs a domain. */
static int
parse_addr_spec(struct parser *p)
{
	struct buf a;
	size_t end = 0, at = 0;
	int rc;

	buf_init(&a, ADDR_MAX);
	rc = parse_local(p, &a, &end);
	if (rc == 0 && TYPE(p) == '@') {
		at = p->pos++;
		rc = skip_domain(p);
		if (rc == 0)
			rc = put_tokens(p, &a, at, p->pos);
	}
	if (rc == 0) {
		if (p->nmb == p->capmb) {
			p->capmb = p->capmb ? p->capmb * 2 : 8;
			p->mb = xreallocarray(p->mb, p->capmb, sizeof(*p->mb));
		}
		p->mb[p->nmb].addr = xstrdup(a.data);
		p->mb[p->nmb++].bare_end = at == 0 ? end : 0;
	}
	buf_free(&a);
	return rc;
}

/* angle-addr; an obs-route "@r1,@r2:" (RFC 5322 4.4) is skipped, as
 * relays ignore source routes. */
static int
parse_angle(struct parser *p)
{
	p->pos++;
	if (TYPE(p) == '>')
		return fail(p->err, "empty address '<>'");
	if (TYPE(p) == '@') {
		while (TYPE(p) == '@' || TYPE(p) == ',' || TYPE(p) == '.' ||
		    TYPE(p) == T_ATOM || TYPE(p) == T_DLIT)
			p->pos++;
		if (TYPE(p) != ':')
			return fail(p->err, "bad source route in '<...>'");
		p->pos++;
	}
	if (TYPE(p) != T_END && parse_addr_spec(p) < 0)
		return -1;
	if (TYPE(p) == '>') {
		p->pos++;
		return 0;
	}
	return fail(p->err, TYPE(p) == T_END ? "unterminated '<'" :
	    TYPE(p) == '<' ? "nested '<'" : "missing '>' after address");
}

static int parse_members(struct parser *, int);

/* One list element: a group, name-addr, addr-spec, bare local name, or
 * nothing (obs-addr-list). The token after the leading words says which. */
static int
parse_element(struct parser *p, int in_group)
{
	size_t start = p->pos;
	int t;

	while (IS_WORD(TYPE(p)) || TYPE(p) == '.')
		p->pos++;
	switch ((t = TYPE(p))) {
	case '<':
		return parse_angle(p);
	case ':':
		if (in_group)
			return fail(p->err, "nested group");
		if (p->pos == start)
			return fail(p->err, "group without a name");
		p->pos++;
		return parse_members(p, 1);
	case ',': case ';': case T_END:
		if (p->pos == start)
			return 0;
		break;
	case '@':
		break;
	default:
		return fail(p->err, t == '>' ? "unbalanced '>'" :
		    t == T_DLIT ? "domain literal without local part" :
		    "unexpected character");
	}
	p->pos = start;
	return parse_addr_spec(p);
}

/* address-list, or a group's mailbox-list ending in ';'. A ';' missing at
 * the very end is tolerated: "undisclosed-recipients:" is common. */
static int
parse_members(struct parser *p, int in_group)
{
	for (;;) {
		int t;

		if (parse_element(p, in_group) < 0)
			return -1;
		if ((t = TYPE(p)) == T_END)
			return 0;
		p->pos++;
		if (t == ';' && in_group)
			return 0;
		if (t != ',')
			return fail(p->err, t == ';' ? "';' outside a group" :
			    t == '>' ? "unbalanced '>'" :
			    t == ':' ? "unexpected ':' after address" :
			    "missing ',' between addresses");
	}
}

static void
parser_free(struct parser *p)
{
	for (size_t i = 0; i < p->nmb; i++)
		free(p->mb[i].addr);
	free(p->mb);
	free(p->tok);
	memset(p, 0, sizeof(*p));
}

/* Parse a whole address-list; on failure p holds nothing. */
static int
parse(struct parser *p, const char *text, struct err *err)
{
	memset(p, 0, sizeof(*p));
	p->text = text;
	p->err = err;
	if (strnlen(text, LIST_MAX + 1) > LIST_MAX)
		return fail(err, "address list longer than "
		    STR(LIST_MAX) " octets");
	if (tokenize(p) == 0 && parse_members(p, 0) == 0)
		return 0;
	parser_free(p);
	return -1;
}

/* ---- public: parsing ------------------------------------------------- */

int
addr_parse_list(const char *text, struct strlist *out, struct err *err)
{
	struct parser p;

	if (parse(&p, text, err) < 0)
		return -1;
	for (size_t i = 0; i < p.nmb; i++) {
		strlist_add_owned(out, p.mb[i].addr);
		p.mb[i].addr = NULL;
	}
	parser_free(&p);
	return 0;
}

/* "", "<>" and "\"\"" (surrounding blanks ignored) are the null sender. */
static int
is_null_sender(const char *s)
{
	size_t len;

	s += strspn(s, " \t");
	for (len = strlen(s); len > 0 && strchr(" \t", s[len - 1]); len--)
		continue;
	return len == 0 || (len == 2 && (memcmp(s, "<>", 2) == 0 ||
	    memcmp(s, "\"\"", 2) == 0));
}

int
addr_parse_sender(const char *text, char *out, size_t size, struct err *err)
{
	struct parser p;
	int rc = 0;

	if (size == 0)
		return err_set(err, ERR_INTERNAL, "no room for the sender");
	out[0] = '\0';
	if (has_crlf(text))
		return fail(err, "CR or LF in sender address");
	if (is_null_sender(text))
		return 0;
	if (parse(&p, text, err) < 0)
		return -1;
	if (p.nmb == 0)
		rc = fail(err, "no address in sender");
	else if (p.nmb > 1)
		rc = fail(err, "more than one sender address");
	else if (strcmp(p.mb[0].addr, "\"\"") != 0 &&     /* <""> is <> */
	    str_copy(out, p.mb[0].addr, size) < 0)
		rc = fail(err, "sender address too long");
	parser_free(&p);
	if (rc < 0)
		out[0] = '\0';
	return rc;
}

/* ---- public: validation ---------------------------------------------- */

/* Well-formed UTF-8: no overlongs, surrogates or code points past 10FFFF. */
static int
utf8_valid(const unsigned char *s)
{
	while (*s != '\0') {
		unsigned int c = *s++, cp, min, n;

		if (c < 0x80)
			continue;
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f, min = 0x80;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f, min = 0x800;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07, min = 0x10000;
		else
			return 0;
		for (; n > 0; n--, s++) {
			if ((*s & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (*s & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
	}
	return 1;
}

/* RFC 5321 Local-part: Dot-string or Quoted-string; *len gets its length. */
static int
check_local(const char *a, size_t *len, struct err *err)
{
	size_t i = 0;

	if (a[0] == '"') {
		while (a[++i] != '"')
			if (a[i] == '\0' || (a[i] == '\\' && a[++i] == '\0'))
				return fail(err, "unterminated quoted string");
		if (a[++i] != '@' && a[i] != '\0')
			return fail(err, "text after quoted local part");
	}
	for (; a[i] != '@' && a[i] != '\0'; i++) {
		if (a[i] == '.' && i == 0)
			return fail(err, "local part starts with '.'");
		if (a[i] == '.' && a[i - 1] == '.')
			return fail(err, "consecutive dots in local part");
		if (a[i] == ' ')
			return fail(err, "unquoted space in local part");
		if (a[i] != '.' && !is_atext((unsigned char)a[i]))
			return err_set(err, ERR_DATA,
			    "invalid character '%c' in local part", a[i]);
	}
	if (i == 0)
		return fail(err, "empty local part");
	if (a[i - 1] == '.')
		return fail(err, "local part ends with '.'");
	*len = i;
	return 0;
}

/* address-literal: [IPv4] or [IPv6:...]; other tags are not for relaying. */
static int
check_literal(const char *d, size_t len, struct err *err)
{
	unsigned char bin[16];
	char ip[64];

	if (d[len - 1] != ']')
		return fail(err, "unterminated address literal");
	if (len - 2 >= sizeof(ip))
		return fail(err, "address literal too long");
	memcpy(ip, d + 1, len - 2);
	ip[len - 2] = '\0';
	if (strncasecmp(ip, "IPv6:", 5) == 0)
		return inet_pton(AF_INET6, ip + 5, bin) == 1 ? 0 :
		    fail(err, "invalid IPv6 address literal");
	if (inet_pton(AF_INET, ip, bin) == 1)
		return 0;
	return fail(err, strchr(ip, ':') != NULL ?
	    "unsupported address literal tag" : "invalid IPv4 address literal");
}

/* RFC 5321 Domain: LDH labels (or UTF-8 ones, RFC 6531), or a literal. */
static int
check_domain(const char *d, struct err *err)
{
	size_t len = strlen(d), n;

	if (len == 0)
		return fail(err, "empty domain");
	if (d[0] == '[')
		return check_literal(d, len, err);
	if (len > DOMAIN_MAX)
		return fail(err, "domain longer than " STR(DOMAIN_MAX)
		    " octets");
	for (const char *l = d;; l += n + 1) {
		if ((n = strcspn(l, ".")) == 0)
			return fail(err, l == d ? "domain starts with '.'" :
			    *l == '\0' ? "domain ends with '.'" :
			    "empty label in domain");
		if (n > LABEL_MAX)
			return fail(err, "domain label longer than "
			    STR(LABEL_MAX) " octets");
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)l[i];

			if (!((c | 0x20) >= 'a' && (c | 0x20) <= 'z') &&
			    !(c >= '0' && c <= '9') && c != '-' && c < 0x80)
				return err_set(err, ERR_DATA,
				    "invalid character '%c' in domain", c);
		}
		if (l[0] == '-' || l[n - 1] == '-')
			return fail(err, l[0] == '-' ?
			    "domain label starts with '-'" :
			    "domain label ends with '-'");
		if (l[n] == '\0')
			return 0;
	}
}

int
addr_validate(const char *addr, struct err *err)
{
	size_t len = strlen(addr), llen = 0;

	if (len == 0)
		return fail(err, "empty address");
	for (size_t i = 0; i < len; i++)
		if (IS_CTL((unsigned char)addr[i]))
			return err_set(err, ERR_DATA,
			    "control character 0x%02x in address",
			    (unsigned char)addr[i]);
	if (addr_is_utf8(addr) && !utf8_valid((const unsigned char *)addr))
		return fail(err, "invalid UTF-8 in address");
	if (check_local(addr, &llen, err) < 0)
		return -1;
	if (llen > LOCAL_MAX)
		return fail(err, "local part longer than " STR(LOCAL_MAX)
		    " octets");
	if (addr[llen] == '\0')
		return 0;
	if (check_domain(addr + llen + 1, err) < 0)
		return -1;
	if (len > ENVELOPE_MAX)
		return fail(err, "address longer than " STR(ENVELOPE_MAX)
		    " octets");
	return 0;
}

/* ---- public: qualification ------------------------------------------- */

/* The null sender "" is not a bare name: it must never become "@domain". */
int
addr_is_bare(const char *addr)
{
	const char *s = addr;

	if (*s == '"')          /* a quoted local part may hold an '@' */
		for (s++; *s != '\0' && *s != '"'; s++)
			if (*s == '\\' && s[1] != '\0')
				s++;
	return *addr != '\0' && strchr(s, '@') == NULL;
}

int
addr_qualify(const char *addr, const char *domain, char *out, size_t size)
{
	if (!addr_is_bare(addr) || domain == NULL || *domain == '\0')
		return str_copy(out, addr, size);
	return str_fmt(out, size, "%s@%s", addr, domain);
}

int
addr_qualify_header(const char *value, const char *domain, struct buf *out)
{
	size_t orig = out->len, from = 0, at;
	struct parser p;
	int rc = 0;

	if (domain == NULL || *domain == '\0' || parse(&p, value, NULL) < 0)
		return buf_puts(out, value);
	for (size_t i = 0; i < p.nmb && rc == 0; i++) {
		if ((at = p.mb[i].bare_end) == 0)
			continue;
		if (buf_append(out, value + from, at - from) < 0 ||
		    buf_putc(out, '@') < 0 || buf_puts(out, domain) < 0)
			rc = -1;
		from = at;
	}
	if (rc == 0)
		rc = buf_puts(out, value + from);
	parser_free(&p);
	if (rc < 0 && out->data != NULL) {
		out->len = orig;
		out->data[orig] = '\0';
	}
	return rc;
}

int
addr_is_utf8(const char *addr)
{
	for (const unsigned char *s = (const unsigned char *)addr; *s; s++)
		if (*s >= 0x80)
			return 1;
	return 0;
}
