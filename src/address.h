/*
 * address.h - RFC 5321/5322 address parsing, validation and qualification.
 * Addresses are handled as plain addr-specs: "local@domain" or a bare
 * local name ("root") that still needs qualification.
 */
#ifndef RELAYQ_ADDRESS_H
#define RELAYQ_ADDRESS_H

#include "util.h"

#define ADDR_MAX 320    /* 64 local-part + @ + 255 domain */

/*
 * Parse an RFC 5322 address-list (header value or a command-line argument):
 * groups ("undisclosed-recipients:;", "team: a@x, b@y;"), comments, quoted
 * display names, angle addresses, obsolete routes. Appends each addr-spec
 * found, unquoted where quoting is not needed, to out. ERR_DATA with a
 * message naming the problem on bad syntax; nothing is appended then.
 */
int addr_parse_list(const char *text, struct strlist *out, struct err *err);

/*
 * Parse the -f/-r sender: "<>" or "" is the null sender (out = ""),
 * "<a@b>", "a@b", "Name <a@b>" and "a@b (comment)" give "a@b".
 */
int addr_parse_sender(const char *text, char *out, size_t size, struct err *err);

/*
 * Check an addr-spec for use in an SMTP envelope: length limits, no
 * control characters, valid dot-atom or quoted local part, valid domain
 * (dot-atom or [literal]). Bare local names pass (they get qualified).
 */
int addr_validate(const char *addr, struct err *err);

/* Does addr lack a domain part? */
int addr_is_bare(const char *addr);

/*
 * "root" -> "root@domain"; addresses with a domain are copied as they are.
 * -1 if it does not fit.
 */
int addr_qualify(const char *addr, const char *domain, char *out, size_t size);

/*
 * Rewrite an address-list header value so that every bare local name gets
 * "@domain", keeping display names, comments, groups and spacing as they
 * were: "root (Cron Daemon)" -> "root@example.com (Cron Daemon)". Appends
 * the result to out. If the value does not parse, it is copied unchanged.
 */
int addr_qualify_header(const char *value, const char *domain, struct buf *out);

/* Does the address contain non-ASCII bytes (needs SMTPUTF8)? */
int addr_is_utf8(const char *addr);

#endif
