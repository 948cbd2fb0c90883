/*
 * tls.c - TLS for the SMTP client; with tls_cache.c (the session cache)
 * the only code that includes OpenSSL's SSL headers. Owns the
 * per-smarthost SSL_CTX (trust store, minimum version, client
 * certificate, fingerprint pin) and each connection's
 * handshake, verification verdict and record I/O over a non-blocking
 * socket. Every wait is a poll(2) bounded by the caller's timeout.
 *
 * Verification: the chain, validity dates and the host name (or IP
 * literal) are checked by OpenSSL; the verify callback keeps the first
 * failure for a specific message. With verification on and no pin a
 * failure aborts the handshake. A fingerprint pin replaces those checks
 * (they are still computed and reported), and a pin mismatch always fails.
 * tls_verify = no accepts any certificate but still reports the verdict.
 *
 * Resumption: a session is saved only from a connection whose peer passed
 * those checks, with a digest of every setting they depend on; it is
 * offered again only when the digest matches and the session (its
 * lifetime, its version, the certificate it holds: dates, host name, pin)
 * would still pass. The cache is tls_cache.c, which says what holds then.
 *
 * Sockets are written with send(MSG_NOSIGNAL) through our own BIO, so a
 * peer that went away is an error, never a SIGPIPE, whatever the
 * process's signal disposition.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "tls.h"
#include "tls_int.h"
#include "util.h"

#define CLOSE_NOTIFY_WAIT 1000     /* ms we wait to send close_notify */

/* ------------------------------------------------------------------ */
/* Socket BIO: OpenSSL's own writes with write(2), which raises SIGPIPE */
/* when the peer has gone. Ours sends with MSG_NOSIGNAL, as net.c does, */
/* and needs neither the signal mask nor the disposition touched.       */

#ifndef MSG_NOSIGNAL
#error "MSG_NOSIGNAL is needed to write to a socket without SIGPIPE"
#endif

static int
sock_write(BIO *b, const char *p, int n)
{
	struct tls_conn *t = BIO_get_data(b);
	ssize_t r;

	BIO_clear_retry_flags(b);
	while ((r = send(t->fd, p, (size_t)n, MSG_NOSIGNAL)) < 0 &&
	    errno == EINTR)
		;
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		BIO_set_retry_write(b);
	return (int)r;
}

static int
sock_read(BIO *b, char *p, int n)
{
	struct tls_conn *t = BIO_get_data(b);
	ssize_t r;

	BIO_clear_retry_flags(b);
	while ((r = recv(t->fd, p, (size_t)n, 0)) < 0 && errno == EINTR)
		;
	if (r == 0)
		t->eof = 1;
	else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		BIO_set_retry_read(b);
	return (int)r;
}

/* What libssl asks of a socket BIO: flush (nothing buffered) and EOF,
 * which tells a peer's missing close_notify from a torn record. */
static long
sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tls_conn *t = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_EOF:
		return t->eof;
	default:
		return 0;
	}
}

/* One method for the process, made on first use. */
static BIO *
sock_bio(struct tls_conn *t)
{
	static BIO_METHOD *method;
	BIO *b;

	if (method == NULL) {
		int type = BIO_get_new_index();
		BIO_METHOD *m;

		if (type < 0 || (m = BIO_meth_new(type | BIO_TYPE_SOURCE_SINK |
		    BIO_TYPE_DESCRIPTOR, "relayq socket")) == NULL)
			return NULL;
		if (BIO_meth_set_write(m, sock_write) != 1 ||
		    BIO_meth_set_read(m, sock_read) != 1 ||
		    BIO_meth_set_ctrl(m, sock_ctrl) != 1) {
			BIO_meth_free(m);
			return NULL;
		}
		method = m;
	}
	if ((b = BIO_new(method)) == NULL)
		return NULL;
	BIO_set_data(b, t);
	BIO_set_init(b, 1);
	return b;
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */

/* The most useful text for the OpenSSL error queue (its last entry),
 * then clear the queue so nothing leaks into the next connection. */
static void
ssl_errstr(char *out, size_t size)
{
	unsigned long e, last = 0;
	const char *r;

	while ((e = ERR_get_error()) != 0)
		last = e;
	if (last == 0) {
		str_copy(out, "unknown TLS error", size);
		return;
	}
	if ((r = ERR_reason_error_string(last)) != NULL)
		str_copy(out, r, size);
	else
		ERR_error_string_n(last, out, size);
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* "sha256:" then 64 hex digits, either plain or as 32 colon-separated
 * pairs (the form "openssl x509 -fingerprint" prints). */
static int
parse_fingerprint(const char *s, unsigned char *pin)
{
	const char *p;
	int colons = 0;

	if (strncasecmp(s, "sha256:", 7) != 0)
		return -1;
	p = s + 7;
	for (int i = 0; i < PIN_LEN; i++) {
		int hi, lo;

		if (i == 1 && *p == ':')
			colons = 1;
		if (i > 0 && colons) {
			if (*p != ':')
				return -1;
			p++;
		}
		if ((hi = hexval((unsigned char)p[0])) < 0 ||
		    (lo = hexval((unsigned char)p[1])) < 0)
			return -1;
		pin[i] = (unsigned char)(hi << 4 | lo);
		p += 2;
	}
	return *p == '\0' ? 0 : -1;
}

static void
format_fingerprint(const unsigned char *md, char *out, size_t size)
{
	static const char hex[] = "0123456789abcdef";
	char tmp[7 + 2 * PIN_LEN + 1];

	memcpy(tmp, "sha256:", 7);
	for (int i = 0; i < PIN_LEN; i++) {
		tmp[7 + 2 * i] = hex[md[i] >> 4];
		tmp[7 + 2 * i + 1] = hex[md[i] & 15];
	}
	tmp[sizeof(tmp) - 1] = '\0';
	str_copy(out, tmp, size);
}

int
cert_sha256(X509 *x, unsigned char *md)
{
	unsigned int len = 0;

	if (X509_digest(x, EVP_sha256(), md, &len) != 1 || len != PIN_LEN)
		return -1;
	return 0;
}

static int
is_ip_literal(const char *host)
{
	unsigned char a[16];

	return inet_pton(AF_INET, host, a) == 1 ||
	    inet_pton(AF_INET6, host, a) == 1;
}

/* Does x name host (a DNS name, or an IP literal)? */
int
host_matches(X509 *x, const char *host)
{
	if (is_ip_literal(host))
		return X509_check_ip_asc(x, host, 0) == 1;
	return X509_check_host(x, host, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
	    NULL) == 1;
}

/* Can we open the file with our effective ids (setgid-safe, unlike
 * access(2))? The message names the key and the reason. */
static int
check_readable(const char *key, const char *path, int dir, struct err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | (dir ? O_DIRECTORY : 0));

	if (fd < 0)
		return err_sys(err, ERR_CONFIG, "cannot read %s %s", key, path);
	close(fd);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Context                                                              */

static int
set_min_version(struct tls_client *tc, const char *v, struct err *err)
{
	int ver;

	if (v == NULL || strcmp(v, "1.2") == 0) {
		ver = TLS1_2_VERSION;
		tc->min_name = "1.2";
	} else if (strcmp(v, "1.3") == 0) {
		ver = TLS1_3_VERSION;
		tc->min_name = "1.3";
	} else {
		return err_set(err, ERR_CONFIG,
		    "tls_min_version \"%s\" is not 1.2 or 1.3", v);
	}
	if (SSL_CTX_set_min_proto_version(tc->ctx, ver) != 1) {
		ERR_clear_error();
		return err_set(err, ERR_CONFIG,
		    "tls_min_version %s is not supported by this OpenSSL", v);
	}
	tc->min_version = ver;
	return 0;
}

/* "9d66eef0.0": a certificate's name in a hashed directory. */
static int
hashed_name(const char *n)
{
	size_t i;

	for (i = 0; i < 8; i++)
		if (!isxdigit((unsigned char)n[i]))
			return 0;
	if (n[i++] != '.' || !isdigit((unsigned char)n[i]))
		return 0;
	while (isdigit((unsigned char)n[i]))
		i++;
	return n[i] == '\0';
}

/* One of the colon-separated directories has a certificate by hash. */
static int
has_hashed_names(const char *dirs)
{
	char *copy = xstrdup(dirs), *save = NULL;
	int found = 0;

	for (char *d = strtok_r(copy, ":", &save); d != NULL && !found;
	    d = strtok_r(NULL, ":", &save)) {
		DIR *dp = opendir(d);
		struct dirent *de;

		if (dp == NULL)
			continue;
		while (!found && (de = readdir(dp)) != NULL)
			found = hashed_name(de->d_name);
		closedir(dp);
	}
	free(copy);
	return found;
}

const char *
tls_system_dir(void)
{
	const char *dir = secure_getenv(X509_get_default_cert_dir_env());

	if (secure_getenv(X509_get_default_cert_file_env()) != NULL)
		return NULL;        /* a bundle named by the environment */
	if (dir == NULL || dir[0] == '\0')
		dir = X509_get_default_cert_dir();
	return has_hashed_names(dir) ? dir : NULL;
}

static int
load_trust(struct tls_client *tc, const struct smarthost *sh, struct err *err)
{
	char why[256];
	const char *dir;

	if (sh->tls_ca_file == NULL && sh->tls_ca_path == NULL) {
		if ((dir = tls_system_dir()) != NULL &&
		    SSL_CTX_load_verify_locations(tc->ctx, NULL, dir) == 1)
			return 0;
		ERR_clear_error();
		if (SSL_CTX_set_default_verify_paths(tc->ctx) != 1) {
			ssl_errstr(why, sizeof(why));
			return err_set(err, ERR_CONFIG,
			    "cannot load the system CA store: %s", why);
		}
		return 0;
	}
	if (sh->tls_ca_file && check_readable("tls_ca_file", sh->tls_ca_file, 0, err) < 0)
		return -1;
	if (sh->tls_ca_path && check_readable("tls_ca_path", sh->tls_ca_path, 1, err) < 0)
		return -1;
	if (SSL_CTX_load_verify_locations(tc->ctx, sh->tls_ca_file,
	    sh->tls_ca_path) != 1) {
		ssl_errstr(why, sizeof(why));
		return err_set(err, ERR_CONFIG, "cannot load %s %s: %s",
		    sh->tls_ca_file ? "tls_ca_file" : "tls_ca_path",
		    sh->tls_ca_file ? sh->tls_ca_file : sh->tls_ca_path, why);
	}
	return 0;
}

/* The key defaults to the certificate file (one PEM holding both). */
static int
load_client_cert(struct tls_client *tc, const struct smarthost *sh,
    struct err *err)
{
	const char *key = sh->tls_key_file ? sh->tls_key_file : sh->tls_cert_file;
	char why[256];

	if (sh->tls_cert_file == NULL) {
		if (sh->tls_key_file != NULL)
			return err_set(err, ERR_CONFIG,
			    "tls_key_file is set but tls_cert_file is not");
		return 0;
	}
	if (check_readable("tls_cert_file", sh->tls_cert_file, 0, err) < 0 ||
	    check_readable("tls_key_file", key, 0, err) < 0)
		return -1;
	if (SSL_CTX_use_certificate_chain_file(tc->ctx, sh->tls_cert_file) != 1) {
		ssl_errstr(why, sizeof(why));
		return err_set(err, ERR_CONFIG, "cannot load tls_cert_file %s: %s",
		    sh->tls_cert_file, why);
	}
	if (SSL_CTX_use_PrivateKey_file(tc->ctx, key, SSL_FILETYPE_PEM) != 1) {
		unsigned long e = ERR_peek_last_error();

		if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
			ERR_clear_error();
			return err_set(err, ERR_CONFIG,
			    "tls_key_file %s does not match tls_cert_file %s",
			    key, sh->tls_cert_file);
		}
		ssl_errstr(why, sizeof(why));
		return err_set(err, ERR_CONFIG, "cannot load tls_key_file %s: %s",
		    key, why);
	}
	if (SSL_CTX_check_private_key(tc->ctx) != 1) {
		ERR_clear_error();
		return err_set(err, ERR_CONFIG,
		    "tls_key_file %s does not match tls_cert_file %s",
		    key, sh->tls_cert_file);
	}
	return 0;
}

static int verify_cb(int ok, X509_STORE_CTX *xs);

struct tls_client *
tls_client_new(const struct smarthost *sh, struct err *err)
{
	struct tls_client *tc = xcalloc(1, sizeof(*tc));
	uint64_t opts = SSL_OP_NO_COMPRESSION;

	ERR_clear_error();
	tc->verify = sh->tls_verify;
	if (sh->tls_fingerprint != NULL) {
		if (parse_fingerprint(sh->tls_fingerprint, tc->pin) < 0) {
			err_set(err, ERR_CONFIG, "tls_fingerprint \"%s\" is not "
			    "sha256: followed by 64 hex digits", sh->tls_fingerprint);
			goto fail;
		}
		tc->have_pin = 1;
	}
	if ((tc->ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		char why[256];

		ssl_errstr(why, sizeof(why));
		err_set(err, ERR_INTERNAL, "cannot create TLS context: %s", why);
		goto fail;
	}
#ifdef SSL_OP_NO_RENEGOTIATION
	opts |= SSL_OP_NO_RENEGOTIATION;
#endif
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
	/* SMTP frames its own data; a missing close_notify is plain EOF. */
	opts |= SSL_OP_IGNORE_UNEXPECTED_EOF;
#endif
	SSL_CTX_set_options(tc->ctx, opts);
	SSL_CTX_set_verify(tc->ctx, SSL_VERIFY_PEER, verify_cb);
	if (set_min_version(tc, sh->tls_min_version, err) < 0 ||
	    load_trust(tc, sh, err) < 0 || load_client_cert(tc, sh, err) < 0)
		goto fail;
	settings_digest(tc, sh);
	return tc;
fail:
	tls_client_free(tc);
	ERR_clear_error();
	return NULL;
}

void
tls_client_free(struct tls_client *tc)
{
	if (tc == NULL)
		return;
	SSL_SESSION_free(tc->sess);
	SSL_CTX_free(tc->ctx);
	free(tc->cache_dir);
	free(tc->cache_file);
	free(tc->cache_name);
	secure_zero(tc, sizeof(*tc));
	free(tc);
}

/* ------------------------------------------------------------------ */
/* Verification                                                         */

/* Remember the first failure; fail the handshake only when strict. */
static int
verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *t = ssl ? SSL_get_app_data(ssl) : NULL;

	if (t == NULL)
		return ok;
	if (t->peer == NULL) {
		/* Keep the leaf: OpenSSL drops it when verification fails. */
		X509 *leaf = X509_STORE_CTX_get0_cert(xs);

		if (leaf != NULL && X509_up_ref(leaf) == 1)
			t->peer = leaf;
	}
	if (ok)
		return ok;
	if (t->first_err == 0) {
		t->first_err = X509_STORE_CTX_get_error(xs);
		t->first_depth = X509_STORE_CTX_get_error_depth(xs);
	}
	return t->tolerant;
}

/* Up to a few DNS/IP names from the certificate, for the mismatch
 * message; escaped because they come from the peer. */
static void
cert_names(X509 *x, char *out, size_t size)
{
	GENERAL_NAMES *names;
	int i, n, shown = 0;

	out[0] = '\0';
	if (x == NULL)
		return;
	names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	n = names ? sk_GENERAL_NAME_num(names) : 0;
	for (i = 0; i < n && shown < 4; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
		char esc[128], ip[64];

		if (g->type == GEN_DNS) {
			const ASN1_IA5STRING *s = g->d.dNSName;

			str_escape((const char *)ASN1_STRING_get0_data(s),
			    (size_t)ASN1_STRING_length(s), esc, sizeof(esc));
		} else if (g->type == GEN_IPADD) {
			const ASN1_OCTET_STRING *s = g->d.iPAddress;
			int len = ASN1_STRING_length(s), af;

			af = len == 4 ? AF_INET : len == 16 ? AF_INET6 : -1;
			if (af < 0 || inet_ntop(af, ASN1_STRING_get0_data(s),
			    ip, sizeof(ip)) == NULL)
				continue;
			str_copy(esc, ip, sizeof(esc));
		} else {
			continue;
		}
		if (shown++)
			str_append(out, ", ", size);
		str_append(out, esc, size);
	}
	if (i < n)
		str_append(out, ", ...", size);
	GENERAL_NAMES_free(names);
	if (shown == 0) {
		/* No usable subjectAltName: show the CN it has. */
		char cn[128];
		int len = X509_NAME_get_text_by_NID(X509_get_subject_name(x),
		    NID_commonName, cn, sizeof(cn));

		if (len > 0)
			str_escape(cn, (size_t)len, out, size);
	}
}

/* A specific reason for an X509_V_ERR_* code. */
static void
verify_reason(const struct tls_conn *t, int code, int depth, char *out,
    size_t size)
{
	char names[256];

	switch (code) {
	case X509_V_OK:
		str_copy(out, "ok", size);
		break;
	case X509_V_ERR_CERT_HAS_EXPIRED:
		str_fmt(out, size, "%scertificate has expired",
		    depth > 0 ? "CA " : "");
		break;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		str_fmt(out, size, "%scertificate is not yet valid",
		    depth > 0 ? "CA " : "");
		break;
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		cert_names(t->peer, names, sizeof(names));
		if (names[0])
			str_fmt(out, size, "certificate is for another host "
			    "(wanted %s, certificate names %s)", t->host, names);
		else
			str_fmt(out, size, "certificate is for another host "
			    "(wanted %s)", t->host);
		break;
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
		str_copy(out, "unknown certificate authority "
		    "(self-signed certificate)", size);
		break;
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
		str_copy(out, "unknown certificate authority "
		    "(self-signed certificate in chain)", size);
		break;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
		str_copy(out, "unknown certificate authority", size);
		break;
	default:
		str_fmt(out, size, "certificate verification failed: %s",
		    X509_verify_cert_error_string(code));
		break;
	}
}

/* The verdict as reported: the first error seen, else OpenSSL's result. */
static int
verify_code(const struct tls_conn *t, int *depth)
{
	*depth = t->first_depth;
	if (t->first_err != 0)
		return t->first_err;
	*depth = 0;
	return (int)SSL_get_verify_result(t->ssl);
}

/* ------------------------------------------------------------------ */
/* Waiting                                                              */

/* Wait for events on fd until deadline (now_ms); 0 ready, -1 timeout
 * (errno ETIMEDOUT) or poll failure. */
static int
wait_fd(int fd, short events, long long deadline)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		long long left = deadline - now_ms();
		int r;

		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		r = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

static long long
deadline_after(long secs)
{
	if (secs <= 0)
		secs = 1;
	if (secs > LLONG_MAX / 1000 / 2)
		secs = LLONG_MAX / 1000 / 2;
	return now_ms() + (long long)secs * 1000;
}

static int
timeout_err(struct err *err, long secs)
{
	return err_set(err, ERR_TEMP, "timeout after %ld second%s", secs,
	    secs == 1 ? "" : "s");
}

/* Turn SSL_get_error's answer into a wait: 0 to retry, -1 for a fatal
 * TLS error, -2 for a timeout or poll failure (errno says which). */
static int
ssl_wait(struct tls_conn *t, int code, long long deadline)
{
	if (code == SSL_ERROR_WANT_READ)
		return wait_fd(t->fd, POLLIN, deadline) < 0 ? -2 : 0;
	if (code == SSL_ERROR_WANT_WRITE)
		return wait_fd(t->fd, POLLOUT, deadline) < 0 ? -2 : 0;
	return -1;
}

/* Describe a fatal SSL_read/SSL_write/SSL_connect failure. */
static void
io_reason(struct tls_conn *t, int code, int saved_errno, char *out, size_t size)
{
	t->broken = 1;
	if (code == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
		if (saved_errno != 0)
			str_copy(out, strerror(saved_errno), size);
		else
			str_copy(out, "connection closed by the server", size);
		return;
	}
	ssl_errstr(out, size);
}

/* ------------------------------------------------------------------ */
/* Handshake                                                            */

static int
version_reason(int reason)
{
	switch (reason) {
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_NO_PROTOCOLS_AVAILABLE:
#ifdef SSL_R_VERSION_TOO_LOW
	case SSL_R_VERSION_TOO_LOW:
#endif
		return 1;
	}
	return 0;
}

/* Name a handshake failure from the error queue (not a certificate). */
static void
handshake_reason(struct tls_conn *t, const struct tls_client *tc, int code,
    int saved_errno, char *out, size_t size)
{
	unsigned long e = ERR_peek_last_error();
	int reason = ERR_GET_REASON(e);

	if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL && version_reason(reason)) {
		ERR_clear_error();
		t->broken = 1;
		str_fmt(out, size, "TLS version too old (the server does not "
		    "offer TLS %s or later)", tc->min_name);
		return;
	}
	if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL &&
	    reason == SSL_R_WRONG_VERSION_NUMBER) {
		ERR_clear_error();
		t->broken = 1;
		str_copy(out, "the server did not answer with TLS "
		    "(wrong version number)", size);
		return;
	}
	io_reason(t, code, saved_errno, out, size);
}

/* After the handshake: enforce the pin, then verification if strict. */
static int
check_peer(struct tls_conn *t, const struct tls_client *tc, char *why,
    size_t size)
{
	unsigned char md[PIN_LEN];
	int code, depth;

	if (t->peer == NULL) {
		str_copy(why, "the server sent no certificate", size);
		return -1;
	}
	if (tc->have_pin) {
		char got[80];

		if (cert_sha256(t->peer, md) < 0) {
			ERR_clear_error();
			str_copy(why, "cannot compute the certificate fingerprint", size);
			return -1;
		}
		if (CRYPTO_memcmp(md, tc->pin, PIN_LEN) != 0) {
			format_fingerprint(md, got, sizeof(got));
			str_fmt(why, size, "fingerprint mismatch (got %s)", got);
			return -1;
		}
		t->pin_ok = 1;
		return 0;
	}
	code = verify_code(t, &depth);
	if (tc->verify && code != X509_V_OK) {
		verify_reason(t, code, depth, why, size);
		return -1;
	}
	/* Resumed: OpenSSL checked no name; the certificate must still hold it. */
	if (tc->verify && t->resumed && !host_matches(t->peer, t->host)) {
		verify_reason(t, is_ip_literal(t->host) ?
		    X509_V_ERR_IP_ADDRESS_MISMATCH : X509_V_ERR_HOSTNAME_MISMATCH,
		    0, why, size);
		return -1;
	}
	return 0;
}

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#define PEER_CERT(ssl) SSL_get1_peer_certificate(ssl)
#else
#define PEER_CERT(ssl) SSL_get_peer_certificate(ssl)
#endif

/* Set SNI (names only) and the name or address the certificate must hold. */
static int
set_peer_name(struct tls_conn *t)
{
	if (is_ip_literal(t->host)) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);

		return X509_VERIFY_PARAM_set1_ip_asc(vp, t->host) == 1 ? 0 : -1;
	}
	if (SSL_set_tlsext_host_name(t->ssl, t->host) != 1)
		return -1;
	SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	return SSL_set1_host(t->ssl, t->host) == 1 ? 0 : -1;
}

static int
do_handshake(struct tls_conn *t, const struct tls_client *tc, long timeout,
    char *why, size_t size)
{
	long long deadline = deadline_after(timeout);

	for (;;) {
		int r, code, saved, w;

		ERR_clear_error();
		errno = 0;
		r = SSL_connect(t->ssl);
		saved = errno;
		if (r == 1)
			break;
		code = SSL_get_error(t->ssl, r);
		if ((w = ssl_wait(t, code, deadline)) == 0)
			continue;
		if (w == -2) {
			t->broken = 1;
			t->timed_out = 1;
			if (errno == ETIMEDOUT)
				str_fmt(why, size, "timeout after %ld second%s",
				    timeout, timeout == 1 ? "" : "s");
			else
				str_copy(why, strerror(errno), size);
			return -1;
		}
		/* A certificate rejected by the callback is the real reason. */
		if (t->first_err != 0 && !t->tolerant) {
			ERR_clear_error();
			t->broken = 1;
			verify_reason(t, t->first_err, t->first_depth, why, size);
		} else {
			handshake_reason(t, tc, code, saved, why, size);
		}
		return -1;
	}
	t->resumed = SSL_session_reused(t->ssl) == 1;
	if (SSL_version(t->ssl) < tc->min_version) {   /* never, but cheap */
		t->broken = 1;
		str_fmt(why, size, "TLS version too old (the server does not "
		    "offer TLS %s or later)", tc->min_name);
		return -1;
	}
	if (t->peer == NULL)
		t->peer = PEER_CERT(t->ssl);
	if (check_peer(t, tc, why, size) < 0)
		return -1;
	t->verified = 1;
	if (!t->resumed)
		t->verified_at = time(NULL);
	if (t->offered && !t->resumed)
		t->stale = 1;     /* the server did not take it */
	str_fmt(t->info, sizeof(t->info), "%s %s", SSL_get_version(t->ssl),
	    SSL_CIPHER_get_name(SSL_get_current_cipher(t->ssl)));
	log_debug("TLS with %s: %s, %s", t->host, t->info,
	    t->resumed ? "session resumed" : "full handshake");
	if (t->pending != NULL) {
		cache_store(t, t->pending);
		SSL_SESSION_free(t->pending);
		t->pending = NULL;
	}
	return 0;
}

struct tls_conn *
tls_connect(struct tls_client *tc, int fd, const char *host, long timeout,
    struct err *err)
{
	struct tls_conn *t = xcalloc(1, sizeof(*t));
	BIO *bio = NULL;
	char why[512];
	size_t len;

	t->tc = tc;
	t->fd = fd;
	tc->retry_full = 0;
	/* Verification failures must not abort the handshake when a pin
	 * decides or when the user turned verification off. */
	t->tolerant = tc->have_pin || !tc->verify;
	if (str_copy(t->host, host, sizeof(t->host)) < 0 || host[0] == '\0') {
		err_set(err, ERR_CONFIG, "TLS host name is empty or longer "
		    "than %d bytes", HOST_MAX - 1);
		free(t);
		return NULL;
	}
	len = strlen(t->host);
	if (len > 1 && t->host[len - 1] == '.')   /* SNI has no root dot */
		t->host[len - 1] = '\0';
	ERR_clear_error();
	if ((t->ssl = SSL_new(tc->ctx)) != NULL && (bio = sock_bio(t)) != NULL)
		SSL_set_bio(t->ssl, bio, bio);
	if (t->ssl == NULL || bio == NULL || set_peer_name(t) < 0) {
		ssl_errstr(why, sizeof(why));
		err_set(err, ERR_INTERNAL, "TLS setup for %s failed: %s",
		    t->host, why);
		t->broken = 1;
		tls_close(t);
		return NULL;
	}
	SSL_set_app_data(t->ssl, t);
	if (tc->cache_file != NULL && conn_digest(t) == 0) {
		t->cacheable = 1;
		cache_offer(t);
	}
	if (do_handshake(t, tc, timeout, why, sizeof(why)) < 0) {
		err_set(err, ERR_TEMP, "TLS handshake with %s failed: %s",
		    t->host, why);
		ERR_clear_error();
		if (t->offered) {
			cache_forget(t);
			/* No certificate came: it failed over the session. */
			tc->retry_full = !t->timed_out && t->peer == NULL;
		}
		tls_close(t);
		return NULL;
	}
	return t;
}

/* ------------------------------------------------------------------ */
/* Records                                                              */

ssize_t
tls_read(struct tls_conn *t, void *p, size_t n, long timeout, struct err *err)
{
	long long deadline = deadline_after(timeout);
	int len = n > INT_MAX ? INT_MAX : (int)n;
	char why[256];

	if (t->broken)
		return err_set(err, ERR_TEMP, "TLS connection is broken");
	for (;;) {
		int r, code, saved, w;

		ERR_clear_error();
		errno = 0;
		r = SSL_read(t->ssl, p, len);
		saved = errno;
		if (r > 0)
			return r;
		code = SSL_get_error(t->ssl, r);
		if (code == SSL_ERROR_ZERO_RETURN)
			return 0;
		if (code == SSL_ERROR_SYSCALL && saved == 0 &&
		    ERR_peek_error() == 0) {
			t->broken = 1;     /* EOF without close_notify */
			return 0;
		}
		if ((w = ssl_wait(t, code, deadline)) == 0)
			continue;
		if (w == -2) {
			if (errno == ETIMEDOUT)
				return timeout_err(err, timeout);
			return err_sys(err, ERR_TEMP, "poll");
		}
		io_reason(t, code, saved, why, sizeof(why));
		return err_set(err, ERR_TEMP, "TLS error: %s", why);
	}
}

int
tls_write(struct tls_conn *t, const void *p, size_t n, long timeout,
    struct err *err)
{
	long long deadline = deadline_after(timeout);
	const char *c = p;
	char why[256];

	if (t->broken)
		return err_set(err, ERR_TEMP, "TLS connection is broken");
	while (n > 0) {
		int len = n > INT_MAX ? INT_MAX : (int)n;
		int r, code, saved, w;

		ERR_clear_error();
		errno = 0;
		r = SSL_write(t->ssl, c, len);
		saved = errno;
		if (r > 0) {
			c += r;
			n -= (size_t)r;
			continue;
		}
		code = SSL_get_error(t->ssl, r);
		if ((w = ssl_wait(t, code, deadline)) == 0)
			continue;       /* retry with the same arguments */
		if (w == -2) {
			t->broken = 1;  /* a record may be half written */
			if (errno == ETIMEDOUT)
				return timeout_err(err, timeout);
			return err_sys(err, ERR_TEMP, "poll");
		}
		io_reason(t, code, saved, why, sizeof(why));
		return err_set(err, ERR_TEMP, "TLS error: %s", why);
	}
	return 0;
}

const char *
tls_info(const struct tls_conn *t)
{
	return t->info;
}

int
tls_resumed(const struct tls_conn *t)
{
	return t->resumed;
}

static void
bio_to_buf(BIO *bio, struct buf *out)
{
	char *p, esc[512];
	long len = BIO_get_mem_data(bio, &p);

	str_escape(p, len > 0 ? (size_t)len : 0, esc, sizeof(esc));
	buf_puts(out, esc);
	(void)BIO_reset(bio);
}

void
tls_describe_peer(const struct tls_conn *t, struct buf *out)
{
	unsigned char md[PIN_LEN];
	char fp[80], verdict[512];
	int code, depth;
	BIO *bio;

	if (t->peer == NULL || (bio = BIO_new(BIO_s_mem())) == NULL) {
		buf_puts(out, "no peer certificate\n");
		return;
	}
	buf_puts(out, "subject: ");
	X509_NAME_print_ex(bio, X509_get_subject_name(t->peer), 0, XN_FLAG_RFC2253);
	bio_to_buf(bio, out);
	buf_puts(out, "\nissuer: ");
	X509_NAME_print_ex(bio, X509_get_issuer_name(t->peer), 0, XN_FLAG_RFC2253);
	bio_to_buf(bio, out);
	buf_puts(out, "\nnot after: ");
	ASN1_TIME_print(bio, X509_get0_notAfter(t->peer));
	bio_to_buf(bio, out);
	BIO_free(bio);
	if (cert_sha256(t->peer, md) == 0)
		format_fingerprint(md, fp, sizeof(fp));
	else
		str_copy(fp, "(unavailable)", sizeof(fp));
	buf_printf(out, "\nfingerprint: %s\n", fp);
	code = verify_code(t, &depth);
	verify_reason(t, code, depth, verdict, sizeof(verdict));
	buf_printf(out, "verify: %s%s\n", verdict,
	    t->pin_ok ? " (accepted by fingerprint pin)" :
	    code != X509_V_OK ? " (accepted: tls_verify = no)" : "");
	ERR_clear_error();
}

/* One close_notify, waiting at most CLOSE_NOTIFY_WAIT for the socket. */
static void
send_close_notify(struct tls_conn *t)
{
	long long deadline = now_ms() + CLOSE_NOTIFY_WAIT;

	for (;;) {
		int r, code;

		ERR_clear_error();
		r = SSL_shutdown(t->ssl);
		if (r >= 0)        /* 0: sent, we do not wait for the peer's */
			break;
		code = SSL_get_error(t->ssl, r);
		if (code != SSL_ERROR_WANT_WRITE ||
		    wait_fd(t->fd, POLLOUT, deadline) < 0)
			break;
	}
	ERR_clear_error();
}

void
tls_close(struct tls_conn *t)
{
	if (t == NULL)
		return;
	if (t->ssl != NULL) {
		if (!t->broken && SSL_is_init_finished(t->ssl))
			send_close_notify(t);
		SSL_free(t->ssl);
	}
	/* Not replaced by a new session: a useless file is removed. */
	if (t->stale)
		cache_forget(t);
	SSL_SESSION_free(t->pending);
	X509_free(t->peer);
	ERR_clear_error();
	free(t);
}
