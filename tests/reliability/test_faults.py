"""The fault table: a smarthost that misbehaves at one stage of the SMTP
dialogue (greeting, EHLO, STARTTLS, TLS handshake, AUTH, MAIL, RCPT, DATA,
during the data, after the final dot, RSET, QUIT) in one of six ways
(close, reset, stall past relayq's 2 s timeout, 4xx, 5xx, garbage).

For each case the outcome is asserted on disk and at the server:
  defer   the message stays queued, whole, retried; delivered exactly once
          when the fault clears (relayq -qf with the fault off)
  bounce  a permanent error: the original goes to failed/, one bounce is
          queued, and delivered exactly once; the original never arrives
  dup     the connection is lost after the final dot, before the reply: the
          server took the message, relayq must retry, so it arrives twice
          (the one duplicate SMTP allows)
  sent    the fault does not concern the message (QUIT), or relayq rightly
          waits it out (a stall after the dot is shorter than the 10 min
          RFC 5321 allows for that reply): delivered once, no retry
  again   the session broke before the message began (RSET, which closes
          the transaction before it): delivered once in the same run,
          over a new session
PipelinedFaultTable repeats the cases from MAIL to QUIT against a
smarthost that offers PIPELINING, with a second message queued behind:
its commands go out before the reply to the first one's dot, and it must
arrive exactly once.
Also: SMTPS (implicit TLS) with the handshake broken by a raw listener.
"""
import asyncio
import os
import socket
import struct
import threading
import time
import unittest

from common import (RelSpool, spool_config, start_server, make_message, copies, dsns,
                    is_whole, wait_idle, figure, outcome, SENDER, RCPT, smarthost)

TIMEOUT = 2          # relayq's timeout in these tests (seconds)

CONN_STAGES = ("greeting", "ehlo", "starttls", "tls", "auth")
TX_STAGES = ("mail", "rcpt", "data", "body", "dot")


def expected(stage, action):
    if stage == "quit":
        return "sent"
    if stage == "rset":
        return "again"
    if stage in CONN_STAGES:
        return "defer"
    if action == "5xx":
        return "bounce"
    if stage == "dot" and action in ("close", "reset"):
        return "dup"
    if stage == "dot" and action == "stall":
        return "sent"
    return "defer"


def cases():
    for stage in smarthost.STAGES:
        for action in smarthost.ACTIONS:
            if stage == "tls" and action in ("4xx", "5xx"):
                continue
            yield stage, action


def big_enough_to_block():
    """Bytes that cannot all sit in loopback socket buffers: a body stall
    must block relayq's writes (else it waits for the dot reply)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            wmax = int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        wmax = 4 << 20
    return min(wmax, 32 << 20) + (1 << 20)


class FaultCases(unittest.TestCase):
    """What each case does; the test methods are made below, per table."""

    pipelining = False
    part = "faults"

    @classmethod
    def setUpClass(cls):
        cls.server = start_server("starttls")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def setUp(self):
        self.server.handler.clear_faults()
        self.server.handler.rcpt_replies.clear()
        self.server.handler.stall_limit = 3 * TIMEOUT
        self.server.handler.pipelining = self.pipelining
        del self.server.handler.messages[:]
        self.assertTrue(wait_idle(self.server), "smarthost still busy")
        self.spool = RelSpool()
        conf, sh = spool_config(self.server, tls="starttls", auth=True,
                                timeout="%ds" % TIMEOUT)
        self.spool.write_config(conf, sh)

    def tearDown(self):
        self.server.handler.clear_faults()
        self.spool.cleanup()

    def queue(self, tag, rcpt=RCPT, size=0):
        mid, msg = make_message(tag, size=size)
        p = self.spool.run(["-odq", "-i", "-f", SENDER, rcpt], input=msg)
        self.assertEqual(p.returncode, 0, p.stderr)
        return mid, self.spool.ids()[-1]

    def check_case(self, stage, action):
        exp = expected(stage, action)
        h = self.server.handler
        size = big_enough_to_block() if (stage, action) == ("body", "stall") else 0
        blocker = None
        if stage == "rset":
            # relayq sends RSET only after an unfinished transaction: a first
            # message whose recipient is deferred at RCPT leaves one open.
            blocker, _ = self.queue("%s-%s-first" % (stage, action), rcpt="later@example.org")
            h.rcpt_replies["later@example.org"] = "450 4.2.1 mailbox busy, try later"
        mid, qid = self.queue("%s-%s" % (stage, action), size=size)
        follower = None
        if self.pipelining:
            # Behind the faulty one, in the same run; the fault strikes once.
            follower, _ = self.queue("%s-%s-next" % (stage, action))
        before = self.spool.snapshot()
        h.set_fault(stage, action, 1 if follower else None)

        t0 = time.monotonic()
        p = self.spool.run(["-q"], timeout=120)
        took = time.monotonic() - t0
        self.assertIn(p.returncode, (0, 75), p.stderr)
        # Bounded: a stall costs one timeout, never the 5-minute default.
        limit = 30 if stage != "dot" else h.dot_stall + 20
        self.assertLess(took, limit, "queue run took %.1fs" % took)
        applied = [f for f in h.faults_applied if f == (stage, action)]
        self.assertTrue(applied, "fault %s/%s was never reached" % (stage, action))
        h.clear_faults()
        h.rcpt_replies.clear()
        self.assertTrue(wait_idle(self.server), "smarthost still busy")
        self.assertEqual(self.spool.listdir("corrupt"), [])
        self.assertEqual(self.spool.listdir("tmp"), [])
        got = copies(self.server, mid)

        if exp in ("defer", "dup"):
            self.assertEqual(len(got), 1 if exp == "dup" else 0)
            self.assertIn(qid, self.spool.ids(), "message left the queue")
            env = self.spool.envelope(qid)
            self.assertEqual([r["status"] for r in env["rcpts"]], ["pending"])
            self.assertEqual(env["attempts"], "1")
            self.assertTrue(env.get("last-error"), "no reason recorded")
            self.assertEqual(self.spool.data(qid), before["data/" + qid])
            self.assertEqual(self.spool.listdir("failed"), [])
        elif exp == "bounce":
            self.assertEqual(got, [])
            self.assertEqual(self.spool.listdir("failed"), [qid + ".data", qid + ".env"])
            with open(os.path.join(self.spool.queue, "failed", qid + ".data"), "rb") as f:
                self.assertEqual(f.read(), before["data/" + qid])
            bounces = [i for i in self.spool.ids() if self.spool.envelope(i)["sender"] == ""]
            self.assertEqual(len(bounces), 1, "one bounce queued")
            benv = self.spool.envelope(bounces[0])
            self.assertEqual([r["addr"] for r in benv["rcpts"]], [SENDER])
        elif exp == "again":
            self.assertEqual(len(got), 1)
            self.assertNotIn(qid, self.spool.ids())
            self.assertEqual(self.spool.listdir("failed"), [])
        else:  # sent
            self.assertEqual(len(got), 1)
            self.assertNotIn(qid, self.spool.ids())
            if not blocker and not follower:
                self.assertEqual(self.spool.ids(), [])

        # The fault clears: everything still queued goes, once.
        runs = self.spool.run_until_empty(5)
        wait_idle(self.server)
        self.assertEqual(self.spool.ids(), [], "queue not empty after %d runs" % runs)
        self.assertEqual(self.spool.listdir("data"), [])
        self.assertEqual(self.spool.listdir("corrupt"), [])
        got = copies(self.server, mid)
        for m in got:
            self.assertTrue(is_whole(m.data), "a copy arrived damaged")
        if exp == "bounce":
            self.assertEqual(got, [])
            d = dsns(self.server)
            self.assertEqual(len(d), 1, "bounces delivered: %d" % len(d))
            self.assertEqual(d[0].rcpt_tos, [SENDER])
            text = d[0].data.decode("utf-8", "replace")
            self.assertIn("Final-Recipient: rfc822; %s" % RCPT, text)
            self.assertIn("Action: failed", text)
            self.assertIn(mid, text)
        else:
            self.assertEqual(len(got), 2 if exp == "dup" else 1,
                             "%s/%s: %d copies" % (stage, action, len(got)))
            self.assertEqual(self.spool.listdir("failed"), [])
            self.assertEqual(dsns(self.server), [])
        for other in (blocker, follower):
            if other:
                self.assertEqual(len(copies(self.server, other)), 1)
        n = 1 + bool(blocker) + bool(follower)
        figure(self.part, submitted=n,
               delivered=n - (exp == "bounce"),
               duplicates=int(exp == "dup"), bounced=int(exp == "bounce"), lost=0)
        outcome(self.part, "%s/%s" % (stage, action),
                {"defer": "deferred, then delivered once",
                 "dup": "deferred, then delivered again (allowed duplicate)",
                 "bounce": "bounced once, original in failed/",
                 "again": "delivered once, over a new session",
                 "sent": "delivered once"}[exp])


def _make(stage, action):
    def test(self):
        self.check_case(stage, action)
    test.__doc__ = "%s/%s -> %s" % (stage, action, expected(stage, action))
    return test


class FaultTable(FaultCases):
    """One test per (stage, action); STARTTLS + AUTH like a real relay."""


class PipelinedFaultTable(FaultCases):
    """The cases of the transaction stages (from MAIL to QUIT) with
    PIPELINING offered and a second message behind the faulty one (see the
    module's docstring); before the transaction nothing is pipelined."""

    pipelining = True
    part = "faults-pipelined"


for _stage, _action in cases():
    setattr(FaultTable, "test_%s_%s" % (_stage, _action), _make(_stage, _action))
    if _stage not in CONN_STAGES:
        setattr(PipelinedFaultTable, "test_%s_%s" % (_stage, _action),
                _make(_stage, _action))


class RawTLSFaults(unittest.TestCase):
    """SMTPS: the TLS handshake itself fails (aiosmtpd cannot be made to do
    this, so a raw listener reads the ClientHello and then misbehaves)."""

    def setUp(self):
        self.loop = asyncio.new_event_loop()
        self.action = None
        self.accepted = 0
        ready = threading.Event()

        async def serve():
            self.srv = await asyncio.start_server(self.client, "127.0.0.1", 0)
            self.port = self.srv.sockets[0].getsockname()[1]
            ready.set()
        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(serve()),
                                                       self.loop.run_forever()), daemon=True)
        self.thread.start()
        ready.wait(10)
        self.spool = RelSpool()

    def tearDown(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.spool.cleanup()

    async def client(self, reader, writer):
        self.accepted += 1
        try:
            await reader.read(512)          # the ClientHello
            if self.action == "close":
                writer.close()
            elif self.action == "reset":
                writer.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            elif self.action == "garbage":
                writer.write(b"220 not TLS at all\r\n" + bytes(range(256)))
                await reader.read(4096)
            else:                           # stall
                await reader.read(4096)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass

    def check(self, action):
        self.action = action
        # First a real SMTPS server to prove the config, then the broken one.
        good = start_server("smtps")
        try:
            class Fake:
                port = self.port
            conf, sh = spool_config(Fake, tls="smtps", auth=True, timeout="%ds" % TIMEOUT)
            self.spool.write_config(conf, sh)
            mid, msg = make_message("smtps-tls-%s" % action)
            p = self.spool.run(["-odq", "-i", "-f", SENDER, RCPT], input=msg)
            self.assertEqual(p.returncode, 0, p.stderr)
            [qid] = self.spool.ids()
            t0 = time.monotonic()
            self.spool.run(["-q"])
            self.assertLess(time.monotonic() - t0, 20)
            self.assertGreaterEqual(self.accepted, 1)
            env = self.spool.envelope(qid)
            self.assertEqual(env["rcpts"][0]["status"], "pending")
            self.assertIn("TLS", env["last-error"])
            self.assertEqual(self.spool.listdir("corrupt"), [])
            # The smarthost is fixed: delivered once.
            conf, sh = spool_config(good, tls="smtps", auth=True, timeout="%ds" % TIMEOUT)
            self.spool.write_config(conf, sh)
            self.spool.run_until_empty(3)
            wait_idle(good)
            self.assertEqual(len(copies(good, mid)), 1)
            self.assertEqual(self.spool.ids(), [])
        finally:
            good.stop()
        figure("faults", submitted=1, delivered=1, duplicates=0, bounced=0, lost=0)
        outcome("faults", "smtps-handshake/%s" % action, "deferred, then delivered once")

    def test_close(self):
        self.check("close")

    def test_reset(self):
        self.check("reset")

    def test_stall(self):
        self.check("stall")

    def test_garbage(self):
        self.check("garbage")


if __name__ == "__main__":
    unittest.main(verbosity=2)
