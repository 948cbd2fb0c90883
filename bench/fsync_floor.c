/*
 * fsync_floor.c - the least a durable queue can do per message, as the
 * benchmark's floor: write the message to tmp/, fsync, rename into data/;
 * write a small envelope to tmp/, fsync, rename into env/; fsync data/ and
 * env/. Nothing else: no parsing, no config, no headers.
 *
 *   fsync_floor [-n N] [-s BYTES] [-v] DIR
 *
 * DIR gets tmp/, data/ and env/ (created if missing). Each of the N rounds
 * writes a message of BYTES bytes (default 1024) and a 200-byte envelope,
 * then removes nothing: like a queue, the directories grow. With -v, prints
 * each round's time in microseconds, one per line; always prints
 * "median_usec M p99_usec P". Run with -n 1 under bench/spawn it is the
 * same sequence plus exec and exit: the floor for a submitting process.
 * Part of bench/; never used by the test suite.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void
die(const char *what)
{
	fprintf(stderr, "fsync_floor: %s: %s\n", what, strerror(errno));
	exit(1);
}

static long long
now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Write n bytes to dirfd/tmp/name.ext, fsync, rename to dirfd/sub/name. */
static void
commit(int top, const char *sub, const char *name, const char *buf, size_t n)
{
	char tmp[256], dst[256];
	int fd;

	snprintf(tmp, sizeof(tmp), "tmp/%s.%s", name, sub);
	snprintf(dst, sizeof(dst), "%s/%s", sub, name);
	if ((fd = openat(top, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640)) < 0)
		die(tmp);
	for (size_t off = 0; off < n;) {
		ssize_t w = write(fd, buf + off, n - off);

		if (w < 0)
			die("write");
		off += (size_t)w;
	}
	if (fsync(fd) < 0)
		die("fsync");
	if (close(fd) < 0)
		die("close");
	if (renameat(top, tmp, top, dst) < 0)
		die("rename");
}

static int
cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	long n = 1;
	size_t size = 1024;
	int verbose = 0, c, top, datafd, envfd;
	char *msg, env[200], name[64];
	long long *t;

	while ((c = getopt(argc, argv, "n:s:v")) != -1) {
		switch (c) {
		case 'n': n = strtol(optarg, NULL, 10); break;
		case 's': size = (size_t)strtoul(optarg, NULL, 10); break;
		case 'v': verbose = 1; break;
		default:
			fprintf(stderr, "usage: fsync_floor [-n N] [-s BYTES] [-v] DIR\n");
			return 2;
		}
	}
	if (optind != argc - 1 || n < 1)
		return 2;
	mkdir(argv[optind], 0750);
	if ((top = open(argv[optind], O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		die(argv[optind]);
	mkdirat(top, "tmp", 0750);
	mkdirat(top, "data", 0750);
	mkdirat(top, "env", 0750);
	if ((msg = malloc(size ? size : 1)) == NULL || (t = calloc((size_t)n, sizeof(*t))) == NULL)
		die("malloc");
	memset(msg, 'x', size);
	memset(env, 'e', sizeof(env));
	for (long i = 0; i < n; i++) {
		long long t0 = now_usec();

		snprintf(name, sizeof(name), "%lld.%ld.%ld", t0, (long)getpid(), i);
		commit(top, "data", name, msg, size);
		commit(top, "env", name, env, sizeof(env));
		if ((datafd = openat(top, "data", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
		    fsync(datafd) < 0 || close(datafd) < 0)
			die("fsync data/");
		if ((envfd = openat(top, "env", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
		    fsync(envfd) < 0 || close(envfd) < 0)
			die("fsync env/");
		t[i] = now_usec() - t0;
		if (verbose)
			printf("%lld\n", t[i]);
	}
	qsort(t, (size_t)n, sizeof(*t), cmp_ll);
	printf("median_usec %lld p99_usec %lld\n", t[n / 2], t[(n * 99 + 99) / 100 - 1]);
	free(msg);
	free(t);
	return 0;
}
