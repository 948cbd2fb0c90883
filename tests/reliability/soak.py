"""The soak (on demand: tests/reliability/run --soak): 10,000 messages
($RELIABILITY_SOAK_MESSAGES) through a STARTTLS + AUTH smarthost that
injects random faults from the fault table: per transaction (15%) close,
reset, stall, 4xx, 5xx or garbage at MAIL, RCPT, DATA, during the data,
after the dot or at RSET; per connection (5%) the same at the greeting,
EHLO, STARTTLS, TLS handshake, AUTH or QUIT. Submitters, two `relayq -q`
loops, the daemon and -odb children all run at once, as in the load test.
Bounded in time ($RELIABILITY_SOAK_MINUTES, default 30).

Exact accounting, by Message-ID: every submitted message was delivered or
bounced (its original in failed/, a bounce queued for the sender), never
both and never neither; a message received more than once is a duplicate,
allowed only as many times as the smarthost dropped the connection after
taking it (the SMTP-inherent duplicate).
"""
import collections
import os
import signal
import subprocess
import threading
import time
import unittest

from common import (RelSpool, spool_config, start_server, make_message, message_id,
                    is_whole, is_dsn, wait_idle, figure, outcome, smarthost, SENDER, RCPT)

MESSAGES = int(os.environ.get("RELIABILITY_SOAK_MESSAGES", "10000"))
MINUTES = float(os.environ.get("RELIABILITY_SOAK_MINUTES", "30"))
SUBMITTERS = 20


class Soak(unittest.TestCase):

    def setUp(self):
        self.server = start_server("starttls")
        self.spool = RelSpool()
        conf, sh = spool_config(self.server, tls="starttls", auth=True, timeout="2s")
        self.spool.write_config(conf, sh)
        self.server.handler.stall_limit = 6
        self.server.handler.dot_stall = 3
        self.server.handler.chooser = smarthost.RandomFaults(
            rate=0.15, actions=smarthost.ACTIONS,
            stages=("mail", "rcpt", "data", "body", "dot", "rset"),
            conn_rate=0.05, conn_stages=("greeting", "ehlo", "starttls", "tls", "auth", "quit"),
            seed=int(os.environ.get("RELIABILITY_SEED", "10000")))

    def tearDown(self):
        self.server.stop()
        self.spool.cleanup()

    def submitter(self, k, n, results, deadline):
        for i in range(n):
            if time.monotonic() > deadline:
                return
            mid, msg = make_message("soak-%d-%d" % (k, i))
            mode = "-odb" if i % 4 == 3 else "-odq"
            p = self.spool.run([mode, "-i", "-f", SENDER, RCPT], input=msg, timeout=300)
            results.append((mid, p.returncode, p.stderr))

    def runner_loop(self, stop):
        while not stop.is_set():
            self.spool.run(["-q"], timeout=600)

    def test_soak(self):
        t0 = time.monotonic()
        deadline = t0 + MINUTES * 60
        log = open(os.path.join(self.spool.root, "daemon.log"), "wb")
        daemon = subprocess.Popen(self.spool.command("relayq") + ["-q1s"],
                                  env=self.spool.environ(), stderr=log)
        stop, results = threading.Event(), []
        per = [MESSAGES // SUBMITTERS + (k < MESSAGES % SUBMITTERS) for k in range(SUBMITTERS)]
        runners = [threading.Thread(target=self.runner_loop, args=(stop,)) for _ in range(2)]
        subs = [threading.Thread(target=self.submitter, args=(k, per[k], results, deadline))
                for k in range(SUBMITTERS)]
        try:
            for t in runners + subs:
                t.start()
            for t in subs:
                t.join()
            # Let the runners and the daemon work through the faults, then
            # drain with the faults still on, then once more with them off.
            while self.spool.ids() and time.monotonic() < deadline - 120:
                time.sleep(2)
        finally:
            stop.set()
            for t in runners:
                t.join()
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(120)
            log.close()
        faults = collections.Counter(self.server.handler.faults_applied)
        self.server.handler.clear_faults()
        drains = 0
        while self.spool.ids() and drains < 30:
            self.spool.run(["-qf"], timeout=600)
            drains += 1
        wait_idle(self.server, 60)
        took = time.monotonic() - t0

        submitted = [m for m, rc, err in results if rc == 0]
        refused = [(m, rc, err) for m, rc, err in results if rc != 0]
        originals = [m for m in self.server.messages if not is_dsn(m)]
        got = collections.Counter(message_id(m.data) for m in originals)
        lost_reply = collections.Counter(message_id(m.data) for m in originals if m.lost_reply)
        damaged = sum(1 for m in self.server.messages if not is_whole(m.data) and not is_dsn(m))
        failed_mids = set()
        fdir = os.path.join(self.spool.queue, "failed")
        dsn_failed = 0
        for name in os.listdir(fdir):
            if name.endswith(".data"):
                with open(os.path.join(fdir, name), "rb") as f:
                    mid = message_id(f.read())
                if mid and mid.endswith("@reliability.test>"):
                    failed_mids.add(mid)
                else:
                    dsn_failed += 1
        dsn_delivered = collections.Counter()
        for m in self.server.messages:
            if is_dsn(m):
                text = m.data.decode("utf-8", "replace")
                for mid in failed_mids:
                    if mid in text:
                        dsn_delivered[mid] += 1
        both = [m for m in submitted if m in got and m in failed_mids
                and lost_reply[m] == 0]
        neither = [m for m in submitted if m not in got and m not in failed_mids]
        dups = {m: c for m, c in got.items() if c > 1}
        bad_dups = {m: c for m, c in dups.items() if c - 1 > lost_reply[m]}
        delivered = sum(1 for m in submitted if m in got)
        bounced = sum(1 for m in submitted if m in failed_mids)
        figure("soak", submitted=len(submitted), delivered=delivered,
               bounced=bounced, duplicates=sum(c - 1 for c in dups.values()),
               lost=len(neither), refused=len(refused),
               faults=sum(faults.values()), bounces_delivered=sum(dsn_delivered.values()),
               bounces_failed=dsn_failed)
        overlap = len([m for m in submitted if m in got and m in failed_mids])
        outcome("soak", "%d messages, random faults (%d injected), %.0f min"
                % (len(submitted), sum(faults.values()), took / 60),
                "delivered %d + bounced %d - both %d (taken before a lost reply, then "
                "refused on the retry) = %d (submitted %d); duplicates %d (all after a "
                "lost reply to the dot); lost %d"
                % (delivered, bounced, overlap, delivered + bounced - overlap,
                   len(submitted), sum(c - 1 for c in dups.values()), len(neither)))
        print("\nsoak: %d submitted, %d delivered, %d bounced, %d duplicates, %d lost, "
              "%d refused at submission; %d faults: %s"
              % (len(submitted), delivered, bounced, sum(c - 1 for c in dups.values()),
                 len(neither), len(refused), sum(faults.values()),
                 ", ".join("%s/%s %d" % (k[0], k[1], v) for k, v in sorted(faults.items()))))
        self.assertEqual(refused, [])
        self.assertEqual(len(submitted), MESSAGES, "time bound hit during submission")
        self.assertEqual(self.spool.ids(), [], "still queued after the drain")
        self.assertEqual(neither, [], "lost")
        self.assertEqual(both, [], "delivered and bounced")
        self.assertEqual(bad_dups, {}, "duplicates without a lost reply")
        self.assertEqual(damaged, 0)
        self.assertEqual(delivered + bounced - len([m for m in submitted if m in got
                                                    and m in failed_mids]), len(submitted))
        self.assertEqual(self.spool.listdir("corrupt"), [])
        missing_dsn = [m for m in failed_mids if dsn_delivered[m] == 0]
        self.assertLessEqual(len(missing_dsn), dsn_failed,
                             "bounced originals without a bounce delivered or failed")


if __name__ == "__main__":
    unittest.main(verbosity=2)
