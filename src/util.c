/*
 * util.c - errors, allocation, the capped buffer, string lists and small
 * safe helpers. Nothing here knows about mail.
 */
#include "autoconf.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "util.h"
#include "log.h"

static int
err_vset(struct err *e, enum err_class cls, const char *suffix,
    const char *fmt, va_list ap)
{
	if (e == NULL)
		return -1;
	e->cls = cls;
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	if (suffix != NULL) {
		size_t len = strlen(e->msg);
		snprintf(e->msg + len, sizeof(e->msg) - len, ": %s", suffix);
	}
	return -1;
}

int
err_set(struct err *e, enum err_class cls, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	err_vset(e, cls, NULL, fmt, ap);
	va_end(ap);
	return -1;
}

int
err_sys(struct err *e, enum err_class cls, const char *fmt, ...)
{
	const char *why = strerror(errno);
	va_list ap;

	va_start(ap, fmt);
	err_vset(e, cls, why, fmt, ap);
	va_end(ap);
	return -1;
}

int
err_prefix(struct err *e, const char *fmt, ...)
{
	char old[sizeof(e->msg)], pre[sizeof(e->msg)];
	va_list ap;

	if (e == NULL)
		return -1;
	memcpy(old, e->msg, sizeof(old));
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	/* Truncation is acceptable here: the message stays readable. */
	str_copy(e->msg, pre, sizeof(e->msg));
	str_append(e->msg, ": ", sizeof(e->msg));
	str_append(e->msg, old, sizeof(e->msg));
	return -1;
}

const char *
err_class_name(enum err_class cls)
{
	static const char *const names[] = {
		[ERR_OK] = "ok", [ERR_TEMP] = "temporary",
		[ERR_PERM] = "permanent", [ERR_PROTO] = "protocol",
		[ERR_CONFIG] = "config", [ERR_INTERNAL] = "internal",
		[ERR_USAGE] = "usage", [ERR_DATA] = "data",
		[ERR_NOUSER] = "nouser", [ERR_CANTCREAT] = "cantcreat",
		[ERR_IO] = "io", [ERR_NOPERM] = "noperm", [ERR_OS] = "os",
	};

	if ((size_t)cls < sizeof(names) / sizeof(names[0]) && names[cls])
		return names[cls];
	return "unknown";
}

int
err_exit_code(enum err_class cls)
{
	switch (cls) {
	case ERR_OK:        return EX_OK;
	case ERR_TEMP:      return EX_TEMPFAIL;
	case ERR_PERM:      return EX_UNAVAILABLE;
	case ERR_PROTO:     return EX_PROTOCOL;
	case ERR_CONFIG:    return EX_CONFIG;
	case ERR_INTERNAL:  return EX_SOFTWARE;
	case ERR_USAGE:     return EX_USAGE;
	case ERR_DATA:      return EX_DATAERR;
	case ERR_NOUSER:    return EX_NOUSER;
	case ERR_CANTCREAT: return EX_CANTCREAT;
	case ERR_IO:        return EX_IOERR;
	case ERR_NOPERM:    return EX_NOPERM;
	case ERR_OS:        return EX_OSERR;
	}
	return EX_SOFTWARE;
}

static void NORETURN
out_of_memory(size_t n)
{
	fatal(EX_OSERR, "out of memory allocating %zu bytes", n);
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		out_of_memory(n);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
		out_of_memory(n * size);
	return p;
}

void *
xreallocarray(void *p, size_t n, size_t size)
{
	void *q;

	if (size != 0 && n > SIZE_MAX / size)
		out_of_memory(SIZE_MAX);
	q = realloc(p, (n != 0 && size != 0) ? n * size : 1);
	if (q == NULL)
		out_of_memory(n * size);
	return q;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = xmalloc(len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p, probe[1];
	int n;

	if (fmt == NULL)        /* also quiets a gcc 12 -fsanitize false positive */
		fatal(EX_SOFTWARE, "xasprintf: no format");
	va_start(ap, fmt);
	n = vsnprintf(probe, sizeof(probe), fmt, ap);
	va_end(ap);
	if (n < 0)
		fatal(EX_SOFTWARE, "xasprintf: bad format");
	p = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

void
buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = b->cap = 0;
	b->max = max;
}

static int
buf_reserve(struct buf *b, size_t extra)
{
	size_t need, cap;

	if (extra > SIZE_MAX - b->len - 1)
		return -1;
	need = b->len + extra;
	if (b->max != 0 && need > b->max)
		return -1;
	if (need + 1 <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 64;
	while (cap < need + 1)
		cap = cap > SIZE_MAX / 2 ? need + 1 : cap * 2;
	b->data = xreallocarray(b->data, cap, 1);
	b->cap = cap;
	return 0;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n) < 0)
		return -1;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int
buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int
buf_putc(struct buf *b, int c)
{
	char ch = (char)c;

	return buf_append(b, &ch, 1);
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	char probe[1];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(probe, sizeof(probe), fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
buf_wipe_free(struct buf *b)
{
	if (b->data)
		secure_zero(b->data, b->cap);
	buf_free(b);
}

void
strlist_add(struct strlist *l, const char *s)
{
	strlist_add_owned(l, xstrdup(s));
}

void
strlist_add_owned(struct strlist *l, char *s)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
	}
	l->v[l->n++] = s;
}

int
strlist_has_ci(const struct strlist *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcasecmp(l->v[i], s) == 0)
			return 1;
	return 0;
}

void
strlist_free(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

int
str_copy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size == 0)
		return -1;
	if (len >= size) {
		memcpy(dst, src, size - 1);
		dst[size - 1] = '\0';
		return -1;
	}
	memcpy(dst, src, len + 1);
	return 0;
}

int
str_append(char *dst, const char *src, size_t size)
{
	size_t len = strnlen(dst, size);

	if (len == size)
		return -1;
	return str_copy(dst + len, src, size - len);
}

int
str_fmt(char *dst, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(dst, size, fmt, ap);
	va_end(ap);
	return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

int
parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Parse "<digits><suffix>" where the suffix is looked up in units. */
static int
parse_scaled(const char *s, const char *suffixes, const unsigned long long *mult,
    unsigned long long *out)
{
	unsigned long long v = 0, m = 1;
	const char *p = s, *u;

	if (s == NULL || !isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (ULLONG_MAX - 9) / 10)
			return -1;
		v = v * 10 + (unsigned)(*p - '0');
	}
	if (*p != '\0') {
		if (p[1] != '\0' || (u = strchr(suffixes, *p)) == NULL)
			return -1;
		m = mult[u - suffixes];
	}
	if (m != 0 && v > ULLONG_MAX / m)
		return -1;
	*out = v * m;
	return 0;
}

int
parse_duration(const char *s, long *secs)
{
	static const unsigned long long mult[] = { 1, 60, 3600, 86400, 604800 };
	unsigned long long v;

	if (parse_scaled(s, "smhdw", mult, &v) < 0 || v > LONG_MAX)
		return -1;
	*secs = (long)v;
	return 0;
}

int
parse_size(const char *s, unsigned long long *bytes)
{
	static const unsigned long long mult[] = {
		1024ULL, 1024ULL * 1024, 1024ULL * 1024 * 1024,
		1024ULL, 1024ULL * 1024, 1024ULL * 1024 * 1024,
	};

	return parse_scaled(s, "KMGkmg", mult, bytes);
}

void
format_duration(long secs, char *out, size_t size)
{
	static const struct { long n; char c; } units[] = {
		{ 604800, 'w' }, { 86400, 'd' }, { 3600, 'h' }, { 60, 'm' },
	};

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (secs != 0 && secs % units[i].n == 0) {
			snprintf(out, size, "%ld%c", secs / units[i].n, units[i].c);
			return;
		}
	}
	snprintf(out, size, "%lds", secs);
}

void
str_escape(const char *in, size_t len, char *out, size_t size)
{
	size_t o = 0;

	if (size == 0)
		return;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		char tmp[5];
		size_t n;

		if (c == '\\')
			n = (size_t)snprintf(tmp, sizeof(tmp), "\\\\");
		else if (c >= 0x20 && c < 0x7f)
			n = (size_t)snprintf(tmp, sizeof(tmp), "%c", c);
		else if (c == '\r')
			n = (size_t)snprintf(tmp, sizeof(tmp), "\\r");
		else if (c == '\n')
			n = (size_t)snprintf(tmp, sizeof(tmp), "\\n");
		else if (c == '\t')
			n = (size_t)snprintf(tmp, sizeof(tmp), "\\t");
		else
			n = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", c);
		if (o + n + 1 > size) {
			/* Mark the truncation if there is room for it. */
			if (size >= 4) {
				o = o + 4 > size ? size - 4 : o;
				memcpy(out + o, "...", 3);
				o += 3;
			}
			break;
		}
		memcpy(out + o, tmp, n);
		o += n;
	}
	out[o] = '\0';
}

int
has_crlf(const char *s)
{
	return strpbrk(s, "\r\n") != NULL;
}

void
secure_zero(void *p, size_t n)
{
#ifdef HAVE_EXPLICIT_BZERO
	explicit_bzero(p, n);
#else
	volatile unsigned char *v = p;

	while (n--)
		*v++ = 0;
#endif
}

int
write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = write(fd, c, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

int
read_file_capped(int fd, struct buf *b, size_t max)
{
	char tmp[8192];

	for (;;) {
		ssize_t r = read(fd, tmp, sizeof(tmp));

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			return 0;
		if (b->len + (size_t)r > max || buf_append(b, tmp, (size_t)r) < 0) {
			errno = EFBIG;
			return -1;
		}
	}
}

int
fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc, saved;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
