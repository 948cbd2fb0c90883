"""Load: 20 parallel submitters x 100 messages each (times
$RELIABILITY_SCALE), while two `relayq -q` loops, the daemon (`relayq -q1s`)
and the background deliveries of some submissions (-odb) all work on the
same queue, against a smarthost that offers PIPELINING and answers 4xx to
20% of transactions (at MAIL, RCPT, DATA or the final dot, at random).

At the end the queue is drained with `relayq -qf` runs (bounded) and the
smarthost must have received each message exactly once, by Message-ID,
whole; the queue must be empty, failed/ and corrupt/ too.
"""
import collections
import os
import signal
import subprocess
import threading
import time
import unittest

from common import (RelSpool, spool_config, start_server, make_message, message_id,
                    is_whole, wait_idle, figure, outcome, smarthost, SCALE, SENDER, RCPT)

SUBMITTERS = 20
PER_SUBMITTER = max(1, int(round(100 * SCALE)))
DEFER_RATE = 0.2


class Load(unittest.TestCase):

    def setUp(self):
        self.server = start_server("none")
        self.spool = RelSpool()
        conf, sh = spool_config(self.server, tls="none", timeout="10s")
        self.spool.write_config(conf, sh)
        # PIPELINING, as real smarthosts offer it: each queue run overlaps
        # its messages (the next one's commands before the last reply).
        self.server.handler.pipelining = True
        self.server.handler.chooser = smarthost.RandomFaults(
            rate=DEFER_RATE, actions=("4xx",), stages=("mail", "rcpt", "data", "dot"),
            seed=int(os.environ.get("RELIABILITY_SEED", "6")))

    def tearDown(self):
        self.server.stop()
        self.spool.cleanup()

    def submitter(self, k, results):
        for i in range(PER_SUBMITTER):
            mid, msg = make_message("load-%d-%d" % (k, i))
            mode = "-odb" if i % 4 == 3 else "-odq"
            p = self.spool.run([mode, "-i", "-f", SENDER, RCPT], input=msg, timeout=120)
            results.append((mid, p.returncode, p.stderr))

    def runner_loop(self, stop, counts):
        while not stop.is_set():
            p = self.spool.run(["-q"], timeout=300)
            counts[p.returncode] += 1

    def test_parallel_submitters_runners_and_daemon(self):
        t0 = time.monotonic()
        log = open(os.path.join(self.spool.root, "daemon.log"), "wb")
        daemon = subprocess.Popen(self.spool.command("relayq") + ["-q1s"],
                                  env=self.spool.environ(), stderr=log)
        stop, counts, results = threading.Event(), collections.Counter(), []
        runners = [threading.Thread(target=self.runner_loop, args=(stop, counts))
                   for _ in range(2)]
        subs = [threading.Thread(target=self.submitter, args=(k, results))
                for k in range(SUBMITTERS)]
        try:
            for t in runners + subs:
                t.start()
            for t in subs:
                t.join()
            t_submit = time.monotonic() - t0
        finally:
            stop.set()
            for t in runners:
                t.join()
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
            log.close()
        self.assertEqual(daemon.returncode, 0)
        failed = [(m, rc, err) for m, rc, err in results if rc != 0]
        self.assertEqual(failed, [])
        submitted = [m for m, rc, err in results]
        # Drain: -odb children may still be busy; their entries are locked.
        drains = 0
        while self.spool.ids() and drains < 60:
            self.spool.run(["-qf"], timeout=300)
            drains += 1
        self.assertTrue(wait_idle(self.server, 30))
        took = time.monotonic() - t0

        got = collections.Counter(message_id(m.data) for m in self.server.messages)
        dup = {k: v for k, v in got.items() if v > 1}
        missing = set(submitted) - set(got)
        extra = set(got) - set(submitted)
        damaged = sum(1 for m in self.server.messages if not is_whole(m.data))
        deferrals = sum(1 for f in self.server.handler.faults_applied if f[1] == "4xx")
        figure("load", submitted=len(submitted), delivered=len(got) - len(extra),
               duplicates=sum(v - 1 for v in dup.values()), bounced=0,
               lost=len(missing), deferrals=deferrals)
        outcome("load", "%d submitters x %d, 2 x -q, daemon -q1s, 1 in 4 -odb, 20%% 4xx"
                % (SUBMITTERS, PER_SUBMITTER),
                "%d submitted, %d received once, %d duplicates, %d lost, %d 4xx answered; "
                "%.0fs (submissions %.0fs, %d drain runs)"
                % (len(submitted), len(got), sum(v - 1 for v in dup.values()),
                   len(missing), deferrals, took, t_submit, drains))
        self.assertEqual(missing, set(), "lost")
        self.assertEqual(dup, {}, "duplicates")
        self.assertEqual(extra, set())
        self.assertEqual(damaged, 0)
        self.assertGreater(deferrals, 0)
        self.assertEqual(self.spool.ids(), [])
        self.assertEqual(self.spool.listdir("data"), [])
        self.assertEqual(self.spool.listdir("failed"), [])
        self.assertEqual(self.spool.listdir("corrupt"), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
