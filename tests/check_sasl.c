/*
 * check_sasl.c - unit tests for sasl.c: base64, mechanism choice, and every
 * mechanism's payloads against the published examples (RFC 4616, 2195,
 * 7677, 7628 and Google's XOAUTH2 page), plus the ways a server can lie.
 */
#include "autoconf.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "sasl.h"

/* --- helpers -------------------------------------------------------------- */

/* base64 of a C string, as a malloc'd C string. */
static char *
b64(const char *s)
{
	struct buf b;
	char *r;

	buf_init(&b, 0);
	ck_assert_int_eq(base64_encode(s, strlen(s), &b), 0);
	r = xstrdup(b.data ? b.data : "");
	buf_free(&b);
	return r;
}

/* Decode a response we produced; it must be valid base64. */
static void
decode_into(const struct buf *in, struct buf *out)
{
	buf_init(out, 0);
	ck_assert_int_eq(base64_decode(in->data ? in->data : "", in->len, out),
	    0);
}

/* Feed one plaintext challenge; returns sasl_step's result. */
static int
step_plain(struct sasl *s, const char *text, struct buf *out, struct err *e)
{
	char *c = b64(text);
	int r = sasl_step(s, c, out, e);

	free(c);
	return r;
}

static void
split_words(const char *s, struct strlist *l)
{
	char *copy = xstrdup(s), *save = NULL;

	memset(l, 0, sizeof(*l));
	for (char *w = strtok_r(copy, " ", &save); w != NULL;
	    w = strtok_r(NULL, " ", &save))
		strlist_add(l, w);
	free(copy);
}

/* --- base64 --------------------------------------------------------------- */

static const struct {
	const char *plain, *enc;
} b64_vectors[] = {   /* RFC 4648 section 10 */
	{ "", "" },
	{ "f", "Zg==" },
	{ "fo", "Zm8=" },
	{ "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" },
	{ "fooba", "Zm9vYmE=" },
	{ "foobar", "Zm9vYmFy" },
};

START_TEST(test_b64_vectors)
{
	struct buf b;

	buf_init(&b, 0);
	ck_assert_int_eq(base64_encode(b64_vectors[_i].plain,
	    strlen(b64_vectors[_i].plain), &b), 0);
	ck_assert_uint_eq(b.len, strlen(b64_vectors[_i].enc));
	if (b.len)
		ck_assert_str_eq(b.data, b64_vectors[_i].enc);
	buf_free(&b);

	buf_init(&b, 0);
	ck_assert_int_eq(base64_decode(b64_vectors[_i].enc,
	    strlen(b64_vectors[_i].enc), &b), 0);
	ck_assert_uint_eq(b.len, strlen(b64_vectors[_i].plain));
	if (b.len)
		ck_assert_str_eq(b.data, b64_vectors[_i].plain);
	buf_free(&b);
}
END_TEST

/* Every byte value, at every length from 0 to 256, survives a round trip. */
START_TEST(test_b64_binary_roundtrip)
{
	unsigned char in[256];
	struct buf e, d;

	for (int i = 0; i < 256; i++)
		in[i] = (unsigned char)(255 - i);
	buf_init(&e, 0);
	buf_init(&d, 0);
	ck_assert_int_eq(base64_encode(in, (size_t)_i, &e), 0);
	ck_assert_uint_eq(e.len, ((size_t)_i + 2) / 3 * 4);
	ck_assert_int_eq(base64_decode(e.data ? e.data : "", e.len, &d), 0);
	ck_assert_uint_eq(d.len, (size_t)_i);
	ck_assert(_i == 0 || memcmp(d.data, in, (size_t)_i) == 0);
	buf_free(&e);
	buf_free(&d);
}
END_TEST

static const char *const b64_bad[] = {
	"Zg",           /* not a multiple of 4 */
	"Zg=",
	"Zm9vY",
	"Zm9v\n",       /* whitespace is not tolerated */
	" Zm9",
	"Zm9 ",
	"Zm9v\r\nYg==",
	"Zm-_",         /* URL-safe alphabet */
	"Zm9v*A==",
	"Z===",         /* too much padding */
	"====",
	"Zm9v====",
	"Zg=a",         /* data after padding */
	"Zm=v",
	"=Zm9",
	"Zg==Zg==",     /* padding in the middle */
	"Zh==",         /* non-zero pad bits (non-canonical "f") */
	"Zm9=",         /* non-zero pad bits (non-canonical "fo") */
	"Zm\xc3\xa9",   /* non-ASCII */
};

START_TEST(test_b64_bad)
{
	struct buf b;

	buf_init(&b, 0);
	buf_puts(&b, "keep");
	ck_assert_int_eq(base64_decode(b64_bad[_i], strlen(b64_bad[_i]), &b),
	    -1);
	ck_assert_uint_eq(b.len, 4);
	ck_assert_str_eq(b.data, "keep");
	buf_free(&b);
}
END_TEST

/* An embedded NUL is outside the alphabet too. */
START_TEST(test_b64_nul)
{
	struct buf b;

	buf_init(&b, 0);
	ck_assert_int_eq(base64_decode("Zm\0v", 4, &b), -1);
	ck_assert_uint_eq(b.len, 0);
	buf_free(&b);
}
END_TEST

START_TEST(test_b64_append_and_cap)
{
	struct buf b;

	buf_init(&b, 16);
	buf_puts(&b, "AUTH PLAIN ");
	ck_assert_int_eq(base64_encode("f", 1, &b), 0);
	ck_assert_str_eq(b.data, "AUTH PLAIN Zg==");
	/* "foobar" needs 8 more bytes: over the cap, buffer unchanged. */
	ck_assert_int_eq(base64_encode("foobar", 6, &b), -1);
	ck_assert_str_eq(b.data, "AUTH PLAIN Zg==");
	ck_assert_int_eq(base64_decode("Zm9vYmFy", 8, &b), -1);
	ck_assert_str_eq(b.data, "AUTH PLAIN Zg==");
	ck_assert_int_eq(base64_decode("Zg==", 4, &b), 0);
	ck_assert_str_eq(b.data, "AUTH PLAIN Zg==f");
	buf_free(&b);
}
END_TEST

/* --- names and choice ----------------------------------------------------- */

START_TEST(test_mech_names)
{
	static const struct {
		enum sasl_mech m;
		const char *name, *other_case;
	} t[] = {
		{ SASL_PLAIN, "PLAIN", "plain" },
		{ SASL_LOGIN, "LOGIN", "Login" },
		{ SASL_CRAM_MD5, "CRAM-MD5", "cram-md5" },
		{ SASL_SCRAM_SHA_256, "SCRAM-SHA-256", "scram-sha-256" },
		{ SASL_XOAUTH2, "XOAUTH2", "xoauth2" },
		{ SASL_OAUTHBEARER, "OAUTHBEARER", "OAuthBearer" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		ck_assert_str_eq(sasl_mech_name(t[i].m), t[i].name);
		ck_assert_int_eq(sasl_mech_from_name(t[i].name), t[i].m);
		ck_assert_int_eq(sasl_mech_from_name(t[i].other_case), t[i].m);
	}
	ck_assert_int_eq(sasl_mech_from_name("SCRAM-SHA-256-PLUS"), SASL_NONE);
	ck_assert_int_eq(sasl_mech_from_name("GSSAPI"), SASL_NONE);
	ck_assert_int_eq(sasl_mech_from_name(""), SASL_NONE);
	ck_assert_int_eq(sasl_mech_from_name(NULL), SASL_NONE);
}
END_TEST

static const struct {
	const char *offered, *allowed;  /* space-separated words */
	enum sasl_mech want;
	enum err_class cls;             /* ERR_OK when a mechanism is chosen */
	const char *msg1, *msg2;        /* must appear in the error message */
} choose_tab[] = {
	{ "PLAIN LOGIN", "", SASL_PLAIN, ERR_OK, NULL, NULL },
	{ "LOGIN PLAIN SCRAM-SHA-256", "", SASL_SCRAM_SHA_256, ERR_OK, 0, 0 },
	{ "LOGIN", "", SASL_LOGIN, ERR_OK, NULL, NULL },
	{ "plain login", "", SASL_PLAIN, ERR_OK, NULL, NULL },
	{ "Scram-Sha-256 Plain", "", SASL_SCRAM_SHA_256, ERR_OK, NULL, NULL },
	{ "PLAIN", "plain", SASL_PLAIN, ERR_OK, NULL, NULL },
	/* CRAM-MD5 and OAuth only when listed */
	{ "CRAM-MD5 PLAIN", "", SASL_PLAIN, ERR_OK, NULL, NULL },
	{ "CRAM-MD5", "", SASL_NONE, ERR_PERM, "CRAM-MD5", "SCRAM-SHA-256" },
	{ "CRAM-MD5 PLAIN", "PLAIN CRAM-MD5", SASL_CRAM_MD5, ERR_OK, 0, 0 },
	{ "cram-md5 login", "Cram-Md5", SASL_CRAM_MD5, ERR_OK, NULL, NULL },
	{ "XOAUTH2 OAUTHBEARER PLAIN", "", SASL_PLAIN, ERR_OK, NULL, NULL },
	{ "XOAUTH2 OAUTHBEARER", "", SASL_NONE, ERR_PERM, "XOAUTH2", "PLAIN" },
	{ "XOAUTH2 OAUTHBEARER PLAIN", "XOAUTH2 OAUTHBEARER",
	  SASL_OAUTHBEARER, ERR_OK, NULL, NULL },
	{ "XOAUTH2 PLAIN", "xoauth2", SASL_XOAUTH2, ERR_OK, NULL, NULL },
	/* strength order, whatever the order of either list */
	{ "LOGIN PLAIN CRAM-MD5 XOAUTH2 OAUTHBEARER SCRAM-SHA-256",
	  "LOGIN PLAIN CRAM-MD5 XOAUTH2 OAUTHBEARER SCRAM-SHA-256",
	  SASL_SCRAM_SHA_256, ERR_OK, NULL, NULL },
	{ "LOGIN PLAIN CRAM-MD5 XOAUTH2", "LOGIN PLAIN CRAM-MD5 XOAUTH2",
	  SASL_XOAUTH2, ERR_OK, NULL, NULL },
	{ "LOGIN PLAIN CRAM-MD5", "LOGIN PLAIN CRAM-MD5", SASL_CRAM_MD5,
	  ERR_OK, NULL, NULL },
	{ "PLAIN LOGIN", "LOGIN PLAIN", SASL_PLAIN, ERR_OK, NULL, NULL },
	{ "PLAIN LOGIN", "LOGIN", SASL_LOGIN, ERR_OK, NULL, NULL },
	/* look-alikes are not matches */
	{ "SCRAM-SHA-256-PLUS SCRAM-SHA-1 LOGIN", "", SASL_LOGIN, ERR_OK, 0, 0 },
	{ "GSSAPI NTLM LOGIN", "", SASL_LOGIN, ERR_OK, NULL, NULL },
	/* nothing in common: the message names both sides */
	{ "", "", SASL_NONE, ERR_PERM, "offers none", "SCRAM-SHA-256" },
	{ "PLAIN LOGIN", "SCRAM-SHA-256", SASL_NONE, ERR_PERM,
	  "\"PLAIN LOGIN\"", "allowed are SCRAM-SHA-256" },
	{ "GSSAPI NTLM", "", SASL_NONE, ERR_PERM, "\"GSSAPI NTLM\"",
	  "SCRAM-SHA-256 PLAIN LOGIN" },
	{ "SCRAM-SHA-256", "PLAIN CRAM-MD5", SASL_NONE, ERR_PERM,
	  "\"SCRAM-SHA-256\"", "PLAIN CRAM-MD5" },
	/* a name we do not know in the allowed list is a config error */
	{ "PLAIN", "PLAIN DIGEST-MD5", SASL_NONE, ERR_CONFIG, "DIGEST-MD5", 0 },
};

START_TEST(test_choose)
{
	struct strlist off, allow;
	enum sasl_mech m = SASL_LOGIN;
	struct err e = { 0 };
	int r;

	split_words(choose_tab[_i].offered, &off);
	split_words(choose_tab[_i].allowed, &allow);
	r = sasl_choose(&off, &allow, &m, &e);
	if (choose_tab[_i].cls == ERR_OK) {
		ck_assert_msg(r == 0, "row %d: %s", _i, e.msg);
		ck_assert_str_eq(sasl_mech_name(m),
		    sasl_mech_name(choose_tab[_i].want));
	} else {
		ck_assert_int_eq(r, -1);
		ck_assert_int_eq(m, SASL_NONE);
		ck_assert_int_eq(e.cls, choose_tab[_i].cls);
		if (choose_tab[_i].msg1)
			ck_assert_msg(strstr(e.msg, choose_tab[_i].msg1) != NULL,
			    "row %d: \"%s\" lacks \"%s\"", _i, e.msg,
			    choose_tab[_i].msg1);
		if (choose_tab[_i].msg2)
			ck_assert_msg(strstr(e.msg, choose_tab[_i].msg2) != NULL,
			    "row %d: \"%s\" lacks \"%s\"", _i, e.msg,
			    choose_tab[_i].msg2);
	}
	strlist_free(&off);
	strlist_free(&allow);
}
END_TEST

/* A hostile offer is escaped and bounded in the message. */
START_TEST(test_choose_hostile_offer)
{
	struct strlist off = { 0 }, allow = { 0 };
	enum sasl_mech m;
	struct err e = { 0 };

	strlist_add(&off, "X\x1b[31mEVIL");
	for (int i = 0; i < 200; i++)
		strlist_add(&off, "NTLM-FOOBAR");
	ck_assert_int_eq(sasl_choose(&off, &allow, &m, &e), -1);
	ck_assert_int_eq(e.cls, ERR_PERM);
	ck_assert(strchr(e.msg, '\x1b') == NULL);
	ck_assert(strstr(e.msg, "\\x1b") != NULL);
	ck_assert(strstr(e.msg, "...") != NULL);
	ck_assert(strstr(e.msg, "allowed are SCRAM-SHA-256") != NULL);
	ck_assert(sasl_choose(NULL, NULL, &m, &e) == -1);
	strlist_free(&off);
}
END_TEST

/* --- PLAIN ---------------------------------------------------------------- */

START_TEST(test_plain)
{
	struct sasl *s = sasl_new(SASL_PLAIN, "tim", "tanstaaftanstaaf",
	    "mx.example", 587);
	struct buf out, d;
	struct err e = { 0 };

	buf_init(&out, 0);
	ck_assert_int_eq(sasl_initial(s, &out, &e), 0);
	ck_assert_str_eq(out.data, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
	decode_into(&out, &d);
	ck_assert_uint_eq(d.len, 1 + 3 + 1 + 16);
	ck_assert(memcmp(d.data, "\0tim\0tanstaaftanstaaf", d.len) == 0);
	buf_free(&d);
	ck_assert_int_eq(sasl_complete(s, &e), 0);
	/* Asked again: a bug in the caller. */
	ck_assert_int_eq(sasl_initial(s, &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_INTERNAL);
	/* A challenge after the credentials is a protocol error. */
	ck_assert_int_eq(sasl_step(s, "", &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_PROTO);
	buf_wipe_free(&out);
	sasl_free(s);
}
END_TEST

/* "AUTH PLAIN" without an initial response: answer the empty 334. */
START_TEST(test_plain_no_ir)
{
	static const char *const empties[] = { "", "=", " ", " = \r\n" };
	struct sasl *s = sasl_new(SASL_PLAIN, "tim", "tanstaaftanstaaf",
	    NULL, 0);
	struct buf out;
	struct err e = { 0 };

	buf_init(&out, 0);
	ck_assert_int_eq(sasl_step(s, empties[_i], &out, &e), 0);
	ck_assert_str_eq(out.data, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
	ck_assert_int_eq(sasl_complete(s, &e), 0);
	buf_wipe_free(&out);
	sasl_free(s);
}
END_TEST

START_TEST(test_plain_bad_creds)
{
	struct sasl *s;
	struct buf out;
	struct err e = { 0 };

	buf_init(&out, 0);
	s = sasl_new(SASL_PLAIN, "", "pw", NULL, 0);
	ck_assert_int_eq(sasl_initial(s, &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_CONFIG);
	ck_assert(strstr(e.msg, "user name") != NULL);
	ck_assert_uint_eq(out.len, 0);
	ck_assert_int_eq(sasl_complete(s, &e), -1);
	sasl_free(s);
	s = sasl_new(SASL_PLAIN, "tim", NULL, NULL, 0);
	ck_assert_int_eq(sasl_initial(s, &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_CONFIG);
	ck_assert(strstr(e.msg, "password") != NULL);
	sasl_free(s);
	/* A non-empty challenge before the initial response. */
	s = sasl_new(SASL_PLAIN, "tim", "pw", NULL, 0);
	ck_assert_int_eq(step_plain(s, "hello", &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_PROTO);
	sasl_free(s);
	buf_free(&out);
	sasl_free(NULL);
}
END_TEST

/* --- LOGIN ---------------------------------------------------------------- */

static const struct {
	const char *prompt[2];
	const char *answer[2];
} login_tab[] = {
	{ { "Username:", "Password:" }, { "tim", "tanstaaf" } },
	{ { "username:", "password:" }, { "tim", "tanstaaf" } },
	{ { "Password:", "Username:" }, { "tanstaaf", "tim" } },
	{ { "User Name", "Pass phrase" }, { "tim", "tanstaaf" } },
	{ { "", "" }, { "tim", "tanstaaf" } },          /* by order */
	{ { "Qui es-tu?", "Secret?" }, { "tim", "tanstaaf" } },
	{ { "Password for tim:", "Login:" }, { "tanstaaf", "tim" } },
};

START_TEST(test_login)
{
	struct sasl *s = sasl_new(SASL_LOGIN, "tim", "tanstaaf", NULL, 0);
	struct buf out, d;
	struct err e = { 0 };

	buf_init(&out, 0);
	buf_puts(&out, "stale");
	ck_assert_int_eq(sasl_initial(s, &out, &e), 0);
	ck_assert_uint_eq(out.len, 0);
	for (int k = 0; k < 2; k++) {
		ck_assert_int_eq(sasl_complete(s, &e), -1);
		ck_assert_int_eq(e.cls, ERR_PROTO);
		ck_assert_int_eq(step_plain(s, login_tab[_i].prompt[k], &out,
		    &e), 0);
		decode_into(&out, &d);
		ck_assert_str_eq(d.data, login_tab[_i].answer[k]);
		buf_free(&d);
	}
	ck_assert_int_eq(sasl_complete(s, &e), 0);
	/* A third challenge: the exchange was over. */
	ck_assert_int_eq(step_plain(s, "Password:", &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_PROTO);
	ck_assert_uint_eq(out.len, 0);
	buf_wipe_free(&out);
	sasl_free(s);
}
END_TEST

START_TEST(test_login_wire)
{
	struct sasl *s = sasl_new(SASL_LOGIN, "tim", "tanstaaftanstaaf",
	    NULL, 0);
	struct buf out;
	struct err e = { 0 };

	buf_init(&out, 0);
	ck_assert_int_eq(sasl_step(s, "VXNlcm5hbWU6", &out, &e), 0);
	ck_assert_str_eq(out.data, "dGlt");
	ck_assert_int_eq(sasl_step(s, "UGFzc3dvcmQ6 ", &out, &e), 0);
	ck_assert_str_eq(out.data, "dGFuc3RhYWZ0YW5zdGFhZg==");
	ck_assert_int_eq(sasl_complete(s, &e), 0);
	sasl_free(s);

	/* Garbage instead of base64: refused, and the exchange is dead. */
	s = sasl_new(SASL_LOGIN, "tim", "pw", NULL, 0);
	ck_assert_int_eq(sasl_step(s, "Username:", &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_PROTO);
	ck_assert(strstr(e.msg, "base64") != NULL);
	ck_assert_int_eq(sasl_step(s, "VXNlcm5hbWU6", &out, &e), -1);
	ck_assert_int_eq(sasl_complete(s, &e), -1);
	sasl_free(s);

	/* A server that only ever asks for the user name. */
	s = sasl_new(SASL_LOGIN, "tim", "pw", NULL, 0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(step_plain(s, "Username:", &out, &e), 0);
	ck_assert_int_eq(step_plain(s, "Username:", &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_PROTO);
	ck_assert_int_eq(sasl_complete(s, &e), -1);
	sasl_free(s);
	buf_wipe_free(&out);
}
END_TEST

/* --- CRAM-MD5 ------------------------------------------------------------- */

START_TEST(test_cram_md5_rfc2195)
{
	struct sasl *s = sasl_new(SASL_CRAM_MD5, "tim", "tanstaaftanstaaf",
	    NULL, 0);
	struct buf out;
	struct err e = { 0 };

	buf_init(&out, 0);
	ck_assert_int_eq(sasl_initial(s, &out, &e), 0);
	ck_assert_uint_eq(out.len, 0);
	ck_assert_int_eq(sasl_complete(s, &e), -1);
	ck_assert_int_eq(sasl_step(s,
	    "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+",
	    &out, &e), 0);
	ck_assert_str_eq(out.data,
	    "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw");
	ck_assert_int_eq(sasl_complete(s, &e), 0);
	ck_assert_int_eq(sasl_step(s, "PDE+", &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_PROTO);
	sasl_free(s);

	s = sasl_new(SASL_CRAM_MD5, "tim", "tanstaaftanstaaf", NULL, 0);
	ck_assert_int_eq(sasl_step(s, "", &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_PROTO);
	ck_assert_int_eq(sasl_complete(s, &e), -1);
	sasl_free(s);
	buf_wipe_free(&out);
}
END_TEST

/* --- SCRAM-SHA-256 -------------------------------------------------------- */

#define RFC7677_NONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC7677_SFIRST "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0," \
	"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define RFC7677_CFINAL "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)" \
	"hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC7677_SFINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/* The RFC 7677 section 3 example up to the client-final message. */
static struct sasl *
scram_to_final(struct buf *out)
{
	struct sasl *s = sasl_new(SASL_SCRAM_SHA_256, "user", "pencil",
	    "mx.example", 587);
	struct err e = { 0 };
	struct buf d;

	sasl_set_nonce(s, RFC7677_NONCE);
	ck_assert_int_eq(sasl_initial(s, out, &e), 0);
	ck_assert_str_eq(out->data,
	    "biwsbj11c2VyLHI9ck9wck5HZndFYmVSV2diTkVrcU8=");
	decode_into(out, &d);
	ck_assert_str_eq(d.data, "n,,n=user,r=" RFC7677_NONCE);
	buf_free(&d);
	ck_assert_int_eq(step_plain(s, RFC7677_SFIRST, out, &e), 0);
	decode_into(out, &d);
	ck_assert_str_eq(d.data, RFC7677_CFINAL);
	buf_free(&d);
	ck_assert_int_eq(sasl_complete(s, &e), -1);
	ck_assert_int_eq(e.cls, ERR_PROTO);
	return s;
}

START_TEST(test_scram_rfc7677)
{
	struct buf out;
	struct err e = { 0 };
	struct sasl *s;

	buf_init(&out, 0);
	s = scram_to_final(&out);
	ck_assert_int_eq(sasl_step(s,
	    "dj02cnJpVFJCaTIzV3BSUi93dHVwK21NaFVaVW4vZEI1bkxUSlJzamw5NUc0PQ==",
	    &out, &e), 0);
	ck_assert_uint_eq(out.len, 0);          /* answered by an empty line */
	ck_assert_int_eq(sasl_complete(s, &e), 0);
	ck_assert_str_eq(sasl_server_error(s), "");
	/* Anything after the verified signature is a protocol error. */
	ck_assert_int_eq(step_plain(s, RFC7677_SFINAL, &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_PROTO);
	sasl_free(s);
	buf_wipe_free(&out);
}
END_TEST

/* Extensions after v= are allowed and ignored. */
START_TEST(test_scram_final_extension)
{
	struct buf out;
	struct err e = { 0 };
	struct sasl *s;

	buf_init(&out, 0);
	s = scram_to_final(&out);
	ck_assert_int_eq(step_plain(s, RFC7677_SFINAL ",x=y", &out, &e), 0);
	ck_assert_int_eq(sasl_complete(s, &e), 0);
	sasl_free(s);
	buf_wipe_free(&out);
}
END_TEST

static const struct {
	const char *text;       /* server-final, plaintext */
	enum err_class cls;
	const char *msg;
} scram_final_bad[] = {
	/* one character changed */
	{ "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G5=", ERR_PROTO,
	  "server signature mismatch" },
	{ "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", ERR_PROTO,
	  "server signature mismatch" },
	/* the client proof played back */
	{ "v=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", ERR_PROTO,
	  "server signature mismatch" },
	/* truncated, empty, not base64 */
	{ "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJR", ERR_PROTO,
	  "server signature mismatch" },
	{ "v=", ERR_PROTO, "server signature mismatch" },
	{ "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4", ERR_PROTO,
	  "server signature mismatch" },
	{ "", ERR_PROTO, "malformed" },
	{ "x=1,v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", ERR_PROTO,
	  "malformed" },
	/* the server's own error */
	{ "e=invalid-proof", ERR_PERM, "invalid-proof" },
	{ "e=other-error,x=1", ERR_PERM, "other-error" },
};

START_TEST(test_scram_final_bad)
{
	struct buf out;
	struct err e = { 0 };
	struct sasl *s;

	buf_init(&out, 0);
	s = scram_to_final(&out);
	ck_assert_int_eq(step_plain(s, scram_final_bad[_i].text, &out, &e),
	    -1);
	ck_assert_int_eq(e.cls, scram_final_bad[_i].cls);
	ck_assert_msg(strstr(e.msg, scram_final_bad[_i].msg) != NULL,
	    "\"%s\" lacks \"%s\"", e.msg, scram_final_bad[_i].msg);
	ck_assert_uint_eq(out.len, 0);
	/* Whatever the server says next, we are not authenticated. */
	ck_assert_int_eq(sasl_complete(s, &e), -1);
	ck_assert_int_eq(e.cls, ERR_PROTO);
	ck_assert_int_eq(step_plain(s, RFC7677_SFINAL, &out, &e), -1);
	ck_assert_int_eq(sasl_complete(s, &e), -1);
	sasl_free(s);
	buf_wipe_free(&out);
}
END_TEST

#define SALT ",s=W22ZaJ0SNY7soEsUEjb6gQ=="
#define SRVN "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"

static const struct {
	const char *text;       /* server-first, plaintext */
	enum err_class cls;
	const char *msg;
} scram_first_bad[] = {
	/* the server nonce must extend ours */
	{ "r=XOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0" SALT ",i=4096",
	  ERR_PROTO, "does not extend ours" },
	{ "r=rOprNGfwEbeRWgbNEkqO" SALT ",i=4096", ERR_PROTO,
	  "does not extend ours" },
	{ "r=rOprNGfwEbeRWgbNEk" SALT ",i=4096", ERR_PROTO,
	  "does not extend ours" },
	{ "r=" SALT ",i=4096", ERR_PROTO, "does not extend ours" },
	{ "r=rOprNGfwEbeRWgbNEkqO\x7f" SALT ",i=4096", ERR_PROTO, "nonce" },
	{ "r=rOprNGfwEbeRWgbNEkqO x" SALT ",i=4096", ERR_PROTO, "nonce" },
	/* absurd iteration counts */
	{ SRVN SALT ",i=0", ERR_PROTO, "iteration count" },
	{ SRVN SALT ",i=1", ERR_PROTO, "iteration count" },
	{ SRVN SALT ",i=4095", ERR_PROTO, "iteration count" },
	{ SRVN SALT ",i=1000001", ERR_PROTO, "iteration count" },
	{ SRVN SALT ",i=4294971392", ERR_PROTO, "iteration count" },
	{ SRVN SALT ",i=99999999999999999999999", ERR_PROTO,
	  "iteration count" },
	{ SRVN SALT ",i=-4096", ERR_PROTO, "iteration count" },
	{ SRVN SALT ",i= 4096", ERR_PROTO, "iteration count" },
	{ SRVN SALT ",i=4096x", ERR_PROTO, "iteration count" },
	{ SRVN SALT ",i=", ERR_PROTO, "iteration count" },
	/* salt */
	{ SRVN ",s=,i=4096", ERR_PROTO, "salt" },
	{ SRVN ",s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096", ERR_PROTO, "salt" },
	{ SRVN ",s=W22Z aJ0S,i=4096", ERR_PROTO, "salt" },
	/* shape */
	{ SRVN ",i=4096" SALT, ERR_PROTO, "malformed" },
	{ SRVN SALT, ERR_PROTO, "malformed" },
	{ "s=W22ZaJ0SNY7soEsUEjb6gQ==," SRVN ",i=4096", ERR_PROTO,
	  "malformed" },
	{ "", ERR_PROTO, "malformed" },
	{ "m=ext," SRVN SALT ",i=4096", ERR_PROTO, "mandatory extension" },
	{ "e=unknown-user", ERR_PERM, "unknown-user" },
};

START_TEST(test_scram_first_bad)
{
	struct sasl *s = sasl_new(SASL_SCRAM_SHA_256, "user", "pencil",
	    NULL, 0);
	struct buf out;
	struct err e = { 0 };

	buf_init(&out, 0);
	sasl_set_nonce(s, RFC7677_NONCE);
	ck_assert_int_eq(sasl_initial(s, &out, &e), 0);
	ck_assert_int_eq(step_plain(s, scram_first_bad[_i].text, &out, &e),
	    -1);
	ck_assert_int_eq(e.cls, scram_first_bad[_i].cls);
	ck_assert_msg(strstr(e.msg, scram_first_bad[_i].msg) != NULL,
	    "\"%s\" lacks \"%s\"", e.msg, scram_first_bad[_i].msg);
	ck_assert_uint_eq(out.len, 0);
	ck_assert_int_eq(sasl_complete(s, &e), -1);
	sasl_free(s);
	buf_wipe_free(&out);
}
END_TEST

/* A NUL hidden inside the server-first message is refused. */
START_TEST(test_scram_first_nul)
{
	static const char raw[] = "r=rOprNGfwEbeRWgbNEkqOx\0,s=AAAA,i=4096";
	struct sasl *s = sasl_new(SASL_SCRAM_SHA_256, "user", "pencil",
	    NULL, 0);
	struct buf out, c;
	struct err e = { 0 };

	buf_init(&out, 0);
	buf_init(&c, 0);
	sasl_set_nonce(s, RFC7677_NONCE);
	ck_assert_int_eq(sasl_initial(s, &out, &e), 0);
	ck_assert_int_eq(base64_encode(raw, sizeof(raw) - 1, &c), 0);
	ck_assert_int_eq(sasl_step(s, c.data, &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_PROTO);
	buf_free(&c);
	buf_free(&out);
	sasl_free(s);
}
END_TEST

/* Extensions after i= are allowed (and part of AuthMessage). */
START_TEST(test_scram_first_extension)
{
	struct sasl *s = sasl_new(SASL_SCRAM_SHA_256, "user", "pencil",
	    NULL, 0);
	struct buf out, d;
	struct err e = { 0 };

	buf_init(&out, 0);
	sasl_set_nonce(s, RFC7677_NONCE);
	ck_assert_int_eq(sasl_initial(s, &out, &e), 0);
	ck_assert_int_eq(step_plain(s, RFC7677_SFIRST ",x=ext", &out, &e), 0);
	decode_into(&out, &d);
	ck_assert(strncmp(d.data, "c=biws,r=" RFC7677_NONCE "%hv", 32) == 0);
	/* A different AuthMessage gives a different proof. */
	ck_assert(strcmp(d.data, RFC7677_CFINAL) != 0);
	buf_free(&d);
	/* ...and the RFC's server signature no longer matches. */
	ck_assert_int_eq(step_plain(s, RFC7677_SFINAL, &out, &e), -1);
	ck_assert(strstr(e.msg, "server signature mismatch") != NULL);
	buf_free(&out);
	sasl_free(s);
}
END_TEST

/* Without a fixed nonce each exchange gets 24 fresh random bytes. */
START_TEST(test_scram_random_nonce)
{
	struct sasl *a = sasl_new(SASL_SCRAM_SHA_256, "user", "pencil", 0, 0);
	struct sasl *b = sasl_new(SASL_SCRAM_SHA_256, "user", "pencil", 0, 0);
	struct buf oa, ob, da, db;
	struct err e = { 0 };
	const char *n;

	buf_init(&oa, 0);
	buf_init(&ob, 0);
	ck_assert_int_eq(sasl_initial(a, &oa, &e), 0);
	ck_assert_int_eq(sasl_initial(b, &ob, &e), 0);
	decode_into(&oa, &da);
	decode_into(&ob, &db);
	ck_assert(strncmp(da.data, "n,,n=user,r=", 12) == 0);
	n = da.data + 12;
	ck_assert_uint_eq(strlen(n), 32);
	ck_assert_uint_eq(strspn(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789+/"), 32);
	ck_assert_str_ne(da.data, db.data);
	buf_free(&da);
	buf_free(&db);
	buf_free(&oa);
	buf_free(&ob);
	sasl_free(a);
	sasl_free(b);
}
END_TEST

START_TEST(test_scram_names_and_saslprep)
{
	struct sasl *s;
	struct buf out, d;
	struct err e = { 0 };

	buf_init(&out, 0);
	/* ',' and '=' in the user name are escaped; the rest passes. */
	s = sasl_new(SASL_SCRAM_SHA_256, "a=b,c d@x", "p w!~", NULL, 0);
	sasl_set_nonce(s, "abc");
	ck_assert_int_eq(sasl_initial(s, &out, &e), 0);
	decode_into(&out, &d);
	ck_assert_str_eq(d.data, "n,,n=a=3Db=2Cc d@x,r=abc");
	buf_free(&d);
	sasl_free(s);

	/* Non-ASCII needs real SASLprep: refused with a way out. */
	s = sasl_new(SASL_SCRAM_SHA_256, "user", "p\xc3\xa9ncil", NULL, 0);
	ck_assert_int_eq(sasl_initial(s, &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_PERM);
	ck_assert_str_eq(e.msg, "SCRAM needs SASLprep for non-ASCII "
	    "passwords; use PLAIN over TLS");
	ck_assert_uint_eq(out.len, 0);
	sasl_free(s);
	s = sasl_new(SASL_SCRAM_SHA_256, "j\xc3\xb6rg", "pencil", NULL, 0);
	ck_assert_int_eq(sasl_initial(s, &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_PERM);
	ck_assert(strstr(e.msg, "non-ASCII user names") != NULL);
	sasl_free(s);
	/* Control characters are prohibited by SASLprep itself. */
	s = sasl_new(SASL_SCRAM_SHA_256, "user", "pencil\n", NULL, 0);
	ck_assert_int_eq(sasl_initial(s, &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_PERM);
	ck_assert(strstr(e.msg, "control character") != NULL);
	sasl_free(s);
	/* PLAIN takes the same password as it is. */
	s = sasl_new(SASL_PLAIN, "user", "p\xc3\xa9ncil", NULL, 0);
	ck_assert_int_eq(sasl_initial(s, &out, &e), 0);
	sasl_free(s);
	/* A bad test nonce is a caller bug. */
	s = sasl_new(SASL_SCRAM_SHA_256, "user", "pencil", NULL, 0);
	sasl_set_nonce(s, "a,b");
	ck_assert_int_eq(sasl_initial(s, &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_INTERNAL);
	sasl_free(s);
	buf_wipe_free(&out);
}
END_TEST

/* "AUTH SCRAM-SHA-256" alone: the empty 334 gets the client-first. */
START_TEST(test_scram_no_ir)
{
	struct sasl *s = sasl_new(SASL_SCRAM_SHA_256, "user", "pencil", 0, 0);
	struct buf out;
	struct err e = { 0 };

	buf_init(&out, 0);
	sasl_set_nonce(s, RFC7677_NONCE);
	ck_assert_int_eq(sasl_step(s, "", &out, &e), 0);
	ck_assert_str_eq(out.data,
	    "biwsbj11c2VyLHI9ck9wck5HZndFYmVSV2diTkVrcU8=");
	ck_assert_int_eq(step_plain(s, RFC7677_SFIRST, &out, &e), 0);
	ck_assert_int_eq(step_plain(s, RFC7677_SFINAL, &out, &e), 0);
	ck_assert_int_eq(sasl_complete(s, &e), 0);
	ck_assert_int_eq(sasl_initial(s, &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_INTERNAL);
	buf_wipe_free(&out);
	sasl_free(s);
}
END_TEST

/* --- XOAUTH2, OAUTHBEARER ------------------------------------------------- */

#define GOOGLE_TOKEN "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
#define RFC7628_TOKEN "vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg=="
#define JSON_ERR "{\"status\":\"401\",\"schemes\":\"bearer\"," \
	"\"scope\":\"https://mail.google.com/\"}"

START_TEST(test_xoauth2)
{
	struct sasl *s = sasl_new(SASL_XOAUTH2, "someuser@example.com",
	    GOOGLE_TOKEN, "smtp.gmail.com", 587);
	struct buf out;
	struct err e = { 0 };

	buf_init(&out, 0);
	ck_assert_int_eq(sasl_initial(s, &out, &e), 0);
	ck_assert_str_eq(out.data, "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRo"
	    "PUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZ"
	    "Mjl0Q2cBAQ==");
	ck_assert_int_eq(sasl_complete(s, &e), 0);
	/* The JSON error: answered with an empty line, kept for the log. */
	ck_assert_int_eq(step_plain(s, JSON_ERR, &out, &e), 0);
	ck_assert_uint_eq(out.len, 0);
	ck_assert(strstr(sasl_server_error(s), "\"status\":\"401\"") != NULL);
	ck_assert_int_eq(sasl_complete(s, &e), -1);
	ck_assert_int_eq(e.cls, ERR_PROTO);
	ck_assert_int_eq(step_plain(s, JSON_ERR, &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_PROTO);
	buf_wipe_free(&out);
	sasl_free(s);
}
END_TEST

START_TEST(test_oauthbearer)
{
	struct sasl *s = sasl_new(SASL_OAUTHBEARER, "user@example.com",
	    RFC7628_TOKEN, "server.example.com", 143);
	struct buf out, d;
	struct err e = { 0 };

	buf_init(&out, 0);
	ck_assert_int_eq(sasl_initial(s, &out, &e), 0);
	/* RFC 7628 section 4.1 */
	ck_assert_str_eq(out.data, "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2Vy"
	    "dmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRj"
	    "Mk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2c9PQEB");
	ck_assert_int_eq(sasl_complete(s, &e), 0);
	/* RFC 7628 3.2.3: the error is answered with a lone %x01. */
	ck_assert_int_eq(step_plain(s, JSON_ERR, &out, &e), 0);
	ck_assert_str_eq(out.data, "AQ==");
	ck_assert(strstr(sasl_server_error(s), "bearer") != NULL);
	ck_assert_int_eq(sasl_complete(s, &e), -1);
	sasl_free(s);

	/* No user, host or port: "n,," and only the token. */
	s = sasl_new(SASL_OAUTHBEARER, "", "tok", NULL, 0);
	ck_assert_int_eq(sasl_initial(s, &out, &e), 0);
	decode_into(&out, &d);
	ck_assert_str_eq(d.data, "n,,\001auth=Bearer tok\001\001");
	buf_free(&d);
	sasl_free(s);

	/* The authzid is a saslname. */
	s = sasl_new(SASL_OAUTHBEARER, "a,b=c", "tok", "h", 25);
	ck_assert_int_eq(sasl_initial(s, &out, &e), 0);
	decode_into(&out, &d);
	ck_assert_str_eq(d.data,
	    "n,a=a=2Cb=3Dc,\001host=h\001port=25\001auth=Bearer tok\001\001");
	buf_free(&d);
	sasl_free(s);
	buf_wipe_free(&out);
}
END_TEST

static const struct {
	enum sasl_mech m;
	const char *user, *token;
} oauth_bad[] = {
	{ SASL_XOAUTH2, "u@example.com", "tok\n" },
	{ SASL_XOAUTH2, "u@example.com", "to k" },
	{ SASL_XOAUTH2, "u@example.com", "tok\001auth=x" },
	{ SASL_XOAUTH2, "u@example.com\001auth=Bearer x", "tok" },
	{ SASL_XOAUTH2, "", "tok" },
	{ SASL_XOAUTH2, "u@example.com", "" },
	{ SASL_OAUTHBEARER, "u@example.com", "t\xc3\xa9" },
	{ SASL_OAUTHBEARER, "u\001", "tok" },
};

START_TEST(test_oauth_bad_creds)
{
	struct sasl *s = sasl_new(oauth_bad[_i].m, oauth_bad[_i].user,
	    oauth_bad[_i].token, "h", 587);
	struct buf out;
	struct err e = { 0 };

	buf_init(&out, 0);
	ck_assert_int_eq(sasl_initial(s, &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_CONFIG);
	ck_assert_uint_eq(out.len, 0);
	ck_assert_int_eq(sasl_complete(s, &e), -1);
	buf_free(&out);
	sasl_free(s);
}
END_TEST

/* --- misc ----------------------------------------------------------------- */

/* Over-long challenges and credentials are refused, not processed. */
START_TEST(test_limits)
{
	struct sasl *s;
	struct buf out;
	struct err e = { 0 };
	char *big = xmalloc(20001);

	memset(big, 'A', 20000);
	big[20000] = '\0';
	buf_init(&out, 0);
	s = sasl_new(SASL_LOGIN, "tim", "pw", NULL, 0);
	ck_assert_int_eq(sasl_step(s, big, &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_PROTO);
	ck_assert(strstr(e.msg, "longer") != NULL);
	sasl_free(s);
	s = sasl_new(SASL_PLAIN, "tim", big, NULL, 0);
	ck_assert_int_eq(sasl_initial(s, &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_CONFIG);
	sasl_free(s);
	s = sasl_new(SASL_PLAIN, big, "pw", NULL, 0);
	ck_assert_int_eq(sasl_initial(s, &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_CONFIG);
	sasl_free(s);
	/* A caller buffer too small for the response. */
	buf_free(&out);
	buf_init(&out, 8);
	s = sasl_new(SASL_PLAIN, "tim", "tanstaaftanstaaf", NULL, 0);
	ck_assert_int_eq(sasl_initial(s, &out, &e), -1);
	ck_assert_int_eq(e.cls, ERR_INTERNAL);
	sasl_free(s);
	buf_free(&out);
	free(big);
}
END_TEST

static Suite *
sasl_suite(void)
{
	Suite *su = suite_create("sasl");
	TCase *tc;

	tc = tcase_create("base64");
	tcase_add_loop_test(tc, test_b64_vectors, 0,
	    sizeof(b64_vectors) / sizeof(b64_vectors[0]));
	tcase_add_loop_test(tc, test_b64_binary_roundtrip, 0, 257);
	tcase_add_loop_test(tc, test_b64_bad, 0,
	    sizeof(b64_bad) / sizeof(b64_bad[0]));
	tcase_add_test(tc, test_b64_nul);
	tcase_add_test(tc, test_b64_append_and_cap);
	suite_add_tcase(su, tc);

	tc = tcase_create("choose");
	tcase_add_test(tc, test_mech_names);
	tcase_add_loop_test(tc, test_choose, 0,
	    sizeof(choose_tab) / sizeof(choose_tab[0]));
	tcase_add_test(tc, test_choose_hostile_offer);
	suite_add_tcase(su, tc);

	tc = tcase_create("plain_login_cram");
	tcase_add_test(tc, test_plain);
	tcase_add_loop_test(tc, test_plain_no_ir, 0, 4);
	tcase_add_test(tc, test_plain_bad_creds);
	tcase_add_loop_test(tc, test_login, 0,
	    sizeof(login_tab) / sizeof(login_tab[0]));
	tcase_add_test(tc, test_login_wire);
	tcase_add_test(tc, test_cram_md5_rfc2195);
	suite_add_tcase(su, tc);

	tc = tcase_create("scram");
	tcase_add_test(tc, test_scram_rfc7677);
	tcase_add_test(tc, test_scram_final_extension);
	tcase_add_loop_test(tc, test_scram_final_bad, 0,
	    sizeof(scram_final_bad) / sizeof(scram_final_bad[0]));
	tcase_add_loop_test(tc, test_scram_first_bad, 0,
	    sizeof(scram_first_bad) / sizeof(scram_first_bad[0]));
	tcase_add_test(tc, test_scram_first_nul);
	tcase_add_test(tc, test_scram_first_extension);
	tcase_add_test(tc, test_scram_random_nonce);
	tcase_add_test(tc, test_scram_names_and_saslprep);
	tcase_add_test(tc, test_scram_no_ir);
	suite_add_tcase(su, tc);

	tc = tcase_create("oauth");
	tcase_add_test(tc, test_xoauth2);
	tcase_add_test(tc, test_oauthbearer);
	tcase_add_loop_test(tc, test_oauth_bad_creds, 0,
	    sizeof(oauth_bad) / sizeof(oauth_bad[0]));
	tcase_add_test(tc, test_limits);
	suite_add_tcase(su, tc);
	return su;
}

int
main(void)
{
	SRunner *sr = srunner_create(sasl_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
