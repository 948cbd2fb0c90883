/*
 * config.h - the validated, read-only configuration. config.c is the only
 * file that includes <confuse.h>; everything else sees these plain structs.
 */
#ifndef RELAYQ_CONFIG_H
#define RELAYQ_CONFIG_H

#include <stdio.h>
#include "util.h"

enum tls_mode { TLS_STARTTLS, TLS_SMTPS, TLS_NONE };
enum delivery_mode { DELIVERY_BACKGROUND, DELIVERY_FOREGROUND, DELIVERY_QUEUE };

#define SESSIONS_MAX 32          /* the most parallel sessions to a smarthost */

struct smarthost {
	char *name;              /* section title */
	char *host;              /* name or address; [] around IPv6 removed */
	int port;                /* default 587 starttls, 465 smtps, 25 none */
	enum tls_mode tls;       /* default starttls */
	int tls_verify;          /* default 1 */
	char *tls_ca_file, *tls_ca_path;
	char *tls_fingerprint;   /* "sha256:" + 64 lower-case hex, no colons */
	char *tls_min_version;   /* "1.2" (default) or "1.3" */
	char *tls_cert_file, *tls_key_file;
	int tls_session_cache;   /* resume sessions kept in the spool; default 1 */
	char *username;
	char *password, *password_file, *password_command; /* at most one set */
	struct strlist auth;     /* allowed mechanisms, upper case; empty = default */
	long timeout;            /* seconds, default 300 */
	long connect_timeout;    /* seconds, default 30 */
	int sessions;            /* parallel sessions for a backlog, 1..32; 1 */
};

struct config {
	char *path;              /* file it was read from */
	char *hostname;          /* default: the FQDN of this host */
	char *domain;            /* default: hostname */
	char *queue_dir;         /* default: SPOOLDIR */
	char *aliases;           /* default: /etc/aliases */
	long queue_lifetime;     /* seconds, default 5d */
	long *retry;             /* seconds; the last one repeats */
	size_t nretry;           /* default {1m, 5m, 15m, 1h, 4h} */
	unsigned long long max_message_size; /* bytes, default 50M; 0 = no limit */
	enum delivery_mode delivery;         /* default background */
	char *log;               /* "syslog" (default), "stderr" or a path */
	struct smarthost *smarthosts;   /* in config order: tried in turn */
	size_t nsmarthosts;      /* 0 is allowed: mail stays queued */
	char *sender_rewrite;    /* default NULL (unset) */
	int sender_from_header;  /* default 0 */
	unsigned long long max_header_size; /* bytes, default 1M */
	long max_headers;        /* default 1000 */
	long max_recipients;     /* default 1000 */
	long max_alias_expansions; /* default 1000 */
	long max_smtp_line;      /* -bs command line, octets without CRLF; 1024 */
	long max_reply_lines;    /* lines in one smarthost reply; default 100 */
	long max_reply_line;     /* octets in one reply line without CRLF; 2048 */
};

#ifdef SYSCONFDIR
#define CONFIG_DEFAULT_PATH SYSCONFDIR "/relayq.conf"
#endif

/*
 * Read and validate a config file. Every error is ERR_CONFIG and names the
 * file, the line where libconfuse knows it, and the key. Not reentrant
 * (libconfuse's scanner is global); main calls it once.
 */
int config_load(const char *path, struct config **out, struct err *err);
void config_free(struct config *cfg);
/* Wipe and drop the passwords (before parsing untrusted input). */
void config_wipe_secrets(struct config *cfg);
/* Print the effective configuration (all keys) with secrets masked. */
void config_print(FILE *out, const struct config *cfg);
/* Is host a loopback name or literal (localhost, 127.0.0.0/8, ::1)? */
int host_is_loopback(const char *host);

#endif
