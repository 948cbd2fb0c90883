/*
 * config.c - reads relayq.conf with libconfuse and turns it into a validated,
 * read-only struct config. The only file that includes <confuse.h>.
 *
 * libconfuse 3.3 miscounts lines after comments and rejects a comment inside
 * a list, so the file is read here, its comments are removed (newlines kept)
 * and the rest goes to cfg_parse_buf(). Each value is checked as it is
 * parsed, so an error carries the line; a smarthost section is checked as a
 * whole when it closes. Environment references ("${VAR}") are not expanded:
 * a value means what it says.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <confuse.h>

#include "config.h"

#ifndef SPOOLDIR
#define SPOOLDIR "/var/spool/relayq"
#endif

#define CONFIG_MAX_FILE   (1024 * 1024)  /* a config is a few KB */
#define CONFIG_MAX_VALUE  4096
#define CONFIG_MAX_COUNT  1000000L
#define CONFIG_MAX_NAME   64             /* smarthost section title */
#define CONFIG_MAX_LIST   100            /* entries in retry or auth */
#define CONFIG_MAX_HOSTS  100            /* smarthost sections */
#define CONFIG_LINE_MIN   512            /* RFC 5321 4.5.3.1: command, reply line */
#define CONFIG_LINE_MAX   65536          /* max_smtp_line, max_reply_line */
#define CONFIG_LINES_MIN  10             /* an EHLO reply needs a few */
#define CONFIG_LINES_MAX  10000          /* max_reply_lines */

/* Where each key was last set, for checks that span keys. */
struct keyline {
	const cfg_t *sec;
	const char *key;
	int line;
};

/* State of one config_load(); libconfuse callbacks carry no user pointer. */
struct loadctx {
	const char *path;
	struct err *err;
	int failed;
	struct keyline *lines;
	size_t nlines, caplines;
	char scratch[160];       /* canonical value handed back to libconfuse */
};

static struct loadctx *ctx;

/* One value being checked: the input, a canonical form, the reason. */
struct check {
	const char *in;
	char canon[160];
	char why[512];
};

static const char *const auth_mechs[] = {
	"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "XOAUTH2", "OAUTHBEARER",
	NULL,
};

/* --- error reporting ----------------------------------------------------- */

/* "smarthost NAME: " inside a section, "" at top level. */
static void
sec_prefix(const cfg_t *cfg, char *buf, size_t size)
{
	char esc[CONFIG_MAX_NAME * 4 + 8];

	buf[0] = '\0';
	if (cfg != NULL && cfg->title != NULL) {
		/* Not yet checked: the name is validated when the '}' is read. */
		str_escape(cfg->title, strlen(cfg->title), esc, sizeof(esc));
		/* A cut-short name in an error message is acceptable. */
		(void)str_fmt(buf, size, "%s %s: ", cfg->name, esc);
	}
}

/* Record the first error only: later ones are usually its echoes. */
static int PRINTF_LIKE(3, 4)
fail_at(const cfg_t *sec, int line, const char *fmt, ...)
{
	char msg[768], pre[128];
	va_list ap;

	if (ctx == NULL || ctx->failed)
		return -1;
	ctx->failed = 1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sec_prefix(sec, pre, sizeof(pre));
	if (line > 0)
		err_set(ctx->err, ERR_CONFIG, "%s:%d: %s%s", ctx->path, line,
		    pre, msg);
	else
		err_set(ctx->err, ERR_CONFIG, "%s: %s%s", ctx->path, pre, msg);
	return -1;
}

/* Turn libconfuse's own messages into ours (same file:line: key: form). */
static void PRINTF_LIKE(2, 0)
on_cfg_error(cfg_t *cfg, const char *fmt, va_list ap)
{
	static const struct {
		const char *theirs, *before, *after;
	} map[] = {
		{ "no such option '%s'", "", ": unknown key" },
		{ "found duplicate title '%s'", "smarthost ",
		    ": duplicate name (each section needs its own)" },
		{ "unexpected token '%s'", "syntax error at \"", "\"" },
		{ "missing equal sign after option '%s'", "", ": missing '='" },
		{ "missing title for section '%s'", "",
		    ": missing name (write: smarthost NAME { ... })" },
		{ "missing opening brace for section '%s'", "", ": missing '{'" },
		{ "attempt to append to non-list option '%s'", "",
		    ": '+=' only works on lists" },
	};
	char msg[512], esc[256];
	va_list cp;

	if (strcmp(fmt, "premature end of file") == 0) {
		fail_at(NULL, cfg->line,
		    "unexpected end of file (a value or a '}' is missing)");
		return;
	}
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (strcmp(fmt, map[i].theirs) == 0) {
			const char *arg;

			va_copy(cp, ap);
			arg = va_arg(cp, const char *);
			va_end(cp);
			str_escape(arg ? arg : "", arg ? strlen(arg) : 0, esc,
			    sizeof(esc));
			/* The duplicate title is reported at top level. */
			fail_at(i == 1 ? NULL : cfg, cfg->line, "%s%s%s",
			    map[i].before, esc, map[i].after);
			return;
		}
	}
	vsnprintf(msg, sizeof(msg), fmt, ap);
	str_escape(msg, strlen(msg), esc, sizeof(esc));
	fail_at(cfg, cfg->line, "%s", esc);
}

/* Quote a value for a message: escaped and cut to a readable length. */
static const char *
shown(const char *v, char *buf, size_t size)
{
	str_escape(v, strlen(v), buf, size);
	return buf;
}

/* --- line bookkeeping ---------------------------------------------------- */

static void
note_line(const cfg_t *sec, const char *key, int line)
{
	struct keyline *kl;

	if (line <= 0)
		return;         /* a built-in default, not the file */
	for (size_t i = 0; i < ctx->nlines; i++) {
		kl = &ctx->lines[i];
		if (kl->sec == sec && strcmp(kl->key, key) == 0) {
			kl->line = line;
			return;
		}
	}
	if (ctx->nlines == ctx->caplines) {
		ctx->caplines = ctx->caplines ? ctx->caplines * 2 : 32;
		ctx->lines = xreallocarray(ctx->lines, ctx->caplines,
		    sizeof(*ctx->lines));
	}
	kl = &ctx->lines[ctx->nlines++];
	kl->sec = sec;
	kl->key = key;
	kl->line = line;
}

/* Line where key was set in sec, else fallback. */
static int
line_of(const cfg_t *sec, const char *key, int fallback)
{
	for (size_t i = 0; i < ctx->nlines; i++)
		if (ctx->lines[i].sec == sec &&
		    strcmp(ctx->lines[i].key, key) == 0)
			return ctx->lines[i].line;
	return fallback;
}

/* --- value checks -------------------------------------------------------- */

static int PRINTF_LIKE(2, 3)
why(struct check *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
	return -1;
}

static int
valid_hostname(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > 253 || s[0] == '.' || s[0] == '-' ||
	    s[len - 1] == '.' || strstr(s, "..") != NULL)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.')
			return 0;
	return 1;
}

/* Never echoes the value: it also checks the password. */
static int
check_text(struct check *c)
{
	if (c->in[0] == '\0')
		return why(c, "empty value (leave the key out instead)");
	return 0;
}

static int
check_hostname(struct check *c)
{
	char esc[160];

	if (!valid_hostname(c->in))
		return why(c, "bad name \"%s\" (use letters, digits, '-' and '.')",
		    shown(c->in, esc, sizeof(esc)));
	return 0;
}

/* A smarthost: DNS name, IPv4 literal or IPv6 literal (brackets dropped). */
static int
check_host(struct check *c)
{
	const char *s = c->in;
	size_t len = strlen(s);
	char esc[160];

	if (len > 2 && s[0] == '[' && s[len - 1] == ']') {
		if (len - 2 >= sizeof(c->canon))
			return why(c, "address too long");
		memcpy(c->canon, s + 1, len - 2);
		c->canon[len - 2] = '\0';
		s = c->canon;
	}
	if (strchr(s, ':') != NULL) {
		struct in6_addr a6;

		if (inet_pton(AF_INET6, s, &a6) != 1)
			return why(c, "bad IPv6 address \"%s\"",
			    shown(c->in, esc, sizeof(esc)));
		return 0;
	}
	if (!valid_hostname(s))
		return why(c, "bad host \"%s\" (use a DNS name or an IP address)",
		    shown(c->in, esc, sizeof(esc)));
	return 0;
}

static int
check_path(struct check *c)
{
	char esc[160];

	if (c->in[0] != '/')
		return why(c, "\"%s\" is not an absolute path",
		    shown(c->in, esc, sizeof(esc)));
	return 0;
}

/* A command is run without a shell's PATH search: name the program fully. */
static int
check_command(struct check *c)
{
	char esc[160];

	if (c->in[0] != '/')
		return why(c, "\"%s\" must start with the absolute path of a program",
		    shown(c->in, esc, sizeof(esc)));
	return 0;
}

static int
check_duration_any(struct check *c, int zero_ok)
{
	char esc[160];
	long secs;

	if (parse_duration(c->in, &secs) < 0)
		return why(c, "bad duration \"%s\" (use a number with s, m, h, d "
		    "or w)", shown(c->in, esc, sizeof(esc)));
	if (secs == 0 && !zero_ok)
		return why(c, "bad duration \"%s\" (must be more than 0)",
		    shown(c->in, esc, sizeof(esc)));
	return 0;
}

static int
check_duration(struct check *c)
{
	return check_duration_any(c, 0);
}

/* A lifetime of 0 is legal: bounce at the first temporary failure. */
static int
check_duration0(struct check *c)
{
	return check_duration_any(c, 1);
}

static int
check_size_any(struct check *c, int zero_ok)
{
	unsigned long long bytes;
	char esc[160];

	if (parse_size(c->in, &bytes) < 0 || (bytes == 0 && !zero_ok))
		return why(c, "bad size \"%s\" (use a number of bytes with an "
		    "optional K, M or G%s)", shown(c->in, esc, sizeof(esc)),
		    zero_ok ? "; 0 = no limit" : ", more than 0");
	return 0;
}

static int
check_size0(struct check *c)
{
	return check_size_any(c, 1);
}

static int
check_size(struct check *c)
{
	return check_size_any(c, 0);
}

static int
check_count(struct check *c)
{
	char esc[160];
	long n;

	if (parse_long(c->in, 1, CONFIG_MAX_COUNT, &n) < 0)
		return why(c, "bad number \"%s\" (use 1 to %ld)",
		    shown(c->in, esc, sizeof(esc)), CONFIG_MAX_COUNT);
	return 0;
}

/* A number from lo to hi; why says where the bounds come from. */
static int
check_range(struct check *c, long lo, long hi, const char *because)
{
	char esc[160];
	long n;

	if (parse_long(c->in, lo, hi, &n) < 0)
		return why(c, "bad number \"%s\" (use %ld to %ld%s)",
		    shown(c->in, esc, sizeof(esc)), lo, hi, because);
	return 0;
}

/* Line lengths in octets, without the CRLF; RFC 5321 allows 512. */
static int
check_line_length(struct check *c)
{
	return check_range(c, CONFIG_LINE_MIN, CONFIG_LINE_MAX,
	    "; RFC 5321 lines may be 512 octets long");
}

static int
check_reply_lines(struct check *c)
{
	return check_range(c, CONFIG_LINES_MIN, CONFIG_LINES_MAX, "");
}

/* Parallel sessions of a queue run; providers limit concurrent logins. */
static int
check_sessions(struct check *c)
{
	return check_range(c, 1, SESSIONS_MAX, "");
}

static int
check_port(struct check *c)
{
	char esc[160];
	long n;

	if (parse_long(c->in, 1, 65535, &n) < 0)
		return why(c, "bad port \"%s\" (use 1 to 65535)",
		    shown(c->in, esc, sizeof(esc)));
	return 0;
}

/* Case-insensitive choice among words; canon gets the listed spelling. */
static int
check_enum(struct check *c, const char *const *words, const char *hint)
{
	char esc[160];

	for (size_t i = 0; words[i] != NULL; i++) {
		if (strcasecmp(c->in, words[i]) == 0) {
			str_copy(c->canon, words[i], sizeof(c->canon));
			return 0;
		}
	}
	return why(c, "bad value \"%s\" (use %s)", shown(c->in, esc, sizeof(esc)),
	    hint);
}

static const char *const delivery_words[] = {
	"background", "foreground", "queue", NULL,
};
static const char *const tls_words[] = { "starttls", "smtps", "none", NULL };
static const char *const tls_version_words[] = { "1.2", "1.3", NULL };

static int
check_delivery(struct check *c)
{
	return check_enum(c, delivery_words, "background, foreground or queue");
}

static int
check_tls(struct check *c)
{
	return check_enum(c, tls_words, "starttls, smtps or none");
}

static int
check_tls_version(struct check *c)
{
	return check_enum(c, tls_version_words, "1.2 or 1.3");
}

static int
check_log(struct check *c)
{
	static const char *const words[] = { "syslog", "stderr", NULL };
	char esc[160];

	if (c->in[0] == '/')
		return 0;
	if (check_enum(c, words, "") == 0)
		return 0;
	return why(c, "bad value \"%s\" (use syslog, stderr or an absolute "
	    "file path)", shown(c->in, esc, sizeof(esc)));
}

/* sha256:AB:CD... or sha256:abcd... -> sha256:abcd... (64 hex digits). */
static int
check_fingerprint(struct check *c)
{
	const char *p = c->in;
	char *o = c->canon + 7;
	size_t n = 0;
	char esc[200];

	if (strncasecmp(p, "sha256:", 7) != 0)
		goto bad;
	p += 7;
	memcpy(c->canon, "sha256:", 7);
	while (n < 64) {
		if (!isxdigit((unsigned char)p[0]) || !isxdigit((unsigned char)p[1]))
			goto bad;
		*o++ = (char)tolower((unsigned char)p[0]);
		*o++ = (char)tolower((unsigned char)p[1]);
		n += 2;
		p += 2;
		if (n < 64 && *p == ':')
			p++;
	}
	*o = '\0';
	if (*p != '\0')
		goto bad;
	return 0;
bad:
	return why(c, "bad fingerprint \"%s\" (use sha256: and 64 hex digits, "
	    "colons between byte pairs allowed)", shown(c->in, esc, sizeof(esc)));
}

static int
check_auth(struct check *c)
{
	char esc[160];

	for (size_t i = 0; auth_mechs[i] != NULL; i++) {
		if (strcasecmp(c->in, auth_mechs[i]) == 0) {
			str_copy(c->canon, auth_mechs[i], sizeof(c->canon));
			return 0;
		}
	}
	return why(c, "unknown mechanism \"%s\" (use PLAIN, LOGIN, CRAM-MD5, "
	    "SCRAM-SHA-256, XOAUTH2 or OAUTHBEARER)",
	    shown(c->in, esc, sizeof(esc)));
}

/* Every string key and its check; names are unique across sections. */
static const struct keydef {
	const char *name;
	int (*check)(struct check *);
} keydefs[] = {
	{ "hostname", check_hostname },
	{ "domain", check_hostname },
	{ "queue_dir", check_path },
	{ "aliases", check_path },
	{ "queue_lifetime", check_duration0 },
	{ "retry", check_duration },
	{ "max_message_size", check_size0 },
	{ "max_header_size", check_size },
	{ "max_headers", check_count },
	{ "max_recipients", check_count },
	{ "max_alias_expansions", check_count },
	{ "max_smtp_line", check_line_length },
	{ "max_reply_lines", check_reply_lines },
	{ "max_reply_line", check_line_length },
	{ "delivery", check_delivery },
	{ "log", check_log },
	{ "sender_rewrite", check_text },
	{ "host", check_host },
	{ "port", check_port },
	{ "tls", check_tls },
	{ "tls_ca_file", check_path },
	{ "tls_ca_path", check_path },
	{ "tls_fingerprint", check_fingerprint },
	{ "tls_min_version", check_tls_version },
	{ "tls_cert_file", check_path },
	{ "tls_key_file", check_path },
	{ "username", check_text },
	{ "password", check_text },
	{ "password_file", check_path },
	{ "password_command", check_command },
	{ "auth", check_auth },
	{ "timeout", check_duration },
	{ "connect_timeout", check_duration },
	{ "sessions", check_sessions },
};

static const struct keydef *
keydef_find(const char *name)
{
	for (size_t i = 0; i < sizeof(keydefs) / sizeof(keydefs[0]); i++)
		if (strcmp(keydefs[i].name, name) == 0)
			return &keydefs[i];
	return NULL;
}

static int
has_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

/* libconfuse parse callback for every string value (lists: per element). */
static int
on_value(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	const struct keydef *kd = keydef_find(opt->name);
	struct check c;

	note_line(cfg, opt->name, cfg->line);
	if (kd == NULL || value == NULL)
		return fail_at(cfg, cfg->line, "%s: internal error: no check",
		    opt->name);
	if (has_ctl(value))
		return fail_at(cfg, cfg->line, "%s: value contains a control "
		    "character (CR, LF, NUL, tab...)", opt->name);
	if (strlen(value) > CONFIG_MAX_VALUE)
		return fail_at(cfg, cfg->line, "%s: value longer than %d bytes",
		    opt->name, CONFIG_MAX_VALUE);
	if (cfg_opt_size(opt) > CONFIG_MAX_LIST)
		return fail_at(cfg, cfg->line, "%s: more than %d entries",
		    opt->name, CONFIG_MAX_LIST);
	c.in = value;
	c.canon[0] = '\0';
	c.why[0] = '\0';
	if (kd->check(&c) < 0)
		return fail_at(cfg, cfg->line, "%s: %s", opt->name, c.why);
	if (c.canon[0] != '\0') {
		str_copy(ctx->scratch, c.canon, sizeof(ctx->scratch));
		*(const char **)result = ctx->scratch;
	} else {
		*(const char **)result = value;
	}
	return 0;
}

static int
on_bool(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	static const char *const yes[] = { "true", "yes", "on", NULL };
	static const char *const no[] = { "false", "no", "off", NULL };
	char esc[160];

	note_line(cfg, opt->name, cfg->line);
	for (size_t i = 0; value != NULL && yes[i] != NULL; i++) {
		if (strcasecmp(value, yes[i]) == 0) {
			*(int *)result = 1;
			return 0;
		}
		if (strcasecmp(value, no[i]) == 0) {
			*(int *)result = 0;
			return 0;
		}
	}
	return fail_at(cfg, cfg->line, "%s: bad value \"%s\" (use true or false)",
	    opt->name, shown(value ? value : "", esc, sizeof(esc)));
}

/* --- section checks ------------------------------------------------------ */

static int
valid_section_name(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > CONFIG_MAX_NAME)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("-_.", *s))
			return 0;
	return 1;
}

static int
sec_is_set(cfg_t *sec, const char *key)
{
	return cfg_getstr(sec, key) != NULL;
}

static int
check_secrets(cfg_t *sec, int endline)
{
	static const char *const src[] = {
		"password", "password_file", "password_command",
	};
	const char *first = NULL, *last = NULL;
	int nset = 0, lastline = 0;

	for (size_t i = 0; i < 3; i++) {
		int l;

		if (!sec_is_set(sec, src[i]))
			continue;
		nset++;
		l = line_of(sec, src[i], endline);
		if (first == NULL)
			first = src[i];
		if (last == NULL || l >= lastline) {
			last = src[i];
			lastline = l;
		}
	}
	if (nset > 1)
		return fail_at(sec, lastline, "%s: only one of password, "
		    "password_file and password_command may be set", last);
	if (nset == 1 && !sec_is_set(sec, "username"))
		return fail_at(sec, line_of(sec, first, endline),
		    "%s: a password needs a username", first);
	if (nset == 0 && sec_is_set(sec, "username"))
		return fail_at(sec, line_of(sec, "username", endline),
		    "username: needs one of password, password_file or "
		    "password_command");
	if (cfg_size(sec, "auth") > 0 && !sec_is_set(sec, "username"))
		return fail_at(sec, line_of(sec, "auth", endline),
		    "auth: needs a username and a password source");
	return 0;
}

/* Never send a password in clear except to this very machine. */
static int
check_cleartext(cfg_t *sec, int endline)
{
	const char *tls = cfg_getstr(sec, "tls"), *host = cfg_getstr(sec, "host");
	char esc[160];

	if (strcmp(tls, "none") != 0 || !(sec_is_set(sec, "password") ||
	    sec_is_set(sec, "password_file") || sec_is_set(sec, "password_command")))
		return 0;
	if (host_is_loopback(host))
		return 0;
	return fail_at(sec, line_of(sec, "tls", endline), "tls: \"none\" would "
	    "send the password in clear to %s, which is not a loopback address "
	    "(use starttls or smtps)", shown(host, esc, sizeof(esc)));
}

static int
check_client_cert(cfg_t *sec, int endline)
{
	int cert = sec_is_set(sec, "tls_cert_file");
	int key = sec_is_set(sec, "tls_key_file");

	if (cert && !key)
		return fail_at(sec, line_of(sec, "tls_cert_file", endline),
		    "tls_cert_file: needs tls_key_file as well");
	if (key && !cert)
		return fail_at(sec, line_of(sec, "tls_key_file", endline),
		    "tls_key_file: needs tls_cert_file as well");
	return 0;
}

/* Validate callback for a smarthost section, run when its '}' is read. */
static int
on_smarthost(cfg_t *cfg, cfg_opt_t *opt)
{
	cfg_t *sec = cfg_opt_getnsec(opt, cfg_opt_size(opt) - 1);
	int endline = cfg->line;
	char esc[160];

	if (sec == NULL)
		return fail_at(NULL, endline, "smarthost: internal error");
	if (cfg_opt_size(opt) > CONFIG_MAX_HOSTS)
		return fail_at(NULL, endline, "smarthost: more than %d sections",
		    CONFIG_MAX_HOSTS);
	if (!valid_section_name(sec->title))
		return fail_at(NULL, endline, "smarthost: bad name \"%s\" (use up "
		    "to %d letters, digits, '-', '_' and '.')",
		    shown(sec->title, esc, sizeof(esc)), CONFIG_MAX_NAME);
	if (!sec_is_set(sec, "host"))
		return fail_at(sec, endline, "host: is required");
	if (check_secrets(sec, endline) < 0 || check_cleartext(sec, endline) < 0 ||
	    check_client_cert(sec, endline) < 0)
		return -1;
	return 0;
}

/* --- reading the file ---------------------------------------------------- */

/* Characters of an unquoted libconfuse word. */
static int
is_word_char(int ch)
{
	return ch != '\0' && strchr(" \t\r\n#\"'={}()+,*", ch) == NULL;
}

static int
strip_error(int line, const char *what)
{
	return fail_at(NULL, line, "%s", what);
}

/*
 * Copy text to out without comments (#..., //... and slash-star blocks
 * outside quotes) but with every newline, so line numbers stay right. Also
 * refuse NUL bytes and unterminated strings, and neutralise "${" so that
 * libconfuse does not expand environment variables.
 */
static int
strip_comments(const char *in, size_t len, struct buf *out)
{
	enum { NORMAL, DQ, SQ } st = NORMAL;
	int line = 1, start = 0, inword = 0;
	size_t i = 0;

	while (i < len) {
		char ch = in[i];
		char next = i + 1 < len ? in[i + 1] : '\0';

		if (ch == '\0')
			return strip_error(line, "NUL byte in the file");
		if (st == NORMAL && (ch == '#' ||
		    (!inword && ch == '/' && next == '/'))) {
			while (i < len && in[i] != '\n' && in[i] != '\0')
				i++;
			continue;       /* a NUL is refused on the next turn */
		}
		if (st == NORMAL && !inword && ch == '/' && next == '*') {
			start = line;
			for (i += 2; i < len && !(in[i] == '*' && i + 1 < len &&
			    in[i + 1] == '/'); i++) {
				if (in[i] == '\n') {
					buf_putc(out, '\n');
					line++;
				}
			}
			if (i >= len)
				return strip_error(start, "comment not closed");
			i += 2;
			continue;
		}
		if (ch == '$' && next == '{' && st != SQ) {
			if (st == NORMAL)
				return strip_error(line, "\"${\" outside quotes: "
				    "environment variables are not expanded");
			buf_putc(out, '\\');
		} else if (ch == '\\' && st == DQ && i + 1 < len) {
			buf_putc(out, ch);
			ch = in[++i];
			if (ch == '\0')
				return strip_error(line, "NUL byte in the file");
		} else if (ch == '\\' && st == SQ && (next == '\\' || next == '\'')) {
			buf_putc(out, ch);
			ch = in[++i];
		} else if (ch == '"' && st != SQ) {
			st = st == DQ ? NORMAL : DQ;
			start = line;
		} else if (ch == '\'' && st != DQ) {
			st = st == SQ ? NORMAL : SQ;
			start = line;
		}
		if (ch == '\n')
			line++;
		inword = st == NORMAL && is_word_char(ch);
		buf_putc(out, ch);
		i++;
	}
	if (st != NORMAL)
		return strip_error(start, "string not closed (missing quote)");
	return 0;
}

static int
read_config(const char *path, struct buf *text)
{
	struct stat sb;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
		return err_sys(ctx->err, ERR_CONFIG, "%s: cannot open", path);
	if (fstat(fd, &sb) < 0) {
		err_sys(ctx->err, ERR_CONFIG, "%s: cannot stat", path);
		close(fd);
		return -1;
	}
	if (!S_ISREG(sb.st_mode)) {
		close(fd);
		return err_set(ctx->err, ERR_CONFIG, "%s: not a regular file", path);
	}
	if (read_file_capped(fd, text, CONFIG_MAX_FILE) < 0) {
		if (errno == EFBIG)
			err_set(ctx->err, ERR_CONFIG, "%s: larger than %d bytes",
			    path, CONFIG_MAX_FILE);
		else
			err_sys(ctx->err, ERR_CONFIG, "%s: cannot read", path);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* --- building struct config ---------------------------------------------- */

static char *
dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

/* This host's FQDN: the canonical name of gethostname(), else that name. */
static char *
default_hostname(void)
{
	struct addrinfo hints, *res = NULL;
	char name[256];
	char *out = NULL;

	if (gethostname(name, sizeof(name)) < 0)
		return NULL;
	name[sizeof(name) - 1] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_flags = AI_CANONNAME;
	if (getaddrinfo(name, NULL, &hints, &res) == 0 && res != NULL) {
		if (res->ai_canonname && valid_hostname(res->ai_canonname))
			out = xstrdup(res->ai_canonname);
		freeaddrinfo(res);
	}
	return out ? out : xstrdup(name);
}

static long
get_duration(cfg_t *sec, const char *key, unsigned int i)
{
	long secs = 0;

	parse_duration(cfg_getnstr(sec, key, i), &secs);
	return secs;
}

static unsigned long long
get_size(cfg_t *sec, const char *key)
{
	unsigned long long bytes = 0;

	parse_size(cfg_getstr(sec, key), &bytes);
	return bytes;
}

static long
get_long(cfg_t *sec, const char *key)
{
	long n = 0;

	parse_long(cfg_getstr(sec, key), 1, LONG_MAX, &n);
	return n;
}

static int
index_of(const char *const *words, const char *s)
{
	for (int i = 0; words[i] != NULL; i++)
		if (strcmp(words[i], s) == 0)
			return i;
	return 0;
}

static void
build_smarthost(cfg_t *sec, struct smarthost *sh)
{
	static const int ports[] = { 587, 465, 25 };
	const char *port = cfg_getstr(sec, "port");
	long n;

	sh->name = xstrdup(sec->title);
	sh->host = xstrdup(cfg_getstr(sec, "host"));
	sh->tls = (enum tls_mode)index_of(tls_words, cfg_getstr(sec, "tls"));
	sh->port = ports[sh->tls];
	if (port != NULL && parse_long(port, 1, 65535, &n) == 0)
		sh->port = (int)n;
	sh->tls_verify = cfg_getbool(sec, "tls_verify") ? 1 : 0;
	sh->tls_session_cache = cfg_getbool(sec, "tls_session_cache") ? 1 : 0;
	sh->tls_ca_file = dup_or_null(cfg_getstr(sec, "tls_ca_file"));
	sh->tls_ca_path = dup_or_null(cfg_getstr(sec, "tls_ca_path"));
	sh->tls_fingerprint = dup_or_null(cfg_getstr(sec, "tls_fingerprint"));
	sh->tls_min_version = xstrdup(cfg_getstr(sec, "tls_min_version"));
	sh->tls_cert_file = dup_or_null(cfg_getstr(sec, "tls_cert_file"));
	sh->tls_key_file = dup_or_null(cfg_getstr(sec, "tls_key_file"));
	sh->username = dup_or_null(cfg_getstr(sec, "username"));
	sh->password = dup_or_null(cfg_getstr(sec, "password"));
	sh->password_file = dup_or_null(cfg_getstr(sec, "password_file"));
	sh->password_command = dup_or_null(cfg_getstr(sec, "password_command"));
	for (unsigned int i = 0; i < cfg_size(sec, "auth"); i++) {
		const char *m = cfg_getnstr(sec, "auth", i);

		if (!strlist_has_ci(&sh->auth, m))
			strlist_add(&sh->auth, m);
	}
	sh->timeout = get_duration(sec, "timeout", 0);
	sh->connect_timeout = get_duration(sec, "connect_timeout", 0);
	sh->sessions = (int)get_long(sec, "sessions");
}

static int
build_config(cfg_t *cfg, struct config *c)
{
	unsigned int n = cfg_size(cfg, "retry");

	if (n == 0)
		return fail_at(NULL, 0, "retry: the list is empty (give at least "
		    "one interval)");
	c->hostname = dup_or_null(cfg_getstr(cfg, "hostname"));
	if (c->hostname == NULL) {
		c->hostname = default_hostname();
		if (c->hostname == NULL || !valid_hostname(c->hostname)) {
			char esc[300];

			return fail_at(NULL, 0, "hostname: this host's name \"%s\" "
			    "is not usable; set hostname", shown(c->hostname ?
			    c->hostname : "", esc, sizeof(esc)));
		}
	}
	c->domain = xstrdup(cfg_getstr(cfg, "domain") ? cfg_getstr(cfg, "domain")
	    : c->hostname);
	c->queue_dir = xstrdup(cfg_getstr(cfg, "queue_dir"));
	c->aliases = xstrdup(cfg_getstr(cfg, "aliases"));
	c->queue_lifetime = get_duration(cfg, "queue_lifetime", 0);
	c->retry = xreallocarray(NULL, n, sizeof(*c->retry));
	for (unsigned int i = 0; i < n; i++)
		c->retry[i] = get_duration(cfg, "retry", i);
	c->nretry = n;
	c->max_message_size = get_size(cfg, "max_message_size");
	c->delivery = (enum delivery_mode)index_of(delivery_words,
	    cfg_getstr(cfg, "delivery"));
	c->log = xstrdup(cfg_getstr(cfg, "log"));
	c->sender_rewrite = dup_or_null(cfg_getstr(cfg, "sender_rewrite"));
	c->sender_from_header = cfg_getbool(cfg, "sender_from_header") ? 1 : 0;
	c->max_header_size = get_size(cfg, "max_header_size");
	c->max_headers = get_long(cfg, "max_headers");
	c->max_recipients = get_long(cfg, "max_recipients");
	c->max_alias_expansions = get_long(cfg, "max_alias_expansions");
	c->max_smtp_line = get_long(cfg, "max_smtp_line");
	c->max_reply_lines = get_long(cfg, "max_reply_lines");
	c->max_reply_line = get_long(cfg, "max_reply_line");

	c->nsmarthosts = cfg_size(cfg, "smarthost");
	c->smarthosts = xcalloc(c->nsmarthosts, sizeof(*c->smarthosts));
	for (size_t i = 0; i < c->nsmarthosts; i++)
		build_smarthost(cfg_getnsec(cfg, "smarthost", (unsigned int)i),
		    &c->smarthosts[i]);
	return 0;
}

/* libconfuse keeps its own copy of the password; wipe it before freeing. */
static void
wipe_cfg_secrets(cfg_t *cfg)
{
	for (unsigned int i = 0; i < cfg_size(cfg, "smarthost"); i++) {
		char *pw = cfg_getstr(cfg_getnsec(cfg, "smarthost", i), "password");

		if (pw != NULL)
			secure_zero(pw, strlen(pw));
	}
}

/* --- public -------------------------------------------------------------- */

int
config_load(const char *path, struct config **out, struct err *err)
{
	cfg_opt_t sh_opts[] = {
		CFG_STR_CB("host", NULL, CFGF_NONE, on_value),
		CFG_STR_CB("port", NULL, CFGF_NONE, on_value),
		CFG_STR_CB("tls", "starttls", CFGF_NONE, on_value),
		CFG_BOOL_CB("tls_verify", cfg_true, CFGF_NONE, on_bool),
		CFG_BOOL_CB("tls_session_cache", cfg_true, CFGF_NONE, on_bool),
		CFG_STR_CB("tls_ca_file", NULL, CFGF_NONE, on_value),
		CFG_STR_CB("tls_ca_path", NULL, CFGF_NONE, on_value),
		CFG_STR_CB("tls_fingerprint", NULL, CFGF_NONE, on_value),
		CFG_STR_CB("tls_min_version", "1.2", CFGF_NONE, on_value),
		CFG_STR_CB("tls_cert_file", NULL, CFGF_NONE, on_value),
		CFG_STR_CB("tls_key_file", NULL, CFGF_NONE, on_value),
		CFG_STR_CB("username", NULL, CFGF_NONE, on_value),
		CFG_STR_CB("password", NULL, CFGF_NONE, on_value),
		CFG_STR_CB("password_file", NULL, CFGF_NONE, on_value),
		CFG_STR_CB("password_command", NULL, CFGF_NONE, on_value),
		CFG_STR_LIST_CB("auth", NULL, CFGF_NONE, on_value),
		CFG_STR_CB("timeout", "5m", CFGF_NONE, on_value),
		CFG_STR_CB("connect_timeout", "30s", CFGF_NONE, on_value),
		CFG_STR_CB("sessions", "1", CFGF_NONE, on_value),
		CFG_END()
	};
	cfg_opt_t opts[] = {
		CFG_STR_CB("hostname", NULL, CFGF_NONE, on_value),
		CFG_STR_CB("domain", NULL, CFGF_NONE, on_value),
		CFG_STR_CB("queue_dir", SPOOLDIR, CFGF_NONE, on_value),
		CFG_STR_CB("aliases", "/etc/aliases", CFGF_NONE, on_value),
		CFG_STR_CB("queue_lifetime", "5d", CFGF_NONE, on_value),
		CFG_STR_LIST_CB("retry", "{1m, 5m, 15m, 1h, 4h}", CFGF_NONE,
		    on_value),
		CFG_STR_CB("max_message_size", "50M", CFGF_NONE, on_value),
		CFG_STR_CB("delivery", "background", CFGF_NONE, on_value),
		CFG_STR_CB("log", "syslog", CFGF_NONE, on_value),
		CFG_STR_CB("sender_rewrite", NULL, CFGF_NONE, on_value),
		CFG_BOOL_CB("sender_from_header", cfg_false, CFGF_NONE, on_bool),
		CFG_STR_CB("max_header_size", "1M", CFGF_NONE, on_value),
		CFG_STR_CB("max_headers", "1000", CFGF_NONE, on_value),
		CFG_STR_CB("max_recipients", "1000", CFGF_NONE, on_value),
		CFG_STR_CB("max_alias_expansions", "1000", CFGF_NONE, on_value),
		CFG_STR_CB("max_smtp_line", "1024", CFGF_NONE, on_value),
		CFG_STR_CB("max_reply_lines", "100", CFGF_NONE, on_value),
		CFG_STR_CB("max_reply_line", "2048", CFGF_NONE, on_value),
		CFG_SEC("smarthost", sh_opts,
		    CFGF_TITLE | CFGF_MULTI | CFGF_NO_TITLE_DUPES),
		CFG_END()
	};
	struct loadctx lc;
	struct buf raw, text;
	struct config *c = NULL;
	cfg_t *cfg = NULL;
	int rc = -1;

	memset(&lc, 0, sizeof(lc));
	lc.path = path;
	lc.err = err;
	ctx = &lc;
	buf_init(&raw, 0);
	buf_init(&text, 0);
	if (read_config(path, &raw) < 0 ||
	    strip_comments(raw.data ? raw.data : "", raw.len, &text) < 0)
		goto out;
	if ((cfg = cfg_init(opts, CFGF_NONE)) == NULL) {
		err_set(err, ERR_INTERNAL, "%s: libconfuse initialisation failed",
		    path);
		goto out;
	}
	cfg_set_error_function(cfg, on_cfg_error);
	cfg_set_validate_func(cfg, "smarthost", on_smarthost);
	if (cfg_parse_buf(cfg, text.data ? text.data : "") != CFG_SUCCESS) {
		fail_at(NULL, cfg->line, "syntax error");
		goto out;
	}
	c = xcalloc(1, sizeof(*c));
	c->path = xstrdup(path);
	if (build_config(cfg, c) < 0)
		goto out;
	*out = c;
	c = NULL;
	rc = 0;
out:
	if (cfg != NULL) {
		wipe_cfg_secrets(cfg);
		cfg_free(cfg);
	}
	config_free(c);
	buf_wipe_free(&raw);
	buf_wipe_free(&text);
	free(lc.lines);
	ctx = NULL;
	return rc;
}

static void
free_secret(char *s)
{
	if (s != NULL)
		secure_zero(s, strlen(s));
	free(s);
}

void
config_wipe_secrets(struct config *cfg)
{
	for (size_t i = 0; i < cfg->nsmarthosts; i++) {
		free_secret(cfg->smarthosts[i].password);
		cfg->smarthosts[i].password = NULL;
	}
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->nsmarthosts; i++) {
		struct smarthost *sh = &cfg->smarthosts[i];

		free(sh->name);
		free(sh->host);
		free(sh->tls_ca_file);
		free(sh->tls_ca_path);
		free(sh->tls_fingerprint);
		free(sh->tls_min_version);
		free(sh->tls_cert_file);
		free(sh->tls_key_file);
		free(sh->username);
		free_secret(sh->password);
		free(sh->password_file);
		free(sh->password_command);
		strlist_free(&sh->auth);
	}
	free(cfg->smarthosts);
	free(cfg->path);
	free(cfg->hostname);
	free(cfg->domain);
	free(cfg->queue_dir);
	free(cfg->aliases);
	free(cfg->retry);
	free(cfg->log);
	free(cfg->sender_rewrite);
	free(cfg);
}

/* --- printing ------------------------------------------------------------ */

/* A double-quoted libconfuse string that reads back to exactly s. */
static void
print_quoted(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '\\' || *s == '"' || (*s == '$' && s[1] == '{'))
			fputc('\\', out);
		fputc(*s, out);
	}
	fputc('"', out);
}

static void
print_str(FILE *out, const char *ind, const char *key, const char *v)
{
	if (v == NULL) {
		fprintf(out, "%s# %s is not set\n", ind, key);
		return;
	}
	fprintf(out, "%s%s = ", ind, key);
	print_quoted(out, v);
	fputc('\n', out);
}

static void
print_duration(FILE *out, const char *ind, const char *key, long secs)
{
	char d[32];

	format_duration(secs, d, sizeof(d));
	fprintf(out, "%s%s = %s\n", ind, key, d);
}

static void
print_size(FILE *out, const char *key, unsigned long long n)
{
	static const char units[] = "GMK";
	static const unsigned long long mult[] = {
		1024ULL * 1024 * 1024, 1024ULL * 1024, 1024ULL,
	};

	for (size_t i = 0; n != 0 && i < 3; i++) {
		if (n % mult[i] == 0) {
			fprintf(out, "%s = %llu%c\n", key, n / mult[i], units[i]);
			return;
		}
	}
	fprintf(out, "%s = %llu\n", key, n);
}

static void
print_smarthost(FILE *out, const struct smarthost *sh)
{
	const char *ind = "    ";

	fprintf(out, "\nsmarthost %s {\n", sh->name);
	print_str(out, ind, "host", sh->host);
	fprintf(out, "%sport = %d\n", ind, sh->port);
	fprintf(out, "%stls = %s\n", ind, tls_words[sh->tls]);
	fprintf(out, "%stls_verify = %s\n", ind, sh->tls_verify ? "true" : "false");
	print_str(out, ind, "tls_ca_file", sh->tls_ca_file);
	print_str(out, ind, "tls_ca_path", sh->tls_ca_path);
	print_str(out, ind, "tls_fingerprint", sh->tls_fingerprint);
	print_str(out, ind, "tls_min_version", sh->tls_min_version);
	print_str(out, ind, "tls_cert_file", sh->tls_cert_file);
	print_str(out, ind, "tls_key_file", sh->tls_key_file);
	fprintf(out, "%stls_session_cache = %s\n", ind,
	    sh->tls_session_cache ? "true" : "false");
	print_str(out, ind, "username", sh->username);
	print_str(out, ind, "password", sh->password ? "********" : NULL);
	print_str(out, ind, "password_file", sh->password_file);
	print_str(out, ind, "password_command", sh->password_command);
	if (sh->auth.n == 0) {
		fprintf(out, "%s# auth is not set (best mechanism offered)\n", ind);
	} else {
		fprintf(out, "%sauth = {", ind);
		for (size_t i = 0; i < sh->auth.n; i++)
			fprintf(out, "%s %s", i ? "," : "", sh->auth.v[i]);
		fprintf(out, " }\n");
	}
	print_duration(out, ind, "timeout", sh->timeout);
	print_duration(out, ind, "connect_timeout", sh->connect_timeout);
	fprintf(out, "%ssessions = %d\n", ind, sh->sessions);
	fprintf(out, "}\n");
}

void
config_print(FILE *out, const struct config *cfg)
{
	fprintf(out, "# relayq configuration in effect (read from %s)\n",
	    cfg->path ? cfg->path : "?");
	print_str(out, "", "hostname", cfg->hostname);
	print_str(out, "", "domain", cfg->domain);
	print_str(out, "", "queue_dir", cfg->queue_dir);
	print_str(out, "", "aliases", cfg->aliases);
	print_duration(out, "", "queue_lifetime", cfg->queue_lifetime);
	fprintf(out, "retry = {");
	for (size_t i = 0; i < cfg->nretry; i++) {
		char d[32];

		format_duration(cfg->retry[i], d, sizeof(d));
		fprintf(out, "%s %s", i ? "," : "", d);
	}
	fprintf(out, " }\n");
	print_size(out, "max_message_size", cfg->max_message_size);
	fprintf(out, "delivery = %s\n", delivery_words[cfg->delivery]);
	print_str(out, "", "log", cfg->log);
	print_str(out, "", "sender_rewrite", cfg->sender_rewrite);
	fprintf(out, "sender_from_header = %s\n",
	    cfg->sender_from_header ? "true" : "false");
	print_size(out, "max_header_size", cfg->max_header_size);
	fprintf(out, "max_headers = %ld\n", cfg->max_headers);
	fprintf(out, "max_recipients = %ld\n", cfg->max_recipients);
	fprintf(out, "max_alias_expansions = %ld\n", cfg->max_alias_expansions);
	fprintf(out, "max_smtp_line = %ld\n", cfg->max_smtp_line);
	fprintf(out, "max_reply_lines = %ld\n", cfg->max_reply_lines);
	fprintf(out, "max_reply_line = %ld\n", cfg->max_reply_line);
	if (cfg->nsmarthosts == 0)
		fprintf(out, "\n# no smarthost: mail stays in the queue\n");
	for (size_t i = 0; i < cfg->nsmarthosts; i++)
		print_smarthost(out, &cfg->smarthosts[i]);
}

int
host_is_loopback(const char *host)
{
	char tmp[INET6_ADDRSTRLEN + 2];
	struct in_addr a4;
	struct in6_addr a6;
	size_t len;

	if (host == NULL)
		return 0;
	if (strcasecmp(host, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	len = strlen(host);
	if (len > 2 && host[0] == '[' && host[len - 1] == ']') {
		if (len - 2 >= sizeof(tmp))
			return 0;
		memcpy(tmp, host + 1, len - 2);
		tmp[len - 2] = '\0';
		host = tmp;
	}
	if (inet_pton(AF_INET6, host, &a6) != 1)
		return 0;
	if (IN6_IS_ADDR_LOOPBACK(&a6))
		return 1;
	return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}
