/*
 * Regression tests for bugs the fuzzers found (tests/fuzz): each input
 * here once broke an invariant; the matching seed stays in the corpus.
 */
#include "autoconf.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "config.h"
#include "message.h"

static char *
run_msg(const char *in, size_t len, const struct msg_opts *o, struct msg_info *info, int *rc, size_t *outlen)
{
	int ifd = memfd_create("in", 0), ofd = memfd_create("out", 0);
	struct err err;
	char *out;
	off_t n;

	ck_assert_int_eq(write_all(ifd, in, len), 0);
	lseek(ifd, 0, SEEK_SET);
	*rc = message_read(ifd, ofd, o, info, &err);
	n = lseek(ofd, 0, SEEK_END);
	out = calloc(1, (size_t)n + 1);
	ck_assert_int_eq(pread(ofd, out, (size_t)n, 0), n);
	*outlen = (size_t)n;
	close(ifd);
	close(ofd);
	return out;
}

/* message.c: folding never separates a field name from its colon. */
START_TEST(test_long_header_obs_blanks)
{
	struct msg_opts o;
	struct msg_info info;
	struct buf in;
	char *out;
	const char *eol;
	size_t outlen;
	int rc;

	msg_opts_init(&o);
	o.no_fixups = 1;
	buf_init(&in, 0);
	buf_puts(&in, _i == 0 ? "X-Obs" : "From");
	for (int k = 0; k < (_i == 0 ? 600 : 1200); k++)
		buf_putc(&in, ' ');
	buf_putc(&in, ':');
	for (int k = 0; k < 600; k++)
		buf_putc(&in, 'v');
	buf_puts(&in, "\n\nb\n");
	out = run_msg(in.data, in.len, &o, &info, &rc, &outlen);
	ck_assert_int_eq(rc, 0);
	eol = strstr(out, "\r\n");
	/* the first line is the empty line ending the header, or holds the colon */
	ck_assert_msg(eol == out || memchr(out, ':', (size_t)(eol - out)) != NULL,
	    "first line cut before the colon: \"%.40s...\"", out);
	buf_free(&in);
	free(out);
	msg_info_free(&info);
}
END_TEST

/* message.c, -bs DATA (crlf_dots): a NUL next to the dot never ends the message. */
static const char *const nul_dots[] = {
	"S: a\r\n\r\nx\r\n.\0\r\nRCPT TO:<v@example.com>\r\n.\r\n",
	"S: a\r\n\r\nx\r\n\0.\r\nRCPT TO:<v@example.com>\r\n.\r\n",
};

START_TEST(test_crlf_dots_nul)
{
	struct msg_opts o;
	struct msg_info info;
	const char *in = nul_dots[_i];
	size_t len = strlen(in) + 1 + strlen(in + strlen(in) + 1);
	char *out;
	size_t outlen;
	int rc;

	msg_opts_init(&o);
	o.no_fixups = 1;
	o.dot_ends = 1;
	o.crlf_dots = 1;
	o.require_end = 1;
	out = run_msg(in, len, &o, &info, &rc, &outlen);
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(info.ended, 1);
	/* the NUL line is content; the message ends at the last "." */
	ck_assert_str_eq(out, "S: a\r\n\r\nx\r\n..\r\nRCPT TO:<v@example.com>\r\n");
	free(out);
	msg_info_free(&info);
}
END_TEST

/* config.c: the section name is shown escaped before it is validated. */
START_TEST(test_section_name_escaped)
{
	static const char text[] = "smarthost evil\033[2J {\n host = \"not a host!\"\n}\n";
	char path[] = "/tmp/check_regress.XXXXXX";
	int fd = mkstemp(path);
	struct config *cfg = NULL;
	struct err err;

	ck_assert_int_eq(write_all(fd, text, sizeof(text) - 1), 0);
	close(fd);
	ck_assert_int_eq(config_load(path, &cfg, &err), -1);
	unlink(path);
	ck_assert_msg(strstr(err.msg, ":2: smarthost evil\\x1b[2J: host: bad host") != NULL, "%s", err.msg);
	ck_assert_ptr_null(strchr(err.msg, '\033'));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("regress");
	TCase *tc = tcase_create("fuzz");
	SRunner *sr;
	int nf;

	tcase_add_loop_test(tc, test_long_header_obs_blanks, 0, 2);
	tcase_add_loop_test(tc, test_crlf_dots_nul, 0, 2);
	tcase_add_test(tc, test_section_name_escaped);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
