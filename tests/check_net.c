/*
 * check_net.c - net.c and tls.c against a real TLS server on loopback.
 * Certificates (a CA, a server certificate for localhost/127.0.0.1/::1,
 * an expired one, one for another name, a self-signed one and a second,
 * untrusted CA) are made with the openssl command at start-up in a fresh
 * directory. Each test forks a small server (OpenSSL used directly) that
 * accepts one connection and then echoes, sinks, sends canned bytes or
 * stays silent (or serves several connections with one TLS context, for
 * session resumption). Only 127.0.0.1 and ::1 are ever contacted.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config.h"
#include "net.h"
#include "tls.h"
#include "util.h"

#define TIMEOUT 10

static char dir[] = "/tmp/check_net.XXXXXX";
static char self_pin[128];           /* "sha256:AB:CD:..." from the CLI */

static char *
path(const char *name)
{
	static char bufs[8][512];
	static int i;
	char *p = bufs[i++ % 8];

	snprintf(p, 512, "%s/%s", dir, name);
	return p;
}

/* ------------------------------------------------------------------ */
/* Certificates                                                         */

static void sh(const char *fmt, ...) PRINTF_LIKE(1, 2);

static void
sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	if (rc != 0) {
		fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
		exit(EXIT_FAILURE);
	}
}

static void
write_text(const char *name, const char *text)
{
	FILE *f = fopen(path(name), "w");

	if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
		perror(name);
		exit(EXIT_FAILURE);
	}
}

#define KEYOPT "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
#define QUIET ">/dev/null 2>&1"

static void
make_ca(const char *name, const char *cn)
{
	sh("cd %s && openssl req -x509 " KEYOPT " -keyout %s.key -out %s.crt "
	    "-days 3650 -subj '/CN=%s' -addext basicConstraints=critical,CA:TRUE "
	    "-addext keyUsage=critical,keyCertSign,cRLSign " QUIET,
	    dir, name, name, cn);
}

static void
make_leaf(const char *name, const char *cn, const char *san, int serial)
{
	char ext[256], text[256];

	snprintf(ext, sizeof(ext), "%s.ext", name);
	snprintf(text, sizeof(text),
	    "subjectAltName=%s\nbasicConstraints=CA:FALSE\n", san);
	write_text(ext, text);
	sh("cd %s && openssl req -new " KEYOPT " -keyout %s.key -out %s.csr "
	    "-subj '/CN=%s' " QUIET, dir, name, name, cn);
	sh("cd %s && openssl x509 -req -in %s.csr -CA ca.crt -CAkey ca.key "
	    "-set_serial %d -days 3650 -extfile %s -out %s.crt " QUIET,
	    dir, name, serial, ext, name);
}

/* x509 cannot back-date; "openssl ca" takes explicit dates. */
static void
make_expired(void)
{
	char cnf[2048];

	snprintf(cnf, sizeof(cnf),
	    "[ca]\ndefault_ca = d\n[d]\ndatabase = %s/index.txt\n"
	    "new_certs_dir = %s\ncertificate = %s/ca.crt\n"
	    "private_key = %s/ca.key\nserial = %s/serial\ndefault_md = sha256\n"
	    "policy = p\nunique_subject = no\n[p]\ncommonName = supplied\n",
	    dir, dir, dir, dir, dir);
	write_text("ca.cnf", cnf);
	write_text("index.txt", "");
	write_text("serial", "1000\n");
	write_text("expired.ext", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
	    "basicConstraints=CA:FALSE\n");
	sh("cd %s && openssl req -new " KEYOPT " -keyout expired.key "
	    "-out expired.csr -subj /CN=localhost " QUIET, dir);
	sh("cd %s && openssl ca -batch -config ca.cnf -in expired.csr "
	    "-out expired.crt -startdate 20200101000000Z -enddate "
	    "20200102000000Z -extfile expired.ext -notext " QUIET, dir);
}

static void
make_certs(void)
{
	char cmd[1024], *eq;
	FILE *p;

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		exit(EXIT_FAILURE);
	}
	make_ca("ca", "relayq test CA");
	make_ca("ca2", "untrusted test CA");
	make_leaf("good", "localhost", "DNS:localhost,IP:127.0.0.1,IP:::1", 2);
	make_leaf("wrong", "wrong.example.com", "DNS:wrong.example.com", 3);
	make_expired();
	sh("cd %s && openssl req -x509 " KEYOPT " -keyout self.key -out self.crt "
	    "-days 3650 -subj /CN=localhost "
	    "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
	    "-addext basicConstraints=critical,CA:FALSE " QUIET, dir);
	/* The pin as a user would copy it: "sha256 Fingerprint=AB:CD:..". */
	snprintf(cmd, sizeof(cmd), "openssl x509 -noout -fingerprint -sha256 "
	    "-in %s", path("self.crt"));
	if ((p = popen(cmd, "r")) == NULL || fgets(cmd, sizeof(cmd), p) == NULL ||
	    (eq = strchr(cmd, '=')) == NULL) {
		fprintf(stderr, "cannot read the fingerprint\n");
		exit(EXIT_FAILURE);
	}
	pclose(p);
	eq[strcspn(eq, "\r\n")] = '\0';
	snprintf(self_pin, sizeof(self_pin), "sha256:%s", eq + 1);
}

static void
remove_certs(void)
{
	sh("rm -rf '%s'", dir);
}

/* ------------------------------------------------------------------ */
/* The server                                                           */

enum action {
	ECHO,       /* echo every byte back */
	SILENT,     /* read until EOF, say nothing */
	SEND,       /* send the canned bytes, then read until EOF */
	SEND_CLOSE, /* send the canned bytes, then close */
	SINK,       /* read up to "\r\n.\r\n", answer "250 <bytes> <sum>" */
	CLOSE,      /* close at once (after TLS, if any) */
};

struct server {
	int family;                  /* AF_INET (default) or AF_INET6 */
	int tls;                     /* 0 plain, 1 TLS at once, 2 STARTTLS */
	const char *cert;            /* base name: "good" -> good.crt/.key */
	int max_version;             /* 0 or TLS1_2_VERSION ... */
	int client_ca;               /* require a client cert from ca.crt */
	const char *inject;          /* plaintext sent after "220 go ahead" */
	enum action action;
	const char *data;            /* for SEND and SEND_CLOSE */
	size_t datalen;
	int conns;                   /* connections served, one at a time; 0 = 1 */
	unsigned long ssl_opts;      /* SSL_OP_* added on the server */
};

static pid_t server_pid = -1;

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#define PEER_CERT(ssl) SSL_get1_peer_certificate(ssl)
#else
#define PEER_CERT(ssl) SSL_get_peer_certificate(ssl)
#endif

struct sio {
	int fd;
	SSL *ssl;
};

static ssize_t
sio_read(struct sio *s, void *p, size_t n)
{
	if (s->ssl)
		return SSL_read(s->ssl, p, (int)n);
	return read(s->fd, p, n);
}

static int
sio_write(struct sio *s, const void *p, size_t n)
{
	if (s->ssl)
		return SSL_write(s->ssl, p, (int)n) == (int)n ? 0 : -1;
	return write_all(s->fd, p, n);
}

/* Read one plaintext line byte by byte (never into the TLS handshake). */
static void
read_plain_line(int fd, char *line, size_t size)
{
	size_t n = 0;
	char ch;

	while (n + 1 < size && read(fd, &ch, 1) == 1 && ch != '\n')
		line[n++] = ch;
	line[n] = '\0';
}

/* One context for every connection, so that sessions resume. */
static SSL *
server_tls(const struct server *o, int fd)
{
	static SSL_CTX *ctx;
	char crt[600], key[600];
	SSL *ssl;

	if (ctx != NULL)
		goto made;
	ctx = SSL_CTX_new(TLS_server_method());

	snprintf(crt, sizeof(crt), "%s/%s.crt", dir, o->cert);
	snprintf(key, sizeof(key), "%s/%s.key", dir, o->cert);
	if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, crt) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		_exit(3);
	if (o->max_version)
		SSL_CTX_set_max_proto_version(ctx, o->max_version);
	if (o->max_version && o->max_version < TLS1_2_VERSION) {
		/* A museum piece: let this side speak TLS 1.0/1.1 at all. */
		SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
		SSL_CTX_set_security_level(ctx, 0);
		SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
	}
	if (o->client_ca) {
		if (SSL_CTX_load_verify_locations(ctx, path("ca.crt"), NULL) != 1)
			_exit(3);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
		    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	SSL_CTX_set_options(ctx, o->ssl_opts);
made:
	if ((ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1)
		_exit(3);
	if (SSL_accept(ssl) != 1) {
		if (o->conns > 1) {     /* the next connection may do better */
			SSL_free(ssl);
			return NULL;
		}
		_exit(4);
	}
	return ssl;
}

static void
server_act(const struct server *o, struct sio *s)
{
	char buf[16384], tail[5] = { 0 };
	unsigned long long bytes = 0, sum = 0;
	ssize_t r;

	if (o->client_ca) {
		X509 *peer = PEER_CERT(s->ssl);
		char cn[256] = "", line[300];

		if (peer)
			X509_NAME_get_text_by_NID(X509_get_subject_name(peer),
			    NID_commonName, cn, sizeof(cn));
		snprintf(line, sizeof(line), "client CN=%s\r\n", cn);
		sio_write(s, line, strlen(line));
		X509_free(peer);
	}
	switch (o->action) {
	case ECHO:
		while ((r = sio_read(s, buf, sizeof(buf))) > 0)
			if (sio_write(s, buf, (size_t)r) < 0)
				break;
		break;
	case SEND_CLOSE:
		sio_write(s, o->data, o->datalen);
		break;
	case SEND:
		sio_write(s, o->data, o->datalen);
		/* FALLTHROUGH */
	case SILENT:
		while (sio_read(s, buf, sizeof(buf)) > 0)
			;
		break;
	case SINK:
		while ((r = sio_read(s, buf, sizeof(buf))) > 0) {
			for (ssize_t i = 0; i < r; i++) {
				unsigned char c = (unsigned char)buf[i];

				bytes++;
				sum = sum * 31 + c;
				memmove(tail, tail + 1, 4);
				tail[4] = (char)c;
			}
			if (bytes >= 5 && memcmp(tail, "\r\n.\r\n", 5) == 0) {
				snprintf(buf, sizeof(buf), "250 %llu %llu\r\n",
				    bytes, sum);
				sio_write(s, buf, strlen(buf));
			}
		}
		break;
	case CLOSE:
		break;
	}
}

static void
server_child(const struct server *o, int lfd)
{
	struct sio s = { -1, NULL };
	char line[256];

	alarm(20);    /* never outlive a broken test */
	for (int n = 1; n < o->conns; n++) {
		if ((s.fd = accept(lfd, NULL, NULL)) < 0)
			_exit(2);
		if ((s.ssl = server_tls(o, s.fd)) != NULL) {
			server_act(o, &s);
			SSL_shutdown(s.ssl);
			SSL_free(s.ssl);
		}
		close(s.fd);
	}
	if ((s.fd = accept(lfd, NULL, NULL)) < 0)
		_exit(2);
	close(lfd);
	if (o->tls == 2) {
		write_all(s.fd, "220 ready\r\n", 11);
		read_plain_line(s.fd, line, sizeof(line));
		if (strcmp(line, "STARTTLS\r") != 0)
			_exit(5);
		if (o->inject) {
			/* The attack: a forged reply in the same segment as the
			 * real one, to be read later as if it came over TLS. */
			char both[256];

			snprintf(both, sizeof(both), "220 go ahead\r\n%s", o->inject);
			write_all(s.fd, both, strlen(both));
			while (read(s.fd, line, sizeof(line)) > 0)
				;
			_exit(0);
		}
		write_all(s.fd, "220 go ahead\r\n", 14);
	}
	if (o->tls)
		s.ssl = server_tls(o, s.fd);
	server_act(o, &s);
	if (s.ssl && o->action != CLOSE)
		SSL_shutdown(s.ssl);
	_exit(0);
}

/* Listen on an ephemeral loopback port, fork the server, return the port
 * (0 when the address family is not available). */
static int
server_start(const struct server *o)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int family = o->family ? o->family : AF_INET;
	int lfd = socket(family, SOCK_STREAM, 0), port;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	}
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&ss, family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in)) < 0) {
		ck_assert_int_eq(family, AF_INET6);
		if (lfd >= 0)
			close(lfd);
		return 0;
	}
	ck_assert_int_eq(listen(lfd, 4), 0);
	ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&ss, &len), 0);
	port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
	    ((struct sockaddr_in *)&ss)->sin_port);
	server_pid = fork();
	ck_assert_int_ge(server_pid, 0);
	if (server_pid == 0)
		server_child(o, lfd);
	close(lfd);
	return port;
}

/* Reap the server; its exit status. */
static int
server_wait(void)
{
	int status = -1;

	if (server_pid > 0) {
		waitpid(server_pid, &status, 0);
		server_pid = -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ------------------------------------------------------------------ */
/* Client helpers                                                       */

static void
smarthost_init(struct smarthost *h)
{
	memset(h, 0, sizeof(*h));
	h->host = "127.0.0.1";
	h->tls_verify = 1;
	h->tls_ca_file = path("ca.crt");
}

static struct conn *
connect_ok(const char *host, int port)
{
	struct err err = { 0 };
	struct conn *c = net_connect(host, port, TIMEOUT, TIMEOUT, &err);

	ck_assert_msg(c != NULL, "connect %s:%d: %s", host, port, err.msg);
	return c;
}

static void
expect_line(struct conn *c, const char *want)
{
	struct err err = { 0 };
	char line[NET_LINE_MAX + 1];
	size_t len = 0;

	ck_assert_msg(conn_read_line(c, line, sizeof(line), &len, &err) == 0,
	    "read: %s", err.msg);
	ck_assert_str_eq(line, want);
	ck_assert_uint_eq(len, strlen(want));
}

static void
send_str(struct conn *c, const char *s)
{
	struct err err = { 0 };

	ck_assert_msg(conn_write(c, s, strlen(s), &err) == 0, "write: %s", err.msg);
	ck_assert_msg(conn_flush(c, &err) == 0, "flush: %s", err.msg);
}

static void
assert_contains(const char *hay, const char *needle)
{
	ck_assert_msg(strstr(hay, needle) != NULL, "\"%s\" does not contain "
	    "\"%s\"", hay, needle);
}

/* ------------------------------------------------------------------ */
/* Handshake and verification                                           */

enum pin { NO_PIN, RIGHT_PIN, WRONG_PIN };

static const struct hs_case {
	const char *cert;        /* what the server presents */
	const char *ca;          /* tls_ca_file */
	const char *host;        /* verified name */
	int verify;
	enum pin pin;
	const char *min;         /* tls_min_version */
	int srv_max;
	int starttls;
	const char *expect;      /* NULL: success; else in the error */
	const char *verdict;     /* in tls_describe_peer's "verify:" line */
} hs_cases[] = {
	{ "good", "ca.crt", "localhost", 1, NO_PIN, NULL, 0, 1, NULL, "verify: ok" },
	{ "good", "ca.crt", "127.0.0.1", 1, NO_PIN, NULL, 0, 0, NULL, "verify: ok" },
	{ "good", "ca.crt", "localhost", 1, NO_PIN, "1.3", 0, 0, NULL, "verify: ok" },
	{ "expired", "ca.crt", "localhost", 1, NO_PIN, NULL, 0, 1,
	  "certificate has expired", NULL },
	{ "wrong", "ca.crt", "localhost", 1, NO_PIN, NULL, 0, 0,
	  "certificate is for another host (wanted localhost, certificate "
	  "names wrong.example.com)", NULL },
	{ "wrong", "ca.crt", "127.0.0.1", 1, NO_PIN, NULL, 0, 0,
	  "certificate is for another host (wanted 127.0.0.1", NULL },
	{ "good", "ca2.crt", "localhost", 1, NO_PIN, NULL, 0, 1,
	  "failed: unknown certificate authority", NULL },
	{ "self", "ca.crt", "localhost", 1, NO_PIN, NULL, 0, 0,
	  "unknown certificate authority (self-signed certificate)", NULL },
	{ "self", "ca.crt", "localhost", 1, RIGHT_PIN, NULL, 0, 1, NULL,
	  "(accepted by fingerprint pin)" },
	{ "self", "ca.crt", "localhost", 1, WRONG_PIN, NULL, 0, 0,
	  "fingerprint mismatch (got sha256:", NULL },
	/* A pin mismatch fails even when the chain is fine or unchecked. */
	{ "good", "ca.crt", "localhost", 1, WRONG_PIN, NULL, 0, 0,
	  "fingerprint mismatch (got sha256:", NULL },
	{ "self", "ca.crt", "localhost", 0, WRONG_PIN, NULL, 0, 0,
	  "fingerprint mismatch", NULL },
	/* tls_verify = no: accepted, the verdict still reported. */
	{ "good", "ca2.crt", "localhost", 0, NO_PIN, NULL, 0, 1, NULL,
	  "verify: unknown certificate authority (accepted: tls_verify = no)" },
	{ "expired", "ca.crt", "localhost", 0, NO_PIN, NULL, 0, 0, NULL,
	  "verify: certificate has expired (accepted" },
	{ "wrong", "ca.crt", "localhost", 0, NO_PIN, NULL, 0, 0, NULL,
	  "verify: certificate is for another host" },
	{ "good", "ca.crt", "localhost", 1, NO_PIN, "1.3", TLS1_2_VERSION, 0,
	  "TLS version too old (the server does not offer TLS 1.3", NULL },
	{ "good", "ca.crt", "localhost", 1, NO_PIN, NULL, TLS1_1_VERSION, 1,
	  "TLS version too old (the server does not offer TLS 1.2", NULL },
};

static void
set_pin(struct smarthost *h, enum pin pin, char *buf, size_t size)
{
	if (pin == NO_PIN)
		return;
	snprintf(buf, size, "%s", self_pin);
	if (pin == WRONG_PIN)   /* flip the first hex digit */
		buf[7] = buf[7] == '0' ? '1' : '0';
	h->tls_fingerprint = buf;
}

START_TEST(test_handshake)
{
	const struct hs_case *t = &hs_cases[_i];
	struct server srv = { .tls = t->starttls ? 2 : 1, .cert = t->cert,
	    .max_version = t->srv_max, .action = ECHO };
	struct smarthost h;
	struct tls_client *tc;
	struct conn *c;
	struct err err = { 0 };
	char pin[128], prefix[128];
	int port, rc;

	smarthost_init(&h);
	h.tls_ca_file = path(t->ca);
	h.tls_verify = t->verify;
	h.tls_min_version = (char *)t->min;
	set_pin(&h, t->pin, pin, sizeof(pin));
	tc = tls_client_new(&h, &err);
	ck_assert_msg(tc != NULL, "tls_client_new: %s", err.msg);
	port = server_start(&srv);
	c = connect_ok("127.0.0.1", port);
	if (t->starttls) {
		expect_line(c, "220 ready");
		send_str(c, "STARTTLS\r\n");
		expect_line(c, "220 go ahead");
	}
	ck_assert(!conn_is_tls(c));
	ck_assert_str_eq(conn_tls_info(c), "");
	rc = conn_starttls(c, tc, t->host, &err);
	if (t->expect == NULL) {
		struct buf desc;

		ck_assert_msg(rc == 0, "case %d: %s", _i, err.msg);
		ck_assert(conn_is_tls(c));
		ck_assert_msg(strncmp(conn_tls_info(c), "TLSv1.", 6) == 0 &&
		    strchr(conn_tls_info(c), ' ') != NULL, "info \"%s\"",
		    conn_tls_info(c));
		if (t->min && strcmp(t->min, "1.3") == 0)
			ck_assert(strncmp(conn_tls_info(c), "TLSv1.3 ", 8) == 0);
		send_str(c, "hello over TLS\r\n");
		expect_line(c, "hello over TLS");
		buf_init(&desc, 0);
		tls_describe_peer(conn_tls(c), &desc);
		assert_contains(desc.data, strcmp(t->cert, "wrong") == 0 ?
		    "subject: CN=wrong.example.com\n" : "subject: CN=localhost\n");
		assert_contains(desc.data, strcmp(t->cert, "self") == 0 ?
		    "\nissuer: CN=localhost\n" : "\nissuer: CN=relayq test CA\n");
		assert_contains(desc.data, "\nfingerprint: sha256:");
		assert_contains(desc.data, "\nnot after: ");
		assert_contains(desc.data, t->verdict);
		if (strcmp(t->cert, "self") == 0) {
			/* Same digest as the CLI's, in our lower-case form. */
			char want[80];
			size_t n = 0;

			for (const char *p = self_pin + 7; *p; p++)
				if (*p != ':')
					want[n++] = (char)(*p | 0x20);
			want[n] = '\0';
			assert_contains(desc.data, want);
		}
		buf_free(&desc);
	} else {
		ck_assert_msg(rc == -1, "case %d succeeded", _i);
		ck_assert_int_eq(err.cls, ERR_TEMP);
		snprintf(prefix, sizeof(prefix), "TLS handshake with %s failed: ",
		    t->host);
		ck_assert_msg(strncmp(err.msg, prefix, strlen(prefix)) == 0,
		    "\"%s\"", err.msg);
		assert_contains(err.msg, t->expect);
		ck_assert(!conn_is_tls(c));
		/* Nothing of this failure leaks into the next connection. */
		ck_assert_uint_eq(ERR_peek_error(), 0);
	}
	conn_close(c);
	tls_client_free(tc);
	server_wait();
}
END_TEST

/* The mismatch message names what the server really has, so the user
 * can check it and copy it into tls_fingerprint. */
START_TEST(test_pin_mismatch_names_fingerprint)
{
	struct server srv = { .tls = 1, .cert = "self", .action = ECHO };
	struct smarthost h;
	struct tls_client *tc;
	struct conn *c;
	struct err err = { 0 };
	char pin[128], got[80];
	const char *p;
	size_t n = 0;

	smarthost_init(&h);
	set_pin(&h, WRONG_PIN, pin, sizeof(pin));
	ck_assert_ptr_nonnull(tc = tls_client_new(&h, &err));
	c = connect_ok("127.0.0.1", server_start(&srv));
	ck_assert_int_eq(conn_starttls(c, tc, "localhost", &err), -1);
	ck_assert_ptr_nonnull(p = strstr(err.msg, "(got sha256:"));
	str_copy(got, p + 5, sizeof(got));
	got[strcspn(got, ")")] = '\0';
	conn_close(c);
	tls_client_free(tc);
	server_wait();
	ck_assert_uint_eq(strlen(got), 7 + 64);
	for (p = self_pin + 7; *p; p++)
		if (*p != ':')
			ck_assert_int_eq(got[7 + n++], *p | 0x20);
	ck_assert_uint_eq(n, 64);

	/* And the reported value, pasted back, is accepted. */
	h.tls_fingerprint = got;
	ck_assert_ptr_nonnull(tc = tls_client_new(&h, &err));
	c = connect_ok("127.0.0.1", server_start(&srv));
	ck_assert_msg(conn_starttls(c, tc, "localhost", &err) == 0, "%s", err.msg);
	conn_close(c);
	tls_client_free(tc);
	server_wait();
}
END_TEST

START_TEST(test_starttls_injection)
{
	struct server srv = { .tls = 2, .cert = "good",
	    .inject = "250 injected\r\n" };
	struct smarthost h;
	struct tls_client *tc;
	struct conn *c;
	struct err err = { 0 };
	int port;

	smarthost_init(&h);
	ck_assert_ptr_nonnull(tc = tls_client_new(&h, &err));
	port = server_start(&srv);
	c = connect_ok("127.0.0.1", port);
	expect_line(c, "220 ready");
	send_str(c, "STARTTLS\r\n");
	expect_line(c, "220 go ahead");
	ck_assert_uint_eq(conn_pending(c), strlen(srv.inject));
	ck_assert_int_eq(conn_starttls(c, tc, "localhost", &err), -1);
	ck_assert_int_eq(err.cls, ERR_PROTO);
	assert_contains(err.msg, "plaintext data after STARTTLS reply "
	    "(possible injection)");
	ck_assert(!conn_is_tls(c));
	conn_close(c);
	tls_client_free(tc);
	server_wait();
}
END_TEST

/* tls = smtps against a plain SMTP port: say so, not "wrong version". */
START_TEST(test_not_tls)
{
	struct server srv = { .action = SEND, .data = "220 plain SMTP here\r\n",
	    .datalen = 21 };
	struct smarthost h;
	struct tls_client *tc;
	struct conn *c;
	struct err err = { 0 };

	smarthost_init(&h);
	ck_assert_ptr_nonnull(tc = tls_client_new(&h, &err));
	c = connect_ok("127.0.0.1", server_start(&srv));
	ck_assert_int_eq(conn_starttls(c, tc, "localhost", &err), -1);
	ck_assert_int_eq(err.cls, ERR_TEMP);
	ck_assert_str_eq(err.msg, "TLS handshake with localhost failed: the "
	    "server did not answer with TLS (wrong version number)");
	conn_close(c);
	tls_client_free(tc);
	server_wait();
}
END_TEST

START_TEST(test_client_cert)
{
	struct server srv = { .tls = 1, .cert = "good", .client_ca = 1,
	    .action = ECHO };
	struct smarthost h;
	struct tls_client *tc;
	struct conn *c;
	struct err err = { 0 };
	char line[256];
	size_t len;

	smarthost_init(&h);
	h.tls_cert_file = path("wrong.crt");
	h.tls_key_file = path("wrong.key");
	ck_assert_msg((tc = tls_client_new(&h, &err)) != NULL, "%s", err.msg);
	c = connect_ok("127.0.0.1", server_start(&srv));
	ck_assert_msg(conn_starttls(c, tc, "localhost", &err) == 0, "%s", err.msg);
	expect_line(c, "client CN=wrong.example.com");
	send_str(c, "ping\r\n");
	expect_line(c, "ping");
	conn_close(c);
	tls_client_free(tc);
	ck_assert_int_eq(server_wait(), 0);

	/* Without one the server refuses; with TLS 1.3 the client learns
	 * it on its first read, as a TLS error naming the peer. */
	smarthost_init(&h);
	ck_assert_ptr_nonnull(tc = tls_client_new(&h, &err));
	c = connect_ok("127.0.0.1", server_start(&srv));
	if (conn_starttls(c, tc, "localhost", &err) == 0) {
		ck_assert_int_eq(conn_read_line(c, line, sizeof(line), &len, &err), -1);
		ck_assert_int_eq(err.cls, ERR_TEMP);
		assert_contains(err.msg, "TLS error: ");
		assert_contains(err.msg, " reading from 127.0.0.1[127.0.0.1]:");
	} else {
		ck_assert_int_eq(err.cls, ERR_TEMP);
	}
	conn_close(c);
	tls_client_free(tc);
	ck_assert_int_ne(server_wait(), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Context configuration                                                */

static const struct cfg_case {
	const char *min, *pin, *ca, *cert, *key;
	int ok;
	const char *expect;
} cfg_cases[] = {
	{ NULL, NULL, "ca.crt", NULL, NULL, 1, NULL },
	{ "1.2", NULL, "ca.crt", NULL, NULL, 1, NULL },
	{ "1.3", NULL, "ca.crt", NULL, NULL, 1, NULL },
	{ "1.1", NULL, "ca.crt", NULL, NULL, 0, "tls_min_version \"1.1\"" },
	{ "TLSv1.2", NULL, "ca.crt", NULL, NULL, 0, "tls_min_version" },
	{ NULL, "sha256:00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF",
	  "ca.crt", NULL, NULL, 1, NULL },
	{ NULL, "SHA256:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:"
	  "44:55:66:77:88:99:AA:BB:CC:DD:EE:FF", "ca.crt", NULL, NULL, 1, NULL },
	{ NULL, "sha256:0011", "ca.crt", NULL, NULL, 0, "tls_fingerprint" },
	{ NULL, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	  "ca.crt", NULL, NULL, 0, "tls_fingerprint" },
	{ NULL, "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00",
	  "ca.crt", NULL, NULL, 0, "tls_fingerprint" },
	{ NULL, "sha256:0g112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	  "ca.crt", NULL, NULL, 0, "tls_fingerprint" },
	{ NULL, "sha256:00:1122:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:"
	  "44:55:66:77:88:99:AA:BB:CC:DD:EE:FF", "ca.crt", NULL, NULL, 0, "tls_fingerprint" },
	{ NULL, NULL, "missing.crt", NULL, NULL, 0, "tls_ca_file " },
	{ NULL, NULL, "good.key", NULL, NULL, 0, "cannot load tls_ca_file" },
	{ NULL, NULL, "ca.crt", "good.crt", "good.key", 1, NULL },
	{ NULL, NULL, "ca.crt", "good.crt", "self.key", 0, "does not match" },
	{ NULL, NULL, "ca.crt", NULL, "good.key", 0, "tls_cert_file is not" },
	{ NULL, NULL, "ca.crt", "missing.crt", "good.key", 0, "tls_cert_file " },
	{ NULL, NULL, "ca.crt", "good.crt", "missing.key", 0, "tls_key_file " },
};

START_TEST(test_client_config)
{
	const struct cfg_case *t = &cfg_cases[_i];
	struct smarthost h;
	struct tls_client *tc;
	struct err err = { 0 };

	smarthost_init(&h);
	h.tls_min_version = (char *)t->min;
	h.tls_fingerprint = (char *)t->pin;
	h.tls_ca_file = path(t->ca);
	h.tls_cert_file = t->cert ? path(t->cert) : NULL;
	h.tls_key_file = t->key ? path(t->key) : NULL;
	tc = tls_client_new(&h, &err);
	if (t->ok) {
		ck_assert_msg(tc != NULL, "case %d: %s", _i, err.msg);
		tls_client_free(tc);
	} else {
		ck_assert_msg(tc == NULL, "case %d accepted", _i);
		ck_assert_int_eq(err.cls, ERR_CONFIG);
		assert_contains(err.msg, t->expect);
	}
	ck_assert_uint_eq(ERR_peek_error(), 0);
}
END_TEST

/* No tls_ca_file: the system store is used, and our test CA is not in it. */
START_TEST(test_system_store)
{
	struct server srv = { .tls = 1, .cert = "good", .action = ECHO };
	struct smarthost h;
	struct tls_client *tc;
	struct conn *c;
	struct err err = { 0 };

	smarthost_init(&h);
	h.tls_ca_file = NULL;
	ck_assert_msg((tc = tls_client_new(&h, &err)) != NULL, "%s", err.msg);
	c = connect_ok("127.0.0.1", server_start(&srv));
	ck_assert_int_eq(conn_starttls(c, tc, "localhost", &err), -1);
	assert_contains(err.msg, "unknown certificate authority");
	conn_close(c);
	tls_client_free(tc);
	server_wait();
}
END_TEST

/* A directory with our CA linked by its hash, as update-ca-certificates
 * keeps /etc/ssl/certs. */
static const char *
hashed_dir(void)
{
	const char *d = path("hashed");

	sh("mkdir -p %s && ln -sf %s %s/$(openssl x509 -hash -noout -in %s).0",
	    d, path("ca.crt"), d, path("ca.crt"));
	return d;
}

/*
 * Without a CA setting the system store is OpenSSL's hashed directory,
 * read lazily ($SSL_CERT_DIR here, as for any program that is not
 * setgid): our CA, linked there by hash, is trusted.
 */
START_TEST(test_system_store_hashed_dir)
{
	struct server srv = { .tls = 1, .cert = "good", .action = ECHO };
	const char *d = hashed_dir();
	struct smarthost h;
	struct tls_client *tc;
	struct conn *c;
	struct err err = { 0 };

	setenv("SSL_CERT_DIR", d, 1);
	unsetenv("SSL_CERT_FILE");
	ck_assert_str_eq(tls_system_dir(), d);
	smarthost_init(&h);
	h.tls_ca_file = NULL;
	ck_assert_msg((tc = tls_client_new(&h, &err)) != NULL, "%s", err.msg);
	c = connect_ok("127.0.0.1", server_start(&srv));
	ck_assert_msg(conn_starttls(c, tc, "localhost", &err) == 0, "%s", err.msg);
	conn_close(c);
	tls_client_free(tc);
	server_wait();
	unsetenv("SSL_CERT_DIR");
}
END_TEST

/* The hashed directory only when it has certificates by hash and no
 * bundle is named: else OpenSSL's default paths, bundle included. */
START_TEST(test_system_dir_choice)
{
	const char *hashed = hashed_dir(), *plain = path("plain");
	char list[1100];

	unsetenv("SSL_CERT_FILE");
	sh("mkdir -p %s && touch %s/README %s/0123abcd.x %s/0123abcd.r0",
	    plain, plain, plain, plain);
	setenv("SSL_CERT_DIR", plain, 1);
	ck_assert_ptr_null(tls_system_dir());
	setenv("SSL_CERT_DIR", path("missing"), 1);
	ck_assert_ptr_null(tls_system_dir());
	snprintf(list, sizeof(list), "%s:%s", plain, hashed);
	setenv("SSL_CERT_DIR", list, 1);
	ck_assert_str_eq(tls_system_dir(), list);
	setenv("SSL_CERT_FILE", path("ca.crt"), 1);
	ck_assert_ptr_null(tls_system_dir());
	unsetenv("SSL_CERT_FILE");
	unsetenv("SSL_CERT_DIR");
}
END_TEST

/* ------------------------------------------------------------------ */
/* Connecting                                                           */

START_TEST(test_connect_refused)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	struct err err = { 0 };
	char want[128];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	/* Bound but not listening: the port is ours and certainly closed. */
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	ck_assert_ptr_null(net_connect("127.0.0.1", ntohs(sin.sin_port), 5, 5, &err));
	ck_assert_int_eq(err.cls, ERR_TEMP);
	snprintf(want, sizeof(want), "connect to 127.0.0.1[127.0.0.1]:%d: "
	    "Connection refused", ntohs(sin.sin_port));
	ck_assert_str_eq(err.msg, want);
	close(fd);
}
END_TEST

START_TEST(test_connect_bad_args)
{
	struct err err = { 0 };
	char name[80];

	/* A 64-byte label cannot be put in a DNS query: no packet leaves. */
	memset(name, 'a', 64);
	str_copy(name + 64, ".invalid", sizeof(name) - 64);
	ck_assert_ptr_null(net_connect(name, 25, 5, 5, &err));
	ck_assert_int_eq(err.cls, ERR_TEMP);
	ck_assert_msg(strncmp(err.msg, "cannot resolve aaaa", 19) == 0 &&
	    strstr(err.msg, ".invalid: ") != NULL, "%s", err.msg);
	ck_assert_ptr_null(net_connect("127.0.0.1", 0, 5, 5, &err));
	ck_assert_int_eq(err.cls, ERR_CONFIG);
	ck_assert_ptr_null(net_connect("127.0.0.1", 65536, 5, 5, &err));
	ck_assert_int_eq(err.cls, ERR_CONFIG);
	ck_assert_ptr_null(net_connect("", 25, 5, 5, &err));
	ck_assert_int_eq(err.cls, ERR_CONFIG);
}
END_TEST

static const char *const loop_hosts[] = { "localhost", "127.0.0.1", "::1" };

/* Every loopback spelling connects (even when "localhost" also has ::1
 * and nothing listens there: the next address is tried). */
START_TEST(test_loopback_hosts)
{
	const char *host = loop_hosts[_i];
	struct server srv = { .action = ECHO };
	struct conn *c;
	char want[128];
	int port;

	if (strchr(host, ':'))
		srv.family = AF_INET6;
	if ((port = server_start(&srv)) == 0) {
		fprintf(stderr, "check_net: no IPv6 loopback, %s skipped\n", host);
		return;
	}
	c = connect_ok(host, port);
	snprintf(want, sizeof(want), "%s[%s]:%d", host,
	    strchr(host, ':') ? "::1" : "127.0.0.1", port);
	ck_assert_str_eq(conn_peer(c), want);
	send_str(c, "hello\r\n");
	expect_line(c, "hello");
	conn_close(c);
	server_wait();
}
END_TEST

/* ------------------------------------------------------------------ */
/* Lines                                                                */

#define BIG "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static const struct line_case {
	const char *data;
	size_t datalen;          /* 0: strlen */
	size_t size;             /* buffer handed to conn_read_line */
	const char *lines[4];    /* expected lines, in order */
	enum err_class cls;      /* then this failure (ERR_OK: none) */
	const char *expect;
} line_cases[] = {
	{ "one\r\ntwo\nthree\r\n", 0, 64, { "one", "two", "three" }, ERR_OK, NULL },
	{ "\r\n\n", 0, 64, { "", "" }, ERR_OK, NULL },
	{ "a\rb\r\n", 0, 64, { "a\rb" }, ERR_OK, NULL },
	{ "1234567\r\n", 0, 8, { "1234567" }, ERR_OK, NULL },
	{ "1234567\n", 0, 8, { "1234567" }, ERR_OK, NULL },
	{ "12345678\r\n", 0, 8, { NULL }, ERR_PROTO, "line longer than 7 bytes" },
	{ "1234567\r\r\n", 0, 8, { NULL }, ERR_PROTO, "line longer than 7 bytes" },
	{ "ok\r\n250 a\0b\r\n", 13, 64, { "ok" }, ERR_PROTO, "NUL byte in a line from" },
	{ "250 partial", 0, 64, { NULL }, ERR_TEMP, "connection closed by 127.0.0.1[" },
	{ "", 0, 64, { NULL }, ERR_TEMP, "connection closed by" },
};

START_TEST(test_read_line)
{
	const struct line_case *t = &line_cases[_i];
	struct server srv = { .action = SEND };
	struct conn *c;
	struct err err = { 0 };
	char line[64];
	size_t len;
	int i;

	/* The EOF cases close after sending; the others wait for us. */
	srv.action = t->cls == ERR_TEMP ? SEND_CLOSE : SEND;
	srv.data = t->data;
	srv.datalen = t->datalen ? t->datalen : strlen(t->data);
	c = connect_ok("127.0.0.1", server_start(&srv));
	for (i = 0; t->lines[i] != NULL; i++) {
		ck_assert_msg(conn_read_line(c, line, t->size, &len, &err) == 0,
		    "case %d line %d: %s", _i, i, err.msg);
		ck_assert_uint_eq(len, strlen(t->lines[i]));
		ck_assert_str_eq(line, t->lines[i]);
	}
	if (t->cls != ERR_OK) {
		ck_assert_int_eq(conn_read_line(c, line, t->size, &len, &err), -1);
		ck_assert_int_eq(err.cls, t->cls);
		assert_contains(err.msg, t->expect);
	}
	conn_close(c);
	server_wait();
}
END_TEST

START_TEST(test_long_line)
{
	static char data[NET_LINE_MAX + 10];
	struct server srv = { .action = SEND, .data = data };
	struct conn *c;
	struct err err = { 0 };
	static char line[4 * NET_LINE_MAX];
	size_t len;

	/* NET_LINE_MAX bytes is the most we take, whatever the buffer. */
	memset(data, 'x', NET_LINE_MAX + 1);
	memcpy(data + NET_LINE_MAX + 1, "\r\n", 2);
	srv.datalen = NET_LINE_MAX + 3;
	c = connect_ok("127.0.0.1", server_start(&srv));
	ck_assert_int_eq(conn_read_line(c, line, sizeof(line), &len, &err), -1);
	ck_assert_int_eq(err.cls, ERR_PROTO);
	assert_contains(err.msg, "line longer than 2048 bytes from 127.0.0.1[");
	conn_close(c);
	server_wait();

	srv.datalen = NET_LINE_MAX;
	memcpy(data + NET_LINE_MAX - 2, "\r\n", 2);
	c = connect_ok("127.0.0.1", server_start(&srv));
	ck_assert_int_eq(conn_read_line(c, line, sizeof(line), &len, &err), 0);
	ck_assert_uint_eq(len, NET_LINE_MAX - 2);
	conn_close(c);
	server_wait();
}
END_TEST

/* conn_set_line_max: the config's max_reply_line, clamped. */
static const struct line_max_case {
	size_t set;              /* passed to conn_set_line_max */
	size_t linelen;          /* 'x' octets, then CRLF */
	int ok;
	const char *expect;      /* the error otherwise */
} line_max_cases[] = {
	{ 0, NET_LINE_MAX, 1, NULL },
	{ 0, NET_LINE_MAX + 1, 0, "line longer than 2048 bytes" },
	{ 512, 512, 1, NULL },
	{ 512, 513, 0, "line longer than 512 bytes" },
	{ 8192, 8192, 1, NULL },
	{ 8192, 8193, 0, "line longer than 8192 bytes" },
	{ NET_LINE_LIMIT, NET_LINE_LIMIT, 1, NULL },
	{ 10 * NET_LINE_LIMIT, NET_LINE_LIMIT + 1, 0,
	  "line longer than 65536 bytes" },
};

START_TEST(test_line_max)
{
	const struct line_max_case *t = &line_max_cases[_i];
	static char data[NET_LINE_LIMIT + 8], line[2 * NET_LINE_LIMIT];
	struct server srv = { .action = SEND, .data = data };
	struct conn *c;
	struct err err = { 0 };
	size_t len = 0;
	int rc;

	memset(data, 'x', t->linelen);
	memcpy(data + t->linelen, "\r\n", 2);
	srv.datalen = t->linelen + 2;
	c = connect_ok("127.0.0.1", server_start(&srv));
	conn_set_line_max(c, t->set);
	rc = conn_read_line(c, line, sizeof(line), &len, &err);
	if (t->ok) {
		ck_assert_msg(rc == 0, "case %d: %s", _i, err.msg);
		ck_assert_uint_eq(len, t->linelen);
	} else {
		ck_assert_int_eq(rc, -1);
		ck_assert_int_eq(err.cls, ERR_PROTO);
		assert_contains(err.msg, t->expect);
	}
	conn_close(c);
	server_wait();
}
END_TEST

/* The server says nothing and waits for our close; we give up after 1 s. */
START_TEST(test_read_timeout)
{
	struct server srv = { .tls = _i, .cert = "good", .action = SILENT };
	struct smarthost h;
	struct tls_client *tc = NULL;
	struct conn *c;
	struct err err = { 0 };
	char line[64], want[128];
	size_t len;
	long long t0;

	smarthost_init(&h);
	if (_i)
		ck_assert_ptr_nonnull(tc = tls_client_new(&h, &err));
	c = connect_ok("127.0.0.1", server_start(&srv));
	if (_i)
		ck_assert_msg(conn_starttls(c, tc, "localhost", &err) == 0, "%s",
		    err.msg);
	conn_set_timeout(c, 1);
	t0 = now_ms();
	ck_assert_int_eq(conn_read_line(c, line, sizeof(line), &len, &err), -1);
	ck_assert_int_ge(now_ms() - t0, 900);
	ck_assert_int_eq(err.cls, ERR_TEMP);
	snprintf(want, sizeof(want), "timeout after 1 second reading from %s",
	    conn_peer(c));
	ck_assert_str_eq(err.msg, want);
	conn_close(c);
	tls_client_free(tc);
	server_wait();
}
END_TEST

START_TEST(test_pending)
{
	struct server srv = { .action = SEND, .data = "250 a\r\n250 b\r\n",
	    .datalen = 14 };
	struct conn *c;
	struct err err = { 0 };
	char line[64];
	size_t len;

	c = connect_ok("127.0.0.1", server_start(&srv));
	ck_assert_uint_eq(conn_pending(c), 0);
	ck_assert_int_eq(conn_read_line(c, line, sizeof(line), &len, &err), 0);
	/* Both lines were sent in one segment; tolerate a split. */
	if (conn_pending(c) != 0) {
		ck_assert_uint_eq(conn_pending(c), 7);
		expect_line(c, "250 b");
	}
	conn_close(c);
	server_wait();
}
END_TEST

/* ------------------------------------------------------------------ */
/* Writing                                                              */

/* Many small writes, one larger than the buffer, more small ones: all
 * bytes arrive in order (the server answers with a count and a hash). */
START_TEST(test_write_sink)
{
	struct server srv = { .tls = _i, .cert = "good", .action = SINK };
	struct smarthost h;
	struct tls_client *tc = NULL;
	struct conn *c;
	struct err err = { 0 };
	unsigned long long bytes = 0, sum = 0;
	static char big[200 * 1024];
	char line[128], want[128];
	size_t len;
	int rc = 0;

	smarthost_init(&h);
	if (_i)
		ck_assert_ptr_nonnull(tc = tls_client_new(&h, &err));
	c = connect_ok("127.0.0.1", server_start(&srv));
	if (_i)
		ck_assert_msg(conn_starttls(c, tc, "localhost", &err) == 0, "%s",
		    err.msg);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + (i * 7) % 26);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 3000; i++) {
			char l[64];
			int n = snprintf(l, sizeof(l), "line %d of round %d\r\n", i,
			    round);

			rc |= conn_write(c, l, (size_t)n, &err);
			for (int k = 0; k < n; k++) {
				bytes++;
				sum = sum * 31 + (unsigned char)l[k];
			}
		}
		rc |= conn_write(c, big, sizeof(big), &err);
		for (size_t k = 0; k < sizeof(big); k++) {
			bytes++;
			sum = sum * 31 + (unsigned char)big[k];
		}
	}
	ck_assert_msg(rc == 0, "%s", err.msg);
	ck_assert_int_eq(conn_write(c, "\r\n.\r\n", 5, &err), 0);
	for (int k = 0; k < 5; k++) {
		bytes++;
		sum = sum * 31 + (unsigned char)"\r\n.\r\n"[k];
	}
	ck_assert_int_eq(conn_flush(c, &err), 0);
	ck_assert_int_eq(conn_flush(c, &err), 0);   /* nothing left: no-op */
	ck_assert_int_eq(conn_read_line(c, line, sizeof(line), &len, &err), 0);
	snprintf(want, sizeof(want), "250 %llu %llu", bytes, sum);
	ck_assert_str_eq(line, want);
	conn_close(c);
	tls_client_free(tc);
	server_wait();
}
END_TEST

/* The peer went away: writes fail with ERR_TEMP, never a SIGPIPE. */
START_TEST(test_write_to_closed)
{
	struct server srv = { .tls = _i, .cert = "good", .action = CLOSE };
	struct smarthost h;
	struct tls_client *tc = NULL;
	struct conn *c;
	struct err err = { 0 };
	char chunk[4096];
	sigset_t pending, mask;
	int i, rc = 0;

	smarthost_init(&h);
	if (_i)
		ck_assert_ptr_nonnull(tc = tls_client_new(&h, &err));
	c = connect_ok("127.0.0.1", server_start(&srv));
	if (_i)
		ck_assert_msg(conn_starttls(c, tc, "localhost", &err) == 0, "%s",
		    err.msg);
	server_wait();     /* the server has closed its end */
	memset(chunk, 'x', sizeof(chunk));
	for (i = 0; i < 1000 && rc == 0; i++)
		if ((rc = conn_write(c, chunk, sizeof(chunk), &err)) == 0)
			rc = conn_flush(c, &err);
	ck_assert_int_eq(rc, -1);
	ck_assert_int_eq(err.cls, ERR_TEMP);
	assert_contains(err.msg, " writing to 127.0.0.1[127.0.0.1]:");
	/* Nothing left behind: no pending SIGPIPE, the mask restored. */
	sigpending(&pending);
	ck_assert(!sigismember(&pending, SIGPIPE));
	sigprocmask(SIG_BLOCK, NULL, &mask);
	ck_assert(!sigismember(&mask, SIGPIPE));
	conn_close(c);
	tls_client_free(tc);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Session resumption                                                   */

#define CACHE_HEADER (8 + 32 + 8 + 4 + 12)   /* the IV last */
#define CACHE_TAG 16

/* A fresh spool directory for one test. */
static const char *
new_spool(void)
{
	static int n;
	char name[64];
	const char *q;

	snprintf(name, sizeof(name), "spool.%d.%d", (int)getpid(), n++);
	q = path(name);
	ck_assert_int_eq(mkdir(q, 0770), 0);
	return q;
}

/* One connection (TLS at once) with a new "run" (tls_client) unless tc
 * is given; returns whether the session was resumed. */
static int
one_conn(const struct smarthost *h, struct tls_client *tc, int port,
    const char *spool, const char *name, const char *host)
{
	struct tls_client *own = NULL;
	struct err err = { 0 };
	struct conn *c;
	int resumed;

	if (tc == NULL) {
		ck_assert_msg((own = tc = tls_client_new(h, &err)) != NULL, "%s",
		    err.msg);
		tls_client_cache(tc, spool, name);
	}
	c = connect_ok("127.0.0.1", port);
	ck_assert_msg(conn_starttls(c, tc, host, &err) == 0, "%s", err.msg);
	send_str(c, "ping\r\n");
	expect_line(c, "ping");   /* a TLS 1.3 ticket comes before it */
	resumed = tls_resumed(conn_tls(c));
	conn_close(c);
	tls_client_free(own);
	ck_assert_uint_eq(ERR_peek_error(), 0);
	return resumed;
}

static char *
cache_file(const char *spool, const char *name)
{
	static char p[600];

	snprintf(p, sizeof(p), "%s/tls/%s", spool, name);
	return p;
}

/* Saved by one run, resumed by the next (TLS 1.3 and 1.2), and by the
 * same run's next connection from memory; the file's layout. */
START_TEST(test_resume_across_runs)
{
	struct server srv = { .tls = 1, .cert = "good", .action = ECHO,
	    .conns = 4, .max_version = _i ? TLS1_2_VERSION : 0 };
	const char *q = new_spool();
	struct tls_client *tc;
	struct smarthost h;
	struct err err = { 0 };
	unsigned char data[20000];
	struct stat st;
	int port, fd;
	ssize_t n;

	smarthost_init(&h);
	port = server_start(&srv);
	ck_assert(!one_conn(&h, NULL, port, q, "main", "localhost"));
	ck_assert_int_eq(stat(cache_file(q, "main"), &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(st.st_mode & 07777, 0640);
	ck_assert_int_le(st.st_size, 16384);
	fd = open(cache_file(q, "main"), O_RDONLY);
	n = read(fd, data, sizeof(data));
	close(fd);
	ck_assert_int_eq(n, st.st_size);
	ck_assert(n > CACHE_HEADER + CACHE_TAG);
	ck_assert(memcmp(data, "RQTLSS2\n", 8) == 0);
	ck_assert_uint_eq((size_t)data[48] << 24 | (size_t)data[49] << 16 |
	    (size_t)data[50] << 8 | data[51],
	    (size_t)n - CACHE_HEADER - CACHE_TAG);
	/* Not the session in the clear: its DER SEQUENCE is not there. */
	ck_assert(data[CACHE_HEADER] != 0x30 || data[CACHE_HEADER + 1] != 0x82);
	snprintf((char *)data, sizeof(data), "%s/tls/.key", q);
	ck_assert_int_eq(stat((char *)data, &st), 0);
	ck_assert_int_eq(st.st_size, 32);
	ck_assert_int_eq(st.st_mode & 07777, 0640);
	snprintf((char *)data, sizeof(data), "%s/tls", q);
	ck_assert_int_eq(stat((char *)data, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0770);

	ck_assert(one_conn(&h, NULL, port, q, "main", "localhost"));
	/* One run, two connections: the second from memory. */
	ck_assert_ptr_nonnull(tc = tls_client_new(&h, &err));
	tls_client_cache(tc, q, "main");
	ck_assert(one_conn(&h, tc, port, q, "main", "localhost"));
	ck_assert_int_eq(unlink(cache_file(q, "main")), 0);
	ck_assert(one_conn(&h, tc, port, q, "main", "localhost"));
	tls_client_free(tc);
	ck_assert_int_eq(server_wait(), 0);
}
END_TEST

/* "sha256:AB:CD:..." of a certificate, as a user would copy it. */
static void
cert_pin(const char *name, char *out, size_t size)
{
	char cmd[1024], *eq;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "openssl x509 -noout -fingerprint -sha256 "
	    "-in %s", path(name));
	ck_assert_ptr_nonnull(p = popen(cmd, "r"));
	ck_assert_ptr_nonnull(fgets(cmd, sizeof(cmd), p));
	pclose(p);
	ck_assert_ptr_nonnull(eq = strchr(cmd, '='));
	eq[strcspn(eq, "\r\n")] = '\0';
	snprintf(out, size, "sha256:%s", eq + 1);
}

/* A change in what verification depends on: no resumption. */
static const struct digest_case {
	const char *what;
	const char *host;        /* the name verified, or NULL: localhost */
	int verify;
	const char *min;
	int pin;
	const char *ca;          /* tls_ca_file, or NULL: ca.crt */
	int port_delta;          /* sh->port differs */
} digest_cases[] = {
	{ "same", NULL, 1, NULL, 0, NULL, 0 },
	{ "host", "127.0.0.1", 1, NULL, 0, NULL, 0 },
	{ "verify", NULL, 0, NULL, 0, NULL, 0 },
	{ "min version", NULL, 1, "1.3", 0, NULL, 0 },
	{ "pin", NULL, 1, NULL, 1, NULL, 0 },
	{ "ca file", NULL, 1, NULL, 0, "ca-copy.crt", 0 },
	{ "port", NULL, 1, NULL, 0, NULL, 1 },
};

START_TEST(test_resume_digest)
{
	const struct digest_case *t = &digest_cases[_i];
	struct server srv = { .tls = 1, .cert = "good", .action = ECHO,
	    .conns = 2 };
	const char *q = new_spool();
	struct smarthost h;
	char pin[128];
	int port;

	sh("cp %s %s", path("ca.crt"), path("ca-copy.crt"));
	smarthost_init(&h);
	h.port = 465;
	port = server_start(&srv);
	ck_assert(!one_conn(&h, NULL, port, q, "x", "localhost"));
	h.tls_verify = t->verify;
	h.tls_min_version = (char *)t->min;
	h.port += t->port_delta;
	if (t->pin) {
		cert_pin("good.crt", pin, sizeof(pin));
		h.tls_fingerprint = pin;
	}
	if (t->ca)
		h.tls_ca_file = path(t->ca);
	ck_assert_int_eq(one_conn(&h, NULL, port, q, "x",
	    t->host ? t->host : "localhost"), strcmp(t->what, "same") == 0);
	ck_assert_int_eq(server_wait(), 0);
}
END_TEST

/*
 * What only relayq (or whoever holds the key) can do: open the sealed
 * session of a cache file, change it, seal it again. flip_secret damages
 * its secret; age sets "verified at" that many seconds back.
 */
static void
reseal(const char *spool, const char *name, int flip_secret, long age)
{
	unsigned char key[32], data[20000], plain[20000], *pp = plain;
	const unsigned char *cp = plain;
	unsigned char secret[256];   /* SSL_MAX_MASTER_KEY_LENGTH is 48 */
	EVP_CIPHER_CTX *ctx;
	SSL_SESSION *sess;
	char kpath[600];
	size_t n, slen;
	int len, out = 0, tmp = 0;
	uint64_t when;
	FILE *f;

	snprintf(kpath, sizeof(kpath), "%s/tls/.key", spool);
	ck_assert_ptr_nonnull(f = fopen(kpath, "rb"));
	ck_assert_uint_eq(fread(key, 1, sizeof(key), f), sizeof(key));
	fclose(f);
	ck_assert_ptr_nonnull(f = fopen(cache_file(spool, name), "rb"));
	n = fread(data, 1, sizeof(data), f);
	fclose(f);
	len = (int)(n - CACHE_HEADER - CACHE_TAG);
	ck_assert_ptr_nonnull(ctx = EVP_CIPHER_CTX_new());
	ck_assert(EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key,
	    data + CACHE_HEADER - 12) == 1);
	ck_assert(EVP_DecryptUpdate(ctx, NULL, &tmp, data, CACHE_HEADER) == 1);
	ck_assert(EVP_DecryptUpdate(ctx, plain, &out, data + CACHE_HEADER, len) == 1);
	ck_assert(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CACHE_TAG,
	    data + n - CACHE_TAG) == 1);
	ck_assert(EVP_DecryptFinal_ex(ctx, plain + out, &tmp) == 1);
	EVP_CIPHER_CTX_free(ctx);
	ck_assert_ptr_nonnull(sess = d2i_SSL_SESSION(NULL, &cp, len));
	if (flip_secret) {
		slen = SSL_SESSION_get_master_key(sess, secret, sizeof(secret));
		ck_assert_uint_gt(slen, 0);
		secret[0] ^= 1;
		ck_assert(SSL_SESSION_set1_master_key(sess, secret, slen) == 1);
	}
	ck_assert_int_eq(len = i2d_SSL_SESSION(sess, &pp), i2d_SSL_SESSION(sess, NULL));
	SSL_SESSION_free(sess);
	when = (uint64_t)(time(NULL) - age);
	for (int i = 0; i < 8; i++)
		data[40 + i] = (unsigned char)(when >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		data[48 + i] = (unsigned char)((unsigned)len >> (24 - 8 * i));
	ck_assert_ptr_nonnull(ctx = EVP_CIPHER_CTX_new());
	ck_assert(EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key,
	    data + CACHE_HEADER - 12) == 1);
	ck_assert(EVP_EncryptUpdate(ctx, NULL, &tmp, data, CACHE_HEADER) == 1);
	ck_assert(EVP_EncryptUpdate(ctx, data + CACHE_HEADER, &out, plain, len) == 1);
	ck_assert(EVP_EncryptFinal_ex(ctx, data + CACHE_HEADER + out, &tmp) == 1);
	ck_assert(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CACHE_TAG,
	    data + CACHE_HEADER + len) == 1);
	EVP_CIPHER_CTX_free(ctx);
	ck_assert_ptr_nonnull(f = fopen(cache_file(spool, name), "wb"));
	ck_assert_uint_eq(fwrite(data, 1, CACHE_HEADER + (size_t)len + CACHE_TAG, f),
	    CACHE_HEADER + (size_t)len + CACHE_TAG);
	fclose(f);
}

/* The test helper itself: resealed unchanged, the session still resumes. */
START_TEST(test_resume_resealed)
{
	struct server srv = { .tls = 1, .cert = "good", .action = ECHO,
	    .conns = 3 };
	const char *q = new_spool();
	struct smarthost h;
	int port;

	smarthost_init(&h);
	port = server_start(&srv);
	ck_assert(!one_conn(&h, NULL, port, q, "main", "localhost"));
	reseal(q, "main", 0, 3600);
	ck_assert(one_conn(&h, NULL, port, q, "main", "localhost"));
	/* Verified more than a day ago: a full handshake again. */
	reseal(q, "main", 0, 86400 + 60);
	ck_assert(!one_conn(&h, NULL, port, q, "main", "localhost"));
	ck_assert_int_eq(server_wait(), 0);
}
END_TEST

/* A session whose secret is wrong (the file whole): the server aborts
 * the handshake on the PSK binder; the caller is told to try again, and
 * the next connection is a full handshake. */
START_TEST(test_resume_server_aborts)
{
	struct server srv = { .tls = 1, .cert = "good", .action = ECHO,
	    .conns = 3 };
	const char *q = new_spool();
	struct tls_client *tc;
	struct smarthost h;
	struct err err = { 0 };
	struct stat st;
	struct conn *c;
	int port;

	smarthost_init(&h);
	port = server_start(&srv);
	ck_assert(!one_conn(&h, NULL, port, q, "main", "localhost"));
	reseal(q, "main", 1, 0);
	ck_assert_ptr_nonnull(tc = tls_client_new(&h, &err));
	tls_client_cache(tc, q, "main");
	c = connect_ok("127.0.0.1", port);
	ck_assert_int_eq(conn_starttls(c, tc, "localhost", &err), -1);
	ck_assert_int_eq(err.cls, ERR_TEMP);
	conn_close(c);
	ck_assert_int_eq(tls_client_retry(tc), 1);
	ck_assert_int_eq(tls_client_retry(tc), 0);     /* once */
	ck_assert_int_eq(stat(cache_file(q, "main"), &st), -1);
	ck_assert(!one_conn(&h, tc, port, q, "main", "localhost"));
	ck_assert_int_eq(stat(cache_file(q, "main"), &st), 0);
	tls_client_free(tc);
	ck_assert_int_eq(server_wait(), 0);
}
END_TEST

/* The key: made on demand by a trusted user (here the spool's owner),
 * 32 bytes, 0640; never by a user it would not trust (run as root:
 * "nobody" may write the spool but must not choose the key). */
START_TEST(test_resume_key)
{
	const char *q = new_spool();
	char key[600];
	struct stat st;
	pid_t pid;
	int status;

	snprintf(key, sizeof(key), "%s/tls/.key", q);
	tls_cache_prepare(q);
	ck_assert_int_eq(stat(key, &st), 0);
	ck_assert_int_eq(st.st_size, 32);
	ck_assert_int_eq(st.st_mode & 07777, 0640);
	if (geteuid() != 0)
		return;
	/* As "nobody": a spool of root's, then one of its own. */
	for (int own = 0; own < 2; own++) {
		char top[] = "/tmp/check_net_key.XXXXXX", spool[64];
		struct passwd *pw = getpwnam("nobody");

		ck_assert_ptr_nonnull(pw);
		ck_assert_ptr_nonnull(mkdtemp(top));
		ck_assert_int_eq(chmod(top, 0755), 0);
		snprintf(spool, sizeof(spool), "%s/spool", top);
		ck_assert_int_eq(mkdir(spool, 0777), 0);
		ck_assert_int_eq(chmod(spool, 0777), 0);
		if (own)
			ck_assert_int_eq(chown(spool, pw->pw_uid, pw->pw_gid), 0);
		snprintf(key, sizeof(key), "%s/tls/.key", spool);
		ck_assert_int_ge(pid = fork(), 0);
		if (pid == 0) {
			if (setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
				_exit(2);
			tls_cache_prepare(spool);
			_exit(stat(key, &st) == 0);
		}
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert(WIFEXITED(status));
		ck_assert_int_eq(WEXITSTATUS(status), own);
		sh("rm -rf '%s'", top);
	}
}
END_TEST

/* The name is a path component: anything odd means no cache at all. */
START_TEST(test_resume_bad_names)
{
	static const char *const names[] = { "", ".", "..", ".hidden", "a/b" };
	struct server srv = { .tls = 1, .cert = "good", .action = ECHO,
	    .conns = 2 };
	const char *q = new_spool();
	struct smarthost h;
	char tls[600];
	struct stat st;
	int port;

	smarthost_init(&h);
	port = server_start(&srv);
	ck_assert(!one_conn(&h, NULL, port, q, names[_i], "localhost"));
	ck_assert(!one_conn(&h, NULL, port, q, names[_i], "localhost"));
	snprintf(tls, sizeof(tls), "%s/tls", q);
	ck_assert_int_eq(stat(tls, &st), -1);
	ck_assert_int_eq(server_wait(), 0);
}
END_TEST

#ifdef SSL_OP_NO_EXTENDED_MASTER_SECRET
/* TLS 1.2 without the extended master secret is not worth resuming. */
START_TEST(test_resume_tls12_needs_ems)
{
	struct server srv = { .tls = 1, .cert = "good", .action = ECHO,
	    .conns = 2, .max_version = TLS1_2_VERSION,
	    .ssl_opts = SSL_OP_NO_EXTENDED_MASTER_SECRET };
	const char *q = new_spool();
	struct smarthost h;
	struct stat st;
	int port;

	smarthost_init(&h);
	port = server_start(&srv);
	ck_assert(!one_conn(&h, NULL, port, q, "main", "localhost"));
	ck_assert_int_eq(stat(cache_file(q, "main"), &st), -1);
	ck_assert(!one_conn(&h, NULL, port, q, "main", "localhost"));
	ck_assert_int_eq(server_wait(), 0);
}
END_TEST
#endif

static Suite *
net_suite(void)
{
	Suite *s = suite_create("net");
	TCase *tc = tcase_create("tls");

	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, test_handshake, 0,
	    sizeof(hs_cases) / sizeof(hs_cases[0]));
	tcase_add_test(tc, test_pin_mismatch_names_fingerprint);
	tcase_add_test(tc, test_starttls_injection);
	tcase_add_test(tc, test_not_tls);
	tcase_add_test(tc, test_client_cert);
	tcase_add_loop_test(tc, test_client_config, 0,
	    sizeof(cfg_cases) / sizeof(cfg_cases[0]));
	tcase_add_test(tc, test_system_store);
	tcase_add_test(tc, test_system_store_hashed_dir);
	tcase_add_test(tc, test_system_dir_choice);
	suite_add_tcase(s, tc);

	tc = tcase_create("net");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_connect_refused);
	tcase_add_test(tc, test_connect_bad_args);
	tcase_add_loop_test(tc, test_loopback_hosts, 0,
	    sizeof(loop_hosts) / sizeof(loop_hosts[0]));
	tcase_add_loop_test(tc, test_read_line, 0,
	    sizeof(line_cases) / sizeof(line_cases[0]));
	tcase_add_test(tc, test_long_line);
	tcase_add_loop_test(tc, test_line_max, 0,
	    (int)(sizeof(line_max_cases) / sizeof(line_max_cases[0])));
	tcase_add_loop_test(tc, test_read_timeout, 0, 2);
	tcase_add_test(tc, test_pending);
	tcase_add_loop_test(tc, test_write_sink, 0, 2);
	tcase_add_loop_test(tc, test_write_to_closed, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("resume");
	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, test_resume_across_runs, 0, 2);
	tcase_add_loop_test(tc, test_resume_digest, 0,
	    sizeof(digest_cases) / sizeof(digest_cases[0]));
	tcase_add_loop_test(tc, test_resume_bad_names, 0, 5);
	tcase_add_test(tc, test_resume_resealed);
	tcase_add_test(tc, test_resume_server_aborts);
	tcase_add_test(tc, test_resume_key);
#ifdef SSL_OP_NO_EXTENDED_MASTER_SECRET
	tcase_add_test(tc, test_resume_tls12_needs_ems);
#endif
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	make_certs();
	sr = srunner_create(net_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	remove_certs();
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
