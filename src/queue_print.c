/*
 * queue_print.c - the queue shown to people: the Postfix-style mailq
 * listing and --show's view of one entry (its envelope, then the message
 * header). What is printed came from outside, so it is escaped.
 */
#include "autoconf.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue_int.h"
#include "log.h"

/* ---- mailq ------------------------------------------------------------ */

/*
 * Postfix postqueue -p layout: its header and 41-column recipient indent,
 * which scripts and eyes know; the longer id just widens the entry line.
 * After the id comes a status char: ' ', '*' being delivered, '!' on
 * hold (as Postfix marks its hold queue).
 */
#define LIST_HEADER    "-Queue ID-  --Size-- ----Arrival Time---- " \
	"-Sender/Recipient-------"
#define LIST_INDENT    41

static void
list_entry(FILE *out, const char *id, const struct envelope *env, int busy)
{
	char when[64] = "??", *esc;
	struct tm tm;
	time_t t = env->created;
	size_t escsize = 4 * ENV_LINE_MAX + 1;
	int pad;

	if (localtime_r(&t, &tm) != NULL)
		strftime(when, sizeof(when), "%a %b %e %H:%M:%S", &tm);
	esc = xmalloc(escsize);
	if (env->sender == NULL || env->sender[0] == '\0')
		str_copy(esc, "MAILER-DAEMON", escsize);
	else
		escape_str(env->sender, esc, escsize);
	fprintf(out, "%s%c %8llu %-20s %s\n", id,
	    env->held ? '!' : busy ? '*' : ' ', env->size, when, esc);
	if (env->last_error != NULL && env->last_error[0] != '\0') {
		escape_str(env->last_error, esc, escsize);
		/* Postfix right-aligns the reason in 78 columns. */
		pad = 76 - (int)strlen(esc);
		fprintf(out, "%*s(%s)\n", pad > 0 ? pad : 0, "", esc);
	}
	for (size_t i = 0; i < env->nrcpts; i++) {
		if (env->rcpts[i].status != RCPT_PENDING)
			continue;
		escape_str(env->rcpts[i].addr, esc, escsize);
		fprintf(out, "%*s%s\n", LIST_INDENT, "", esc);
	}
	free(esc);
}

int
queue_list(struct queue *q, FILE *out, struct err *err)
{
	struct strlist ids = { 0 };
	unsigned long long total = 0;
	unsigned long count = 0;
	struct envelope env;
	struct err e2;

	if (queue_scan(q, &ids, err) < 0)
		return -1;
	for (size_t i = 0; i < ids.n; i++) {
		int busy = 0, rc = peek_entry(q, ids.v[i], &env, &busy, &e2);

		if (rc < 0) {
			fprintf(stderr, "%s: warning: %s\n", log_progname(),
			    e2.msg);
			continue;
		}
		if (rc == 0)
			continue;       /* delivered meanwhile */
		if (count == 0)
			fprintf(out, "%s\n", LIST_HEADER);
		else
			fputc('\n', out);
		list_entry(out, ids.v[i], &env, busy);
		total += env.size;
		count++;
		envelope_free(&env);
	}
	strlist_free(&ids);
	if (count == 0)
		fprintf(out, "Mail queue is empty\n");
	else
		fprintf(out, "\n-- %llu Kbytes in %lu Request%s.\n",
		    (total + 1023) / 1024, count, count == 1 ? "" : "s");
	if (fflush(out) == EOF || ferror(out))
		return err_sys(err, ERR_IO, "write queue listing");
	return 0;
}

/* ---- --show ----------------------------------------------------------- */

#define SHOW_HEADER_MAX (1024 * 1024)   /* header bytes --show prints */
#define SHOW_LINE_MAX   4096            /* longer lines are cut with "..." */

/*
 * Length of the UTF-8 sequence at p if it is valid and printable on a
 * terminal (no C1 controls, no surrogates, no overlong forms), else 0.
 */
static size_t
utf8_printable(const unsigned char *p, size_t n)
{
	unsigned cp;
	size_t len;

	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4;
		cp = p[0] & 0x07;
	} else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if (cp < 0xa0 || (len == 3 && cp < 0x800) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* Untrusted text for the operator's terminal: printable ASCII, tabs and
 * printable UTF-8 as they are, every other byte as \xNN. */
static void
put_safe(FILE *out, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;

	for (size_t i = 0; i < n;) {
		size_t u;

		if (p[i] == '\\') {
			fputs("\\\\", out);
			i++;
		} else if ((p[i] >= 0x20 && p[i] < 0x7f) || p[i] == '\t') {
			fputc(p[i++], out);
		} else if ((u = utf8_printable(p + i, n - i)) > 0) {
			fwrite(p + i, 1, u, out);
			i += u;
		} else
			fprintf(out, "\\x%02x", p[i++]);
	}
}

static void
show_field(FILE *out, const char *key, const char *val)
{
	fprintf(out, "%s: ", key);
	put_safe(out, val, strlen(val));
	fputc('\n', out);
}

/* "2024-01-02 03:04:05 +0000 (1704164645)", or never_text for 0. */
static void
show_time(FILE *out, const char *key, time_t t, const char *never_text)
{
	char when[64];
	struct tm tm;

	if (t == 0 && never_text != NULL) {
		fprintf(out, "%s: %s\n", key, never_text);
		return;
	}
	if (localtime_r(&t, &tm) == NULL ||
	    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %z", &tm) == 0)
		str_copy(when, "?", sizeof(when));
	fprintf(out, "%s: %s (%lld)\n", key, when, (long long)t);
}

static void
show_rcpt(FILE *out, const struct rcpt *r)
{
	char notify[64];

	show_field(out, "recipient", r->addr);
	fprintf(out, "  status: %s\n", rcpt_status_name(r->status));
	if (r->dsn != NULL)
		fprintf(out, "  dsn: %s\n", r->dsn);
	if (r->error != NULL)
		show_field(out, "  error", r->error);
	if (r->orcpt != NULL)
		show_field(out, "  orcpt", r->orcpt);
	notify_list(r->notify, notify, sizeof(notify));
	if (notify[0])
		fprintf(out, "  notify: %s\n", notify);
}

static void
show_envelope(FILE *out, const struct envelope *env, enum qwhere where,
    int busy)
{
	const char *state = where == QW_FAILED ?
	    "failed (in failed/; --requeue puts it back)" :
	    env->held ? "on hold" : busy ? "being delivered" :
	    env->attempts > 0 ? "deferred" : "queued, not tried yet";

	fprintf(out, "id: %s\nstate: %s\n", env->id, state);
	show_time(out, "arrival", env->created, NULL);
	fprintf(out, "sender: <");
	put_safe(out, env->sender, strlen(env->sender));
	fprintf(out, ">\nsize: %llu\nbody: %s\nsmtputf8: %s\n", env->size,
	    env->eightbit ? "8bitmime" : "7bit", env->smtputf8 ? "yes" : "no");
	if (env->ret != RET_DEFAULT)
		fprintf(out, "ret: %s\n", env->ret == RET_HDRS ? "hdrs" : "full");
	if (env->envid != NULL)
		show_field(out, "envid", env->envid);
	fprintf(out, "attempts: %d\n", env->attempts);
	show_time(out, "last attempt", env->last_attempt, "never");
	if (where == QW_QUEUE)
		show_time(out, "next attempt", env->next_attempt, "now");
	fprintf(out, "held: %s\n", env->held ? "yes" : "no");
	if (env->last_error != NULL)
		show_field(out, "last error", env->last_error);
	for (size_t i = 0; i < env->nrcpts; i++)
		show_rcpt(out, &env->rcpts[i]);
}

/* The message header from a wire-form data file: CRLF and dot-stuffing
 * undone, stopped at the empty line or after SHOW_HEADER_MAX bytes. */
static int
show_header(FILE *out, int fd, struct err *err)
{
	FILE *in = fdopen(fd, "r");
	char *line = xmalloc(SHOW_LINE_MAX);
	size_t n = 0, total = 0;
	int c, cut = 0, ended = 0;

	if (in == NULL) {
		close(fd);
		free(line);
		return err_sys(err, ERR_TEMP, "read message file");
	}
	fputs("\n", out);
	while (!ended && (c = getc(in)) != EOF) {
		if (++total > SHOW_HEADER_MAX) {
			fputs("(header longer than 1 MiB; the rest is not shown)\n",
			    out);
			break;
		}
		if (c != '\n') {
			if (n < SHOW_LINE_MAX)
				line[n++] = (char)c;
			else
				cut = 1;
			continue;
		}
		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (n == 0)
			ended = 1;
		else {
			size_t skip = line[0] == '.';

			put_safe(out, line + skip, n - skip);
			fputs(cut ? "...\n" : "\n", out);
		}
		n = 0;
		cut = 0;
	}
	if (n > 0) {
		put_safe(out, line, n);
		fputc('\n', out);
	}
	c = ferror(in);
	fclose(in);
	free(line);
	if (c)
		return err_sys(err, ERR_TEMP, "read message file");
	return 0;
}

enum qop
queue_show(struct queue *q, const char *id, FILE *out, struct err *err)
{
	char path[QPATH_MAX];
	struct envelope env;
	enum qwhere where;
	enum qop r = QOP_DONE;
	int busy, fd;

	if (queue_find(q, id, &env, &where, &busy, err) < 0)
		return QOP_ERROR;
	if (where == QW_NONE)
		return QOP_MISSING;
	show_envelope(out, &env, where, busy);
	if (where == QW_QUEUE)
		qpath(q, path, sizeof(path), "data/%s", id);
	else
		qpath(q, path, sizeof(path), "failed/%s.data", id);
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		err_sys(err, ERR_TEMP, "open %s", path);
		r = QOP_ERROR;
	} else if (show_header(out, fd, err) < 0)
		r = QOP_ERROR;
	envelope_free(&env);
	if (fflush(out) == EOF || ferror(out)) {
		err_sys(err, ERR_IO, "write");
		return QOP_ERROR;
	}
	return r;
}
