/*
 * fuzz_aliases.c - the aliases file: aliases_load()/aliases_parse() over
 * hostile files, nested expansion (aliases_expand) and the newaliases
 * checker (aliases_check).
 *
 * Input: one option byte, then the file's contents (a memfd, opened by
 * aliases_load through its /proc/self/fd path). Option bits 0-1 pick
 * max_alias_expansions (1, 4, 50 or the default 1000); bit 2 sets a
 * hostname, so "name@host.example" is local too. Expanded: root,
 * postmaster, root@host.example, a non-local address, and the name of
 * each of the file's first entries that is a valid addr-spec.
 * Properties:
 *  - an expansion that succeeds gives 1..max_expansions addresses, each
 *    qualified, valid for addr_validate and at most ADDR_MAX long, with
 *    no case-insensitive duplicates; without an alias it is the address
 *    itself, qualified;
 *  - one that fails is ERR_DATA on one line without control characters;
 *  - every warning and every aliases_check() line is "FILE:LINE: ..."
 *    without control characters (newaliases prints them on a terminal),
 *    the checker's lines in line order, and its error count is at most
 *    its number of lines.
 */
#include "autoconf.h"

#include <ctype.h>
#include <stdio.h>
#include <strings.h>

#include "address.h"
#include "aliases.h"
#include "fuzz.h"

#define DOMAIN "example.org"
#define HOST "host.example"
#define NAMES_MAX 8             /* names taken from the input */
#define NAME_LEN 64

static const long max_choices[] = { 1, 4, 50, 1000 };

static int afd;
static char apath[64];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	afd = fuzz_memfd("aliases");
	snprintf(apath, sizeof(apath), "/proc/self/fd/%d", afd);
	return 0;
}

/* "FILE:LINE: text" without control characters; returns LINE. */
static long
check_problem(const char *msg)
{
	size_t plen = strlen(apath);
	const char *p = msg + plen + 1;
	char *end;
	long line;

	FUZZ_CHECK(!fuzz_has_ctl(msg, strlen(msg)),
	    "control character in \"%s\"", msg);
	FUZZ_CHECK(strncmp(msg, apath, plen) == 0 && msg[plen] == ':' &&
	    isdigit((unsigned char)*p), "not FILE:LINE: \"%s\"", msg);
	line = strtol(p, &end, 10);
	FUZZ_CHECK(line >= 1 && end[0] == ':' && end[1] == ' ',
	    "not FILE:LINE: \"%s\"", msg);
	return line;
}

static void
expand_one(const struct aliases *a, const struct alias_ctx *ctx,
    const char *addr)
{
	struct strlist out = { 0 }, warn = { 0 };
	struct err err;
	char q[ADDR_MAX + 1];
	int aliased = -1;

	memset(&err, 0, sizeof(err));
	if (aliases_expand(a, addr, ctx, &out, &aliased, &warn, &err) < 0) {
		FUZZ_CHECK(err.cls == ERR_DATA, "<%s>: error class %d: %s",
		    addr, (int)err.cls, err.msg);
		FUZZ_CHECK(!fuzz_has_ctl(err.msg, strlen(err.msg)),
		    "<%s>: control character in the error", addr);
		goto done;
	}
	FUZZ_CHECK(out.n >= 1 && (long)out.n <= ctx->max_expansions,
	    "<%s>: %zu addresses, limit %ld", addr, out.n, ctx->max_expansions);
	for (size_t i = 0; i < out.n; i++) {
		const char *r = out.v[i];

		FUZZ_CHECK(strlen(r) <= ADDR_MAX && !addr_is_bare(r) &&
		    addr_validate(r, NULL) == 0,
		    "<%s> expands to an unusable <%s>", addr, r);
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(strcasecmp(out.v[j], r) != 0,
			    "<%s>: <%s> twice", addr, r);
	}
	if (!aliased) {
		FUZZ_CHECK(addr_qualify(addr, DOMAIN, q, sizeof(q)) == 0 &&
		    out.n == 1 && strcmp(out.v[0], q) == 0,
		    "<%s> has no alias but became <%s>", addr, out.v[0]);
	}
done:
	for (size_t i = 0; i < warn.n; i++)
		check_problem(warn.v[i]);
	strlist_free(&out);
	strlist_free(&warn);
}

/* The names of the file's first entries, where they are addr-specs. */
static size_t
input_names(const char *text, size_t len, char names[][NAME_LEN + 1])
{
	size_t n = 0;

	for (size_t i = 0; i < len && n < NAMES_MAX;) {
		const char *l = text + i, *nl = memchr(l, '\n', len - i);
		size_t ll = nl ? (size_t)(nl - l) : len - i, k;

		i += ll + 1;
		for (k = 0; k < ll && k < NAME_LEN && l[k] != ':' && l[k] != '\0';
		    k++)
			;
		if (k == 0 || k >= ll || l[k] != ':')
			continue;
		memcpy(names[n], l, k);
		names[n][k] = '\0';
		if (addr_validate(names[n], NULL) == 0)
			n++;
	}
	return n;
}

static void
check_file(const struct aliases *a, const struct alias_ctx *ctx)
{
	struct strlist out = { 0 };
	size_t errors = aliases_check(a, ctx, &out);
	long prev = 0;

	FUZZ_CHECK(errors <= out.n, "%zu errors in %zu lines", errors, out.n);
	for (size_t i = 0; i < out.n; i++) {
		long line = check_problem(out.v[i]);

		FUZZ_CHECK(line >= prev, "line %ld listed after line %ld",
		    line, prev);
		prev = line;
	}
	strlist_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const fixed[] = {
		"root", "postmaster", "root@host.example",
		"someone@elsewhere.example",
	};
	char names[NAMES_MAX][NAME_LEN + 1];
	struct alias_ctx ctx;
	struct aliases *a = NULL;
	struct err err;
	size_t n;

	if (size < 1)
		return 0;
	ctx.max_expansions = max_choices[data[0] & 3];
	ctx.hostname = data[0] & 4 ? HOST : NULL;
	ctx.domain = DOMAIN;
	fuzz_memfd_set(afd, data + 1, size - 1);
	memset(&err, 0, sizeof(err));
	FUZZ_CHECK(aliases_load(apath, &a, &err) == 0 && a != NULL,
	    "a readable file did not load: %s", err.msg);

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		expand_one(a, &ctx, fixed[i]);
	n = input_names((const char *)data + 1, size - 1, names);
	for (size_t i = 0; i < n; i++)
		expand_one(a, &ctx, names[i]);
	check_file(a, &ctx);
	aliases_free(a);
	return 0;
}
