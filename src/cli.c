/*
 * cli.c - the sendmail command line. Owns the translation of argv into a
 * struct request, read the way sendmail 8 and Postfix read it: getopt-style
 * clusters ("-tiv"), option arguments glued ("-fuser") or separate
 * ("-f user"), no permutation (the first non-option ends the options), and
 * the long tail of options that callers pass out of habit and that mean
 * nothing to a relay-only MTA. No I/O: strings in the request point into
 * argv, or at static constants for values we normalise.
 */
#include "autoconf.h"

#include <ctype.h>
#include <limits.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

enum arg_kind {
	ARG_NONE,       /* a flag; the cluster goes on */
	ARG_REQUIRED,   /* the rest of the cluster, else the next argument */
	ARG_GLUED,      /* optional, and only ever the rest of the cluster */
};

#define OPT_MAIL 0x1    /* the argument flows into the envelope or headers */

struct optspec {
	char letter;
	enum arg_kind arg;
	int flags;
};

/* Every option letter we accept; anything else is "illegal option". */
static const struct optspec optspecs[] = {
	{ 'A', ARG_REQUIRED, 0 },        /* -Ac / -Am: which .cf; ignored */
	{ 'B', ARG_REQUIRED, OPT_MAIL }, /* body type */
	{ 'C', ARG_REQUIRED, 0 },        /* config file */
	{ 'F', ARG_REQUIRED, OPT_MAIL }, /* full name */
	{ 'G', ARG_NONE, 0 },            /* relay submission: no fix-ups */
	{ 'I', ARG_NONE, 0 },            /* = -bi */
	{ 'L', ARG_REQUIRED, 0 },        /* syslog tag; ignored */
	{ 'N', ARG_REQUIRED, OPT_MAIL }, /* DSN notify */
	{ 'O', ARG_REQUIRED, 0 },        /* Option=value; ignored */
	{ 'R', ARG_REQUIRED, OPT_MAIL }, /* DSN ret */
	{ 'T', ARG_GLUED, 0 },           /* old queue timeout; ignored */
	{ 'U', ARG_NONE, 0 },            /* initial user submission; ignored */
	{ 'V', ARG_REQUIRED, OPT_MAIL }, /* DSN envid */
	{ 'X', ARG_REQUIRED, 0 },        /* traffic log file */
	{ 'b', ARG_REQUIRED, 0 },        /* mode */
	{ 'c', ARG_NONE, 0 },            /* hold expensive; ignored */
	{ 'd', ARG_GLUED, 0 },           /* debug flags; ignored */
	{ 'e', ARG_REQUIRED, 0 },        /* old form of -oe */
	{ 'f', ARG_REQUIRED, OPT_MAIL }, /* sender */
	{ 'h', ARG_REQUIRED, 0 },        /* hop count; checked, ignored */
	{ 'i', ARG_NONE, 0 },            /* a lone dot does not end input */
	{ 'm', ARG_NONE, 0 },            /* me too; ignored */
	{ 'n', ARG_NONE, 0 },            /* no aliasing; ignored */
	{ 'o', ARG_REQUIRED, 0 },        /* one-letter option + value */
	{ 'p', ARG_REQUIRED, 0 },        /* protocol[:host]; ignored */
	{ 'q', ARG_GLUED, 0 },           /* queue run */
	{ 'r', ARG_REQUIRED, OPT_MAIL }, /* old form of -f */
	{ 's', ARG_NONE, 0 },            /* save From lines; ignored */
	{ 't', ARG_NONE, 0 },            /* recipients from the headers */
	{ 'v', ARG_NONE, 0 },            /* verbose */
	{ 'x', ARG_NONE, 0 },            /* Postfix: ignored */
};

void
request_init(struct request *req)
{
	memset(req, 0, sizeof(*req));
	req->mode = MODE_SUBMIT;
	req->deliver = DELIVER_CONFIG;
}

enum mode
cli_personality(const char *argv0)
{
	const char *base;

	if (argv0 == NULL)
		return MODE_SUBMIT;
	base = strrchr(argv0, '/');
	base = base != NULL ? base + 1 : argv0;
	if (strcmp(base, "mailq") == 0)
		return MODE_LIST;
	if (strcmp(base, "newaliases") == 0)
		return MODE_NEWALIASES;
	if (strcmp(base, "runq") == 0)
		return MODE_QUEUE_RUN;
	return MODE_SUBMIT;
}

static const struct optspec *
find_option(int c)
{
	size_t i;

	for (i = 0; i < sizeof(optspecs) / sizeof(optspecs[0]); i++)
		if (optspecs[i].letter == c)
			return &optspecs[i];
	return NULL;
}

/* Untrusted text for an error message: escaped and cut short. */
static const char *
show(const char *s, char *out, size_t size)
{
	str_escape(s, strlen(s), out, size);
	return out;
}

/* sendmail's atobool(): empty or t/T/y/Y is true, anything else false. */
static int
atobool(const char *s)
{
	return *s == '\0' || strchr("tTyY", *s) != NULL;
}

/* -od<m>: only the first letter counts, as in sendmail ("-odbackground"). */
static int
set_deliver(struct request *req, const char *v, struct err *err)
{
	char tmp[16];

	switch (*v) {
	case '\0':  /* sendmail: a bare -od means interactive */
	case 'i':
		req->deliver = DELIVER_FOREGROUND;
		return 0;
	case 'b':
		req->deliver = DELIVER_BACKGROUND;
		return 0;
	case 'q':
	case 'd':
		req->deliver = DELIVER_QUEUE;
		return 0;
	}
	return err_set(err, ERR_USAGE, "-od: unknown delivery mode \"%s\" "
	    "(expected b, i, q or d)", show(v, tmp, sizeof(tmp)));
}

/* -oe<m> and -e<m>: first letter, bare means print (sendmail). */
static int
set_error_mode(struct request *req, const char *opt, const char *v,
    struct err *err)
{
	char tmp[16];

	if (*v == '\0') {
		req->error_mode = 'p';
		return 0;
	}
	if (strchr("mpqwe", *v) == NULL)
		return err_set(err, ERR_USAGE, "%s: unknown error mode \"%s\" "
		    "(expected m, p, q, w or e)", opt, show(v, tmp, sizeof(tmp)));
	req->error_mode = *v;
	return 0;
}

static int
opt_b(struct request *req, const char *v, struct err *err)
{
	char tmp[32];

	if (v[0] != '\0' && v[1] == '\0') {
		switch (v[0]) {
		case 'm': req->mode = MODE_SUBMIT; return 0;
		case 'p': req->mode = MODE_LIST; return 0;
		case 'i': req->mode = MODE_NEWALIASES; return 0;
		case 'P': req->mode = MODE_PRINT_CONFIG; return 0;
		case 's': req->mode = MODE_SMTP; return 0;
		case 'v': req->mode = MODE_VERIFY; return 0;
		case 'h':
		case 'H': req->mode = MODE_NOOP; return 0;
		case 'd':
		case 'D': req->mode = MODE_UNAVAILABLE; return 0;
		}
	}
	return err_set(err, ERR_USAGE, "unsupported mode -b%s",
	    show(v, tmp, sizeof(tmp)));
}

/* -o<letter><value>: sendmail's short options; only d, e and i matter. */
static int
opt_o(struct request *req, const char *v, struct err *err)
{
	switch (*v) {
	case 'd':
		return set_deliver(req, v + 1, err);
	case 'e':
		return set_error_mode(req, "-oe", v + 1, err);
	case 'i':
		req->ignore_dots = atobool(v + 1);
		return 0;
	}
	return 0;   /* -om, -o7, -o8, -oA..., -oL...: nothing to do here */
}

/* A -q interval: a bare number is minutes, as sendmail's convtime(, 'm'). */
static int
set_interval(struct request *req, const char *v, struct err *err)
{
	char tmp[32];
	long n;

	if (v[strspn(v, "0123456789")] == '\0') {
		if (parse_long(v, 0, LONG_MAX / 60, &n) == 0) {
			req->queue_interval = n * 60;
			return 0;
		}
	} else if (parse_duration(v, &n) == 0) {
		req->queue_interval = n;
		return 0;
	}
	return err_set(err, ERR_USAGE, "-q: bad queue interval \"%s\"",
	    show(v, tmp, sizeof(tmp)));
}

/* -q[f][<interval> | I<id> | R<site> | S<sender>]. */
static int
opt_q(struct request *req, const char *v, struct err *err)
{
	char tmp[32];

	req->mode = MODE_QUEUE_RUN;
	if (*v == 'f') {
		req->queue_force = 1;
		v++;
	}
	switch (*v) {
	case '\0':
		return 0;
	case 'I':
		if (v[1] == '\0')
			return err_set(err, ERR_USAGE, "-qI requires a queue id");
		req->queue_id = v + 1;
		return 0;
	case 'R':   /* sendmail: only this recipient domain; we run them all */
	case 'S':   /* sendmail: only this sender */
		return 0;
	}
	if (isdigit((unsigned char)*v))
		return set_interval(req, v, err);
	return err_set(err, ERR_USAGE, "-q%s is not supported",
	    show(v, tmp, sizeof(tmp)));
}

static int
opt_B(struct request *req, const char *v, struct err *err)
{
	if (strcasecmp(v, "7BIT") == 0)
		req->body_type = "7BIT";
	else if (strcasecmp(v, "8BITMIME") == 0)
		req->body_type = "8BITMIME";
	else
		return err_set(err, ERR_USAGE,
		    "-B: body type must be 7BIT or 8BITMIME");
	return 0;
}

/* -N never | success,failure,delay (RFC 3461 NOTIFY). */
static int
opt_N(struct request *req, const char *v, struct err *err)
{
	static const struct { const char *name; unsigned bit; } kw[] = {
		{ "never", NOTIFY_NEVER }, { "success", NOTIFY_SUCCESS },
		{ "failure", NOTIFY_FAILURE }, { "delay", NOTIFY_DELAY },
	};
	const char *p = v;
	unsigned mask = 0, bit;
	size_t n, i;

	for (;;) {
		n = strcspn(p, ",");
		for (bit = 0, i = 0; i < sizeof(kw) / sizeof(kw[0]); i++)
			if (strlen(kw[i].name) == n &&
			    strncasecmp(p, kw[i].name, n) == 0)
				bit = kw[i].bit;
		if (bit == 0)
			return err_set(err, ERR_USAGE, "-N: expected never or a "
			    "comma list of success, failure, delay");
		mask |= bit;
		if (p[n] == '\0')
			break;
		p += n + 1;
	}
	if ((mask & NOTIFY_NEVER) && mask != NOTIFY_NEVER)
		return err_set(err, ERR_USAGE, "-N: never must be alone");
	req->notify = v;
	req->notify_mask = mask;
	return 0;
}

static int
opt_R(struct request *req, const char *v, struct err *err)
{
	if (strcasecmp(v, "full") == 0)
		req->ret = "FULL";
	else if (strcasecmp(v, "hdrs") == 0)
		req->ret = "HDRS";
	else
		return err_set(err, ERR_USAGE, "-R: expected full or hdrs");
	return 0;
}

/* -V: must fit an ENVID= parameter: printable, <= 100 chars as xtext. */
static int
opt_V(struct request *req, const char *v, struct err *err)
{
	const unsigned char *p;
	size_t len = 0;

	for (p = (const unsigned char *)v; *p != '\0'; p++) {
		if (*p < 0x21 || *p > 0x7e)
			return err_set(err, ERR_USAGE, "-V: envelope id must be "
			    "printable ASCII without spaces");
		len += (*p == '+' || *p == '=') ? 3 : 1;
	}
	if (len == 0 || len > CLI_ENVID_MAX)
		return err_set(err, ERR_USAGE, "-V: envelope id must be 1 to "
		    "%d characters (xtext-encoded)", CLI_ENVID_MAX);
	req->envid = v;
	return 0;
}

static int
opt_A(const char *v, struct err *err)
{
	if (strcmp(v, "c") != 0 && strcmp(v, "m") != 0)
		return err_set(err, ERR_USAGE, "-A: expected -Ac or -Am");
	return 0;
}

static int
opt_h(const char *v, struct err *err)
{
	char tmp[32];
	long n;

	if (parse_long(v, 0, INT_MAX, &n) < 0)
		return err_set(err, ERR_USAGE, "-h: bad hop count \"%s\"",
		    show(v, tmp, sizeof(tmp)));
	return 0;
}

static int
opt_path(const char **dst, int c, const char *v, struct err *err)
{
	if (*v == '\0')
		return err_set(err, ERR_USAGE, "-%c: empty file name", c);
	*dst = v;
	return 0;
}

/* Apply one option; v is its argument (NULL for flags). */
static int
apply_option(struct request *req, int c, const char *v, struct err *err)
{
	switch (c) {
	case 'A': return opt_A(v, err);
	case 'B': return opt_B(req, v, err);
	case 'C': return opt_path(&req->config_path, c, v, err);
	case 'F': req->full_name = v; return 0;
	case 'G': req->no_fixups = 1; return 0;
	case 'I': req->mode = MODE_NEWALIASES; return 0;
	case 'N': return opt_N(req, v, err);
	case 'R': return opt_R(req, v, err);
	case 'V': return opt_V(req, v, err);
	case 'X': return opt_path(&req->log_path, c, v, err);
	case 'b': return opt_b(req, v, err);
	case 'e': return set_error_mode(req, "-e", v, err);
	case 'f':
	case 'r': req->sender = v; return 0;
	case 'h': return opt_h(v, err);
	case 'i': req->ignore_dots = 1; return 0;
	case 'o': return opt_o(req, v, err);
	case 'q': return opt_q(req, v, err);
	case 't': req->extract_rcpts = 1; return 0;
	case 'v':
		if (req->verbose < 100)
			req->verbose++;
		return 0;
	}
	return 0;   /* L O T U c d m n p s x: accepted, meaningless here */
}

static int
illegal_option(int c, struct err *err)
{
	if (c > 0x20 && c < 0x7f)
		return err_set(err, ERR_USAGE, "illegal option -- %c", c);
	return err_set(err, ERR_USAGE, "illegal option -- \\x%02x", c);
}

/*
 * One "-xyz" cluster at argv[*ip]. Leaves *ip on the next unread argument.
 * Special case from sendmail 8: a bare -q followed by an argument that
 * starts with a digit takes it as the interval ("-q 15m").
 */
static int
scan_cluster(int argc, char **argv, int *ip, struct request *req,
    struct err *err)
{
	const struct optspec *o;
	const char *p = argv[*ip] + 1, *v;
	int c;

	while (*p != '\0') {
		c = (unsigned char)*p++;
		if ((o = find_option(c)) == NULL)
			return illegal_option(c, err);
		v = NULL;
		if (o->arg == ARG_REQUIRED) {
			if (*p != '\0')
				v = p;
			else if (*ip + 1 < argc && argv[*ip + 1] != NULL)
				v = argv[++*ip];
			else
				return err_set(err, ERR_USAGE,
				    "option -%c requires an argument", c);
			p = "";
		} else if (o->arg == ARG_GLUED) {
			v = p;
			p = "";
			if (c == 'q' && *v == '\0' && *ip + 1 < argc &&
			    argv[*ip + 1] != NULL &&
			    isdigit((unsigned char)argv[*ip + 1][0]))
				v = argv[++*ip];
		}
		if ((o->flags & OPT_MAIL) && has_crlf(v))
			return err_set(err, ERR_USAGE,
			    "-%c: line break in argument", c);
		if (apply_option(req, c, v, err) < 0)
			return -1;
	}
	++*ip;
	return 0;
}

static int
check_lengths(int argc, char **argv, struct err *err)
{
	int i;

	for (i = 1; i < argc && argv[i] != NULL; i++)
		if (strnlen(argv[i], CLI_ARG_MAX + 1) > CLI_ARG_MAX)
			return err_set(err, ERR_USAGE, "argument %d is longer "
			    "than %d bytes", i, CLI_ARG_MAX);
	return 0;
}

/* relayq's own tools, each a long option that must come first. */
static const struct tool {
	const char *name;
	enum mode mode;
	int min, max;           /* operands; max -1: no limit */
	int all;                /* "ALL" alone means every entry */
	const char *operand;    /* for messages */
} tools[] = {
	{ "--show", MODE_SHOW, 1, -1, 0, "a queue id" },
	{ "--delete", MODE_DELETE, 1, -1, 1, "a queue id or ALL" },
	{ "--retry", MODE_RETRY, 1, -1, 0, "a queue id" },
	{ "--hold", MODE_HOLD, 1, -1, 1, "a queue id or ALL" },
	{ "--release", MODE_RELEASE, 1, -1, 1, "a queue id or ALL" },
	{ "--requeue", MODE_REQUEUE, 1, -1, 1, "a queue id or ALL" },
	{ "--summary", MODE_SUMMARY, 0, 0, 0, "no argument" },
	{ "--test", MODE_SELFTEST, 0, 1, 0, "at most one address" },
	{ "--deliver", MODE_DELIVER, 1, -1, 0, "a queue id" },
};

static const struct tool *
find_tool(const char *a)
{
	for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++)
		if (strcmp(a, tools[i].name) == 0)
			return &tools[i];
	return NULL;
}

/* Only -v (repeatable) and -C file may sit between a tool and its operands. */
static int
tool_option(int argc, char **argv, int *ip, const struct tool *t,
    struct request *req, struct err *err)
{
	char tmp[48];
	const char *a = argv[(*ip)++];

	if (a[1] == 'v' && a[1 + strspn(a + 1, "v")] == '\0') {
		req->verbose += (int)strlen(a + 1);
		if (req->verbose > 100)
			req->verbose = 100;
		return 0;
	}
	if (a[1] == 'C') {
		if (a[2] != '\0')
			return opt_path(&req->config_path, 'C', a + 2, err);
		if (*ip < argc && argv[*ip] != NULL)
			return opt_path(&req->config_path, 'C', argv[(*ip)++], err);
		return err_set(err, ERR_USAGE, "option -C requires an argument");
	}
	return err_set(err, ERR_USAGE, "%s: illegal option %s (only -v and -C "
	    "may follow it)", t->name, show(a, tmp, sizeof(tmp)));
}

/* "--show ID...": the tool, its options, its operands in req->rcpts. */
static int
parse_tool(int argc, char **argv, const struct tool *t, struct request *req,
    struct err *err)
{
	const char *a;
	int i = 2, n;

	req->mode = t->mode;
	while (i < argc && (a = argv[i]) != NULL && a[0] == '-' && a[1] != '\0') {
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (tool_option(argc, argv, &i, t, req, err) < 0)
			return -1;
	}
	req->rcpts = argv + i;
	for (n = 0; i + n < argc && argv[i + n] != NULL; n++)
		if (has_crlf(argv[i + n]))
			return err_set(err, ERR_USAGE, "%s: line break in "
			    "argument", t->name);
	req->nrcpts = n;
	if (n < t->min || (t->max >= 0 && n > t->max))
		return err_set(err, ERR_USAGE, "%s takes %s%s", t->name,
		    t->operand, t->max < 0 ? " (or several)" : "");
	for (int k = 0; k < n; k++) {
		if (strcmp(argv[i + k], "ALL") != 0)
			continue;
		if (!t->all)
			return err_set(err, ERR_USAGE, "%s does not take ALL",
			    t->name);
		if (n > 1)
			return err_set(err, ERR_USAGE, "%s: ALL must stand "
			    "alone", t->name);
	}
	return 0;
}

/* "--version" and "--help", only as the first and only argument. */
static int
long_option(int argc, char **argv, int i, struct request *req,
    struct err *err)
{
	char tmp[48];
	const char *a = argv[i];

	if (i == 1 && (strcmp(a, "--version") == 0 || strcmp(a, "--help") == 0)) {
		if (argc > 2)
			return err_set(err, ERR_USAGE, "%s takes no other "
			    "arguments", a);
		req->mode = a[2] == 'v' ? MODE_VERSION : MODE_HELP;
		return 0;
	}
	if (find_tool(a) != NULL)
		return err_set(err, ERR_USAGE, "%s must be the first argument", a);
	return err_set(err, ERR_USAGE, "illegal option %s",
	    show(a, tmp, sizeof(tmp)));
}

/* Name of a mode that takes no recipient arguments, else NULL. */
static const char *
rcptless_mode(enum mode m)
{
	switch (m) {
	case MODE_LIST:         return "queue listing (-bp, mailq)";
	case MODE_NEWALIASES:   return "alias rebuild (-bi, newaliases)";
	case MODE_QUEUE_RUN:    return "queue run (-q, runq)";
	case MODE_PRINT_CONFIG: return "-bP";
	case MODE_SMTP:         return "SMTP mode (-bs)";
	case MODE_VERSION:      return "--version";
	case MODE_HELP:         return "--help";
	default:                return NULL;
	}
}

/* What argv alone can tell is wrong once every option is read. */
static int
check_request(const struct request *req, struct err *err)
{
	const char *name;
	int i;

	for (i = 0; i < req->nrcpts; i++)
		if (has_crlf(req->rcpts[i]))
			return err_set(err, ERR_USAGE,
			    "recipient: line break in argument");
	if ((name = rcptless_mode(req->mode)) != NULL && req->nrcpts > 0)
		return err_set(err, ERR_USAGE, "%s takes no recipient arguments",
		    name);
	if ((req->mode == MODE_SUBMIT || req->mode == MODE_VERIFY) &&
	    req->nrcpts == 0 && !req->extract_rcpts)
		return err_set(err, ERR_USAGE, "no recipients given: name them "
		    "as arguments or use -t");
	if (req->mode == MODE_QUEUE_RUN && req->queue_id != NULL &&
	    req->queue_interval > 0)
		return err_set(err, ERR_USAGE,
		    "-qI cannot be combined with a queue interval");
	return 0;
}

int
cli_parse(int argc, char **argv, enum mode start_mode, struct request *req,
    struct err *err)
{
	const struct tool *t;
	const char *a;
	int i = 1;

	request_init(req);
	req->mode = start_mode;
	if (argc < 1 || argv == NULL || argv[0] == NULL) {
		static char *empty[] = { NULL };

		req->rcpts = argv != NULL ? argv : empty;
		return check_request(req, err);
	}
	if (check_lengths(argc, argv, err) < 0)
		return -1;
	if (argc > 1 && argv[1] != NULL && (t = find_tool(argv[1])) != NULL)
		return parse_tool(argc, argv, t, req, err);
	while (i < argc && (a = argv[i]) != NULL) {
		if (a[0] != '-' || a[1] == '\0')
			break;      /* first non-option: recipients follow */
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (a[1] == '-') {
			if (long_option(argc, argv, i, req, err) < 0)
				return -1;
			i++;
			continue;
		}
		if (scan_cluster(argc, argv, &i, req, err) < 0)
			return -1;
	}
	req->rcpts = argv + i;
	req->nrcpts = 0;
	while (i + req->nrcpts < argc && argv[i + req->nrcpts] != NULL)
		req->nrcpts++;
	return check_request(req, err);
}
