/*
 * verify.c - sendmail -bv: each address parsed, expanded through the
 * aliases file and qualified, as the front end would queue it.
 */
#include "autoconf.h"

#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "address.h"
#include "aliases.h"
#include "log.h"
#include "verify.h"

/* One -bv address: its alias expansion and qualified result, or why not. */
static int
verify_address(const struct config *cfg, const struct aliases *al,
    const char *addr, struct strlist *all)
{
	struct alias_ctx actx = { cfg->hostname, cfg->domain,
	    cfg->max_alias_expansions };
	struct strlist exp = { 0 }, warn = { 0 };
	struct err err;
	int aliased = 0, rc;

	rc = addr_validate(addr, &err);
	if (rc == 0)
		rc = aliases_expand(al, addr, &actx, &exp, &aliased, &warn, &err);
	for (size_t i = 0; rc == 0 && i < exp.n; i++)
		rc = addr_validate(exp.v[i], &err);
	for (size_t i = 0; i < warn.n; i++)
		fprintf(stderr, "%s: %s\n", log_progname(), warn.v[i]);
	if (rc < 0) {
		printf("%s... undeliverable: %s\n", addr, err.msg);
	} else {
		printf("%s... deliverable: %s", addr, aliased ? "expands to " : "");
		for (size_t i = 0; i < exp.n; i++) {
			printf("%s<%s>", i > 0 ? ", " : "", exp.v[i]);
			if (!strlist_has_ci(all, exp.v[i]))
				strlist_add(all, exp.v[i]);
		}
		printf("\n");
	}
	strlist_free(&exp);
	strlist_free(&warn);
	return rc;
}

int
verify_addresses(const struct config *cfg, const struct request *req,
    struct strlist *all)
{
	struct aliases *al = NULL;
	struct err err;
	int rc = EX_OK;

	if (aliases_load(cfg->aliases, &al, &err) < 0)
		return log_failure(&err);
	for (int i = 0; i < req->nrcpts; i++) {
		struct strlist list = { 0 };
		char shown[256];

		str_escape(req->rcpts[i], strlen(req->rcpts[i]), shown, sizeof(shown));
		if (addr_parse_list(req->rcpts[i], &list, &err) < 0 || list.n == 0) {
			printf("%s... undeliverable: %s\n", shown,
			    list.n == 0 && err.cls == ERR_OK ? "no address" : err.msg);
			rc = EX_NOUSER;
		}
		for (size_t j = 0; j < list.n; j++)
			if (verify_address(cfg, al, list.v[j], all) < 0)
				rc = EX_NOUSER;
		strlist_free(&list);
		err.cls = ERR_OK;
	}
	aliases_free(al);
	if (fflush(stdout) != 0)
		rc = EX_IOERR;
	return rc;
}
