"""Aliases (/etc/aliases syntax) applied to local recipients, newaliases/-bi
reporting, -bv, and sender rewriting (sender_rewrite, sender_from_header):
checked on the envelope and the header bytes in the queue."""
import os
import re

from harness import SpoolTest, main, split_message, header_fields
from test_relay import RelayTest
from test_bs import reply_codes

ALIASES = b"""# local names
postmaster: root
root:   admin@example.org,
        # the on-call list as well
        oncall
oncall: ops@example.org, "Night Shift"@example.org
www-data: root
ROOT: ignored@example.org
loop1: loop2
loop2: loop1, loop@example.org
cron: |/usr/bin/logger, admin@example.org
"""
MSG = b"Subject: hello\n\nbody\n"


def envelope_rcpts(env):
    return [r["addr"] for r in env["rcpts"]]


class AliasTest(SpoolTest):

    def setUp(self):
        super().setUp()
        self.aliases = os.path.join(self.spool.root, "aliases")
        self.write_aliases(ALIASES)
        self.configure()

    def configure(self, extra=""):
        self.spool.write_config('aliases = "%s"\n' % self.aliases + extra)

    def write_aliases(self, text):
        with open(self.aliases, "wb") as f:
            f.write(text)

    def only(self):
        ids = self.spool.ids()
        self.assertEqual(len(ids), 1, ids)
        return ids[0]

    def from_header(self, qid):
        head, _ = split_message(self.spool.message(qid))
        return [v for n, v in header_fields(head) if n == "from"]


class Aliases(AliasTest):

    def test_root_goes_to_its_aliases(self):
        p = self.submit(["root"], MSG)
        self.assertExit(p, 0)
        env = self.spool.envelope(self.only())
        self.assertEqual(envelope_rcpts(env), ["admin@example.org", "ops@example.org",
                                               '"Night Shift"@example.org'])
        # The original recipient is kept for DSN.
        self.assertEqual([r.get("orcpt") for r in env["rcpts"]], ["root"] * 3)

    def test_nested_case_insensitive_and_deduplicated(self):
        p = self.submit(["Postmaster", "www-data", "root@host.example.com",
                         "admin@example.org"], MSG)
        self.assertExit(p, 0)
        self.assertEqual(envelope_rcpts(self.spool.envelope(self.only())),
                         ["admin@example.org", "ops@example.org",
                          '"Night Shift"@example.org'])

    def test_unknown_local_name_is_qualified_and_domain_is_not_local(self):
        self.assertExit(self.submit(["nobody-here", "root@example.com"], MSG), 0)
        self.assertEqual(envelope_rcpts(self.spool.envelope(self.only())),
                         ["nobody-here@example.com", "root@example.com"])

    def test_header_recipients_with_t(self):
        # sudo's "To: root": extracted with -t, then aliased; the header
        # itself only gets qualified.
        p = self.submit(["-t"], b"To: root\nSubject: sudo\n\nx\n")
        self.assertExit(p, 0)
        qid = self.only()
        self.assertEqual(envelope_rcpts(self.spool.envelope(qid))[0], "admin@example.org")
        head, _ = split_message(self.spool.message(qid))
        self.assertEqual(dict(header_fields(head))["to"], b"root@example.com")

    def test_loop_and_pipe_warn_and_still_deliver(self):
        p = self.submit(["loop1", "cron"], MSG)
        self.assertExit(p, 0)
        self.assertEqual(envelope_rcpts(self.spool.envelope(self.only())),
                         ["loop1@example.com", "loop@example.org", "admin@example.org"])
        err = p.stderr.decode()
        self.assertIn("%s:10: alias loop2: <loop1> loops back to alias loop1" % self.aliases, err)
        self.assertIn("%s:11: alias cron: |command target" % self.aliases, err)

    def test_missing_file_is_no_aliases(self):
        os.unlink(self.aliases)
        self.assertExit(self.submit(["root"], MSG), 0)
        self.assertEqual(envelope_rcpts(self.spool.envelope(self.only())),
                         ["root@example.com"])

    def test_unreadable_file_is_temporary(self):
        os.unlink(self.aliases)
        os.mkdir(self.aliases)
        p = self.submit(["root"], MSG)
        self.assertExit(p, 75)
        self.assertIn(self.aliases.encode(), p.stderr)
        self.assertQueueEmpty()
        # Mail that needs no alias is not held up by it.
        self.assertExit(self.submit(["bob@example.org"], MSG), 0)

    def test_expansion_limit(self):
        self.configure("max_alias_expansions = 3\n")
        p = self.submit(["root"], MSG)
        self.assertExit(p, 65)
        self.assertIn(b"max_alias_expansions", p.stderr)
        self.assertQueueEmpty()

    def test_bs_recipients_are_aliased(self):
        p = self.spool.run(["-bs"], input=b"HELO c\r\nMAIL FROM:<a@example.net>\r\n"
                           b"RCPT TO:<root>\r\nDATA\r\nSubject: x\r\n\r\ny\r\n.\r\nQUIT\r\n")
        self.assertExit(p, 0)
        self.assertEqual(reply_codes(p.stdout), [220, 250, 250, 250, 354, 250, 221])
        self.assertEqual(envelope_rcpts(self.spool.envelope(self.only()))[0],
                         "admin@example.org")


class Newaliases(AliasTest):

    def test_good_file_is_silent(self):
        self.write_aliases(b"# c\npostmaster: root\nroot: admin@example.org,\n  b@example.org\n")
        for args, argv0 in ((["-bi"], "sendmail"), ([], "newaliases"), (["-I"], "sendmail")):
            with self.subTest(argv0=argv0, args=args):
                p = self.spool.run(args, argv0=argv0)
                self.assertExit(p, 0)
                self.assertEqual((p.stdout, p.stderr), (b"", b""))

    def test_missing_file_is_fine(self):
        os.unlink(self.aliases)
        p = self.spool.run(["-bi"])
        self.assertExit(p, 0)
        self.assertEqual(p.stderr, b"")

    def test_problems_with_line_numbers(self):
        self.write_aliases(b"root admin@example.org\n"
                           b"ok: a@example.org,\n"
                           b"   b@@example.org\n"
                           b"empty:\n"
                           b"mail: /var/mail/x, a@example.org\n"
                           b"OK: dup@example.org\n"
                           b"  \n")
        p = self.spool.run([], argv0="newaliases")
        self.assertExit(p, 65)
        lines = p.stderr.decode().splitlines()
        a = self.aliases
        self.assertEqual(lines[0], "%s:1: missing ':' after the alias name" % a)
        self.assertTrue(lines[1].startswith('%s:3: alias ok: bad target "b@@example.org": ' % a),
                        lines[1])
        self.assertEqual(lines[2], "%s:4: alias empty has no target" % a)
        self.assertEqual(lines[3], '%s:5: warning: alias mail: /file target "/var/mail/x" '
                                   'is not supported by a relay-only MTA, skipped' % a)
        self.assertEqual(lines[4], "%s:6: warning: duplicate alias OK (first at line 2), "
                                   "ignored" % a)
        self.assertEqual(len(lines), 5, lines)

    def test_only_warnings_exit_0(self):
        self.write_aliases(b"a: b\nb: a\nc: |/bin/true, x@example.org\n")
        p = self.spool.run(["-bi"])
        self.assertExit(p, 0)
        self.assertEqual(len(p.stderr.decode().splitlines()), 3, p.stderr)
        self.assertIn(b":1: warning: alias a: <b> loops back", p.stderr)


class Verify(AliasTest):

    def test_expansion_and_qualification(self):
        p = self.spool.run(["-bv", "root", "bob", "x@example.net"])
        self.assertExit(p, 0)
        self.assertEqual(p.stdout.decode().splitlines(), [
            'root... deliverable: expands to <admin@example.org>, <ops@example.org>, '
            '<"Night Shift"@example.org>',
            "bob... deliverable: <bob@example.com>",
            "x@example.net... deliverable: <x@example.net>"])
        self.assertQueueEmpty()

    def test_invalid_addresses_are_67(self):
        p = self.spool.run(["-bv", "a@@example.org", "root", "<broken"])
        self.assertExit(p, 67)
        out = p.stdout.decode().splitlines()
        self.assertTrue(out[0].startswith("a@@example.org... undeliverable: "), out)
        self.assertTrue(out[1].startswith("root... deliverable: "), out)
        self.assertTrue(out[2].startswith("<broken... undeliverable: "), out)


class SenderRewrite(AliasTest):

    def test_cron_style_call(self):
        # cron: sendmail -FCronDaemon -i -B8BITMIME -oem root, From: root (Cron Daemon)
        self.configure('sender_rewrite = "alerts@example.com"\n')
        p = self.submit(["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"],
                        b"From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> ls\n"
                        b"\nout\n")
        self.assertExit(p, 0)
        qid = self.only()
        env = self.spool.envelope(qid)
        self.assertEqual(env["sender"], "alerts@example.com")
        self.assertEqual(envelope_rcpts(env)[0], "admin@example.org")
        self.assertIn(b'\r\nFrom: "Cron Daemon" <alerts@example.com>\r\n', self.spool.data(qid))
        self.assertIn(b"\r\nTo: root@example.com\r\n", self.spool.data(qid))

    def test_added_from_uses_the_rewritten_sender(self):
        self.configure('sender_rewrite = "alerts@example.com"\n')
        self.assertExit(self.submit(["-F", "Cron Daemon", "bob@example.org"], MSG), 0)
        qid = self.only()
        self.assertEqual(self.spool.envelope(qid)["sender"], "alerts@example.com")
        self.assertEqual(self.from_header(qid), [b'"Cron Daemon" <alerts@example.com>'])

    def test_display_name_in_angle_form_and_host_address(self):
        self.configure('sender_rewrite = "alerts@example.com"\n')
        self.assertExit(self.submit(["-f", "root@host.example.com", "bob@example.org"],
                                    b"From: Backup Job <root@host.example.com>\n\nx\n"), 0)
        qid = self.only()
        self.assertEqual(self.spool.envelope(qid)["sender"], "alerts@example.com")
        self.assertEqual(self.from_header(qid), [b"Backup Job <alerts@example.com>"])

    def test_other_senders_untouched(self):
        self.configure('sender_rewrite = "alerts@example.com"\n')
        self.assertExit(self.submit(["-f", "app@example.net", "bob@example.org"],
                                    b"From: App <app@example.net>\n\nx\n"), 0)
        qid = self.only()
        self.assertEqual(self.spool.envelope(qid)["sender"], "app@example.net")
        self.assertEqual(self.from_header(qid), [b"App <app@example.net>"])
        self.assertIn(b"\r\nFrom: App <app@example.net>\r\n", self.spool.data(qid))

    def test_null_sender_stays_null(self):
        self.configure('sender_rewrite = "alerts@example.com"\n')
        self.assertExit(self.submit(["-f", "<>", "bob@example.org"], MSG), 0)
        self.assertEqual(self.spool.envelope(self.only())["sender"], "")

    def test_bs_mail_from_local_is_rewritten(self):
        self.configure('sender_rewrite = "alerts@example.com"\n')
        p = self.spool.run(["-bs"], input=b"HELO c\r\nMAIL FROM:<www-data>\r\n"
                           b"RCPT TO:<bob@example.org>\r\nDATA\r\nFrom: www-data\r\n\r\ny\r\n"
                           b".\r\nQUIT\r\n")
        self.assertExit(p, 0)
        qid = self.only()
        self.assertEqual(self.spool.envelope(qid)["sender"], "alerts@example.com")
        self.assertEqual(self.from_header(qid), [b"alerts@example.com"])

    def test_bad_rewrite_address_is_a_config_error(self):
        self.configure('sender_rewrite = "not an address"\n')
        p = self.submit(["bob@example.org"], MSG)
        self.assertExit(p, 78)
        self.assertIn(b"sender_rewrite", p.stderr)
        self.assertQueueEmpty()


class SenderFromHeader(AliasTest):

    def test_from_header_becomes_the_sender(self):
        # PHP mail() without -f
        self.configure("sender_from_header = yes\n")
        self.assertExit(self.submit(["-t", "-i"], b"From: Web Shop <shop@example.net>\n"
                                    b"To: bob@example.org\nSubject: order\n\nx\n"), 0)
        qid = self.only()
        self.assertEqual(self.spool.envelope(qid)["sender"], "shop@example.net")
        self.assertEqual(self.from_header(qid), [b"Web Shop <shop@example.net>"])

    def test_f_wins(self):
        self.configure("sender_from_header = yes\n")
        self.assertExit(self.submit(["-f", "bounce@example.net", "bob@example.org"],
                                    b"From: shop@example.net\n\nx\n"), 0)
        self.assertEqual(self.spool.envelope(self.only())["sender"], "bounce@example.net")

    def test_no_from_header_keeps_the_caller(self):
        self.configure("sender_from_header = yes\n")
        self.assertExit(self.submit(["bob@example.org"], MSG), 0)
        import pwd
        login = pwd.getpwuid(os.getuid()).pw_name
        self.assertEqual(self.spool.envelope(self.only())["sender"], login + "@example.com")

    def test_local_from_with_rewrite(self):
        self.configure("sender_from_header = yes\nsender_rewrite = \"alerts@example.com\"\n")
        self.assertExit(self.submit(["bob@example.org"],
                                    b"From: root (Cron Daemon)\n\nx\n"), 0)
        qid = self.only()
        self.assertEqual(self.spool.envelope(qid)["sender"], "alerts@example.com")
        self.assertEqual(self.from_header(qid), [b'"Cron Daemon" <alerts@example.com>'])


class VerifySmarthost(RelayTest):

    def test_vrfy_through_the_smarthost(self):
        self.configure()
        p = self.spool.run(["-bv", "-v", "bob@example.org"])
        self.assertExit(p, 0)
        out = p.stdout.decode().splitlines()
        self.assertEqual(out[0], "bob@example.org... deliverable: <bob@example.org>")
        self.assertTrue(re.match(r"^bob@example\.org\.\.\. smarthost main "
                                 r"\(127\.0\.0\.1\[127\.0\.0\.1\]:\d+\): 252 ", out[1]), out)
        self.assertIn("VRFY", p.stderr.decode())          # the -v transcript
        self.assertNotIn("pa55-w0rd", p.stderr.decode())

    def test_unreachable_smarthost_is_temporary(self):
        self.configure(smarthosts=self.smarthost_conf(port="1"))
        p = self.spool.run(["-bv", "-v", "bob@example.org"])
        self.assertExit(p, 75)
        self.assertIn(b"deliverable", p.stdout)


if __name__ == "__main__":
    main()
