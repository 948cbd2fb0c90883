/*
 * submit.c - one submission from the command line: the envelope from argv
 * (or the header with -t), the message through the header fix-ups, and
 * both durably into the queue. Nothing is left in the queue unless every
 * step succeeded.
 */
#include "autoconf.h"

#include <pwd.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "log.h"
#include "message.h"
#include "submit.h"

struct caller {
	char login[64];
	char gecos[256];
};

/* Who is calling: the login name of the real uid, and the gecos name. */
static void
caller_identify(struct caller *c)
{
	struct passwd *pw = getpwuid(getuid());

	if (pw == NULL || str_copy(c->login, pw->pw_name, sizeof(c->login)) < 0 ||
	    addr_validate(c->login, NULL) < 0) {
		str_fmt(c->login, sizeof(c->login), "uid%lu", (unsigned long)getuid());
		c->gecos[0] = '\0';
		return;
	}
	/* The full name is the first comma-separated field of the gecos. */
	str_copy(c->gecos, pw->pw_gecos ? pw->pw_gecos : "", sizeof(c->gecos));
	c->gecos[strcspn(c->gecos, ",\r\n")] = '\0';
}

/* Check and qualify one address for the envelope. */
static int
envelope_address(const char *raw, const char *domain, char *out, size_t size,
    struct err *err)
{
	if (addr_validate(raw, err) < 0)
		return err_prefix(err, "bad address <%s>", raw);
	if (addr_qualify(raw, domain, out, size) < 0 || addr_validate(out, err) < 0)
		return err_set(err, ERR_DATA, "address too long: <%s>", raw);
	return 0;
}

static int
resolve_sender(const struct config *cfg, const char *given,
    const struct caller *who, char *out, size_t size, struct err *err)
{
	char parsed[ADDR_MAX + 1];

	if (given == NULL)
		return envelope_address(who->login, cfg->domain, out, size, err);
	if (addr_parse_sender(given, parsed, sizeof(parsed), err) < 0)
		return err_prefix(err, "bad sender address");
	if (parsed[0] == '\0') {
		out[0] = '\0';         /* the null sender */
		return 0;
	}
	return envelope_address(parsed, cfg->domain, out, size, err);
}

/* Add recipients to the envelope, qualified and without duplicates. */
static int
add_recipients(struct envelope *env, struct strlist *seen,
    const struct strlist *addrs, const struct config *cfg, unsigned notify,
    struct err *err)
{
	char qual[ADDR_MAX + 1];

	for (size_t i = 0; i < addrs->n; i++) {
		if (envelope_address(addrs->v[i], cfg->domain, qual, sizeof(qual),
		    err) < 0)
			return -1;
		if (strlist_has_ci(seen, qual))
			continue;
		if (seen->n >= (size_t)cfg->max_recipients)
			return err_set(err, ERR_DATA,
			    "too many recipients (limit %ld)", cfg->max_recipients);
		strlist_add(seen, qual);
		envelope_add_rcpt(env, qual, strcmp(qual, addrs->v[i]) ?
		    addrs->v[i] : NULL, notify);
		if (addr_is_utf8(qual))
			env->smtputf8 = 1;
	}
	return 0;
}

int
submit(const struct config *cfg, const struct submission *sub, int infd,
    char qid[QID_LEN + 1], struct err *err)
{
	struct caller who;
	struct strlist argv_rcpts = { 0 }, seen = { 0 };
	struct queue q;
	struct queue_tx tx;
	struct msg_opts mo;
	struct msg_info info;
	struct envelope env;
	char sender[ADDR_MAX + 1];
	unsigned notify = sub->notify;
	int rc = -1;

	memset(&info, 0, sizeof(info));
	envelope_init(&env);
	caller_identify(&who);
	if (resolve_sender(cfg, sub->sender, &who, sender, sizeof(sender), err) < 0)
		goto out;
	for (size_t i = 0; i < sub->nrcpts; i++)
		if (addr_parse_list(sub->rcpts[i], &argv_rcpts, err) < 0) {
			err_prefix(err, "bad recipient \"%s\"", sub->rcpts[i]);
			goto out;
		}
	if (argv_rcpts.n == 0 && !sub->extract_rcpts) {
		err_set(err, ERR_USAGE, "no recipients given (and no -t)");
		goto out;
	}

	if (queue_open(&q, cfg->queue_dir, 1, err) < 0)
		goto out;
	if (queue_tx_begin(&q, &tx, err) < 0)
		goto out_queue;

	msg_opts_init(&mo);
	mo.dot_ends = sub->dot_ends;
	mo.extract_rcpts = sub->extract_rcpts;
	mo.no_fixups = sub->no_fixups;
	mo.qid = tx.id;
	mo.hostname = cfg->hostname;
	mo.domain = cfg->domain;
	mo.sender = sender;
	mo.full_name = sub->full_name ? sub->full_name :
	    (who.gecos[0] ? who.gecos : NULL);
	mo.max_size = cfg->max_message_size;
	mo.max_header_size = (size_t)cfg->max_header_size;
	mo.max_headers = (size_t)cfg->max_headers;
	if (message_read(infd, tx.datafd, &mo, &info, err) < 0)
		goto out_tx;

	if (add_recipients(&env, &seen, &argv_rcpts, cfg, notify, err) < 0 ||
	    add_recipients(&env, &seen, &info.rcpts, cfg, notify, err) < 0)
		goto out_tx;
	if (env.nrcpts == 0) {
		err_set(err, ERR_USAGE, "no recipient addresses found in the message header");
		goto out_tx;
	}
	env.sender = xstrdup(sender);
	env.eightbit = info.eightbit ||
	    (sub->body_type && strcasecmp(sub->body_type, "8BITMIME") == 0);
	env.smtputf8 |= addr_is_utf8(sender);
	if (sub->ret)
		env.ret = strcasecmp(sub->ret, "hdrs") == 0 ? RET_HDRS : RET_FULL;
	if (sub->envid)
		env.envid = xstrdup(sub->envid);
	env.created = time(NULL);

	if (queue_tx_commit(&tx, &env, err) < 0)
		goto out_tx;
	str_copy(qid, tx.id, QID_LEN + 1);
	log_info("%s: from=<%s>, size=%llu, nrcpt=%zu, uid=%lu", tx.id, sender,
	    env.size, env.nrcpts, (unsigned long)getuid());
	rc = 0;
out_tx:
	queue_tx_abort(&tx);
out_queue:
	queue_close(&q);
out:
	msg_info_free(&info);
	envelope_free(&env);
	strlist_free(&argv_rcpts);
	strlist_free(&seen);
	return rc;
}

int
submit_message(const struct config *cfg, const struct request *req, int infd,
    char qid[QID_LEN + 1], struct err *err)
{
	struct submission sub = {
		.sender = req->sender,
		.rcpts = (const char *const *)req->rcpts,
		.nrcpts = (size_t)req->nrcpts,
		.extract_rcpts = req->extract_rcpts,
		.dot_ends = !req->ignore_dots,
		.no_fixups = req->no_fixups,
		.full_name = req->full_name,
		.notify = req->notify_mask,
		.ret = req->ret,
		.envid = req->envid,
		.body_type = req->body_type,
	};

	return submit(cfg, &sub, infd, qid, err);
}
