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
 * Here and in sasl_step() out is wiped and replaced; it carries
 * credentials, so release it with buf_wipe_free().
 */
int sasl_initial(struct sasl *s, struct buf *out, struct err *err);
/*
 * Answer a 334 challenge (base64 text after "334 "; surrounding blanks are
 * ignored). out may be empty: send an empty line then (SCRAM after the
 * server signature, XOAUTH2 after a JSON error). For PLAIN, SCRAM and the
 * OAuth mechanisms an empty challenge before sasl_initial() yields the
 * initial response, for "AUTH <MECH>" without one (RFC 4954: when it would
 * make the command line too long). On -1 cancel the exchange with "*".
 */
int sasl_step(struct sasl *s, const char *challenge, struct buf *out,
              struct err *err);
/*
 * After the server's 235: did the exchange complete as the mechanism
 * requires? For SCRAM this fails (ERR_PROTO) unless the server's signature
 * was received and verified.
 */
int sasl_complete(struct sasl *s, struct err *err);
/*
 * The error text the server sent in a challenge (XOAUTH2/OAUTHBEARER JSON,
 * SCRAM "e="), escaped for logs; "" if none. Valid until sasl_free().
 */
const char *sasl_server_error(const struct sasl *s);
void sasl_free(struct sasl *s);

/*
 * For tests: fix the SCRAM client nonce (printable ASCII without ',') so a
 * published exchange can be reproduced; call before sasl_initial().
 */
void sasl_set_nonce(struct sasl *s, const char *nonce);

/*
 * Base64 (RFC 4648) helpers, shared with the SMTP code. Both append to out
 * and return -1, leaving out unchanged, when its cap would be exceeded.
 */
int base64_encode(const void *in, size_t len, struct buf *out);
/*
 * Strict decode: -1 on characters outside the alphabet (whitespace too),
 * a length that is not a multiple of 4, misplaced or excess padding, or
 * non-zero pad bits.
 */
int base64_decode(const char *in, size_t len, struct buf *out);

#endif
