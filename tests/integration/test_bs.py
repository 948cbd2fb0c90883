"""relayq -bs: an SMTP dialogue on stdin/stdout into the queue, driven by
Python's smtplib over a socketpair (as inetd and systemd run it) or by hand
through pipes; then delivery of what it queued through a real smarthost."""
import os
import re
import smtplib
import socket
import subprocess

from harness import SpoolTest, main, split_message, header_fields, VALGRIND
from test_relay import RelayTest

TIMEOUT = 150 if VALGRIND else 30
QUEUED = re.compile(rb"^2\.0\.0 Ok: queued as ([0-9A-F]{17})$")


def reply_codes(out):
    """The code of every final reply line, in order."""
    codes = []
    for line in out.split(b"\r\n"):
        if not line:
            continue
        assert re.match(rb"^\d{3}[ -]", line), line
        if line[3:4] == b" ":
            codes.append(int(line[:3]))
    return codes


class BsSession:
    """relayq -bs with stdin and stdout on one end of a socketpair, smtplib
    on the other; stderr too when stderr_is_socket (inetd)."""

    def __init__(self, spool, args=(), stderr_is_socket=False):
        ours, theirs = socket.socketpair()
        ours.settimeout(TIMEOUT)
        self.proc = subprocess.Popen(
            spool.command() + ["-bs"] + list(args), stdin=theirs, stdout=theirs,
            stderr=theirs if stderr_is_socket else subprocess.PIPE,
            env=spool.environ())
        theirs.close()
        self.sock = ours
        self.smtp = smtplib.SMTP()
        self.smtp.sock = ours
        self.smtp._host = "localhost"
        self.greeting = self.smtp.getreply()

    def send_message(self, sender, rcpts, data):
        """MAIL, RCPT..., DATA; the queue id from the 250 reply."""
        code, _ = self.smtp.mail(sender)
        assert code == 250, code
        for r in rcpts:
            code, _ = self.smtp.rcpt(r)
            assert code == 250, code
        code, msg = self.smtp.data(data)
        assert code == 250, (code, msg)
        m = QUEUED.match(msg)
        assert m, msg
        return m.group(1).decode()

    def finish(self):
        """QUIT (if still connected); the exit status and stderr."""
        try:
            reply = self.smtp.quit()
        except smtplib.SMTPServerDisconnected:
            reply = None
        self.sock.close()
        err = self.proc.stderr.read() if self.proc.stderr else b""
        if self.proc.stderr:
            self.proc.stderr.close()
        return reply, self.proc.wait(TIMEOUT), err


MSG1 = b"Subject: first\r\nTo: r1@example.org\r\n\r\nline one\r\n.leading dot\r\n"
MSG2 = b"Subject: second\r\n\r\nline two\r\n"


class BsQueue(SpoolTest):

    def bs(self, transcript, args=(), **kw):
        return self.spool.run(["-bs"] + list(args), input=transcript, **kw)

    def test_two_messages_in_one_session(self):
        s = BsSession(self.spool)
        self.assertEqual(s.greeting[0], 220)
        self.assertIn(b"host.example.com", s.greeting[1])
        code, _ = s.smtp.ehlo("client.example.org")
        self.assertEqual(code, 250)
        for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes"):
            self.assertTrue(s.smtp.has_extn(ext), ext)
        q1 = s.send_message("sender@example.net", ["r1@example.org"], MSG1)
        q2 = s.send_message("<>", ["r2@example.org", "r3@example.org"], MSG2)
        # Each reply came after its message was on disk.
        self.assertEqual(self.spool.ids(), sorted([q1, q2]))
        reply, rc, err = s.finish()
        self.assertEqual(reply[0], 221)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.spool.listdir("tmp"), [])

        e1, e2 = self.spool.envelope(q1), self.spool.envelope(q2)
        self.assertEqual(e1["sender"], "sender@example.net")
        self.assertEqual([r["addr"] for r in e1["rcpts"]], ["r1@example.org"])
        self.assertEqual(e2["sender"], "")
        self.assertEqual([r["addr"] for r in e2["rcpts"]],
                         ["r2@example.org", "r3@example.org"])
        self.assertEqual(int(e1["size"]), len(self.spool.data(q1)))

        head, body = split_message(self.spool.message(q1))
        fields = dict(header_fields(head))
        self.assertEqual(fields["subject"], b"first")
        for name in ("received", "date", "message-id", "from"):
            self.assertIn(name, fields)
        self.assertIn(q1.encode(), fields["received"])
        self.assertEqual(body, b"line one\n.leading dot\n")
        # Wire form on disk: CRLF, the leading dot stuffed again.
        self.assertIn(b"\r\nline one\r\n..leading dot\r\n", self.spool.data(q1))
        _, body = split_message(self.spool.message(q2))
        self.assertEqual(body, b"line two\n")

    def test_rset_vrfy_noop_help(self):
        s = BsSession(self.spool)
        self.assertEqual(s.smtp.helo("client")[0], 250)
        self.assertEqual(s.smtp.mail("a@example.org")[0], 250)
        self.assertEqual(s.smtp.rset()[0], 250)
        code, msg = s.smtp.rcpt("b@example.org")
        self.assertEqual((code, msg[:5]), (503, b"5.5.1"))
        code, msg = s.smtp.verify("root")
        self.assertEqual((code, msg[:5]), (252, b"2.5.2"))
        self.assertEqual(s.smtp.noop()[0], 250)
        self.assertIn(b"MAIL", s.smtp.help())
        self.assertEqual(s.smtp.docmd("EXPN", "root")[0], 502)
        self.assertEqual(s.smtp.docmd("FROB")[0], 500)
        reply, rc, err = s.finish()
        self.assertEqual((reply[0], rc), (221, 0), err)
        self.assertQueueEmpty()

    def test_eof_mid_message_queues_nothing(self):
        for cut in (b"DATA\r\n", b"DATA\r\nSubject: cut\r\n\r\npartial line\r\n",
                    b"DATA\r\nSubject: cut\r\n\r\nno end\r\n.", b"DATA\r\nx\r\n..\r\n"):
            with self.subTest(cut=cut):
                p = self.bs(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\n"
                            b"RCPT TO:<b@example.org>\r\n" + cut)
                self.assertEqual(reply_codes(p.stdout), [220, 250, 250, 250, 354])
                self.assertExit(p, 76)
                self.assertIn(b"nothing queued", p.stderr)
                self.assertQueueEmpty()

    def test_eof_between_commands_is_a_normal_end(self):
        p = self.bs(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
                    b"DATA\r\nx\r\n.\r\nNOOP")
        self.assertExit(p, 0)
        self.assertEqual(reply_codes(p.stdout), [220, 250, 250, 250, 354, 250])
        self.assertEqual(len(self.spool.ids()), 1)

    def test_line_too_long(self):
        p = self.bs(b"EHLO c\r\nNOOP " + b"x" * 5000 + b"\r\nNOOP\r\nQUIT\r\n")
        self.assertExit(p, 0)
        self.assertEqual(reply_codes(p.stdout), [220, 250, 500, 250, 221])
        self.assertIn(b"500 5.5.2 Error: line too long\r\n", p.stdout)

    def test_too_many_recipients(self):
        self.spool.write_config("max_recipients = 3\n")
        rcpts = b"".join(b"RCPT TO:<r%d@example.org>\r\n" % i for i in range(5))
        p = self.bs(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\n" + rcpts +
                    b"DATA\r\nSubject: x\r\n\r\ny\r\n.\r\nQUIT\r\n")
        self.assertExit(p, 0)
        self.assertEqual(reply_codes(p.stdout),
                         [220, 250, 250, 250, 250, 250, 452, 452, 354, 250, 221])
        self.assertIn(b"452 4.5.3 ", p.stdout)
        env = self.spool.envelope(self.spool.ids()[0])
        self.assertEqual([r["addr"] for r in env["rcpts"]],
                         ["r0@example.org", "r1@example.org", "r2@example.org"])

    def test_oversize_is_refused_and_the_session_goes_on(self):
        self.spool.write_config("max_message_size = 2K\n")
        big = b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 100
        p = self.bs(b"EHLO c\r\nMAIL FROM:<a@example.org> SIZE=999999\r\n"
                    b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n" +
                    big + b".\r\n"
                    b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
                    b"Subject: small\r\n\r\nok\r\n.\r\nQUIT\r\n")
        self.assertExit(p, 0)
        self.assertEqual(reply_codes(p.stdout),
                         [220, 250, 552, 250, 250, 354, 552, 250, 250, 354, 250, 221])
        self.assertIn(b"250-SIZE 2048\r\n", p.stdout)
        self.assertIn(b"552 5.3.4 ", p.stdout)
        ids = self.spool.ids()
        self.assertEqual(len(ids), 1)
        self.assertIn(b"Subject: small", self.spool.data(ids[0]))
        self.assertEqual(self.spool.listdir("data"), ids)
        self.assertEqual(self.spool.listdir("tmp"), [])

    def test_pipelined_commands_in_one_write(self):
        # Everything at once, as a PIPELINING client may send it: nothing
        # after the first "." may be lost to the message reader.
        t = (b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
             b"RCPT TO:<c@example.org>\r\nDATA\r\nSubject: one\r\n\r\n1\r\n.\r\n"
             b"MAIL FROM:<d@example.org>\r\nRCPT TO:<e@example.org>\r\nDATA\r\n"
             b"Subject: two\r\n\r\n2\r\n.\r\nQUIT\r\n")
        p = self.bs(t)
        self.assertExit(p, 0)
        self.assertEqual(reply_codes(p.stdout),
                         [220, 250, 250, 250, 250, 354, 250, 250, 250, 354, 250, 221])
        queued = re.findall(rb"queued as ([0-9A-F]{17})", p.stdout)
        self.assertEqual(sorted(q.decode() for q in queued), self.spool.ids())
        one, two = (self.spool.envelope(q.decode()) for q in queued)
        self.assertEqual(one["sender"], "a@example.org")
        self.assertEqual([r["addr"] for r in one["rcpts"]], ["b@example.org", "c@example.org"])
        self.assertEqual(two["sender"], "d@example.org")
        self.assertIn(b"Subject: two\r\n", self.spool.data(queued[1].decode()))
        self.assertNotIn(b"MAIL FROM", self.spool.data(queued[0].decode()))

    def test_lf_only_client(self):
        p = self.bs(b"HELO c\nMAIL FROM:<a@example.org>\nRCPT TO:<b@example.org>\nDATA\n"
                    b"Subject: lf\n\nx\n..y\n.\nQUIT\n")
        self.assertExit(p, 0)
        self.assertEqual(reply_codes(p.stdout), [220, 250, 250, 250, 354, 250, 221])
        _, body = split_message(self.spool.message(self.spool.ids()[0]))
        self.assertEqual(body, b"x\n.y\n")

    def test_bare_lf_dot_cannot_smuggle_a_message(self):
        # A CRLF client passing "\n.\n" in the data: not an end of data here.
        p = self.bs(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
                    b"DATA\r\nSubject: s\r\n\r\nhello\n.\nMAIL FROM:<evil@example.net>\n"
                    b"RCPT TO:<victim@example.net>\nDATA\nforged\n.\n\r\n.\r\nQUIT\r\n")
        self.assertExit(p, 0)
        self.assertEqual(reply_codes(p.stdout), [220, 250, 250, 250, 354, 250, 221])
        ids = self.spool.ids()
        self.assertEqual(len(ids), 1)
        env = self.spool.envelope(ids[0])
        self.assertEqual([r["addr"] for r in env["rcpts"]], ["b@example.org"])
        self.assertIn(b"\r\nMAIL FROM:<evil@example.net>\r\n", self.spool.data(ids[0]))

    def test_inetd_style_stderr_is_the_socket(self):
        # log = stderr, and stderr is the client's socket: only SMTP may
        # come out of it.
        s = BsSession(self.spool, stderr_is_socket=True)
        s.smtp.ehlo("c")
        s.send_message("a@example.org", ["b@example.org"], MSG2)
        s.smtp.sock.sendall(b"QUIT\r\n")
        rest = s.smtp.file.read()
        self.assertEqual(reply_codes(rest), [221])
        s.sock.close()
        self.assertEqual(s.proc.wait(TIMEOUT), 0)
        self.assertEqual(len(self.spool.ids()), 1)

    def test_syntax_errors(self):
        p = self.bs(b"HELO\r\nMAIL FROM:<a b@example.org>\r\nMAIL FROM:<a@example.org> X=1\r\n"
                    b"MAIL FROM:<a@example.org> BODY=8BITMIME SMTPUTF8\r\n"
                    b"RCPT TO:<>\r\nRCPT TO:<@@>\r\nDATA x\r\nQUIT\r\n")
        self.assertExit(p, 0)
        self.assertEqual(reply_codes(p.stdout), [220, 501, 501, 555, 250, 501, 501, 501, 221])

    def test_too_many_errors_hang_up(self):
        p = self.bs(b"BAD\r\n" * 25 + b"QUIT\r\n")
        self.assertExit(p, 0)
        codes = reply_codes(p.stdout)
        self.assertEqual(codes, [220] + [500] * 20 + [421])

    def test_queue_trouble_is_temporary_and_the_session_goes_on(self):
        blocker = os.path.join(self.spool.root, "file")
        open(blocker, "w").close()
        self.spool.queue = os.path.join(blocker, "queue")
        self.spool.write_config()
        p = self.bs(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
                    b"DATA\r\nSubject: x\r\n\r\ny\r\n.\r\nNOOP\r\nQUIT\r\n")
        self.assertExit(p, 0)
        self.assertEqual(reply_codes(p.stdout), [220, 250, 250, 250, 354, 451, 250, 221])


class BsDelivery(RelayTest):

    def test_odi_delivers_every_message_after_the_session(self):
        self.configure()
        t = (b"EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\n"
             b"DATA\r\nSubject: one\r\n\r\n.dot\r\n.\r\n"
             b"MAIL FROM:<c@example.net>\r\nRCPT TO:<d@example.org>\r\n"
             b"RCPT TO:<e@example.org>\r\nDATA\r\nSubject: two\r\n\r\n2\r\n.\r\nQUIT\r\n")
        p = self.spool.run(["-bs", "-odi"], input=t)
        self.assertExit(p, 0)
        self.assertEqual(reply_codes(p.stdout),
                         [220, 250, 250, 250, 354, 250, 250, 250, 250, 354, 250, 221])
        msgs = sorted(self.server.messages, key=lambda m: m.mail_from)
        self.assertEqual([(m.mail_from, sorted(m.rcpt_tos)) for m in msgs],
                         [("a@example.net", ["b@example.org"]),
                          ("c@example.net", ["d@example.org", "e@example.org"])])
        self.assertIn(b"Subject: one\r\n", msgs[0].data)
        self.assertTrue(msgs[0].data.endswith(b"\r\n\r\n.dot\r\n"), msgs[0].data)
        self.assertIn(b"Subject: two\r\n", msgs[1].data)
        self.assertEqual(self.spool.ids(), [])
        # Both over one session, as a queue run would carry them.
        self.assertEqual(self.server.handler.connections, 1)

    def test_background_delivery(self):
        self.configure("delivery = background\n")
        s = BsSession(self.spool)
        s.send_message("a@example.net", ["b@example.org"], MSG2)
        reply, rc, err = s.finish()
        self.assertEqual(rc, 0, err)
        self.assertTrue(self.arrived.wait(TIMEOUT), "background delivery did not arrive")
        m = self.server.messages[0]
        self.assertEqual((m.mail_from, m.rcpt_tos), ("a@example.net", ["b@example.org"]))
        self.assertIn(b"Subject: second\r\n", m.data)


class BsQueueInProcess(BsQueue):
    """The same, parsed in the one process: relayq has no privilege to
    separate (not setgid, or run by root)."""
    separate = False


class BsDeliveryInProcess(BsDelivery):
    """The same, parsed in the one process: relayq has no privilege to
    separate (not setgid, or run by root)."""
    separate = False


if __name__ == "__main__":
    main()
