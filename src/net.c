/*
 * net.c - one connection to a smarthost: resolution, connect with a
 * timeout over every address in order, and buffered, bounded line I/O
 * over plain TCP or TLS. The socket stays non-blocking; every wait is a
 * poll(2) bounded by the connection's timeout (per read or write call,
 * as Postfix does). Errors name the peer as "host[addr]:port".
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"
#include "tls.h"
#include "util.h"

#define RBUF_SIZE (16 * 1024)
#define WBUF_SIZE (64 * 1024)
#define PEER_MAX (256 + INET6_ADDRSTRLEN + 16)

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0      /* then the caller must ignore SIGPIPE */
#endif

struct conn {
	int fd;
	long timeout;
	size_t line_max;            /* longest line conn_read_line takes */
	struct tls_conn *tls;
	char peer[PEER_MAX];
	size_t rpos, rlen;          /* unread bytes are rbuf[rpos..rlen) */
	size_t wlen;
	char rbuf[RBUF_SIZE];
	char wbuf[WBUF_SIZE];
};

/* Append to an existing error message (" reading from host[addr]:port"). */
static int
err_suffix(struct err *err, const char *what, const struct conn *c)
{
	if (err != NULL) {
		str_append(err->msg, what, sizeof(err->msg));
		str_append(err->msg, c->peer, sizeof(err->msg));
	}
	return -1;
}

static int
timeout_err(struct err *err, long secs)
{
	return err_set(err, ERR_TEMP, "timeout after %ld second%s", secs,
	    secs == 1 ? "" : "s");
}

/* Wait up to secs for events; 0 ready, -1 with errno (ETIMEDOUT). */
static int
wait_fd(int fd, short events, long secs)
{
	long long deadline = now_ms() + (long long)(secs > 0 ? secs : 1) * 1000;

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		long long left = deadline - now_ms();
		int r;

		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		r = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

/* ------------------------------------------------------------------ */
/* Connecting                                                           */

#if !defined(SOCK_NONBLOCK) || !defined(SOCK_CLOEXEC)
static int
set_nonblock_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	return fcntl(fd, F_SETFD, FD_CLOEXEC);
}
#endif

static int
open_socket(const struct addrinfo *ai)
{
	int fd;

#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    ai->ai_protocol);
#else
	fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
	if (fd >= 0 && set_nonblock_cloexec(fd) < 0) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
#endif
	return fd;
}

/* Connect one address within secs; the socket, or -1 with errno. */
static int
connect_one(const struct addrinfo *ai, long secs)
{
	int fd, soerr = 0, saved;
	socklen_t len = sizeof(soerr);

	if ((fd = open_socket(ai)) < 0)
		return -1;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return fd;
	/* After EINTR the connect carries on asynchronously, as EINPROGRESS. */
	if (errno != EINPROGRESS && errno != EINTR)
		goto fail;
	if (wait_fd(fd, POLLOUT, secs) < 0)
		goto fail;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		goto fail;
	if (soerr != 0) {
		errno = soerr;
		goto fail;
	}
	return fd;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

static void
format_peer(char *out, size_t size, const char *host,
    const struct addrinfo *ai, int port)
{
	char addr[NI_MAXHOST];

	if (getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof(addr), NULL, 0,
	    NI_NUMERICHOST) != 0)
		str_copy(addr, "?", sizeof(addr));
	if (str_fmt(out, size, "%s[%s]:%d", host, addr, port) < 0)
		str_fmt(out, size, "[%s]:%d", addr, port);
}

static int
gai_err(struct err *err, const char *host, int rc)
{
	if (rc == EAI_SYSTEM)
		return err_sys(err, ERR_TEMP, "cannot resolve %s", host);
	return err_set(err, ERR_TEMP, "cannot resolve %s: %s", host,
	    gai_strerror(rc));
}

/*
 * AI_ADDRCONFIG skips address families the host cannot reach, but glibc
 * ignores loopback addresses when deciding, so on a loopback-only host it
 * can hide even "localhost" or "127.0.0.1": then ask again without it.
 */
static int
resolve(const char *host, int port, struct addrinfo **res, struct err *err)
{
	struct addrinfo hints;
	char service[16];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	str_fmt(service, sizeof(service), "%d", port);
	/* An address literal needs no lookup, nor the interface list. */
	hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST;
	if (getaddrinfo(host, service, &hints, res) == 0)
		return 0;
	hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
	rc = getaddrinfo(host, service, &hints, res);
	if (rc == EAI_NONAME
#ifdef EAI_ADDRFAMILY
	    || rc == EAI_ADDRFAMILY
#endif
#ifdef EAI_NODATA
	    || rc == EAI_NODATA
#endif
	    ) {
		hints.ai_flags = AI_NUMERICSERV;
		rc = getaddrinfo(host, service, &hints, res);
	}
	if (rc != 0)
		return gai_err(err, host, rc);
	return 0;
}

struct conn *
net_connect(const char *host, int port, long connect_timeout, long io_timeout,
    struct err *err)
{
	struct addrinfo *res, *ai;
	struct conn *c;
	char peer[PEER_MAX];
	int fd = -1, one = 1;

	if (host == NULL || host[0] == '\0' || strlen(host) > 255) {
		err_set(err, ERR_CONFIG, "host name is empty or too long");
		return NULL;
	}
	if (port < 1 || port > 65535) {
		err_set(err, ERR_CONFIG, "bad port %d for %s", port, host);
		return NULL;
	}
	if (resolve(host, port, &res, err) < 0)
		return NULL;
	err_set(err, ERR_TEMP, "cannot resolve %s: no addresses", host);
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		format_peer(peer, sizeof(peer), host, ai, port);
		if ((fd = connect_one(ai, connect_timeout)) >= 0)
			break;
		if (errno == ETIMEDOUT)
			err_set(err, ERR_TEMP, "connect to %s: timeout after "
			    "%ld second%s", peer, connect_timeout,
			    connect_timeout == 1 ? "" : "s");
		else
			err_sys(err, ERR_TEMP, "connect to %s", peer);
	}
	freeaddrinfo(res);
	if (fd < 0)
		return NULL;
	/* Replies are small and we flush deliberately: no Nagle delays. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = xcalloc(1, sizeof(*c));
	c->fd = fd;
	c->timeout = io_timeout > 0 ? io_timeout : 1;
	c->line_max = NET_LINE_MAX;
	str_copy(c->peer, peer, sizeof(c->peer));
	if (err != NULL) {
		err->cls = ERR_OK;
		err->msg[0] = '\0';
	}
	return c;
}

const char *
conn_peer(const struct conn *c)
{
	return c->peer;
}

void
conn_set_timeout(struct conn *c, long secs)
{
	c->timeout = secs > 0 ? secs : 1;
}

void
conn_set_line_max(struct conn *c, size_t max)
{
	if (max == 0)
		max = NET_LINE_MAX;
	c->line_max = max < NET_LINE_LIMIT ? max : NET_LINE_LIMIT;
}

/* ------------------------------------------------------------------ */
/* Raw I/O: plain socket or TLS                                         */

/* >0 bytes, 0 at EOF, -1 with err (not yet naming the peer). */
static ssize_t
raw_read(struct conn *c, void *p, size_t n, struct err *err)
{
	if (c->tls != NULL)
		return tls_read(c->tls, p, n, c->timeout, err);
	for (;;) {
		ssize_t r = recv(c->fd, p, n, 0);

		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return err_set(err, ERR_TEMP, "%s", strerror(errno));
		if (wait_fd(c->fd, POLLIN, c->timeout) < 0) {
			if (errno == ETIMEDOUT)
				return timeout_err(err, c->timeout);
			return err_sys(err, ERR_TEMP, "poll");
		}
	}
}

/* Send all n bytes; one send(2) when the socket takes them. */
static int
raw_write(struct conn *c, const void *p, size_t n, struct err *err)
{
	const char *s = p;

	if (c->tls != NULL)
		return tls_write(c->tls, p, n, c->timeout, err);
	while (n > 0) {
		ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);

		if (w >= 0) {
			s += w;
			n -= (size_t)w;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return err_set(err, ERR_TEMP, "%s", strerror(errno));
		if (wait_fd(c->fd, POLLOUT, c->timeout) < 0) {
			if (errno == ETIMEDOUT)
				return timeout_err(err, c->timeout);
			return err_sys(err, ERR_TEMP, "poll");
		}
	}
	return 0;
}

/*
 * Ask the kernel to ACK what arrives next at once (it turns this off
 * again by itself). Otherwise a server whose Nagle holds its reply until
 * our ACK of the record before it (Postfix after the TLS session ticket)
 * stalls each session for a delayed-ACK timeout, ~40 ms.
 */
static void
quickack(const struct conn *c)
{
	int one = 1;

	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

static int
fill(struct conn *c, struct err *err)
{
	ssize_t r;

	quickack(c);
	c->rpos = c->rlen = 0;
	if ((r = raw_read(c, c->rbuf, sizeof(c->rbuf), err)) < 0)
		return err_suffix(err, " reading from ", c);
	if (r == 0)
		return err_set(err, ERR_TEMP, "connection closed by %s", c->peer);
	c->rlen = (size_t)r;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Lines and buffers                                                    */

int
conn_read_line(struct conn *c, char *line, size_t size, size_t *len,
    struct err *err)
{
	size_t n = 0, limit;

	if (size < 2)
		return err_set(err, ERR_INTERNAL, "conn_read_line: buffer too small");
	limit = size - 1 < c->line_max ? size - 1 : c->line_max;
	for (;;) {
		while (c->rpos < c->rlen) {
			char ch = c->rbuf[c->rpos++];

			if (ch == '\n') {
				if (n > 0 && line[n - 1] == '\r')
					n--;
				line[n] = '\0';
				if (len != NULL)
					*len = n;
				return 0;
			}
			if (ch == '\0')
				return err_set(err, ERR_PROTO,
				    "NUL byte in a line from %s", c->peer);
			/* Room for one CR past the limit: it is not content. */
			if (n >= limit && !(n == limit && ch == '\r'))
				return err_set(err, ERR_PROTO, "line longer than "
				    "%zu bytes from %s", limit, c->peer);
			line[n++] = ch;
		}
		if (fill(c, err) < 0)
			return -1;
	}
}

size_t
conn_pending(const struct conn *c)
{
	return c->rlen - c->rpos;
}

int
conn_flush(struct conn *c, struct err *err)
{
	int rc = 0;

	if (c->wlen == 0)
		return 0;
	if (raw_write(c, c->wbuf, c->wlen, err) < 0)
		rc = err_suffix(err, " writing to ", c);
	/* The buffer may have held an AUTH line. */
	secure_zero(c->wbuf, c->wlen);
	c->wlen = 0;
	return rc;
}

int
conn_write(struct conn *c, const void *p, size_t n, struct err *err)
{
	const char *s = p;

	while (n > 0) {
		size_t k;

		if (c->wlen == 0 && n >= sizeof(c->wbuf)) {
			if (raw_write(c, s, n, err) < 0)
				return err_suffix(err, " writing to ", c);
			return 0;
		}
		k = sizeof(c->wbuf) - c->wlen;
		if (k > n)
			k = n;
		memcpy(c->wbuf + c->wlen, s, k);
		c->wlen += k;
		s += k;
		n -= k;
		if (c->wlen == sizeof(c->wbuf) && conn_flush(c, err) < 0)
			return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* TLS                                                                  */

int
conn_starttls(struct conn *c, struct tls_client *tls, const char *host,
    struct err *err)
{
	if (c->tls != NULL)
		return err_set(err, ERR_INTERNAL, "TLS is already active with %s",
		    c->peer);
	/* Bytes that arrived with the STARTTLS reply were sent in the clear
	 * and would be taken as the first TLS-protected reply. */
	if (conn_pending(c) > 0)
		return err_set(err, ERR_PROTO, "plaintext data after STARTTLS "
		    "reply (possible injection) from %s", c->peer);
	if (conn_flush(c, err) < 0)
		return -1;
	c->rpos = c->rlen = 0;
	quickack(c);
	if ((c->tls = tls_connect(tls, c->fd, host, c->timeout, err)) == NULL)
		return -1;
	return 0;
}

int
conn_is_tls(const struct conn *c)
{
	return c->tls != NULL;
}

const char *
conn_tls_info(const struct conn *c)
{
	return c->tls != NULL ? tls_info(c->tls) : "";
}

struct tls_conn *
conn_tls(const struct conn *c)
{
	return c->tls;
}

void
conn_close(struct conn *c)
{
	if (c == NULL)
		return;
	tls_close(c->tls);
	close(c->fd);
	secure_zero(c, sizeof(*c));
	free(c);
}
