"""Postfix as the smarthost: a private instance (postfix.py) with STARTTLS on
one port, implicit TLS on another and Cyrus SASL from a sasldb. Every AUTH
mechanism relayq offers must work against it, the message must arrive with
its envelope and bytes intact, a wrong password must defer (never bounce),
and a queue run must carry many messages over one connection.

Needs root and the Debian packages postfix, sasl2-bin and libsasl2-modules
(contrib/install-deps). Without them the whole file is skipped (exit 77) and
says why; RELAYQ_REQUIRE_POSTFIX=1 turns that skip into a failure.
"""
import os
import re
import shutil
import sys
import unittest

import harness
from harness import SpoolTest, SKIP
from certs import Certs
import postfix

PF = None
CERTS = None
MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256")
SENDER = "sender@example.net"
MSG = ("From: Sender <sender@example.net>\nTo: {rcpt}\nSubject: via postfix {tag}\n\n"
       ".leading dot\n..two dots\nGr\u00fc\u00dfe, 8-bit body\nlast line\n").encode()


def start_postfix():
    """The module's Postfix, started once; raises postfix.Unavailable."""
    global PF, CERTS
    if PF is None:
        why = postfix.unavailable()
        if why:
            raise postfix.Unavailable(why)
        CERTS = Certs()
        PF = postfix.Postfix(CERTS).start()
    return PF


def setUpModule():
    try:
        start_postfix()
    except postfix.Unavailable as e:
        raise unittest.SkipTest("Postfix unavailable: %s" % e)


def tearDownModule():
    global PF, CERTS
    if PF is not None:
        PF.stop()
        PF = None
    if CERTS is not None:
        shutil.rmtree(CERTS.dir, ignore_errors=True)
        CERTS = None


def message(rcpt, tag=""):
    return MSG.replace(b"{rcpt}", rcpt.encode()).replace(b"{tag}", tag.encode())


def strip_received(data):
    """The captured message without the Received: field Postfix put on top."""
    assert data.startswith(b"Received: "), data[:200]
    lines = data.split(b"\n")
    i = 1
    while lines[i][:1] in (b" ", b"\t"):
        i += 1
    return b"\n".join(lines[i:]), b"\n".join(lines[:i])


def queue_id(received):
    """Postfix's queue id from its Received: field."""
    m = re.search(rb"with ESMTPS?A? id ([0-9A-F]+)", received)
    assert m, received
    return m.group(1).decode()


class PostfixTest(SpoolTest):
    tls = "starttls"

    def setUp(self):
        super().setUp()
        self.pf = PF
        self.log_start = len(self.pf.log())

    def port(self):
        return self.pf.smtps_port if self.tls == "smtps" else self.pf.starttls_port

    def smarthost_conf(self, **keys):
        conf = {"host": '"127.0.0.1"', "port": str(self.port()), "tls": self.tls,
                "tls_ca_file": '"%s"' % CERTS.ca, "username": '"%s"' % self.pf.user,
                "password": '"%s"' % self.pf.password, "timeout": "30s"}
        conf.update(keys)
        body = "".join(" %s = %s\n" % (k, v) for k, v in conf.items() if v is not None)
        return "smarthost postfix {\n%s}\n" % body

    def fresh_spool(self):
        """A new spool and log position, so one subtest cannot spoil the next."""
        self.spool.cleanup()
        self.spool = harness.Spool()
        self.log_start = len(self.pf.log())

    def configure(self, **keys):
        self.spool.write_config("", self.smarthost_conf(**keys))

    def queue(self, rcpt, tag=""):
        """Queue one message (-odq) and return (id, the message as queued)."""
        p = self.submit(["-odq", "-i", "-f", SENDER, rcpt], message(rcpt, tag))
        self.assertExit(p, 0)
        qid = self.spool.ids()[-1]
        return qid, self.spool.message(qid)

    def run_queue(self):
        p = self.spool.run(["-q"])
        self.assertIn(p.returncode, (0, 75), p.stderr)
        return p

    def new_log(self):
        return self.pf.log()[self.log_start:]

    def wait_new_log(self, predicate):
        self.pf.wait_log(lambda text: predicate(text[self.log_start:]))
        return self.new_log()

    def arrived(self, rcpt, count=1):
        """The captured deliveries to rcpt, once there are count of them."""
        got = self.pf.wait_messages(count, lambda m: rcpt in m.rcpts)
        self.assertEqual(len(got), count, "not delivered to %s; maillog:\n%s"
                         % (rcpt, self.new_log()))
        return got

    def assertDelivered(self, rcpt, queued, mechanism, service="starttls"):
        """rcpt got exactly the queued bytes from SENDER, after AUTH mechanism."""
        [m] = self.arrived(rcpt)
        self.assertEqual(m.sender, SENDER)
        self.assertEqual(m.rcpts, [rcpt])
        body, received = strip_received(m.data)
        self.assertEqual(body, queued)
        self.assertIn(b"(Authenticated sender: %s@%s)" % (
            self.pf.user.encode(), self.pf.realm.encode()), received)
        self.assertIn(b"using TLS", received)
        pid = queue_id(received)
        line = "postfix/%s/smtpd" % service
        log = self.wait_new_log(lambda t: pid + ": client=" in t)
        self.assertRegex(log, r"%s\[\d+\]: %s: client=localhost\[127\.0\.0\.1\], "
                         r"sasl_method=%s, sasl_username=%s@%s" % (
                             re.escape(line), pid, re.escape(mechanism),
                             self.pf.user, re.escape(self.pf.realm)))

    def assertQueueGone(self):
        self.assertEqual(self.spool.ids(), [])
        self.assertEqual(self.spool.listdir("data"), [])
        self.assertEqual(self.spool.listdir("failed"), [])


class StartTLS(PostfixTest):

    def test_every_mechanism(self):
        for mech in MECHANISMS:
            with self.subTest(mech=mech):
                self.fresh_spool()
                rcpt = "%s@example.org" % mech.lower()
                self.configure(auth='{ "%s" }' % mech)
                qid, queued = self.queue(rcpt, mech)
                self.run_queue()
                self.assertDelivered(rcpt, queued, mech)
                self.assertQueueGone()

    def test_foreground_delivery(self):
        self.configure(auth='{ "PLAIN" }')
        p = self.submit(["-odi", "-i", "-f", SENDER, "odi@example.org"],
                        message("odi@example.org", "odi"))
        self.assertExit(p, 0)
        self.assertQueueGone()
        [m] = self.arrived("odi@example.org")
        self.assertIn(b"\n.leading dot\n..two dots\n", m.data)

    def test_default_mechanism_is_scram(self):
        self.configure()
        qid, queued = self.queue("default@example.org")
        self.run_queue()
        self.assertDelivered("default@example.org", queued, "SCRAM-SHA-256")
        self.assertQueueGone()

    def test_wrong_password_defers(self):
        for mech in MECHANISMS + (None,):
            with self.subTest(mech=mech):
                self.fresh_spool()
                self.configure(password='"not-the-password"',
                               auth='{ "%s" }' % mech if mech else None)
                qid, _ = self.queue("wrongpw@example.org")
                self.run_queue()
                env = self.spool.envelope(qid)
                self.assertEqual([r["status"] for r in env["rcpts"]], ["pending"])
                self.assertIn("auth", env["last-error"].lower())
                self.assertIn("535", env["last-error"])
                self.assertEqual(self.spool.ids(), [qid])      # no bounce queued
                self.assertEqual(self.spool.listdir("failed"), [])
                # Postfix saw one failed AUTH and no MAIL on that connection.
                log = self.wait_new_log(lambda t: "disconnect from" in t)
                self.assertIn("authentication failed", log)
                [bye] = [l for l in log.splitlines() if "disconnect from" in l]
                self.assertIn(" auth=0/1 ", bye)
                self.assertNotIn(" mail=", bye)
        self.assertEqual([m for m in self.pf.messages() if "wrongpw@example.org" in m.rcpts],
                         [])

    def test_unauthenticated_relay_is_refused_and_bounced(self):
        self.configure(username=None, password=None)
        qid, _ = self.queue("norelay@example.org")
        self.run_queue()
        self.assertEqual(self.spool.listdir("failed"), [qid + ".data", qid + ".env"])
        [bounce] = self.spool.ids()
        benv = self.spool.envelope(bounce)
        self.assertEqual(benv["sender"], "")
        self.assertEqual([r["addr"] for r in benv["rcpts"]], [SENDER])
        self.assertIn(b"Relay access denied", self.spool.data(bounce))

    def test_twenty_messages_one_connection(self):
        self.configure()
        queued = {}
        for i in range(20):
            rcpt = "batch%02d@example.org" % i
            queued[rcpt] = self.queue(rcpt, str(i))[1]
        self.run_queue()
        self.assertQueueGone()
        for rcpt, data in queued.items():
            [m] = self.arrived(rcpt)
            self.assertEqual(strip_received(m.data)[0], data)
        log = self.wait_new_log(lambda t: "disconnect from" in t)
        connects = [l for l in log.splitlines() if "/smtpd[" in l and ": connect from" in l]
        self.assertEqual(len(connects), 1, log)
        [bye] = [l for l in log.splitlines() if "disconnect from" in l]
        self.assertIn(" auth=1 mail=20 rcpt=20 data=20 ", bye)


class ImplicitTLS(PostfixTest):
    tls = "smtps"

    def test_smtps_every_mechanism(self):
        for mech in MECHANISMS:
            with self.subTest(mech=mech):
                self.fresh_spool()
                rcpt = "smtps-%s@example.org" % mech.lower()
                self.configure(auth='{ "%s" }' % mech)
                qid, queued = self.queue(rcpt, mech)
                self.run_queue()
                self.assertDelivered(rcpt, queued, mech, service="smtps")
                self.assertQueueGone()


def main():
    if not os.access(harness.RELAYQ, os.X_OK):
        print("relayq binary not found at %s" % harness.RELAYQ, file=sys.stderr)
        sys.exit(99)
    try:
        start_postfix()
    except postfix.Unavailable as e:
        print("SKIP: Postfix unavailable: %s" % e, file=sys.stderr)
        sys.exit(99 if os.environ.get("RELAYQ_REQUIRE_POSTFIX") else SKIP)
    try:
        unittest.main(verbosity=2)
    finally:
        tearDownModule()


if __name__ == "__main__":
    main()
