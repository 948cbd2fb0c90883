/*
 * fuzz_sasl.c - the SASL client against a hostile server: sasl_step() with
 * the server's 334 challenges, and base64_decode().
 *
 * Input: one mode byte, then challenges separated by LF (at most 8).
 * Mode & 7: 0 base64_decode on the whole rest; 1 SCRAM-SHA-256 after its
 * initial response; 2 LOGIN; 3 CRAM-MD5; 4 PLAIN; 5 XOAUTH2;
 * 6 OAUTHBEARER; 7 SCRAM-SHA-256 without an initial response (the first
 * challenge should be empty). Mode & 8: pass the challenges as written
 * (to reach the base64 and blank handling); else the harness base64-encodes
 * them, so the fuzzer works on what the server means.
 * The SCRAM client uses the RFC 7677 user, password and nonce, so the
 * published server messages are valid inputs (see the seeds).
 *
 * Properties: every response is valid base64 of what the mechanism must
 * send (LOGIN: the user or the password; CRAM-MD5: "user " and 32 hex
 * digits; SCRAM: the client-final with our nonce and a proof, then
 * nothing); after a failure the response is empty, and the exchange
 * refuses to go on; error texts and sasl_server_error() are safe for one
 * log line; sasl_complete() accepts SCRAM only after a "v=" that verified.
 * base64: what decodes re-encodes to the same text (strict decoding), and
 * what is encoded decodes back.
 */
#include "autoconf.h"

#include <ctype.h>

#include "fuzz.h"
#include "sasl.h"

#define USER "user"
#define PASS "pencil"
#define NONCE "rOprNGfwEbeRWgbNEkqO"
#define STEPS_MAX 8
#define ITER_FUZZ_MAX 16384     /* PBKDF2 rounds worth one execution */

static void
check_base64(const uint8_t *data, size_t size)
{
	struct buf dec, enc, back;

	buf_init(&dec, 0);
	buf_init(&enc, 0);
	buf_init(&back, 0);
	if (base64_decode((const char *)data, size, &dec) == 0) {
		FUZZ_CHECK(base64_encode(dec.data, dec.len, &enc) == 0 &&
		    enc.len == size && memcmp(enc.data ? enc.data : "", data,
		    size) == 0, "decoding is not strict: %zu chars -> %zu bytes "
		    "-> %zu chars", size, dec.len, enc.len);
	}
	buf_reset(&enc);
	FUZZ_CHECK(base64_encode(data, size, &enc) == 0, "encode failed");
	FUZZ_CHECK(base64_decode(enc.data ? enc.data : "", enc.len, &back) ==
	    0 && back.len == size && memcmp(back.data ? back.data : "", data,
	    size) == 0, "encoded %zu bytes do not decode back", size);
	buf_free(&dec);
	buf_free(&enc);
	buf_free(&back);
}

/* PBKDF2 at the iteration counts a server may ask (up to 10^6, about a
 * second) would make the fuzzer crawl: such inputs are skipped. */
static int
too_many_rounds(const char *msg, size_t len)
{
	for (size_t i = 0; i + 3 <= len; i++) {
		if (memcmp(msg + i, ",i=", 3) == 0) {
			const char *p = msg + i + 3;
			long v = 0;

			while (p < msg + len && (*p == '+' || *p == '-' ||
			    *p == ' '))
				p++;
			for (; p < msg + len && isdigit((unsigned char)*p); p++)
				if ((v = v * 10 + (*p - '0')) > ITER_FUZZ_MAX)
					return 1;
		}
	}
	return 0;
}

static int
is_hex_lower(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
			return 0;
	return 1;
}

/* What a successful step sent, decoded, must be what the mechanism says. */
static void
check_response(enum sasl_mech m, int scram_first, const struct buf *out)
{
	struct buf d;

	buf_init(&d, 0);
	FUZZ_CHECK(base64_decode(out->data ? out->data : "", out->len, &d) == 0,
	    "response is not base64");
	switch (m) {
	case SASL_LOGIN:
		FUZZ_CHECK((d.len == 4 && memcmp(d.data, USER, 4) == 0) ||
		    (d.len == 6 && memcmp(d.data, PASS, 6) == 0),
		    "LOGIN sent %zu other bytes", d.len);
		break;
	case SASL_CRAM_MD5:
		FUZZ_CHECK(d.len == 37 && memcmp(d.data, USER " ", 5) == 0 &&
		    is_hex_lower(d.data + 5, 32), "CRAM-MD5 response malformed");
		break;
	case SASL_SCRAM_SHA_256:
		if (scram_first)
			FUZZ_CHECK(out->len == 0 || (d.len > 0 && strncmp(d.data,
			    "n,,n=" USER ",r=" NONCE, 25) == 0),
			    "SCRAM client-first malformed");
		else if (out->len > 0)
			FUZZ_CHECK(strncmp(d.data, "c=biws,r=" NONCE, 29) == 0 &&
			    strstr(d.data, ",p=") != NULL,
			    "SCRAM client-final malformed: %s", d.data);
		break;
	default:
		break;
	}
	buf_free(&d);
}

/*
 * The message the client sees for one chunk of input: the chunk itself,
 * or in raw mode the chunk decoded as sasl_step() does (blanks around it
 * ignored, "=" is empty). -1 if it will not decode.
 */
static int
server_message(int raw, const char *p, size_t n, struct buf *msg)
{
	buf_reset(msg);
	if (!raw)
		return buf_append(msg, p, n);
	while (n > 0 && (*p == ' ' || *p == '\t'))
		p++, n--;
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' ||
	    p[n - 1] == '\r'))
		n--;
	if (n == 1 && p[0] == '=')
		n = 0;
	return base64_decode(p, n, msg);
}

static void
run_exchange(enum sasl_mech m, int raw, int no_ir, const char *p,
    const char *end)
{
	struct sasl *s = sasl_new(m, USER, m == SASL_XOAUTH2 ||
	    m == SASL_OAUTHBEARER ? "ya29.token" : PASS, "smtp.example.com",
	    587);
	struct buf out, chal, msg;
	struct err err;
	int failed = 0, last_v = 0, first_done = 0;

	buf_init(&out, 16384);
	buf_init(&chal, 0);
	buf_init(&msg, 0);
	sasl_set_nonce(s, NONCE);
	if (!no_ir) {
		FUZZ_CHECK(sasl_initial(s, &out, &err) == 0,
		    "initial response: %s", err.msg);
		first_done = 1;
	}
	for (int step = 0; step < STEPS_MAX && p <= end; step++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		int rc, v;

		buf_reset(&chal);
		if (raw)
			buf_append(&chal, p, n);
		else
			base64_encode(p, n, &chal);
		v = server_message(raw, p, n, &msg) == 0 && msg.len >= 2 &&
		    msg.data[0] == 'v' && msg.data[1] == '=';
		memset(&err, 0, sizeof(err));
		rc = sasl_step(s, chal.data ? chal.data : "", &out, &err);
		if (rc < 0) {
			FUZZ_CHECK(out.len == 0, "response left after a failure");
			FUZZ_CHECK(!fuzz_has_ctl(err.msg, strlen(err.msg)),
			    "control character in the error message");
			FUZZ_CHECK(!failed || err.cls == ERR_INTERNAL,
			    "exchange went on after a failure: %s", err.msg);
			failed = 1;
		} else {
			FUZZ_CHECK(!failed, "step accepted after a failure");
			check_response(m, !first_done, &out);
			first_done = 1;
			last_v = v;
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	FUZZ_CHECK(!fuzz_has_ctl(sasl_server_error(s),
	    strlen(sasl_server_error(s))), "server error text not escaped");
	if (sasl_complete(s, &err) == 0 && m == SASL_SCRAM_SHA_256)
		FUZZ_CHECK(!failed && last_v,
		    "SCRAM completed without a verified server signature");
	buf_wipe_free(&out);
	buf_free(&chal);
	buf_free(&msg);
	sasl_free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum sasl_mech mechs[8] = {
		SASL_NONE, SASL_SCRAM_SHA_256, SASL_LOGIN, SASL_CRAM_MD5,
		SASL_PLAIN, SASL_XOAUTH2, SASL_OAUTHBEARER, SASL_SCRAM_SHA_256,
	};
	const char *p, *end = (const char *)data + size;
	struct buf msg;
	int mode, raw;

	if (size < 1)
		return 0;
	mode = data[0] & 7;
	raw = (data[0] & 8) != 0;
	if (mode == 0) {
		check_base64(data + 1, size - 1);
		return 0;
	}
	buf_init(&msg, 0);
	for (p = (const char *)data + 1; p <= end; ) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (server_message(raw, p, n, &msg) == 0 &&
		    too_many_rounds(msg.data ? msg.data : "", msg.len)) {
			buf_free(&msg);
			return 0;
		}
		p += n + 1;
	}
	buf_free(&msg);
	run_exchange(mechs[mode], raw, mode == 7, (const char *)data + 1, end);
	return 0;
}
