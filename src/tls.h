/*
 * tls.h - TLS for the SMTP client. tls.c is the only file that includes
 * <openssl/ssl.h>. Verification (chain, host name, SNI, minimum version
 * 1.2) is on unless the smarthost says tls_verify = no; a fingerprint pin
 * replaces the CA check, never the other checks' reporting.
 *
 * Session resumption: with tls_client_cache() a session that passed those
 * checks in a full handshake is kept in the spool (QUEUE_DIR/tls/<name>)
 * and offered by the next connection, in this run or a later one, when
 * every setting verification depends on is unchanged. The cache is only
 * an optimisation: any problem with it means a full handshake.
 */
#ifndef RELAYQ_TLS_H
#define RELAYQ_TLS_H

#include <stddef.h>
#include <sys/types.h>
#include "config.h"
#include "util.h"

struct tls_client;        /* per smarthost: SSL_CTX and its settings */
struct tls_conn;          /* one TLS connection over a socket */

/* Build the client context from the smarthost's tls_* keys. ERR_CONFIG
 * for unreadable CA/cert/key files, bad versions or fingerprints. */
struct tls_client *tls_client_new(const struct smarthost *sh, struct err *err);
void tls_client_free(struct tls_client *tc);
/*
 * The system trust store when no CA is configured. OpenSSL's default
 * paths load its whole bundle file (Debian: some 140 certificates, about
 * 19 ms) into every delivery process; its hashed directory (/etc/ssl/certs,
 * kept by update-ca-certificates; $SSL_CERT_DIR unless setgid) is read
 * lazily, only the issuers a handshake needs. This is that directory when
 * it holds certificates by hash and $SSL_CERT_FILE (unless setgid) names
 * no bundle; NULL: the default paths, bundle included, are used.
 */
const char *tls_system_dir(void);
/*
 * Keep sessions of this smarthost in queue_dir/tls/name (the directory is
 * made on demand, 0770; the file is 0640) and resume from there. Without
 * this call nothing is cached or resumed. Never fails: problems are
 * logged at verbose level and cost a full handshake.
 */
void tls_client_cache(struct tls_client *tc, const char *queue_dir,
                      const char *name);
/*
 * Make the key that seals cached sessions (QUEUE_DIR/tls/.key) if it is
 * missing and this process may: root, the spool's owner or the relayq
 * user. Until it exists, deliveries by other users cache nothing on disk.
 * For the queue daemon's start; tls_client_cache() does it too.
 */
void tls_cache_prepare(const char *queue_dir);
/*
 * After a failed connection: 1 (once) when the handshake failed with a
 * cached session offered, before any certificate and not by a timeout.
 * The session is forgotten by then, so connecting again means a full
 * handshake: a server that chokes on resumption still gets the mail now,
 * not at the next retry.
 */
int tls_client_retry(struct tls_client *tc);

/*
 * Handshake on a connected socket (non-blocking I/O with poll and the
 * timeout in seconds). Verification failures are ERR_TEMP with the reason
 * named: "certificate has expired", "certificate is for another host
 * (wanted smtp.example.com)", "unknown certificate authority",
 * "fingerprint mismatch (got sha256:...)".
 */
struct tls_conn *tls_connect(struct tls_client *tc, int fd, const char *host,
                             long timeout, struct err *err);
/* >0 bytes, 0 on clean EOF, -1 with err (timeout ERR_TEMP). */
ssize_t tls_read(struct tls_conn *t, void *p, size_t n, long timeout, struct err *err);
int tls_write(struct tls_conn *t, const void *p, size_t n, long timeout, struct err *err);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384". */
const char *tls_info(const struct tls_conn *t);
/* Was a cached session resumed (abbreviated handshake, no certificate
 * sent: the checks were re-run on the one verified when it was made)? */
int tls_resumed(const struct tls_conn *t);
/* Multi-line description of the peer certificate for the self-test:
 * subject, issuer, not-after, SHA-256 fingerprint, verification result. */
void tls_describe_peer(const struct tls_conn *t, struct buf *out);
/* Send close_notify (best effort) and free. */
void tls_close(struct tls_conn *t);

#endif
