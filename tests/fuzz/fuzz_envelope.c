/*
 * fuzz_envelope.c - the strict envelope loader (envelope_parse), the one
 * parser every queue run applies to files on disk.
 *
 * Input: the envelope file as is.
 * Properties:
 *  - failure is ERR_DATA with a message safe for one log line, and the
 *    envelope is left empty (envelope_free is safe, no recipients);
 *  - success means a usable envelope: a valid id, at least one recipient,
 *    no control character in any address;
 *  - round trip: what was accepted can be written (envelope_format), the
 *    written form is accepted again, and writing that gives the same bytes
 *    (formatting may normalise, e.g. truncate long error text, but only
 *    once).
 */
#include "autoconf.h"

#include "fuzz.h"
#include "queue.h"

static void
check_loaded(const struct envelope *env)
{
	FUZZ_CHECK(qid_valid(env->id), "loaded envelope with a bad id");
	FUZZ_CHECK(env->nrcpts > 0, "loaded envelope without recipients");
	FUZZ_CHECK(env->sender != NULL && !fuzz_has_ctl(env->sender,
	    strlen(env->sender)), "sender missing or with a control character");
	for (size_t i = 0; i < env->nrcpts; i++) {
		const char *a = env->rcpts[i].addr;

		FUZZ_CHECK(a != NULL && a[0] != '\0' &&
		    !fuzz_has_ctl(a, strlen(a)), "recipient %zu unusable", i);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct envelope env, env2;
	struct buf f1, f2;
	struct err err;

	memset(&err, 0, sizeof(err));
	if (envelope_parse((const char *)data, size, &env, &err) < 0) {
		FUZZ_CHECK(err.cls == ERR_DATA, "error class %d: %s",
		    (int)err.cls, err.msg);
		FUZZ_CHECK(!fuzz_has_ctl(err.msg, strlen(err.msg)),
		    "control character in the error message");
		FUZZ_CHECK(env.nrcpts == 0 && env.rcpts == NULL &&
		    env.sender == NULL, "failed parse left data behind");
		envelope_free(&env);
		return 0;
	}
	check_loaded(&env);

	buf_init(&f1, ENVELOPE_MAX);
	buf_init(&f2, ENVELOPE_MAX);
	FUZZ_CHECK(envelope_format(&env, &f1) == 0,
	    "an accepted envelope cannot be written back");
	FUZZ_CHECK(envelope_parse(f1.data, f1.len, &env2, &err) == 0,
	    "written envelope refused: %s", err.msg);
	check_loaded(&env2);
	FUZZ_CHECK(envelope_format(&env2, &f2) == 0,
	    "reloaded envelope cannot be written back");
	FUZZ_CHECK(f1.len == f2.len && memcmp(f1.data, f2.data, f1.len) == 0,
	    "round trip changed the envelope (%zu -> %zu bytes)", f1.len,
	    f2.len);
	FUZZ_CHECK(env2.nrcpts == env.nrcpts && env2.size == env.size &&
	    env2.created == env.created && env2.attempts == env.attempts &&
	    strcmp(env2.sender, env.sender) == 0 &&
	    strcmp(env2.id, env.id) == 0,
	    "round trip changed the envelope's values");
	buf_free(&f1);
	buf_free(&f2);
	envelope_free(&env);
	envelope_free(&env2);
	return 0;
}
