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
#include "relay.h"
#include "smtp.h"
#include "tls.h"

#define SECRET_MAX 8192
#define COMMAND_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define COMMAND_ARGS_MAX 32

struct relay {
	const struct config *cfg;
	struct tls_client **tls;        /* per smarthost, made on first use */
	struct smtp_session *session;   /* open session, or NULL */
	const struct smarthost *used;   /* the smarthost of that session */
	int nth;                        /* session nth (0: first) of its run */
	int all_down;                   /* every smarthost failed in this run */
	char down_reason[1024];
};

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

/* One transaction for the recipients listed in idx; refills idx with the
 * ones to retry at once. Returns -1 if the session died. */
static int
relay_transaction(struct relay *r, struct qentry *e, int datafd, size_t *idx,
    size_t *n)
{
	struct envelope *env = &e->env;
	const char **rcpts = xcalloc(*n, sizeof(*rcpts));
	const char **orcpt = xcalloc(*n, sizeof(*orcpt));
	unsigned *notify = xcalloc(*n, sizeof(*notify));
	struct smtp_reply *rep = xcalloc(*n, sizeof(*rep));
	struct smtp_msg m = {
		.sender = env->sender, .eightbit = env->eightbit,
		.smtputf8 = env->smtputf8, .envid = env->envid,
		.ret = env->ret == RET_FULL ? "FULL" : env->ret == RET_HDRS ? "HDRS" : NULL,
		.nrcpts = *n, .rcpts = rcpts, .notify = notify, .orcpt = orcpt,
		.datafd = datafd, .size = env->size,
	};
	struct err err;
	size_t retry = 0;
	int accepted = 0, rc;

	for (size_t i = 0; i < *n; i++) {
		rcpts[i] = env->rcpts[idx[i]].addr;
		orcpt[i] = env->rcpts[idx[i]].orcpt;
		notify[i] = env->rcpts[idx[i]].notify;
	}
	err.msg[0] = '\0';
	if (lseek(datafd, 0, SEEK_SET) < 0) {
		err_sys(&err, ERR_IO, "seek in data file");
		rc = -1;
	} else {
		rc = smtp_send(r->session, &m, rep, &err);
	}
	for (size_t i = 0; i < *n; i++)
		accepted |= rep[i].code >= 200 && rep[i].code < 300;
	for (size_t i = 0; i < *n; i++)
		if (apply_reply(r, e, &env->rcpts[idx[i]], &rep[i], accepted, err.msg))
			idx[retry++] = idx[i];
	if (rc < 0) {
		set_str(&env->last_error, err.msg);
		smtp_close(r->session);
		r->session = NULL;
		retry = 0;
	}
	*n = retry;
	free(rcpts);
	free(orcpt);
	free(notify);
	free(rep);
	return rc;
}

int
relay_deliver(struct relay *r, struct queue *q, struct qentry *e, struct err *err)
{
	struct envelope *env = &e->env;
	size_t *idx, n = 0;
	int datafd;

	if ((datafd = queue_open_data(q, e->id, err)) < 0)
		return -1;
	env->last_attempt = time(NULL);
	idx = xcalloc(env->nrcpts, sizeof(*idx));
	for (size_t i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].status == RCPT_PENDING)
			idx[n++] = i;
	if (n > 0 && r->session == NULL && !r->all_down)
		relay_open(r);
	if (r->session == NULL) {
		for (size_t i = 0; i < n; i++) {
			struct rcpt *rc = &env->rcpts[idx[i]];

			set_str(&rc->dsn, "4.4.1");
			set_str(&rc->error, r->down_reason);
			log_outcome(r, e, rc, "deferred", r->down_reason);
		}
		set_str(&env->last_error, r->down_reason);
		n = 0;
	}
	/* 452 "too many recipients": the rest go in another transaction. */
	for (size_t round = 0; n > 0 && round < env->nrcpts; round++)
		if (relay_transaction(r, e, datafd, idx, &n) < 0)
			break;
	for (size_t i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].status == RCPT_PENDING && env->rcpts[i].error) {
			set_str(&env->last_error, env->rcpts[i].error);
			break;
		}
	free(idx);
	close(datafd);
	return 0;
}
