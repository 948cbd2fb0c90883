/*
 * submit.h - one submission: message and envelope from the caller, through
 * the header fix-ups and address qualification, durably into the queue.
 */
#ifndef RELAYQ_SUBMIT_H
#define RELAYQ_SUBMIT_H

#include "cli.h"
#include "config.h"
#include "queue.h"

/*
 * Read the message from infd and queue it. On success (0) the message is
 * fsynced in the queue and its id is in qid. On failure nothing is left in
 * the queue and err says why (ERR_USAGE no recipients, ERR_DATA bad message
 * or address, ERR_TEMP/ERR_CANTCREAT queue trouble).
 */
int submit_message(const struct config *cfg, const struct request *req,
                   int infd, char qid[QID_LEN + 1], struct err *err);

#endif
