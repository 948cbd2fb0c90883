/*
 * tls_int.h - what tls.c (handshake, verification, record I/O) and
 * tls_cache.c (the session cache) share: the client and connection
 * structures and the few functions each calls in the other. Only these
 * two files include it.
 */
#ifndef RELAYQ_TLS_INT_H
#define RELAYQ_TLS_INT_H

#include <sys/types.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config.h"
#include "util.h"

#define PIN_LEN 32                 /* SHA-256 */
#define HOST_MAX 256

#define CACHE_SUBDIR "tls"         /* under the queue directory */
#define CACHE_KEY ".key"           /* in it: the key sessions are sealed with */
#define CACHE_MAGIC "RQTLSS2\n"    /* 8 bytes, then the header below */
#define KEY_LEN 32                 /* AES-256-GCM */
#define IV_LEN 12
#define TAG_LEN 16
#define CACHE_HEADER (8 + PIN_LEN + 8 + 4 + IV_LEN)
#define CACHE_MAX 16384            /* bytes: the file is untrusted input */
#define CACHE_MAX_AGE 86400        /* s since the last full verification */
#define CACHE_SKEW 300             /* s a timestamp may be in the future */

struct tls_client {
	SSL_CTX *ctx;
	int verify;                /* tls_verify */
	int have_pin;
	unsigned char pin[PIN_LEN];
	const char *min_name;      /* "1.2" or "1.3", for messages */
	int min_version;           /* TLS1_2_VERSION or TLS1_3_VERSION */
	unsigned char settings[PIN_LEN]; /* digest of what verification uses */
	int settings_ok;           /* computed: the cache may be used */
	char *cache_dir;           /* queue_dir/tls, or NULL: no cache */
	char *cache_file;          /* cache_dir/<smarthost name> */
	char *cache_name;
	uid_t spool_uid;           /* owner and group of the queue directory */
	gid_t spool_gid;
	int key_state;             /* 0 not read yet, 1 key holds it, -1 none */
	unsigned char key[KEY_LEN];
	SSL_SESSION *sess;         /* the last session saved in this process */
	unsigned char sess_digest[PIN_LEN];
	time_t sess_verified;
	int retry_full;            /* last handshake failed over a cached one */
};

struct tls_conn {
	struct tls_client *tc;
	SSL *ssl;
	int fd;
	int eof;                   /* the socket BIO read EOF */
	int broken;                /* fatal error seen: no close_notify */
	int tolerant;              /* verify callback never fails the handshake */
	int first_err;             /* first X509_V_ERR_* seen, or 0 */
	int first_depth;
	int pin_ok;                /* pin set and matched */
	int verified;              /* the peer passed check_peer */
	int cacheable;             /* the cache is on and digest computed */
	int offered;               /* a cached session was offered */
	int resumed;               /* ... and the server took it */
	int saved;                 /* a session of this connection was cached */
	int stale;                 /* the cached one is useless: remove it */
	int timed_out;             /* the handshake failed waiting */
	time_t verified_at;        /* last full verification of the cert */
	SSL_SESSION *pending;      /* arrived before check_peer (TLS 1.2) */
	unsigned char digest[PIN_LEN]; /* settings and host, for the cache */
	X509 *peer;
	char host[HOST_MAX];
	char info[128];
};

/* tls.c */
/* The SHA-256 of the certificate (PIN_LEN bytes into md); -1 on error. */
int cert_sha256(X509 *x, unsigned char *md);
int host_matches(X509 *x, const char *host);

/* tls_cache.c */
/* The digest of every setting a verdict depends on, into tc->settings. */
void settings_digest(struct tls_client *tc, const struct smarthost *sh);
/* The settings' digest with the name this connection verifies. */
int conn_digest(struct tls_conn *t);
/* Offer the cached session, if it is usable, before the handshake. */
void cache_offer(struct tls_conn *t);
/* Keep sess (verified) for the next connection, on disk if we can. */
void cache_store(struct tls_conn *t, SSL_SESSION *sess);
/* After a failed or useless resumption: drop what was offered. */
void cache_forget(struct tls_conn *t);

#endif
