/*
 * fuzz_config.c - config_load() over hostile config files: the comment
 * stripper, libconfuse's scanner and parser, and every value check.
 *
 * Input: the file's contents (a memfd, opened by config_load through its
 * /proc/self/fd path, so nothing touches the disk).
 * Properties:
 *  - failure is ERR_CONFIG naming the file, on one line without control
 *    characters (the message is shown on a terminal);
 *  - success gives a usable config: hostname and domain set, at least one
 *    retry interval, every smarthost with a host and a port 1..65535;
 *  - the -bP listing (config_print) masks the password, and is itself a
 *    config that loads and lists the same, byte for byte.
 */
#include "autoconf.h"

#include <stdio.h>

#include "config.h"
#include "fuzz.h"

static int cfd;
static char cpath[64];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	cfd = fuzz_memfd("relayq.conf");
	snprintf(cpath, sizeof(cpath), "/proc/self/fd/%d", cfd);
	return 0;
}

static char *
print_config(const struct config *c, size_t *len)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len);

	if (f == NULL)
		fuzz_die("open_memstream");
	config_print(f, c);
	if (fclose(f) != 0)
		fuzz_die("memstream");
	return text;
}

static void
check_config(const struct config *c, const char *listing)
{
	const char *p;

	FUZZ_CHECK(c->hostname != NULL && c->hostname[0] != '\0' &&
	    c->domain != NULL && c->domain[0] != '\0', "no hostname/domain");
	FUZZ_CHECK(c->nretry > 0 && c->retry != NULL, "no retry interval");
	for (size_t i = 0; i < c->nsmarthosts; i++) {
		const struct smarthost *sh = &c->smarthosts[i];

		FUZZ_CHECK(sh->host != NULL && sh->host[0] != '\0' &&
		    sh->port >= 1 && sh->port <= 65535,
		    "smarthost %zu: host or port unusable", i);
	}
	for (p = listing; p != NULL && *p != '\0'; p = strchr(p, '\n')) {
		p += strspn(p, "\n ");
		if (strncmp(p, "password = ", 11) == 0)
			FUZZ_CHECK(strncmp(p + 11, "\"********\"\n", 11) == 0,
			    "-bP shows a password: %.40s", p);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c = NULL, *c2 = NULL;
	char *l1, *l2;
	size_t n1, n2;
	struct err err;

	fuzz_memfd_set(cfd, data, size);
	memset(&err, 0, sizeof(err));
	if (config_load(cpath, &c, &err) < 0) {
		FUZZ_CHECK(err.cls == ERR_CONFIG, "error class %d: %s",
		    (int)err.cls, err.msg);
		FUZZ_CHECK(strncmp(err.msg, cpath, strlen(cpath)) == 0,
		    "error does not name the file: %s", err.msg);
		FUZZ_CHECK(!fuzz_has_ctl(err.msg, strlen(err.msg)),
		    "control character in the error message");
		return 0;
	}
	l1 = print_config(c, &n1);
	check_config(c, l1);

	fuzz_memfd_set(cfd, l1, n1);
	FUZZ_CHECK(config_load(cpath, &c2, &err) == 0,
	    "the -bP listing does not load: %s\n%s", err.msg, l1);
	l2 = print_config(c2, &n2);
	FUZZ_CHECK(n1 == n2 && memcmp(l1, l2, n1) == 0,
	    "the -bP listing changes when loaded again:\n%s\n----\n%s", l1, l2);
	free(l1);
	free(l2);
	config_free(c);
	config_free(c2);
	return 0;
}
