/* Unit tests for util.c: parsing, the capped buffer, escaping, copies. */
#include "autoconf.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const struct { const char *in; int rc; long secs; } durations[] = {
	{ "0", 0, 0 }, { "90", 0, 90 }, { "30s", 0, 30 }, { "15m", 0, 900 },
	{ "4h", 0, 14400 }, { "5d", 0, 432000 }, { "1w", 0, 604800 },
	{ "", -1, 0 }, { "m", -1, 0 }, { "5x", -1, 0 }, { "5mm", -1, 0 },
	{ "-5", -1, 0 }, { " 5", -1, 0 }, { "5 m", -1, 0 },
	{ "99999999999999999999", -1, 0 }, { "9999999999999999d", -1, 0 },
};

START_TEST(test_duration)
{
	long v = -42;
	int rc = parse_duration(durations[_i].in, &v);

	ck_assert_int_eq(rc, durations[_i].rc);
	if (rc == 0)
		ck_assert_int_eq(v, durations[_i].secs);
}
END_TEST

static const struct { const char *in; int rc; unsigned long long bytes; } sizes[] = {
	{ "0", 0, 0 }, { "1000", 0, 1000 }, { "10K", 0, 10240 },
	{ "50M", 0, 52428800ULL }, { "1G", 0, 1073741824ULL }, { "2k", 0, 2048 },
	{ "", -1, 0 }, { "1T", -1, 0 }, { "K", -1, 0 }, { "1.5M", -1, 0 },
	{ "99999999999999999999G", -1, 0 },
};

START_TEST(test_size)
{
	unsigned long long v = 42;
	int rc = parse_size(sizes[_i].in, &v);

	ck_assert_int_eq(rc, sizes[_i].rc);
	if (rc == 0)
		ck_assert_uint_eq(v, sizes[_i].bytes);
}
END_TEST

static const struct { long secs; const char *out; } formats[] = {
	{ 0, "0s" }, { 30, "30s" }, { 60, "1m" }, { 90, "90s" }, { 3600, "1h" },
	{ 432000, "5d" }, { 604800, "1w" }, { 5400, "90m" },
};

START_TEST(test_format_duration)
{
	char out[32];
	long back;

	format_duration(formats[_i].secs, out, sizeof(out));
	ck_assert_str_eq(out, formats[_i].out);
	ck_assert_int_eq(parse_duration(out, &back), 0);
	ck_assert_int_eq(back, formats[_i].secs);
}
END_TEST

START_TEST(test_buf_cap)
{
	struct buf b;

	buf_init(&b, 8);
	ck_assert_int_eq(buf_puts(&b, "1234"), 0);
	ck_assert_int_eq(buf_printf(&b, "%d", 5678), 0);
	ck_assert_str_eq(b.data, "12345678");
	ck_assert_int_eq(buf_putc(&b, 'x'), -1);
	ck_assert_int_eq(buf_append(&b, "yz", 2), -1);
	ck_assert_uint_eq(b.len, 8);
	ck_assert_str_eq(b.data, "12345678");
	buf_reset(&b);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_str_eq(b.data, "");
	buf_wipe_free(&b);
	ck_assert_ptr_null(b.data);
}
END_TEST

START_TEST(test_buf_grows)
{
	struct buf b;

	buf_init(&b, 0);
	for (int i = 0; i < 10000; i++)
		ck_assert_int_eq(buf_putc(&b, 'a' + i % 26), 0);
	ck_assert_uint_eq(b.len, 10000);
	ck_assert_int_eq(b.data[10000], '\0');
	ck_assert_int_eq(b.data[27], 'b');
	buf_free(&b);
}
END_TEST

static const struct { const char *in; size_t size; const char *out; } escapes[] = {
	{ "plain text", 64, "plain text" },
	{ "a\r\nb", 64, "a\\r\\nb" },
	{ "\x1b[31mred", 64, "\\x1b[31mred" },
	{ "back\\slash", 64, "back\\\\slash" },
	{ "\xc3\xa9", 64, "\\xc3\\xa9" },
	{ "abcdefghijklmnop", 8, "abcd..." },
	{ "", 4, "" },
};

START_TEST(test_escape)
{
	char out[64];

	str_escape(escapes[_i].in, strlen(escapes[_i].in), out, escapes[_i].size);
	ck_assert_str_eq(out, escapes[_i].out);
	ck_assert_uint_lt(strlen(out), escapes[_i].size);
}
END_TEST

START_TEST(test_copy)
{
	char small[5];

	ck_assert_int_eq(str_copy(small, "abcd", sizeof(small)), 0);
	ck_assert_str_eq(small, "abcd");
	ck_assert_int_eq(str_copy(small, "abcde", sizeof(small)), -1);
	ck_assert_str_eq(small, "abcd");
	ck_assert_int_eq(str_copy(small, "ab", sizeof(small)), 0);
	ck_assert_int_eq(str_append(small, "cd", sizeof(small)), 0);
	ck_assert_str_eq(small, "abcd");
	ck_assert_int_eq(str_append(small, "e", sizeof(small)), -1);
	ck_assert_int_eq(str_fmt(small, sizeof(small), "%d", 1234), 0);
	ck_assert_int_eq(str_fmt(small, sizeof(small), "%d", 12345), -1);
}
END_TEST

START_TEST(test_err)
{
	struct err e;

	ck_assert_int_eq(err_set(&e, ERR_DATA, "bad %s", "thing"), -1);
	ck_assert_int_eq(e.cls, ERR_DATA);
	ck_assert_str_eq(e.msg, "bad thing");
	err_prefix(&e, "file %d", 3);
	ck_assert_str_eq(e.msg, "file 3: bad thing");
	ck_assert_str_eq(err_class_name(ERR_TEMP), "temporary");
	ck_assert_int_eq(err_set(NULL, ERR_DATA, "ignored"), -1);
}
END_TEST

START_TEST(test_strlist)
{
	struct strlist l = { 0 };

	for (int i = 0; i < 100; i++)
		strlist_add_owned(&l, xasprintf("Item%d@Example.COM", i));
	ck_assert_uint_eq(l.n, 100);
	ck_assert(strlist_has_ci(&l, "item42@example.com"));
	ck_assert(!strlist_has_ci(&l, "item100@example.com"));
	strlist_free(&l);
	ck_assert_uint_eq(l.n, 0);
}
END_TEST

START_TEST(test_parse_long)
{
	long v;

	ck_assert_int_eq(parse_long("25", 1, 65535, &v), 0);
	ck_assert_int_eq(v, 25);
	ck_assert_int_eq(parse_long("0", 1, 65535, &v), -1);
	ck_assert_int_eq(parse_long("65536", 1, 65535, &v), -1);
	ck_assert_int_eq(parse_long("12a", 1, 65535, &v), -1);
	ck_assert_int_eq(parse_long("", 1, 65535, &v), -1);
	ck_assert_int_eq(parse_long(" 1", 1, 65535, &v), -1);
}
END_TEST

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

int
main(void)
{
	Suite *s = suite_create("util");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_loop_test(tc, test_duration, 0, NELEM(durations));
	tcase_add_loop_test(tc, test_size, 0, NELEM(sizes));
	tcase_add_loop_test(tc, test_format_duration, 0, NELEM(formats));
	tcase_add_loop_test(tc, test_escape, 0, NELEM(escapes));
	tcase_add_test(tc, test_buf_cap);
	tcase_add_test(tc, test_buf_grows);
	tcase_add_test(tc, test_copy);
	tcase_add_test(tc, test_err);
	tcase_add_test(tc, test_strlist);
	tcase_add_test(tc, test_parse_long);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
