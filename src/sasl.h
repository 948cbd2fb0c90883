/*
 * sasl.h - SMTP AUTH client mechanisms (RFC 4954): PLAIN, LOGIN, CRAM-MD5,
 * SCRAM-SHA-256 (with server signature verification), XOAUTH2 and
 * OAUTHBEARER. Pure computation: no I/O. All payloads are base64 as they
 * appear on the wire. Secrets are wiped on sasl_free().
 */
#ifndef RELAYQ_SASL_H
#define RELAYQ_SASL_H

#include "util.h"

enum sasl_mech {
	SASL_NONE = 0,
	SASL_PLAIN,
	SASL_LOGIN,
	SASL_CRAM_MD5,
	SASL_SCRAM_SHA_256,
	SASL_XOAUTH2,
	SASL_OAUTHBEARER,
};

const char *sasl_mech_name(enum sasl_mech m);
enum sasl_mech sasl_mech_from_name(const char *name);   /* SASL_NONE if unknown */

/*
 * Choose the mechanism: the strongest one the server offers (words of its
 * EHLO AUTH line) among those allowed. With allowed empty the default set
 * is SCRAM-SHA-256, PLAIN, LOGIN (CRAM-MD5 and the OAuth ones only when
 * listed). Order of strength: SCRAM-SHA-256, OAUTHBEARER, XOAUTH2,
 * CRAM-MD5, PLAIN, LOGIN. ERR_PERM naming both lists if there is none.
 */
int sasl_choose(const struct strlist *offered, const struct strlist *allowed,
                enum sasl_mech *out, struct err *err);

struct sasl;
/* secret is the password, or the OAuth token for XOAUTH2/OAUTHBEARER. */
struct sasl *sasl_new(enum sasl_mech m, const char *user, const char *secret,
                      const char *host, int port);
/*
 * The initial response for "AUTH <MECH> <ir>" (RFC 4954 section 4), base64,
 * or an empty buf when the mechanism starts with a server challenge
 * (LOGIN, CRAM-MD5). An empty initial response is sent as "=".
 */
int sasl_initial(struct sasl *s, struct buf *out, struct err *err);
/* Answer a 334 challenge (base64 text after "334 "). */
int sasl_step(struct sasl *s, const char *challenge, struct buf *out,
              struct err *err);
/*
 * After the server's 235: did the exchange complete as the mechanism
 * requires? For SCRAM this fails (ERR_PROTO) unless the server's signature
 * was received and verified.
 */
int sasl_complete(struct sasl *s, struct err *err);
void sasl_free(struct sasl *s);

/* Base64 (RFC 4648) helpers, shared with the SMTP code. */
int base64_encode(const void *in, size_t len, struct buf *out);
/* Strict decode: -1 on characters outside the alphabet or bad padding. */
int base64_decode(const char *in, size_t len, struct buf *out);

#endif
