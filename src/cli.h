/*
 * cli.h - the sendmail command line, parsed into a struct request. No I/O
 * beyond reading argv; nothing here opens a file.
 */
#ifndef RELAYQ_CLI_H
#define RELAYQ_CLI_H

#include "util.h"

/* Longest single argument accepted; anything longer is a usage error. */
#define CLI_ARG_MAX 8192
/* Longest -V envelope id, counted xtext-encoded as it goes on the wire. */
#define CLI_ENVID_MAX 100

/* -N keywords, as a mask (struct request.notify_mask). */
#define NOTIFY_NEVER   0x1
#define NOTIFY_SUCCESS 0x2
#define NOTIFY_FAILURE 0x4
#define NOTIFY_DELAY   0x8

enum mode {
	MODE_SUBMIT,          /* -bm (default): read a message, queue it */
	MODE_LIST,            /* -bp, mailq */
	MODE_NEWALIASES,      /* -bi, newaliases */
	MODE_QUEUE_RUN,       /* -q, -q15m, runq */
	MODE_PRINT_CONFIG,    /* -bP */
	MODE_SMTP,            /* -bs */
	MODE_VERIFY,          /* -bv */
	MODE_NOOP,            /* -bh, -bH: nothing to do, exit 0 */
	MODE_UNAVAILABLE,     /* -bd, -bD: we never receive mail */
	MODE_VERSION,         /* --version */
	MODE_HELP,            /* --help */
	/* relayq's own tools: a long option as the first argument */
	MODE_SHOW,            /* --show ID... */
	MODE_DELETE,          /* --delete ID... | ALL */
	MODE_RETRY,           /* --retry ID... */
	MODE_HOLD,            /* --hold ID... | ALL */
	MODE_RELEASE,         /* --release ID... | ALL */
	MODE_REQUEUE,         /* --requeue ID... | ALL (from failed/) */
	MODE_SUMMARY,         /* --summary */
	MODE_SELFTEST,        /* --test [ADDRESS] */
	MODE_DELIVER,         /* --deliver ID...: deliver what was just queued
	                         (how the front end hands -odi and background
	                         delivery to relayq-deliver) */
};

enum deliver_opt {
	DELIVER_CONFIG,       /* not given: use the config's delivery */
	DELIVER_BACKGROUND,   /* -odb */
	DELIVER_FOREGROUND,   /* -odi */
	DELIVER_QUEUE,        /* -odq, -odd */
};

struct request {
	enum mode mode;
	int extract_rcpts;        /* -t */
	int ignore_dots;          /* -i, -oi */
	int verbose;              /* -v (repeatable) */
	int no_fixups;            /* -G */
	const char *sender;       /* -f / -r, raw; NULL if not given */
	const char *full_name;    /* -F */
	const char *config_path;  /* -C */
	enum deliver_opt deliver; /* -od* */
	char error_mode;          /* -oe[mpqwe]; 0 if not given */
	const char *body_type;    /* -B: "7BIT" or "8BITMIME" (normalised) */
	const char *notify;       /* -N, as given (validated) */
	const char *ret;          /* -R: "FULL" or "HDRS" (normalised) */
	const char *envid;        /* -V: printable ASCII, no space */
	long queue_interval;      /* -q<time> in seconds; 0 = one run;
	                             a bare number means minutes (sendmail) */
	int queue_force;          /* -qf: every entry, due or not */
	const char *queue_id;     /* -qI<id> */
	char **rcpts;             /* remaining arguments (each may be a list);
	                             argv + first, so rcpts[nrcpts] == NULL;
	                             for the tools: their operands (ids, "ALL",
	                             the --test address) */
	int nrcpts;
	const char *log_path;     /* -X file: names a file, so main drops privilege */
	unsigned notify_mask;     /* -N as NOTIFY_* bits; 0 if not given */
};

/* Zero *req and set the defaults (MODE_SUBMIT, DELIVER_CONFIG). */
void request_init(struct request *req);

/*
 * Parse argv the way sendmail does: glued or separate option arguments,
 * bundled flags, "--". start_mode comes from the program name (mailq ->
 * MODE_LIST, newaliases -> MODE_NEWALIASES, runq -> MODE_QUEUE_RUN).
 * Options real callers pass but that mean nothing here are accepted and
 * ignored. ERR_USAGE with a one-line message otherwise. Strings in *req
 * point into argv (or are static constants for normalised values).
 * Also rejects what no mode can use: recipients in a mode that takes none,
 * no recipients and no -t when submitting or verifying.
 *
 * relayq's tools (--show, --delete, --retry, --hold, --release, --requeue,
 * --summary, --test) must be the first argument; only -v and -C may
 * follow before their operands, whose number is checked here (their
 * syntax, such as a queue id's, is not).
 */
int cli_parse(int argc, char **argv, enum mode start_mode, struct request *req,
              struct err *err);

/* Mode implied by the basename of argv[0]. */
enum mode cli_personality(const char *argv0);

#endif
