/*
 * aliases.c - the /etc/aliases file (parsing, lookup, nested expansion
 * with loop detection and a bound) and sender rewriting of local senders
 * in the From: header.
 *
 * File syntax, as sendmail and Postfix read it: "name: target, target";
 * a line starting with white space continues the previous entry; lines
 * whose first non-blank character is '#' are comments (also between
 * continuation lines); names are matched case-insensitively. Targets are
 * addresses ("admin@example.org", "\"Joe Q\"@example.org", "bob", "\\bob"
 * = no further aliasing). |command, /file and :include: targets cannot be
 * served by a relay-only MTA: they are recognised, reported and skipped.
 * The first of duplicate names wins.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "address.h"
#include "aliases.h"

#define IS_WSP(c) ((c) == ' ' || (c) == '\t')
#define SHOW_MAX 80        /* target text quoted in messages */

enum target_kind { TK_ADDR, TK_PIPE, TK_FILE, TK_INCLUDE };

static const char *const kind_names[] = {
	"address", "|command", "/file", ":include:",
};

struct target {
	enum target_kind kind;
	int literal;           /* "\name": not aliased again */
	char *text;            /* addr-spec, or the target as written (escaped) */
	int line;
};

struct alias {
	char *name;            /* normalized local part */
	int line;
	struct target *t;
	size_t nt;
};

struct problem {
	int line;
	int error;             /* else a warning */
	char *msg;             /* "FILE:LINE: ..." */
};

struct aliases {
	char *path;
	struct alias *v;
	size_t n, cap;
	struct problem *p;
	size_t np, pcap;
};

/* One logical entry: its text with continuation lines joined by a space,
 * and where each physical line starts in it. */
struct entry {
	struct buf text;
	size_t *off;
	int *lineno;
	size_t nseg, segcap;
};

/* Take ownership of msg, a whole "FILE:LINE: ..." line. */
static void
problem_push(struct aliases *a, int line, int error, char *msg)
{
	if (a->np == a->pcap) {
		a->pcap = a->pcap ? a->pcap * 2 : 16;
		a->p = xreallocarray(a->p, a->pcap, sizeof(*a->p));
	}
	a->p[a->np].line = line;
	a->p[a->np].error = error;
	a->p[a->np].msg = msg;
	a->np++;
}

static void problem_add(struct aliases *a, int line, int error,
    const char *fmt, ...) PRINTF_LIKE(4, 5);

static void
problem_add(struct aliases *a, int line, int error, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	problem_push(a, line, error, xasprintf("%s:%d: %s%s", a->path, line,
	    error ? "" : "warning: ", msg));
}

/* Printable, bounded copy of untrusted text for a message. */
static void
show(const char *s, size_t n, char *out, size_t size)
{
	str_escape(s, n, out, size < SHOW_MAX ? size : SHOW_MAX);
}

/* --- splitting address lists ---------------------------------------- */

/*
 * The end of the element starting at s[i]: the next comma outside quoted
 * strings, comments, angle brackets and domain literals, or n. *colon is
 * set when a ':' is seen at the top level (a group).
 */
static size_t
element_end(const char *s, size_t i, size_t n, int *colon)
{
	int quoted = 0, depth = 0, angle = 0, literal = 0;

	for (; i < n; i++) {
		char c = s[i];

		if (quoted || depth > 0 || literal) {
			if (c == '\\' && i + 1 < n)
				i++;
			else if (quoted && c == '"')
				quoted = 0;
			else if (literal && c == ']')
				literal = 0;
			else if (depth > 0 && c == '(')
				depth++;
			else if (depth > 0 && c == ')')
				depth--;
			continue;
		}
		switch (c) {
		case '"': quoted = 1; break;
		case '(': depth = 1; break;
		case '[': literal = 1; break;
		case '<': angle = 1; break;
		case '>': angle = 0; break;
		case ':':
			if (!angle && colon != NULL)
				*colon = 1;
			break;
		case ',':
			if (!angle)
				return i;
			break;
		}
	}
	return n;
}

/* Trim white space around s[*b..*e). */
static void
trim(const char *s, size_t *b, size_t *e)
{
	while (*b < *e && IS_WSP(s[*b]))
		(*b)++;
	while (*e > *b && IS_WSP(s[*e - 1]))
		(*e)--;
}

/* --- parsing -------------------------------------------------------- */

static void
entry_reset(struct entry *en)
{
	buf_reset(&en->text);
	en->nseg = 0;
}

static void
entry_add(struct entry *en, const char *s, size_t n, int line)
{
	if (en->nseg == en->segcap) {
		en->segcap = en->segcap ? en->segcap * 2 : 8;
		en->off = xreallocarray(en->off, en->segcap, sizeof(*en->off));
		en->lineno = xreallocarray(en->lineno, en->segcap,
		    sizeof(*en->lineno));
	}
	if (en->text.len > 0)
		buf_putc(&en->text, ' ');
	en->off[en->nseg] = en->text.len;
	en->lineno[en->nseg] = line;
	en->nseg++;
	buf_append(&en->text, s, n);
}

/* The physical line that offset off of the entry came from. */
static int
entry_line(const struct entry *en, size_t off)
{
	size_t i = 0;

	while (i + 1 < en->nseg && en->off[i + 1] <= off)
		i++;
	return en->lineno[i];
}

/* A target as written -> its kind, or -1 if it is not a special one. */
static int
special_kind(const char *s, size_t n)
{
	if (n > 0 && s[0] == '"') {
		s++;
		n--;
	}
	if (n > 0 && s[0] == '|')
		return TK_PIPE;
	if (n > 0 && s[0] == '/')
		return TK_FILE;
	if (n >= 9 && strncasecmp(s, ":include:", 9) == 0)
		return TK_INCLUDE;
	return -1;
}

/* One target; 0 if usable (added to al), -1 after reporting a problem. */
static int
parse_target(struct aliases *a, struct alias *al, const char *s, size_t n,
    int line)
{
	struct target t = { .line = line };
	struct strlist l = { 0 };
	struct err e = { .cls = ERR_OK };
	char *text, tmp[SHOW_MAX];
	int kind = special_kind(s, n), rc = 0;

	if (kind >= 0) {
		t.kind = (enum target_kind)kind;
		show(s, n, tmp, sizeof(tmp));
		t.text = xstrdup(tmp);
		goto add;
	}
	if (n > 0 && s[0] == '\\') {
		t.literal = 1;
		s++;
		n--;
	}
	text = xstrndup(s, n);
	if (addr_parse_list(text, &l, &e) < 0 || l.n != 1 ||
	    addr_validate(l.v[0], &e) < 0) {
		show(s, n, tmp, sizeof(tmp));
		if (l.n > 1)
			str_copy(e.msg, "more than one address", sizeof(e.msg));
		else if (l.n == 0 && e.cls == ERR_OK)
			str_copy(e.msg, "no address", sizeof(e.msg));
		problem_add(a, line, 1, "alias %s: bad target \"%s\": %s",
		    al->name, tmp, e.msg);
		rc = -1;
	} else {
		t.kind = TK_ADDR;
		t.text = xstrdup(l.v[0]);
	}
	free(text);
	strlist_free(&l);
	if (rc < 0)
		return -1;
add:
	al->t = xreallocarray(al->t, al->nt + 1, sizeof(*al->t));
	al->t[al->nt++] = t;
	return 0;
}

/* The name before the ':', normalized like an address; NULL if bad. */
static char *
parse_name(struct aliases *a, const char *s, size_t n, int line)
{
	struct strlist l = { 0 };
	struct err e;
	char *text = xstrndup(s, n), *name = NULL, tmp[SHOW_MAX];

	e.cls = ERR_OK;
	if (addr_parse_list(text, &l, &e) == 0 && l.n == 1 &&
	    addr_is_bare(l.v[0]) && addr_validate(l.v[0], &e) == 0) {
		name = xstrdup(l.v[0]);
	} else {
		show(s, n, tmp, sizeof(tmp));
		problem_add(a, line, 1, "bad alias name \"%s\"%s", tmp,
		    l.n == 1 && !addr_is_bare(l.v[0]) ?
		    ": names are local, without '@'" : "");
	}
	free(text);
	strlist_free(&l);
	return name;
}

/* Index of the ':' that ends the name (outside a quoted string), or n. */
static size_t
name_end(const char *s, size_t n)
{
	int quoted = 0;

	for (size_t i = 0; i < n; i++) {
		if (quoted && s[i] == '\\' && i + 1 < n)
			i++;
		else if (s[i] == '"')
			quoted = !quoted;
		else if (!quoted && s[i] == ':')
			return i;
	}
	return n;
}

static void
parse_entry(struct aliases *a, const struct entry *en)
{
	const char *s = en->text.data;
	size_t n = en->text.len, colon = name_end(s, n), nb = 0, ne = colon;
	struct alias al = { .line = en->lineno[0] };
	int bad = 0;

	if (colon == n) {
		problem_add(a, al.line, 1, "missing ':' after the alias name");
		return;
	}
	trim(s, &nb, &ne);
	if ((al.name = parse_name(a, s + nb, ne - nb, al.line)) == NULL)
		return;
	for (size_t i = colon + 1; i <= n;) {
		size_t e = element_end(s, i, n, NULL), b = i, te = e;

		trim(s, &b, &te);
		if (te > b && parse_target(a, &al, s + b, te - b,
		    entry_line(en, b)) < 0)
			bad = 1;
		i = e + 1;
	}
	if (al.nt == 0) {
		if (!bad)
			problem_add(a, al.line, 1, "alias %s has no target",
			    al.name);
		free(al.name);
		return;
	}
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 32;
		a->v = xreallocarray(a->v, a->cap, sizeof(*a->v));
	}
	a->v[a->n++] = al;
}

static void
alias_free(struct alias *al)
{
	for (size_t i = 0; i < al->nt; i++)
		free(al->t[i].text);
	free(al->t);
	free(al->name);
}

static int
alias_name_cmp(const void *x, const void *y)
{
	const struct alias *p = x, *q = y;

	return strcasecmp(p->name, q->name);
}

static int
alias_cmp(const void *x, const void *y)
{
	const struct alias *p = x, *q = y;
	int c = strcasecmp(p->name, q->name);

	return c != 0 ? c : (p->line > q->line) - (p->line < q->line);
}

/* Sort for lookup; later duplicates are reported and dropped. */
static void
finish(struct aliases *a)
{
	size_t o = 0;

	if (a->n > 1)
		qsort(a->v, a->n, sizeof(*a->v), alias_cmp);
	for (size_t i = 0; i < a->n; i++) {
		if (o > 0 && strcasecmp(a->v[o - 1].name, a->v[i].name) == 0) {
			problem_add(a, a->v[i].line, 0,
			    "duplicate alias %s (first at line %d), ignored",
			    a->v[i].name, a->v[o - 1].line);
			alias_free(&a->v[i]);
			continue;
		}
		a->v[o++] = a->v[i];
	}
	a->n = o;
}

struct aliases *
aliases_parse(const char *path, const char *text, size_t len)
{
	struct aliases *a = xcalloc(1, sizeof(*a));
	struct entry en;
	int line = 0;

	memset(&en, 0, sizeof(en));
	buf_init(&en.text, 0);
	a->path = xstrdup(path);
	for (size_t i = 0; i < len;) {
		const char *l = text + i, *nl = memchr(l, '\n', len - i);
		size_t n = nl ? (size_t)(nl - l) : len - i, k = 0;

		i += n + 1;
		line++;
		if (n > 0 && l[n - 1] == '\r')
			n--;
		while (k < n && IS_WSP(l[k]))
			k++;
		if (k == n || l[k] == '#')
			continue;          /* blank or comment: entries go on */
		if (memchr(l, '\0', n) != NULL) {
			problem_add(a, line, 1, "NUL byte in line, ignored");
			continue;
		}
		if (k > 0) {
			if (en.nseg == 0)
				problem_add(a, line, 1, "continuation line "
				    "without an alias before it");
			else
				entry_add(&en, l + k, n - k, line);
			continue;
		}
		if (en.nseg > 0)
			parse_entry(a, &en);
		entry_reset(&en);
		entry_add(&en, l, n, line);
	}
	if (en.nseg > 0)
		parse_entry(a, &en);
	buf_free(&en.text);
	free(en.off);
	free(en.lineno);
	finish(a);
	return a;
}

int
aliases_load(const char *path, struct aliases **out, struct err *err)
{
	struct buf b;
	int fd;

	*out = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		if (errno == ENOENT) {
			*out = aliases_parse(path, "", 0);
			return 0;
		}
		return err_sys(err, ERR_TEMP, "cannot open aliases file %s", path);
	}
	buf_init(&b, ALIASES_FILE_MAX);
	if (read_file_capped(fd, &b, ALIASES_FILE_MAX) < 0) {
		int too_big = errno == EFBIG || errno == ENOMEM;

		close(fd);
		buf_free(&b);
		if (too_big)
			return err_set(err, ERR_DATA, "aliases file %s is larger "
			    "than %d bytes", path, ALIASES_FILE_MAX);
		return err_sys(err, ERR_TEMP, "cannot read aliases file %s", path);
	}
	close(fd);
	*out = aliases_parse(path, b.data ? b.data : "", b.len);
	buf_free(&b);
	return 0;
}

void
aliases_free(struct aliases *a)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->n; i++)
		alias_free(&a->v[i]);
	for (size_t i = 0; i < a->np; i++)
		free(a->p[i].msg);
	free(a->v);
	free(a->p);
	free(a->path);
	free(a);
}

size_t
aliases_count(const struct aliases *a)
{
	return a ? a->n : 0;
}

size_t
aliases_errors(const struct aliases *a)
{
	size_t n = 0;

	for (size_t i = 0; a != NULL && i < a->np; i++)
		n += a->p[i].error ? 1 : 0;
	return n;
}

/* --- lookup and expansion ------------------------------------------- */

int
addr_is_local(const char *addr, const char *hostname)
{
	const char *at = strrchr(addr, '@');

	if (addr_is_bare(addr))
		return 1;
	return at != NULL && hostname != NULL && hostname[0] != '\0' &&
	    strcasecmp(at + 1, hostname) == 0;
}

static const struct alias *
lookup(const struct aliases *a, const char *addr, const char *hostname)
{
	struct alias key;
	const struct alias *found;
	const char *at;
	char *name;

	if (a == NULL || a->n == 0 || !addr_is_local(addr, hostname))
		return NULL;
	at = addr_is_bare(addr) ? NULL : strrchr(addr, '@');
	name = at ? xstrndup(addr, (size_t)(at - addr)) : xstrdup(addr);
	key.name = name;
	key.line = 0;
	found = bsearch(&key, a->v, a->n, sizeof(*a->v), alias_name_cmp);
	free(name);
	return found;
}

struct expansion {
	const struct aliases *a;
	const struct alias_ctx *ctx;
	struct strlist *out, *warnings;
	struct aliases *collect;        /* aliases_check: warnings go here */
	struct err *err;
	const char *orig;               /* the address being expanded */
	long count;
	const struct alias **stack;     /* aliases being expanded */
	size_t depth;
	int aliased;
};

static void xwarn(struct expansion *x, int line, const char *fmt, ...)
    PRINTF_LIKE(3, 4);

static void
xwarn(struct expansion *x, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (x->collect != NULL)
		problem_add(x->collect, line, 0, "%s", msg);
	else if (x->warnings != NULL)
		strlist_add_owned(x->warnings, xasprintf("%s:%d: %s",
		    x->a->path, line, msg));
}

static int
count_one(struct expansion *x)
{
	if (++x->count <= x->ctx->max_expansions || x->ctx->max_expansions <= 0)
		return 0;
	return err_set(x->err, ERR_DATA, "alias expansion of <%s> exceeds the "
	    "limit of %ld (max_alias_expansions)", x->orig,
	    x->ctx->max_expansions);
}

/* The address as it is, qualified. */
static int
emit(struct expansion *x, const char *addr)
{
	char q[ADDR_MAX + 1];

	if (count_one(x) < 0)
		return -1;
	if (addr_qualify(addr, x->ctx->domain, q, sizeof(q)) < 0)
		return err_set(x->err, ERR_DATA, "address too long: <%s>", addr);
	if (!strlist_has_ci(x->out, q))
		strlist_add(x->out, q);
	return 0;
}

static int
on_stack(const struct expansion *x, const struct alias *al)
{
	for (size_t i = 0; i < x->depth; i++)
		if (x->stack[i] == al)
			return 1;
	return 0;
}

static int
expand(struct expansion *x, const char *addr, int literal)
{
	const struct alias *al = literal ? NULL :
	    lookup(x->a, addr, x->ctx->hostname);
	int usable = 0;

	if (al == NULL)
		return emit(x, addr);
	if (on_stack(x, al)) {
		const struct alias *top = x->stack[x->depth - 1];

		if (top != al)
			xwarn(x, top->line, "alias %s: <%s> loops back to "
			    "alias %s, used as it is", top->name, addr, al->name);
		return emit(x, addr);
	}
	if (count_one(x) < 0)
		return -1;
	x->aliased = 1;
	x->stack = xreallocarray(x->stack, x->depth + 1, sizeof(*x->stack));
	x->stack[x->depth++] = al;
	for (size_t i = 0; i < al->nt; i++) {
		const struct target *t = &al->t[i];

		if (t->kind != TK_ADDR) {
			xwarn(x, t->line, "alias %s: %s target \"%s\" is not "
			    "supported by a relay-only MTA, skipped", al->name,
			    kind_names[t->kind], t->text);
			continue;
		}
		usable = 1;
		if (expand(x, t->text, t->literal) < 0)
			return -1;
	}
	x->depth--;
	if (!usable) {
		xwarn(x, al->line, "alias %s has no usable target, <%s> used "
		    "as it is", al->name, addr);
		return emit(x, addr);
	}
	return 0;
}

static int
run_expansion(struct expansion *x, const char *addr)
{
	int rc;

	x->orig = addr;
	rc = expand(x, addr, 0);
	free(x->stack);
	x->stack = NULL;
	return rc;
}

int
aliases_expand(const struct aliases *a, const char *addr,
    const struct alias_ctx *ctx, struct strlist *out, int *aliased,
    struct strlist *warnings, struct err *err)
{
	struct expansion x = {
		.a = a, .ctx = ctx, .out = out, .warnings = warnings, .err = err,
	};
	int rc = run_expansion(&x, addr);

	if (aliased != NULL)
		*aliased = x.aliased;
	return rc;
}

/* Line order; the same line's problems by text, so duplicates meet. */
static int
problem_cmp(const void *x, const void *y)
{
	const struct problem *p = x, *q = y;

	if (p->line != q->line)
		return (p->line > q->line) - (p->line < q->line);
	return strcmp(p->msg, q->msg);
}

size_t
aliases_check(const struct aliases *a, const struct alias_ctx *ctx,
    struct strlist *out)
{
	struct aliases all;
	size_t errors = 0;

	memset(&all, 0, sizeof(all));
	all.path = a->path;
	for (size_t i = 0; i < a->np; i++)
		problem_push(&all, a->p[i].line, a->p[i].error,
		    xstrdup(a->p[i].msg));
	for (size_t i = 0; i < a->n; i++) {
		struct strlist res = { 0 };
		struct err e;
		struct expansion x = {
			.a = a, .ctx = ctx, .out = &res, .collect = &all, .err = &e,
		};

		if (run_expansion(&x, a->v[i].name) < 0)
			problem_add(&all, a->v[i].line, 1, "alias %s: %s",
			    a->v[i].name, e.msg);
		strlist_free(&res);
	}
	if (all.np > 1)
		qsort(all.p, all.np, sizeof(*all.p), problem_cmp);
	for (size_t i = 0; i < all.np; i++) {
		if (i == 0 || strcmp(all.p[i].msg, all.p[i - 1].msg) != 0) {
			strlist_add(out, all.p[i].msg);
			errors += all.p[i].error ? 1 : 0;
		}
	}
	for (size_t i = 0; i < all.np; i++)
		free(all.p[i].msg);
	free(all.p);
	return errors;
}

/* --- sender rewriting ----------------------------------------------- */

/* The index of the '"' or ')' that closes the quoted string or (nested)
 * comment opening at s[i], or e - 1 when it is not closed. */
static size_t
skip_group(const char *s, size_t i, size_t e)
{
	int depth = 1;

	if (s[i] == '"') {
		for (i++; i < e; i++) {
			if (s[i] == '\\' && i + 1 < e)
				i++;
			else if (s[i] == '"')
				return i;
		}
		return e - 1;
	}
	for (i++; i < e; i++) {
		if (s[i] == '\\' && i + 1 < e)
			i++;
		else if (s[i] == '(')
			depth++;
		else if (s[i] == ')' && --depth == 0)
			return i;
	}
	return e - 1;
}

/* The inner text of the first top-level comment of s[b..e), unescaped. */
static void
comment_text(const char *s, size_t b, size_t e, struct buf *out)
{
	for (size_t i = b; i < e; i++) {
		size_t end;

		if (s[i] == '"') {
			i = skip_group(s, i, e);
			continue;
		}
		if (s[i] != '(')
			continue;
		end = skip_group(s, i, e);
		for (i++; i < end; i++) {
			if (s[i] == '\\' && i + 1 < end)
				i++;
			buf_putc(out, s[i]);
		}
		return;
	}
}

/* Top-level '<' and the '>' that closes it in s[b..e). */
static int
find_angle(const char *s, size_t b, size_t e, size_t *lt, size_t *gt)
{
	int in = 0;

	for (size_t i = b; i < e; i++) {
		if (s[i] == '"' || s[i] == '(') {
			i = skip_group(s, i, e);
		} else if (!in && s[i] == '<') {
			in = 1;
			*lt = i;
		} else if (in && s[i] == '>') {
			*gt = i;
			return 0;
		}
	}
	return -1;
}

/* A display name for "name <addr>": encoded-words as they are, else quoted. */
static void
put_display(struct buf *out, const char *name)
{
	if (strstr(name, "=?") != NULL && strpbrk(name, "\"\\(),:;<>@[]") == NULL) {
		buf_puts(out, name);
		return;
	}
	buf_putc(out, '"');
	for (; *name != '\0'; name++) {
		if (*name == '"' || *name == '\\')
			buf_putc(out, '\\');
		buf_putc(out, *name);
	}
	buf_putc(out, '"');
}

/* One mailbox s[b..e) (trimmed), rewritten or copied to out. */
static int
rewrite_mailbox(const char *s, size_t b, size_t e, const char *target,
    const char *hostname, struct buf *out)
{
	struct strlist l = { 0 };
	struct err err;
	char *text = xstrndup(s + b, e - b);
	size_t lt, gt;
	int local;

	local = e > b && addr_parse_list(text, &l, &err) == 0 && l.n == 1 &&
	    addr_is_local(l.v[0], hostname);
	free(text);
	strlist_free(&l);
	if (!local) {
		buf_append(out, s + b, e - b);
		return 0;
	}
	if (find_angle(s, b, e, &lt, &gt) == 0) {
		buf_append(out, s + b, lt + 1 - b);
		buf_puts(out, target);
		buf_append(out, s + gt, e - gt);
	} else {
		struct buf name;
		size_t nb = 0, ne;

		buf_init(&name, 0);
		comment_text(s, b, e, &name);
		ne = name.len;
		if (name.data != NULL)
			trim(name.data, &nb, &ne);
		if (ne > nb) {
			name.data[ne] = '\0';
			put_display(out, name.data + nb);
			buf_printf(out, " <%s>", target);
		} else {
			buf_puts(out, target);
		}
		buf_free(&name);
	}
	return 1;
}

int
sender_rewrite_from(const char *value, const char *target,
    const char *hostname, struct buf *out)
{
	size_t n = strlen(value);
	struct buf nv;
	int changed = 0, colon = 0;

	if (target == NULL || target[0] == '\0')
		return 0;
	buf_init(&nv, 0);
	for (size_t i = 0; i <= n;) {
		size_t e = element_end(value, i, n, &colon), b = i, te = e;

		if (colon)
			break;         /* a group: leave the value alone */
		trim(value, &b, &te);
		buf_append(&nv, value + i, b - i);
		changed |= rewrite_mailbox(value, b, te, target, hostname, &nv);
		buf_append(&nv, value + te, e - te);
		if (e < n)
			buf_putc(&nv, ',');
		i = e + 1;
	}
	changed = changed && !colon;
	if (changed)
		buf_append(out, nv.data, nv.len);
	buf_free(&nv);
	return changed;
}
