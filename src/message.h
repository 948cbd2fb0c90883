/*
 * message.h - read a message from the caller in one pass, fix up its header
 * and write it to the queue in wire form (CRLF line ends, dot-stuffed, so
 * delivery copies bytes without rescanning them).
 */
#ifndef RELAYQ_MESSAGE_H
#define RELAYQ_MESSAGE_H

#include <sys/types.h>
#include <time.h>
#include "util.h"

#define MSG_LINE_MAX 998           /* RFC 5322 line limit, without CRLF */
#define MSG_INPUT_SIZE (64 * 1024) /* read buffer of a struct msg_input */

/*
 * A buffered input source. message_read_input() consumes only up to the
 * end of the message (the "." line) and leaves what follows in buf, so
 * the -bs server can read pipelined commands from the same buffer.
 */
struct msg_input {
	int fd;
	char *buf;                 /* MSG_INPUT_SIZE bytes */
	size_t pos, len;           /* unread bytes are buf[pos..len) */
	int eof;                   /* read(2) returned 0 */
	int failed;                /* a read failed or timed out: nothing more */
	long timeout;              /* seconds to wait for input; 0 = forever */
};

void msg_input_init(struct msg_input *in, int fd);
void msg_input_free(struct msg_input *in);
/*
 * Make unread bytes available: 1 when there are some, 0 at end of input,
 * -1 on a read error (ERR_IO) or when timeout seconds pass (ERR_TEMP);
 * then failed is set and every later call fails too. Reads only when the
 * buffer is empty.
 */
int msg_input_fill(struct msg_input *in, struct err *err);

struct msg_opts {
	int dot_ends;              /* no -i: a line "." ends input, ".." -> "." */
	int extract_rcpts;         /* -t: collect To/Cc/Bcc (or Resent-*) */
	int no_fixups;             /* -G: add no header, rewrite nothing */
	const char *qid;           /* queue id, for Received and Message-ID */
	const char *hostname;      /* for Received and Message-ID */
	const char *domain;        /* qualifies bare local names in headers */
	const char *sender;        /* envelope sender (qualified, "" = null) */
	const char *full_name;     /* -F or the caller's gecos; may be NULL */
	uid_t uid;                 /* caller, for the Received line */
	time_t now;
	unsigned long long max_size;   /* 0 = no limit (wire-form bytes) */
	size_t max_header_size;        /* whole header section, bytes (0 = default) */
	size_t max_headers;            /* number of header fields (0 = default) */
	/*
	 * SMTP DATA (-bs): the "." line must come; input ending before it
	 * is ERR_PROTO. After a content error (size, header limits, a write
	 * failure) the rest of the message is still read, up to the ".".
	 */
	int require_end;
	/*
	 * With dot_ends: the "." end and ".." unstuffing count only on
	 * lines that follow a CRLF and (for the end) are ended by one, so
	 * a bare LF or CR in the data can never end the message early
	 * (SMTP smuggling). A bare LF or CR still ends a content line.
	 */
	int crlf_dots;
	/*
	 * Unless no_fixups: called with each From: value (unfolded) before
	 * bare names are qualified; returns 1 with the new value appended
	 * to out, 0 to keep the value (sender_rewrite).
	 */
	int (*from_rewrite)(const char *value, struct buf *out, const void *arg);
	const void *from_rewrite_arg;
};

struct msg_info {
	struct strlist rcpts;      /* -t: addr-specs from the header, as written
	                              (header order; not qualified, not deduplicated) */
	char *from_addr;           /* first addr-spec of From: as written, or NULL */
	unsigned long long size;   /* bytes written to outfd */
	int eightbit;              /* some byte >= 0x80 in header or body */
	int had_message_id, had_date, had_from;
	int ended;                 /* the "." end line was read */
	int too_big;               /* failed: over max_size */
};

/* Defaults for the limits (callers may override). */
void msg_opts_init(struct msg_opts *o);

/*
 * Read the message from infd to EOF (or to the "." line when dot_ends) and
 * write the fixed-up wire form to outfd:
 *  - LF or CRLF accepted; a bare CR becomes a line end; NUL bytes are
 *    dropped; a missing final newline is added;
 *  - a leading mbox "From " line is dropped;
 *  - Bcc, Resent-Bcc, Return-Path and Content-Length are removed;
 *  - unless no_fixups: one Received line is prepended; Date, Message-ID and
 *    From are added when missing; bare local names in address headers
 *    (From, To, Cc, Reply-To, Sender and Resent-*) are qualified;
 *  - header lines over 998 octets are folded at white space (or split);
 *    body lines over 998 octets are split, never sent broken;
 *  - every line starting with "." gets one more (wire form).
 * The header fields are always followed by one empty line (a message with
 * no header gets just that line). info is reset on entry; on failure its
 * contents are freed and outfd holds partial output to be discarded.
 * ERR_DATA for a message over max_size (info->too_big is set), a header
 * over its limits or (-t) an address header that does not parse; ERR_IO when reading fails, ERR_TEMP
 * when writing fails (errno text included).
 */
int message_read(int infd, int outfd, const struct msg_opts *o,
                 struct msg_info *info, struct err *err);
/* The same from a buffered source; bytes after the "." line stay in it. */
int message_read_input(struct msg_input *in, int outfd,
                       const struct msg_opts *o, struct msg_info *info,
                       struct err *err);
/*
 * Read and throw away a message up to its "." line (o->dot_ends and
 * o->crlf_dots apply): for a DATA that cannot be stored. 0 when the end
 * was seen, -1 when input ended first or failed.
 */
int message_skip(struct msg_input *in, const struct msg_opts *o,
                 struct err *err);
void msg_info_free(struct msg_info *info);

/* RFC 5322 date for t in local time: "Sun, 29 Nov 2026 02:51:10 +0000". */
void rfc5322_date(time_t t, char *out, size_t size);

#endif
