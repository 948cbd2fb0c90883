/*
 * Unit tests for aliases.c: the aliases file (good files -> expansions,
 * bad lines -> FILE:LINE messages, loops, limits), loading from disk, and
 * sender rewriting of the From: header.
 */
#include "autoconf.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aliases.h"
#include "util.h"

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define HOST "host.example.com"
#define PATH "/etc/aliases"

static char *
join(const struct strlist *l, const char *sep)
{
	struct buf b;

	buf_init(&b, 0);
	for (size_t i = 0; i < l->n; i++) {
		if (i > 0)
			buf_puts(&b, sep);
		buf_puts(&b, l->v[i]);
	}
	return b.data ? b.data : xstrdup("");
}

/* --- expansion ------------------------------------------------------ */

static const struct xcase {
	const char *file;         /* NULL: no aliases at all */
	const char *addr;
	long max;                 /* 0: 1000 */
	int rc;
	const char *want;         /* addresses joined by "," (rc 0) */
	int aliased;
	int nwarn;
	const char *warn;         /* substring of the first warning, or NULL */
} xcases[] = {
	{ "root: admin@example.org\n", "root", 0, 0, "admin@example.org", 1, 0, NULL },
	{ "Root: a@x.org\n", "ROOT", 0, 0, "a@x.org", 1, 0, NULL },
	{ "root: a@x.org\n", "root@" HOST, 0, 0, "a@x.org", 1, 0, NULL },
	{ "root: a@x.org\n", "root@HOST.Example.COM", 0, 0, "a@x.org", 1, 0, NULL },
	/* the domain is not the host: not local */
	{ "root: a@x.org\n", "root@example.com", 0, 0, "root@example.com", 0, 0, NULL },
	{ "root: a@x.org\n", "bob", 0, 0, "bob@example.com", 0, 0, NULL },
	{ "root: a@x.org\n", "bob@other.org", 0, 0, "bob@other.org", 0, 0, NULL },
	{ "root: admin\nadmin: a@x.org, b@x.org\n", "root", 0, 0,
	  "a@x.org,b@x.org", 1, 0, NULL },
	/* continuation lines, with a comment between them, CRLF */
	{ "root: a@x.org,\r\n  # still root\r\n\tb@x.org\r\n\r\nbob: c@x.org\r\n",
	  "root", 0, 0, "a@x.org,b@x.org", 1, 0, NULL },
	{ "root: a@x.org,\n  # still root\n\tb@x.org\n\nbob: c@x.org\n",
	  "bob", 0, 0, "c@x.org", 1, 0, NULL },
	{ "root: \"Joe Q. Public\"@x.org, Admin <admin@x.org>\n", "root", 0, 0,
	  "\"Joe Q. Public\"@x.org,admin@x.org", 1, 0, NULL },
	{ "root: a@x.org, \"x, y\"@x.org\n", "root", 0, 0,
	  "a@x.org,\"x, y\"@x.org", 1, 0, NULL },
	/* the usual self-reference: no warning */
	{ "root: root, a@x.org\n", "root", 0, 0, "root@example.com,a@x.org", 1, 0, NULL },
	{ "root: \\root, a@x.org\n", "root", 0, 0, "root@example.com,a@x.org", 1, 0, NULL },
	{ "a: b\nb: c\nc: a, z@x.org\n", "a", 0, 0, "a@example.com,z@x.org", 1, 1,
	  "alias c: <a> loops back to alias a, used as it is" },
	{ "a: b\nb: a\n", "b", 0, 0, "b@example.com", 1, 1, PATH ":1: alias a: <b> loops back" },
	{ "a: b, c\nb: d\nc: d\nd: z@x.org\n", "a", 0, 0, "z@x.org", 1, 0, NULL },
	{ "root: a@x.org, A@X.org\n", "root", 0, 0, "a@x.org", 1, 0, NULL },
	{ "root: bob\n", "root", 0, 0, "bob@example.com", 1, 0, NULL },
	{ "root: |/usr/bin/procmail, a@x.org\n", "root", 0, 0, "a@x.org", 1, 1,
	  PATH ":1: alias root: |command target \"|/usr/bin/procmail\" is not supported" },
	{ "root: \"|/usr/bin/x -a, -b\", a@x.org\n", "root", 0, 0, "a@x.org", 1, 1, "|command" },
	{ "root: :include:/etc/list, a@x.org\n", "root", 0, 0, "a@x.org", 1, 1, ":include:" },
	{ "root:\n /var/mail/root\n", "root", 0, 0, "root@example.com", 1, 2,
	  PATH ":2: alias root: /file target" },
	/* the first of duplicates wins */
	{ "root: a@x.org\nROOT: b@x.org\n", "root", 0, 0, "a@x.org", 1, 0, NULL },
	/* bad lines are skipped, the rest still works */
	{ "bad line\nroot: a@x.org\n", "root", 0, 0, "a@x.org", 1, 0, NULL },
	/* limits: 1 alias + 3 addresses */
	{ "root: a1@x.org, a2@x.org, a3@x.org\n", "root", 4, 0,
	  "a1@x.org,a2@x.org,a3@x.org", 1, 0, NULL },
	{ "root: a1@x.org, a2@x.org, a3@x.org\n", "root", 3, -1, NULL, 1, 0, NULL },
	{ "a: b, b, b, b\nb: c, c, c, c\nc: d, d, d, d\nd: e, e, e, e\n", "a", 100, -1,
	  NULL, 1, 0, NULL },
	{ NULL, "root", 0, 0, "root@example.com", 0, 0, NULL },
	{ "", "root", 0, 0, "root@example.com", 0, 0, NULL },
};

START_TEST(test_expand)
{
	const struct xcase *c = &xcases[_i];
	struct alias_ctx ctx = { HOST, "example.com", c->max ? c->max : 1000 };
	struct aliases *a = c->file ? aliases_parse(PATH, c->file, strlen(c->file)) : NULL;
	struct strlist out = { 0 }, warn = { 0 };
	struct err err;
	int aliased = -1, rc;

	rc = aliases_expand(a, c->addr, &ctx, &out, &aliased, &warn, &err);
	ck_assert_int_eq(rc, c->rc);
	if (rc == 0) {
		char *got = join(&out, ",");

		ck_assert_str_eq(got, c->want);
		free(got);
	} else {
		ck_assert_int_eq(err.cls, ERR_DATA);
		ck_assert_ptr_nonnull(strstr(err.msg, "max_alias_expansions"));
	}
	ck_assert_int_eq(aliased, c->aliased);
	ck_assert_int_eq((int)warn.n, c->nwarn);
	if (c->warn)
		ck_assert_msg(strstr(warn.v[0], c->warn) != NULL, "warning: %s", warn.v[0]);
	strlist_free(&out);
	strlist_free(&warn);
	aliases_free(a);
}
END_TEST

/* --- newaliases: problems with line numbers --------------------------- */

static const struct ccase {
	const char *file;
	long max;
	size_t errors;
	const char *want;         /* problems joined by "\n"; "*" at the end of
	                             a line: prefix match for that line */
} ccases[] = {
	{ "# comment\n\npostmaster: root\nroot: admin@example.org,\n  ops@example.org\n",
	  0, 0, "" },
	{ "root a@x.org\n", 0, 1, PATH ":1: missing ':' after the alias name" },
	{ "  a@x.org\nroot: b@x.org\n", 0, 1,
	  PATH ":1: continuation line without an alias before it" },
	{ "# c\nroot:\n", 0, 1, PATH ":2: alias root has no target" },
	{ "root: a@x.org, b@@x.org\n", 0, 1, PATH ":1: alias root: bad target \"b@@x.org\": *" },
	{ "root: a@x.org,\n  b@x.org c@x.org\n", 0, 1,
	  PATH ":2: alias root: bad target \"b@x.org c@x.org\": *" },
	{ "root@example.com: a@x.org\n", 0, 1,
	  PATH ":1: bad alias name \"root@example.com\": names are local, without '@'" },
	{ ": a@x.org\n", 0, 1, PATH ":1: bad alias name \"\"" },
	{ "root: a@x.org\nx: y\nROOT: b@x.org\n", 0, 0,
	  PATH ":3: warning: duplicate alias ROOT (first at line 1), ignored" },
	{ "# c\nroot: a@x.org,\n  |/usr/bin/procmail\n", 0, 0,
	  PATH ":3: warning: alias root: |command target \"|/usr/bin/procmail\" is not "
	  "supported by a relay-only MTA, skipped" },
	{ "a: b\nb: a\n", 0, 0,
	  PATH ":1: warning: alias a: <b> loops back to alias b, used as it is\n"
	  PATH ":2: warning: alias b: <a> loops back to alias a, used as it is" },
	{ "root: a1@x.org, a2@x.org, a3@x.org\n", 3, 1,
	  PATH ":1: alias root: alias expansion of <root> exceeds the limit of 3 "
	  "(max_alias_expansions)" },
	{ "x y z\nroot:\nok: a@x.org\nbad: <\n", 0, 3,
	  PATH ":1: missing ':' after the alias name\n"
	  PATH ":2: alias root has no target\n"
	  PATH ":4: alias bad: bad target \"<\": *" },
	{ "root: a\0b\nok: a@x.org\n", 0, 1, PATH ":1: NUL byte in line, ignored" },
	{ "root: a@x.org,\n\tcontinued@x.org\n  # note\n\n", 0, 0, "" },
};

START_TEST(test_check)
{
	const struct ccase *c = &ccases[_i];
	size_t len = strlen(c->file);
	struct alias_ctx ctx = { HOST, "example.com", c->max ? c->max : 1000 };
	struct aliases *a;
	struct strlist out = { 0 }, want = { 0 };
	char *w = xstrdup(c->want), *save = NULL;

	/* the NUL case: the text goes on after the NUL */
	if (strstr(c->want, "NUL") != NULL)
		len = strlen(c->file) + 1 + strlen(c->file + strlen(c->file) + 1);
	a = aliases_parse(PATH, c->file, len);
	ck_assert_uint_eq(aliases_check(a, &ctx, &out), c->errors);
	for (char *l = strtok_r(w, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		strlist_add(&want, l);
	ck_assert_msg(out.n == want.n, "%zu problems, want %zu; first: %s", out.n,
	    want.n, out.n ? out.v[0] : "-");
	for (size_t i = 0; i < want.n; i++) {
		size_t n = strlen(want.v[i]);

		if (n > 0 && want.v[i][n - 1] == '*')
			ck_assert_msg(strncmp(out.v[i], want.v[i], n - 1) == 0,
			    "got %s", out.v[i]);
		else
			ck_assert_str_eq(out.v[i], want.v[i]);
	}
	free(w);
	strlist_free(&out);
	strlist_free(&want);
	aliases_free(a);
}
END_TEST

START_TEST(test_count)
{
	const char *f = "a: x@y.org\nb: x@y.org\nB: z@y.org\nbad\n";
	struct aliases *a = aliases_parse(PATH, f, strlen(f));

	ck_assert_uint_eq(aliases_count(a), 2);
	aliases_free(a);
	ck_assert_uint_eq(aliases_count(NULL), 0);
}
END_TEST

/* --- loading from disk ---------------------------------------------- */

START_TEST(test_load)
{
	char dir[] = "/tmp/check_aliases.XXXXXX", path[64];
	const char *text = "root: admin@example.org\n";
	struct alias_ctx ctx = { HOST, "example.com", 1000 };
	struct aliases *a = (struct aliases *)1;
	struct strlist out = { 0 };
	struct err err;
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	str_fmt(path, sizeof(path), "%s/aliases", dir);

	/* missing: no aliases, not an error */
	ck_assert_int_eq(aliases_load(path, &a, &err), 0);
	ck_assert_ptr_nonnull(a);
	ck_assert_uint_eq(aliases_count(a), 0);
	aliases_free(a);

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write_all(fd, text, strlen(text)), 0);
	close(fd);
	ck_assert_int_eq(aliases_load(path, &a, &err), 0);
	ck_assert_int_eq(aliases_expand(a, "root", &ctx, &out, NULL, NULL, &err), 0);
	ck_assert_uint_eq(out.n, 1);
	ck_assert_str_eq(out.v[0], "admin@example.org");
	strlist_free(&out);
	aliases_free(a);

	/* there but unreadable (a directory): temporary, never "no aliases" */
	ck_assert_int_eq(aliases_load(dir, &a, &err), -1);
	ck_assert_int_eq(err.cls, ERR_TEMP);
	ck_assert_ptr_null(a);
	if (geteuid() != 0) {
		ck_assert_int_eq(chmod(path, 0), 0);
		ck_assert_int_eq(aliases_load(path, &a, &err), -1);
		ck_assert_int_eq(err.cls, ERR_TEMP);
		ck_assert_ptr_nonnull(strstr(err.msg, path));
	}
	unlink(path);
	rmdir(dir);
}
END_TEST

/* --- sender rewriting ----------------------------------------------- */

static const struct rcase {
	const char *value;
	const char *want;         /* NULL: unchanged (returns 0) */
} rcases[] = {
	{ " root (Cron Daemon)", " \"Cron Daemon\" <alerts@example.com>" },
	{ " Cron Daemon <root>", " Cron Daemon <alerts@example.com>" },
	{ " \"Cron Daemon\" <root@" HOST ">", " \"Cron Daemon\" <alerts@example.com>" },
	{ " root", " alerts@example.com" },
	{ " root@HOST.example.com", " alerts@example.com" },
	{ " <root>", " <alerts@example.com>" },
	{ " (Cron \\(x\\) Daemon) root", " \"Cron (x) Daemon\" <alerts@example.com>" },
	{ " root (Say \"hi\")", " \"Say \\\"hi\\\"\" <alerts@example.com>" },
	{ " root ()", " alerts@example.com" },
	{ " root (=?UTF-8?B?w6k=?=)", " =?UTF-8?B?w6k=?= <alerts@example.com>" },
	{ " =?UTF-8?B?w6k=?= <root>", " =?UTF-8?B?w6k=?= <alerts@example.com>" },
	{ " a@x.org, root (C) ,b@x.org", " a@x.org, \"C\" <alerts@example.com> ,b@x.org" },
	{ " \"x, <root>\" <b@x.org>", NULL },
	{ " bob@example.org", NULL },
	{ " Bob <bob@example.org>", NULL },
	{ " root@example.com", NULL },      /* the domain: not local */
	{ " team: root;", NULL },           /* groups are left alone */
	{ " bad <<", NULL },
	{ "", NULL },
};

START_TEST(test_rewrite_from)
{
	const struct rcase *c = &rcases[_i];
	struct buf out;
	int rc;

	buf_init(&out, 0);
	buf_puts(&out, "From:");
	rc = sender_rewrite_from(c->value, "alerts@example.com", HOST, &out);
	if (c->want == NULL) {
		ck_assert_int_eq(rc, 0);
		ck_assert_str_eq(out.data, "From:");
	} else {
		ck_assert_int_eq(rc, 1);
		ck_assert_str_eq(out.data + 5, c->want);
	}
	buf_free(&out);
}
END_TEST

START_TEST(test_rewrite_no_target)
{
	struct buf out;

	buf_init(&out, 0);
	ck_assert_int_eq(sender_rewrite_from(" root", NULL, HOST, &out), 0);
	ck_assert_int_eq(sender_rewrite_from(" root", "", HOST, &out), 0);
	ck_assert_uint_eq(out.len, 0);
	buf_free(&out);
}
END_TEST

static const struct lcase {
	const char *addr, *host;
	int local;
} lcases[] = {
	{ "root", HOST, 1 },
	{ "root@" HOST, HOST, 1 },
	{ "root@Host.Example.Com", HOST, 1 },
	{ "root@example.com", HOST, 0 },
	{ "root@sub." HOST, HOST, 0 },
	{ "\"a@b\"@x.org", HOST, 0 },
	{ "\"a@b\"@" HOST, HOST, 1 },
	{ "root@" HOST, NULL, 0 },
	{ "root", NULL, 1 },
};

START_TEST(test_is_local)
{
	ck_assert_int_eq(addr_is_local(lcases[_i].addr, lcases[_i].host),
	    lcases[_i].local);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("aliases");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_loop_test(tc, test_expand, 0, NELEM(xcases));
	tcase_add_loop_test(tc, test_check, 0, NELEM(ccases));
	tcase_add_test(tc, test_count);
	tcase_add_test(tc, test_load);
	tcase_add_loop_test(tc, test_rewrite_from, 0, NELEM(rcases));
	tcase_add_test(tc, test_rewrite_no_target);
	tcase_add_loop_test(tc, test_is_local, 0, NELEM(lcases));
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
