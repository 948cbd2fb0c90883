"""The programs that call sendmail, run for real against relayq.

Each test runs a real program installed from Debian packages (PHP's mail()
and Symfony Mailer, GNU mailutils' mail, git send-email, swaks), or replays
the exact call of a system daemon (cron, cronie, mdadm, sudo), against the
built relayq under the name `sendmail` (the spool's bin directory), and then
delivers through a real smarthost on loopback: aiosmtpd with STARTTLS and
AUTH (test_relay.RelayTest), and Postfix (postfix.py) for the cron and PHP
calls. The assertions are on what arrived there: the envelope (MAIL FROM,
RCPT TO) and the message bytes.

Two messages in one -bs session from Python's smtplib are in
test_bs.BsQueue.test_two_messages_in_one_session; here Symfony Mailer does
it. A lone "." without -i is in test_submit.

The programs come from contrib/install-deps (php-cli, php-symfony-mailer,
mailutils, git, git-email, libmailtools-perl, swaks). A test whose program
is missing is skipped and says which package it needs; with
RELAYQ_REQUIRE_CALLERS=1 or RELAYQ_REQUIRE_POSTFIX=1 (as .ci/run sets, after
install-deps) a missing program or Postfix is a failure instead.
"""
import email.utils
import json
import os
import pwd
import shlex
import shutil
import subprocess
import textwrap
import time
import unittest
from urllib.parse import quote

import harness
from harness import split_message, header_fields, VALGRIND, RELAYQ
import test_relay
from test_relay import RelayTest
import postfix
import test_postfix

REQUIRE = bool(os.environ.get("RELAYQ_REQUIRE_CALLERS") or
               os.environ.get("RELAYQ_REQUIRE_POSTFIX"))
TIMEOUT = 300 if VALGRIND else 60
LOGIN = pwd.getpwuid(os.getuid()).pw_name
SYMFONY = "/usr/share/php/Symfony/Component/Mailer/autoload.php"

# program -> (how to check it is usable, the Debian package that brings it)
PROGRAMS = {
    "php": (lambda: shutil.which("php"), "php-cli"),
    "symfony": (lambda: shutil.which("php") and os.path.exists(SYMFONY), "php-symfony-mailer"),
    "mailutils": (lambda: shutil.which("mail.mailutils"), "mailutils"),
    "git-send-email": (lambda: shutil.which("git") and os.path.exists(
        "/usr/lib/git-core/git-send-email") and perl_module("Mail::Address"),
        "git-email and libmailtools-perl"),
    "swaks": (lambda: shutil.which("swaks"), "swaks"),
}


def perl_module(name):
    return subprocess.run(["perl", "-M" + name, "-e", "1"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def need(program):
    """Skip (or, when required, fail) a test whose program is not installed."""
    check, package = PROGRAMS[program]

    def decorate(test):
        def run(self):
            if not check():
                why = "%s not installed (Debian package %s, contrib/install-deps)" % (
                    program, package)
                if REQUIRE:
                    self.fail(why)
                self.skipTest(why)
            return test(self)
        run.__name__, run.__doc__ = test.__name__, test.__doc__
        return run
    return decorate


def parse(data):
    """A message as it arrived (CRLF or LF) -> (header fields, body with LF)."""
    head, body = split_message(data.replace(b"\r\n", b"\n"))
    return header_fields(head), body


def values(fields, name):
    return [v for n, v in fields if n == name]


def one(fields, name):
    vals = values(fields, name)
    assert len(vals) == 1, "%s: %r" % (name, vals)
    return vals[0]


def addresses(value):
    """The addr-specs in an address header value, as Python's email reads them."""
    return [a for _, a in email.utils.getaddresses([value.decode()])]


def wire_clean(testcase, data):
    """Every line ends in CRLF: no bare CR or LF reached the smarthost."""
    testcase.assertTrue(data.endswith(b"\r\n"), data[-20:])
    for line in data.split(b"\r\n")[:-1]:
        testcase.assertNotIn(b"\r", line)
        testcase.assertNotIn(b"\n", line)


def sendmail_path(spool):
    """The spool's bin/sendmail, or under $RELAYQ_VALGRIND a script that runs
    it in valgrind (argv[0] must still end in "sendmail")."""
    path = os.path.join(spool.bindir, "sendmail")
    if not VALGRIND:
        return path
    real = os.path.join(spool.root, "vg-real")
    os.mkdir(real)
    os.symlink(os.path.abspath(RELAYQ), os.path.join(real, "sendmail"))
    script = os.path.join(spool.root, "vg-sendmail")
    with open(script, "w") as f:
        f.write("#!/bin/sh\nexec %s \"$@\"\n" % " ".join(
            shlex.quote(a) for a in harness.wrapper() + [os.path.join(real, "sendmail")]))
    os.chmod(script, 0o755)
    return script


PHP_MAIL = r"""<?php
// mail() as a web application calls it: the arguments come as JSON on stdin.
$a = json_decode(stream_get_contents(STDIN), true);
$ok = array_key_exists('params', $a)
    ? mail($a['to'], $a['subject'], $a['message'], $a['headers'], $a['params'])
    : mail($a['to'], $a['subject'], $a['message'], $a['headers']);
exit($ok ? 0 : 3);
"""

SYMFONY_SEND = r"""<?php
// Symfony Mailer's sendmail transport; messages as JSON on stdin. One
// transport object for all of them: with -bs, one SMTP session.
require '%s';
use Symfony\Component\Mailer\Transport;
use Symfony\Component\Mime\Email;
$spec = json_decode(stream_get_contents(STDIN), true);
$transport = Transport::fromDsn($spec['dsn']);
foreach ($spec['messages'] as $m) {
    $e = (new Email())->from($m['from'])->to(...$m['to'])->subject($m['subject'])
        ->text($m['text']);
    if (!empty($m['bcc'])) {
        $e->bcc(...$m['bcc']);
    }
    $sent = $transport->send($e);
    echo json_encode(['message_id' => $sent->getMessageId(),
                      'debug' => $sent->getDebug()]), "\n";
}
""" % SYMFONY


class CallerTest(RelayTest):
    """A spool whose bin/sendmail is relayq, the aiosmtpd smarthost with
    STARTTLS and AUTH, a private HOME, and an aliases file."""

    aliases = b""

    def setUp(self):
        super().setUp()
        self.home = os.path.join(self.spool.root, "home")
        os.mkdir(self.home)
        self.aliases_file = os.path.join(self.spool.root, "aliases")
        with open(self.aliases_file, "wb") as f:
            f.write(self.aliases)
        self.configure()
        self.sendmail = sendmail_path(self.spool)

    def env(self, **extra):
        e = self.spool.environ({"HOME": self.home, "LC_ALL": "C.UTF-8",
                                "PATH": self.spool.bindir + ":" + os.environ.get(
                                    "PATH", "/usr/bin:/bin"),
                                "XDG_CONFIG_HOME": os.path.join(self.home, ".config"),
                                "MAILRC": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"})
        e.update(extra)
        return e

    def program(self, argv, input=b"", cwd=None, **env):
        """Run a caller; it must exit 0. Returns the CompletedProcess."""
        p = subprocess.run(argv, input=input, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=self.env(**env),
                           cwd=cwd or self.home, timeout=TIMEOUT)
        self.assertEqual(p.returncode, 0, "%s: exit %d\nstdout: %s\nstderr: %s" % (
            argv[0], p.returncode, p.stdout.decode(errors="replace"),
            p.stderr.decode(errors="replace")))
        return p

    def deliver(self, count):
        """Run the queue; exactly count messages arrived and nothing stays."""
        p = self.spool.run(["-q"], timeout=TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.spool.ids(), [], p.stderr)
        self.assertEqual(self.spool.listdir("failed"), [])
        self.assertEqual(len(self.server.messages), count,
                         [m.data[:300] for m in self.server.messages])
        for m in self.server.messages:
            wire_clean(self, m.data)
        return list(self.server.messages)

    def write(self, name, text):
        path = os.path.join(self.home, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def symfony(self, command, messages):
        """Send messages with Symfony Mailer's sendmail transport running
        command; what it says about each (message id, SMTP transcript)."""
        script = self.write("symfony.php", SYMFONY_SEND)
        dsn = "sendmail://default?command=" + quote(command, safe="")
        p = self.program(["php", script], input=json.dumps(
            {"dsn": dsn, "messages": messages}).encode())
        return [json.loads(line) for line in p.stdout.decode().splitlines()]

    def mailutils(self, args, input, email_domain="web1.example.net"):
        """GNU mailutils' mail with its own config (no system or user files)
        and relayq as its sendmail:// mailer."""
        conf = self.write("mailutils.conf", "address {\n  email-domain %s;\n};\n" % email_domain)
        return self.program(["mail.mailutils", "--config-file=" + conf, "-n",
                             "-E", "set sendmail=sendmail://" + self.sendmail] + args,
                            input=input)

    def assertFixups(self, fields):
        """relayq's own fields: exactly one Date, Message-ID and Received."""
        for name in ("date", "message-id", "received"):
            self.assertEqual(len(values(fields, name)), 1, (name, fields))
        self.assertIsNotNone(email.utils.parsedate_tz(one(fields, "date").decode()))

    def assertNoBcc(self, data, hidden=b"hidden@example.org"):
        """Neither a Bcc field nor the hidden address is in the data."""
        self.assertNotIn(hidden, data)
        fields, _ = parse(data)
        self.assertNotIn("bcc", [name for name, _ in fields])


# --- PHP ------------------------------------------------------------------------

class PhpMail(CallerTest):
    """PHP's mail(), with php.ini's usual sendmail_path ("sendmail -t -i")."""

    # PHP puts CRLF after the message: the last line has no newline of its own.
    BODY = "Hello Bob,\nyour order 42 has shipped.\n.\nRegards"

    def php_mail(self, headers, params=None, to="Bob <bob@example.org>"):
        script = self.write("mail.php", PHP_MAIL)
        call = {"to": to, "subject": "Order 42", "message": self.BODY,
                "headers": headers}
        if params is not None:
            call["params"] = params
        return self.program(["php", "-n", "-d", "sendmail_path=%s -t -i" % self.sendmail,
                             script], input=json.dumps(call).encode())

    def check_message(self, m, from_=b"Web Shop <shop@example.net>"):
        fields, body = parse(m.data)
        self.assertEqual(one(fields, "to"), b"Bob <bob@example.org>")
        self.assertEqual(one(fields, "subject"), b"Order 42")
        self.assertEqual(one(fields, "from"), from_)
        self.assertFixups(fields)
        # PHP ends the header lines in CRLF and leaves the body's LF: every
        # line arrives with one CRLF, the lone dot as data (-i).
        self.assertEqual(body, self.BODY.encode() + b"\n")
        self.assertIn(b"\r\n\r\nHello Bob,\r\nyour order 42 has shipped.\r\n.\r\nRegards\r\n",
                      m.data)

    @need("php")
    def test_additional_parameter_f_is_the_envelope_sender(self):
        self.php_mail("From: Web Shop <shop@example.net>", "-fbounces@example.net")
        [m] = self.deliver(1)
        self.assertEqual(m.mail_from, "bounces@example.net")
        self.assertEqual(m.rcpt_tos, ["bob@example.org"])
        self.check_message(m)

    @need("php")
    def test_without_f_the_caller_is_the_sender(self):
        self.php_mail("From: Web Shop <shop@example.net>")
        [m] = self.deliver(1)
        self.assertEqual(m.mail_from, "%s@example.com" % LOGIN)
        self.assertEqual(m.rcpt_tos, ["bob@example.org"])
        self.check_message(m)

    @need("php")
    def test_bcc_in_the_extra_headers(self):
        self.php_mail("From: Web Shop <shop@example.net>\r\nCc: carol@example.org\r\n"
                      "Bcc: Hidden <hidden@example.org>", "-fbounces@example.net")
        [m] = self.deliver(1)
        self.assertEqual(sorted(m.rcpt_tos),
                         ["bob@example.org", "carol@example.org", "hidden@example.org"])
        self.assertNoBcc(m.data)
        fields, _ = parse(m.data)
        self.assertEqual(one(fields, "cc"), b"carol@example.org")
        self.check_message(m)

    @need("php")
    def test_spaced_f_and_a_quoted_comma(self):
        # "-f addr" as two words, a display name with a comma, and PHP's
        # X-PHP-Originating-Script (mail.add_x_header).
        script = self.write("mail.php", PHP_MAIL)
        self.program(["php", "-n", "-d", "mail.add_x_header=On",
                      "-d", "sendmail_path=%s -t -i" % self.sendmail, script],
                     input=json.dumps({"to": '"Doe, John" <john@example.org>, jane@example.org',
                                       "subject": "=?UTF-8?B?R3LDvMOfZQ==?=", "message": "x",
                                       "headers": 'From: "Shop, Inc." <shop@example.net>',
                                       "params": "-f bounces@example.net"}).encode())
        [m] = self.deliver(1)
        self.assertEqual(m.mail_from, "bounces@example.net")
        self.assertEqual(m.rcpt_tos, ["john@example.org", "jane@example.org"])
        fields, body = parse(m.data)
        self.assertEqual(one(fields, "to"), b'"Doe, John" <john@example.org>, jane@example.org')
        self.assertEqual(one(fields, "from"), b'"Shop, Inc." <shop@example.net>')
        self.assertEqual(one(fields, "x-php-originating-script"), b"0:mail.php")
        self.assertEqual(body, b"x\n")

    @need("php")
    def test_sender_from_header_without_f(self):
        self.configure("sender_from_header = yes\n")
        self.php_mail("From: Web Shop <shop@example.net>\r\nReply-To: help@example.net")
        [m] = self.deliver(1)
        self.assertEqual(m.mail_from, "shop@example.net")
        self.assertEqual(m.rcpt_tos, ["bob@example.org"])
        self.check_message(m)

    @need("php")
    def test_sender_from_header_and_f(self):
        # -f still wins over the From header.
        self.configure("sender_from_header = yes\n")
        self.php_mail("From: Web Shop <shop@example.net>", "-fbounces@example.net")
        [m] = self.deliver(1)
        self.assertEqual(m.mail_from, "bounces@example.net")


class Symfony(CallerTest):
    """Symfony Mailer (Debian's php-symfony-mailer): its default transport
    `sendmail -bs`, and the `-oi -t` mode."""

    MESSAGES = [
        {"from": "App <app@example.net>", "to": ["bob@example.org"],
         "bcc": ["hidden@example.org"], "subject": "Welcome",
         "text": "Hi Bob,\n.dot first\nwelcome.\n"},
        {"from": "app@example.net", "to": ["carol@example.org", "Dave <dave@example.org>"],
         "subject": "Report", "text": "Gr\u00fc\u00dfe\n"},
    ]

    @need("symfony")
    def test_bs_two_messages_in_one_session(self):
        sent = self.symfony(self.sendmail + " -bs", self.MESSAGES)
        self.assertEqual(len(sent), 2)
        # One session: one greeting and HELO, then a queue id per message.
        first, second = sent[0]["debug"], sent[1]["debug"]
        self.assertEqual((first.count("< 220 "), first.count("> HELO ")), (1, 1), first)
        self.assertEqual((second.count("< 220 "), second.count("> HELO ")), (0, 0), second)
        for s in sent:
            self.assertRegex(s["debug"], r"< 250 2\.0\.0 Ok: queued as [0-9A-F]{17}")
        welcome, report = sorted(self.deliver(2), key=lambda m: m.rcpt_tos)
        self.assertEqual(welcome.mail_from, "app@example.net")
        self.assertEqual(welcome.rcpt_tos, ["bob@example.org", "hidden@example.org"])
        self.assertNoBcc(welcome.data)
        fields, body = parse(welcome.data)
        self.assertEqual(one(fields, "subject"), b"Welcome")
        self.assertEqual(one(fields, "from"), b"App <app@example.net>")
        self.assertEqual(one(fields, "message-id"), b"<%s>" % sent[0]["message_id"].encode())
        # Symfony sends "\r\n.\r\n" after a body that ends in CRLF: the
        # empty last line is its own (seen with any SMTP server).
        self.assertEqual(body, b"Hi Bob,\n.dot first\nwelcome.\n\n")
        self.assertEqual(report.mail_from, "app@example.net")
        self.assertEqual(report.rcpt_tos, ["carol@example.org", "dave@example.org"])
        fields, body = parse(report.data)
        self.assertEqual(one(fields, "to"), b"carol@example.org, Dave <dave@example.org>")
        self.assertEqual(one(fields, "content-transfer-encoding"), b"quoted-printable")
        self.assertEqual(body, b"Gr=C3=BC=C3=9Fe\n\n")

    @need("symfony")
    def test_t_mode_with_sender_and_recipients_in_argv(self):
        # -oi -t with an envelope: Symfony drops -t, appends -f'sender' and
        # -- 'rcpt'..., and removes the Bcc header itself.
        sent = self.symfony(self.sendmail + " -oi -t", self.MESSAGES[:1])
        self.assertEqual(len(sent), 1)
        [m] = self.deliver(1)
        self.assertEqual(m.mail_from, "app@example.net")
        self.assertEqual(sorted(m.rcpt_tos), ["bob@example.org", "hidden@example.org"])
        self.assertNoBcc(m.data)
        fields, body = parse(m.data)
        self.assertEqual(one(fields, "message-id"), b"<%s>" % sent[0]["message_id"].encode())
        self.assertEqual(body, b"Hi Bob,\n.dot first\nwelcome.\n")


# --- GNU mailutils --------------------------------------------------------------

class Mailutils(CallerTest):
    """GNU mailutils' mail(1): it runs `sendmail -oi -f <user@domain> -t`
    through its sendmail:// mailer URL. Its domain is set to one relayq does
    not know, so the sender seen is the one mailutils gave."""

    aliases = b"root: admin@example.org\n"

    @need("mailutils")
    def test_mail_s_with_body_on_stdin(self):
        self.mailutils(["-s", "Disk usage on web1", "bob@example.org"],
                       b"/dev/sda1 91% used\nGr\xc3\xbc\xc3\x9fe\n")
        [m] = self.deliver(1)
        self.assertEqual(m.mail_from, "%s@web1.example.net" % LOGIN)
        self.assertEqual(m.rcpt_tos, ["bob@example.org"])
        fields, body = parse(m.data)
        self.assertEqual(one(fields, "subject"), b"Disk usage on web1")
        self.assertEqual(addresses(one(fields, "to")), ["bob@example.org"])
        self.assertEqual(addresses(one(fields, "from")), ["%s@web1.example.net" % LOGIN])
        self.assertIn(b"GNU Mailutils", one(fields, "user-agent"))
        self.assertFixups(fields)
        self.assertEqual(body, b"/dev/sda1 91% used\nGr\xc3\xbc\xc3\x9fe\n")

    @need("mailutils")
    def test_mail_t_headers_in_the_input(self):
        self.mailutils(["-t"], b"To: bob@example.org, root\nCc: carol@example.org\n"
                               b"Bcc: hidden@example.org\nSubject: nightly\n\nall good\n")
        [m] = self.deliver(1)
        self.assertEqual(m.mail_from, "%s@web1.example.net" % LOGIN)
        self.assertEqual(sorted(m.rcpt_tos), ["admin@example.org", "bob@example.org",
                                              "carol@example.org", "hidden@example.org"])
        self.assertNoBcc(m.data)
        fields, body = parse(m.data)
        self.assertEqual(addresses(one(fields, "to")), ["bob@example.org", "root@example.com"])
        self.assertEqual(addresses(one(fields, "cc")), ["carol@example.org"])
        self.assertEqual(one(fields, "subject"), b"nightly")
        self.assertEqual(body, b"all good\n")

    @need("mailutils")
    def test_host_address_is_rewritten(self):
        # mailutils' default domain is the host's name: -f root@<hostname>.
        # relayq takes that as local and rewrites it.
        self.configure('sender_rewrite = "alerts@example.com"\n')
        self.mailutils(["-s", "from the host", "bob@example.org"], b"x\n",
                       email_domain="host.example.com")
        [m] = self.deliver(1)
        self.assertEqual(m.mail_from, "alerts@example.com")
        fields, _ = parse(m.data)
        self.assertEqual(addresses(one(fields, "from")), ["alerts@example.com"])


# --- git send-email -------------------------------------------------------------

class GitSendEmail(CallerTest):

    def series(self):
        """A repository with two commits past the first; their patches."""
        repo = os.path.join(self.home, "repo")
        os.mkdir(repo)

        def git(*args):
            return self.program(["git"] + list(args), cwd=repo)
        git("init", "-q")
        git("config", "user.name", "Ann Dev")
        git("config", "user.email", "ann@example.net")
        path = os.path.join(repo, "hello.c")
        for line, msg in (("int main(void) { return 0; }", "initial"),
                          ("/* trailing space */ ", "hello: comment"),
                          (".", "hello: a lone dot line")):
            with open(path, "a") as f:
                f.write(line + "\n")
            git("add", "hello.c")
            git("commit", "-q", "-m", msg)
        out = git("format-patch", "-2", "-o", os.path.join(self.home, "patches")).stdout
        return repo, out.decode().split()

    def send_email(self, repo, patches, *args):
        return self.program(["git", "send-email", "--sendmail-cmd=" + self.sendmail,
                             "--to=Bob <bob@example.org>", "--bcc=hidden@example.org",
                             "--confirm=never", "--no-chain-reply-to", "--suppress-cc=all",
                             "--no-annotate", "--quiet"] + list(args) + patches, cwd=repo)

    @need("git-send-email")
    def test_patch_series_with_bcc(self):
        repo, patches = self.series()
        self.assertEqual(len(patches), 2)
        self.send_email(repo, patches)
        arrived = self.deliver(2)
        by_subject = {}
        for m in arrived:
            self.assertEqual(m.mail_from, "%s@example.com" % LOGIN)
            self.assertEqual(sorted(m.rcpt_tos), ["bob@example.org", "hidden@example.org"])
            self.assertNoBcc(m.data)
            fields, body = parse(m.data)
            self.assertEqual(one(fields, "from"), b"Ann Dev <ann@example.net>")
            self.assertEqual(one(fields, "to"), b"Bob <bob@example.org>")
            self.assertEqual(len(values(fields, "message-id")), 1)
            by_subject[one(fields, "subject").decode()] = (fields, body)
        self.assertEqual(sorted(by_subject), ["[PATCH 1/2] hello: comment",
                                              "[PATCH 2/2] hello: a lone dot line"])
        first, first_body = by_subject["[PATCH 1/2] hello: comment"]
        second, second_body = by_subject["[PATCH 2/2] hello: a lone dot line"]
        # git's own Message-Id threads the series: relayq kept it.
        self.assertEqual(one(second, "in-reply-to"), one(first, "message-id"))
        self.assertRegex(one(first, "message-id").decode(), r"^<[^>]+@example\.net>$")
        # The bodies are the patches, byte for byte (trailing space, "+.").
        for path, body in zip(patches, (first_body, second_body)):
            with open(path, "rb") as f:
                self.assertEqual(body, split_message(f.read())[1])
        self.assertIn(b"\n+/* trailing space */ \n", first_body)
        self.assertIn(b"\n+.\n", second_body)

    @need("git-send-email")
    def test_envelope_sender_from_the_author(self):
        repo, patches = self.series()
        self.send_email(repo, patches[:1], "--envelope-sender=auto")
        [m] = self.deliver(1)
        self.assertEqual(m.mail_from, "ann@example.net")
        self.assertEqual(sorted(m.rcpt_tos), ["bob@example.org", "hidden@example.org"])


# --- system daemons: cron, cronie, mdadm, sudo ----------------------------------

CRON_BODY = ("Sicherung abgeschlossen: 3 Dateien, Gr\u00f6\u00dfe 12\u00a0MB \u2713\n"
             ".\n"
             "the line above was a single dot\n").encode()

# Debian's cron (cron 3.0pl1, do_command.c): MAILARGS "%s -FCronDaemon -i
# -B8BITMIME -oem %s", recipient in argv.
DEBIAN_CRON_ARGS = ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"]
DEBIAN_CRON_MSG = (b"From: root (Cron Daemon)\n"
                   b"To: root\n"
                   b"Subject: Cron <root@web1> /usr/local/bin/backup\n"
                   b"MIME-Version: 1.0\n"
                   b"Content-Type: text/plain; charset=UTF-8\n"
                   b"Content-Transfer-Encoding: 8bit\n"
                   b"X-Cron-Env: <SHELL=/bin/sh>\n"
                   b"X-Cron-Env: <HOME=/root>\n"
                   b"X-Cron-Env: <PATH=/usr/bin:/bin>\n"
                   b"X-Cron-Env: <LOGNAME=root>\n"
                   b"\n" + CRON_BODY)

# cronie (do_command.c): MAILARGS "%s -FCronDaemon -i -odi -oem -oi -t -f %s".
CRONIE_ARGS = ["-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "root"]
CRONIE_MSG = (b'From: "(Cron Daemon)" <root>\n'
              b"To: root\n"
              b"Subject: Cron <root@web1> run-parts /etc/cron.hourly\n"
              b"MIME-Version: 1.0\n"
              b"Content-Type: text/plain; charset=UTF-8\n"
              b"Content-Transfer-Encoding: 8bit\n"
              b"Precedence: bulk\n"
              b"Auto-Submitted: auto-generated\n"
              b"X-Cron-Env: <LANG=C.UTF-8>\n"
              b"X-Cron-Env: <SHELL=/bin/sh>\n"
              b"\n" + CRON_BODY)

# mdadm --monitor (Monitor.c): popen("/usr/lib/sendmail -t"), no -i.
MDADM_MSG = textwrap.dedent("""\
    From: mdadm monitoring <root>
    To: root
    Subject: Fail event on /dev/md0:web1

    This is an automatically generated mail message from mdadm
    running on web1

    A Fail event had been detected on md device /dev/md0.

    It could be related to component device /dev/sdb1.

    Faithfully yours, etc.

    P.S. The /proc/mdstat file currently contains the following:

    Personalities : [raid1] [linear] [multipath] [raid0] [raid6] [raid5] [raid4] [raid10]\x20
    md0 : active raid1 sdb1[1](F) sda1[0]
          976630464 blocks super 1.2 [2/1] [U_]
          bitmap: 2/8 pages [8KB], 65536KB chunk

    unused devices: <none>
    """).encode()

# sudo (logging.c, send_mail): execv(mailerpath, "sendmail -t"), To: root.
SUDO_MSG = (b"To: root\n"
            b"From: root\n"
            b"Auto-Submitted: auto-generated\n"
            b"Subject: *** SECURITY information for web1 ***\n"
            b"\n"
            b"web1 : Nov 29 03:50:00 : alice : user NOT in sudoers ; TTY=pts/0 ; "
            b"PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id\n")


class Daemons(CallerTest):
    """The calls cron, cronie, mdadm and sudo make, with their message text."""

    def call(self, args, message):
        p = subprocess.run([self.sendmail] + args, input=message, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=self.env(), timeout=TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, b"")
        return p

    def test_debian_cron(self):
        self.call(DEBIAN_CRON_ARGS, DEBIAN_CRON_MSG)
        [m] = self.deliver(1)
        self.assertEqual(m.mail_from, "%s@example.com" % LOGIN)
        self.assertEqual(m.rcpt_tos, ["root@example.com"])
        self.assertIn("BODY=8BITMIME", m.mail_options)
        fields, body = parse(m.data)
        self.assertEqual(addresses(one(fields, "from")), ["root@example.com"])
        self.assertIn(b"Cron Daemon", one(fields, "from"))
        self.assertEqual(addresses(one(fields, "to")), ["root@example.com"])
        self.assertEqual(values(fields, "x-cron-env"), [b"<SHELL=/bin/sh>", b"<HOME=/root>",
                                                        b"<PATH=/usr/bin:/bin>",
                                                        b"<LOGNAME=root>"])
        self.assertFixups(fields)
        self.assertEqual(body, CRON_BODY)

    def test_cronie_delivers_at_once(self):
        self.call(CRONIE_ARGS, CRONIE_MSG)
        # -odi: delivered before sendmail returned, nothing left queued.
        self.assertEqual(self.spool.ids(), [])
        [m] = self.server.messages
        self.assertEqual(m.mail_from, "root@example.com")
        self.assertEqual(m.rcpt_tos, ["root@example.com"])
        fields, body = parse(m.data)
        self.assertEqual(addresses(one(fields, "from")), ["root@example.com"])
        self.assertEqual(email.utils.parseaddr(one(fields, "from").decode())[0],
                         "(Cron Daemon)")
        self.assertEqual(addresses(one(fields, "to")), ["root@example.com"])
        self.assertEqual(one(fields, "precedence"), b"bulk")
        self.assertEqual(body, CRON_BODY)
        self.assertIn("BODY=8BITMIME", m.mail_options)

    def test_mdadm_without_i(self):
        with open(self.aliases_file, "w") as f:
            f.write("root: raid-admin@example.org\n")
        self.call(["-t"], MDADM_MSG)
        [m] = self.deliver(1)
        self.assertEqual(m.mail_from, "%s@example.com" % LOGIN)
        self.assertEqual(m.rcpt_tos, ["raid-admin@example.org"])
        fields, body = parse(m.data)
        self.assertEqual(one(fields, "from"), b"mdadm monitoring <root@example.com>")
        self.assertEqual(one(fields, "to"), b"root@example.com")
        self.assertEqual(one(fields, "subject"), b"Fail event on /dev/md0:web1")
        self.assertEqual(body, split_message(MDADM_MSG)[1])

    def test_sudo_to_root_through_aliases(self):
        with open(self.aliases_file, "w") as f:
            f.write("# sudo's reports\nroot: admin@example.org\n")
        self.call(["-t"], SUDO_MSG)
        [m] = self.deliver(1)
        self.assertEqual(m.rcpt_tos, ["admin@example.org"])
        self.assertEqual(m.mail_from, "%s@example.com" % LOGIN)
        fields, body = parse(m.data)
        self.assertEqual(one(fields, "to"), b"root@example.com")
        self.assertEqual(one(fields, "from"), b"root@example.com")
        self.assertEqual(one(fields, "auto-submitted"), b"auto-generated")
        self.assertEqual(body, split_message(SUDO_MSG)[1])


# --- SMTP clients over -bs --------------------------------------------------------

class Swaks(CallerTest):
    """swaks --pipe: an SMTP client driving `sendmail -bs` (one message a run)."""

    aliases = b"root: admin@example.org\n"

    def swaks(self, *args):
        return self.program(["swaks", "--pipe", self.sendmail + " -bs",
                             "--helo", "client.example.org"] + list(args))

    @need("swaks")
    def test_two_runs(self):
        out = []
        for to, subject in (("bob@example.org,root", "first"), ("carol@example.org", "second")):
            p = self.swaks("--from", "alice@example.net", "--to", to,
                           "--h-Subject", subject, "--body", "line\n.dot line\nend")
            out.append(p.stdout.decode())
        for o in out:
            self.assertRegex(o, r"<-  220 host\.example\.com ")
            self.assertRegex(o, r"<-  250 2\.0\.0 Ok: queued as [0-9A-F]{17}")
            self.assertRegex(o, r"<-  221 ")
        first, second = sorted(self.deliver(2), key=lambda m: len(m.rcpt_tos), reverse=True)
        self.assertEqual(first.mail_from, "alice@example.net")
        self.assertEqual(first.rcpt_tos, ["bob@example.org", "admin@example.org"])
        self.assertEqual(second.rcpt_tos, ["carol@example.org"])
        fields, body = parse(first.data)
        self.assertEqual(one(fields, "subject"), b"first")
        self.assertIn(b"swaks", one(fields, "x-mailer"))
        self.assertEqual(values(fields, "message-id"),
                         values(fields, "message-id")[:1])
        # swaks ends its data with two empty lines of its own; its "..dot"
        # was unstuffed.
        self.assertEqual(body, b"line\n.dot line\nend\n\n\n")
        fields, _ = parse(second.data)
        self.assertEqual(one(fields, "subject"), b"second")


class BackgroundDelivery(CallerTest):
    """delivery = background, the default: the detached delivery child must
    not hold up a caller that waits for sendmail to exit (PHP's pclose) or
    reads its output to the end (Symfony's ProcessStream, swaks, mailutils).
    The smarthost holds its reply to the final dot for a while; each caller
    must be back before its message is taken."""

    @need("symfony")
    @need("swaks")
    @need("mailutils")
    def test_callers_return_before_the_delivery_ends(self):
        self.configure("delivery = background\n")
        handler = self.server.handler
        handler.set_fault("dot", "stall")
        handler.dot_stall = 15.0 if VALGRIND else 3.0
        taken = {}
        inner = handler.handle_DATA

        async def handle_DATA(server, session, envelope):
            reply = await inner(server, session, envelope)
            taken[envelope.rcpt_tos[0]] = time.monotonic()
            return reply
        handler.handle_DATA = handle_DATA
        mail_php = self.write("mail.php", PHP_MAIL)
        callers = {
            "bg-symfony-bs@example.org": lambda rcpt: self.symfony(self.sendmail + " -bs", [
                {"from": "app@example.net", "to": [rcpt], "subject": "s", "text": "x"}]),
            "bg-symfony-t@example.org": lambda rcpt: self.symfony(self.sendmail + " -oi -t", [
                {"from": "app@example.net", "to": [rcpt], "subject": "s", "text": "x"}]),
            "bg-php@example.org": lambda rcpt: self.program(
                ["php", "-n", "-d", "sendmail_path=%s -t -i" % self.sendmail, mail_php],
                input=json.dumps({"to": rcpt, "subject": "s", "message": "x",
                                  "headers": "From: shop@example.net"}).encode()),
            "bg-swaks@example.org": lambda rcpt: self.program(
                ["swaks", "--pipe", self.sendmail + " -bs", "--to", rcpt]),
            "bg-mailutils@example.org": lambda rcpt: self.mailutils(
                ["-s", "s", rcpt], b"x\n"),
        }
        returned = {}
        for rcpt, run in callers.items():
            run(rcpt)
            returned[rcpt] = time.monotonic()
        deadline = time.monotonic() + TIMEOUT
        while len(taken) < len(callers) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(sorted(taken), sorted(callers))
        for rcpt in callers:
            self.assertLess(returned[rcpt], taken[rcpt], rcpt)
        # The children finish their work: nothing is left in the queue.
        while self.spool.ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.spool.ids(), [])


# --- Postfix as the smarthost ----------------------------------------------------

class PostfixCallers(test_postfix.PostfixTest):
    """The cron and PHP calls, delivered through a private Postfix instance."""

    @classmethod
    def setUpClass(cls):
        try:
            test_postfix.start_postfix()
        except postfix.Unavailable as e:
            if os.environ.get("RELAYQ_REQUIRE_POSTFIX"):
                raise AssertionError("Postfix unavailable: %s" % e)
            raise unittest.SkipTest("Postfix unavailable: %s" % e)

    @classmethod
    def tearDownClass(cls):
        test_postfix.tearDownModule()

    def setUp(self):
        super().setUp()
        self.spool.write_config("", self.smarthost_conf())
        self.sendmail = sendmail_path(self.spool)

    def run_caller(self, argv, input):
        p = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=self.spool.environ({"HOME": self.spool.root}), timeout=TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_debian_cron(self):
        self.run_caller([self.sendmail] + DEBIAN_CRON_ARGS, DEBIAN_CRON_MSG)
        [qid] = self.spool.ids()
        queued = self.spool.message(qid)
        self.run_queue()
        self.assertQueueGone()
        [m] = self.arrived("root@example.com")
        self.assertEqual(m.sender, "%s@example.com" % LOGIN)
        data, received = test_postfix.strip_received(m.data)
        self.assertEqual(data, queued)
        self.assertIn(b"(Authenticated sender: relayuser@relayq.test)", received)
        fields, body = parse(data)
        self.assertEqual(addresses(one(fields, "from")), ["root@example.com"])
        self.assertEqual(body, CRON_BODY)
        log = self.wait_new_log(lambda t: "disconnect from" in t)
        self.assertRegex(log, r"sasl_method=SCRAM-SHA-256")

    def test_cronie_delivers_at_once(self):
        # root has an alias here (and so a recipient of its own at Postfix).
        with open(os.path.join(self.spool.root, "aliases"), "w") as f:
            f.write("root: pf-cronie@example.org\n")
        self.run_caller([self.sendmail] + CRONIE_ARGS, CRONIE_MSG)
        self.assertQueueGone()
        [m] = self.arrived("pf-cronie@example.org")
        self.assertEqual(m.sender, "root@example.com")
        self.assertEqual(m.rcpts, ["pf-cronie@example.org"])
        fields, body = parse(test_postfix.strip_received(m.data)[0])
        self.assertEqual(addresses(one(fields, "from")), ["root@example.com"])
        self.assertEqual(addresses(one(fields, "to")), ["root@example.com"])
        self.assertEqual(body, CRON_BODY)

    @need("php")
    def test_php_mail_with_bcc(self):
        script = os.path.join(self.spool.root, "mail.php")
        with open(script, "w") as f:
            f.write(PHP_MAIL)
        call = {"to": "pf-bob@example.org", "subject": "via Postfix",
                "message": "Hello\n.\nbye",
                "headers": "From: Web Shop <shop@example.net>\r\nBcc: pf-hidden@example.org",
                "params": "-fpf-bounces@example.net"}
        self.run_caller(["php", "-n", "-d", "sendmail_path=%s -t -i" % self.sendmail, script],
                        json.dumps(call).encode())
        self.run_queue()
        self.assertQueueGone()
        [m] = self.arrived("pf-bob@example.org")
        self.assertEqual(m.sender, "pf-bounces@example.net")
        self.assertEqual(sorted(m.rcpts), ["pf-bob@example.org", "pf-hidden@example.org"])
        data, _ = test_postfix.strip_received(m.data)
        self.assertNotIn(b"pf-hidden", data)
        fields, body = parse(data)
        self.assertEqual(one(fields, "from"), b"Web Shop <shop@example.net>")
        self.assertEqual(body, b"Hello\n.\nbye\n")

    @need("php")
    def test_php_mail_sender_from_header(self):
        self.spool.write_config("sender_from_header = yes\n", self.smarthost_conf())
        script = os.path.join(self.spool.root, "mail.php")
        with open(script, "w") as f:
            f.write(PHP_MAIL)
        call = {"to": "pf-carol@example.org", "subject": "no -f", "message": "x\n",
                "headers": "From: Web Shop <shop@example.net>"}
        self.run_caller(["php", "-n", "-d", "sendmail_path=%s -t -i" % self.sendmail, script],
                        json.dumps(call).encode())
        self.run_queue()
        [m] = self.arrived("pf-carol@example.org")
        self.assertEqual(m.sender, "shop@example.net")


def tearDownModule():
    # test_relay's certificates, made on first use by RelayTest.
    if test_relay.CERTS is not None:
        shutil.rmtree(test_relay.CERTS.dir, ignore_errors=True)
        test_relay.CERTS = None


if __name__ == "__main__":
    harness.main()
