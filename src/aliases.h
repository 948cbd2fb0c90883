/*
 * aliases.h - local names -> address lists from an /etc/aliases-style file,
 * and sender rewriting (sender_rewrite) of local senders.
 *
 * "Local" means a bare name ("root") or an address at the configured
 * hostname ("root@web1.example.com"). Only local addresses are looked up
 * (by their local part, case-insensitively); anything an alias does not
 * resolve is qualified with the configured domain.
 */
#ifndef RELAYQ_ALIASES_H
#define RELAYQ_ALIASES_H

#include "util.h"

#define ALIASES_FILE_MAX (16 * 1024 * 1024)   /* largest file read */

struct aliases;

/*
 * Read and parse an aliases file. A missing file is an empty table.
 * ERR_TEMP when it exists but cannot be read (mail must not be misrouted),
 * ERR_DATA when it is larger than ALIASES_FILE_MAX. Lines that do not
 * parse do not fail the load: they are skipped and listed by
 * aliases_check().
 */
int aliases_load(const char *path, struct aliases **out, struct err *err);
/* The same from text in memory; path only names the file in messages. */
struct aliases *aliases_parse(const char *path, const char *text, size_t len);
void aliases_free(struct aliases *a);
/* Number of usable aliases (duplicates and bad lines not counted). */
size_t aliases_count(const struct aliases *a);
/* Number of lines that could not be used (aliases_check() lists them). */
size_t aliases_errors(const struct aliases *a);

struct alias_ctx {
	const char *hostname;   /* name@hostname is local too; may be NULL */
	const char *domain;     /* qualifies what no alias resolves */
	long max_expansions;    /* aliases used + addresses produced, per address */
};

/* Is addr (an addr-spec) a bare name or at hostname? */
int addr_is_local(const char *addr, const char *hostname);

/*
 * Expand one valid addr-spec. Local addresses with an alias are replaced
 * by its targets, nested aliases expanded depth first; a target that
 * would loop back is used as it is (qualified; a direct self-reference,
 * "root: root, ...", the usual idiom, without a warning). "\name" targets
 * are not expanded further. |pipe, /file and :include: targets are
 * skipped with a warning; an alias left with no usable target falls back
 * to the name itself, qualified. Everything else comes back qualified.
 * The addresses are appended to out without duplicates; *aliased (if not
 * NULL) says whether an alias was used. Warnings, as "FILE:LINE: ...",
 * go to warnings when not NULL. a == NULL means no aliases. ERR_DATA when
 * max_expansions would be exceeded or a result is too long.
 */
int aliases_expand(const struct aliases *a, const char *addr,
                   const struct alias_ctx *ctx, struct strlist *out,
                   int *aliased, struct strlist *warnings, struct err *err);

/*
 * newaliases: every problem of the file as "FILE:LINE: message" (bad
 * syntax, bad addresses, duplicate names, unsupported targets, loops,
 * expansions over the limit) in line order, appended to out. Problems
 * that only warn start their message with "warning: ". Returns the number
 * of errors (problems that are not warnings).
 */
size_t aliases_check(const struct aliases *a, const struct alias_ctx *ctx,
                     struct strlist *out);

/*
 * sender_rewrite for the From: header: every local mailbox of value (an
 * address list, unfolded) becomes target, keeping its display name:
 * "root (Cron Daemon)" -> "\"Cron Daemon\" <target>",
 * "Cron Daemon <root>" -> "Cron Daemon <target>", "root" -> "target".
 * Other mailboxes, groups and white space stay as written. Returns 1 with
 * the new value appended to out, or 0 (out untouched) when nothing changed
 * or the value does not parse.
 */
int sender_rewrite_from(const char *value, const char *target,
                        const char *hostname, struct buf *out);

#endif
