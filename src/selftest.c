/*
 * selftest.c - relayq --test. Walks the path a delivery takes, one step
 * at a time, and says at which step it breaks and why: name resolution,
 * the connection, TLS (with the certificate shown), the extensions, AUTH
 * and an optional VRFY. No mail is sent. When the TLS handshake fails the
 * server is asked once more without verification and without AUTH, only
 * to show which certificate it presents.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <sys/types.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "net.h"
#include "relay.h"
#include "selftest.h"
#include "smtp.h"
#include "tls.h"

#define ADDRS_SHOWN 16          /* resolved addresses listed */
#define CERT_TEXT_MAX 16384

static const char *const tls_names[] = {
	[TLS_STARTTLS] = "starttls", [TLS_SMTPS] = "smtps", [TLS_NONE] = "none",
};

static const struct {
	unsigned bit;
	const char *name;
} extensions[] = {
	{ SMTP_EXT_STARTTLS, "STARTTLS" }, { SMTP_EXT_AUTH, "AUTH" },
	{ SMTP_EXT_SIZE, "SIZE" }, { SMTP_EXT_8BITMIME, "8BITMIME" },
	{ SMTP_EXT_SMTPUTF8, "SMTPUTF8" }, { SMTP_EXT_DSN, "DSN" },
	{ SMTP_EXT_ENHANCED, "ENHANCEDSTATUSCODES" },
	{ SMTP_EXT_PIPELINING, "PIPELINING" },
};

/* The addresses the name resolves to (net_connect resolves it again). */
static int
resolve(const struct smarthost *sh, FILE *out, struct err *err)
{
	struct addrinfo hints, *res, *ai;
	char port[16], addr[NI_MAXHOST];
	int rc, n = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = AI_NUMERICSERV;
	str_fmt(port, sizeof(port), "%d", sh->port);
	if ((rc = getaddrinfo(sh->host, port, &hints, &res)) != 0) {
		if (rc == EAI_SYSTEM)
			return err_sys(err, ERR_TEMP, "cannot resolve %s",
			    sh->host);
		return err_set(err, ERR_TEMP, "cannot resolve %s: %s",
		    sh->host, gai_strerror(rc));
	}
	fprintf(out, "  resolve: %s ->", sh->host);
	for (ai = res; ai != NULL && n < ADDRS_SHOWN; ai = ai->ai_next, n++)
		if (getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof(addr),
		    NULL, 0, NI_NUMERICHOST) == 0)
			fprintf(out, " %s", addr);
	fputc('\n', out);
	freeaddrinfo(res);
	return 0;
}

/* Text indented under a heading; drop (if not NULL) is cut from it. */
static void
print_indented(FILE *out, const char *text, const char *drop)
{
	const char *p = text;

	while (*p != '\0') {
		size_t n = strcspn(p, "\n"), dn = drop ? strlen(drop) : 0;
		const char *cut = drop ? strstr(p, drop) : NULL;

		fputs("    ", out);
		if (cut != NULL && cut + dn <= p + n) {
			fwrite(p, 1, (size_t)(cut - p), out);
			fwrite(cut + dn, 1, (size_t)(p + n - (cut + dn)), out);
		} else {
			fwrite(p, 1, n, out);
		}
		fputc('\n', out);
		p += n + (p[n] == '\n');
	}
}

static void
show_certificate(struct smtp_session *s, FILE *out, const char *heading,
    const char *drop)
{
	struct tls_conn *t = conn_tls(smtp_conn(s));
	struct buf b;

	if (t == NULL)
		return;
	buf_init(&b, CERT_TEXT_MAX);
	tls_describe_peer(t, &b);
	fprintf(out, "  %s:\n", heading);
	print_indented(out, b.data ? b.data : "", drop);
	buf_free(&b);
}

static void
show_session(struct smtp_session *s, FILE *out)
{
	unsigned ext = smtp_extensions(s);
	int any = 0;

	fprintf(out, "  connect: %s\n", smtp_peer(s));
	if (conn_tls(smtp_conn(s)) == NULL) {
		fprintf(out, "  tls: none (plain text)\n");
	} else {
		fprintf(out, "  tls: %s\n", smtp_tls_info(s));
		fprintf(out, "  tls session: %s\n", tls_resumed(conn_tls(
		    smtp_conn(s))) ? "resumed" : "full handshake");
	}
	show_certificate(s, out, "certificate", NULL);
	fprintf(out, "  extensions:");
	for (size_t i = 0; i < sizeof(extensions) / sizeof(extensions[0]); i++) {
		if (!(ext & extensions[i].bit))
			continue;
		fprintf(out, " %s", extensions[i].name);
		if (extensions[i].bit == SMTP_EXT_SIZE && smtp_size_limit(s) > 0)
			fprintf(out, "=%llu", smtp_size_limit(s));
		any = 1;
	}
	fputs(any ? "\n" : " (none)\n", out);
}

static struct smtp_session *
open_session(const struct config *cfg, const struct smarthost *sh,
    struct tls_client *tc, const char *secret, struct err *err)
{
	struct smtp_params p = { .sh = sh, .helo_name = cfg->hostname,
	    .tls = tc, .secret = secret,
	    .max_reply_lines = (int)cfg->max_reply_lines,
	    .max_reply_line = (int)cfg->max_reply_line };
	struct smtp_session *s;

	return smtp_open(&p, &s, err) == 0 ? s : NULL;
}

/* After a failed handshake: which certificate does the server present? */
static void
show_presented(const struct config *cfg, const struct smarthost *sh,
    FILE *out)
{
	struct smarthost loose = *sh;
	struct smtp_session *s;
	struct tls_client *tc;
	struct err err;
	int verbose = log_verbose();

	loose.tls_verify = 0;
	loose.tls_fingerprint = NULL;
	if ((tc = tls_client_new(&loose, &err)) == NULL)
		return;
	log_set_verbose(0);     /* the transcript is the real attempt's */
	if ((s = open_session(cfg, &loose, tc, NULL, &err)) != NULL) {
		show_certificate(s, out, "certificate presented (fetched again "
		    "without verification, no AUTH)",
		    " (accepted: tls_verify = no)");
		smtp_close(s);
	}
	log_set_verbose(verbose);
	tls_client_free(tc);
}

/* VRFY: 2xx verified; 252 and "not implemented" say nothing; else fail. */
static int
vrfy(struct smtp_session *s, const char *addr, FILE *out, struct err *err)
{
	struct smtp_reply r;
	char esc[512];

	str_escape(addr, strlen(addr), esc, sizeof(esc));
	if (smtp_vrfy(s, addr, &r, err) < 0)
		return err_prefix(err, "vrfy <%s>", esc);
	fprintf(out, "  vrfy <%s>: %s\n", esc, r.text);
	if ((r.code >= 200 && r.code < 300) || r.code == 252 ||
	    r.code == 500 || r.code == 502 || r.code == 504)
		return 0;
	return err_set(err, r.code >= 400 && r.code < 500 ? ERR_TEMP :
	    ERR_NOUSER, "vrfy <%s>: %s", esc, r.text);
}

static int
test_smarthost(const struct config *cfg, const struct smarthost *sh,
    const char *addr, FILE *out, struct err *err)
{
	struct tls_client *tc = NULL;
	struct smtp_session *s = NULL;
	struct buf secret;
	const char *step = "resolve";
	int rc = -1;

	fprintf(out, "smarthost %s: %s port %d, tls %s\n", sh->name, sh->host,
	    sh->port, tls_names[sh->tls]);
	buf_init(&secret, 0);
	if (resolve(sh, out, err) < 0)
		goto out;
	step = "setup";
	if (sh->tls != TLS_NONE && (tc = tls_client_new(sh, err)) == NULL)
		goto out;
	if (tc != NULL && sh->tls_session_cache)
		tls_client_cache(tc, cfg->queue_dir, sh->name);
	if (sh->username != NULL && relay_secret(sh, &secret, err) < 0)
		goto out;
	/* First without AUTH: the connection and TLS on their own. */
	step = "connect";
	if ((s = open_session(cfg, sh, tc, NULL, err)) == NULL) {
		if (tc != NULL && strstr(err->msg, "TLS handshake") != NULL)
			show_presented(cfg, sh, out);
		goto out;
	}
	show_session(s, out);
	step = "auth";
	if (sh->username != NULL) {
		smtp_close(s);
		if ((s = open_session(cfg, sh, tc, secret.data, err)) == NULL)
			goto out;
		fprintf(out, "  auth: authenticated as %s\n", sh->username);
	} else {
		fprintf(out, "  auth: none configured (no username)\n");
	}
	step = "vrfy";
	if (addr != NULL && vrfy(s, addr, out, err) < 0)
		goto out;
	rc = 0;
out:
	smtp_close(s);
	tls_client_free(tc);
	buf_wipe_free(&secret);
	if (rc == 0) {
		fprintf(out, "  result: ok\n");
		return 0;
	}
	fprintf(out, "  result: FAILED at %s: %s\n", step, err->msg);
	return err_prefix(err, "smarthost %s: %s", sh->name, step);
}

int
selftest_run(const struct config *cfg, const char *addr, FILE *out,
    struct err *err)
{
	struct err first, e;
	int verbose = log_verbose();
	size_t ok = 0, failed = 0;

	if (cfg->nsmarthosts == 0)
		return err_set(err, ERR_CONFIG, "no smarthost configured in %s",
		    cfg->path);
	/* The report and the transcript (stderr) interleave line by line. */
	setvbuf(out, NULL, _IOLBF, 0);
	log_set_verbose(verbose > 0 ? verbose : 1);
	for (size_t i = 0; i < cfg->nsmarthosts; i++) {
		if (test_smarthost(cfg, &cfg->smarthosts[i], addr, out, &e) == 0)
			ok++;
		else if (failed++ == 0)
			first = e;
	}
	log_set_verbose(verbose);
	fprintf(out, "%zu of %zu smarthost%s ok\n", ok, cfg->nsmarthosts,
	    cfg->nsmarthosts == 1 ? "" : "s");
	if (fflush(out) == EOF || ferror(out))
		return err_sys(err, ERR_IO, "write the self-test report");
	if (failed > 0) {
		*err = first;
		return -1;
	}
	return 0;
}
