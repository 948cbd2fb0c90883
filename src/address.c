/*
 * address.c - RFC 5322 address-list parsing (with the obsolete syntax of
 * section 4.4 that real mail still uses), RFC 5321 envelope address
 * validation, and qualification of bare local names.
 *
 * One tokenizer feeds one parser. For every mailbox the parser records the
 * normalized addr-spec and the input offset where its local part ends, so
 * addr_parse_list() and the header rewriter cannot disagree about what is
 * an address and where it is.
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

enum tok_type { T_ATOM, T_QSTR, T_DLIT, T_SPECIAL, T_END };

struct token {
	enum tok_type type;
	char ch;                /* T_SPECIAL: one of < > @ , ; : . */
	size_t start, end;      /* byte offsets in the input */
};

struct mailbox {
	char *addr;             /* normalized addr-spec */
	size_t local_end;       /* offset just past the local part's last token */
	int bare;               /* no "@domain" */
};

struct parser {
	const char *text;
	struct token *tok;
	size_t ntok, captok, pos;
	struct mailbox *mb;
	size_t nmb, capmb;
	struct err *err;
};

/* ---- character classes ----------------------------------------------- */

/* RFC 5322 atext, plus any 8-bit byte (RFC 6532 UTF-8, or legacy 8-bit). */
static int
is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c >= 0x80 ||
	    (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static int
is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

static int
is_dot_atom(const char *s, size_t len)
{
	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.' ? s[i - 1] == '.' : !is_atext((unsigned char)s[i]))
			return 0;
	}
	return 1;
}

/*
 * Length of the folding white space at s: SP, HTAB, and CRLF (or a bare
 * LF) when white space or the end of the text follows. A CR or LF that does
 * not fold could smuggle a header line, so the caller rejects it.
 */
static size_t
fws_len(const char *s)
{
	size_t n = 0;

	for (;;) {
		if (s[n] == ' ' || s[n] == '\t')
			n++;
		else if (s[n] == '\r' && s[n + 1] == '\n' && (s[n + 2] == ' ' ||
		    s[n + 2] == '\t' || s[n + 2] == '\0'))
			n += 2;
		else if (s[n] == '\n' && (s[n + 1] == ' ' || s[n + 1] == '\t' ||
		    s[n + 1] == '\0'))
			n++;
		else
			return n;
	}
}

/* ---- tokenizer ------------------------------------------------------- */

static int
bad_char(struct err *err, unsigned char c)
{
	if (c == '\r' || c == '\n')
		return err_set(err, ERR_DATA, "CR or LF in address list");
	return err_set(err, ERR_DATA, "control character 0x%02x in address list", c);
}

/*
 * Skip the quoted string, comment or domain literal opening at s[*i]:
 * quoted-pairs, folding white space, and nesting for comments (bounded so
 * hostile input cannot run deep).
 */
static int
skip_delimited(const char *s, size_t *i, struct err *err)
{
	char open = s[*i];
	char close = open == '(' ? ')' : open == '[' ? ']' : '"';
	const char *what = open == '(' ? "comment" :
	    open == '[' ? "domain literal" : "quoted string";
	size_t j = *i + 1, w;
	int depth = 1;

	while (depth > 0) {
		unsigned char c = (unsigned char)s[j];

		if ((w = fws_len(s + j)) > 0) {
			if (open == '[')
				return err_set(err, ERR_DATA, "white space in domain literal");
			j += w;
			continue;
		}
		if (c == '\0')
			return err_set(err, ERR_DATA, "unterminated %s", what);
		if (c == '\\') {
			c = (unsigned char)s[j + 1];
			if (c == '\0')
				return err_set(err, ERR_DATA, "unterminated %s", what);
			if (is_ctl(c) && c != '\t')
				return bad_char(err, c);
			j += 2;
			continue;
		}
		if (is_ctl(c))
			return bad_char(err, c);
		if (c == close)
			depth--;
		else if (open == '(' && c == '(' && ++depth > COMMENT_DEPTH)
			return err_set(err, ERR_DATA,
			    "comments nested deeper than %d levels", COMMENT_DEPTH);
		else if (open == '[' && c == '[')
			return err_set(err, ERR_DATA, "'[' inside domain literal");
		j++;
	}
	*i = j;
	return 0;
}

static void
push_token(struct parser *p, const struct token *t)
{
	if (p->ntok == p->captok) {
		p->captok = p->captok ? p->captok * 2 : 32;
		p->tok = xreallocarray(p->tok, p->captok, sizeof(*p->tok));
	}
	p->tok[p->ntok++] = *t;
}

/* Split the text into atoms, quoted strings, domain literals and specials;
 * white space and comments (CFWS) separate tokens and are dropped. */
static int
tokenize(struct parser *p)
{
	const char *s = p->text;
	size_t i = 0, w;
	struct token t;

	for (;;) {
		unsigned char c = (unsigned char)s[i];

		if ((w = fws_len(s + i)) > 0) {
			i += w;
			continue;
		}
		if (c == '(') {
			if (skip_delimited(s, &i, p->err) < 0)
				return -1;
			continue;
		}
		t.start = i;
		t.ch = '\0';
		if (c == '\0') {
			t.type = T_END;
		} else if (c == '"' || c == '[') {
			t.type = c == '"' ? T_QSTR : T_DLIT;
			if (skip_delimited(s, &i, p->err) < 0)
				return -1;
		} else if (strchr("<>@,;:.", c) != NULL) {
			t.type = T_SPECIAL;
			t.ch = (char)c;
			i++;
		} else if (is_atext(c)) {
			t.type = T_ATOM;
			while (is_atext((unsigned char)s[i]))
				i++;
		} else if (c == ')' || c == ']') {
			return err_set(p->err, ERR_DATA, "unbalanced '%c'", c);
		} else if (c == '\\') {
			return err_set(p->err, ERR_DATA, "'\\' outside a quoted string");
		} else {
			return bad_char(p->err, c);
		}
		t.end = i;
		push_token(p, &t);
		if (t.type == T_END)
			return 0;
	}
}

/* ---- parser ---------------------------------------------------------- */

static const struct token *
cur(const struct parser *p)
{
	return &p->tok[p->pos];
}

static int
is_sp(const struct token *t, char ch)
{
	return t->type == T_SPECIAL && t->ch == ch;
}

static int
is_word(const struct token *t)
{
	return t->type == T_ATOM || t->type == T_QSTR;
}

static int
perr(struct parser *p, const char *msg)
{
	return err_set(p->err, ERR_DATA, "%s", msg);
}

static int
too_long(struct parser *p)
{
	return err_set(p->err, ERR_DATA, "address longer than %d octets", ADDR_MAX);
}

/* Append a word's content: quoted strings lose their quotes, the
 * backslash of each quoted-pair and the CR/LF of folding. */
static int
put_word(struct buf *b, const char *s, const struct token *t)
{
	if (t->type != T_QSTR)
		return buf_append(b, s + t->start, t->end - t->start);
	for (size_t i = t->start + 1; i < t->end - 1; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '\r' || s[i] == '\n')
			continue;
		if (buf_putc(b, s[i]) < 0)
			return -1;
	}
	return 0;
}

/* Append a local part, quoted (RFC 5322 3.2.4) only if it is not a dot-atom. */
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
 * some carriers issue) are kept and the result quoted; two words with no
 * dot between them are an error, never silently joined.
 */
static int
parse_local(struct parser *p, struct buf *addr, size_t *end)
{
	size_t first = p->pos, last, nwords = 0;
	struct buf lp;
	int rc = 0;

	for (; is_word(cur(p)) || is_sp(cur(p), '.'); p->pos++) {
		if (is_word(cur(p)) && p->pos > first && is_word(cur(p) - 1))
			return perr(p, "words in local part not separated by '.'");
		nwords += is_word(cur(p));
	}
	if (nwords == 0)
		return perr(p, is_sp(cur(p), '@') ? "missing local part before '@'" :
		    "expected an address");
	last = p->pos - 1;
	buf_init(&lp, ADDR_MAX);
	for (size_t i = first; i <= last && rc == 0; i++)
		rc = p->tok[i].type == T_SPECIAL ? buf_putc(&lp, '.') :
		    put_word(&lp, p->text, &p->tok[i]);
	if (rc == 0)
		rc = put_local(addr, &lp);
	buf_free(&lp);
	*end = p->tok[last].end;
	return rc < 0 ? too_long(p) : 0;
}

/* domain: dot-atom (obsolete CFWS around the dots allowed) or [literal]. */
static int
parse_domain(struct parser *p, struct buf *addr)
{
	const struct token *t = cur(p);

	if (t->type == T_DLIT) {
		p->pos++;
		if (buf_append(addr, p->text + t->start, t->end - t->start) < 0)
			return too_long(p);
		return 0;
	}
	if (t->type != T_ATOM)
		return perr(p, is_sp(t, '.') ? "domain starts with '.'" :
		    "missing domain after '@'");
	for (;;) {
		t = cur(p);
		if (buf_append(addr, p->text + t->start, t->end - t->start) < 0)
			return too_long(p);
		p->pos++;
		if (!is_sp(cur(p), '.'))
			return 0;
		p->pos++;
		if (cur(p)->type != T_ATOM)
			return perr(p, is_sp(cur(p), '.') ? "empty label in domain" :
			    "domain ends with '.'");
		if (buf_putc(addr, '.') < 0)
			return too_long(p);
	}
}

static void
add_mailbox(struct parser *p, const char *addr, size_t local_end, int bare)
{
	if (p->nmb == p->capmb) {
		p->capmb = p->capmb ? p->capmb * 2 : 8;
		p->mb = xreallocarray(p->mb, p->capmb, sizeof(*p->mb));
	}
	p->mb[p->nmb].addr = xstrdup(addr);
	p->mb[p->nmb].local_end = local_end;
	p->mb[p->nmb].bare = bare;
	p->nmb++;
}

/* addr-spec, or a bare local name ("root") that still needs a domain. */
static int
parse_addr_spec(struct parser *p)
{
	struct buf a;
	size_t end;
	int bare;

	buf_init(&a, ADDR_MAX);
	if (parse_local(p, &a, &end) < 0)
		goto fail;
	bare = !is_sp(cur(p), '@');
	if (!bare) {
		p->pos++;
		if (buf_putc(&a, '@') < 0) {
			too_long(p);
			goto fail;
		}
		if (parse_domain(p, &a) < 0)
			goto fail;
	}
	add_mailbox(p, a.data, end, bare);
	buf_free(&a);
	return 0;
fail:
	buf_free(&a);
	return -1;
}

/* obs-route "@r1,@r2:" (RFC 5322 4.4): parsed for syntax, then dropped. */
static int
parse_route(struct parser *p)
{
	struct buf junk;
	int after_domain = 0, ndomains = 0;

	buf_init(&junk, ADDR_MAX);
	for (;;) {
		const struct token *t = cur(p);

		if (is_sp(t, '@') && !after_domain) {
			p->pos++;
			buf_reset(&junk);
			if (parse_domain(p, &junk) < 0)
				break;
			after_domain = 1;
			ndomains++;
		} else if (is_sp(t, ',')) {
			p->pos++;
			after_domain = 0;
		} else if (is_sp(t, ':') && ndomains > 0) {
			p->pos++;
			buf_free(&junk);
			return 0;
		} else {
			perr(p, "bad source route in '<...>'");
			break;
		}
	}
	buf_free(&junk);
	return -1;
}

static int
parse_angle(struct parser *p)
{
	const struct token *t;

	p->pos++;
	if (is_sp(cur(p), '>'))
		return perr(p, "empty address '<>'");
	if (cur(p)->type == T_END)
		return perr(p, "unterminated '<'");
	if (is_sp(cur(p), '@') && parse_route(p) < 0)
		return -1;
	if (parse_addr_spec(p) < 0)
		return -1;
	t = cur(p);
	if (is_sp(t, '>')) {
		p->pos++;
		return 0;
	}
	if (t->type == T_END)
		return perr(p, "unterminated '<'");
	return perr(p, is_sp(t, '<') ? "nested '<'" : "missing '>' after address");
}

static int parse_members(struct parser *, int);

/*
 * One list element: a group, a name-addr, an addr-spec, a bare local name,
 * or nothing (obs-addr-list allows empty elements). Reads the leading
 * words first; the token that stops them says which it was.
 */
static int
parse_element(struct parser *p, int in_group)
{
	size_t start = p->pos;
	const struct token *t;
	int adjacent = 0;

	for (; is_word(cur(p)) || is_sp(cur(p), '.'); p->pos++)
		adjacent |= p->pos > start && is_word(cur(p)) && is_word(cur(p) - 1);
	t = cur(p);
	if (is_sp(t, '<'))
		return parse_angle(p);
	if (is_sp(t, ':')) {
		if (in_group)
			return perr(p, "nested group");
		if (p->pos == start)
			return perr(p, "group without a name");
		p->pos++;
		return parse_members(p, 1);
	}
	if (is_sp(t, ',') || is_sp(t, ';') || t->type == T_END) {
		if (p->pos == start)
			return 0;
		if (adjacent)
			return perr(p, "display name without an address");
	} else if (!is_sp(t, '@')) {
		return perr(p, is_sp(t, '>') ? "unbalanced '>'" :
		    t->type == T_DLIT ? "domain literal without local part" :
		    "unexpected character in address");
	}
	p->pos = start;
	return parse_addr_spec(p);
}

/* address-list, or the mailbox-list of a group (ended by ';'; a missing
 * ';' at the very end is tolerated, as "undisclosed-recipients:" is common). */
static int
parse_members(struct parser *p, int in_group)
{
	for (;;) {
		const struct token *t;

		if (parse_element(p, in_group) < 0)
			return -1;
		t = cur(p);
		if (is_sp(t, ',')) {
			p->pos++;
		} else if (t->type == T_END) {
			return 0;
		} else if (in_group && is_sp(t, ';')) {
			p->pos++;
			return 0;
		} else {
			return perr(p, is_sp(t, ';') ? "';' outside a group" :
			    is_sp(t, '>') ? "unbalanced '>'" :
			    is_sp(t, ':') ? "unexpected ':' after address" :
			    "missing ',' between addresses");
		}
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

static int
parse_tokens(struct parser *p, const char *text, struct err *err)
{
	memset(p, 0, sizeof(*p));
	p->text = text;
	p->err = err;
	if (strnlen(text, LIST_MAX + 1) > LIST_MAX)
		return err_set(err, ERR_DATA,
		    "address list longer than %d octets", LIST_MAX);
	return tokenize(p);
}

/* Parse a whole address-list; on failure p holds nothing. */
static int
parse(struct parser *p, const char *text, struct err *err)
{
	if (parse_tokens(p, text, err) < 0 || parse_members(p, 0) < 0) {
		parser_free(p);
		return -1;
	}
	return 0;
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
	len = strlen(s);
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	return len == 0 || (len == 2 && (memcmp(s, "<>", 2) == 0 ||
	    memcmp(s, "\"\"", 2) == 0));
}

int
addr_parse_sender(const char *text, char *out, size_t size, struct err *err)
{
	struct parser p;
	int rc = 0;

	if (size == 0)
		return err_set(err, ERR_INTERNAL, "no room for the sender address");
	if (has_crlf(text))
		return err_set(err, ERR_DATA, "CR or LF in sender address");
	if (is_null_sender(text)) {
		out[0] = '\0';
		return 0;
	}
	if (parse(&p, text, err) < 0)
		return -1;
	if (p.nmb == 0)
		rc = err_set(err, ERR_DATA, "no address in sender");
	else if (p.nmb > 1)
		rc = err_set(err, ERR_DATA, "more than one sender address");
	else if (str_copy(out, p.mb[0].addr, size) < 0)
		rc = err_set(err, ERR_DATA, "sender address too long");
	parser_free(&p);
	if (rc < 0)
		out[0] = '\0';
	return rc;
}

/* ---- public: validation ---------------------------------------------- */

/* Well-formed UTF-8: no overlongs, surrogates or code points past U+10FFFF. */
static int
utf8_valid(const unsigned char *s)
{
	while (*s != '\0') {
		unsigned int c = *s, cp, min, n;

		if (c < 0x80) {
			s++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f, min = 0x80;
		else if ((c & 0xf0) == 0xe0)
			n = 2, cp = c & 0x0f, min = 0x800;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07, min = 0x10000;
		else
			return 0;
		for (unsigned int i = 1; i <= n; i++) {
			if ((s[i] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		s += n + 1;
	}
	return 1;
}

/* RFC 5321 Local-part: Dot-string or Quoted-string; *len gets its length. */
static int
check_local(const char *a, size_t *len, struct err *err)
{
	size_t i = 0;

	if (a[0] == '"') {
		for (i = 1; a[i] != '"'; i++) {
			if (a[i] == '\\' && a[i + 1] != '\0')
				i++;
			else if (a[i] == '\0' || a[i] == '\\')
				return err_set(err, ERR_DATA, "unterminated quoted local part");
		}
		i++;
		if (a[i] != '@' && a[i] != '\0')
			return err_set(err, ERR_DATA, "text after quoted local part");
		*len = i;
		return 0;
	}
	for (; a[i] != '@' && a[i] != '\0'; i++) {
		if (a[i] == '.' && i == 0)
			return err_set(err, ERR_DATA, "local part starts with '.'");
		if (a[i] == '.' && a[i - 1] == '.')
			return err_set(err, ERR_DATA, "consecutive dots in local part");
		if (a[i] == ' ')
			return err_set(err, ERR_DATA, "unquoted space in local part");
		if (a[i] != '.' && !is_atext((unsigned char)a[i]))
			return err_set(err, ERR_DATA,
			    "invalid character '%c' in local part", a[i]);
	}
	if (i == 0)
		return err_set(err, ERR_DATA, "empty local part");
	if (a[i - 1] == '.')
		return err_set(err, ERR_DATA, "local part ends with '.'");
	*len = i;
	return 0;
}

/* address-literal: [IPv4] or [IPv6:...]; other tags are not for relaying. */
static int
check_literal(const char *d, size_t len, struct err *err)
{
	unsigned char bin[16];
	char ip[64];

	if (len < 3 || d[len - 1] != ']')
		return err_set(err, ERR_DATA, "unterminated address literal");
	if (len - 2 >= sizeof(ip))
		return err_set(err, ERR_DATA, "address literal too long");
	memcpy(ip, d + 1, len - 2);
	ip[len - 2] = '\0';
	if (strncasecmp(ip, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, ip + 5, bin) == 1)
			return 0;
		return err_set(err, ERR_DATA, "invalid IPv6 address literal");
	}
	if (inet_pton(AF_INET, ip, bin) == 1)
		return 0;
	if (strchr(ip, ':') != NULL)
		return err_set(err, ERR_DATA, "unsupported address literal tag");
	return err_set(err, ERR_DATA, "invalid IPv4 address literal");
}

/* RFC 5321 Domain: LDH labels (or UTF-8 ones, RFC 6531), or a literal. */
static int
check_domain(const char *d, struct err *err)
{
	size_t len = strlen(d), lab = 0;

	if (len == 0)
		return err_set(err, ERR_DATA, "empty domain");
	if (d[0] == '[')
		return check_literal(d, len, err);
	if (len > DOMAIN_MAX)
		return err_set(err, ERR_DATA, "domain longer than %d octets", DOMAIN_MAX);
	for (size_t i = 0;; i++) {
		unsigned char c = (unsigned char)d[i];

		if (c == '.' || c == '\0') {
			if (lab == 0)
				return err_set(err, ERR_DATA, i == 0 ?
				    "domain starts with '.'" : c == '\0' ?
				    "domain ends with '.'" : "empty label in domain");
			if (lab > LABEL_MAX)
				return err_set(err, ERR_DATA,
				    "domain label longer than %d octets", LABEL_MAX);
			if (d[i - 1] == '-')
				return err_set(err, ERR_DATA, "domain label ends with '-'");
			if (c == '\0')
				return 0;
			lab = 0;
			continue;
		}
		if (c == '-' && lab == 0)
			return err_set(err, ERR_DATA, "domain label starts with '-'");
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c >= 0x80))
			return err_set(err, ERR_DATA,
			    "invalid character '%c' in domain", c);
		lab++;
	}
}

int
addr_validate(const char *addr, struct err *err)
{
	size_t len = strlen(addr), llen;

	if (len == 0)
		return err_set(err, ERR_DATA, "empty address");
	for (size_t i = 0; i < len; i++)
		if (is_ctl((unsigned char)addr[i]))
			return err_set(err, ERR_DATA, "control character 0x%02x in address",
			    (unsigned char)addr[i]);
	if (addr_is_utf8(addr) && !utf8_valid((const unsigned char *)addr))
		return err_set(err, ERR_DATA, "invalid UTF-8 in address");
	if (check_local(addr, &llen, err) < 0)
		return -1;
	if (llen > LOCAL_MAX)
		return err_set(err, ERR_DATA, "local part longer than %d octets", LOCAL_MAX);
	if (addr[llen] == '\0')
		return 0;
	if (check_domain(addr + llen + 1, err) < 0)
		return -1;
	if (len > ENVELOPE_MAX)
		return err_set(err, ERR_DATA, "address longer than %d octets", ENVELOPE_MAX);
	return 0;
}

/* ---- public: qualification ------------------------------------------- */

/* The null sender "" is not a bare name: it must never become "@domain". */
int
addr_is_bare(const char *addr)
{
	int quoted = 0;

	if (*addr == '\0')
		return 0;
	for (const char *s = addr; *s != '\0'; s++) {
		if (quoted && *s == '\\' && s[1] != '\0')
			s++;
		else if (*s == '"')
			quoted = !quoted;
		else if (*s == '@' && !quoted)
			return 0;
	}
	return 1;
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
	size_t orig = out->len, from = 0;
	struct parser p;
	int rc = 0;

	if (domain == NULL || *domain == '\0' || parse(&p, value, NULL) < 0)
		return buf_puts(out, value);
	for (size_t i = 0; i < p.nmb && rc == 0; i++) {
		if (!p.mb[i].bare)
			continue;
		if (buf_append(out, value + from, p.mb[i].local_end - from) < 0 ||
		    buf_putc(out, '@') < 0 || buf_puts(out, domain) < 0)
			rc = -1;
		from = p.mb[i].local_end;
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
