/*
 * selftest.h - relayq --test: the connectivity self-test against the
 * configured smarthosts, for the operator setting relayq up.
 */
#ifndef RELAYQ_SELFTEST_H
#define RELAYQ_SELFTEST_H

#include <stdio.h>
#include "config.h"
#include "util.h"

/*
 * For every smarthost, in config order: resolve its name, connect, show
 * the TLS protocol, cipher and certificate (subject, issuer, expiry,
 * fingerprint, verification result) and the extensions offered, then
 * authenticate on a second connection when a username is configured, and
 * VRFY addr (if not NULL). The report goes to out, the SMTP transcript
 * (secrets redacted) to stderr. 0 when every smarthost passed; otherwise
 * -1 with err holding the first failure: ERR_CONFIG (no smarthost, a bad
 * TLS setting), ERR_TEMP (unresolvable, unreachable, TLS verification or
 * AUTH refused, a 4xx), ERR_NOUSER (VRFY rejected the address), ERR_PROTO.
 */
int selftest_run(const struct config *cfg, const char *addr, FILE *out,
                 struct err *err);

#endif
