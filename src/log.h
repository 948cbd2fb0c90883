/*
 * log.h - the one place messages leave the program: syslog (facility mail),
 * stderr or a file, plus the -v protocol transcript.
 */
#ifndef RELAYQ_LOG_H
#define RELAYQ_LOG_H

#include "util.h"

/* Program name used as prefix and syslog ident ("relayq", "sendmail"...). */
void log_init(const char *progname);
const char *log_progname(void);
/* Select the destination: "syslog", "stderr" or an absolute file path. */
int log_open(const char *spec, struct err *err);
void log_close(void);

void log_info(const char *fmt, ...) PRINTF_LIKE(1, 2);
void log_warn(const char *fmt, ...) PRINTF_LIKE(1, 2);
void log_error(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* Only when verbose is on. */
void log_debug(const char *fmt, ...) PRINTF_LIKE(1, 2);
void log_set_verbose(int level);
int log_verbose(void);

/*
 * The -v transcript: one protocol line as sent ("dir" = "->") or received
 * ("<-"), printed to stderr when verbose. Callers redact secrets before
 * calling; the line is escaped here.
 */
void log_transcript(const char *dir, const char *line, size_t len);

/* Tell the user (stderr, "progname: msg") and the log. For command errors. */
void log_user(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* Tell the user what failed (log_user); returns its sysexits(3) code. */
int log_failure(const struct err *err);

/* Start-up and environment failures only: report and exit(code). */
void fatal(int code, const char *fmt, ...) PRINTF_LIKE(2, 3) NORETURN;

#endif
