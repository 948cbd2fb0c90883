/*
 * check_cli.c - the sendmail command line: one table of argv vectors, as
 * real callers (cron, PHP, git, mutt, Symfony, Alpine, mdadm) and sendmail
 * and Postfix documentation write them, with the request or the usage
 * error each one must produce.
 */
#include "autoconf.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define S10 "0123456789"
#define S90 S10 S10 S10 S10 S10 S10 S10 S10 S10
#define S100 S90 S10

struct pcase {
	const char *name;
	const char *argv[40];       /* argv[0] picks the personality */
	const char *err;            /* set: ERR_USAGE whose message has this */
	enum mode mode;
	int extract, dots, verbose, nofix;
	const char *sender, *full_name, *config, *log_path;
	enum deliver_opt deliver;
	char emode;
	const char *body, *notify, *ret, *envid;
	unsigned nmask;
	long qint;
	int qforce;
	const char *qid;
	const char *rcpts[8];
};

static const struct pcase cases[] = {
	/* --- real callers --------------------------------------------------- */
	{ "cron", { "sendmail", "-FCronDaemon", "-i", "-B8BITMIME", "-oem",
	    "root" }, .full_name = "CronDaemon", .dots = 1, .body = "8BITMIME",
	    .emode = 'm', .rcpts = { "root" } },
	{ "cronie", { "/usr/sbin/sendmail", "-FCronDaemon", "-i", "-odi", "-oem",
	    "-oi", "-t", "-f", "root" }, .full_name = "CronDaemon", .dots = 1,
	    .deliver = DELIVER_FOREGROUND, .emode = 'm', .extract = 1,
	    .sender = "root" },
	{ "php", { "/usr/sbin/sendmail", "-t", "-i" }, .extract = 1, .dots = 1 },
	{ "php -f", { "/usr/sbin/sendmail", "-t", "-i", "-f", "x@y" },
	    .extract = 1, .dots = 1, .sender = "x@y" },
	{ "git send-email", { "/usr/sbin/sendmail", "-i", "a@b", "c@d" },
	    .dots = 1, .rcpts = { "a@b", "c@d" } },
	{ "mutt", { "sendmail", "-oem", "-oi", "--", "a@b" }, .emode = 'm',
	    .dots = 1, .rcpts = { "a@b" } },
	{ "symfony", { "/usr/sbin/sendmail", "-bs" }, .mode = MODE_SMTP },
	{ "alpine", { "/usr/sbin/sendmail", "-bs", "-odb", "-oem" },
	    .mode = MODE_SMTP, .deliver = DELIVER_BACKGROUND, .emode = 'm' },
	{ "mdadm", { "/usr/sbin/sendmail", "-t" }, .extract = 1 },

	/* --- flags, bundled ------------------------------------------------- */
	{ "-ti", { "sendmail", "-ti" }, .extract = 1, .dots = 1 },
	{ "-tiv", { "sendmail", "-tiv" }, .extract = 1, .dots = 1, .verbose = 1 },
	{ "-v -vv", { "sendmail", "-v", "-vv", "a@b" }, .verbose = 3,
	    .rcpts = { "a@b" } },
	{ "-G", { "sendmail", "-G", "a@b" }, .nofix = 1, .rcpts = { "a@b" } },
	{ "-Gti", { "sendmail", "-Gti" }, .nofix = 1, .extract = 1, .dots = 1 },

	/* --- sender and full name ------------------------------------------- */
	{ "-f glued", { "sendmail", "-fuser@x", "a@b" }, .sender = "user@x",
	    .rcpts = { "a@b" } },
	{ "-f separate", { "sendmail", "-f", "user@x", "a@b" },
	    .sender = "user@x", .rcpts = { "a@b" } },
	{ "-r separate", { "sendmail", "-r", "old@x", "a@b" },
	    .sender = "old@x", .rcpts = { "a@b" } },
	{ "-r glued", { "sendmail", "-rold@x", "a@b" }, .sender = "old@x",
	    .rcpts = { "a@b" } },
	{ "-f glued in cluster", { "sendmail", "-tifx@y" }, .extract = 1,
	    .dots = 1, .sender = "x@y" },
	{ "-f ends cluster", { "sendmail", "-tf", "x@y" }, .extract = 1,
	    .sender = "x@y" },
	{ "-f null sender", { "sendmail", "-f", "<>", "a@b" }, .sender = "<>",
	    .rcpts = { "a@b" } },
	{ "-f empty", { "sendmail", "-f", "", "a@b" }, .sender = "",
	    .rcpts = { "a@b" } },
	{ "-f takes a dash argument", { "sendmail", "-f", "-t", "a@b" },
	    .sender = "-t", .rcpts = { "a@b" } },
	{ "-f last wins", { "sendmail", "-f", "one@x", "-rtwo@x", "a@b" },
	    .sender = "two@x", .rcpts = { "a@b" } },
	{ "-F separate", { "sendmail", "-F", "Cron Daemon", "a@b" },
	    .full_name = "Cron Daemon", .rcpts = { "a@b" } },
	{ "-F glued", { "sendmail", "-FCron Daemon", "a@b" },
	    .full_name = "Cron Daemon", .rcpts = { "a@b" } },

	/* --- files ---------------------------------------------------------- */
	{ "-C separate", { "sendmail", "-C", "/tmp/r.conf", "a@b" },
	    .config = "/tmp/r.conf", .rcpts = { "a@b" } },
	{ "-C glued", { "sendmail", "-C/tmp/r.conf", "a@b" },
	    .config = "/tmp/r.conf", .rcpts = { "a@b" } },
	{ "-X separate", { "sendmail", "-X", "/tmp/log", "a@b" },
	    .log_path = "/tmp/log", .rcpts = { "a@b" } },
	{ "-X glued", { "sendmail", "-X/tmp/log", "a@b" },
	    .log_path = "/tmp/log", .rcpts = { "a@b" } },

	/* --- DSN and body --------------------------------------------------- */
	{ "-B separate", { "sendmail", "-B", "8BITMIME", "a@b" },
	    .body = "8BITMIME", .rcpts = { "a@b" } },
	{ "-B lower case", { "sendmail", "-B", "7bit", "a@b" }, .body = "7BIT",
	    .rcpts = { "a@b" } },
	{ "-B glued lower", { "sendmail", "-B8bitmime", "a@b" },
	    .body = "8BITMIME", .rcpts = { "a@b" } },
	{ "-N separate", { "sendmail", "-N", "success,failure", "a@b" },
	    .notify = "success,failure",
	    .nmask = NOTIFY_SUCCESS | NOTIFY_FAILURE, .rcpts = { "a@b" } },
	{ "-N glued never", { "sendmail", "-Nnever", "a@b" }, .notify = "never",
	    .nmask = NOTIFY_NEVER, .rcpts = { "a@b" } },
	{ "-N mixed case", { "sendmail", "-N", "DELAY,Failure,success", "a@b" },
	    .notify = "DELAY,Failure,success",
	    .nmask = NOTIFY_DELAY | NOTIFY_FAILURE | NOTIFY_SUCCESS,
	    .rcpts = { "a@b" } },
	{ "-R separate", { "sendmail", "-R", "hdrs", "a@b" }, .ret = "HDRS",
	    .rcpts = { "a@b" } },
	{ "-R glued", { "sendmail", "-RFULL", "a@b" }, .ret = "FULL",
	    .rcpts = { "a@b" } },
	{ "-V separate", { "sendmail", "-V", "env42", "a@b" }, .envid = "env42",
	    .rcpts = { "a@b" } },
	{ "-V glued", { "sendmail", "-Vq1.x!~", "a@b" }, .envid = "q1.x!~",
	    .rcpts = { "a@b" } },
	{ "-V 100 chars", { "sendmail", "-V", S100, "a@b" }, .envid = S100,
	    .rcpts = { "a@b" } },
	{ "-V + counts as 3", { "sendmail", "-V", "+" S90 "0123456", "a@b" },
	    .envid = "+" S90 "0123456", .rcpts = { "a@b" } },

	/* --- delivery and error modes --------------------------------------- */
	{ "-odb", { "sendmail", "-odb", "a@b" }, .deliver = DELIVER_BACKGROUND,
	    .rcpts = { "a@b" } },
	{ "-odi", { "sendmail", "-odi", "a@b" }, .deliver = DELIVER_FOREGROUND,
	    .rcpts = { "a@b" } },
	{ "-odq", { "sendmail", "-odq", "a@b" }, .deliver = DELIVER_QUEUE,
	    .rcpts = { "a@b" } },
	{ "-odd", { "sendmail", "-odd", "a@b" }, .deliver = DELIVER_QUEUE,
	    .rcpts = { "a@b" } },
	{ "-od bare", { "sendmail", "-od", "a@b" },
	    .deliver = DELIVER_FOREGROUND, .rcpts = { "a@b" } },
	{ "-odbackground", { "sendmail", "-odbackground", "a@b" },
	    .deliver = DELIVER_BACKGROUND, .rcpts = { "a@b" } },
	{ "-o db separate", { "sendmail", "-o", "db", "a@b" },
	    .deliver = DELIVER_BACKGROUND, .rcpts = { "a@b" } },
	{ "-od last wins", { "sendmail", "-odq", "-odi", "a@b" },
	    .deliver = DELIVER_FOREGROUND, .rcpts = { "a@b" } },
	{ "-oep", { "sendmail", "-oep", "a@b" }, .emode = 'p',
	    .rcpts = { "a@b" } },
	{ "-oeq", { "sendmail", "-oeq", "a@b" }, .emode = 'q',
	    .rcpts = { "a@b" } },
	{ "-oew", { "sendmail", "-oew", "a@b" }, .emode = 'w',
	    .rcpts = { "a@b" } },
	{ "-oee", { "sendmail", "-oee", "a@b" }, .emode = 'e',
	    .rcpts = { "a@b" } },
	{ "-oe bare", { "sendmail", "-oe", "a@b" }, .emode = 'p',
	    .rcpts = { "a@b" } },
	{ "-em", { "sendmail", "-em", "a@b" }, .emode = 'm',
	    .rcpts = { "a@b" } },
	{ "-e q separate", { "sendmail", "-e", "q", "a@b" }, .emode = 'q',
	    .rcpts = { "a@b" } },
	{ "-oi", { "sendmail", "-oi", "a@b" }, .dots = 1, .rcpts = { "a@b" } },
	{ "-oitrue", { "sendmail", "-oitrue", "a@b" }, .dots = 1,
	    .rcpts = { "a@b" } },
	{ "-o i separate", { "sendmail", "-o", "i", "a@b" }, .dots = 1,
	    .rcpts = { "a@b" } },
	{ "-oifalse undoes -i", { "sendmail", "-i", "-oifalse", "a@b" },
	    .rcpts = { "a@b" } },

	/* --- accepted and ignored ------------------------------------------- */
	{ "ignored options", { "sendmail", "-m", "-om", "-o7", "-o8",
	    "-oA/etc/aliases", "-oL9", "-oQ/tmp", "-U", "-Ac", "-A", "m",
	    "-h", "17", "-h17", "-L", "tag", "-Ltag", "-O", "DeliveryMode=q",
	    "-n", "-x", "-p", "smtp:host", "-ps", "-s", "-c", "-T", "-T5m",
	    "-d", "-d0.1", "a@b" }, .rcpts = { "a@b" } },
	{ "ignored flags bundled", { "sendmail", "-mnUxscti" }, .extract = 1,
	    .dots = 1 },
	{ "-d ends the cluster", { "sendmail", "-d0.1ti", "a@b" },
	    .rcpts = { "a@b" } },

	/* --- -b modes ------------------------------------------------------- */
	{ "-bm", { "sendmail", "-bm", "a@b" }, .rcpts = { "a@b" } },
	{ "-bp", { "sendmail", "-bp" }, .mode = MODE_LIST },
	{ "-b p separate", { "sendmail", "-b", "p" }, .mode = MODE_LIST },
	{ "-bi", { "sendmail", "-bi" }, .mode = MODE_NEWALIASES },
	{ "-I", { "sendmail", "-I" }, .mode = MODE_NEWALIASES },
	{ "-bP", { "sendmail", "-bP" }, .mode = MODE_PRINT_CONFIG },
	{ "-bs", { "sendmail", "-bs" }, .mode = MODE_SMTP },
	{ "-bv", { "sendmail", "-bv", "a@b", "c@d" }, .mode = MODE_VERIFY,
	    .rcpts = { "a@b", "c@d" } },
	{ "-bv -t", { "sendmail", "-bv", "-t" }, .mode = MODE_VERIFY,
	    .extract = 1 },
	{ "-bh", { "sendmail", "-bh" }, .mode = MODE_NOOP },
	{ "-bH", { "sendmail", "-bH" }, .mode = MODE_NOOP },
	{ "-bd", { "sendmail", "-bd" }, .mode = MODE_UNAVAILABLE },
	{ "-bD", { "sendmail", "-bD" }, .mode = MODE_UNAVAILABLE },
	{ "-bt", { "sendmail", "-bt" }, .err = "unsupported mode -bt" },
	{ "-ba", { "sendmail", "-ba" }, .err = "unsupported mode -ba" },
	{ "-bx", { "sendmail", "-bx", "a@b" }, .err = "unsupported mode -bx" },
	{ "-bpx", { "sendmail", "-bpx" }, .err = "unsupported mode -bpx" },
	{ "-b empty", { "sendmail", "-b", "" }, .err = "unsupported mode -b" },
	{ "-b missing", { "sendmail", "-b" },
	    .err = "option -b requires an argument" },

	/* --- queue runs ----------------------------------------------------- */
	{ "-q", { "sendmail", "-q" }, .mode = MODE_QUEUE_RUN },
	{ "-q15m", { "sendmail", "-q15m" }, .mode = MODE_QUEUE_RUN,
	    .qint = 900 },
	{ "-q 15m", { "sendmail", "-q", "15m" }, .mode = MODE_QUEUE_RUN,
	    .qint = 900 },
	{ "-q1h", { "sendmail", "-q1h" }, .mode = MODE_QUEUE_RUN, .qint = 3600 },
	{ "-q30 is minutes", { "sendmail", "-q30" }, .mode = MODE_QUEUE_RUN,
	    .qint = 1800 },
	{ "-q0", { "sendmail", "-q0" }, .mode = MODE_QUEUE_RUN },
	{ "-qIABC", { "sendmail", "-qIABC" }, .mode = MODE_QUEUE_RUN,
	    .qid = "ABC" },
	{ "-qf", { "sendmail", "-qf" }, .mode = MODE_QUEUE_RUN, .qforce = 1 },
	{ "-qfIABC", { "sendmail", "-qfIABC" }, .mode = MODE_QUEUE_RUN,
	    .qforce = 1, .qid = "ABC" },
	{ "-qRfoo", { "sendmail", "-qRfoo" }, .mode = MODE_QUEUE_RUN },
	{ "-qSfoo", { "sendmail", "-qSfoo" }, .mode = MODE_QUEUE_RUN },
	{ "-vq bundled", { "sendmail", "-vq" }, .mode = MODE_QUEUE_RUN,
	    .verbose = 1 },
	{ "-q -v", { "sendmail", "-q", "-v" }, .mode = MODE_QUEUE_RUN,
	    .verbose = 1 },
	{ "-qI empty", { "sendmail", "-qI" }, .err = "-qI requires a queue id" },
	{ "-qp", { "sendmail", "-qp" }, .err = "-qp is not supported" },
	{ "-q1x", { "sendmail", "-q1x" }, .err = "bad queue interval \"1x\"" },
	{ "-q 1x", { "sendmail", "-q", "1x" },
	    .err = "bad queue interval \"1x\"" },
	{ "-qI with interval", { "sendmail", "-q15m", "-qIABC" },
	    .err = "cannot be combined" },
	{ "-q with recipient", { "sendmail", "-q", "foo" },
	    .err = "queue run (-q, runq) takes no recipient arguments" },

	/* --- last mode wins ------------------------------------------------- */
	{ "-bp then -q", { "sendmail", "-bp", "-q" }, .mode = MODE_QUEUE_RUN },
	{ "-q then -bp", { "sendmail", "-q15m", "-bp" }, .mode = MODE_LIST,
	    .qint = 900 },
	{ "-bs then -bm", { "sendmail", "-bs", "-bm", "-t" }, .extract = 1 },
	{ "mailq -bm", { "mailq", "-bm", "a@b" }, .rcpts = { "a@b" } },
	{ "newaliases -bp", { "newaliases", "-bp" }, .mode = MODE_LIST },

	/* --- personalities -------------------------------------------------- */
	{ "mailq", { "mailq" }, .mode = MODE_LIST },
	{ "mailq -v", { "/usr/bin/mailq", "-v" }, .mode = MODE_LIST,
	    .verbose = 1 },
	{ "newaliases", { "/usr/bin/newaliases" }, .mode = MODE_NEWALIASES },
	{ "runq", { "runq" }, .mode = MODE_QUEUE_RUN },
	{ "runq -q15m", { "/usr/sbin/runq", "-q15m" }, .mode = MODE_QUEUE_RUN,
	    .qint = 900 },
	{ "/usr/lib/sendmail", { "/usr/lib/sendmail", "a@b" },
	    .rcpts = { "a@b" } },
	{ "relayq", { "relayq", "a@b" }, .rcpts = { "a@b" } },
	{ "mailq with recipient", { "mailq", "x@y" },
	    .err = "queue listing (-bp, mailq) takes no recipient arguments" },
	{ "newaliases with arg", { "newaliases", "x" },
	    .err = "takes no recipient arguments" },
	{ "-bs with recipient", { "sendmail", "-bs", "a@b" },
	    .err = "SMTP mode (-bs) takes no recipient arguments" },
	{ "-bP with recipient", { "sendmail", "-bP", "a@b" },
	    .err = "-bP takes no recipient arguments" },

	/* --- long options --------------------------------------------------- */
	{ "--version", { "sendmail", "--version" }, .mode = MODE_VERSION },
	{ "--help", { "sendmail", "--help" }, .mode = MODE_HELP },
	{ "mailq --version", { "mailq", "--version" }, .mode = MODE_VERSION },
	{ "--version with more", { "sendmail", "--version", "a@b" },
	    .err = "--version takes no other arguments" },
	{ "--help not first", { "sendmail", "-v", "--help" },
	    .err = "illegal option --help" },
	{ "--foo", { "sendmail", "--foo", "a@b" }, .err = "illegal option --foo" },

	/* --- relayq's tools: first argument, then -v/-C, then operands ------ */
	{ "--show", { "relayq", "--show", "0A1B2C3D4E5F60718" }, .mode = MODE_SHOW,
	    .rcpts = { "0A1B2C3D4E5F60718" } },
	{ "--show two", { "relayq", "--show", "A", "B" }, .mode = MODE_SHOW,
	    .rcpts = { "A", "B" } },
	{ "--delete ALL", { "relayq", "--delete", "ALL" }, .mode = MODE_DELETE,
	    .rcpts = { "ALL" } },
	{ "--retry", { "/usr/sbin/sendmail", "--retry", "X" }, .mode = MODE_RETRY,
	    .rcpts = { "X" } },
	{ "--hold -v", { "relayq", "--hold", "-v", "X" }, .mode = MODE_HOLD,
	    .verbose = 1, .rcpts = { "X" } },
	{ "--release -C", { "relayq", "--release", "-C", "/etc/r.conf", "ALL" },
	    .mode = MODE_RELEASE, .config = "/etc/r.conf", .rcpts = { "ALL" } },
	{ "--requeue -C glued -vv --", { "relayq", "--requeue", "-C/x.conf",
	    "-vv", "--", "-x" }, .mode = MODE_REQUEUE, .config = "/x.conf",
	    .verbose = 2, .rcpts = { "-x" } },
	{ "mailq --summary", { "mailq", "--summary" }, .mode = MODE_SUMMARY },
	{ "--summary -C", { "relayq", "--summary", "-C", "f" },
	    .mode = MODE_SUMMARY, .config = "f" },
	{ "--test", { "relayq", "--test" }, .mode = MODE_SELFTEST },
	{ "--test address", { "relayq", "--test", "a@b" }, .mode = MODE_SELFTEST,
	    .rcpts = { "a@b" } },
	{ "--test -v --", { "sendmail", "--test", "-v", "--" },
	    .mode = MODE_SELFTEST, .verbose = 1 },
	{ "--deliver", { "sendmail", "--deliver", "A", "B" },
	    .mode = MODE_DELIVER, .rcpts = { "A", "B" } },
	{ "--deliver -C", { "sendmail", "--deliver", "-C", "/r.conf", "A" },
	    .mode = MODE_DELIVER, .config = "/r.conf", .rcpts = { "A" } },
	{ "--deliver no id", { "sendmail", "--deliver" },
	    .err = "--deliver takes a queue id (or several)" },
	{ "--deliver ALL", { "sendmail", "--deliver", "ALL" },
	    .err = "--deliver does not take ALL" },
	{ "--show no id", { "relayq", "--show" },
	    .err = "--show takes a queue id (or several)" },
	{ "--summary with argument", { "relayq", "--summary", "x" },
	    .err = "--summary takes no argument" },
	{ "--test two addresses", { "relayq", "--test", "a@b", "c@d" },
	    .err = "--test takes at most one address" },
	{ "--retry ALL", { "relayq", "--retry", "ALL" },
	    .err = "--retry does not take ALL" },
	{ "--show ALL", { "relayq", "--show", "ALL" },
	    .err = "--show does not take ALL" },
	{ "--delete ALL and an id", { "relayq", "--delete", "X", "ALL" },
	    .err = "--delete: ALL must stand alone" },
	{ "--hold -t", { "relayq", "--hold", "-t", "X" },
	    .err = "--hold: illegal option -t" },
	{ "--hold -C without file", { "relayq", "--hold", "-C" },
	    .err = "option -C requires an argument" },
	{ "--hold -C empty", { "relayq", "--hold", "-C", "", "X" },
	    .err = "-C: empty file name" },
	{ "--show not first", { "relayq", "-v", "--show", "X" },
	    .err = "--show must be the first argument" },
	{ "--delete line break", { "relayq", "--delete", "X\nY" },
	    .err = "--delete: line break in argument" },
	{ "--Show", { "relayq", "--Show", "X" }, .err = "illegal option --Show" },

	/* --- "--" and the end of options ------------------------------------ */
	{ "-- then dash recipient", { "sendmail", "--", "-t" },
	    .rcpts = { "-t" } },
	{ "-t --", { "sendmail", "-t", "--" }, .extract = 1 },
	{ "second -- is a recipient", { "sendmail", "-i", "--", "--", "a@b" },
	    .dots = 1, .rcpts = { "--", "a@b" } },
	{ "no permutation", { "sendmail", "a@b", "-t", "-i" },
	    .rcpts = { "a@b", "-t", "-i" } },
	{ "lone dash is a recipient", { "sendmail", "-", "a@b" },
	    .rcpts = { "-", "a@b" } },
	{ "recipients after options", { "sendmail", "-i", "-f", "s@x", "a@b",
	    "c@d, e@f" }, .dots = 1, .sender = "s@x",
	    .rcpts = { "a@b", "c@d, e@f" } },

	/* --- usage errors --------------------------------------------------- */
	{ "-z", { "sendmail", "-z", "a@b" }, .err = "illegal option -- z" },
	{ "-tz", { "sendmail", "-tz", "a@b" }, .err = "illegal option -- z" },
	{ "control char", { "sendmail", "-\001", "a@b" },
	    .err = "illegal option -- \\x01" },
	{ "-f missing", { "sendmail", "-f" },
	    .err = "option -f requires an argument" },
	{ "-tf missing", { "sendmail", "-t", "-if" },
	    .err = "option -f requires an argument" },
	{ "-F missing", { "sendmail", "-t", "-F" },
	    .err = "option -F requires an argument" },
	{ "no recipients", { "sendmail" }, .err = "no recipients" },
	{ "-i no recipients", { "sendmail", "-i", "-f", "x@y" },
	    .err = "no recipients" },
	{ "-bv no recipients", { "sendmail", "-bv" }, .err = "no recipients" },

	/* --- line breaks in what flows into mail ---------------------------- */
	{ "CRLF in -f", { "sendmail", "-f", "a@b\r\nBcc: x@y", "r@x" },
	    .err = "-f: line break in argument" },
	{ "LF in -f glued", { "sendmail", "-fa@b\nBcc: x@y", "r@x" },
	    .err = "-f: line break in argument" },
	{ "CR in -r", { "sendmail", "-r", "a@b\r", "r@x" },
	    .err = "-r: line break in argument" },
	{ "LF in -F", { "sendmail", "-F", "Name\nBcc: x@y", "r@x" },
	    .err = "-F: line break in argument" },
	{ "CRLF in -V", { "sendmail", "-V", "id\r\nX", "r@x" },
	    .err = "-V: line break in argument" },
	{ "CRLF in -N", { "sendmail", "-N", "success\r\nX", "r@x" },
	    .err = "-N: line break in argument" },
	{ "LF in -R", { "sendmail", "-Rhdrs\n", "r@x" },
	    .err = "-R: line break in argument" },
	{ "LF in -B", { "sendmail", "-B", "8BITMIME\n", "r@x" },
	    .err = "-B: line break in argument" },
	{ "LF in recipient", { "sendmail", "r@x\nBcc: evil@x" },
	    .err = "recipient: line break in argument" },
	{ "CR in recipient after --", { "sendmail", "-i", "--", "a@b",
	    "r@x\rX" }, .err = "recipient: line break in argument" },

	/* --- bad values ----------------------------------------------------- */
	{ "-B 8BIT", { "sendmail", "-B", "8BIT", "a@b" },
	    .err = "-B: body type must be 7BIT or 8BITMIME" },
	{ "-B empty", { "sendmail", "-B", "", "a@b" }, .err = "-B: body type" },
	{ "-B BINARYMIME", { "sendmail", "-BBINARYMIME", "a@b" },
	    .err = "-B: body type" },
	{ "-N bogus", { "sendmail", "-N", "bogus", "a@b" }, .err = "-N: expected" },
	{ "-N never with others", { "sendmail", "-N", "never,success", "a@b" },
	    .err = "-N: never must be alone" },
	{ "-N others then never", { "sendmail", "-Ndelay,NEVER", "a@b" },
	    .err = "-N: never must be alone" },
	{ "-N empty item", { "sendmail", "-N", "success,,failure", "a@b" },
	    .err = "-N: expected" },
	{ "-N trailing comma", { "sendmail", "-N", "success,", "a@b" },
	    .err = "-N: expected" },
	{ "-N empty", { "sendmail", "-N", "", "a@b" }, .err = "-N: expected" },
	{ "-N with space", { "sendmail", "-N", "success, failure", "a@b" },
	    .err = "-N: expected" },
	{ "-R none", { "sendmail", "-R", "none", "a@b" },
	    .err = "-R: expected full or hdrs" },
	{ "-R empty", { "sendmail", "-R", "", "a@b" }, .err = "-R: expected" },
	{ "-V empty", { "sendmail", "-V", "", "a@b" }, .err = "-V: envelope id" },
	{ "-V space", { "sendmail", "-V", "a b", "a@b" },
	    .err = "-V: envelope id must be printable" },
	{ "-V 8bit", { "sendmail", "-V", "caf\xc3\xa9", "a@b" },
	    .err = "-V: envelope id must be printable" },
	{ "-V tab", { "sendmail", "-Va\tb", "a@b" },
	    .err = "-V: envelope id must be printable" },
	{ "-V 101 chars", { "sendmail", "-V", S100 "x", "a@b" },
	    .err = "-V: envelope id must be 1 to 100" },
	{ "-V + pushes over 100", { "sendmail", "-V", "+" S90 "01234567", "a@b" },
	    .err = "-V: envelope id must be 1 to 100" },
	{ "-odx", { "sendmail", "-odx", "a@b" },
	    .err = "-od: unknown delivery mode \"x\"" },
	{ "-oex", { "sendmail", "-oex", "a@b" },
	    .err = "-oe: unknown error mode \"x\"" },
	{ "-ex", { "sendmail", "-ex", "a@b" }, .err = "-e: unknown error mode" },
	{ "-A x", { "sendmail", "-A", "x", "a@b" }, .err = "-A: expected" },
	{ "-Acm", { "sendmail", "-Acm", "a@b" }, .err = "-A: expected" },
	{ "-h x", { "sendmail", "-h", "x", "a@b" }, .err = "-h: bad hop count" },
	{ "-h -1", { "sendmail", "-h-1", "a@b" }, .err = "-h: bad hop count" },
	{ "-C empty", { "sendmail", "-C", "", "a@b" },
	    .err = "-C: empty file name" },
	{ "-X empty", { "sendmail", "-X", "", "a@b" },
	    .err = "-X: empty file name" },
};

static int
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* Does p point into one of the argument strings (not into a copy)? */
static int
in_argv(const char *p, char **argv, int argc)
{
	int i;

	for (i = 0; i < argc; i++)
		if (p >= argv[i] && p <= argv[i] + strlen(argv[i]))
			return 1;
	return 0;
}

#define CHECK_INT(field, want) \
	ck_assert_msg((long)(field) == (long)(want), "%s: %s is %ld, want %ld", \
	    t->name, #field, (long)(field), (long)(want))
#define CHECK_STR(field, want) \
	ck_assert_msg(str_eq((field), (want)), "%s: %s is \"%s\", want \"%s\"", \
	    t->name, #field, (field) ? (field) : "(null)", \
	    (want) ? (want) : "(null)")
#define CHECK_ARGV_STR(field, want) do { \
	CHECK_STR(field, want); \
	ck_assert_msg((field) == NULL || in_argv((field), argv, argc), \
	    "%s: %s does not point into argv", t->name, #field); \
} while (0)

START_TEST(test_parse_table)
{
	const struct pcase *t = &cases[_i];
	char *argv[42];
	struct request req;
	struct err err;
	int argc, rc, n;

	for (argc = 0; t->argv[argc] != NULL; argc++)
		argv[argc] = (char *)t->argv[argc];
	argv[argc] = NULL;
	memset(&err, 0, sizeof(err));
	rc = cli_parse(argc, argv, cli_personality(argv[0]), &req, &err);

	if (t->err != NULL) {
		ck_assert_msg(rc == -1, "%s: accepted, want error \"%s\"",
		    t->name, t->err);
		ck_assert_msg(err.cls == ERR_USAGE, "%s: class %s, want usage",
		    t->name, err_class_name(err.cls));
		ck_assert_msg(strstr(err.msg, t->err) != NULL,
		    "%s: message \"%s\" lacks \"%s\"", t->name, err.msg, t->err);
		ck_assert_msg(strchr(err.msg, '\n') == NULL,
		    "%s: message is not one line", t->name);
		return;
	}
	ck_assert_msg(rc == 0, "%s: rejected: %s", t->name, err.msg);
	CHECK_INT(req.mode, t->mode);
	CHECK_INT(req.extract_rcpts, t->extract);
	CHECK_INT(req.ignore_dots, t->dots);
	CHECK_INT(req.verbose, t->verbose);
	CHECK_INT(req.no_fixups, t->nofix);
	CHECK_ARGV_STR(req.sender, t->sender);
	CHECK_ARGV_STR(req.full_name, t->full_name);
	CHECK_ARGV_STR(req.config_path, t->config);
	CHECK_ARGV_STR(req.log_path, t->log_path);
	CHECK_INT(req.deliver, t->deliver);
	CHECK_INT(req.error_mode, t->emode);
	CHECK_STR(req.body_type, t->body);
	CHECK_ARGV_STR(req.notify, t->notify);
	CHECK_INT(req.notify_mask, t->nmask);
	CHECK_STR(req.ret, t->ret);
	CHECK_ARGV_STR(req.envid, t->envid);
	CHECK_INT(req.queue_interval, t->qint);
	CHECK_INT(req.queue_force, t->qforce);
	CHECK_ARGV_STR(req.queue_id, t->qid);

	for (n = 0; t->rcpts[n] != NULL; n++)
		;
	CHECK_INT(req.nrcpts, n);
	ck_assert_msg(req.rcpts == argv + argc - n,
	    "%s: rcpts does not point at the tail of argv", t->name);
	ck_assert_msg(req.rcpts[req.nrcpts] == NULL, "%s: rcpts not terminated",
	    t->name);
	for (n = 0; n < req.nrcpts; n++)
		CHECK_STR(req.rcpts[n], t->rcpts[n]);
}
END_TEST

static const struct {
	const char *argv0;
	enum mode mode;
} personalities[] = {
	{ "sendmail", MODE_SUBMIT },
	{ "/usr/sbin/sendmail", MODE_SUBMIT },
	{ "/usr/lib/sendmail", MODE_SUBMIT },
	{ "relayq", MODE_SUBMIT },
	{ "/usr/sbin/relayq", MODE_SUBMIT },
	{ "mailq", MODE_LIST },
	{ "/usr/bin/mailq", MODE_LIST },
	{ "newaliases", MODE_NEWALIASES },
	{ "/usr/bin/newaliases", MODE_NEWALIASES },
	{ "runq", MODE_QUEUE_RUN },
	{ "./runq", MODE_QUEUE_RUN },
	{ "mailq.real", MODE_SUBMIT },
	{ "/usr/bin/mailq/", MODE_SUBMIT },
	{ "xmailq", MODE_SUBMIT },
	{ "", MODE_SUBMIT },
	{ NULL, MODE_SUBMIT },
};

START_TEST(test_personality)
{
	ck_assert_msg(cli_personality(personalities[_i].argv0) ==
	    personalities[_i].mode, "personality of \"%s\"",
	    personalities[_i].argv0 ? personalities[_i].argv0 : "(null)");
}
END_TEST

START_TEST(test_request_init)
{
	struct request req;

	memset(&req, 0xa5, sizeof(req));
	request_init(&req);
	ck_assert_int_eq(req.mode, MODE_SUBMIT);
	ck_assert_int_eq(req.deliver, DELIVER_CONFIG);
	ck_assert_int_eq(req.extract_rcpts, 0);
	ck_assert_int_eq(req.ignore_dots, 0);
	ck_assert_int_eq(req.verbose, 0);
	ck_assert_int_eq(req.error_mode, 0);
	ck_assert_ptr_null(req.sender);
	ck_assert_ptr_null(req.full_name);
	ck_assert_ptr_null(req.config_path);
	ck_assert_ptr_null(req.log_path);
	ck_assert_ptr_null(req.body_type);
	ck_assert_ptr_null(req.notify);
	ck_assert_ptr_null(req.ret);
	ck_assert_ptr_null(req.envid);
	ck_assert_ptr_null(req.queue_id);
	ck_assert_ptr_null(req.rcpts);
	ck_assert_int_eq(req.nrcpts, 0);
	ck_assert_int_eq(req.queue_interval, 0);
	ck_assert_int_eq(req.queue_force, 0);
	ck_assert_uint_eq(req.notify_mask, 0);
}
END_TEST

/* cli_parse starts from request_init: nothing leaks from a previous use. */
START_TEST(test_parse_resets_request)
{
	char *a1[] = { "sendmail", "-t", "-i", "-f", "x@y", "-odq", NULL };
	char *a2[] = { "sendmail", "a@b", NULL };
	struct request req;
	struct err err;

	ck_assert_int_eq(cli_parse(6, a1, MODE_SUBMIT, &req, &err), 0);
	ck_assert_int_eq(cli_parse(2, a2, MODE_SUBMIT, &req, &err), 0);
	ck_assert_int_eq(req.extract_rcpts, 0);
	ck_assert_int_eq(req.ignore_dots, 0);
	ck_assert_ptr_null(req.sender);
	ck_assert_int_eq(req.deliver, DELIVER_CONFIG);
	ck_assert_int_eq(req.nrcpts, 1);
}
END_TEST

/* An exec with an empty argv must not crash the parser. */
START_TEST(test_empty_argv)
{
	char *argv[] = { NULL };
	struct request req;
	struct err err;

	ck_assert_int_eq(cli_parse(0, argv, MODE_LIST, &req, &err), 0);
	ck_assert_int_eq(req.mode, MODE_LIST);
	ck_assert_int_eq(req.nrcpts, 0);
	ck_assert_ptr_nonnull(req.rcpts);
	ck_assert_ptr_null(req.rcpts[0]);
	ck_assert_int_eq(cli_parse(0, argv, MODE_SUBMIT, &req, &err), -1);
	ck_assert_int_eq(err.cls, ERR_USAGE);
}
END_TEST

/* Every argument is bounded: CLI_ARG_MAX passes, one byte more fails. */
static const struct {
	const char *opt;    /* prefix glued to the long value, or NULL */
	int recipient;      /* the long value is a recipient */
} long_args[] = {
	{ NULL, 1 },
	{ "-F", 0 },
	{ "-C", 0 },
};

START_TEST(test_argument_length)
{
	size_t plen = long_args[_i].opt ? strlen(long_args[_i].opt) : 0;
	char *big = malloc(CLI_ARG_MAX + 2);
	char *argv[4];
	struct request req;
	struct err err;
	int argc = 0;

	ck_assert_ptr_nonnull(big);
	if (plen > 0)
		memcpy(big, long_args[_i].opt, plen);
	memset(big + plen, 'a', CLI_ARG_MAX - plen);
	big[CLI_ARG_MAX] = '\0';
	argv[argc++] = "sendmail";
	argv[argc++] = big;
	if (!long_args[_i].recipient)
		argv[argc++] = "r@x";
	argv[argc] = NULL;

	ck_assert_msg(cli_parse(argc, argv, MODE_SUBMIT, &req, &err) == 0,
	    "%d bytes rejected: %s", CLI_ARG_MAX, err.msg);
	big[CLI_ARG_MAX] = 'a';
	big[CLI_ARG_MAX + 1] = '\0';
	ck_assert_int_eq(cli_parse(argc, argv, MODE_SUBMIT, &req, &err), -1);
	ck_assert_int_eq(err.cls, ERR_USAGE);
	ck_assert_ptr_nonnull(strstr(err.msg, "argument 1 is longer than 8192"));
	free(big);
}
END_TEST

static Suite *
cli_suite(void)
{
	Suite *s = suite_create("cli");
	TCase *tc = tcase_create("cli");

	tcase_add_loop_test(tc, test_parse_table, 0,
	    (int)(sizeof(cases) / sizeof(cases[0])));
	tcase_add_loop_test(tc, test_personality, 0,
	    (int)(sizeof(personalities) / sizeof(personalities[0])));
	tcase_add_loop_test(tc, test_argument_length, 0,
	    (int)(sizeof(long_args) / sizeof(long_args[0])));
	tcase_add_test(tc, test_request_init);
	tcase_add_test(tc, test_parse_resets_request);
	tcase_add_test(tc, test_empty_argv);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(cli_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
