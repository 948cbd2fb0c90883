/*
 * util.h - error reporting, allocation, a capped growable buffer, string
 * lists and the safe string helpers every other module builds on.
 */
#ifndef RELAYQ_UTIL_H
#define RELAYQ_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#define NORETURN __attribute__((noreturn))

/*
 * Error classes. Functions that touch the outside return 0 or -1 and fill a
 * struct err; only the programs' top level (main.c, handoff_*.c) turns a
 * class into a sysexits(3) code, with err_exit_code().
 */
enum err_class {
	ERR_OK = 0,
	ERR_TEMP,        /* try again later (EX_TEMPFAIL) */
	ERR_PERM,        /* permanent failure of the operation (EX_UNAVAILABLE) */
	ERR_PROTO,       /* the peer broke the protocol (EX_PROTOCOL) */
	ERR_CONFIG,      /* bad configuration (EX_CONFIG) */
	ERR_INTERNAL,    /* our own bug or an impossible state (EX_SOFTWARE) */
	ERR_USAGE,       /* bad command line (EX_USAGE) */
	ERR_DATA,        /* bad input data: message, address (EX_DATAERR) */
	ERR_NOUSER,      /* unknown user/address (EX_NOUSER) */
	ERR_CANTCREAT,   /* cannot create a file, e.g. the queue (EX_CANTCREAT) */
	ERR_IO,          /* I/O error (EX_IOERR) */
	ERR_NOPERM,      /* not permitted (EX_NOPERM) */
	ERR_OS,          /* operating system error (EX_OSERR) */
};

struct err {
	enum err_class cls;
	char msg[1024];
};

/* Set *e (if not NULL) and return -1, so callers can "return err_set(...)". */
int err_set(struct err *e, enum err_class cls, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* As err_set, appending ": strerror(errno)" (errno is read on entry). */
int err_sys(struct err *e, enum err_class cls, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* Prefix an existing message: "prefix: old message". */
int err_prefix(struct err *e, const char *fmt, ...) PRINTF_LIKE(2, 3);
const char *err_class_name(enum err_class cls);
/* The sysexits(3) code of a class (EX_OK for ERR_OK). */
int err_exit_code(enum err_class cls);

/* Allocation: out of memory is fatal (there is nothing sane to do). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) PRINTF_LIKE(1, 2);

/*
 * A growable byte buffer with a hard cap. data is always NUL-terminated so
 * text can be used as a C string. Appends beyond max fail with -1 and leave
 * the buffer unchanged; max == 0 means "no cap" and is for internal use only.
 */
struct buf {
	char *data;
	size_t len, cap, max;
};
void buf_init(struct buf *b, size_t max);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, int c);
int buf_printf(struct buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);
/* Wipe the contents (secrets) before freeing. */
void buf_wipe_free(struct buf *b);

/* A list of owned strings. */
struct strlist {
	char **v;
	size_t n, cap;
};
void strlist_add(struct strlist *l, const char *s);
void strlist_add_owned(struct strlist *l, char *s);
/* Case-insensitive membership test (addresses, keys). */
int strlist_has_ci(const struct strlist *l, const char *s);
void strlist_free(struct strlist *l);

/* Copy/append with truncation check: 0 on success, -1 if it did not fit
 * (dst is then a truncated, NUL-terminated prefix). */
int str_copy(char *dst, const char *src, size_t size);
int str_append(char *dst, const char *src, size_t size);
/* snprintf that returns -1 on truncation or error, 0 otherwise. */
int str_fmt(char *dst, size_t size, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* "90", "30s", "15m", "4h", "5d", "1w" -> seconds. -1 on bad syntax/overflow. */
int parse_duration(const char *s, long *secs);
/* "1000", "10K", "50M", "1G" (powers of 1024) -> bytes. -1 on bad syntax. */
int parse_size(const char *s, unsigned long long *bytes);
/* Strict decimal parse of a whole string into [min, max]. */
int parse_long(const char *s, long min, long max, long *out);
/* Format seconds as the shortest exact "5d", "90m", "30s". */
void format_duration(long secs, char *out, size_t size);

/*
 * Make untrusted text safe for logs and one-line files: printable ASCII is
 * kept, everything else becomes \xNN (or \r, \n, \t). Output is always
 * NUL-terminated and truncated (with "...") to fit.
 */
void str_escape(const char *in, size_t len, char *out, size_t size);

/* Does s contain a CR, LF or NUL within n bytes / at all? */
int has_crlf(const char *s);

/* Overwrite memory the compiler may not optimise away (secrets). */
void secure_zero(void *p, size_t n);

/* write(2) until done, retrying on EINTR. 0 or -1 (errno set). */
int write_all(int fd, const void *p, size_t n);
/* Read a whole small file (capped at max bytes) into b. -1 with errno. */
int read_file_capped(int fd, struct buf *b, size_t max);
/* fsync a directory by path. -1 with errno. */
int fsync_dir(const char *path);
/* Monotonic clock in milliseconds. */
long long now_ms(void);

#endif
