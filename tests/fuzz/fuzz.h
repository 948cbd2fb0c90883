/*
 * fuzz.h - helpers shared by the libFuzzer targets in tests/fuzz/: a
 * property check that crashes (so libFuzzer keeps the input), memfd
 * plumbing for the modules that read and write descriptors, and the
 * "safe for a log line" test used on every error message built from
 * hostile input. Header-only: each target is one translation unit.
 */
#ifndef RELAYQ_FUZZ_H
#define RELAYQ_FUZZ_H

#include <sys/mman.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A broken property is a bug: abort, and libFuzzer saves the input. */
#define FUZZ_CHECK(cond, ...) do {                                      \
	if (!(cond)) {                                                  \
		fprintf(stderr, "%s:%d: property failed: %s\n  ",      \
		    __FILE__, __LINE__, #cond);                         \
		fprintf(stderr, __VA_ARGS__);                           \
		fputc('\n', stderr);                                    \
		abort();                                                \
	}                                                               \
} while (0)

/* Setup failures are not findings; stop the run loudly. */
static inline void
fuzz_die(const char *what)
{
	fprintf(stderr, "fuzz setup: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* The input as a NUL-terminated string (cut at its first NUL). */
static inline char *
fuzz_str(const uint8_t *data, size_t size)
{
	return xstrndup((const char *)data, size);
}

/* Any byte below 0x20 or DEL? (A log or mailq line must have none.) */
static inline int
fuzz_has_ctl(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 1;
	return 0;
}

static inline int
fuzz_memfd(const char *name)
{
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd < 0)
		fuzz_die("memfd_create");
	return fd;
}

/* Make fd hold exactly data, positioned at its start. */
static inline void
fuzz_memfd_set(int fd, const void *data, size_t size)
{
	if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0 ||
	    (size > 0 && write_all(fd, data, size) < 0) ||
	    lseek(fd, 0, SEEK_SET) < 0)
		fuzz_die("memfd write");
}

/* Everything written to fd so far, in a fresh NUL-terminated block. */
static inline char *
fuzz_memfd_get(int fd, size_t *len)
{
	off_t end = lseek(fd, 0, SEEK_END);
	char *p;

	if (end < 0)
		fuzz_die("memfd seek");
	p = xmalloc((size_t)end + 1);
	if (end > 0 && pread(fd, p, (size_t)end, 0) != (ssize_t)end)
		fuzz_die("memfd read");
	p[end] = '\0';
	*len = (size_t)end;
	return p;
}

#endif
