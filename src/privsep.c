/*
 * privsep.c - the front end's privilege separation (see privsep.h for the
 * why). The two processes talk over a socketpair with length-prefixed
 * frames; the only descriptor that ever crosses is the new queue file.
 *
 *   child -> parent   BEGIN                 parent: OK <id> + the file's fd
 *   child -> parent   COMMIT <envelope>     parent: OK <size>  or  ERR
 *   child -> parent   ABORT
 *   any reply may be  ERR <class byte><message>
 */
#include "autoconf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "log.h"
#include "privsep.h"

enum frame_type { FR_BEGIN = 1, FR_COMMIT, FR_ABORT, FR_OK, FR_ERR };

struct frame_head {
	uint32_t type, len;
};

#define FRAME_MAX (ENVELOPE_MAX + 64)

struct spool {
	int brokered;
	/* direct */
	char *dir;
	struct queue q;
	int queue_open;
	struct queue_tx tx;
	int tx_open;
	privsep_commit_fn committed;  /* direct, in process: after a commit */
	void *carg;
	/* brokered */
	int sock;
	int datafd;
	int begin_sent;              /* FR_BEGIN out, its answer not read */
};

/* --- direct access --------------------------------------------------------- */

struct spool *
spool_direct(const char *queue_dir)
{
	struct spool *s = xcalloc(1, sizeof(*s));

	s->dir = xstrdup(queue_dir);
	s->sock = s->datafd = -1;
	return s;
}

void
spool_free(struct spool *s)
{
	if (s == NULL)
		return;
	spool_abort(s);
	if (s->queue_open)
		queue_close(&s->q);
	free(s->dir);
	free(s);
}

static int
direct_begin(struct spool *s, char id[QID_LEN + 1], int *datafd, struct err *err)
{
	if (!s->queue_open) {
		if (queue_open(&s->q, s->dir, 1, err) < 0)
			return -1;
		s->queue_open = 1;
	}
	if (queue_tx_begin(&s->q, &s->tx, err) < 0)
		return -1;
	s->tx_open = 1;
	str_copy(id, s->tx.id, QID_LEN + 1);
	*datafd = s->tx.datafd;
	return 0;
}

static int
direct_commit(struct spool *s, struct envelope *env, struct err *err)
{
	int rc;

	if (!s->tx_open)
		return err_set(err, ERR_INTERNAL, "commit without a queue file");
	rc = queue_tx_commit(&s->tx, env, err);
	queue_tx_abort(&s->tx);         /* closes; removes only if not committed */
	s->tx_open = 0;
	if (rc == 0 && s->committed != NULL)
		s->committed(env->id, s->carg);
	return rc;
}

/* --- frames ---------------------------------------------------------------- */

static int
send_frame(int sock, uint32_t type, const void *p, size_t len, int fd)
{
	struct frame_head h = { type, (uint32_t)len };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)p, len } };
	union { struct cmsghdr c; char space[CMSG_SPACE(sizeof(int))]; } u;
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	size_t total = sizeof(h) + len;
	ssize_t n;

	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		m.msg_control = u.space;
		m.msg_controllen = sizeof(u.space);
		u.c.cmsg_level = SOL_SOCKET;
		u.c.cmsg_type = SCM_RIGHTS;
		u.c.cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(&u.c), &fd, sizeof(int));
	}
	while ((n = sendmsg(sock, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	if (n < 0)
		return -1;
	/* A short send leaves the rest of the payload (never the head). */
	if ((size_t)n < total && (size_t)n >= sizeof(h))
		return write_all(sock, (const char *)p + (n - sizeof(h)),
		    total - (size_t)n);
	return (size_t)n == total ? 0 : -1;
}

static int
read_full(int sock, void *p, size_t len)
{
	char *c = p;

	while (len > 0) {
		ssize_t n = read(sock, c, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		c += n;
		len -= (size_t)n;
	}
	return 0;
}

/* 1: a frame in *type/body (and *fd if one came); 0: EOF; -1: broken. */
static int
recv_frame(int sock, uint32_t *type, struct buf *body, int *fd)
{
	struct frame_head h;
	union { struct cmsghdr c; char space[CMSG_SPACE(sizeof(int))]; } u;
	struct iovec iov = { &h, sizeof(h) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = u.space, .msg_controllen = sizeof(u.space) };
	struct cmsghdr *c;
	ssize_t n;

	if (fd)
		*fd = -1;
	while ((n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	if (n == 0)
		return 0;
	if (n < 0)
		return -1;
	for (c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int got;

			memcpy(&got, CMSG_DATA(c), sizeof(int));
			if (fd && *fd < 0)
				*fd = got;
			else
				close(got);
		}
	if ((size_t)n < sizeof(h) && read_full(sock, (char *)&h + n,
	    sizeof(h) - (size_t)n) < 0)
		return -1;
	if (h.len > FRAME_MAX)
		return -1;
	buf_reset(body);
	if (buf_append(body, "", 0) < 0)
		return -1;
	while (body->len < h.len) {
		char chunk[8192];
		size_t want = h.len - body->len;

		if (want > sizeof(chunk))
			want = sizeof(chunk);
		if (read_full(sock, chunk, want) < 0 ||
		    buf_append(body, chunk, want) < 0)
			return -1;
	}
	*type = h.type;
	return 1;
}

static void
send_err(int sock, const struct err *err)
{
	char msg[sizeof(err->msg) + 1];
	size_t len = strlen(err->msg);

	msg[0] = (char)err->cls;
	memcpy(msg + 1, err->msg, len);
	send_frame(sock, FR_ERR, msg, len + 1, -1);
}

/* Turn a reply into 0, or -1 with the parent's error. */
static int
reply_status(uint32_t type, const struct buf *body, struct err *err)
{
	if (type == FR_OK)
		return 0;
	if (type == FR_ERR && body->len >= 1)
		return err_set(err, (enum err_class)(unsigned char)body->data[0],
		    "%.*s", (int)(body->len - 1), body->data + 1);
	return err_set(err, ERR_INTERNAL, "bad reply from the queue writer");
}

/* --- the unprivileged side ------------------------------------------------- */

static int
broker_begin(struct spool *s, char id[QID_LEN + 1], int *datafd, struct err *err)
{
	struct buf body;
	uint32_t type;
	int fd = -1, rc, asked = s->begin_sent;

	s->begin_sent = 0;
	buf_init(&body, FRAME_MAX);
	if ((!asked && send_frame(s->sock, FR_BEGIN, NULL, 0, -1) < 0) ||
	    recv_frame(s->sock, &type, &body, &fd) <= 0) {
		buf_free(&body);
		return err_set(err, ERR_TEMP, "lost the queue writer process");
	}
	rc = reply_status(type, &body, err);
	if (rc == 0 && (fd < 0 || body.len != QID_LEN || !qid_valid(body.data)))
		rc = err_set(err, ERR_INTERNAL, "bad queue file from the queue writer");
	if (rc == 0) {
		str_copy(id, body.data, QID_LEN + 1);
		s->datafd = *datafd = fd;
		s->tx_open = 1;
	} else if (fd >= 0) {
		close(fd);
	}
	buf_free(&body);
	return rc;
}

static int
broker_commit(struct spool *s, struct envelope *env, struct err *err)
{
	struct buf text, body;
	uint32_t type;
	int rc = -1;

	buf_init(&text, ENVELOPE_MAX);
	buf_init(&body, FRAME_MAX);
	if (!s->tx_open)
		err_set(err, ERR_INTERNAL, "commit without a queue file");
	else if (envelope_format(env, &text) < 0)
		err_set(err, ERR_DATA, "cannot write the envelope (no recipients, "
		    "too many, or a control character in an address)");
	else if (send_frame(s->sock, FR_COMMIT, text.data, text.len, -1) < 0 ||
	    recv_frame(s->sock, &type, &body, NULL) <= 0)
		err_set(err, ERR_TEMP, "lost the queue writer process");
	else if ((rc = reply_status(type, &body, err)) == 0)
		env->size = strtoull(body.data, NULL, 10);
	close(s->datafd);
	s->datafd = -1;
	s->tx_open = 0;
	buf_free(&text);
	buf_free(&body);
	return rc;
}

void
spool_prefetch(struct spool *s)
{
	if (!s->brokered || s->begin_sent)
		return;
	if (send_frame(s->sock, FR_BEGIN, NULL, 0, -1) == 0)
		s->begin_sent = 1;      /* else spool_begin() finds out */
}

int
spool_begin(struct spool *s, char id[QID_LEN + 1], int *datafd, struct err *err)
{
	spool_abort(s);
	return s->brokered ? broker_begin(s, id, datafd, err) :
	    direct_begin(s, id, datafd, err);
}

int
spool_commit(struct spool *s, struct envelope *env, struct err *err)
{
	return s->brokered ? broker_commit(s, env, err) : direct_commit(s, env, err);
}

void
spool_abort(struct spool *s)
{
	if (!s->tx_open)
		return;
	if (s->brokered) {
		send_frame(s->sock, FR_ABORT, NULL, 0, -1);
		close(s->datafd);
		s->datafd = -1;
	} else {
		queue_tx_abort(&s->tx);
	}
	s->tx_open = 0;
}

/* Give up the setgid group (and any setuid) for good, and the passwords. */
static void
become_unprivileged(struct config *cfg)
{
	gid_t g = getgid(), rg, eg, sg;
	uid_t u = getuid(), ru, eu, su;

	config_wipe_secrets(cfg);
	/* Only change what differs: a sandbox may forbid set*id() outright. */
	if (getresgid(&rg, &eg, &sg) < 0 || getresuid(&ru, &eu, &su) < 0 ||
	    ((rg != g || eg != g || sg != g) && setresgid(g, g, g) < 0) ||
	    ((ru != u || eu != u || su != u) && setresuid(u, u, u) < 0) ||
	    getresgid(&rg, &eg, &sg) < 0 || getresuid(&ru, &eu, &su) < 0 ||
	    rg != g || eg != g || sg != g || ru != u || eu != u || su != u)
		fatal(70, "cannot drop privileges: %s", strerror(errno));
}

/* --- the privileged side --------------------------------------------------- */

/* The runner's strict loader, plus what only a fresh submission may say. */
static int
check_envelope(const struct buf *text, const char *id, struct envelope *env,
    struct err *err)
{
	if (envelope_parse(text->data, text->len, env, err) < 0)
		return err_prefix(err, "invalid envelope from the front end");
	if (strcmp(env->id, id) != 0)
		return err_set(err, ERR_INTERNAL, "envelope for the wrong queue file");
	if (env->sender[0] != '\0' && addr_validate(env->sender, err) < 0)
		return err_prefix(err, "invalid sender");
	for (size_t i = 0; i < env->nrcpts; i++) {
		struct rcpt *rc = &env->rcpts[i];

		if (rc->status != RCPT_PENDING || addr_validate(rc->addr, err) < 0)
			return err_set(err, ERR_DATA, "invalid recipient <%s>", rc->addr);
		free(rc->dsn);
		free(rc->error);
		rc->dsn = rc->error = NULL;
	}
	free(env->last_error);
	env->last_error = NULL;
	env->attempts = 0;
	env->last_attempt = env->next_attempt = 0;
	env->held = 0;               /* only an operator puts mail on hold */
	env->bounce[0] = '\0';        /* only a queue run decides a bounce */
	env->created = time(NULL);
	return 0;
}

static void
serve(const struct config *cfg, int sock, privsep_commit_fn committed, void *carg)
{
	struct spool *s = spool_direct(cfg->queue_dir);
	struct buf body;
	uint32_t type;
	char id[QID_LEN + 1];
	int fd, ready;

	/*
	 * Create the first queue file while the child starts up (it looks up
	 * the caller, reads stdin): its request is then answered at once. One
	 * never asked for is removed at the end, as any uncommitted file.
	 */
	ready = spool_begin(s, id, &fd, NULL) == 0;
	buf_init(&body, FRAME_MAX);
	while (recv_frame(sock, &type, &body, NULL) > 0) {
		struct envelope env;
		struct err err;
		char size[32];

		switch (type) {
		case FR_BEGIN:
			if (!ready && spool_begin(s, id, &fd, &err) < 0)
				send_err(sock, &err);
			else
				send_frame(sock, FR_OK, id, strlen(id), fd);
			ready = 0;
			break;
		case FR_COMMIT:
			envelope_init(&env);
			if (!s->tx_open || ready) {   /* never handed out */
				err_set(&err, ERR_INTERNAL, "commit without a queue file");
				send_err(sock, &err);
			} else if (check_envelope(&body, s->tx.id, &env, &err) < 0 ||
			    spool_commit(s, &env, &err) < 0) {
				spool_abort(s);
				send_err(sock, &err);
			} else {
				snprintf(size, sizeof(size), "%llu", env.size);
				send_frame(sock, FR_OK, size, strlen(size), -1);
				if (committed)
					committed(env.id, carg);
			}
			envelope_free(&env);
			break;
		case FR_ABORT:
			spool_abort(s);
			ready = 0;
			break;
		default:
			log_error("front end: unknown request %u", type);
			goto out;
		}
	}
out:
	spool_free(s);               /* aborts anything left uncommitted */
	buf_free(&body);
}

int
privsep_run(const struct config *cfg, int separate, privsep_child_fn child,
    void *arg, privsep_commit_fn committed, void *carg, struct err *err)
{
	int sv[2], status;
	pid_t pid;

	if (!separate) {
		struct spool *s = spool_direct(cfg->queue_dir);
		int code;

		s->committed = committed;
		s->carg = carg;
		code = child(s, arg);
		spool_free(s);
		return code;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return err_sys(err, ERR_OS, "socketpair");
	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) < 0) {
		close(sv[0]);
		close(sv[1]);
		return err_sys(err, ERR_OS, "fork");
	}
	if (pid == 0) {
		struct spool s = { .brokered = 1, .sock = sv[1], .datafd = -1 };
		int code;

		close(sv[0]);
		become_unprivileged((struct config *)cfg);
		code = child(&s, arg);
		spool_abort(&s);
		exit(code);
	}
	close(sv[1]);
	serve(cfg, sv[0], committed, carg);
	close(sv[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return err_sys(err, ERR_OS, "waitpid");
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return err_set(err, ERR_INTERNAL, "the front end died of signal %d",
	    WTERMSIG(status));
}
