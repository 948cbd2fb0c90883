/*
 * smtp.h - the SMTP client (RFC 5321): one session to one smarthost, able
 * to carry many transactions. An explicit state machine with a state-name
 * table used in traces. Never includes queue.h: it reports results in its
 * own structs and relay.c turns them into queue state.
 */
#ifndef RELAYQ_SMTP_H
#define RELAYQ_SMTP_H

#include "config.h"
#include "util.h"

struct tls_client;
struct conn;

#define SMTP_REPLY_LINES_MAX 100   /* lines in one reply, by default */
#define SMTP_REPLY_LINE_MAX 2048   /* octets in one reply line, by default */
#define SMTP_TEXT_MAX 1024         /* reply text kept (escaped) */

/* DSN NOTIFY bits: the same values as queue.h's NOTIFY_* (not included). */
#define SMTP_NOTIFY_NEVER   0x1
#define SMTP_NOTIFY_SUCCESS 0x2
#define SMTP_NOTIFY_FAILURE 0x4
#define SMTP_NOTIFY_DELAY   0x8

/* Service extensions the server advertised (smtp_extensions()). */
#define SMTP_EXT_STARTTLS      0x01
#define SMTP_EXT_AUTH          0x02
#define SMTP_EXT_SIZE          0x04
#define SMTP_EXT_8BITMIME      0x08
#define SMTP_EXT_SMTPUTF8      0x10
#define SMTP_EXT_DSN           0x20
#define SMTP_EXT_ENHANCED      0x40    /* ENHANCEDSTATUSCODES */
#define SMTP_EXT_PIPELINING    0x80

struct smtp_reply {
	int code;                  /* 3 digits; 0 if none was received */
	char enh[16];              /* enhanced status "5.1.1", or "" */
	char text[SMTP_TEXT_MAX];  /* "550 5.1.1 <x>: user unknown", escaped */
};

struct smtp_params {
	const struct smarthost *sh;
	const char *helo_name;     /* our hostname for EHLO/HELO */
	struct tls_client *tls;    /* NULL when sh->tls == TLS_NONE */
	const char *secret;        /* password or OAuth token; NULL = no AUTH */
	/* Bounds on what the server may send (config max_reply_lines and
	 * max_reply_line); 0 = the defaults above. A reply over either
	 * ends the session with ERR_PROTO. */
	int max_reply_lines;       /* lines in one reply */
	int max_reply_line;        /* octets in one line, without CRLF */
	struct conn *conn;         /* made by smtp_connect (smtp_open owns it
	                              from then on), or NULL: connect here */
};

/* One message to send. Arrays have nrcpts entries. */
struct smtp_msg {
	const char *sender;        /* "" = null sender */
	int eightbit;              /* BODY=8BITMIME if advertised */
	int smtputf8;              /* SMTPUTF8 needed */
	const char *ret;           /* DSN RET= "FULL"/"HDRS" or NULL */
	const char *envid;         /* DSN ENVID= (xtext-encoded here) or NULL */
	size_t nrcpts;
	const char *const *rcpts;
	const unsigned *notify;    /* NOTIFY_* bits as in queue.h, or NULL */
	const char *const *orcpt;  /* original recipients, or NULL */
	int datafd;                /* wire form: CRLF, dot-stuffed, no final "." */
	unsigned long long size;
};

struct smtp_session;

/*
 * Connect, read the greeting, EHLO (HELO fallback), STARTTLS and EHLO again
 * when configured (never a plaintext fallback), AUTH when a secret is
 * given. ERR_TEMP for anything that may work later or on another
 * smarthost (connection, timeout, 4xx, TLS verification, AUTH refused),
 * ERR_PROTO for a broken server. err->msg is suitable for mailq.
 */
int smtp_open(const struct smtp_params *p, struct smtp_session **out,
              struct err *err);
/*
 * The TCP connection alone, with the smarthost's timeouts, for
 * smtp_params.conn: a caller can prepare the TLS context while the server
 * makes its greeting. ERR_TEMP as smtp_open.
 */
struct conn *smtp_connect(const struct smarthost *sh, struct err *err);

/*
 * One transaction: MAIL, RCPT for each recipient, DATA, the message, ".".
 * rcpt[i] receives each recipient's reply; when DATA or the final "." fails,
 * that reply is copied to every recipient that had been accepted. Returns 0
 * when the session is still usable for the next message (whatever the
 * recipients' results), -1 when it is not (connection lost, timeout,
 * protocol error); then err says why and recipients without a reply have
 * code 0. A message over the server's SIZE is refused locally with 552.
 * No other transaction may be under way.
 */
int smtp_send(struct smtp_session *s, const struct smtp_msg *m,
              struct smtp_reply *rcpt, struct err *err);

/*
 * The same transaction in three steps, so that a queue run overlaps
 * messages on one session. RFC 2920 section 3.1 lets the message content
 * open a pipelined group: the next message's commands go out while the
 * server is still taking the last one, and one round trip per message is
 * saved. For each message, in this order:
 *
 *   smtp_start(next)  local checks; with PIPELINING, MAIL, RCPT..., DATA
 *                     are sent (no reply is read); without, nothing is
 *   smtp_end()        the reply to the last message's "." (if one is due)
 *   smtp_data()       the replies to next's commands (or the commands one
 *                     by one), then its content and "."; the reply to
 *                     that is read by the next smtp_end()
 *
 * m and rcpt must stay valid until the smtp_end() that follows smtp_data().
 * Each returns 0 or -1 as smtp_send does; a step with nothing to do (the
 * message was refused locally, no "." is due) returns 0.
 */
int smtp_start(struct smtp_session *s, const struct smtp_msg *m,
               struct smtp_reply *rcpt, struct err *err);
int smtp_data(struct smtp_session *s, struct err *err);
int smtp_end(struct smtp_session *s, struct err *err);
/* Neither broken nor closed: smtp_start may be called. */
int smtp_usable(const struct smtp_session *s);

/* RSET between transactions when the last one was not completed. */
int smtp_rset(struct smtp_session *s, struct err *err);
/* VRFY addr; the reply is returned whatever its code. */
int smtp_vrfy(struct smtp_session *s, const char *addr, struct smtp_reply *r,
              struct err *err);
/* "host[addr]:port" of the peer. */
const char *smtp_peer(const struct smtp_session *s);
const char *smtp_tls_info(const struct smtp_session *s);
/* The connection under the session (the self-test reads its TLS peer). */
struct conn *smtp_conn(const struct smtp_session *s);
/* QUIT (best effort) and free. */
void smtp_close(struct smtp_session *s);

/* SMTP_EXT_* bits from the last EHLO (after STARTTLS: the second one). */
unsigned smtp_extensions(const struct smtp_session *s);
/* The SIZE the server advertised; 0 when none or no fixed limit. */
unsigned long long smtp_size_limit(const struct smtp_session *s);

/*
 * May AUTH be sent on this connection? Always over TLS; in clear only
 * when the smarthost is configured with tls = none and is a loopback host.
 */
int smtp_auth_allowed(const struct smarthost *sh, int encrypted);

/*
 * Parse one reply line ("250-PIPELINING", "550 5.1.1 text"): code,
 * continuation flag, enhanced code. -1 on malformed lines. Exposed for
 * tests and fuzzing.
 */
int smtp_parse_line(const char *line, int *code, int *more, char *enh,
                    size_t enhsize, const char **text);

#endif
