/*
 * smtpd.h - the -bs server side: an SMTP dialogue (RFC 5321 with
 * PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES and SMTPUTF8) on a pair
 * of descriptors, every message submitted into the queue through submit().
 * The same code serves a loopback listener run by systemd or inetd.
 */
#ifndef RELAYQ_SMTPD_H
#define RELAYQ_SMTPD_H

#include "config.h"
#include "util.h"

struct spool;

#define SMTPD_LINE_MAX 1024      /* a command: 512 (RFC 5321) + parameters;
                                    default of the config's max_smtp_line */
#define SMTPD_LINE_LIMIT 65536   /* the most max_smtp_line may be */
#define SMTPD_REPLY_MAX 512      /* one reply line, without CRLF */
#define SMTPD_MAX_ERRORS 20      /* refused commands before we hang up */
#define SMTPD_TIMEOUT 300        /* seconds of client silence (RFC 5321) */

enum smtpd_verb {
	SMTPD_HELO, SMTPD_EHLO, SMTPD_MAIL, SMTPD_RCPT, SMTPD_DATA,
	SMTPD_RSET, SMTPD_NOOP, SMTPD_VRFY, SMTPD_HELP, SMTPD_QUIT,
};

enum smtpd_body { SMTPD_BODY_NONE, SMTPD_BODY_7BIT, SMTPD_BODY_8BITMIME };

/* One parsed command. */
struct smtpd_cmd {
	enum smtpd_verb verb;
	/* HELO/EHLO: the name; MAIL/RCPT: the addr-spec ("" = <>);
	 * VRFY, NOOP, HELP: the argument as given */
	char arg[SMTPD_LINE_LIMIT + 1];
	unsigned long long size;   /* MAIL SIZE=; 0 when not given */
	enum smtpd_body body;      /* MAIL BODY= */
	int smtputf8;              /* MAIL SMTPUTF8 */
};

/*
 * Parse one command line (its line end removed). Returns 0 with *cmd
 * filled, or the code of the reply to send instead (500 unknown command,
 * bad characters or a line over SMTPD_LINE_LIMIT, 501 syntax, 502 not
 * implemented, 552 SIZE over max_size, 555 unsupported parameter), with
 * the whole reply line in reply. max_size 0 means no limit. No I/O; the
 * session applies the configured max_smtp_line before calling it.
 */
int smtpd_parse(const char *line, size_t len, unsigned long long max_size,
                struct smtpd_cmd *cmd, char *reply, size_t replysize);

struct smtpd_opts {
	int infd, outfd;
	long timeout;              /* seconds; 0 = SMTPD_TIMEOUT */
	int no_fixups;             /* -G */
	const char *full_name;     /* -F */
	struct spool *spool;       /* the way into the queue; NULL = direct */
	/* Called after each message is queued: delivery as configured. */
	void (*queued)(const char *qid, void *arg);
	void *arg;
};

/*
 * One session, from the 220 greeting to QUIT or end of input. Each
 * message is answered "250 2.0.0 Ok: queued as ID" only after submit()
 * made it durable; input that ends inside a message queues nothing. A
 * command line longer than cfg->max_smtp_line octets without its line end
 * (0: SMTPD_LINE_MAX) is answered 500, discarded and counted as an error.
 * Returns 0 when the session ended normally (QUIT or end of input between
 * commands, also after too many errors or a timeout, which are answered
 * with 421), -1 when the client went away mid-message or could not be
 * written to (err says why). *nqueued counts the messages queued.
 */
int smtpd_session(const struct config *cfg, const struct smtpd_opts *o,
                  unsigned *nqueued, struct err *err);

#endif
