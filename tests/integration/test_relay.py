"""Delivery through real SMTP smarthosts on loopback (aiosmtpd): TLS, AUTH,
retries, bounces, failover, the delivery paths and the -v transcript."""
import base64
import os
import pwd
import signal
import subprocess
import threading
import time

from harness import SpoolTest, Spool, main, unwire, parse_envelope
from certs import Certs
import smarthost

CERTS = None
USER, PASSWORD = "relayuser", "pa55-w0rd-Secret"
MSG = (b"From: Sender <sender@example.net>\nTo: rcpt@example.org\n"
       b"Bcc: hidden@example.org\nSubject: relay test\n\n.leading dot\nbody\n")


def certs():
    global CERTS
    if CERTS is None:
        CERTS = Certs()
    return CERTS


def wire_to_smtp(data):
    """What an SMTP server stores for our wire form: dots unstuffed, CRLF kept."""
    return b"".join(l[1:] if l.startswith(b".") else l
                    for l in data.splitlines(keepends=True))


class RelayTest(SpoolTest):
    tls = "starttls"
    users = {USER: PASSWORD}

    def setUp(self):
        super().setUp()
        self.arrived = threading.Event()
        self.servers = []
        self.server = self.start_server(self.tls)

    def tearDown(self):
        for s in self.servers:
            s.stop()
        super().tearDown()

    def start_server(self, tls, cert=None, key=None, **kw):
        c = certs()
        s = smarthost.Smarthost(tls, cert or c.server, key or c.server_key, self.users, **kw)
        orig = s.handler.handle_DATA

        async def handle_DATA(server, session, envelope):
            reply = await orig(server, session, envelope)
            if reply.startswith("250"):
                self.arrived.set()
            return reply
        s.handler.handle_DATA = handle_DATA
        s.start()
        self.servers.append(s)
        return s

    def smarthost_conf(self, server=None, name="main", **keys):
        server = server or self.server
        conf = {"host": '"127.0.0.1"', "port": str(server.port), "tls": self.tls,
                "tls_ca_file": '"%s"' % certs().ca, "username": '"%s"' % USER,
                "password": '"%s"' % PASSWORD, "timeout": "20s"}
        conf.update(keys)
        body = "".join(" %s = %s\n" % (k, v) for k, v in conf.items() if v is not None)
        return "smarthost %s {\n%s}\n" % (name, body)

    def configure(self, extra="", smarthosts=None):
        self.spool.write_config(extra, self.smarthost_conf() if smarthosts is None
                                else smarthosts)

    def queue(self, args=("rcpt@example.org",), message=MSG):
        p = self.submit(["-odq", "-i"] + list(args), message)
        self.assertExit(p, 0)
        return self.spool.ids()[-1]

    def run_queue(self, *args):
        p = self.spool.run(["-q"] + list(args))
        self.assertIn(p.returncode, (0, 75), p.stderr)
        return p

    def mailq(self):
        return self.spool.run([], argv0="mailq").stdout.decode()


class Delivery(RelayTest):

    def test_starttls_auth_message_arrives_byte_identical(self):
        self.configure()
        qid = self.queue()
        data = self.spool.data(qid)
        self.run_queue()
        self.assertEqual(len(self.server.messages), 1)
        m = self.server.messages[0]
        self.assertEqual(m.data, wire_to_smtp(data))
        self.assertEqual(m.mail_from, "%s@example.com" % pwd.getpwuid(os.getuid()).pw_name)
        self.assertEqual(sorted(m.rcpt_tos), ["rcpt@example.org"])
        self.assertNotIn(b"hidden", m.data)
        self.assertNotIn(b"Bcc", m.data)
        self.assertTrue(m.tls)
        self.assertEqual(m.auth, USER)
        self.assertEqual(self.spool.ids(), [])
        self.assertEqual(self.spool.listdir("data"), [])

    def test_envelope_sender_and_bcc_recipients(self):
        self.configure()
        p = self.submit(["-odi", "-t", "-f", "bounces@example.net"], MSG)
        self.assertExit(p, 0)
        m = self.server.messages[0]
        self.assertEqual(m.mail_from, "bounces@example.net")
        self.assertEqual(sorted(m.rcpt_tos), ["hidden@example.org", "rcpt@example.org"])
        self.assertNotIn(b"hidden", m.data)

    def test_auth_mechanisms(self):
        for mech in ("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"):
            with self.subTest(mech=mech):
                self.server.handler.used_mechanisms.clear()
                self.configure(smarthosts=self.smarthost_conf(auth='{ "%s" }' % mech))
                p = self.submit(["-odi", "rcpt@example.org"], MSG)
                self.assertExit(p, 0)
                self.assertEqual(self.server.handler.used_mechanisms, [mech], p.stderr)
        self.assertEqual(len(self.server.messages), 4)

    def test_oauth_token_from_password_command(self):
        script = os.path.join(self.spool.root, "token")
        with open(script, "w") as f:
            f.write("#!/bin/sh\necho '%s'\n" % PASSWORD)
        os.chmod(script, 0o755)
        for mech in ("XOAUTH2", "OAUTHBEARER"):
            with self.subTest(mech=mech):
                self.server.handler.used_mechanisms.clear()
                self.configure(smarthosts=self.smarthost_conf(
                    auth='{ "%s" }' % mech, password=None,
                    password_command='"%s"' % script))
                p = self.submit(["-v", "-odi", "rcpt@example.org"], MSG)
                self.assertExit(p, 0)
                self.assertEqual(self.server.handler.used_mechanisms, [mech], p.stderr)
                self.assertNotIn(PASSWORD.encode(), p.stderr)
        self.assertEqual(len(self.server.messages), 2)

    def test_default_mechanism_is_strongest(self):
        self.configure()
        self.assertExit(self.submit(["-odi", "rcpt@example.org"], MSG), 0)
        self.assertEqual(self.server.handler.used_mechanisms, ["SCRAM-SHA-256"])

    def test_wrong_password_defers(self):
        self.configure(smarthosts=self.smarthost_conf(password='"wrong"'))
        qid = self.queue()
        self.run_queue()
        self.assertEqual(self.server.messages, [])
        env = self.spool.envelope(qid)
        self.assertEqual(env["rcpts"][0]["status"], "pending")
        self.assertIn("auth", env["last-error"].lower())
        self.assertEqual(self.spool.listdir("failed"), [])

    def test_one_session_for_many_messages(self):
        self.configure()
        for i in range(5):
            self.queue(["r%d@example.org" % i])
        self.run_queue()
        self.assertEqual(len(self.server.messages), 5)
        self.assertEqual(self.server.handler.connections, 1)
        self.assertEqual(self.spool.ids(), [])

    def test_verbose_transcript_hides_secrets(self):
        self.configure(smarthosts=self.smarthost_conf(auth='{ "PLAIN" }'))
        p = self.submit(["-v", "-odi", "rcpt@example.org"], MSG)
        self.assertExit(p, 0)
        err = p.stderr.decode()
        self.assertIn("EHLO", err)
        self.assertIn("STARTTLS", err)
        self.assertNotIn(PASSWORD, err)
        plain = base64.b64encode(b"\0" + USER.encode() + b"\0" + PASSWORD.encode()).decode()
        self.assertNotIn(plain, err)
        self.assertNotIn(base64.b64encode(PASSWORD.encode()).decode(), err)


class Protocol(RelayTest):

    def test_too_many_recipients_go_in_new_transactions(self):
        self.configure()
        self.server.handler.rcpt_limit = 2
        rcpts = ["r%d@example.org" % i for i in range(5)]
        self.queue(rcpts)
        self.run_queue()
        self.assertEqual(self.spool.ids(), [])
        got = sorted(r for m in self.server.messages for r in m.rcpt_tos)
        self.assertEqual(got, rcpts)
        self.assertEqual(len(self.server.messages), 3)
        self.assertEqual(self.server.handler.connections, 1)

    def test_ipv6_loopback(self):
        import socket
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", 0))
        except OSError:
            self.skipTest("no IPv6 loopback")
        v6 = self.start_server("starttls", host="::1")
        self.configure(smarthosts=self.smarthost_conf(v6, host='"::1"'))
        self.assertExit(self.submit(["-odi", "rcpt@example.org"], MSG), 0)
        self.assertEqual(len(v6.messages), 1)
        self.assertEqual(self.spool.ids(), [])

    def test_8bit_message_uses_8bitmime(self):
        self.configure()
        self.assertExit(self.submit(["-odi", "rcpt@example.org"],
                                    "Subject: 8bit\n\nGrüße\n".encode()), 0)
        m = self.server.messages[0]
        self.assertIn("BODY=8BITMIME", m.mail_options)
        self.assertIn("Grüße".encode(), m.data)


class Overlap(RelayTest):
    """A smarthost that offers PIPELINING: in a queue run the next message's
    MAIL, RCPT and DATA go out before the reply to the last one's "."
    (RFC 2920 section 3.1), and whatever happens to one message stays its
    own."""

    def setUp(self):
        super().setUp()
        self.server.handler.pipelining = True
        self.configure()

    def queue_each(self, rcpts):
        return [self.queue([r]) for r in rcpts]

    def arrived_for(self):
        return [m.rcpt_tos for m in self.server.messages]

    def test_next_commands_go_before_the_last_reply(self):
        self.queue_each(["r%d@example.org" % i for i in range(3)])
        p = self.run_queue("-v")
        self.assertExit(p, 0)
        err = p.stderr.decode()
        self.assertIn("<- 250-PIPELINING", err)
        first_reply = err.index("<- 250 2.0.0 Ok: queued as 1")
        second_mail = err.index("-> MAIL FROM", err.index("-> MAIL FROM") + 1)
        self.assertLess(second_mail, first_reply)
        self.assertEqual(self.arrived_for(), [["r0@example.org"], ["r1@example.org"],
                                              ["r2@example.org"]])
        self.assertEqual(self.server.handler.connections, 1)
        self.assertQueueEmpty()

    def test_session_lost_at_a_dot_the_next_goes_on_a_new_one(self):
        ids = self.queue_each(["r%d@example.org" % i for i in range(3)])
        self.server.handler.drop_after_dot = 1   # hang up instead of replying
        self.run_queue()
        # The first was never taken; the second's commands went out on the
        # lost session and it starts over on a new one, in the same run.
        self.assertEqual(self.arrived_for(), [["r1@example.org"], ["r2@example.org"]])
        self.assertEqual(self.server.handler.connections, 2)
        self.assertEqual(self.spool.ids(), [ids[0]])
        env = self.spool.envelope(ids[0])
        self.assertEqual(env["rcpts"][0]["status"], "pending")
        self.assertIn("end of data", env["last-error"])
        self.spool.run(["-qf"])
        self.assertEqual(self.arrived_for()[-1], ["r0@example.org"])
        self.assertQueueEmpty()

    def test_each_message_keeps_its_own_outcome(self):
        h = self.server.handler
        h.rcpt_replies["bad@example.org"] = "550 5.1.1 <bad@example.org>: no such user"
        _, bad, later, _ = self.queue_each(["a@example.org", "bad@example.org",
                                                "later@example.org", "b@example.org"])
        h.rcpt_replies["later@example.org"] = "450 4.2.0 <later@example.org>: try later"
        self.run_queue()
        self.assertEqual(self.arrived_for(), [["a@example.org"], ["b@example.org"]])
        self.assertEqual(self.server.handler.connections, 1)
        # bad failed, with one bounce queued to its sender; later waits.
        self.assertEqual(self.spool.listdir("failed"), [bad + ".data", bad + ".env"])
        [bounce] = [i for i in self.spool.ids() if i != later]
        self.assertEqual(self.spool.envelope(bounce)["sender"], "")
        env = self.spool.envelope(later)
        self.assertEqual(env["rcpts"][0]["status"], "pending")
        self.assertIn("try later", env["rcpts"][0]["error"])

    def test_too_many_recipients_then_the_next_message(self):
        self.server.handler.rcpt_limit = 2
        rcpts = ["r%d@example.org" % i for i in range(5)]
        self.queue(rcpts)
        self.queue(["next@example.org"])
        self.run_queue()
        self.assertEqual(sorted(r for m in self.server.messages[:3] for r in m.rcpt_tos),
                         rcpts)
        self.assertEqual(self.arrived_for()[3:], [["next@example.org"]])
        self.assertEqual(self.server.handler.connections, 1)
        self.assertQueueEmpty()

    def test_deliver_stream_settles_each_message_before_waiting(self):
        """relayq --deliver -: a message is delivered and off the queue
        before the next id comes, however long that takes."""
        first, second = self.queue_each(["one@example.org", "two@example.org"])
        p = subprocess.Popen(self.spool.command("relayq") + ["--deliver", "-"],
                             stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=self.spool.environ())
        try:
            p.stdin.write(first.encode() + b"\n")
            p.stdin.flush()
            deadline = time.monotonic() + 30
            while first in self.spool.ids():
                self.assertLess(time.monotonic(), deadline, "the first is still queued")
                time.sleep(0.02)
            self.assertEqual(self.arrived_for(), [["one@example.org"]])
            p.stdin.write(second.encode() + b"\n")
            p.stdin.close()
            err = p.stderr.read()
            self.assertEqual(p.wait(timeout=30), 0, err)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(self.arrived_for(), [["one@example.org"], ["two@example.org"]])
        self.assertQueueEmpty()


class ImplicitTLS(RelayTest):
    tls = "smtps"

    def test_smtps(self):
        self.configure()
        self.assertExit(self.submit(["-odi", "rcpt@example.org"], MSG), 0)
        self.assertEqual(len(self.server.messages), 1)
        self.assertTrue(self.server.messages[0].tls)


class Verification(RelayTest):
    tls = "smtps"

    def check_refused(self, cert, key, fragment, **keys):
        bad = self.start_server("smtps", cert, key)
        self.configure(smarthosts=self.smarthost_conf(bad, **keys))
        qid = self.queue()
        self.run_queue()
        self.assertEqual(bad.messages, [])
        env = self.spool.envelope(qid)
        self.assertIn(fragment, env["last-error"])
        self.assertIn(fragment, self.mailq())

    def test_expired(self):
        c = certs()
        self.check_refused(c.expired, c.expired_key, "expired")

    def test_wrong_host(self):
        c = certs()
        self.check_refused(c.wrong, c.wrong_key, "another host")

    def test_unknown_ca(self):
        c = certs()
        self.check_refused(c.server, c.server_key, "unknown certificate authority",
                           tls_ca_file='"%s"' % c.selfsigned)

    def test_fingerprint_pin_accepts_self_signed(self):
        c = certs()
        pinned = self.start_server("smtps", c.selfsigned, c.selfsigned_key)
        self.configure(smarthosts=self.smarthost_conf(
            pinned, tls_ca_file=None, tls_fingerprint='"%s"' % c.fingerprint(c.selfsigned)))
        self.assertExit(self.submit(["-odi", "rcpt@example.org"], MSG), 0)
        self.assertEqual(len(pinned.messages), 1)

    def test_wrong_pin_refused(self):
        c = certs()
        self.check_refused(c.selfsigned, c.selfsigned_key, "fingerprint",
                           tls_ca_file=None, tls_fingerprint='"sha256:%s"' % ("ab" * 32))


class StartTLSRequired(RelayTest):
    tls = "none"
    users = {}

    def test_no_starttls_offered_is_not_a_downgrade(self):
        self.configure(smarthosts=self.smarthost_conf(tls="starttls", username=None,
                                                      password=None))
        qid = self.queue()
        self.run_queue()
        self.assertEqual(self.server.messages, [])
        self.assertIn("STARTTLS", self.spool.envelope(qid)["last-error"])

    def test_plain_loopback_without_auth(self):
        self.configure(smarthosts=self.smarthost_conf(username=None, password=None,
                                                      tls_ca_file=None))
        self.assertExit(self.submit(["-odi", "rcpt@example.org"], MSG), 0)
        self.assertEqual(len(self.server.messages), 1)


class RetryAndBounce(RelayTest):

    def test_smarthost_down_then_up(self):
        port = smarthost._free_port("127.0.0.1")
        conf = self.smarthost_conf(port=str(port))
        self.configure(smarthosts=conf)
        p = self.submit(["-odi", "rcpt@example.org"], MSG)
        self.assertExit(p, 0)
        [qid] = self.spool.ids()
        env = self.spool.envelope(qid)
        self.assertEqual(env["attempts"], "1")
        self.assertGreater(int(env["next-attempt"]), int(env["created"]))
        self.assertIn("refused", self.mailq().lower())
        up = self.start_server("starttls", port=port)
        self.run_queue()          # not due yet: nothing happens
        self.assertEqual(up.messages, [])
        self.assertEqual(self.spool.ids(), [qid])
        self.spool.run(["-qf"])
        self.assertEqual(len(up.messages), 1)
        self.assertEqual(self.spool.ids(), [])

    def test_temporary_failure_then_success(self):
        self.configure()
        self.server.handler.defer_transactions = 1
        qid = self.queue()
        self.run_queue()
        self.assertEqual(self.server.messages, [])
        self.assertIn("451", self.spool.envelope(qid)["last-error"])
        self.spool.run(["-qI" + qid])
        self.assertEqual(len(self.server.messages), 1)
        self.assertEqual(self.spool.ids(), [])

    def test_one_of_three_recipients_bounces(self):
        self.configure()
        self.server.handler.rcpt_replies["bad@example.org"] = "550 5.1.1 no such user"
        qid = self.queue(["-f", "owner@example.net", "a@example.org", "bad@example.org",
                          "c@example.org"])
        self.run_queue()
        self.assertEqual(len(self.server.messages), 1)
        self.assertEqual(sorted(self.server.messages[0].rcpt_tos),
                         ["a@example.org", "c@example.org"])
        # The original is kept in failed/, a bounce is queued to the sender.
        self.assertEqual(self.spool.listdir("failed"), [qid + ".data", qid + ".env"])
        [bounce] = self.spool.ids()
        benv = self.spool.envelope(bounce)
        self.assertEqual(benv["sender"], "")
        self.assertEqual([r["addr"] for r in benv["rcpts"]], ["owner@example.net"])
        self.spool.run(["-qf"])
        dsn = self.server.messages[-1]
        self.assertEqual(dsn.mail_from, "<>")   # aiosmtpd spells the null sender so
        self.assertEqual(dsn.rcpt_tos, ["owner@example.net"])
        text = dsn.data.decode()
        self.assertIn("multipart/report; report-type=delivery-status", text)
        self.assertIn("Final-Recipient: rfc822; bad@example.org", text)
        self.assertIn("Action: failed", text)
        self.assertIn("Status: 5.1.1", text)
        self.assertIn("Diagnostic-Code: smtp; 550 5.1.1 no such user", text)
        self.assertNotIn("a@example.org;", text)
        self.assertIn("Subject: relay test", text)     # the original is attached
        self.assertEqual(self.spool.ids(), [])

    def test_bounce_is_never_bounced(self):
        self.configure()
        self.server.handler.rcpt_replies["bad@example.org"] = "550 5.1.1 no such user"
        qid = self.queue(["-f", "<>", "bad@example.org"])
        self.run_queue()
        self.assertEqual(self.spool.ids(), [])
        self.assertEqual(self.spool.listdir("failed"), [qid + ".data", qid + ".env"])

    def test_expiry_bounces(self):
        port = smarthost._free_port("127.0.0.1")
        self.configure("queue_lifetime = 0s\n", self.smarthost_conf(port=str(port)))
        qid = self.queue(["-f", "owner@example.net", "rcpt@example.org"])
        self.run_queue()
        self.assertEqual(self.spool.listdir("failed"), [qid + ".data", qid + ".env"])
        [bounce] = self.spool.ids()
        data = self.spool.data(bounce).decode()
        self.assertIn("Status: 4.4.7", data)
        self.assertIn("expired", data)

    def test_failover_to_second_smarthost(self):
        dead = smarthost._free_port("127.0.0.1")
        conf = (self.smarthost_conf(name="first", port=str(dead)) +
                self.smarthost_conf(name="second"))
        self.configure(smarthosts=conf)
        self.assertExit(self.submit(["-odi", "rcpt@example.org"], MSG), 0)
        self.assertEqual(len(self.server.messages), 1)
        self.assertEqual(self.spool.ids(), [])


class DeliveryPaths(RelayTest):

    def test_odi_delivers_before_exit(self):
        """-odi: relayq-deliver, started before the commit, connects while
        the message is committed and delivers it before sendmail exits."""
        self.configure()
        p = self.submit(["-odi", "-i", "rcpt@example.org"], MSG)
        self.assertExit(p, 0)
        self.assertEqual(len(self.server.messages), 1)
        self.assertEqual(self.server.handler.connections, 1)
        self.assertQueueEmpty()

    def test_odi_returns_before_the_session_ends(self):
        """Once the outcome is on disk and reported, sendmail -odi returns:
        the QUIT (stalled here by the smarthost) is not waited for, and
        the caller's stderr pipe is let go."""
        self.configure()
        self.server.handler.set_fault("quit", "stall")
        p = self.submit(["-odi", "-i", "rcpt@example.org"], MSG, timeout=30)
        self.assertExit(p, 0)
        self.assertEqual(len(self.server.messages), 1)
        self.assertQueueEmpty()
        self.assertIn(b"sent", p.stderr)
        # The session is still open: relayq-deliver waits for the reply
        # to its QUIT on its own (up to its timeout), the caller does not.
        self.assertEqual(self.server.handler.open_connections, 1)

    def test_odi_verbose_shows_the_whole_session(self):
        """Under -v the transcript goes on to the QUIT and its reply."""
        self.configure()
        p = self.submit(["-v", "-odi", "-i", "rcpt@example.org"], MSG)
        self.assertExit(p, 0)
        self.assertIn(b"-> QUIT", p.stderr)
        self.assertIn(b"<- 221", p.stderr)

    def test_odi_with_a_refused_message_ends_at_once(self):
        """The delivery process started early learns that nothing was
        queued (end of its input) and ends: no hang, nothing sent."""
        self.configure()
        p = self.submit(["-odi", "-i", "not an address"], MSG, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(self.server.messages, [])
        self.assertQueueEmpty()

    def test_odi_with_the_smarthost_down_keeps_the_message(self):
        self.configure(smarthosts=self.smarthost_conf(port="1", connect_timeout="2s"))
        p = self.submit(["-odi", "-i", "rcpt@example.org"], MSG)
        self.assertExit(p, 0)
        self.assertIn(b"deferred, will retry", p.stderr)
        self.assertEqual(len(self.spool.ids()), 1)

    def test_deliver_reads_ids_from_stdin(self):
        """relayq --deliver -: ids one per line; a malformed line is
        reported and skipped, the others are delivered."""
        self.configure()
        qid = self.queue()
        p = self.spool.run(["--deliver", "-"], argv0="relayq",
                           input=b"../../etc/passwd\n" + b"X" * 600 + b"\n" +
                           qid.encode() + b"\n")
        self.assertExit(p, 0)
        self.assertEqual(p.stderr.count(b"not a queue id"), 2, p.stderr)
        self.assertEqual(len(self.server.messages), 1)
        self.assertQueueEmpty()

    def test_background_is_default(self):
        self.configure("delivery = background\n")
        p = self.submit(["-i", "rcpt@example.org"], MSG)
        self.assertExit(p, 0)
        self.assertTrue(self.arrived.wait(30), "background delivery did not arrive")
        self.assertEqual(len(self.server.messages), 1)

    def test_daemon_wakes_on_submit(self):
        self.configure()
        daemon = subprocess.Popen(self.spool.command("relayq") + ["-q1h"],
                                  env=self.spool.environ(), stderr=subprocess.PIPE)
        try:
            # The daemon logs (log = stderr) once its trigger is open.
            for line in daemon.stderr:
                if b"queue daemon started" in line:
                    break
            # The daemon may deliver (and remove) it before we could look,
            # so check the exit status only.
            self.assertExit(self.submit(["-odq", "-i", "rcpt@example.org"], MSG), 0)
            self.assertTrue(self.arrived.wait(30), "daemon did not deliver")
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, err = daemon.communicate(timeout=30)
            self.assertEqual(daemon.returncode, 0, err)
            self.assertIn(b"queue daemon stopped", err)


class DeliveryPathsInProcess(DeliveryPaths):
    """The same, parsed in the one process: relayq has no privilege to
    separate (not setgid, or run by root)."""
    separate = False


if __name__ == "__main__":
    main()
