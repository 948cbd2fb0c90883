/*
 * log.c - logging to syslog (facility mail), stderr or a file, and the -v
 * transcript. Everything logged is escaped: no control bytes reach a
 * terminal or a log file from remote input.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

enum log_dest { DEST_STDERR, DEST_SYSLOG, DEST_FILE };

static char progname[64] = "relayq";
static enum log_dest dest = DEST_STDERR;
static FILE *logfile;
static int verbose;

void
log_init(const char *name)
{
	const char *slash = strrchr(name, '/');

	str_copy(progname, slash ? slash + 1 : name, sizeof(progname));
}

const char *
log_progname(void)
{
	return progname;
}

int
log_open(const char *spec, struct err *err)
{
	log_close();
	if (strcmp(spec, "syslog") == 0) {
		openlog(progname, LOG_PID | LOG_NDELAY, LOG_MAIL);
		dest = DEST_SYSLOG;
	} else if (strcmp(spec, "stderr") == 0) {
		dest = DEST_STDERR;
	} else {
		/* Opened as the caller: create it group-writable, so the first
		 * user to log does not lock everybody else out. */
		int fd = open(spec, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);

		if (fd < 0 && errno == ENOENT &&
		    (fd = open(spec, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
		    O_NOFOLLOW, 0660)) >= 0)
			(void)fchmod(fd, 0660);

		if (fd < 0 || (logfile = fdopen(fd, "a")) == NULL) {
			if (fd >= 0)
				close(fd);
			return err_sys(err, ERR_CONFIG, "cannot open log file %s", spec);
		}
		setvbuf(logfile, NULL, _IOLBF, 0);
		dest = DEST_FILE;
	}
	return 0;
}

void
log_close(void)
{
	if (dest == DEST_SYSLOG)
		closelog();
	if (logfile)
		fclose(logfile);
	logfile = NULL;
	dest = DEST_STDERR;
}

static void
log_emit(int prio, const char *fmt, va_list ap)
{
	char raw[2048], line[4096];
	int saved = errno;

	vsnprintf(raw, sizeof(raw), fmt, ap);
	str_escape(raw, strlen(raw), line, sizeof(line));
	switch (dest) {
	case DEST_SYSLOG:
		syslog(prio, "%s", line);
		break;
	case DEST_FILE: {
		char stamp[32];
		time_t t = time(NULL);
		struct tm tm;

		strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S",
		    localtime_r(&t, &tm));
		fprintf(logfile, "%s %s[%ld]: %s\n", stamp, progname,
		    (long)getpid(), line);
		break;
	}
	case DEST_STDERR:
		fprintf(stderr, "%s[%ld]: %s\n", progname, (long)getpid(), line);
		break;
	}
	errno = saved;
}

#define LOG_FN(name, prio)                      \
	void name(const char *fmt, ...)         \
	{                                       \
		va_list ap;                     \
		va_start(ap, fmt);              \
		log_emit(prio, fmt, ap);        \
		va_end(ap);                     \
	}

LOG_FN(log_info, LOG_INFO)
LOG_FN(log_warn, LOG_WARNING)
LOG_FN(log_error, LOG_ERR)

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	if (!verbose)
		return;
	va_start(ap, fmt);
	log_emit(LOG_DEBUG, fmt, ap);
	va_end(ap);
}

void
log_set_verbose(int level)
{
	verbose = level;
}

int
log_verbose(void)
{
	return verbose;
}

void
log_transcript(const char *dir, const char *line, size_t len)
{
	char esc[2048];

	if (!verbose)
		return;
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	str_escape(line, len, esc, sizeof(esc));
	fprintf(stderr, "%s %s\n", dir, esc);
}

/* User-facing error: one line on stderr, and the log if it is not stderr. */
void
log_user(const char *fmt, ...)
{
	char raw[2048], line[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	str_escape(raw, strlen(raw), line, sizeof(line));
	fprintf(stderr, "%s: %s\n", progname, line);
	if (dest != DEST_STDERR)
		log_error("%s", line);
}

int
log_failure(const struct err *err)
{
	log_user("%s", err->msg);
	return err_exit_code(err->cls);
}

void
fatal(int code, const char *fmt, ...)
{
	char raw[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	log_user("fatal: %s", raw);
	exit(code);
}
