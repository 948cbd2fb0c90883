/*
 * tls_cache.c - the TLS session cache: the session of a verified
 * handshake kept in QUEUE_DIR/tls/NAME, sealed under QUEUE_DIR/tls/.key,
 * and offered again only under the same settings (see below for the file
 * format, why it is sealed and what holds when a session is resumed).
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "tls.h"
#include "tls_int.h"
#include "util.h"

/* A file verification depends on, by name and identity: replacing or
 * editing it (a CA bundle update, a new client certificate) changes this. */
static void
digest_file(struct buf *b, const char *key, const char *path)
{
	struct stat st;

	if (path == NULL)
		buf_printf(b, "%s -\n", key);
	else if (stat(path, &st) < 0)
		buf_printf(b, "%s %s error %d\n", key, path, errno);
	else
		buf_printf(b, "%s %s %ju %ju %jd %jd.%09ld %jd.%09ld\n", key, path,
		    (uintmax_t)st.st_dev, (uintmax_t)st.st_ino,
		    (intmax_t)st.st_size, (intmax_t)st.st_mtim.tv_sec,
		    st.st_mtim.tv_nsec, (intmax_t)st.st_ctim.tv_sec,
		    st.st_ctim.tv_nsec);
}

/*
 * The digest of every setting a verdict depends on: a cached session is
 * offered only to the same host, port and mode, verified the same way
 * against the same trust files (what OpenSSL would load when none is
 * configured), with the same pin and client certificate, by the same
 * OpenSSL. The host name the connection verifies is added per connection.
 */
void
settings_digest(struct tls_client *tc, const struct smarthost *sh)
{
	static const char hex[] = "0123456789abcdef";
	unsigned int len = 0;
	struct buf b;

	buf_init(&b, 0);
	buf_printf(&b, "relayq tls session 1\nopenssl %lx\nhost %s\nport %d\n"
	    "mode %d\nverify %d\nmin %d\npin ", OpenSSL_version_num(),
	    sh->host ? sh->host : "", sh->port, (int)sh->tls, tc->verify,
	    tc->min_version);
	for (int i = 0; tc->have_pin && i < PIN_LEN; i++) {
		buf_putc(&b, hex[tc->pin[i] >> 4]);
		buf_putc(&b, hex[tc->pin[i] & 15]);
	}
	buf_putc(&b, '\n');
	if (sh->tls_ca_file == NULL && sh->tls_ca_path == NULL) {
		/* As OpenSSL reads them: not at all when setgid. */
		const char *f = secure_getenv(X509_get_default_cert_file_env());
		const char *d = secure_getenv(X509_get_default_cert_dir_env());

		digest_file(&b, "system_file", f ? f : X509_get_default_cert_file());
		digest_file(&b, "system_dir", d ? d : X509_get_default_cert_dir());
	}
	digest_file(&b, "ca_file", sh->tls_ca_file);
	digest_file(&b, "ca_path", sh->tls_ca_path);
	digest_file(&b, "cert", sh->tls_cert_file);
	digest_file(&b, "key", sh->tls_key_file);
	tc->settings_ok = EVP_Digest(b.data, b.len, tc->settings, &len,
	    EVP_sha256(), NULL) == 1 && len == PIN_LEN;
	ERR_clear_error();
	buf_free(&b);
}

/* ------------------------------------------------------------------ */
/* Session cache                                                        */
/*
 * QUEUE_DIR/tls/<smarthost name> holds the last session: CACHE_MAGIC; the
 * digest of the settings and the host name (32 bytes); when the
 * certificate was last verified in a full handshake (8 bytes, big-endian
 * seconds); the session's length (4 bytes); an IV (12 bytes); the session
 * (i2d_SSL_SESSION) sealed with AES-256-GCM under QUEUE_DIR/tls/.key, the
 * header authenticated too; the tag (16 bytes). Written to a temporary
 * name and renamed, with no fsync: a lost entry costs a full handshake.
 *
 * Why sealed: a background delivery runs as whoever sent the mail (with
 * the relayq group), so the file it writes is that user's. Plain, the
 * user could read the session's secret, or write a session of their own
 * that would pass for a verified server, and have the smarthost password
 * sent to them by the next delivery. The key is made only by root, the
 * spool's owner or a user whose primary group is the spool's (the queue
 * daemon's user), 0640 in that group: sender can neither read nor choose
 * it, so a file that opens was sealed by relayq. Until a trusted process
 * has made the key (the daemon's or root's first delivery, or relayq
 * --test run by root), others keep sessions in memory only.
 *
 * What holds when a session is resumed. relayq saved it from a connection
 * whose peer passed check_peer (the chain against the same trust files
 * and the host name, or the pin) under the same digest. A resumption
 * proves that the server holds that session's secret: it is the server
 * that showed the verified certificate (or shares its ticket keys).
 * Before the session is offered, what can be checked without the server
 * is checked again: resumable and within its lifetime, at most
 * CACHE_MAX_AGE after the last full verification, TLS 1.2 or later and
 * not below tls_min_version (TLS 1.2 only with the extended master
 * secret), made for the same SNI name; the certificate it holds matches
 * the pin or, with verification on, is within its dates, names the host
 * and had verified ok. After the handshake check_peer runs on that
 * certificate as after a full one. What does not hold: the chain is not
 * rebuilt against the CA files as they are now (their identity is in the
 * digest, so changing them forces a full handshake), and a certificate
 * the server has replaced is only seen at the next full handshake (at
 * most CACHE_MAX_AGE later).
 */

static void
put_be(unsigned char *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)(v & 0xff);
}

static uint64_t
get_be(const unsigned char *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* The settings' digest with the name this connection verifies. */
int
conn_digest(struct tls_conn *t)
{
	unsigned char in[PIN_LEN + HOST_MAX];
	size_t n = strlen(t->host);
	unsigned int len = 0;

	memcpy(in, t->tc->settings, PIN_LEN);
	memcpy(in + PIN_LEN, t->host, n);
	if (EVP_Digest(in, PIN_LEN + n, t->digest, &len, EVP_sha256(),
	    NULL) != 1 || len != PIN_LEN) {
		ERR_clear_error();
		return -1;
	}
	return 0;
}

/* May uid have made the key? See above. */
static int
trusted_uid(const struct tls_client *tc, uid_t uid)
{
	struct passwd *pw;

	if (uid == 0 || uid == tc->spool_uid)
		return 1;
	pw = getpwuid(uid);
	return pw != NULL && pw->pw_gid == tc->spool_gid;
}

/* Open a file of ours in the cache directory for reading, refusing what
 * is not a regular file of at most max bytes; the size in *len. */
static int
open_small(const char *path, size_t max, struct stat *st, char *why,
    size_t size)
{
	/* O_NONBLOCK: a FIFO planted there must not hang us. */
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	why[0] = '\0';
	if (fd < 0) {
		if (errno != ENOENT)
			str_fmt(why, size, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode))
		str_copy(why, "not a regular file", size);
	else if ((uintmax_t)st->st_size > max)
		str_fmt(why, size, "larger than %zu bytes", max);
	if (why[0] != '\0') {
		close(fd);
		return -1;
	}
	return fd;
}

/* Read up to size bytes; -1 on error, else the count. */
static ssize_t
read_most(int fd, unsigned char *p, size_t size)
{
	size_t n = 0;

	while (n < size) {
		ssize_t r = read(fd, p + n, size - n);

		if (r == 0)
			break;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		n += (size_t)r;
	}
	return (ssize_t)n;
}

static int
key_read(struct tls_client *tc, char *why, size_t size)
{
	char *path = xasprintf("%s/%s", tc->cache_dir, CACHE_KEY);
	struct stat st;
	int fd = open_small(path, KEY_LEN, &st, why, size), rc = -1;

	free(path);
	if (fd < 0)
		return -1;
	if (st.st_size != KEY_LEN)
		str_copy(why, "the key has the wrong size", size);
	else if (st.st_mode & (S_IROTH | S_IWOTH))
		str_copy(why, "the key is open to everyone", size);
	else if (!trusted_uid(tc, st.st_uid))
		str_fmt(why, size, "the key belongs to an untrusted user "
		    "(uid %ju)", (uintmax_t)st.st_uid);
	else if (read_most(fd, tc->key, KEY_LEN) != KEY_LEN)
		str_copy(why, "cannot read the key", size);
	else
		rc = 0;
	close(fd);
	return rc;
}

/* Make the cache directory, in the spool's group, if it is missing. */
static int
cache_mkdir(const struct tls_client *tc)
{
	struct stat st;

	if (mkdir(tc->cache_dir, 0770) == 0) {
		/* Exact mode whatever the umask; the spool's group, so that
		 * every user's deliveries and the daemon share it. */
		if (chmod(tc->cache_dir, 0770) < 0 ||
		    (tc->spool_gid != getegid() &&
		    chown(tc->cache_dir, (uid_t)-1, tc->spool_gid) < 0))
			return -1;
	} else if (errno != EEXIST) {
		return -1;
	}
	if (stat(tc->cache_dir, &st) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

/* Replace path with data: written aside, then renamed, 0640 in the
 * spool's group. */
static int
write_replace(const struct tls_client *tc, const char *path,
    const unsigned char *data, size_t n)
{
	char *tmp = xasprintf("%s/.%s.%ld", tc->cache_dir, tc->cache_name,
	    (long)getpid());
	int fd, saved;

	(void)unlink(tmp);      /* left by a process that had our pid */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (fd < 0) {
		saved = errno;
		free(tmp);
		errno = saved;
		return -1;
	}
	if (fchmod(fd, 0640) < 0 || (tc->spool_gid != getegid() &&
	    fchown(fd, (uid_t)-1, tc->spool_gid) < 0) ||
	    write_all(fd, data, n) < 0) {
		saved = errno;
		close(fd);
		goto fail;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		saved = errno;
		goto fail;
	}
	free(tmp);
	return 0;
fail:
	unlink(tmp);
	free(tmp);
	errno = saved;
	return -1;
}

/* A new random key, replacing one we could not trust. Only trusted users
 * make one; a race between two of them costs a full handshake. */
static int
key_make(struct tls_client *tc)
{
	unsigned char key[KEY_LEN];
	char *path;
	int rc;

	if (!trusted_uid(tc, geteuid())) {
		errno = EPERM;
		return -1;
	}
	if (cache_mkdir(tc) < 0)
		return -1;
	if (RAND_bytes(key, KEY_LEN) != 1) {
		ERR_clear_error();
		errno = EIO;
		return -1;
	}
	path = xasprintf("%s/%s", tc->cache_dir, CACHE_KEY);
	rc = write_replace(tc, path, key, KEY_LEN);
	secure_zero(key, sizeof(key));
	free(path);
	return rc;
}

/* The key, read (or made) once per process; -1 when there is none to use. */
static int
cache_key(struct tls_client *tc)
{
	char why[256];

	if (tc->key_state != 0)
		return tc->key_state > 0 ? 0 : -1;
	tc->key_state = -1;
	if (key_read(tc, why, sizeof(why)) == 0) {
		tc->key_state = 1;
		return 0;
	}
	if (why[0] != '\0')
		log_debug("TLS session cache %s: %s", tc->cache_dir, why);
	if (key_make(tc) < 0) {
		log_debug("TLS session cache %s: no key%s%s", tc->cache_dir,
		    errno == EPERM ? " (only root or the relayq user makes it)" :
		    ": ", errno == EPERM ? "" : strerror(errno));
		return -1;
	}
	if (key_read(tc, why, sizeof(why)) < 0) {
		log_debug("TLS session cache %s: %s", tc->cache_dir, why);
		return -1;
	}
	log_debug("TLS session cache %s: new key", tc->cache_dir);
	tc->key_state = 1;
	return 0;
}

/* AES-256-GCM over n bytes, the header (with the IV at its end) as
 * associated data; the tag is made or checked. 0 or -1. */
static int
seal(int enc, const unsigned char *key, const unsigned char *hdr,
    const unsigned char *in, int n, unsigned char *out, unsigned char *tag)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int len = 0, rc = -1;

	if (ctx != NULL &&
	    EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, IV_LEN, NULL) == 1 &&
	    EVP_CipherInit_ex(ctx, NULL, NULL, key, hdr + CACHE_HEADER - IV_LEN,
	    enc) == 1 &&
	    EVP_CipherUpdate(ctx, NULL, &len, hdr, CACHE_HEADER) == 1 &&
	    EVP_CipherUpdate(ctx, out, &len, in, n) == 1 && len == n &&
	    (enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
	    tag) == 1) &&
	    EVP_CipherFinal_ex(ctx, out + n, &len) == 1 && len == 0 &&
	    (!enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN,
	    tag) == 1))
		rc = 0;
	EVP_CIPHER_CTX_free(ctx);
	ERR_clear_error();
	return rc;
}

/* The session in the cache file, or NULL: why says what was wrong with
 * the file, or is empty when there is none. */
static SSL_SESSION *
cache_read(struct tls_conn *t, time_t *verified_at, char *why, size_t size)
{
	unsigned char data[CACHE_MAX + 1], plain[CACHE_MAX];
	const unsigned char *p = plain;
	SSL_SESSION *sess = NULL;
	struct stat st;
	ssize_t n = 0;
	uint64_t len;
	int fd;

	fd = open_small(t->tc->cache_file, CACHE_MAX, &st, why, size);
	if (fd < 0)
		return NULL;
	n = read_most(fd, data, sizeof(data));
	close(fd);
	if (n < 0) {
		str_fmt(why, size, "cannot read: %s", strerror(errno));
		return NULL;
	}
	if (n > CACHE_MAX)
		str_fmt(why, size, "larger than %d bytes", CACHE_MAX);
	else if (n < CACHE_HEADER + TAG_LEN || memcmp(data, CACHE_MAGIC, 8) != 0)
		str_copy(why, "not a session file", size);
	else if ((len = get_be(data + 8 + PIN_LEN + 8, 4)) !=
	    (uint64_t)n - CACHE_HEADER - TAG_LEN)
		str_copy(why, "truncated or padded", size);
	else if (CRYPTO_memcmp(data + 8, t->digest, PIN_LEN) != 0)
		str_copy(why, "made with other settings", size);
	else if (seal(0, t->tc->key, data, data + CACHE_HEADER, (int)len, plain,
	    data + n - TAG_LEN) < 0)
		str_copy(why, "damaged, or sealed with another key", size);
	else if ((sess = d2i_SSL_SESSION(NULL, &p, (long)len)) == NULL ||
	    p != plain + len) {
		str_copy(why, "the session does not parse", size);
		SSL_SESSION_free(sess);
		sess = NULL;
	} else {
		*verified_at = (time_t)get_be(data + 8 + PIN_LEN, 8);
	}
	ERR_clear_error();
	secure_zero(plain, sizeof(plain));
	return sess;
}

/* Would this session, resumed now, pass the checks of a full handshake? */
static int
session_usable(const struct tls_conn *t, SSL_SESSION *sess, time_t verified_at,
    char *why, size_t size)
{
	const struct tls_client *tc = t->tc;
	long now = (long)time(NULL), start = SSL_SESSION_get_time(sess);
	long life = SSL_SESSION_get_timeout(sess);
	const char *sni = SSL_SESSION_get0_hostname(sess);
	X509 *peer = SSL_SESSION_get0_peer(sess);
	int version = SSL_SESSION_get_protocol_version(sess);
	unsigned char md[PIN_LEN];

	if (!SSL_SESSION_is_resumable(sess))
		return str_copy(why, "not resumable", size), -1;
	if (version < TLS1_2_VERSION || version < tc->min_version)
		return str_copy(why, "older TLS version than allowed", size), -1;
	if (start > now + CACHE_SKEW || life <= 0 || now - start >= life)
		return str_copy(why, "expired", size), -1;
	if ((long)verified_at > now + CACHE_SKEW ||
	    now - (long)verified_at > CACHE_MAX_AGE)
		return str_copy(why, "certificate verified too long ago", size), -1;
	if (sni != NULL && strcasecmp(sni, t->host) != 0)
		return str_copy(why, "made for another server name", size), -1;
	if (peer == NULL)
		return str_copy(why, "holds no certificate", size), -1;
	if (tc->have_pin) {
		if (cert_sha256(peer, md) < 0 ||
		    CRYPTO_memcmp(md, tc->pin, PIN_LEN) != 0) {
			ERR_clear_error();
			return str_copy(why, "certificate does not match the "
			    "pin", size), -1;
		}
	} else if (tc->verify) {
		if (X509_cmp_current_time(X509_get0_notBefore(peer)) != -1 ||
		    X509_cmp_current_time(X509_get0_notAfter(peer)) != 1)
			return str_copy(why, "certificate out of its dates",
			    size), -1;
		if (!host_matches(peer, t->host))
			return str_copy(why, "certificate for another host",
			    size), -1;
	}
	return 0;
}

/* Keep sess as this process's last session, for its next connection. */
static void
remember(struct tls_conn *t, SSL_SESSION *sess, time_t verified_at)
{
	struct tls_client *tc = t->tc;

	if (tc->sess == sess)
		return;
	SSL_SESSION_up_ref(sess);
	SSL_SESSION_free(tc->sess);
	tc->sess = sess;
	memcpy(tc->sess_digest, t->digest, PIN_LEN);
	tc->sess_verified = verified_at;
}

/* Offer the cached session (this process's last, else the file's) when
 * it passes session_usable(). */
void
cache_offer(struct tls_conn *t)
{
	struct tls_client *tc = t->tc;
	SSL_SESSION *sess = NULL;
	time_t verified_at = 0;
	char why[256];

	if (tc->sess != NULL &&
	    CRYPTO_memcmp(tc->sess_digest, t->digest, PIN_LEN) == 0) {
		sess = tc->sess;
		SSL_SESSION_up_ref(sess);
		verified_at = tc->sess_verified;
	} else if (cache_key(tc) < 0) {
		return;
	} else if ((sess = cache_read(t, &verified_at, why, sizeof(why))) == NULL) {
		if (why[0] != '\0') {
			log_debug("TLS session cache %s: %s", tc->cache_file, why);
			t->stale = 1;
		}
		return;
	}
	if (session_usable(t, sess, verified_at, why, sizeof(why)) < 0) {
		log_debug("TLS session cache %s: not used: %s", tc->cache_file, why);
		t->stale = 1;
	} else if (SSL_set_session(t->ssl, sess) != 1) {
		ERR_clear_error();
	} else if (tc->verify && !tc->have_pin &&
	    SSL_get_verify_result(t->ssl) != X509_V_OK) {
		/* SSL_set_session took the session's verdict; put it back. */
		(void)SSL_set_session(t->ssl, NULL);
		SSL_set_verify_result(t->ssl, X509_V_OK);
		log_debug("TLS session cache %s: not used: certificate not "
		    "verified", tc->cache_file);
		t->stale = 1;
	} else {
		t->offered = 1;
		t->verified_at = verified_at;
		remember(t, sess, verified_at);
	}
	SSL_SESSION_free(sess);
}

/* Save a session of a verified connection, for the next connection of
 * this process and in the file. */
void
cache_store(struct tls_conn *t, SSL_SESSION *sess)
{
	struct tls_client *tc = t->tc;
	unsigned char data[CACHE_MAX], plain[CACHE_MAX], *p = plain;
	int len;

	t->saved = 1;
	if (!SSL_SESSION_is_resumable(sess))
		return;
	if (SSL_SESSION_get_protocol_version(sess) == TLS1_2_VERSION &&
	    SSL_get_extms_support(t->ssl) != 1) {
		log_debug("TLS session cache %s: not saved: TLS 1.2 without "
		    "extended master secret", tc->cache_file);
		return;
	}
	remember(t, sess, t->verified_at);
	if (cache_key(tc) < 0)
		return;
	len = i2d_SSL_SESSION(sess, NULL);
	if (len <= 0 || len > CACHE_MAX - CACHE_HEADER - TAG_LEN) {
		ERR_clear_error();
		log_debug("TLS session cache %s: not saved: session of %d "
		    "bytes", tc->cache_file, len);
		return;
	}
	memcpy(data, CACHE_MAGIC, 8);
	memcpy(data + 8, t->digest, PIN_LEN);
	put_be(data + 8 + PIN_LEN, (uint64_t)t->verified_at, 8);
	put_be(data + 8 + PIN_LEN + 8, (uint64_t)len, 4);
	if (RAND_bytes(data + CACHE_HEADER - IV_LEN, IV_LEN) != 1 ||
	    i2d_SSL_SESSION(sess, &p) != len ||
	    seal(1, tc->key, data, plain, len, data + CACHE_HEADER,
	    data + CACHE_HEADER + len) < 0)
		log_debug("TLS session cache %s: not saved: cannot seal",
		    tc->cache_file);
	else if (write_replace(tc, tc->cache_file, data,
	    CACHE_HEADER + (size_t)len + TAG_LEN) < 0)
		log_debug("TLS session cache %s: not saved: %s", tc->cache_file,
		    strerror(errno));
	else {
		t->stale = 0;
		log_debug("TLS session cache %s: saved", tc->cache_file);
	}
	ERR_clear_error();
	secure_zero(plain, (size_t)len);
}

/* The cached session failed us: use it no more. */
void
cache_forget(struct tls_conn *t)
{
	struct tls_client *tc = t->tc;

	if (tc->sess != NULL &&
	    CRYPTO_memcmp(tc->sess_digest, t->digest, PIN_LEN) == 0) {
		SSL_SESSION_free(tc->sess);
		tc->sess = NULL;
	}
	if (unlink(tc->cache_file) == 0)
		log_debug("TLS session cache %s: removed", tc->cache_file);
	t->stale = 0;
}

/*
 * libssl hands over each new session: during the TLS 1.2 handshake,
 * before check_peer (kept until it has passed), or with TLS 1.3 as
 * tickets after it, read with the first reply. The first one of a
 * connection is kept. Returns 1 when we keep the reference.
 */
static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct tls_conn *t = SSL_get_app_data(ssl);

	if (t == NULL || t->saved || !t->cacheable)
		return 0;
	if (!t->verified) {
		SSL_SESSION_free(t->pending);
		t->pending = sess;
		return 1;
	}
	cache_store(t, sess);
	return 0;
}

int
tls_client_retry(struct tls_client *tc)
{
	int r = tc->retry_full;

	tc->retry_full = 0;
	return r;
}

void
tls_client_cache(struct tls_client *tc, const char *queue_dir,
    const char *name)
{
	struct stat st;

	if (queue_dir == NULL || name == NULL || name[0] == '\0' ||
	    name[0] == '.' || strchr(name, '/') != NULL || !tc->settings_ok ||
	    stat(queue_dir, &st) < 0) {
		log_debug("TLS session cache: not used for smarthost \"%s\"",
		    name ? name : "");
		return;
	}
	free(tc->cache_dir);
	free(tc->cache_file);
	free(tc->cache_name);
	tc->cache_dir = xasprintf("%s/%s", queue_dir, CACHE_SUBDIR);
	tc->cache_file = xasprintf("%s/%s", tc->cache_dir, name);
	tc->cache_name = xstrdup(name);
	tc->spool_uid = st.st_uid;
	tc->spool_gid = st.st_gid;
	tc->key_state = 0;
	SSL_CTX_set_session_cache_mode(tc->ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(tc->ctx, new_session_cb);
}

void
tls_cache_prepare(const char *queue_dir)
{
	struct tls_client tc;
	struct stat st;

	memset(&tc, 0, sizeof(tc));
	if (queue_dir == NULL || stat(queue_dir, &st) < 0)
		return;
	tc.cache_dir = xasprintf("%s/%s", queue_dir, CACHE_SUBDIR);
	tc.cache_name = xstrdup("key");
	tc.spool_uid = st.st_uid;
	tc.spool_gid = st.st_gid;
	(void)cache_key(&tc);
	free(tc.cache_dir);
	free(tc.cache_name);
	secure_zero(&tc, sizeof(tc));
}
