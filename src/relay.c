/*
 * relay.c - delivery policy. Smarthosts are tried in config order; the
 * first that connects, secures and authenticates carries every message of
 * the run over one session. Each recipient's reply becomes queue state:
 * 2xx sent, 5xx failed (to be bounced), anything else pending with the
 * reason, which mailq shows.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "relay.h"
#include "smtp.h"
#include "tls.h"

#define SECRET_MAX 8192
#define COMMAND_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define COMMAND_ARGS_MAX 32

/*
 * An entry under way: its recipients in the current transaction and the
 * session that transaction went out on. A queue run has at most two: the
 * one whose "." awaits its reply, and the next.
 */
struct delivery {
	struct qentry *e;           /* NULL: free */
	int datafd;
	size_t *idx, n;             /* env->rcpts[idx[i]] are in the transaction */
	const char **rcpts, **orcpt;
	unsigned *notify;
	struct smtp_reply *rep;     /* their replies; code 0: none came */
	struct smtp_msg m;
	unsigned long session;      /* r->serial of the session it went out on */
	int applied;                /* replies already turned into queue state */
	char why[1024];             /* why the session ended under it */
};

struct relay {
	const struct config *cfg;
	struct tls_client **tls;        /* per smarthost, made on first use */
	struct smtp_session *session;   /* open session, or NULL */
	const struct smarthost *used;   /* the smarthost of that session */
	int nth;                        /* session nth (0: first) of its run */
	int all_down;                   /* every smarthost failed in this run */
	unsigned long serial;           /* counts the sessions that ended */
	struct delivery slot[2];
	char down_reason[1024];
};

static void
delivery_free(struct delivery *d)
{
	close(d->datafd);
	free(d->idx);
	free(d->rcpts);
	free(d->orcpt);
	free(d->notify);
	free(d->rep);
	memset(d, 0, sizeof(*d));
}

struct relay *
relay_new(const struct config *cfg)
{
	struct relay *r = xcalloc(1, sizeof(*r));

	r->cfg = cfg;
	r->tls = xcalloc(cfg->nsmarthosts ? cfg->nsmarthosts : 1, sizeof(*r->tls));
	return r;
}

void
relay_free(struct relay *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < 2; i++)
		if (r->slot[i].e != NULL)
			delivery_free(&r->slot[i]);
	if (r->session)
		smtp_close(r->session);
	for (size_t i = 0; i < r->cfg->nsmarthosts; i++)
		tls_client_free(r->tls[i]);
	free(r->tls);
	free(r);
}

/* Strip the line end and keep only the first line. */
static void
first_line(struct buf *b)
{
	size_t n = strcspn(b->data ? b->data : "", "\r\n");

	if (b->data) {
		secure_zero(b->data + n, b->len - n);
		b->len = n;
	}
}

/* In the password_command child: only 0-2 go to the command. */
static void
close_above_stderr(void)
{
	long maxfd;

#ifdef SYS_close_range
	if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
		return;
#endif
	maxfd = sysconf(_SC_OPEN_MAX);
	if (maxfd < 0 || maxfd > 65536)
		maxfd = 65536;
	for (long fd = 3; fd < maxfd; fd++)
		close((int)fd);
}

/*
 * Run password_command without a shell; its first output line is the
 * secret. It may run for whoever submitted the message (a background
 * delivery): it gets only a fixed PATH, "/" as its directory and no
 * descriptor but the pipe, /dev/null and stderr.
 */
static int
secret_from_command(const char *command, struct buf *out, struct err *err)
{
	char *copy = xstrdup(command), *argv[COMMAND_ARGS_MAX + 1], *save = NULL;
	int argc = 0, fds[2], status, rc = -1;
	pid_t pid;

	for (char *w = strtok_r(copy, " \t", &save); w != NULL;
	    w = strtok_r(NULL, " \t", &save)) {
		if (argc == COMMAND_ARGS_MAX) {
			free(copy);
			return err_set(err, ERR_CONFIG, "password_command: too many arguments");
		}
		argv[argc++] = w;
	}
	argv[argc] = NULL;
	if (argc == 0 || pipe2(fds, O_CLOEXEC) < 0) {
		free(copy);
		return err_set(err, ERR_CONFIG, "password_command: cannot run \"%s\"", command);
	}
	if ((pid = fork()) < 0) {
		err_sys(err, ERR_TEMP, "password_command: fork");
		close(fds[0]);
		close(fds[1]);
		free(copy);
		return -1;
	}
	if (pid == 0) {
		/* Nothing of whoever triggered the delivery: environment, cwd, fds. */
		static char *const envp[] = { "PATH=" COMMAND_PATH, NULL };
		int devnull = open("/dev/null", O_RDONLY);

		if (devnull >= 0)
			dup2(devnull, STDIN_FILENO);
		dup2(fds[1], STDOUT_FILENO);
		close_above_stderr();
		signal(SIGPIPE, SIG_DFL);
		if (chdir("/") == 0)
			execvpe(argv[0], argv, envp);
		_exit(127);
	}
	close(fds[1]);
	if (read_file_capped(fds[0], out, SECRET_MAX) < 0)
		err_sys(err, ERR_TEMP, "password_command: reading its output");
	else
		rc = 0;
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (rc == 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
		rc = err_set(err, ERR_TEMP, "password_command \"%s\" failed (status %d)",
		    argv[0], WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	free(copy);
	return rc;
}

int
relay_secret(const struct smarthost *sh, struct buf *out, struct err *err)
{
	buf_init(out, SECRET_MAX);
	if (sh->password != NULL) {
		if (buf_puts(out, sh->password) < 0)
			return err_set(err, ERR_CONFIG, "password too long");
	} else if (sh->password_file != NULL) {
		int fd = open(sh->password_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		int rc = fd < 0 ? -1 : read_file_capped(fd, out, SECRET_MAX);

		if (fd >= 0)
			close(fd);
		if (rc < 0) {
			buf_wipe_free(out);
			return err_sys(err, ERR_TEMP, "cannot read password_file %s",
			    sh->password_file);
		}
	} else if (sh->password_command != NULL) {
		if (secret_from_command(sh->password_command, out, err) < 0) {
			buf_wipe_free(out);
			return -1;
		}
	} else {
		return 0;
	}
	first_line(out);
	if (out->len == 0) {
		buf_wipe_free(out);
		return err_set(err, ERR_TEMP, "smarthost %s: empty password", sh->name);
	}
	return 0;
}

/* Open a session to the first smarthost that takes us; remember why not. */
static int
relay_open(struct relay *r)
{
	struct err err;

	r->down_reason[0] = '\0';
	for (size_t i = 0; i < r->cfg->nsmarthosts; i++) {
		const struct smarthost *sh = &r->cfg->smarthosts[i];
		struct smtp_params p = { .sh = sh, .helo_name = r->cfg->hostname,
		    .max_reply_lines = (int)r->cfg->max_reply_lines,
		    .max_reply_line = (int)r->cfg->max_reply_line };
		struct buf secret;
		int rc;

		if (r->nth > 0 && r->nth >= sh->sessions)
			continue;       /* the run has all the sessions it allows */
		/* Connected first: the TLS context (1-2 ms of OpenSSL, 20
		 * with a CA bundle) and the secret are made while the server
		 * prepares its greeting. */
		if ((p.conn = smtp_connect(sh, &err)) == NULL)
			goto failed;
		if (sh->tls != TLS_NONE && r->tls[i] == NULL) {
			if ((r->tls[i] = tls_client_new(sh, &err)) == NULL)
				goto failed;
			if (sh->tls_session_cache)
				tls_client_cache(r->tls[i], r->cfg->queue_dir,
				    sh->name);
		}
		p.tls = r->tls[i];
		buf_init(&secret, SECRET_MAX);
		if (sh->username != NULL && relay_secret(sh, &secret, &err) < 0)
			goto failed;
		p.secret = secret.data;
		rc = smtp_open(&p, &r->session, &err);
		p.conn = NULL;
		if (rc < 0 && p.tls != NULL && tls_client_retry(p.tls)) {
			/* The cached TLS session is forgotten: a full handshake. */
			log_info("smarthost %s (%s): %s; trying again without "
			    "the cached TLS session", sh->name, sh->host, err.msg);
			rc = smtp_open(&p, &r->session, &err);
		}
		buf_wipe_free(&secret);
		if (rc == 0) {
			r->used = sh;
			return 0;
		}
failed:
		conn_close(p.conn);
		r->session = NULL;
		log_warn("smarthost %s (%s): %s", sh->name, sh->host, err.msg);
		str_copy(r->down_reason, err.msg, sizeof(r->down_reason));
	}
	if (r->cfg->nsmarthosts == 0)
		str_copy(r->down_reason, "no smarthost configured", sizeof(r->down_reason));
	else if (r->down_reason[0] == '\0')
		str_copy(r->down_reason, "no smarthost allows another session",
		    sizeof(r->down_reason));
	r->all_down = 1;
	return -1;
}

void
relay_set_nth(struct relay *r, int nth)
{
	r->nth = nth;
}

int
relay_connect(struct relay *r)
{
	if (r->session != NULL)
		return 0;
	if (r->all_down)
		return -1;
	return relay_open(r);
}

const struct smarthost *
relay_smarthost(const struct relay *r)
{
	return r->session != NULL ? r->used : NULL;
}

int
relay_down(const struct relay *r)
{
	return r->all_down;
}

static void
set_str(char **dst, const char *src)
{
	free(*dst);
	*dst = src ? xstrdup(src) : NULL;
}

static const char *
dsn_of(const struct smtp_reply *rep, const char *fallback)
{
	return rep->enh[0] ? rep->enh : fallback;
}

static void
log_outcome(const struct relay *r, const struct qentry *e, const struct rcpt *rc,
    const char *status, const char *text)
{
	log_info("%s: to=<%s>, relay=%s, delay=%ld, tries=%d, dsn=%s, status=%s (%s)",
	    e->id, rc->addr, r->session ? smtp_peer(r->session) : "none",
	    (long)(time(NULL) - e->env.created), e->env.attempts + 1,
	    rc->dsn ? rc->dsn : "4.0.0", status, text);
}

/* Apply one recipient's reply. Returns 1 if it should be retried at once
 * in a new transaction (452 too many recipients). */
static int
apply_reply(const struct relay *r, struct qentry *e, struct rcpt *rc,
    const struct smtp_reply *rep, int some_accepted, const char *why)
{
	if (rep->code >= 200 && rep->code < 300) {
		rc->status = RCPT_SENT;
		set_str(&rc->dsn, dsn_of(rep, "2.0.0"));
		set_str(&rc->error, NULL);
		log_outcome(r, e, rc, "sent", rep->text);
		return 0;
	}
	if (rep->code == 452 && some_accepted)
		return 1;
	if (rep->code >= 500 && rep->code < 600) {
		rc->status = RCPT_FAILED;
		set_str(&rc->dsn, dsn_of(rep, "5.0.0"));
		set_str(&rc->error, rep->text);
		log_outcome(r, e, rc, "bounced", rep->text);
		return 0;
	}
	set_str(&rc->dsn, rep->code ? dsn_of(rep, "4.0.0") : "4.4.2");
	set_str(&rc->error, rep->code ? rep->text : why);
	log_outcome(r, e, rc, "deferred", rc->error);
	return 0;
}

/* Rebuild the message for the recipients in d->idx[0 .. d->n - 1]. */
static void
msg_fill(struct delivery *d)
{
	const struct envelope *env = &d->e->env;

	for (size_t i = 0; i < d->n; i++) {
		d->rcpts[i] = env->rcpts[d->idx[i]].addr;
		d->orcpt[i] = env->rcpts[d->idx[i]].orcpt;
		d->notify[i] = env->rcpts[d->idx[i]].notify;
		memset(&d->rep[i], 0, sizeof(d->rep[i]));
	}
	d->m = (struct smtp_msg){
		.sender = env->sender, .eightbit = env->eightbit,
		.smtputf8 = env->smtputf8, .envid = env->envid,
		.ret = env->ret == RET_FULL ? "FULL" :
		    env->ret == RET_HDRS ? "HDRS" : NULL,
		.nrcpts = d->n, .rcpts = d->rcpts, .notify = d->notify,
		.orcpt = d->orcpt, .datafd = d->datafd, .size = env->size,
	};
}

/* The session failed (err says how, for d): the next delivery opens
 * another. */
static void
drop_session(struct relay *r, struct delivery *d, const struct err *err)
{
	if (d != NULL && d->why[0] == '\0')
		str_copy(d->why, err->msg, sizeof(d->why));
	smtp_close(r->session);
	r->session = NULL;
	r->serial++;
}

/* No session to be had: every recipient waits with the reason. */
static void
defer_all(struct relay *r, struct delivery *d)
{
	for (size_t i = 0; i < d->n; i++) {
		struct rcpt *rc = &d->e->env.rcpts[d->idx[i]];

		set_str(&rc->dsn, "4.4.1");
		set_str(&rc->error, r->down_reason);
		log_outcome(r, d->e, rc, "deferred", r->down_reason);
	}
	set_str(&d->e->env.last_error, r->down_reason);
	d->n = 0;
}

/* Send d's commands on the session, opening one first if need be. An
 * error is d's to report later; relay_send starts it over once. */
static void
begin(struct relay *r, struct delivery *d)
{
	struct err err;

	if (r->session == NULL && !r->all_down)
		relay_open(r);
	if (r->session == NULL) {
		defer_all(r, d);
		return;
	}
	msg_fill(d);
	d->session = r->serial;
	d->why[0] = '\0';
	if (smtp_start(r->session, &d->m, d->rep, &err) < 0)
		str_copy(d->why, err.msg, sizeof(d->why));
}

/* Turn the replies into queue state; the number to try again at once
 * (452 "too many recipients" beside accepted ones) go first in idx. */
static size_t
apply_all(struct relay *r, struct delivery *d)
{
	struct envelope *env = &d->e->env;
	size_t retry = 0;
	int accepted = 0;

	for (size_t i = 0; i < d->n; i++)
		accepted |= d->rep[i].code >= 200 && d->rep[i].code < 300;
	for (size_t i = 0; i < d->n; i++)
		if (apply_reply(r, d->e, &env->rcpts[d->idx[i]], &d->rep[i],
		    accepted, d->why))
			d->idx[retry++] = d->idx[i];
	if (d->why[0] != '\0') {
		set_str(&env->last_error, d->why);
		retry = 0;          /* the session died: the next run does them */
	}
	return retry;
}

static struct delivery *
delivery_of(struct relay *r, const struct qentry *e)
{
	for (size_t i = 0; i < 2; i++)
		if (r->slot[i].e == e)
			return &r->slot[i];
	return NULL;
}

int
relay_start(struct relay *r, struct queue *q, struct qentry *e,
    struct err *err)
{
	struct envelope *env = &e->env;
	struct delivery *d = delivery_of(r, NULL);
	size_t n = env->nrcpts ? env->nrcpts : 1;

	if (d == NULL)
		return err_set(err, ERR_INTERNAL, "%s: two deliveries already "
		    "under way", e->id);
	if ((d->datafd = queue_open_data(q, e->id, err)) < 0)
		return -1;
	d->e = e;
	d->idx = xcalloc(n, sizeof(*d->idx));
	d->rcpts = xcalloc(n, sizeof(*d->rcpts));
	d->orcpt = xcalloc(n, sizeof(*d->orcpt));
	d->notify = xcalloc(n, sizeof(*d->notify));
	d->rep = xcalloc(n, sizeof(*d->rep));
	d->n = 0;
	d->applied = 0;
	d->why[0] = '\0';
	env->last_attempt = time(NULL);
	for (size_t i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].status == RCPT_PENDING)
			d->idx[d->n++] = i;
	if (d->n > 0)
		begin(r, d);
	return 0;
}

void
relay_send(struct relay *r, struct qentry *e)
{
	struct delivery *d = delivery_of(r, e);
	struct err err;
	size_t retry;
	int some_452 = 0;

	if (d == NULL || d->n == 0)
		return;
	/* Its commands went out on a session that has ended (or broke)
	 * before any of their replies was read: nothing of this message
	 * reached the server's queue, so it starts over on a new one. */
	if (d->session != r->serial || !smtp_usable(r->session)) {
		if (r->session != NULL && d->session == r->serial)
			drop_session(r, NULL, NULL);
		begin(r, d);
		if (d->n == 0)
			return;
	}
	if (smtp_data(r->session, &err) < 0) {
		drop_session(r, d, &err);
		return;
	}
	for (size_t i = 0; i < d->n; i++)
		some_452 |= d->rep[i].code == 452;
	if (!some_452)
		return;         /* relay_finish reads the reply to "." */
	/* 452 "too many recipients": the rest go in further transactions,
	 * one at a time, before anything else is started. */
	if (smtp_end(r->session, &err) < 0)
		drop_session(r, d, &err);
	for (size_t round = 0; (retry = apply_all(r, d)) > 0 &&
	    round < e->env.nrcpts && r->session != NULL; round++) {
		d->n = retry;
		msg_fill(d);
		if (smtp_send(r->session, &d->m, d->rep, &err) < 0)
			drop_session(r, d, &err);
	}
	d->applied = 1;
}

void
relay_finish(struct relay *r, struct qentry *e)
{
	struct delivery *d = delivery_of(r, e);
	struct envelope *env = &e->env;
	struct err err;

	if (d == NULL)
		return;
	if (d->n > 0 && !d->applied) {
		if (r->session != NULL && d->session == r->serial &&
		    smtp_end(r->session, &err) < 0)
			drop_session(r, d, &err);
		(void)apply_all(r, d);
	}
	for (size_t i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].status == RCPT_PENDING && env->rcpts[i].error) {
			set_str(&env->last_error, env->rcpts[i].error);
			break;
		}
	delivery_free(d);
}
