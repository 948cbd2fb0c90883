/*
 * verify.h - sendmail -bv: what would become of each address, its alias
 * expansion and qualified form, without sending anything. (-bv -v also
 * asks the smarthost with VRFY: handoff_local.c.)
 */
#ifndef RELAYQ_VERIFY_H
#define RELAYQ_VERIFY_H

#include "cli.h"
#include "config.h"
#include "util.h"

/*
 * One line per address on stdout; the deliverable addresses are added to
 * all (once each). Returns the exit status: EX_OK, EX_NOUSER when any is
 * invalid, or the error's code.
 */
int verify_addresses(const struct config *cfg, const struct request *req,
                     struct strlist *all);

#endif
