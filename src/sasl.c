/*
 * sasl.c - SMTP AUTH client mechanisms. Turns a user name and a secret into
 * the base64 payloads of PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256, XOAUTH2 and
 * OAUTHBEARER exchanges, verifies the SCRAM server signature, and picks the
 * mechanism from the server's offer. Owns, and wipes, every copy of the
 * secret and of the keys derived from it. No I/O.
 *
 * SASLprep (RFC 4013) for SCRAM is implemented for the common case only:
 * printable ASCII is its own SASLprep form and passes through; control
 * characters are prohibited; non-ASCII input is refused with a hint to use
 * PLAIN over TLS, since mapping it right needs the Unicode NFKC tables.
 */
#include "autoconf.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "sasl.h"

#define USER_MAX        1024    /* bytes of user name */
#define SECRET_MAX      16384   /* bytes of password or OAuth token */
#define CHALLENGE_MAX   8192    /* base64 characters of one 334 challenge */
#define LOGIN_STEPS_MAX 4
#define NONCE_RAW       24      /* random bytes in a SCRAM client nonce */
#define NONCE_MAX       256     /* characters in a client nonce */
#define SALT_MAX        256     /* decoded bytes of a SCRAM salt */
#define ITER_MIN        4096    /* RFC 7677 section 4 */
#define ITER_MAX        1000000 /* ~1 s of PBKDF2: a bound against a DoS */
#define SHA256_LEN      32
#define ESC_MAX         256     /* escaped server text kept in messages */

enum sasl_state {
	ST_START,       /* nothing sent */
	ST_SCRAM_FIRST, /* SCRAM client-first sent, awaiting server-first */
	ST_SCRAM_FINAL, /* SCRAM client-final sent, awaiting "v=" */
	ST_DONE,        /* our side of the exchange is complete */
	ST_REJECTED,    /* OAuth: the server sent its error, awaiting 535 */
	ST_FAILED,      /* we refused to go on */
};

struct sasl {
	enum sasl_mech mech;
	enum sasl_state state;
	char *user, *secret, *host;
	int port;
	int initial_called;
	int login_steps, login_user_sent, login_pass_sent;
	char nonce[NONCE_MAX + 1];      /* SCRAM client nonce */
	char *client_first_bare;        /* SCRAM, part of AuthMessage */
	unsigned char server_sig[SHA256_LEN];
	char server_error[ESC_MAX];
};

/* Bytes to concatenate into one exactly-sized block (no realloc copies). */
struct piece {
	const void *p;
	size_t n;
};

static const struct {
	enum sasl_mech mech;
	const char *name;
} mech_names[] = {
	{ SASL_PLAIN, "PLAIN" },
	{ SASL_LOGIN, "LOGIN" },
	{ SASL_CRAM_MD5, "CRAM-MD5" },
	{ SASL_SCRAM_SHA_256, "SCRAM-SHA-256" },
	{ SASL_XOAUTH2, "XOAUTH2" },
	{ SASL_OAUTHBEARER, "OAUTHBEARER" },
};
#define NMECHS (sizeof(mech_names) / sizeof(mech_names[0]))

static const enum sasl_mech strength[] = {
	SASL_SCRAM_SHA_256, SASL_OAUTHBEARER, SASL_XOAUTH2,
	SASL_CRAM_MD5, SASL_PLAIN, SASL_LOGIN,
};
static const enum sasl_mech default_allowed[] = {
	SASL_SCRAM_SHA_256, SASL_PLAIN, SASL_LOGIN,
};

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* --- base64 ------------------------------------------------------------- */

int
base64_encode(const void *in, size_t len, struct buf *out)
{
	const unsigned char *p = in;
	size_t olen, i, o = 0;
	char *tmp;
	int r;

	if (len > (SIZE_MAX / 4 - 1) * 3)
		return -1;
	olen = (len + 2) / 3 * 4;
	if (olen == 0)
		return 0;
	tmp = xmalloc(olen);
	for (i = 0; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 |
		    p[i + 2];
		tmp[o++] = b64_alphabet[v >> 18];
		tmp[o++] = b64_alphabet[(v >> 12) & 63];
		tmp[o++] = b64_alphabet[(v >> 6) & 63];
		tmp[o++] = b64_alphabet[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		tmp[o++] = b64_alphabet[v >> 18];
		tmp[o++] = b64_alphabet[(v >> 12) & 63];
		tmp[o++] = '=';
		tmp[o++] = '=';
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		tmp[o++] = b64_alphabet[v >> 18];
		tmp[o++] = b64_alphabet[(v >> 12) & 63];
		tmp[o++] = b64_alphabet[(v >> 6) & 63];
		tmp[o++] = '=';
	}
	/* One append: a growing buffer would leave stale copies behind. */
	r = buf_append(out, tmp, o);
	secure_zero(tmp, olen);
	free(tmp);
	return r;
}

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int
base64_decode(const char *in, size_t len, struct buf *out)
{
	size_t pad = 0, n, i, o = 0, olen;
	uint32_t acc = 0;
	unsigned bits = 0;
	unsigned char *tmp;
	int r = -1;

	if (len % 4 != 0)
		return -1;
	if (len == 0)
		return 0;
	if (in[len - 1] == '=')
		pad = in[len - 2] == '=' ? 2 : 1;
	n = len - pad;
	olen = len / 4 * 3 - pad;
	tmp = xmalloc(olen + 1);
	for (i = 0; i < n; i++) {
		int v = b64_value((unsigned char)in[i]);

		if (v < 0)
			goto done;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			tmp[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* RFC 4648 3.5: the pad bits of a canonical encoding are zero. */
	if (acc != 0 || o != olen)
		goto done;
	r = buf_append(out, tmp, o);
done:
	secure_zero(tmp, olen + 1);
	free(tmp);
	return r;
}

/* --- mechanism names and choice ----------------------------------------- */

const char *
sasl_mech_name(enum sasl_mech m)
{
	if (m == SASL_NONE)
		return "none";
	for (size_t i = 0; i < NMECHS; i++)
		if (mech_names[i].mech == m)
			return mech_names[i].name;
	return "unknown";
}

enum sasl_mech
sasl_mech_from_name(const char *name)
{
	if (name == NULL)
		return SASL_NONE;
	for (size_t i = 0; i < NMECHS; i++)
		if (strcasecmp(mech_names[i].name, name) == 0)
			return mech_names[i].mech;
	return SASL_NONE;
}

/* Space-separated, escaped (server words are untrusted) and capped. */
static void
join_words(const struct strlist *l, char *dst, size_t size)
{
	char word[64];

	dst[0] = '\0';
	for (size_t i = 0; l != NULL && i < l->n; i++) {
		str_escape(l->v[i], strlen(l->v[i]), word, sizeof(word));
		if ((i > 0 && str_append(dst, " ", size) < 0) ||
		    str_append(dst, word, size) < 0) {
			/* Mark the truncation; size is at least 8 here. */
			memcpy(dst + size - 4, "...", 4);
			return;
		}
	}
}

int
sasl_choose(const struct strlist *offered, const struct strlist *allowed,
    enum sasl_mech *out, struct err *err)
{
	int ok[SASL_OAUTHBEARER + 1] = { 0 };
	char offer_s[400], allow_s[400];
	int dflt = allowed == NULL || allowed->n == 0;

	*out = SASL_NONE;
	if (dflt) {
		for (size_t i = 0; i < sizeof(default_allowed) /
		    sizeof(default_allowed[0]); i++)
			ok[default_allowed[i]] = 1;
	} else {
		for (size_t i = 0; i < allowed->n; i++) {
			enum sasl_mech m = sasl_mech_from_name(allowed->v[i]);

			if (m == SASL_NONE) {
				char esc[64];

				str_escape(allowed->v[i], strlen(allowed->v[i]),
				    esc, sizeof(esc));
				return err_set(err, ERR_CONFIG,
				    "unknown AUTH mechanism \"%s\" in the "
				    "allowed list", esc);
			}
			ok[m] = 1;
		}
	}
	for (size_t i = 0; i < sizeof(strength) / sizeof(strength[0]); i++) {
		enum sasl_mech m = strength[i];

		if (ok[m] && offered != NULL &&
		    strlist_has_ci(offered, sasl_mech_name(m))) {
			*out = m;
			return 0;
		}
	}
	join_words(offered, offer_s, sizeof(offer_s));
	if (dflt)
		str_copy(allow_s, "SCRAM-SHA-256 PLAIN LOGIN (the default)",
		    sizeof(allow_s));
	else
		join_words(allowed, allow_s, sizeof(allow_s));
	return err_set(err, ERR_PERM,
	    "no usable AUTH mechanism: server offers %s%s%s, allowed are %s",
	    offer_s[0] ? "\"" : "", offer_s[0] ? offer_s : "none",
	    offer_s[0] ? "\"" : "", allow_s);
}

/* --- helpers -------------------------------------------------------------- */

static void
free_secret_str(char *p)
{
	if (p != NULL) {
		secure_zero(p, strlen(p));
		free(p);
	}
}

/* Concatenate pieces into a fresh block; the caller wipes and frees it. */
static unsigned char *
concat(const struct piece *pc, size_t npc, size_t *lenp)
{
	unsigned char *p;
	size_t len = 0, o = 0;

	for (size_t i = 0; i < npc; i++)
		len += pc[i].n;
	p = xmalloc(len + 1);
	for (size_t i = 0; i < npc; i++) {
		if (pc[i].n)
			memcpy(p + o, pc[i].p, pc[i].n);
		o += pc[i].n;
	}
	p[len] = '\0';
	*lenp = len;
	return p;
}

static void
free_block(unsigned char *p, size_t len)
{
	secure_zero(p, len + 1);
	free(p);
}

/* Wipe whatever a previous response left in out, then reset it. */
static void
out_clear(struct buf *out)
{
	if (out->data != NULL)
		secure_zero(out->data, out->cap);
	buf_reset(out);
}

static int
put_b64(struct buf *out, const void *p, size_t n, struct err *err)
{
	out_clear(out);
	if (base64_encode(p, n, out) < 0)
		return err_set(err, ERR_INTERNAL,
		    "AUTH response of %zu bytes does not fit the buffer", n);
	return 0;
}

/* Put a concatenation on the wire and wipe the plaintext. */
static int
put_pieces(struct buf *out, const struct piece *pc, size_t npc,
    struct err *err)
{
	size_t len;
	unsigned char *p = concat(pc, npc, &len);
	int r = put_b64(out, p, len, err);

	free_block(p, len);
	return r;
}

static int
contains_ci(const char *hay, size_t len, const char *needle)
{
	size_t nl = strlen(needle);

	for (size_t i = 0; i + nl <= len; i++)
		if (strncasecmp(hay + i, needle, nl) == 0)
			return 1;
	return 0;
}

static int
all_in_range(const char *s, unsigned char lo, unsigned char hi)
{
	for (; *s; s++)
		if ((unsigned char)*s < lo || (unsigned char)*s > hi)
			return 0;
	return 1;
}

static int
is_client_first(enum sasl_mech m)
{
	return m == SASL_PLAIN || m == SASL_SCRAM_SHA_256 ||
	    m == SASL_XOAUTH2 || m == SASL_OAUTHBEARER;
}

static int
is_oauth(enum sasl_mech m)
{
	return m == SASL_XOAUTH2 || m == SASL_OAUTHBEARER;
}

/* RFC 5802 saslname: ',' and '=' are escaped as =2C and =3D. */
static char *
saslname(const char *s, size_t *lenp)
{
	char *p = xmalloc(strlen(s) * 3 + 1), *q = p;

	for (; *s; s++) {
		if (*s == ',') {
			memcpy(q, "=2C", 3);
			q += 3;
		} else if (*s == '=') {
			memcpy(q, "=3D", 3);
			q += 3;
		} else
			*q++ = *s;
	}
	*q = '\0';
	*lenp = (size_t)(q - p);
	return p;
}

/* The common-case SASLprep: ASCII passes through, the rest is refused. */
static int
saslprep_check(const char *s, const char *what, struct err *err)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= 0x80)
			return err_set(err, ERR_PERM,
			    "SCRAM needs SASLprep for non-ASCII %ss; "
			    "use PLAIN over TLS", what);
		if (c < 0x20 || c == 0x7f)
			return err_set(err, ERR_PERM,
			    "SCRAM %s contains a control character, "
			    "which SASLprep prohibits", what);
	}
	return 0;
}

/* Validate the credentials once, before anything goes on the wire. */
static int
check_creds(const struct sasl *s, struct err *err)
{
	const char *name = sasl_mech_name(s->mech);

	if (s->mech == SASL_NONE || strcmp(name, "unknown") == 0)
		return err_set(err, ERR_INTERNAL, "no SASL mechanism selected");
	if (strlen(s->user) > USER_MAX)
		return err_set(err, ERR_CONFIG,
		    "AUTH user name longer than %d bytes", USER_MAX);
	if (strlen(s->secret) > SECRET_MAX)
		return err_set(err, ERR_CONFIG,
		    "AUTH %s longer than %d bytes",
		    is_oauth(s->mech) ? "token" : "password", SECRET_MAX);
	if (s->user[0] == '\0' && s->mech != SASL_OAUTHBEARER)
		return err_set(err, ERR_CONFIG, "%s needs a user name", name);
	if (s->secret[0] == '\0')
		return err_set(err, ERR_CONFIG, "%s needs a %s", name,
		    is_oauth(s->mech) ? "token" : "password");
	if (is_oauth(s->mech)) {
		if (!all_in_range(s->secret, 0x21, 0x7e))
			return err_set(err, ERR_CONFIG, "the OAuth token "
			    "contains a blank, control or non-ASCII character");
		if (!all_in_range(s->user, 0x20, 0xff) ||
		    !all_in_range(s->host, 0x20, 0xff))
			return err_set(err, ERR_CONFIG, "%s user or host name "
			    "contains a control character", name);
	}
	if (s->mech == SASL_SCRAM_SHA_256) {
		if (saslprep_check(s->user, "user name", err) < 0 ||
		    saslprep_check(s->secret, "password", err) < 0)
			return -1;
		if (s->nonce[0] != '\0' && (!all_in_range(s->nonce, 0x21, 0x7e) ||
		    strchr(s->nonce, ',') != NULL))
			return err_set(err, ERR_INTERNAL,
			    "bad fixed SCRAM client nonce");
	}
	return 0;
}

static int
hmac_sha256(const void *key, size_t klen, const void *data, size_t dlen,
    unsigned char md[SHA256_LEN])
{
	unsigned int mdlen = 0;

	if (klen > INT_MAX ||
	    HMAC(EVP_sha256(), key, (int)klen, data, dlen, md, &mdlen) == NULL ||
	    mdlen != SHA256_LEN)
		return -1;
	return 0;
}

static void
remember_server_error(struct sasl *s, const char *p, size_t len)
{
	str_escape(p, len, s->server_error, sizeof(s->server_error));
}

/* --- PLAIN, XOAUTH2, OAUTHBEARER ------------------------------------------ */

static int
plain_initial(struct sasl *s, struct buf *out, struct err *err)
{
	struct piece pc[] = {
		{ "", 1 }, { s->user, strlen(s->user) },
		{ "", 1 }, { s->secret, strlen(s->secret) },
	};

	return put_pieces(out, pc, 4, err);
}

static int
xoauth2_initial(struct sasl *s, struct buf *out, struct err *err)
{
	struct piece pc[] = {
		{ "user=", 5 }, { s->user, strlen(s->user) },
		{ "\001auth=Bearer ", 13 }, { s->secret, strlen(s->secret) },
		{ "\001\001", 2 },
	};

	return put_pieces(out, pc, 5, err);
}

/* RFC 7628 section 3.1; host and port are left out when unknown. */
static int
oauthbearer_initial(struct sasl *s, struct buf *out, struct err *err)
{
	char port[16] = "";
	size_t ulen;
	char *user = saslname(s->user, &ulen);
	int have_host = s->host[0] != '\0', have_port = s->port > 0;
	int r;

	if (have_port)
		str_fmt(port, sizeof(port), "%d", s->port);
	{
		struct piece pc[] = {
			{ "n,", 2 },
			{ "a=", ulen ? 2 : 0 }, { user, ulen }, { ",\001", 2 },
			{ "host=", have_host ? 5 : 0 },
			{ s->host, have_host ? strlen(s->host) : 0 },
			{ "\001", have_host ? 1 : 0 },
			{ "port=", have_port ? 5 : 0 }, { port, strlen(port) },
			{ "\001", have_port ? 1 : 0 },
			{ "auth=Bearer ", 12 },
			{ s->secret, strlen(s->secret) },
			{ "\001\001", 2 },
		};

		r = put_pieces(out, pc, sizeof(pc) / sizeof(pc[0]), err);
	}
	free(user);
	return r;
}

/* A challenge after the OAuth response carries the server's JSON error. */
static int
oauth_error(struct sasl *s, const char *msg, size_t len, struct buf *out,
    struct err *err)
{
	remember_server_error(s, msg, len);
	s->state = ST_REJECTED;
	out_clear(out);
	if (s->mech == SASL_OAUTHBEARER)
		return put_b64(out, "\001", 1, err);   /* RFC 7628 3.2.3 */
	return 0;
}

/* --- LOGIN, CRAM-MD5 ------------------------------------------------------ */

/* Answer by what the prompt asks for; unclear prompts by order. */
static int
login_step(struct sasl *s, const char *prompt, size_t len, struct buf *out,
    struct err *err)
{
	int want_pass;
	int r;

	if (++s->login_steps > LOGIN_STEPS_MAX)
		return err_set(err, ERR_PROTO, "too many LOGIN challenges");
	if (contains_ci(prompt, len, "pass"))
		want_pass = 1;
	else if (contains_ci(prompt, len, "user") ||
	    contains_ci(prompt, len, "name") ||
	    contains_ci(prompt, len, "login"))
		want_pass = 0;
	else
		want_pass = s->login_user_sent;
	if (want_pass) {
		r = put_b64(out, s->secret, strlen(s->secret), err);
		s->login_pass_sent = 1;
	} else {
		r = put_b64(out, s->user, strlen(s->user), err);
		s->login_user_sent = 1;
	}
	if (r == 0 && s->login_user_sent && s->login_pass_sent)
		s->state = ST_DONE;
	return r;
}

static int
cram_md5_step(struct sasl *s, const unsigned char *chal, size_t len,
    struct buf *out, struct err *err)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	char hex[2 * EVP_MAX_MD_SIZE + 1];
	unsigned int mdlen = 0;
	size_t slen = strlen(s->secret);
	int r;

	if (len == 0)
		return err_set(err, ERR_PROTO, "empty CRAM-MD5 challenge");
	if (HMAC(EVP_md5(), s->secret, (int)slen, chal, len, md,
	    &mdlen) == NULL || mdlen != 16)
		return err_set(err, ERR_PERM, "CRAM-MD5 is unavailable: "
		    "this OpenSSL refuses HMAC-MD5 (FIPS mode?)");
	for (unsigned int i = 0; i < mdlen; i++) {
		hex[2 * i] = "0123456789abcdef"[md[i] >> 4];
		hex[2 * i + 1] = "0123456789abcdef"[md[i] & 15];
	}
	hex[2 * mdlen] = '\0';
	{
		struct piece pc[] = {
			{ s->user, strlen(s->user) }, { " ", 1 },
			{ hex, 2 * mdlen },
		};

		r = put_pieces(out, pc, 3, err);
	}
	secure_zero(md, sizeof(md));
	secure_zero(hex, sizeof(hex));
	if (r == 0)
		s->state = ST_DONE;
	return r;
}

/* --- SCRAM-SHA-256 (RFC 5802, RFC 7677) ----------------------------------- */

static int
scram_client_first(struct sasl *s, struct buf *out, struct err *err)
{
	size_t ulen, blen;
	char *user;
	int r;

	if (s->nonce[0] == '\0') {
		unsigned char raw[NONCE_RAW];
		struct buf b;

		if (RAND_bytes(raw, sizeof(raw)) != 1)
			return err_set(err, ERR_INTERNAL,
			    "cannot get random bytes for the SCRAM nonce");
		buf_init(&b, NONCE_MAX);
		r = base64_encode(raw, sizeof(raw), &b);
		if (r == 0)
			str_copy(s->nonce, b.data, sizeof(s->nonce));
		buf_free(&b);
		if (r < 0)
			return err_set(err, ERR_INTERNAL, "SCRAM nonce");
	}
	user = saslname(s->user, &ulen);
	{
		struct piece pc[] = {
			{ "n=", 2 }, { user, ulen },
			{ ",r=", 3 }, { s->nonce, strlen(s->nonce) },
		};

		free_secret_str(s->client_first_bare);
		s->client_first_bare = (char *)concat(pc, 4, &blen);
	}
	free(user);
	{
		struct piece pc[] = {
			{ "n,,", 3 }, { s->client_first_bare, blen },
		};

		r = put_pieces(out, pc, 2, err);
	}
	if (r == 0)
		s->state = ST_SCRAM_FIRST;
	return r;
}

/*
 * Take "<key>=<value>" at *p up to the next ',' or the end; *p moves past
 * the ','. -1 if the attribute there is not key.
 */
static int
scram_attr(const char **p, const char *end, char key, const char **val,
    size_t *vlen)
{
	const char *q = *p, *comma;

	if (end - q < 2 || q[0] != key || q[1] != '=')
		return -1;
	q += 2;
	comma = memchr(q, ',', (size_t)(end - q));
	*val = q;
	*vlen = (size_t)((comma ? comma : end) - q);
	*p = comma ? comma + 1 : end;
	return 0;
}

static int
scram_server_says(struct sasl *s, const char *msg, size_t len,
    struct err *err)
{
	remember_server_error(s, msg + 2, len - 2);
	return err_set(err, ERR_PERM,
	    "SCRAM-SHA-256 authentication refused by the server: %s",
	    s->server_error);
}

/* The proof: everything derived from the password is wiped on return. */
static int
scram_prove(struct sasl *s, const char *server_first, size_t sflen,
    const char *nonce, size_t nlen, const struct buf *salt, long iter,
    struct buf *out, struct err *err)
{
	unsigned char salted[SHA256_LEN], client_key[SHA256_LEN];
	unsigned char stored_key[SHA256_LEN], client_sig[SHA256_LEN];
	unsigned char proof[SHA256_LEN], server_key[SHA256_LEN];
	unsigned char *auth = NULL, *final = NULL;
	size_t alen = 0, flen = 0;
	unsigned int mdlen = 0;
	struct buf proof64;
	int r = -1;

	buf_init(&proof64, 64);
	if (PKCS5_PBKDF2_HMAC(s->secret, (int)strlen(s->secret),
	    (const unsigned char *)salt->data, (int)salt->len, (int)iter,
	    EVP_sha256(), SHA256_LEN, salted) != 1 ||
	    hmac_sha256(salted, SHA256_LEN, "Client Key", 10, client_key) < 0 ||
	    EVP_Digest(client_key, SHA256_LEN, stored_key, &mdlen,
	    EVP_sha256(), NULL) != 1 || mdlen != SHA256_LEN ||
	    hmac_sha256(salted, SHA256_LEN, "Server Key", 10, server_key) < 0) {
		err_set(err, ERR_INTERNAL, "SCRAM key derivation failed");
		goto done;
	}
	{
		/* AuthMessage = client-first-bare "," server-first ","
		 * client-final-without-proof; the latter is "c=biws,r=...". */
		struct piece pc[] = {
			{ s->client_first_bare, strlen(s->client_first_bare) },
			{ ",", 1 }, { server_first, sflen },
			{ ",c=biws,r=", 10 }, { nonce, nlen },
		};

		auth = concat(pc, 5, &alen);
	}
	if (hmac_sha256(stored_key, SHA256_LEN, auth, alen, client_sig) < 0 ||
	    hmac_sha256(server_key, SHA256_LEN, auth, alen,
	    s->server_sig) < 0) {
		err_set(err, ERR_INTERNAL, "SCRAM signature computation failed");
		goto done;
	}
	for (size_t i = 0; i < SHA256_LEN; i++)
		proof[i] = client_key[i] ^ client_sig[i];
	if (base64_encode(proof, SHA256_LEN, &proof64) < 0) {
		err_set(err, ERR_INTERNAL, "SCRAM proof encoding");
		goto done;
	}
	{
		struct piece pc[] = {
			{ "c=biws,r=", 9 }, { nonce, nlen },
			{ ",p=", 3 }, { proof64.data, proof64.len },
		};

		final = concat(pc, 4, &flen);
	}
	if ((r = put_b64(out, final, flen, err)) == 0)
		s->state = ST_SCRAM_FINAL;
done:
	secure_zero(salted, sizeof(salted));
	secure_zero(client_key, sizeof(client_key));
	secure_zero(stored_key, sizeof(stored_key));
	secure_zero(client_sig, sizeof(client_sig));
	secure_zero(proof, sizeof(proof));
	secure_zero(server_key, sizeof(server_key));
	buf_wipe_free(&proof64);
	if (auth != NULL)
		free_block(auth, alen);
	if (final != NULL)
		free_block(final, flen);
	return r;
}

/* server-first-message = [m=...,] r=nonce,s=salt,i=count[,ext...] */
static int
scram_server_first(struct sasl *s, const char *msg, size_t len,
    struct buf *out, struct err *err)
{
	const char *p = msg, *end = msg + len, *nonce, *salt64, *iter_s;
	size_t nlen, slen, ilen, ours = strlen(s->nonce);
	char iter_buf[16], esc[ESC_MAX];
	struct buf salt;
	long iter;
	int r;

	if (len >= 2 && msg[0] == 'e' && msg[1] == '=')
		return scram_server_says(s, msg, len, err);
	if (len >= 2 && msg[0] == 'm' && msg[1] == '=')
		return err_set(err, ERR_PROTO, "SCRAM server requires an "
		    "unsupported mandatory extension");
	str_escape(msg, len, esc, sizeof(esc));
	if (scram_attr(&p, end, 'r', &nonce, &nlen) < 0 ||
	    scram_attr(&p, end, 's', &salt64, &slen) < 0 ||
	    scram_attr(&p, end, 'i', &iter_s, &ilen) < 0)
		return err_set(err, ERR_PROTO,
		    "malformed SCRAM server-first message \"%s\"", esc);
	for (size_t i = 0; i < nlen; i++)
		if (nonce[i] < 0x21 || nonce[i] > 0x7e)
			return err_set(err, ERR_PROTO,
			    "bad character in the SCRAM server nonce");
	if (nlen <= ours || memcmp(nonce, s->nonce, ours) != 0)
		return err_set(err, ERR_PROTO, "SCRAM server nonce does not "
		    "extend ours: \"%s\"", esc);
	if (ilen == 0 || ilen >= sizeof(iter_buf))
		iter_buf[0] = '\0';
	else {
		memcpy(iter_buf, iter_s, ilen);
		iter_buf[ilen] = '\0';
	}
	if (parse_long(iter_buf, ITER_MIN, ITER_MAX, &iter) < 0)
		return err_set(err, ERR_PROTO, "SCRAM iteration count outside "
		    "%d..%d in \"%s\"", ITER_MIN, ITER_MAX, esc);
	buf_init(&salt, SALT_MAX);
	if (slen == 0 || base64_decode(salt64, slen, &salt) < 0 ||
	    salt.len == 0) {
		buf_free(&salt);
		return err_set(err, ERR_PROTO,
		    "bad SCRAM salt in \"%s\"", esc);
	}
	r = scram_prove(s, msg, len, nonce, nlen, &salt, iter, out, err);
	buf_free(&salt);
	return r;
}

/* server-final-message = ("e=" error / "v=" signature) [,ext...] */
static int
scram_server_final(struct sasl *s, const char *msg, size_t len,
    struct buf *out, struct err *err)
{
	const char *p = msg, *v;
	size_t vlen;
	struct buf sig;
	int ok;

	if (len >= 2 && msg[0] == 'e' && msg[1] == '=')
		return scram_server_says(s, msg, len, err);
	if (scram_attr(&p, msg + len, 'v', &v, &vlen) < 0)
		return err_set(err, ERR_PROTO,
		    "malformed SCRAM server-final message");
	buf_init(&sig, 64);
	ok = base64_decode(v, vlen, &sig) == 0 && sig.len == SHA256_LEN &&
	    CRYPTO_memcmp(sig.data, s->server_sig, SHA256_LEN) == 0;
	buf_free(&sig);
	if (!ok)
		return err_set(err, ERR_PROTO, "server signature mismatch: "
		    "the server did not prove it knows the password");
	out_clear(out);
	s->state = ST_DONE;
	return 0;
}

/* --- the exchange --------------------------------------------------------- */

struct sasl *
sasl_new(enum sasl_mech m, const char *user, const char *secret,
    const char *host, int port)
{
	struct sasl *s = xcalloc(1, sizeof(*s));

	s->mech = m;
	s->state = ST_START;
	s->user = xstrdup(user ? user : "");
	s->secret = xstrdup(secret ? secret : "");
	s->host = xstrdup(host ? host : "");
	s->port = port;
	return s;
}

void
sasl_set_nonce(struct sasl *s, const char *nonce)
{
	str_copy(s->nonce, nonce, sizeof(s->nonce));
}

static int
initial_response(struct sasl *s, struct buf *out, struct err *err)
{
	int r;

	if (check_creds(s, err) < 0)
		return -1;
	switch (s->mech) {
	case SASL_PLAIN:
		r = plain_initial(s, out, err);
		break;
	case SASL_SCRAM_SHA_256:
		return scram_client_first(s, out, err);
	case SASL_XOAUTH2:
		r = xoauth2_initial(s, out, err);
		break;
	case SASL_OAUTHBEARER:
		r = oauthbearer_initial(s, out, err);
		break;
	default:
		return err_set(err, ERR_INTERNAL,
		    "%s has no initial response", sasl_mech_name(s->mech));
	}
	if (r == 0)
		s->state = ST_DONE;
	return r;
}

int
sasl_initial(struct sasl *s, struct buf *out, struct err *err)
{
	out_clear(out);
	if (s->initial_called || s->state != ST_START)
		return err_set(err, ERR_INTERNAL,
		    "SASL initial response requested twice");
	s->initial_called = 1;
	if (!is_client_first(s->mech)) {
		if (check_creds(s, err) < 0) {
			s->state = ST_FAILED;
			return -1;
		}
		return 0;
	}
	if (initial_response(s, out, err) < 0) {
		s->state = ST_FAILED;
		return -1;
	}
	return 0;
}

static int
step_decoded(struct sasl *s, const char *msg, size_t len, struct buf *out,
    struct err *err)
{
	const char *name = sasl_mech_name(s->mech);

	if (s->state == ST_START && is_client_first(s->mech)) {
		if (len != 0)
			return err_set(err, ERR_PROTO, "%s server sent a "
			    "challenge before the initial response", name);
		return initial_response(s, out, err);
	}
	if (s->state == ST_START && check_creds(s, err) < 0)
		return -1;
	if (s->state == ST_DONE && is_oauth(s->mech))
		return oauth_error(s, msg, len, out, err);
	if (s->state == ST_DONE || s->state == ST_REJECTED)
		return err_set(err, ERR_PROTO, "unexpected %s challenge after "
		    "the exchange completed", name);
	switch (s->mech) {
	case SASL_LOGIN:
		return login_step(s, msg, len, out, err);
	case SASL_CRAM_MD5:
		return cram_md5_step(s, (const unsigned char *)msg, len, out,
		    err);
	case SASL_SCRAM_SHA_256:
		if (memchr(msg, '\0', len) != NULL)
			return err_set(err, ERR_PROTO,
			    "NUL byte in a SCRAM server message");
		if (s->state == ST_SCRAM_FIRST)
			return scram_server_first(s, msg, len, out, err);
		return scram_server_final(s, msg, len, out, err);
	default:
		return err_set(err, ERR_INTERNAL, "%s in an impossible state",
		    name);
	}
}

int
sasl_step(struct sasl *s, const char *challenge, struct buf *out,
    struct err *err)
{
	size_t len;
	struct buf msg;
	int r;

	out_clear(out);
	if (s->state == ST_FAILED)
		return err_set(err, ERR_INTERNAL,
		    "SASL exchange continued after a failure");
	while (*challenge == ' ' || *challenge == '\t')
		challenge++;
	len = strlen(challenge);
	while (len > 0 && (challenge[len - 1] == ' ' ||
	    challenge[len - 1] == '\t' || challenge[len - 1] == '\r' ||
	    challenge[len - 1] == '\n'))
		len--;
	if (len == 1 && challenge[0] == '=')
		len = 0;        /* the empty-response notation of RFC 4954 */
	if (len > CHALLENGE_MAX) {
		s->state = ST_FAILED;
		return err_set(err, ERR_PROTO,
		    "AUTH challenge longer than %d characters", CHALLENGE_MAX);
	}
	buf_init(&msg, CHALLENGE_MAX);
	if (base64_decode(challenge, len, &msg) < 0) {
		char esc[128];

		str_escape(challenge, len, esc, sizeof(esc));
		buf_free(&msg);
		s->state = ST_FAILED;
		return err_set(err, ERR_PROTO,
		    "AUTH challenge is not valid base64: \"%s\"", esc);
	}
	r = step_decoded(s, msg.data ? msg.data : "", msg.len, out, err);
	buf_wipe_free(&msg);
	if (r < 0) {
		out_clear(out);
		s->state = ST_FAILED;
	}
	return r;
}

int
sasl_complete(struct sasl *s, struct err *err)
{
	const char *name = sasl_mech_name(s->mech);

	if (s->state == ST_DONE)
		return 0;
	if (s->state == ST_REJECTED)
		return err_set(err, ERR_PROTO, "server accepted %s after "
		    "rejecting the token: %s", name, s->server_error);
	if (s->mech == SASL_SCRAM_SHA_256)
		return err_set(err, ERR_PROTO, "server accepted SCRAM-SHA-256 "
		    "without a verified server signature");
	return err_set(err, ERR_PROTO, "server accepted %s before the "
	    "exchange completed", name);
}

const char *
sasl_server_error(const struct sasl *s)
{
	return s->server_error;
}

void
sasl_free(struct sasl *s)
{
	if (s == NULL)
		return;
	free_secret_str(s->user);
	free_secret_str(s->secret);
	free_secret_str(s->host);
	free_secret_str(s->client_first_bare);
	secure_zero(s, sizeof(*s));
	free(s);
}
