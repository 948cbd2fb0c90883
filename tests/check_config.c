/*
 * check_config.c - unit tests for config.c: every class of bad config is
 * refused with ERR_CONFIG naming file, line and key; good configs give the
 * expected values and defaults; config_print masks the password and reads
 * back; the shipped sample parses to the defaults.
 */
#include "autoconf.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char tmpdir[64];
static char conf_path[128];

static void
setup(void)
{
	str_copy(tmpdir, "/tmp/check_config.XXXXXX", sizeof(tmpdir));
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	ck_assert_int_eq(str_fmt(conf_path, sizeof(conf_path), "%s/relayq.conf",
	    tmpdir), 0);
}

static void
teardown(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *de;
	char p[sizeof(tmpdir) + 1 + sizeof(de->d_name)];

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", tmpdir, de->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(tmpdir);
}

static void
write_file(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(text, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
}

static int
load_text(const char *text, struct config **cfg, struct err *err)
{
	write_file(conf_path, text, strlen(text));
	memset(err, 0, sizeof(*err));
	*cfg = NULL;
	return config_load(conf_path, cfg, err);
}

static struct config *
load_ok(const char *text)
{
	struct config *cfg;
	struct err err;

	if (load_text(text, &cfg, &err) != 0)
		ck_abort_msg("config refused: %s\n--- config:\n%s", err.msg, text);
	ck_assert_ptr_nonnull(cfg);
	return cfg;
}

/* --- bad configs --------------------------------------------------------- */

static const struct bad {
	const char *text;
	int line;                /* 0: the message names no line */
	const char *needle;
} bad[] = {
	/* values */
	{ "queue_lifetime = 5x\n", 1, "queue_lifetime: bad duration \"5x\" "
	    "(use a number with s, m, h, d or w)" },
	{ "retry = { 1m, 0 }\n", 1, "retry: bad duration \"0\"" },
	{ "max_message_size = 10X\n", 1, "max_message_size: bad size \"10X\"" },
	{ "max_header_size = 0\n", 1, "max_header_size: bad size" },
	{ "max_headers = 0\n", 1, "max_headers: bad number \"0\"" },
	{ "max_recipients = lots\n", 1, "max_recipients: bad number" },
	{ "max_alias_expansions = 2000000\n", 1, "max_alias_expansions: bad number" },
	{ "max_smtp_line = 511\n", 1, "max_smtp_line: bad number \"511\" (use 512 "
	    "to 65536; RFC 5321 lines may be 512 octets long)" },
	{ "max_smtp_line = 65537\n", 1, "max_smtp_line: bad number \"65537\"" },
	{ "max_smtp_line = 2K\n", 1, "max_smtp_line: bad number \"2K\"" },
	{ "max_reply_lines = 9\n", 1, "max_reply_lines: bad number \"9\" (use 10 "
	    "to 10000)" },
	{ "max_reply_lines = 10001\n", 1, "max_reply_lines: bad number" },
	{ "\nmax_reply_line = 100\n", 2, "max_reply_line: bad number \"100\" (use "
	    "512 to 65536" },
	{ "max_reply_line = -2048\n", 1, "max_reply_line: bad number" },
	{ "smarthost a {\n host = h.example\n max_reply_line = 4096\n}\n", 3,
	    "smarthost a: max_reply_line: unknown key" },
	{ "delivery = later\n", 1, "delivery: bad value \"later\"" },
	{ "log = syslg\n", 1, "log: bad value \"syslg\"" },
	{ "log = var/log/relayq\n", 1, "log: bad value" },
	{ "hostname = \"web_1.example.com\"\n", 1, "hostname: bad name" },
	{ "hostname = \"\"\n", 1, "hostname: bad name" },
	{ "domain = \"exa mple.com\"\n", 1, "domain: bad name" },
	{ "domain = .example.com\n", 1, "domain: bad name" },
	{ "queue_dir = spool\n", 1, "queue_dir: \"spool\" is not an absolute path" },
	{ "aliases = \"\"\n", 1, "aliases: \"\" is not an absolute path" },
	{ "sender_rewrite = \"\"\n", 1, "sender_rewrite: empty value" },
	{ "sender_from_header = maybe\n", 1,
	    "sender_from_header: bad value \"maybe\"" },
	{ "retry = {}\n", 0, "retry: the list is empty" },
	/* control characters, quoting, file-level syntax */
	{ "sender_rewrite = \"a\\nb\"\n", 1, "sender_rewrite: value contains a "
	    "control character" },
	{ "sender_rewrite = \"a\nb\"\n", 2, "sender_rewrite: value contains" },
	{ "sender_rewrite = \"a\\rb\"\n", 1, "sender_rewrite: value contains" },
	{ "hostname = \"abc\n\n", 1, "string not closed" },
	{ "hostname = 'abc\n", 1, "string not closed" },
	{ "/* open\n\nhostname = a\n", 1, "comment not closed" },
	{ "hostname = ${HOST}\n", 1, "environment variables are not expanded" },
	{ "hostname web1\n", 1, "hostname: missing '='" },
	{ "hostname = web1\n}\n", 2, "unexpected closing brace" },
	{ "hostname = = web1\n", 1, "syntax error" },
	{ "\n\nbogus = 1\n", 3, "bogus: unknown key" },
	{ "queue_lifetime += 1d\n", 1, "queue_lifetime: '+=' only works on lists" },
	/* line numbers survive comments (libconfuse 3.3 miscounts them) */
	{ "# one\n# two\n\nqueue_lifetime = 5x\n", 4, "queue_lifetime: bad duration" },
	{ "#\n##\n// x\n/* a\n b */\nmax_message_size = 10X\n", 6,
	    "max_message_size: bad size" },
	{ "retry = { 1m, # first\n  5m, // second\n  7y }\n", 3,
	    "retry: bad duration \"7y\"" },
	{ "hostname = a.example\r\nqueue_lifetime = 5x\r\n", 2,
	    "queue_lifetime: bad duration" },
	{ "hostname = \"a#b.example\"  # the # in quotes is not a comment\n", 1,
	    "hostname: bad name \"a#b.example\"" },
	/* smarthost sections */
	{ "smarthost {\n  host = x.example\n}\n", 1, "smarthost: missing name" },
	{ "smarthost a {\n  port = 25\n}\n", 3, "smarthost a: host: is required" },
	{ "smarthost a {\n  host = h.example\n  colour = blue\n}\n", 3,
	    "smarthost a: colour: unknown key" },
	{ "smarthost a {\n host = h1.example\n}\nsmarthost a {\n"
	    " host = h2.example\n}\n", 4, "smarthost a: duplicate name" },
	{ "smarthost a {\n host = h.example\n port = 0\n}\n", 3,
	    "smarthost a: port: bad port \"0\" (use 1 to 65535)" },
	{ "smarthost a {\n host = h.example\n port = 65536\n}\n", 3,
	    "port: bad port \"65536\"" },
	{ "smarthost a {\n host = h.example\n port = smtp\n}\n", 3,
	    "port: bad port \"smtp\"" },
	{ "smarthost a {\n host = \"h_1.example\"\n}\n", 2, "host: bad host" },
	{ "smarthost a {\n host = \"[::g]\"\n}\n", 2, "host: bad IPv6 address" },
	{ "smarthost a {\n host = h.example\n tls = ssl\n}\n", 3,
	    "tls: bad value \"ssl\" (use starttls, smtps or none)" },
	{ "smarthost a {\n host = h.example\n tls_verify = sometimes\n}\n", 3,
	    "tls_verify: bad value" },
	{ "smarthost a {\n host = h.example\n tls_min_version = 1.1\n}\n", 3,
	    "tls_min_version: bad value \"1.1\"" },
	{ "smarthost a {\n host = h.example\n tls_ca_file = ca.pem\n}\n", 3,
	    "tls_ca_file: \"ca.pem\" is not an absolute path" },
	/* "5 m" is two words: the second one reads as a key */
	{ "smarthost a {\n host = h.example\n timeout = 5 m\n}\n", 3,
	    "smarthost a: m: unknown key" },
	{ "smarthost a {\n host = h.example\n connect_timeout = -1\n}\n", 3,
	    "connect_timeout: bad duration" },
	{ "smarthost a {\n host = h.example\n sessions = 0\n}\n", 3,
	    "smarthost a: sessions: bad number \"0\" (use 1 to 32)" },
	{ "smarthost a {\n host = h.example\n\n sessions = 33\n}\n", 4,
	    "sessions: bad number \"33\" (use 1 to 32)" },
	{ "smarthost a {\n host = h.example\n sessions = four\n}\n", 3,
	    "sessions: bad number \"four\"" },
	{ "smarthost a {\n host = h.example\n sessions = -2\n}\n", 3,
	    "sessions: bad number" },
	{ "smarthost a {\n host = h.example\n sessions = 4x\n}\n", 3,
	    "sessions: bad number \"4x\"" },
	{ "sessions = 4\n", 1, "sessions: unknown key" },
	{ "smarthost a {\n host = h.example\n tls_fingerprint = \"sha256:abcd\"\n}\n",
	    3, "tls_fingerprint: bad fingerprint" },
	{ "smarthost a {\n host = h.example\n tls_fingerprint = \"md5:"
	    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"\n}\n",
	    3, "tls_fingerprint: bad fingerprint" },
	{ "smarthost a {\n host = h.example\n tls_fingerprint = \"sha256:"
	    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeefg\"\n}\n",
	    3, "tls_fingerprint: bad fingerprint" },
	{ "smarthost a {\n host = h.example\n tls_fingerprint = \"sha256:"
	    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff:\"\n}\n",
	    3, "tls_fingerprint: bad fingerprint" },
	{ "smarthost a {\n host = h.example\n tls_fingerprint = \"sha256:"
	    "0:0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"\n}\n",
	    3, "tls_fingerprint: bad fingerprint" },
	{ "smarthost a {\n host = h.example\n tls_cert_file = /etc/c.pem\n}\n", 3,
	    "tls_cert_file: needs tls_key_file" },
	{ "smarthost a {\n host = h.example\n\n tls_key_file = /etc/c.key\n}\n", 4,
	    "tls_key_file: needs tls_cert_file" },
	{ "smarthost a {\n host = h.example\n username = u\n password = p\n"
	    " password_file = /etc/pw\n}\n", 5, "smarthost a: password_file: only "
	    "one of password, password_file and password_command" },
	{ "smarthost a {\n host = h.example\n username = u\n"
	    " password_command = /bin/pw\n password = p\n}\n", 5,
	    "password: only one of" },
	{ "smarthost a {\n host = h.example\n password = p\n}\n", 3,
	    "password: a password needs a username" },
	{ "smarthost a {\n host = h.example\n username = u\n}\n", 3,
	    "username: needs one of password" },
	{ "smarthost a {\n host = h.example\n username = u\n"
	    " password_command = get-token\n}\n", 4,
	    "password_command: \"get-token\" must start with the absolute path" },
	{ "smarthost a {\n host = h.example\n auth = { PLAIN }\n}\n", 3,
	    "auth: needs a username" },
	{ "smarthost a {\n host = h.example\n username = u\n password = p\n"
	    " auth = { PLAIN,\n   DIGEST-MD5 }\n}\n", 6,
	    "auth: unknown mechanism \"DIGEST-MD5\"" },
	{ "smarthost a {\n host = mail.example.com\n tls = none\n username = u\n"
	    " password = p\n}\n", 3, "smarthost a: tls: \"none\" would send the "
	    "password in clear to mail.example.com" },
	{ "smarthost a {\n host = 10.0.0.1\n username = u\n"
	    " password_file = /etc/pw\n tls = none\n}\n", 5, "tls: \"none\"" },
	{ "smarthost a {\n host = h.example\n password = \"x\\ty\"\n}\n", 3,
	    "password: value contains a control character" },
	{ "smarthost \"a b\" {\n host = h.example\n}\n", 3, "smarthost: bad name" },
};

START_TEST(test_bad)
{
	const struct bad *b = &bad[_i];
	struct config *cfg;
	struct err err;
	char where[160];

	ck_assert_int_eq(load_text(b->text, &cfg, &err), -1);
	ck_assert_ptr_null(cfg);
	ck_assert_msg(err.cls == ERR_CONFIG, "case %d: class %s: %s", _i,
	    err_class_name(err.cls), err.msg);
	if (b->line > 0)
		snprintf(where, sizeof(where), "%s:%d: ", conf_path, b->line);
	else
		snprintf(where, sizeof(where), "%s: ", conf_path);
	ck_assert_msg(strncmp(err.msg, where, strlen(where)) == 0,
	    "case %d: want prefix \"%s\", got \"%s\"", _i, where, err.msg);
	ck_assert_msg(strstr(err.msg, b->needle) != NULL,
	    "case %d: want \"%s\" in \"%s\"", _i, b->needle, err.msg);
}
END_TEST

/* A secret that is refused must not be echoed in the message. */
START_TEST(test_bad_password_not_echoed)
{
	struct config *cfg;
	struct err err;

	ck_assert_int_eq(load_text("smarthost a {\n host = mail.example.com\n"
	    " username = u\n password = \"Hunter2\\tsecret\"\n}\n", &cfg, &err), -1);
	ck_assert_ptr_null(strstr(err.msg, "Hunter2"));
	ck_assert_int_eq(load_text("smarthost a {\n host = mail.example.com\n"
	    " tls = none\n username = u\n password = Hunter2secret\n}\n",
	    &cfg, &err), -1);
	ck_assert_ptr_null(strstr(err.msg, "Hunter2"));
}
END_TEST

START_TEST(test_nul_byte)
{
	static const char text[] = "hostname = a.example\nhostname = \"a\0b\"\n";
	struct config *cfg = NULL;
	struct err err;
	char where[160];

	write_file(conf_path, text, sizeof(text) - 1);
	ck_assert_int_eq(config_load(conf_path, &cfg, &err), -1);
	ck_assert_int_eq(err.cls, ERR_CONFIG);
	snprintf(where, sizeof(where), "%s:2: NUL byte in the file", conf_path);
	ck_assert_str_eq(err.msg, where);
}
END_TEST

START_TEST(test_missing_file)
{
	struct config *cfg = NULL;
	struct err err;
	char path[160], want[320];

	snprintf(path, sizeof(path), "%s/absent.conf", tmpdir);
	ck_assert_int_eq(config_load(path, &cfg, &err), -1);
	ck_assert_ptr_null(cfg);
	ck_assert_int_eq(err.cls, ERR_CONFIG);
	snprintf(want, sizeof(want), "%s: cannot open: %s", path, strerror(ENOENT));
	ck_assert_str_eq(err.msg, want);

	/* A directory is not a config file. */
	ck_assert_int_eq(config_load(tmpdir, &cfg, &err), -1);
	ck_assert_int_eq(err.cls, ERR_CONFIG);
	ck_assert_ptr_nonnull(strstr(err.msg, tmpdir));
}
END_TEST

/* --- good configs -------------------------------------------------------- */

static const char full_conf[] =
	"# a full configuration\n"
	"hostname = mx.example.org\n"
	"domain = \"example.org\"\n"
	"queue_dir = /var/tmp/q\n"
	"aliases = '/etc/mail/aliases'\n"
	"queue_lifetime = 2d\n"
	"retry = { 30s, 2m,   # comments inside lists work\n"
	"          1h, 90 }\n"
	"max_message_size = 10M\n"
	"delivery = FOREGROUND\n"
	"log = /var/log/relayq.log\n"
	"sender_rewrite = \"bounce@example.org\"\n"
	"sender_from_header = yes\n"
	"max_header_size = 64K\n"
	"max_headers = 200\n"
	"max_recipients = 50\n"
	"max_alias_expansions = 300\n"
	"max_smtp_line = 512\n"
	"max_reply_lines = 10000\n"
	"max_reply_line = 65536\n"
	"\n"
	"smarthost first {\n"
	"  host = \"smtp.example.org\"\n"
	"  username = \"web1@example.org\"\n"
	"  password = \"pw with spaces\"\n"
	"  auth = { scram-sha-256, Plain, LOGIN, plain }\n"
	"  tls_fingerprint = \"SHA256:AB:CD:EF:01:23:45:67:89:ab:cd:ef:01:23:45:67"
	":89:AB:CD:EF:01:23:45:67:89:ab:cd:ef:01:23:45:67:89\"\n"
	"  tls_ca_file = /etc/ssl/ca.pem\n"
	"  tls_ca_path = /etc/ssl/certs\n"
	"  sessions = 4\n"
	"}\n"
	"smarthost second {\n"
	"  host = [::1]\n"
	"  tls = smtps\n"
	"  tls_verify = false\n"
	"  tls_min_version = 1.3\n"
	"  tls_cert_file = /etc/c.pem\n"
	"  tls_key_file = /etc/c.key\n"
	"  timeout = 90\n"
	"  connect_timeout = 1m\n"
	"  sessions = 32\n"
	"}\n"
	"smarthost third {\n"
	"  host = 127.0.0.1\n"
	"  tls = none\n"
	"  username = u\n"
	"  password_command = \"/usr/bin/pass show smtp\"\n"
	"  port = 2525\n"
	"}\n"
	"smarthost fourth { host = localhost  tls = none  username = u  "
	"password_file = /etc/relayq.secret }\n";

static void
assert_full(const struct config *c, const char *password0)
{
	const struct smarthost *s;

	ck_assert_str_eq(c->hostname, "mx.example.org");
	ck_assert_str_eq(c->domain, "example.org");
	ck_assert_str_eq(c->queue_dir, "/var/tmp/q");
	ck_assert_str_eq(c->aliases, "/etc/mail/aliases");
	ck_assert_int_eq(c->queue_lifetime, 2 * 86400);
	ck_assert_uint_eq(c->nretry, 4);
	ck_assert_int_eq(c->retry[0], 30);
	ck_assert_int_eq(c->retry[1], 120);
	ck_assert_int_eq(c->retry[2], 3600);
	ck_assert_int_eq(c->retry[3], 90);
	ck_assert(c->max_message_size == 10ULL * 1024 * 1024);
	ck_assert_int_eq(c->delivery, DELIVERY_FOREGROUND);
	ck_assert_str_eq(c->log, "/var/log/relayq.log");
	ck_assert_str_eq(c->sender_rewrite, "bounce@example.org");
	ck_assert_int_eq(c->sender_from_header, 1);
	ck_assert(c->max_header_size == 64ULL * 1024);
	ck_assert_int_eq(c->max_headers, 200);
	ck_assert_int_eq(c->max_recipients, 50);
	ck_assert_int_eq(c->max_alias_expansions, 300);
	ck_assert_int_eq(c->max_smtp_line, 512);
	ck_assert_int_eq(c->max_reply_lines, 10000);
	ck_assert_int_eq(c->max_reply_line, 65536);

	ck_assert_uint_eq(c->nsmarthosts, 4);
	s = &c->smarthosts[0];
	ck_assert_str_eq(s->name, "first");
	ck_assert_str_eq(s->host, "smtp.example.org");
	ck_assert_int_eq(s->port, 587);
	ck_assert_int_eq(s->tls, TLS_STARTTLS);
	ck_assert_int_eq(s->tls_verify, 1);
	ck_assert_str_eq(s->tls_min_version, "1.2");
	ck_assert_str_eq(s->username, "web1@example.org");
	ck_assert_str_eq(s->password, password0);
	ck_assert_ptr_null(s->password_file);
	ck_assert_ptr_null(s->password_command);
	ck_assert_uint_eq(s->auth.n, 3);
	ck_assert_str_eq(s->auth.v[0], "SCRAM-SHA-256");
	ck_assert_str_eq(s->auth.v[1], "PLAIN");
	ck_assert_str_eq(s->auth.v[2], "LOGIN");
	ck_assert_str_eq(s->tls_fingerprint, "sha256:abcdef0123456789abcdef0123"
	    "456789abcdef0123456789abcdef0123456789");
	ck_assert_str_eq(s->tls_ca_file, "/etc/ssl/ca.pem");
	ck_assert_str_eq(s->tls_ca_path, "/etc/ssl/certs");
	ck_assert_ptr_null(s->tls_cert_file);
	ck_assert_int_eq(s->timeout, 300);
	ck_assert_int_eq(s->connect_timeout, 30);
	ck_assert_int_eq(s->sessions, 4);

	s = &c->smarthosts[1];
	ck_assert_str_eq(s->name, "second");
	ck_assert_str_eq(s->host, "::1");
	ck_assert_int_eq(s->port, 465);
	ck_assert_int_eq(s->tls, TLS_SMTPS);
	ck_assert_int_eq(s->tls_verify, 0);
	ck_assert_str_eq(s->tls_min_version, "1.3");
	ck_assert_str_eq(s->tls_cert_file, "/etc/c.pem");
	ck_assert_str_eq(s->tls_key_file, "/etc/c.key");
	ck_assert_ptr_null(s->username);
	ck_assert_ptr_null(s->password);
	ck_assert_uint_eq(s->auth.n, 0);
	ck_assert_int_eq(s->timeout, 90);
	ck_assert_int_eq(s->connect_timeout, 60);
	ck_assert_int_eq(s->sessions, 32);

	s = &c->smarthosts[2];
	ck_assert_str_eq(s->name, "third");
	ck_assert_str_eq(s->host, "127.0.0.1");
	ck_assert_int_eq(s->tls, TLS_NONE);
	ck_assert_int_eq(s->port, 2525);
	ck_assert_str_eq(s->password_command, "/usr/bin/pass show smtp");
	ck_assert_int_eq(s->sessions, 1);

	s = &c->smarthosts[3];
	ck_assert_str_eq(s->name, "fourth");
	ck_assert_int_eq(s->port, 25);
	ck_assert_str_eq(s->password_file, "/etc/relayq.secret");
}

START_TEST(test_full)
{
	struct config *c = load_ok(full_conf);

	ck_assert_str_eq(c->path, conf_path);
	assert_full(c, "pw with spaces");
	config_free(c);
}
END_TEST

/* Built-in defaults, as documented in config.h and etc/relayq.conf. */
static void
assert_defaults(const struct config *c)
{
	ck_assert(c->hostname != NULL && c->hostname[0] != '\0');
	ck_assert_str_eq(c->domain, c->hostname);
	ck_assert_str_eq(c->queue_dir, SPOOLDIR);
	ck_assert_str_eq(c->aliases, "/etc/aliases");
	ck_assert_int_eq(c->queue_lifetime, 5 * 86400);
	ck_assert_uint_eq(c->nretry, 5);
	ck_assert_int_eq(c->retry[0], 60);
	ck_assert_int_eq(c->retry[1], 300);
	ck_assert_int_eq(c->retry[2], 900);
	ck_assert_int_eq(c->retry[3], 3600);
	ck_assert_int_eq(c->retry[4], 4 * 3600);
	ck_assert(c->max_message_size == 50ULL * 1024 * 1024);
	ck_assert_int_eq(c->delivery, DELIVERY_BACKGROUND);
	ck_assert_str_eq(c->log, "syslog");
	ck_assert_ptr_null(c->sender_rewrite);
	ck_assert_int_eq(c->sender_from_header, 0);
	ck_assert(c->max_header_size == 1024ULL * 1024);
	ck_assert_int_eq(c->max_headers, 1000);
	ck_assert_int_eq(c->max_recipients, 1000);
	ck_assert_int_eq(c->max_alias_expansions, 1000);
	ck_assert_int_eq(c->max_smtp_line, 1024);
	ck_assert_int_eq(c->max_reply_lines, 100);
	ck_assert_int_eq(c->max_reply_line, 2048);
	ck_assert_uint_eq(c->nsmarthosts, 0);
}

START_TEST(test_defaults)
{
	struct config *c = load_ok("");

	assert_defaults(c);
	config_free(c);
}
END_TEST

START_TEST(test_smarthost_defaults)
{
	struct config *c = load_ok("hostname = h.example\n"
	    "smarthost only { host = smtp.example.net }\n");
	const struct smarthost *s = &c->smarthosts[0];

	ck_assert_str_eq(c->domain, "h.example");
	ck_assert_uint_eq(c->nsmarthosts, 1);
	ck_assert_int_eq(s->port, 587);
	ck_assert_int_eq(s->tls, TLS_STARTTLS);
	ck_assert_int_eq(s->tls_verify, 1);
	ck_assert_str_eq(s->tls_min_version, "1.2");
	ck_assert_ptr_null(s->tls_ca_file);
	ck_assert_ptr_null(s->tls_ca_path);
	ck_assert_ptr_null(s->tls_fingerprint);
	ck_assert_ptr_null(s->tls_cert_file);
	ck_assert_ptr_null(s->tls_key_file);
	ck_assert_ptr_null(s->username);
	ck_assert_ptr_null(s->password);
	ck_assert_uint_eq(s->auth.n, 0);
	ck_assert_int_eq(s->timeout, 300);
	ck_assert_int_eq(s->connect_timeout, 30);
	ck_assert_int_eq(s->sessions, 1);
	config_free(c);
}
END_TEST

/* "+=" appends to the default retry list; '...' keeps "${" literal. */
START_TEST(test_append_and_quotes)
{
	struct config *c = load_ok("retry += { 1d }\n"
	    "sender_rewrite = 'a${b}c'\n");

	ck_assert_uint_eq(c->nretry, 6);
	ck_assert_int_eq(c->retry[5], 86400);
	ck_assert_str_eq(c->sender_rewrite, "a${b}c");
	config_free(c);
	c = load_ok("sender_rewrite = \"x${HOME}y\"\n");
	ck_assert_str_eq(c->sender_rewrite, "x${HOME}y");
	config_free(c);
}
END_TEST

/* The shipped sample documents every key and changes nothing. */
START_TEST(test_sample)
{
	static const char *const keys[] = {
		"hostname", "domain", "queue_dir", "aliases", "queue_lifetime",
		"retry", "max_message_size", "delivery", "log", "sender_rewrite",
		"sender_from_header", "max_header_size", "max_headers",
		"max_recipients", "max_alias_expansions", "max_smtp_line",
		"max_reply_lines", "max_reply_line", "smarthost", "host",
		"port", "tls", "tls_verify", "tls_ca_file", "tls_ca_path",
		"tls_fingerprint", "tls_min_version", "tls_cert_file",
		"tls_key_file", "username", "password", "password_file",
		"password_command", "auth", "timeout", "connect_timeout",
		"sessions", "tls_session_cache",
	};
	const char *srcdir = getenv("RELAYQ_SRCDIR");
	struct config *sample = NULL, *defaults;
	struct err err;
	char path[512], *text;
	FILE *f;
	long len;

	snprintf(path, sizeof(path), "%s/etc/relayq.conf", srcdir ? srcdir : ".");
	if (config_load(path, &sample, &err) != 0)
		ck_abort_msg("sample refused: %s", err.msg);
	defaults = load_ok("");
	assert_defaults(sample);
	ck_assert_str_eq(sample->hostname, defaults->hostname);

	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	text = calloc(1, (size_t)len + 1);
	ck_assert_uint_eq(fread(text, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char pat[64];

		snprintf(pat, sizeof(pat), "#%s %s", keys[i],
		    strcmp(keys[i], "smarthost") == 0 ? "primary {" : "=");
		if (strstr(text, pat) == NULL) {
			snprintf(pat, sizeof(pat), "#    %s =", keys[i]);
			ck_assert_msg(strstr(text, pat) != NULL,
			    "key %s is not documented in the sample", keys[i]);
		}
	}
	free(text);
	config_free(sample);
	config_free(defaults);
}
END_TEST

/* --- config_print -------------------------------------------------------- */

static char *
print_to_string(const struct config *c)
{
	char *out = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&out, &size);

	ck_assert_ptr_nonnull(f);
	config_print(f, c);
	ck_assert_int_eq(fclose(f), 0);
	return out;
}

START_TEST(test_print_masks_password)
{
	static const char secret[] = "Zq9-s3cret-pw";
	char text[256], *out;
	struct config *c;

	snprintf(text, sizeof(text), "smarthost a {\n host = h.example\n"
	    " username = u\n password = \"%s\"\n}\n", secret);
	c = load_ok(text);
	ck_assert_str_eq(c->smarthosts[0].password, secret);
	out = print_to_string(c);
	ck_assert_msg(strstr(out, secret) == NULL, "secret printed:\n%s", out);
	ck_assert_ptr_nonnull(strstr(out, "password = \"********\""));
	free(out);
	config_free(c);
}
END_TEST

/* Printed output reads back to the same configuration. */
START_TEST(test_print_roundtrip)
{
	struct config *c = load_ok(full_conf), *again = NULL;
	char *out = print_to_string(c);
	char path[160];
	struct err err;

	snprintf(path, sizeof(path), "%s/printed.conf", tmpdir);
	write_file(path, out, strlen(out));
	if (config_load(path, &again, &err) != 0)
		ck_abort_msg("printed config refused: %s\n%s", err.msg, out);
	assert_full(again, "********");
	free(out);
	config_free(c);
	config_free(again);
}
END_TEST

START_TEST(test_print_roundtrip_defaults)
{
	struct config *c = load_ok(""), *again = NULL;
	char *out = print_to_string(c);
	char path[160];
	struct err err;

	ck_assert_ptr_nonnull(strstr(out, "queue_lifetime = 5d\n"));
	ck_assert_ptr_nonnull(strstr(out, "retry = { 1m, 5m, 15m, 1h, 4h }\n"));
	ck_assert_ptr_nonnull(strstr(out, "max_message_size = 50M\n"));
	ck_assert_ptr_nonnull(strstr(out, "delivery = background\n"));
	ck_assert_ptr_nonnull(strstr(out, "max_smtp_line = 1024\n"));
	ck_assert_ptr_nonnull(strstr(out, "max_reply_lines = 100\n"));
	ck_assert_ptr_nonnull(strstr(out, "max_reply_line = 2048\n"));
	ck_assert_ptr_nonnull(strstr(out, "# sender_rewrite is not set\n"));
	snprintf(path, sizeof(path), "%s/printed.conf", tmpdir);
	write_file(path, out, strlen(out));
	if (config_load(path, &again, &err) != 0)
		ck_abort_msg("printed config refused: %s\n%s", err.msg, out);
	assert_defaults(again);
	ck_assert_str_eq(again->hostname, c->hostname);
	free(out);
	config_free(c);
	config_free(again);
}
END_TEST

/* Quotes, backslashes and "${" in values survive printing. */
START_TEST(test_print_escapes)
{
	struct config *c = load_ok("sender_rewrite = 'we\"ird\\\\${x}'\n"
	    "smarthost a { host = h.example username = 'u\"\\\\' "
	    "password_file = /etc/p }\n"), *again = NULL;
	char *out = print_to_string(c);
	char path[160];
	struct err err;

	ck_assert_str_eq(c->sender_rewrite, "we\"ird\\${x}");
	snprintf(path, sizeof(path), "%s/printed.conf", tmpdir);
	write_file(path, out, strlen(out));
	if (config_load(path, &again, &err) != 0)
		ck_abort_msg("printed config refused: %s\n%s", err.msg, out);
	ck_assert_str_eq(again->sender_rewrite, c->sender_rewrite);
	ck_assert_str_eq(again->smarthosts[0].username, "u\"\\");
	free(out);
	config_free(c);
	config_free(again);
}
END_TEST

/* --- host_is_loopback ---------------------------------------------------- */

static const struct {
	const char *host;
	int loopback;
} loopback[] = {
	{ "localhost", 1 }, { "LocalHost", 1 }, { "127.0.0.1", 1 },
	{ "127.1.2.3", 1 }, { "127.255.255.255", 1 }, { "::1", 1 },
	{ "[::1]", 1 }, { "0:0:0:0:0:0:0:1", 1 }, { "::ffff:127.0.0.1", 1 },
	{ "128.0.0.1", 0 }, { "126.255.255.255", 0 }, { "10.0.0.1", 0 },
	{ "0.0.0.0", 0 }, { "::", 0 }, { "::2", 0 }, { "[::1", 0 },
	{ "::1]", 0 }, { "localhost.example.com", 0 }, { "mylocalhost", 0 },
	{ "127.0.0.256", 0 }, { "127.1", 0 }, { "", 0 }, { "::ffff:10.0.0.1", 0 },
};

START_TEST(test_loopback)
{
	ck_assert_msg(host_is_loopback(loopback[_i].host) == loopback[_i].loopback,
	    "host_is_loopback(\"%s\") != %d", loopback[_i].host,
	    loopback[_i].loopback);
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc;

	tc = tcase_create("bad");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_bad, 0, (int)(sizeof(bad) / sizeof(bad[0])));
	tcase_add_test(tc, test_bad_password_not_echoed);
	tcase_add_test(tc, test_nul_byte);
	tcase_add_test(tc, test_missing_file);
	suite_add_tcase(s, tc);

	tc = tcase_create("good");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_full);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_smarthost_defaults);
	tcase_add_test(tc, test_append_and_quotes);
	tcase_add_test(tc, test_sample);
	suite_add_tcase(s, tc);

	tc = tcase_create("print");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_print_masks_password);
	tcase_add_test(tc, test_print_roundtrip);
	tcase_add_test(tc, test_print_roundtrip_defaults);
	tcase_add_test(tc, test_print_escapes);
	suite_add_tcase(s, tc);

	tc = tcase_create("loopback");
	tcase_add_loop_test(tc, test_loopback, 0,
	    (int)(sizeof(loopback) / sizeof(loopback[0])));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
