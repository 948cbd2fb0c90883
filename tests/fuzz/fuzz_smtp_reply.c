/*
 * fuzz_smtp_reply.c - smtp_parse_line(), the parser of one server reply
 * line ("250-PIPELINING", "550 5.1.1 text").
 *
 * Input: one byte choosing the enhanced-code buffer (none, 0, 1, 6 or 16
 * bytes) and whether text is asked for, then the line (up to a NUL).
 * Properties: a parsed line has a code 200..559 equal to its first three
 * digits, the continuation flag of its fourth byte, text pointing inside
 * the line after the code (and after the enhanced code and its blanks);
 * an enhanced code is only taken when it fits, is of the reply's class, is
 * a prefix of the text and is followed by a blank or the end. enh is
 * always NUL-terminated within its size, "" on failure.
 */
#include "autoconf.h"

#include <ctype.h>

#include "fuzz.h"
#include "smtp.h"

static const size_t enh_sizes[] = { 0, 1, 6, 16 };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char enh[17], *line;
	const char *text = NULL;
	size_t enhsize, len, elen;
	int code = -1, more = -1, want_text, use_enh, rc;

	if (size < 1)
		return 0;
	enhsize = enh_sizes[data[0] & 3];
	use_enh = !(data[0] & 4);
	want_text = !(data[0] & 8);
	line = fuzz_str(data + 1, size - 1);
	len = strlen(line);
	memset(enh, 'Z', sizeof(enh));

	rc = smtp_parse_line(line, &code, &more, use_enh ? enh : NULL, enhsize,
	    want_text ? &text : NULL);
	if (use_enh && enhsize > 0)
		FUZZ_CHECK(memchr(enh, '\0', enhsize) != NULL,
		    "enh not terminated within its %zu bytes", enhsize);
	FUZZ_CHECK(enh[enhsize] == 'Z', "enh written past its size");
	if (rc < 0) {
		FUZZ_CHECK(!use_enh || enhsize == 0 || enh[0] == '\0',
		    "enh set on a malformed line");
		free(line);
		return 0;
	}
	FUZZ_CHECK(len >= 3 && isdigit((unsigned char)line[0]) &&
	    isdigit((unsigned char)line[1]) && isdigit((unsigned char)line[2]),
	    "accepted a line without a code");
	FUZZ_CHECK(code >= 200 && code <= 559 && code == (line[0] - '0') * 100 +
	    (line[1] - '0') * 10 + (line[2] - '0'), "code %d", code);
	FUZZ_CHECK(line[3] == '\0' || line[3] == ' ' || line[3] == '-',
	    "accepted \"%c\" after the code", line[3]);
	FUZZ_CHECK(more == (line[3] == '-'), "continuation flag %d", more);
	elen = use_enh && enhsize > 0 ? strlen(enh) : 0;
	if (elen > 0) {
		const char *after = line + 4 + elen;

		FUZZ_CHECK(elen < enhsize && enh[0] == line[0] && enh[1] == '.' &&
		    memcmp(line + 4, enh, elen) == 0 &&
		    (*after == '\0' || *after == ' '),
		    "enhanced code \"%s\" in \"%s\"", enh, line);
		for (size_t i = 0; i < elen; i++)
			FUZZ_CHECK(isdigit((unsigned char)enh[i]) ||
			    enh[i] == '.', "enhanced code \"%s\"", enh);
	}
	if (want_text) {
		FUZZ_CHECK(text != NULL && text >= line + 3 &&
		    text <= line + len, "text outside the line");
		if (elen > 0)
			FUZZ_CHECK(text >= line + 4 + elen &&
			    (text == line + len || *text != ' '),
			    "text does not follow the enhanced code");
	}
	free(line);
	return 0;
}
