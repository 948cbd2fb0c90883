/*
 * net.h - a connection to a smarthost: name resolution, connect with a
 * timeout over every address in order, and buffered, bounded line I/O with
 * per-operation timeouts over plain TCP or TLS.
 */
#ifndef RELAYQ_NET_H
#define RELAYQ_NET_H

#include <stddef.h>
#include "util.h"

struct conn;
struct tls_client;
struct tls_conn;

#define NET_LINE_MAX 2048     /* longest line accepted by default */
#define NET_LINE_LIMIT 65536  /* the most conn_set_line_max() allows */

/*
 * Resolve host and try each address getaddrinfo returns, in order (IPv6
 * and IPv4), each within connect_timeout seconds. io_timeout applies to
 * every later read/write until changed. TCP_NODELAY is set. ERR_TEMP with
 * the last address's reason on failure. conn_peer() then reads
 * "host[addr]:port".
 */
struct conn *net_connect(const char *host, int port, long connect_timeout,
                         long io_timeout, struct err *err);
const char *conn_peer(const struct conn *c);
void conn_set_timeout(struct conn *c, long secs);
/* Longest line conn_read_line accepts: 0 = NET_LINE_MAX, at most
 * NET_LINE_LIMIT (config max_reply_line). */
void conn_set_line_max(struct conn *c, size_t max);

/*
 * Start TLS on the connection (STARTTLS after the 220, or at once for
 * smtps). Fails with ERR_PROTO if unread plaintext is buffered (a
 * man-in-the-middle injection). host is the name verified and sent as SNI.
 */
int conn_starttls(struct conn *c, struct tls_client *tls, const char *host,
                  struct err *err);
int conn_is_tls(const struct conn *c);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" or "" for plain. */
const char *conn_tls_info(const struct conn *c);
/* The TLS connection (for tls_describe_peer), or NULL for plain. */
struct tls_conn *conn_tls(const struct conn *c);

/*
 * Read one line (without CRLF/LF) into line (NUL-terminated). ERR_TEMP on
 * timeout, EOF or I/O error; ERR_PROTO on a line longer than size-1 or
 * the connection's line maximum, or containing NUL.
 */
int conn_read_line(struct conn *c, char *line, size_t size, size_t *len,
                   struct err *err);
/* Queue bytes for sending; large writes are sent through at once. */
int conn_write(struct conn *c, const void *p, size_t n, struct err *err);
/* Send everything queued (one write(2)/SSL_write per call when it fits). */
int conn_flush(struct conn *c, struct err *err);
/* Bytes received but not yet returned by conn_read_line. */
size_t conn_pending(const struct conn *c);
void conn_close(struct conn *c);

#endif
