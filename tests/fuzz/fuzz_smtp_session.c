/*
 * fuzz_smtp_session.c - the SMTP client against a hostile smarthost: a
 * whole session (greeting, EHLO/HELO, AUTH, MAIL/RCPT/DATA with and
 * without PIPELINING, a second transaction, QUIT) where every byte the
 * server sends is fuzzer input. This reaches read_reply(), the EHLO
 * keyword parser and the AUTH exchange, which smtp_parse_line alone does
 * not.
 *
 * Input: one option byte, then the server's side of the dialogue, sent at
 * once by a thread over loopback TCP; the server then reads until the
 * client hangs up. Options: bit 0 a password (AUTH), bit 1 allow only
 * SCRAM-SHA-256 and CRAM-MD5, bit 2 8-bit message, bit 3 DSN parameters,
 * bit 4 a second message on the session, bit 5 SMTPUTF8 message, bit 6
 * the two messages overlapped as a queue run sends them (smtp_start of
 * the second before smtp_end of the first).
 *
 * Properties: nothing crashes or hangs; errors are ERR_TEMP or ERR_PROTO
 * (never a "success" with a broken session) and, like every reply text,
 * are one line without control characters; reply codes are 0 or
 * 200..559; no AUTH command without a password; with only SCRAM-SHA-256
 * and CRAM-MD5 allowed, never AUTH PLAIN or LOGIN; the password is never
 * sent as it is.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>

#include "config.h"
#include "fuzz.h"
#include "log.h"
#include "smtp.h"

#define PASS "pencil-4d3f"
#define GOT_MAX (1024 * 1024)

static int lfd, datafd, port;
static size_t datalen;

struct server {
	const uint8_t *data;
	size_t size;
	struct buf got;            /* what the client sent */
};

static const char message[] =
    "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: t\r\n\r\n"
    "..dot-stuffed line\r\nbody\r\n";

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	struct timeval tv = { 10, 0 };
	struct err err;

	(void)argc;
	(void)argv;
	if (log_open("/dev/null", &err) < 0)
		fuzz_die(err.msg);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(lfd, 8) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &len) < 0)
		fuzz_die("loopback listener");
	/* accept(2) gives up too if the client never connects. */
	if (setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
		fuzz_die("SO_RCVTIMEO");
	port = ntohs(sa.sin_port);
	datafd = fuzz_memfd("fuzz-data");
	datalen = sizeof(message) - 1;
	fuzz_memfd_set(datafd, message, datalen);
	return 0;
}

/* The smarthost: say everything, then listen until the client hangs up. */
static void *
serve(void *arg)
{
	struct server *sv = arg;
	char b[4096];
	ssize_t n;
	int c;

	while ((c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0 && errno == EINTR)
		;
	if (c < 0)
		return NULL;
	for (size_t off = 0; off < sv->size; off += (size_t)n)
		if ((n = send(c, sv->data + off, sv->size - off,
		    MSG_NOSIGNAL)) <= 0)
			break;
	shutdown(c, SHUT_WR);
	while ((n = recv(c, b, sizeof(b), 0)) > 0)
		if (sv->got.len + (size_t)n <= GOT_MAX)
			buf_append(&sv->got, b, (size_t)n);
	close(c);
	return NULL;
}

static void
check_err(const struct err *e, const char *what)
{
	FUZZ_CHECK(e->cls == ERR_TEMP || e->cls == ERR_PROTO,
	    "%s: error class %d: %s", what, (int)e->cls, e->msg);
	FUZZ_CHECK(!fuzz_has_ctl(e->msg, strlen(e->msg)),
	    "%s: control character in the error message", what);
}

static void
check_replies(const struct smtp_reply *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(r[i].code == 0 || (r[i].code >= 200 &&
		    r[i].code <= 559), "reply code %d", r[i].code);
		FUZZ_CHECK(!fuzz_has_ctl(r[i].text, strlen(r[i].text)) &&
		    !fuzz_has_ctl(r[i].enh, strlen(r[i].enh)),
		    "control character in reply %zu", i);
	}
}

/* A message and a bounce, the second's commands before the first's end. */
static void
overlapped(struct smtp_session *s, const struct smtp_msg *m)
{
	struct smtp_msg m2 = *m;
	struct smtp_reply r1[3], r2[1];
	struct err err;

	memset(r1, 0, sizeof(r1));
	memset(r2, 0, sizeof(r2));
	memset(&err, 0, sizeof(err));
	m2.sender = "";
	m2.nrcpts = 1;
	if (smtp_start(s, m, r1, &err) < 0 || smtp_data(s, &err) < 0 ||
	    smtp_start(s, &m2, r2, &err) < 0 || smtp_end(s, &err) < 0 ||
	    smtp_data(s, &err) < 0 || smtp_end(s, &err) < 0)
		check_err(&err, "overlapped transactions");
	check_replies(r1, 3);
	check_replies(r2, 1);
}

/* One client session with the options of byte f. */
static void
client(unsigned f)
{
	static const char *const rcpts[] = {
		"bob@example.com", "carol@example.net", "dave@example.org",
	};
	static const unsigned notify[] = {
		SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE, SMTP_NOTIFY_NEVER,
		SMTP_NOTIFY_DELAY,
	};
	static const char *const orcpt[] = { "bob@example.com", NULL, "x" };
	struct smarthost sh;
	struct smtp_params p;
	struct smtp_session *s = NULL;
	struct smtp_msg m;
	struct smtp_reply r[3];
	struct err err;

	memset(&sh, 0, sizeof(sh));
	sh.name = "fuzz";
	sh.host = "127.0.0.1";
	sh.port = port;
	sh.tls = TLS_NONE;
	sh.timeout = 5;
	sh.connect_timeout = 5;
	sh.username = "user";
	if (f & 2) {
		strlist_add(&sh.auth, "SCRAM-SHA-256");
		strlist_add(&sh.auth, "CRAM-MD5");
	}
	memset(&p, 0, sizeof(p));
	p.sh = &sh;
	p.helo_name = "web1.example.com";
	p.secret = (f & 1) ? PASS : NULL;

	memset(&m, 0, sizeof(m));
	m.sender = "alice@example.com";
	m.eightbit = (f >> 2) & 1;
	m.smtputf8 = (f >> 5) & 1;
	if (f & 8) {
		m.ret = "HDRS";
		m.envid = "Q+1=x";
		m.notify = notify;
		m.orcpt = orcpt;
	}
	m.nrcpts = 3;
	m.rcpts = rcpts;
	m.datafd = datafd;
	m.size = datalen;

	memset(&err, 0, sizeof(err));
	if (smtp_open(&p, &s, &err) < 0) {
		check_err(&err, "smtp_open");
		strlist_free(&sh.auth);
		return;
	}
	if (f & 64)
		overlapped(s, &m);
	for (int i = 0; i < ((f & 16) ? 2 : 1) && !(f & 64); i++) {
		if (smtp_send(s, &m, r, &err) < 0) {
			check_err(&err, "smtp_send");
			check_replies(r, 3);
			break;
		}
		check_replies(r, 3);
		m.sender = "";          /* then a bounce */
		m.nrcpts = 1;
	}
	smtp_close(s);
	strlist_free(&sh.auth);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct server sv;
	pthread_t t;
	const char *got;

	if (size < 1)
		return 0;
	sv.data = data + 1;
	sv.size = size - 1;
	buf_init(&sv.got, 0);
	if (pthread_create(&t, NULL, serve, &sv) != 0)
		fuzz_die("pthread_create");
	client(data[0]);
	pthread_join(t, NULL);

	got = sv.got.data ? sv.got.data : "";
	FUZZ_CHECK(memmem(got, sv.got.len, PASS, strlen(PASS)) == NULL,
	    "the password was sent in clear");
	FUZZ_CHECK((data[0] & 1) || memmem(got, sv.got.len, "AUTH ", 5) == NULL,
	    "AUTH sent without a password");
	FUZZ_CHECK(!(data[0] & 2) ||
	    (memmem(got, sv.got.len, "AUTH PLAIN", 10) == NULL &&
	    memmem(got, sv.got.len, "AUTH LOGIN", 10) == NULL),
	    "AUTH PLAIN or LOGIN though only SCRAM and CRAM-MD5 are allowed");
	buf_free(&sv.got);
	return 0;
}
