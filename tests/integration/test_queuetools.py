"""relayq's operator tools, end to end: --show, --delete, --retry, --hold,
--release, --requeue, --summary, mailq under monitoring-plugins'
check_mailq, and the --test connectivity self-test against real smarthosts
on loopback (aiosmtpd with STARTTLS/SMTPS and AUTH)."""
import base64
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import SpoolTest, main, parse_envelope
from certs import Certs
import smarthost

CERTS = None
USER, PASSWORD = "relayuser", "pa55-w0rd-Secret"
MSG = (b"From: Sender <sender@example.net>\nTo: rcpt@example.org\n"
       b"Subject: tools test\nX-Ctl: a\x1b[2Jb caf\xc3\xa9\n\nbody\n")
CHECK_MAILQ = "/usr/lib/nagios/plugins/check_mailq"
SUMMARY = re.compile(r"^queue: total=(\d+) new=(\d+) deferred=(\d+) active=(\d+) "
                     r"held=(\d+) failed=(\d+) corrupt=(\d+) oldest=(\d+)\n$")
EX_USAGE, EX_DATAERR, EX_NOUSER, EX_TEMPFAIL, EX_CONFIG = 64, 65, 67, 75, 78


def certs():
    global CERTS
    if CERTS is None:
        CERTS = Certs()
    return CERTS


class Locked:
    """Hold the flock a delivery holds on a queue file, from this process."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDONLY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


class ToolTest(SpoolTest):
    """A spool, and a smarthost started on demand."""

    def setUp(self):
        super().setUp()
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.stop()
        super().tearDown()

    def start_server(self, tls="starttls", cert=None, key=None, users=None, **kw):
        c = certs()
        s = smarthost.Smarthost(tls, cert or c.server, key or c.server_key,
                                {USER: PASSWORD} if users is None else users, **kw)
        s.start()
        self.servers.append(s)
        return s

    def smarthost_conf(self, server=None, port=None, tls="starttls", name="main", **keys):
        conf = {"host": '"127.0.0.1"', "port": str(port or server.port), "tls": tls,
                "tls_ca_file": '"%s"' % certs().ca, "username": '"%s"' % USER,
                "password": '"%s"' % PASSWORD, "timeout": "20s",
                "connect_timeout": "5s"}
        conf.update(keys)
        body = "".join(" %s = %s\n" % (k, v) for k, v in conf.items() if v is not None)
        return "smarthost %s {\n%s}\n" % (name, body)

    def configure(self, smarthosts, extra=""):
        self.spool.write_config(extra, smarthosts)

    def unreachable(self):
        """A smarthost nobody listens on: every attempt defers."""
        self.configure(self.smarthost_conf(port=smarthost._free_port("127.0.0.1")))

    def queue(self, *rcpts, message=MSG, sender=None):
        args = ["-odq", "-i"] + (["-f", sender] if sender else []) + \
            list(rcpts or ["rcpt@example.org"])
        before = set(self.spool.ids())
        self.assertExit(self.submit(args, message), 0)
        [qid] = set(self.spool.ids()) - before
        return qid

    def relayq(self, *args, **kw):
        return self.spool.run(list(args), argv0="relayq", **kw)

    def path(self, *parts):
        return os.path.join(self.spool.queue, *parts)

    def raw_env(self, qid):
        with open(self.path("env", qid), "rb") as f:
            return f.read()

    def failed_env(self, qid):
        with open(self.path("failed", qid + ".env"), "rb") as f:
            return parse_envelope(f.read())

    def summary(self):
        p = self.relayq("--summary")
        self.assertExit(p, 0)
        m = SUMMARY.match(p.stdout.decode())
        self.assertIsNotNone(m, p.stdout)
        keys = ("total", "new", "deferred", "active", "held", "failed", "corrupt",
                "oldest")
        return dict(zip(keys, map(int, m.groups())))

    def mailq(self):
        p = self.spool.run([], argv0="mailq")
        self.assertExit(p, 0)
        return p.stdout.decode()


class CommandLine(ToolTest):

    def test_usage_errors(self):
        for args, fragment in ((["--show"], "--show takes a queue id"),
                               (["--summary", "x"], "--summary takes no argument"),
                               (["--test", "a@b", "c@d"], "--test takes at most one"),
                               (["--retry", "ALL"], "--retry does not take ALL"),
                               (["--delete", "ALL", "0A1B2C3D4E5F60718"], "ALL must stand alone"),
                               (["--hold", "-t", "x"], "only -v and -C"),
                               (["-v", "--delete", "x"], "--delete must be the first argument")):
            with self.subTest(args=args):
                p = self.relayq(*args)
                self.assertExit(p, EX_USAGE)
                self.assertIn(fragment.encode(), p.stderr)

    def test_malformed_and_unknown_ids(self):
        self.queue()
        for tool in ("--show", "--delete", "--retry", "--hold", "--release", "--requeue"):
            with self.subTest(tool=tool):
                p = self.relayq(tool, "../../etc/passwd")
                self.assertExit(p, EX_USAGE)
                self.assertIn(b"not a queue id", p.stderr)
                p = self.relayq(tool, "0A1B2C3D4E5F60718")
                self.assertExit(p, EX_DATAERR)
                self.assertIn(b"0A1B2C3D4E5F60718: ", p.stderr)

    def test_help_lists_the_tools(self):
        p = self.relayq("--help")
        self.assertExit(p, 0)
        for tool in (b"--show", b"--delete", b"--retry", b"--hold", b"--release",
                     b"--requeue", b"--summary", b"--test"):
            self.assertIn(tool, p.stdout)


class Show(ToolTest):

    def test_show_envelope_and_header(self):
        self.unreachable()
        qid = self.queue("a@example.org", "b@example.org", sender="owner@example.net")
        self.spool.run(["-q"])           # one failed attempt: an error to show
        p = self.relayq("--show", qid)
        self.assertExit(p, 0)
        out = p.stdout.decode("utf-8")
        env = self.spool.envelope(qid)
        self.assertIn("id: %s\n" % qid, out)
        self.assertIn("state: deferred\n", out)
        self.assertIn("sender: <owner@example.net>\n", out)
        self.assertIn("size: %s\n" % env["size"], out)
        self.assertIn("attempts: 1\n", out)
        self.assertIn("(%s)\n" % env["created"], out)
        self.assertIn("(%s)\n" % env["next-attempt"], out)
        self.assertIn("held: no\n", out)
        self.assertRegex(out, r"last error: connect to 127\.0\.0\.1.*refused")
        self.assertIn("recipient: a@example.org\n  status: pending\n  dsn: 4.4.1\n"
                      "  error: connect to", out)
        self.assertIn("recipient: b@example.org\n", out)
        head = out.split("\n\n", 1)[1]
        self.assertIn("Subject: tools test\n", head)
        self.assertIn("From: Sender <sender@example.net>\n", head)
        # Control characters escaped, printable UTF-8 kept, no body.
        self.assertIn("X-Ctl: a\\x1b[2Jb caf\u00e9\n", head)
        self.assertNotIn("\x1b", out)
        self.assertNotIn("body", head)

    def test_show_failed_entry(self):
        server = self.start_server()
        server.handler.rcpt_replies["bad@example.org"] = "550 5.1.1 no such user"
        self.configure(self.smarthost_conf(server))
        qid = self.queue("bad@example.org", sender="<>")   # no bounce for <>
        self.spool.run(["-q"])
        self.assertEqual(self.spool.listdir("failed"), [qid + ".data", qid + ".env"])
        p = self.relayq("--show", qid)
        self.assertExit(p, 0)
        out = p.stdout.decode()
        self.assertIn("state: failed (in failed/", out)
        self.assertIn("sender: <>\n", out)
        self.assertIn("  status: failed\n  dsn: 5.1.1\n  error: 550 5.1.1 no such user\n",
                      out)
        self.assertIn("Subject: tools test\n", out)


class Delete(ToolTest):

    def test_delete_one(self):
        a, b = self.queue(), self.queue()
        p = self.relayq("--delete", a)
        self.assertExit(p, 0)
        self.assertEqual(p.stdout.decode(), "%s: deleted\n" % a)
        self.assertEqual(self.spool.ids(), [b])
        self.assertEqual(self.spool.listdir("data"), [b])

    def test_delete_all(self):
        for _ in range(3):
            self.queue()
        p = self.relayq("--delete", "ALL")
        self.assertExit(p, 0)
        self.assertEqual(len(p.stdout.splitlines()), 3)
        self.assertQueueEmpty()
        p = self.relayq("--delete", "ALL")
        self.assertExit(p, 0)
        self.assertEqual(p.stdout, b"Mail queue is empty\n")

    def test_busy_entry_is_skipped(self):
        a, b = self.queue(), self.queue()
        with Locked(self.path("env", a)):
            p = self.relayq("--delete", a, b)
        self.assertExit(p, EX_TEMPFAIL)
        self.assertIn(("%s: busy" % a).encode(), p.stderr)
        self.assertIn(b"1 of 2 entries failed", p.stderr)
        self.assertEqual(p.stdout.decode(), "%s: deleted\n" % b)
        self.assertEqual(self.spool.ids(), [a])
        self.assertEqual(self.spool.listdir("data"), [a])
        with Locked(self.path("env", a)):
            p = self.relayq("--delete", "ALL")
        self.assertExit(p, EX_TEMPFAIL)
        self.assertEqual(self.spool.ids(), [a])

    def test_delete_from_failed(self):
        server = self.start_server()
        server.handler.rcpt_replies["bad@example.org"] = "550 5.1.1 no such user"
        self.configure(self.smarthost_conf(server))
        qid = self.queue("bad@example.org", sender="<>")
        self.spool.run(["-q"])
        self.assertEqual(self.spool.listdir("failed"), [qid + ".data", qid + ".env"])
        self.assertExit(self.relayq("--delete", qid), 0)
        self.assertEqual(self.spool.listdir("failed"), [])


class HoldRelease(ToolTest):

    def test_hold_keeps_entry_from_every_run(self):
        server = self.start_server()
        self.configure(self.smarthost_conf(server))
        held, other = self.queue(), self.queue()
        before = self.raw_env(held)
        p = self.relayq("--hold", held)
        self.assertExit(p, 0)
        self.assertEqual(p.stdout.decode(), "%s: on hold\n" % held)
        raw = self.raw_env(held)
        self.assertIn(b"\nheld: 1\n", raw)
        # Only the held key changed.
        self.assertEqual(raw.replace(b"held: 1\n", b""), before)
        self.assertRegex(self.mailq(), r"(?m)^%s!\s+\d+ " % held)
        self.assertRegex(self.mailq(), r"(?m)^%s\s+\d+ " % other)
        for args in (["-q"], ["-qf"], ["-qI" + held]):
            self.spool.run(args)
        self.assertEqual(len(server.messages), 1)     # only the other one
        self.assertEqual(self.spool.ids(), [held])
        env = self.spool.envelope(held)
        self.assertEqual((env["attempts"], env["last-attempt"]), ("0", "0"))
        p = self.relayq("--retry", held)
        self.assertExit(p, EX_DATAERR)
        self.assertIn(b"on hold", p.stderr)
        self.assertEqual(self.relayq("--hold", held).stdout.decode(),
                         "%s: already on hold\n" % held)
        # Released: the key is gone, and the next run delivers it.
        p = self.relayq("--release", held)
        self.assertExit(p, 0)
        self.assertEqual(p.stdout.decode(), "%s: released\n" % held)
        self.assertEqual(self.raw_env(held), before)
        self.assertRegex(self.mailq(), r"(?m)^%s\s+\d+ " % held)
        self.spool.run(["-q"])
        self.assertEqual(len(server.messages), 2)
        self.assertQueueEmpty()

    def test_hold_all_release_all_and_busy(self):
        self.unreachable()
        ids = [self.queue() for _ in range(3)]
        self.assertExit(self.relayq("--hold", "ALL"), 0)
        self.assertEqual(self.summary()["held"], 3)
        with Locked(self.path("env", ids[0])):
            p = self.relayq("--release", "ALL")
        self.assertExit(p, EX_TEMPFAIL)
        self.assertIn(b"busy", p.stderr)
        self.assertIn(b"\nheld: 1\n", self.raw_env(ids[0]))
        for qid in ids[1:]:
            self.assertNotIn(b"held:", self.raw_env(qid))
        p = self.relayq("--release", ids[1])
        self.assertExit(p, 0)
        self.assertEqual(p.stdout.decode(), "%s: not on hold\n" % ids[1])


class Retry(ToolTest):

    def test_retry_delivers_now(self):
        server = self.start_server()
        self.configure(self.smarthost_conf(server))
        server.handler.defer_transactions = 1
        qid = self.queue()
        self.spool.run(["-q"])
        env = self.spool.envelope(qid)
        self.assertEqual(env["attempts"], "1")
        self.assertGreater(int(env["next-attempt"]), int(time.time()))
        p = self.relayq("--retry", qid)          # not due, delivered anyway
        self.assertExit(p, 0)
        self.assertIn(("%s: <rcpt@example.org>: sent" % qid).encode(), p.stderr)
        self.assertEqual(len(server.messages), 1)
        self.assertQueueEmpty()

    def test_retry_busy(self):
        self.unreachable()
        qid = self.queue()
        with Locked(self.path("env", qid)):
            p = self.relayq("--retry", qid)
        self.assertExit(p, EX_TEMPFAIL)
        self.assertIn(b"busy", p.stderr)
        self.assertEqual(self.spool.envelope(qid)["attempts"], "0")


class Requeue(ToolTest):

    def fail_one(self, server):
        """One entry with a sent and a failed recipient, in failed/."""
        server.handler.rcpt_replies["bad@example.org"] = "550 5.1.1 no such user"
        qid = self.queue("good@example.org", "bad@example.org", sender="<>")
        self.spool.run(["-q"])
        failed = self.spool.listdir("failed")
        self.assertIn(qid + ".data", failed)
        self.assertIn(qid + ".env", failed)
        self.assertQueueEmpty()
        return qid

    def test_requeue_and_deliver(self):
        server = self.start_server()
        self.configure(self.smarthost_conf(server))
        qid = self.fail_one(server)
        with open(self.path("failed", qid + ".data"), "rb") as f:
            data = f.read()
        failed = self.failed_env(qid)
        p = self.relayq("--requeue", qid)
        self.assertExit(p, 0)
        self.assertEqual(p.stdout.decode(), "%s: requeued\n" % qid)
        self.assertEqual(self.spool.listdir("failed"), [])
        self.assertEqual(self.spool.ids(), [qid])
        self.assertEqual(self.spool.data(qid), data)
        self.assertEqual(self.spool.listdir("tmp"), [])
        env = self.spool.envelope(qid)
        self.assertEqual(env["created"], failed["created"])
        self.assertEqual((env["attempts"], env["next-attempt"]), ("0", "0"))
        self.assertNotIn("last-error", env)
        good, bad = env["rcpts"]
        self.assertEqual(good, {"status": "sent", "addr": "good@example.org",
                                "dsn": "2.0.0"})
        self.assertEqual(bad, {"status": "pending", "addr": "bad@example.org"})
        # Delivered to the failed recipient only.
        del server.handler.rcpt_replies["bad@example.org"]
        self.spool.run(["-q"])
        self.assertEqual(server.messages[-1].rcpt_tos, ["bad@example.org"])
        self.assertQueueEmpty()

    def test_requeue_all_and_wrong_place(self):
        server = self.start_server()
        self.configure(self.smarthost_conf(server))
        a, b = self.fail_one(server), self.fail_one(server)
        queued = self.queue()
        p = self.relayq("--requeue", queued)
        self.assertExit(p, EX_DATAERR)
        self.assertIn(b"is in the queue, not in failed/", p.stderr)
        p = self.relayq("--hold", a)
        self.assertExit(p, EX_DATAERR)
        self.assertIn(("is in failed/, not in the queue (relayq --requeue %s" % a).encode(),
                      p.stderr)
        p = self.relayq("--requeue", "ALL")
        self.assertExit(p, 0)
        self.assertEqual(sorted(p.stdout.decode().split()),
                         sorted([a + ":", b + ":", "requeued", "requeued"]))
        self.assertEqual(self.spool.ids(), sorted([a, b, queued]))
        self.assertEqual(self.spool.listdir("failed"), [])

    def test_interrupted_requeue_is_finished(self):
        server = self.start_server()
        self.configure(self.smarthost_conf(server))
        qid = self.fail_one(server)
        # A crash after the commit: the entry is queued and still in failed/.
        shutil.copy(self.path("failed", qid + ".data"), self.path("data", qid))
        shutil.copy(self.path("failed", qid + ".env"), self.path("env", qid))
        p = self.relayq("--requeue", qid)
        self.assertExit(p, 0)
        self.assertEqual(self.spool.listdir("failed"), [])
        self.assertEqual(self.spool.ids(), [qid])

    def test_leftover_data_before_commit(self):
        server = self.start_server()
        self.configure(self.smarthost_conf(server))
        qid = self.fail_one(server)
        # A crash before the commit left data/ID behind (and no env/ID).
        with open(self.path("data", qid), "wb") as f:
            f.write(b"partial")
        self.assertExit(self.relayq("--requeue", qid), 0)
        with open(self.path("data", qid), "rb") as f:
            self.assertTrue(f.read().startswith(b"Received: "))

    def test_busy_failed_entry(self):
        server = self.start_server()
        self.configure(self.smarthost_conf(server))
        qid = self.fail_one(server)
        with Locked(self.path("failed", qid + ".env")):
            p = self.relayq("--requeue", qid)
            self.assertExit(p, EX_TEMPFAIL)
            p = self.relayq("--delete", qid)
            self.assertExit(p, EX_TEMPFAIL)
        self.assertEqual(self.spool.listdir("failed"), [qid + ".data", qid + ".env"])
        self.assertEqual(self.spool.ids(), [])


class Summary(ToolTest):

    def test_empty_and_missing_queue(self):
        self.assertEqual(self.summary(), dict(total=0, new=0, deferred=0, active=0,
                                              held=0, failed=0, corrupt=0, oldest=0))
        shutil.rmtree(self.spool.queue, ignore_errors=True)
        self.assertEqual(self.summary()["total"], 0)

    def test_every_state_counted(self):
        server = self.start_server()
        self.configure(self.smarthost_conf(server))
        server.handler.rcpt_replies["bad@example.org"] = "550 5.1.1 no such user"
        failed = self.queue("bad@example.org", sender="<>")
        self.spool.run(["-q"])
        self.assertEqual(self.spool.listdir("failed"), [failed + ".data", failed + ".env"])
        server.handler.defer_transactions = 1
        deferred = self.queue()
        self.spool.run(["-q"])
        self.assertEqual(self.spool.ids(), [deferred])
        new, held, active = self.queue(), self.queue(), self.queue()
        self.assertExit(self.relayq("--hold", held), 0)
        # An old arrival time: the oldest entry is an hour old.
        raw = self.raw_env(new)
        created = int(parse_envelope(raw)["created"])
        with open(self.path("env", new), "wb") as f:
            f.write(raw.replace(b"created: %d\n" % created,
                                b"created: %d\n" % (created - 3600)))
        corrupt = self.queue()
        with open(self.path("env", corrupt), "ab") as f:
            f.write(b"garbage after end\n")
        with Locked(self.path("env", active)):
            s = self.summary()
        self.assertEqual({k: v for k, v in s.items() if k != "oldest"},
                         dict(total=4, new=1, deferred=1, active=1, held=1, failed=1,
                              corrupt=1))
        self.assertGreaterEqual(s["oldest"], 3600)
        self.assertLess(s["oldest"], 3600 + 120)
        # A corrupt entry moved to corrupt/ by a run still counts.
        self.spool.run(["-q"])
        self.assertGreaterEqual(self.summary()["corrupt"], 1)


def have_check_mailq():
    """check_mailq and the Perl modules it loads."""
    if not os.access(CHECK_MAILQ, os.X_OK) or shutil.which("perl") is None:
        return False
    return subprocess.run(["perl", "-MFindBin", "-MGetopt::Long", "-MPOSIX", "-e", "1"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


@unittest.skipUnless(have_check_mailq(),
                     "monitoring-plugins-standard (check_mailq) or perl not installed")
class CheckMailq(ToolTest):
    """monitoring-plugins' check_mailq -M postfix reads our mailq."""

    def setUp(self):
        super().setUp()
        # check_mailq runs $utils::PATH_TO_MAILQ from the utils.pm beside it.
        self.plugdir = tempfile.mkdtemp(prefix="relayq-plugins-")
        shutil.copy(CHECK_MAILQ, self.plugdir)
        with open(os.path.join(os.path.dirname(CHECK_MAILQ), "utils.pm")) as f:
            utils = f.read()
        mailq = os.path.join(self.spool.bindir, "mailq")
        utils, n = re.subn(r'(?m)^\$PATH_TO_MAILQ\s*=.*$',
                           '$PATH_TO_MAILQ = "%s";' % mailq, utils)
        self.assertEqual(n, 1)
        with open(os.path.join(self.plugdir, "utils.pm"), "w") as f:
            f.write(utils)

    def tearDown(self):
        shutil.rmtree(self.plugdir, ignore_errors=True)
        super().tearDown()

    def check(self, *extra):
        return subprocess.run(["perl", os.path.join(self.plugdir, "check_mailq"),
                               "-M", "postfix", "-w", "3", "-c", "5"] + list(extra),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=self.spool.environ(), timeout=60)

    def test_thresholds(self):
        self.unreachable()
        expect = {0: (0, "OK: postfix mailq reports queue is empty"),
                  2: (0, "OK: postfix mailq (2) is below threshold (3/5)"),
                  3: (1, "WARNING: postfix mailq is 3 (threshold w = 3)"),
                  5: (2, "CRITICAL: postfix mailq is 5 (threshold c = 5)")}
        count = 0
        for n in sorted(expect):
            while count < n:
                self.queue()
                count += 1
            if n == 3:              # held and deferred entries count too
                self.assertExit(self.relayq("--hold", self.spool.ids()[0]), 0)
                self.spool.run(["-qf"])
            code, text = expect[n]
            with self.subTest(messages=n):
                p = self.check()
                self.assertEqual(p.returncode, code, p.stdout + p.stderr)
                self.assertEqual(p.stdout.decode(), "%s|unsent=%d;3;5;0\n" % (text, n))

    def test_config_dir_option(self):
        """-d passes "-C FILE" to mailq: relayq's -C takes the config file."""
        self.unreachable()
        self.queue()
        env = self.spool.environ()
        del env["RELAYQ_CONFIG"]
        p = subprocess.run(["perl", os.path.join(self.plugdir, "check_mailq"),
                            "-M", "postfix", "-w", "3", "-c", "5", "-d", self.spool.config],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertTrue(p.stdout.startswith(b"OK: postfix mailq (1) is below"), p.stdout)


class SelfTest(ToolTest):

    def run_test(self, *args):
        p = self.relayq("--test", *args)
        for stream in (p.stdout, p.stderr):
            self.assertNotIn(PASSWORD.encode(), stream)
            self.assertNotIn(base64.b64encode(b"\0%s\0%s" % (USER.encode(),
                                                             PASSWORD.encode())), stream)
            self.assertNotIn(base64.b64encode(PASSWORD.encode()), stream)
        return p, p.stdout.decode(), p.stderr.decode()

    def assertCertificate(self, out):
        self.assertIn("    subject: CN=localhost\n", out)
        self.assertIn("    issuer: CN=relayq test CA\n", out)
        self.assertRegex(out, r"    not after: \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} GMT\n")
        self.assertRegex(out, r"    fingerprint: sha256:[0-9a-f]{64}\n")

    def test_starttls_auth_vrfy(self):
        server = self.start_server("starttls")
        self.configure(self.smarthost_conf(server))
        p, out, err = self.run_test("rcpt@example.org")
        self.assertExit(p, 0)
        self.assertIn("smarthost main: 127.0.0.1 port %d, tls starttls\n" % server.port, out)
        self.assertIn("  resolve: 127.0.0.1 -> 127.0.0.1\n", out)
        self.assertIn("  connect: 127.0.0.1[127.0.0.1]:%d\n" % server.port, out)
        self.assertRegex(out, r"  tls: TLSv1\.[23] [A-Z0-9_-]+\n")
        self.assertCertificate(out)
        self.assertIn("    verify: ok\n", out)
        self.assertRegex(out, r"  extensions:.* AUTH .*SIZE=104857600")
        self.assertIn("  auth: authenticated as relayuser\n", out)
        self.assertRegex(out, r"  vrfy <rcpt@example.org>: 252 ")
        self.assertIn("  result: ok\n1 of 1 smarthost ok\n", out)
        # The transcript, redacted: AUTH shown without its payload.
        self.assertIn("-> STARTTLS\n", err)
        self.assertRegex(err, r"-> AUTH [A-Z0-9-]+( \*\*\*)?\n")
        self.assertIn("-> VRFY rcpt@example.org\n", err)
        self.assertEqual(server.messages, [])

    def test_smtps_and_mechanism(self):
        server = self.start_server("smtps")
        self.configure(self.smarthost_conf(server, tls="smtps", auth='{ "LOGIN" }'))
        p, out, err = self.run_test()
        self.assertExit(p, 0)
        self.assertIn("tls smtps\n", out)
        self.assertCertificate(out)
        self.assertIn("-> AUTH LOGIN\n", err)
        self.assertIn("-> ***\n", err)
        self.assertNotIn("vrfy", out)

    def test_wrong_password(self):
        server = self.start_server("starttls")
        self.configure(self.smarthost_conf(server, password='"wrong-%s"' % PASSWORD[::-1]))
        p, out, err = self.run_test()
        self.assertExit(p, EX_TEMPFAIL)
        self.assertIn("    verify: ok\n", out)       # TLS was fine
        self.assertRegex(out, r"  result: FAILED at auth: .*authentication failed: 535")
        # relayq-deliver does the test; under valgrind its argv[0] (the
        # name in messages) is its own path, not the caller's name.
        self.assertRegex(err, r"relayq(-deliver)?: smarthost main: auth: .*authentication failed")
        self.assertNotIn(PASSWORD[::-1], out + err)

    def test_unknown_ca(self):
        server = self.start_server("starttls")
        self.configure(self.smarthost_conf(server, tls_ca_file='"%s"' % certs().selfsigned))
        p, out, err = self.run_test()
        self.assertExit(p, EX_TEMPFAIL)
        self.assertRegex(out, r"  result: FAILED at connect: .*unknown certificate authority")
        self.assertIn("unknown certificate authority", err)
        # The certificate the server presents, fetched without verification.
        self.assertIn("  certificate presented (fetched again without verification", out)
        self.assertCertificate(out)
        self.assertIn("    verify: unknown certificate authority\n", out)
        self.assertNotIn("-> AUTH", err)

    def test_unreachable_and_second_smarthost(self):
        server = self.start_server("starttls")
        port = smarthost._free_port("127.0.0.1")
        self.configure(self.smarthost_conf(port=port, name="down") +
                       self.smarthost_conf(server, name="up"))
        p, out, err = self.run_test()
        self.assertExit(p, EX_TEMPFAIL)
        self.assertRegex(out, r"smarthost down:.*\n(.*\n)*  result: FAILED at connect: "
                              r".*refused")
        self.assertRegex(out, r"smarthost up:.*\n(.*\n)*  result: ok\n")
        self.assertIn("1 of 2 smarthosts ok\n", out)
        self.assertRegex(err, r"relayq(-deliver)?: smarthost down: connect: ")

    def test_unresolvable_and_none_configured(self):
        self.configure(self.smarthost_conf(port=25, host='"nonexistent.invalid"'))
        p, out, err = self.run_test()
        self.assertExit(p, EX_TEMPFAIL)
        self.assertIn("FAILED at resolve: cannot resolve nonexistent.invalid", out)
        self.configure("")
        p, out, err = self.run_test()
        self.assertExit(p, EX_CONFIG)
        self.assertIn("no smarthost configured", err)

    def test_vrfy_rejected(self):
        server = self.start_server("none", users={})
        orig = server.handler

        async def handle_VRFY(srv, session, envelope, address):
            return "550 5.1.1 <%s>: no such user" % address
        orig.handle_VRFY = handle_VRFY
        self.configure(self.smarthost_conf(server, tls="none", tls_ca_file=None,
                                           username=None, password=None))
        p, out, err = self.run_test("nobody@example.org")
        self.assertExit(p, EX_NOUSER)
        self.assertIn("  tls: none (plain text)\n", out)
        self.assertIn("  auth: none configured (no username)\n", out)
        self.assertIn("FAILED at vrfy: vrfy <nobody@example.org>: 550 5.1.1", out)


if __name__ == "__main__":
    main()
