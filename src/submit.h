/*
 * submit.h - one submission: message and envelope from the caller, through
 * the header fix-ups and address qualification, durably into the queue.
 */
#ifndef RELAYQ_SUBMIT_H
#define RELAYQ_SUBMIT_H

#include "cli.h"
#include "config.h"
#include "message.h"
#include "privsep.h"
#include "queue.h"

/* One message's envelope as the caller gave it (command line or -bs). */
struct submission {
	const char *sender;          /* -f / MAIL FROM as given; NULL = the caller */
	const char *const *rcpts;    /* as given; each may be an address list */
	size_t nrcpts;
	int extract_rcpts;           /* -t */
	int dot_ends;                /* a "." line ends the message */
	int no_fixups;               /* -G */
	const char *full_name;       /* -F; NULL = the caller's gecos */
	unsigned notify;             /* NOTIFY_* bits for every recipient */
	const char *ret;             /* "FULL", "HDRS" or NULL */
	const char *envid;
	const char *body_type;       /* "8BITMIME", "7BIT" or NULL */
	int smtp_data;               /* -bs DATA: the "." line must come; on a
	                                refused message the rest is still read */
	int crlf_dots;               /* only CRLF "." CRLF ends the message */
};

struct submit_result {
	char qid[QID_LEN + 1];       /* on success */
	int too_big;                 /* refused: over max_message_size */
	int ended;                   /* the "." line was read (dot_ends) */
};

/*
 * Read one message from in and queue it with the envelope of sub:
 * aliases applied to local recipients (aliases.h), bare names qualified,
 * sender_rewrite and sender_from_header applied, duplicates dropped. On
 * success (0) the message is fsynced in the queue and res->qid names it.
 * On failure nothing is left in the queue and err says why (ERR_USAGE no
 * recipients, ERR_DATA bad message or address, ERR_CONFIG a bad
 * sender_rewrite, ERR_TEMP/ERR_CANTCREAT queue or aliases file trouble,
 * ERR_PROTO input ended before the "." line with smtp_data). The queue
 * is reached through spool (the privileged parent, see privsep.h), or
 * directly when spool is NULL.
 */
int submit(const struct config *cfg, struct spool *spool,
           const struct submission *sub, struct msg_input *in,
           struct submit_result *res, struct err *err);

/* The command line's submission: submit() with req's envelope from infd. */
int submit_message(const struct config *cfg, struct spool *spool,
                   const struct request *req, int infd, char qid[QID_LEN + 1],
                   struct err *err);

#endif
