/*
 * bounce.c - RFC 3464 delivery status notifications. The report is written
 * straight into a queue transaction in wire form; the original message is
 * copied from its data file, which is already CRLF and dot-stuffed, so it
 * streams through in constant memory. The transaction is only prepared
 * here: the runner commits it once the original's envelope names it.
 */
#include "autoconf.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bounce.h"
#include "log.h"
#include "message.h"

#define COPY_CHUNK 65536

/* Buffered writer of CRLF lines into the transaction's data file. */
struct out {
	int fd;
	struct buf b;
	unsigned long long total;
	int failed;
};

static void
out_flush(struct out *o)
{
	if (!o->failed && o->b.len > 0 && write_all(o->fd, o->b.data, o->b.len) < 0)
		o->failed = errno ? errno : EIO;
	o->total += o->b.len;
	buf_reset(&o->b);
}

static void
out_raw(struct out *o, const void *p, size_t n)
{
	if (o->b.len + n > COPY_CHUNK)
		out_flush(o);
	if (n > COPY_CHUNK) {
		if (!o->failed && write_all(o->fd, p, n) < 0)
			o->failed = errno ? errno : EIO;
		o->total += n;
		return;
	}
	buf_append(&o->b, p, n);
}

/* One line of our own text: CRLF added, dot-stuffed. */
static void PRINTF_LIKE(2, 3)
out_line(struct out *o, const char *fmt, ...)
{
	char line[MSG_LINE_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (line[0] == '.')
		out_raw(o, ".", 1);
	out_raw(o, line, strlen(line));
	out_raw(o, "\r\n", 2);
}

/*
 * Copy the original (wire form). With headers_only, stop after the empty
 * line that ends the header: "\r\n\r\n", or "\r\n" at the very start.
 */
static int
copy_original(struct out *o, int datafd, int headers_only, struct err *err)
{
	static const char blank[] = "\r\n\r\n";
	char chunk[COPY_CHUNK];
	size_t match = 2;       /* the start of the file counts as a line start */

	if (lseek(datafd, 0, SEEK_SET) < 0)
		return err_sys(err, ERR_IO, "seek in the original message");
	for (;;) {
		ssize_t n = read(datafd, chunk, sizeof(chunk));
		size_t keep = (size_t)n;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_sys(err, ERR_IO, "reading the original message");
		if (n == 0)
			return 0;
		for (size_t i = 0; headers_only && i < (size_t)n; i++) {
			if (chunk[i] == blank[match])
				match++;
			else
				match = chunk[i] == '\r' ? 1 : 0;
			if (match == 4) {
				keep = i + 1;
				break;
			}
		}
		out_raw(o, chunk, keep);
		if (match == 4)
			return 0;
	}
}

static int
wants_report(const struct rcpt *rc)
{
	if (rc->status != RCPT_FAILED)
		return 0;
	if (rc->notify == 0)
		return 1;
	return (rc->notify & NOTIFY_FAILURE) && !(rc->notify & NOTIFY_NEVER);
}

static void
write_report(struct out *o, const struct config *cfg, const struct envelope *orig,
    const unsigned char *report, const char *boundary, const char *qid)
{
	char date[64], arrival[64];

	rfc5322_date(time(NULL), date, sizeof(date));
	rfc5322_date(orig->created, arrival, sizeof(arrival));
	out_line(o, "From: MAILER-DAEMON@%s (Mail Delivery System)", cfg->hostname);
	out_line(o, "To: <%s>", orig->sender);
	out_line(o, "Subject: Undelivered Mail Returned to Sender");
	out_line(o, "Date: %s", date);
	out_line(o, "Message-ID: <%s.bounce@%s>", qid, cfg->hostname);
	out_line(o, "Auto-Submitted: auto-replied");
	out_line(o, "MIME-Version: 1.0");
	out_line(o, "Content-Type: multipart/report; report-type=delivery-status;");
	out_line(o, "\tboundary=\"%s\"", boundary);
	out_line(o, "%s", "");
	out_line(o, "This is a MIME-encapsulated message.");
	out_line(o, "%s", "");
	out_line(o, "--%s", boundary);
	out_line(o, "Content-Description: Notification");
	out_line(o, "Content-Type: text/plain; charset=us-ascii");
	out_line(o, "%s", "");
	out_line(o, "This is the mail system at host %s.", cfg->hostname);
	out_line(o, "%s", "");
	out_line(o, "Your message (queue id %s) could not be delivered to one or more", orig->id);
	out_line(o, "recipients. It is attached below.");
	out_line(o, "%s", "");
	for (size_t i = 0; i < orig->nrcpts; i++)
		if (report[i] && wants_report(&orig->rcpts[i]))
			out_line(o, "<%s>: %.900s", orig->rcpts[i].addr,
			    orig->rcpts[i].error ? orig->rcpts[i].error : "delivery failed");
	out_line(o, "%s", "");
	out_line(o, "--%s", boundary);
	out_line(o, "Content-Description: Delivery report");
	out_line(o, "Content-Type: message/delivery-status");
	out_line(o, "%s", "");
	out_line(o, "Reporting-MTA: dns; %s", cfg->hostname);
	out_line(o, "X-Relayq-Queue-ID: %s", orig->id);
	if (orig->envid)
		out_line(o, "Original-Envelope-Id: %s", orig->envid);
	out_line(o, "Arrival-Date: %s", arrival);
	for (size_t i = 0; i < orig->nrcpts; i++) {
		const struct rcpt *rc = &orig->rcpts[i];

		if (!report[i] || !wants_report(rc))
			continue;
		out_line(o, "%s", "");
		out_line(o, "Final-Recipient: rfc822; %s", rc->addr);
		if (rc->orcpt)
			out_line(o, "Original-Recipient: rfc822; %s", rc->orcpt);
		out_line(o, "Action: failed");
		out_line(o, "Status: %s", rc->dsn ? rc->dsn : "5.0.0");
		out_line(o, "Diagnostic-Code: smtp; %.900s",
		    rc->error ? rc->error : "delivery failed");
	}
	out_line(o, "%s", "");
	out_line(o, "--%s", boundary);
	if (orig->ret == RET_HDRS) {
		out_line(o, "Content-Description: Undelivered Message Headers");
		out_line(o, "Content-Type: text/rfc822-headers");
	} else {
		out_line(o, "Content-Description: Undelivered Message");
		out_line(o, "Content-Type: message/rfc822");
	}
	out_line(o, "%s", "");
}

int
bounce_prepare(const struct config *cfg, struct queue *q,
    const struct envelope *orig, const unsigned char *report, int datafd,
    struct queue_tx *tx, struct err *err)
{
	struct envelope env;
	struct out o = { .fd = -1 };
	char boundary[64];
	size_t wanted = 0;
	int rc = -1;

	for (size_t i = 0; i < orig->nrcpts; i++)
		wanted += report[i] && wants_report(&orig->rcpts[i]);
	if (wanted == 0)
		return 0;
	if (orig->sender[0] == '\0') {
		log_info("%s: bounce not sent: the sender is the null sender", orig->id);
		return 0;
	}
	if (queue_tx_begin(q, tx, err) < 0)
		return -1;
	o.fd = tx->datafd;
	buf_init(&o.b, COPY_CHUNK);
	str_fmt(boundary, sizeof(boundary), "%s/%s", tx->id, cfg->hostname);
	write_report(&o, cfg, orig, report, boundary, tx->id);
	if (copy_original(&o, datafd, orig->ret == RET_HDRS, err) < 0)
		goto out;
	out_line(&o, "%s", "");
	out_line(&o, "--%s--", boundary);
	out_flush(&o);
	if (o.failed) {
		errno = o.failed;
		err_sys(err, ERR_TEMP, "cannot write bounce");
		goto out;
	}
	envelope_init(&env);
	env.sender = xstrdup("");
	env.eightbit = orig->eightbit;
	env.smtputf8 = orig->smtputf8;
	env.created = time(NULL);
	envelope_add_rcpt(&env, orig->sender, NULL, 0);
	rc = queue_tx_prepare(tx, &env, orig->id, err);
	envelope_free(&env);
out:
	buf_free(&o.b);
	if (rc < 0) {
		queue_tx_abort(tx);
		return -1;
	}
	return 1;
}
