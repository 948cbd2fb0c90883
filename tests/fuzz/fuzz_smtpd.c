/*
 * fuzz_smtpd.c - smtpd_parse(), the parser of one -bs command line
 * ("MAIL FROM:<a@b> SIZE=100 BODY=8BITMIME", "EHLO client").
 *
 * Input: one option byte, then lines split at LF with a CR before it
 * removed, as the session reads them; each line is passed in a buffer of
 * exactly its length (no NUL after it), so a read past len is caught.
 * Option bits 0-1 pick max_size (none, 1, 1000, 10 MB); bit 2 pads the
 * first line with its last byte up to SMTPD_LINE_LIMIT octets, bit 3 one
 * octet more (the limit and just over it).
 * Properties:
 *  - a refused line gets a code the header lists (500, 501, 502, 552
 *    only with a max_size, 555) and a reply "CODE text" that starts with
 *    that code, fits the buffer with room to spare, and has no control
 *    character (CR, LF, NUL included); a line over the limit is 500;
 *  - an accepted line is within the limit, its verb is the line's first
 *    word, and the argument is text of the line: no control character but
 *    TAB, no NUL inside, no blank before it or blank or TAB after it
 *    (a leading TAB is kept: only SP ends the verb); HELO, EHLO and
 *    VRFY have one, DATA, RSET and QUIT none; MAIL and RCPT carry a path valid
 *    for addr_validate ("" only for MAIL), RCPT no parameters, and SIZE
 *    within max_size.
 */
#include "autoconf.h"

#include <strings.h>

#include "address.h"
#include "fuzz.h"
#include "smtpd.h"

#define CANARY 'Z'

static const unsigned long long max_sizes[] = { 0, 1, 1000, 10485760 };

static const char *const verb_names[] = {
	[SMTPD_HELO] = "HELO", [SMTPD_EHLO] = "EHLO", [SMTPD_MAIL] = "MAIL",
	[SMTPD_RCPT] = "RCPT", [SMTPD_DATA] = "DATA", [SMTPD_RSET] = "RSET",
	[SMTPD_NOOP] = "NOOP", [SMTPD_VRFY] = "VRFY", [SMTPD_HELP] = "HELP",
	[SMTPD_QUIT] = "QUIT",
};

static struct smtpd_cmd cmd;    /* 64 KB: not on the stack */

static void
check_refused(int rc, const char *reply, size_t len,
    unsigned long long max_size)
{
	size_t rlen = strnlen(reply, SMTPD_REPLY_MAX);

	FUZZ_CHECK(rc == 500 || rc == 501 || rc == 502 || rc == 555 ||
	    (rc == 552 && max_size != 0), "reply code %d", rc);
	FUZZ_CHECK(len <= SMTPD_LINE_LIMIT || rc == 500,
	    "a line of %zu octets answered %d", len, rc);
	FUZZ_CHECK(rlen < SMTPD_REPLY_MAX - 1 &&
	    reply[SMTPD_REPLY_MAX] == CANARY, "reply fills its buffer");
	FUZZ_CHECK(rlen > 4 && reply[0] == '0' + rc / 100 &&
	    reply[1] == '0' + rc / 10 % 10 && reply[2] == '0' + rc % 10 &&
	    reply[3] == ' ' && reply[4] != ' ',
	    "reply \"%s\" for code %d", reply, rc);
	FUZZ_CHECK(!fuzz_has_ctl(reply, rlen), "control character in \"%s\"",
	    reply);
}

static void
check_arg(const char *line, size_t len)
{
	const char *arg = cmd.arg;
	size_t alen = strnlen(arg, sizeof(cmd.arg));

	FUZZ_CHECK(alen < sizeof(cmd.arg), "arg not terminated");
	FUZZ_CHECK(alen <= len, "arg of %zu octets from a line of %zu",
	    alen, len);
	for (size_t i = 0; i < alen; i++) {
		unsigned char c = (unsigned char)arg[i];

		FUZZ_CHECK((c >= 0x20 || c == '\t') && c != 0x7f,
		    "control character 0x%02x in the argument", c);
	}
	if (cmd.verb == SMTPD_MAIL || cmd.verb == SMTPD_RCPT)
		return;
	FUZZ_CHECK(alen == 0 || (memmem(line, len, arg, alen) != NULL &&
	    arg[0] != ' ' && arg[alen - 1] != ' ' && arg[alen - 1] != '\t'),
	    "argument \"%.60s\" is not the line's text, trimmed", arg);
	switch (cmd.verb) {
	case SMTPD_HELO:
	case SMTPD_EHLO:
	case SMTPD_VRFY:
		FUZZ_CHECK(alen > 0, "%s without an argument",
		    verb_names[cmd.verb]);
		break;
	case SMTPD_DATA:
	case SMTPD_RSET:
	case SMTPD_QUIT:
		FUZZ_CHECK(alen == 0, "%s with an argument",
		    verb_names[cmd.verb]);
		break;
	default:
		break;
	}
}

static void
check_accepted(const char *line, size_t len, unsigned long long max_size)
{
	FUZZ_CHECK(len <= SMTPD_LINE_LIMIT, "accepted %zu octets", len);
	FUZZ_CHECK((unsigned)cmd.verb <= SMTPD_QUIT, "verb %d", (int)cmd.verb);
	FUZZ_CHECK(len >= 4 && strncasecmp(line, verb_names[cmd.verb], 4) == 0 &&
	    (len == 4 || line[4] == ' '), "verb %s from \"%.20s\"",
	    verb_names[cmd.verb], line);
	check_arg(line, len);
	if (cmd.verb == SMTPD_MAIL || cmd.verb == SMTPD_RCPT) {
		FUZZ_CHECK(cmd.arg[0] != '\0' ? addr_validate(cmd.arg, NULL) == 0 :
		    cmd.verb == SMTPD_MAIL, "%s path <%s>",
		    verb_names[cmd.verb], cmd.arg);
		FUZZ_CHECK(max_size == 0 || cmd.size <= max_size,
		    "SIZE=%llu over %llu", cmd.size, max_size);
		FUZZ_CHECK(cmd.body == SMTPD_BODY_NONE ||
		    cmd.body == SMTPD_BODY_7BIT || cmd.body == SMTPD_BODY_8BITMIME,
		    "BODY %d", (int)cmd.body);
	}
	if (cmd.verb == SMTPD_RCPT)
		FUZZ_CHECK(cmd.size == 0 && cmd.body == SMTPD_BODY_NONE &&
		    !cmd.smtputf8, "RCPT took parameters");
}

static void
parse_one(const char *l, size_t n, size_t pad, unsigned long long max_size)
{
	char reply[SMTPD_REPLY_MAX + 1];
	size_t len = n + pad;
	char *line = xmalloc(len > 0 ? len : 1);
	int rc;

	memcpy(line, l, n);
	if (pad > 0)
		memset(line + n, n > 0 ? l[n - 1] : 'x', pad);
	memset(reply, CANARY, sizeof(reply));
	rc = smtpd_parse(line, len, max_size, &cmd, reply, SMTPD_REPLY_MAX);
	if (rc != 0)
		check_refused(rc, reply, len, max_size);
	else
		check_accepted(line, len, max_size);
	free(line);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data + 1;
	unsigned long long max_size;
	size_t len, pad_to = 0;

	if (size < 1)
		return 0;
	max_size = max_sizes[data[0] & 3];
	if (data[0] & 4)
		pad_to = SMTPD_LINE_LIMIT + (data[0] & 8 ? 1 : 0);
	len = size - 1;
	for (size_t i = 0; i < len;) {
		const char *l = text + i, *nl = memchr(l, '\n', len - i);
		size_t n = nl ? (size_t)(nl - l) : len - i;

		i += n + 1;
		if (n > 0 && l[n - 1] == '\r')
			n--;
		parse_one(l, n, pad_to > n ? pad_to - n : 0, max_size);
		pad_to = 0;
	}
	return 0;
}
