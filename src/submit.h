/*
 * submit.h - one submission: message and envelope from the caller, through
 * the header fix-ups and address qualification, durably into the queue.
 */
#ifndef RELAYQ_SUBMIT_H
#define RELAYQ_SUBMIT_H

#include "cli.h"
#include "config.h"
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
};

int submit(const struct config *cfg, const struct submission *sub, int infd,
           char qid[QID_LEN + 1], struct err *err);

/*
 * Read the message from infd and queue it. On success (0) the message is
 * fsynced in the queue and its id is in qid. On failure nothing is left in
 * the queue and err says why (ERR_USAGE no recipients, ERR_DATA bad message
 * or address, ERR_TEMP/ERR_CANTCREAT queue trouble).
 */
int submit_message(const struct config *cfg, const struct request *req,
                   int infd, char qid[QID_LEN + 1], struct err *err);

#endif
