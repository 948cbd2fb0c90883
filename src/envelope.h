/*
 * envelope.h - a queue entry's envelope in memory: sender, recipients with
 * their delivery state and DSN parameters, and the attempt history; and its
 * strict text form (written to and read from env/ID; the format is
 * documented in envelope.c).
 */
#ifndef RELAYQ_ENVELOPE_H
#define RELAYQ_ENVELOPE_H

#include <time.h>
#include "util.h"

#define QID_LEN 17                 /* 8 hex seconds, 5 hex usec, 4 hex random */
#define ENVELOPE_VERSION 1
#define ENVELOPE_MAX (1024 * 1024) /* largest envelope file accepted */

enum rcpt_status { RCPT_PENDING, RCPT_SENT, RCPT_FAILED };

/* DSN NOTIFY flags (RFC 3461); 0 means "not given". */
#define NOTIFY_NEVER   0x1
#define NOTIFY_SUCCESS 0x2
#define NOTIFY_FAILURE 0x4
#define NOTIFY_DELAY   0x8

enum dsn_ret { RET_DEFAULT, RET_FULL, RET_HDRS };

struct rcpt {
	char *addr;                /* qualified envelope address */
	char *orcpt;               /* as the caller wrote it, or NULL */
	enum rcpt_status status;
	unsigned notify;           /* NOTIFY_* bits */
	char *dsn;                 /* last enhanced status "4.4.1", or NULL */
	char *error;               /* last error for this recipient, or NULL */
};

struct envelope {
	char id[QID_LEN + 1];
	time_t created;
	unsigned long long size;   /* bytes in data/ID */
	char *sender;              /* "" is the null sender */
	int eightbit;              /* BODY=8BITMIME needed */
	int smtputf8;              /* SMTPUTF8 needed */
	enum dsn_ret ret;
	char *envid;               /* DSN ENVID, or NULL */
	int attempts;
	time_t last_attempt, next_attempt;
	char *last_error;          /* shown by mailq, or NULL */
	int held;                  /* on hold: no run delivers it until released */
	char bounce[QID_LEN + 1];  /* last bounce decided for it; "" none */
	struct rcpt *rcpts;
	size_t nrcpts;
};

void envelope_init(struct envelope *env);
void envelope_add_rcpt(struct envelope *env, const char *addr, const char *orcpt,
                       unsigned notify);
void envelope_free(struct envelope *env);
int envelope_format(const struct envelope *env, struct buf *out);
/* Strict: anything unexpected, missing or unterminated is ERR_DATA. */
int envelope_parse(const char *text, size_t len, struct envelope *env,
                   struct err *err);

#endif
