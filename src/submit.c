/*
 * submit.c - one submission, from the command line or a -bs DATA: the
 * envelope from argv or MAIL/RCPT (or the header with -t), local
 * recipients through the aliases, local senders through sender_rewrite,
 * the message through the header fix-ups, and both durably into the
 * queue. Nothing is left in the queue unless every step succeeded.
 */
#include "autoconf.h"

#include <pwd.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "aliases.h"
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

/* What a submission works with besides its envelope. */
struct context {
	const struct config *cfg;
	char rewrite[ADDR_MAX + 1];   /* sender_rewrite as an addr-spec, or "" */
	struct aliases *aliases;      /* loaded on first use */
	int aliases_loaded;
};

/* sender_rewrite, checked: a full address ("Name <a@b>" is accepted). */
static int
context_init(struct context *cx, const struct config *cfg, struct err *err)
{
	memset(cx, 0, sizeof(*cx));
	cx->cfg = cfg;
	if (cfg->sender_rewrite == NULL)
		return 0;
	if (addr_parse_sender(cfg->sender_rewrite, cx->rewrite,
	    sizeof(cx->rewrite), err) < 0 || cx->rewrite[0] == '\0' ||
	    addr_is_bare(cx->rewrite) || addr_validate(cx->rewrite, err) < 0)
		return err_set(err, ERR_CONFIG, "%s: sender_rewrite \"%s\" is "
		    "not a valid address with a domain", cfg->path,
		    cfg->sender_rewrite);
	return 0;
}

/* A sender for the envelope: local ones rewritten, else qualified. */
static int
envelope_sender(const struct context *cx, const char *raw, char *out,
    size_t size, struct err *err)
{
	if (cx->rewrite[0] != '\0' && addr_validate(raw, NULL) == 0 &&
	    addr_is_local(raw, cx->cfg->hostname))
		return str_copy(out, cx->rewrite, size) < 0 ?
		    err_set(err, ERR_INTERNAL, "sender_rewrite too long") : 0;
	return envelope_address(raw, cx->cfg->domain, out, size, err);
}

static int
resolve_sender(const struct context *cx, const char *given,
    const struct caller *who, char *out, size_t size, struct err *err)
{
	char parsed[ADDR_MAX + 1];

	if (given == NULL)
		return envelope_sender(cx, who->login, out, size, err);
	if (addr_parse_sender(given, parsed, sizeof(parsed), err) < 0)
		return err_prefix(err, "bad sender address");
	if (parsed[0] == '\0') {
		out[0] = '\0';         /* the null sender */
		return 0;
	}
	return envelope_sender(cx, parsed, out, size, err);
}

/* The aliases file, read when the first local recipient needs it. */
static int
context_aliases(struct context *cx, struct err *err)
{
	size_t bad;

	if (cx->aliases_loaded)
		return 0;
	if (aliases_load(cx->cfg->aliases, &cx->aliases, err) < 0)
		return -1;
	cx->aliases_loaded = 1;
	if ((bad = aliases_errors(cx->aliases)) > 0)
		log_warn("%s: %zu line%s cannot be used; newaliases lists them",
		    cx->cfg->aliases, bad, bad == 1 ? "" : "s");
	return 0;
}

/* Local addresses through the aliases; all of them qualified. */
static int
expand_recipient(struct context *cx, const char *raw, struct strlist *out,
    struct err *err)
{
	const struct config *cfg = cx->cfg;
	struct alias_ctx actx = { cfg->hostname, cfg->domain,
	    cfg->max_alias_expansions };
	struct strlist warn = { 0 };
	int rc;

	if (addr_validate(raw, err) < 0)
		return err_prefix(err, "bad address <%s>", raw);
	if (addr_is_local(raw, cfg->hostname) && context_aliases(cx, err) < 0)
		return -1;
	rc = aliases_expand(cx->aliases, raw, &actx, out, NULL, &warn, err);
	for (size_t i = 0; i < warn.n; i++)
		log_warn("%s", warn.v[i]);
	strlist_free(&warn);
	return rc;
}

/* Add recipients to the envelope, expanded, qualified, without duplicates. */
static int
add_recipients(struct envelope *env, struct strlist *seen,
    const struct strlist *addrs, struct context *cx, unsigned notify,
    struct err *err)
{
	const struct config *cfg = cx->cfg;
	char qual[ADDR_MAX + 1];

	for (size_t i = 0; i < addrs->n; i++) {
		struct strlist exp = { 0 };
		int rc = expand_recipient(cx, addrs->v[i], &exp, err);

		for (size_t j = 0; rc == 0 && j < exp.n; j++) {
			if ((rc = envelope_address(exp.v[j], cfg->domain, qual,
			    sizeof(qual), err)) < 0)
				break;
			if (strlist_has_ci(seen, qual))
				continue;
			if (seen->n >= (size_t)cfg->max_recipients) {
				rc = err_set(err, ERR_DATA, "too many recipients "
				    "(limit %ld)", cfg->max_recipients);
				break;
			}
			strlist_add(seen, qual);
			envelope_add_rcpt(env, qual, strcmp(qual, addrs->v[i]) ?
			    addrs->v[i] : NULL, notify);
			if (addr_is_utf8(qual))
				env->smtputf8 = 1;
		}
		strlist_free(&exp);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int
rewrite_from(const char *value, struct buf *out, const void *arg)
{
	const struct context *cx = arg;

	return sender_rewrite_from(value, cx->rewrite, cx->cfg->hostname, out);
}

/* sender_from_header: with no -f, the From: address is the sender. */
static void
sender_from_header(const struct context *cx, const struct msg_info *info,
    char *sender, size_t size)
{
	char s[ADDR_MAX + 1];
	struct err e;

	if (info->from_addr == NULL)
		return;
	if (envelope_sender(cx, info->from_addr, s, sizeof(s), &e) < 0) {
		log_warn("sender_from_header: From: address ignored: %s", e.msg);
		return;
	}
	str_copy(sender, s, size);
}

int
submit(const struct config *cfg, struct spool *spool,
    const struct submission *sub, struct msg_input *in,
    struct submit_result *res, struct err *err)
{
	struct context cx;
	struct caller who;
	struct strlist argv_rcpts = { 0 }, seen = { 0 };
	struct spool *own = NULL;
	char id[QID_LEN + 1];
	int datafd;
	struct msg_opts mo;
	struct msg_info info;
	struct envelope env;
	char sender[ADDR_MAX + 1];
	unsigned notify = sub->notify;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	memset(&info, 0, sizeof(info));
	envelope_init(&env);
	caller_identify(&who);
	if (context_init(&cx, cfg, err) < 0)
		goto out;
	if (resolve_sender(&cx, sub->sender, &who, sender, sizeof(sender),
	    err) < 0)
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

	if (spool == NULL)
		spool = own = spool_direct(cfg->queue_dir);
	if (spool_begin(spool, id, &datafd, err) < 0)
		goto out;

	msg_opts_init(&mo);
	mo.dot_ends = sub->dot_ends;
	mo.extract_rcpts = sub->extract_rcpts;
	mo.no_fixups = sub->no_fixups;
	mo.qid = id;
	mo.hostname = cfg->hostname;
	mo.domain = cfg->domain;
	mo.sender = sender;
	mo.full_name = sub->full_name ? sub->full_name :
	    (who.gecos[0] ? who.gecos : NULL);
	mo.max_size = cfg->max_message_size;
	mo.max_header_size = (size_t)cfg->max_header_size;
	mo.max_headers = (size_t)cfg->max_headers;
	mo.require_end = sub->smtp_data;
	mo.crlf_dots = sub->crlf_dots;
	if (cx.rewrite[0] != '\0') {
		mo.from_rewrite = rewrite_from;
		mo.from_rewrite_arg = &cx;
	}
	rc = message_read_input(in, datafd, &mo, &info, err);
	res->too_big = info.too_big;
	res->ended = info.ended;
	if (rc < 0)
		goto out_tx;
	rc = -1;
	if (sub->sender == NULL && cfg->sender_from_header)
		sender_from_header(&cx, &info, sender, sizeof(sender));

	if (add_recipients(&env, &seen, &argv_rcpts, &cx, notify, err) < 0 ||
	    add_recipients(&env, &seen, &info.rcpts, &cx, notify, err) < 0)
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
	str_copy(env.id, id, sizeof(env.id));

	if (spool_commit(spool, &env, err) < 0)
		goto out_tx;
	str_copy(res->qid, id, sizeof(res->qid));
	log_info("%s: from=<%s>, size=%llu, nrcpt=%zu, uid=%lu", id, sender,
	    env.size, env.nrcpts, (unsigned long)getuid());
	rc = 0;
out_tx:
	spool_abort(spool);
out:
	spool_free(own);
	msg_info_free(&info);
	envelope_free(&env);
	strlist_free(&argv_rcpts);
	strlist_free(&seen);
	aliases_free(cx.aliases);
	return rc;
}

int
submit_message(const struct config *cfg, struct spool *spool,
    const struct request *req, int infd, char qid[QID_LEN + 1], struct err *err)
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
	struct submit_result res;
	struct msg_input in;
	int rc;

	/* The queue file is made while this process looks up its caller. */
	if (spool != NULL)
		spool_prefetch(spool);
	msg_input_init(&in, infd);
	rc = submit(cfg, spool, &sub, &in, &res, err);
	msg_input_free(&in);
	if (rc == 0)
		str_copy(qid, res.qid, QID_LEN + 1);
	return rc;
}
