"""Resource exhaustion: a full (tiny tmpfs) spool, no inodes left, too few
file descriptors, a read-only spool, a file where a queue directory should
be, and an error injected into every syscall of the enqueue path.

The rules: a submission that cannot be queued exits 75 (EX_TEMPFAIL) or 73
(EX_CANTCREAT) with a message saying why, and leaves nothing behind; a
queue run that cannot record its outcome leaves the queued message as it
was; what was queued before is delivered exactly once when the resource
comes back.
"""
import errno
import os
import subprocess
import unittest

from common import (RelSpool, spool_config, start_server, make_message, copies, dsns,
                    wait_idle, figure, outcome, limit_nofile, run, mounted_tmpfs, umount,
                    IS_ROOT, SENDER, RCPT)
from test_crash import STRACE, parse_trace, points, NOFILE

TEMP_EXITS = (73, 75)


class Base(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.server = start_server("none")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def setUp(self):
        self.server.handler.clear_faults()
        self.server.handler.rcpt_replies.clear()
        del self.server.handler.messages[:]
        self.spool = RelSpool()
        self.mounts = []
        conf, sh = spool_config(self.server, tls="none", timeout="5s")
        self.spool.write_config(conf, sh)

    def tearDown(self):
        for m in reversed(self.mounts):
            umount(m)
        self.spool.cleanup()

    def submit(self, tag, size=0, **kw):
        mid, msg = make_message(tag, size=size)
        p = run(self.spool, ["-odq", "-i", "-f", SENDER, RCPT], input=msg, **kw)
        return mid, p

    def assertRefused(self, p, fragment=None, exits=TEMP_EXITS):
        self.assertIn(p.returncode, exits, p.stderr)
        err = p.stderr.decode(errors="replace")
        self.assertTrue(err.strip(), "no message on stderr")
        if fragment:
            self.assertIn(fragment, err)

    def assertNothingLeft(self, before):
        """The queue holds exactly what it held before."""
        self.assertEqual(self.spool.snapshot(), before)

    def deliver_all(self, *mids):
        self.spool.run_until_empty(5)
        wait_idle(self.server)
        for mid in mids:
            self.assertEqual(len(copies(self.server, mid)), 1, mid)
        self.assertEqual(self.spool.ids(), [])
        self.assertEqual(self.spool.listdir("corrupt"), [])

    def tiny_spool(self, options="size=64k"):
        os.mkdir(self.spool.queue)
        if not mounted_tmpfs(self.spool.queue, options):
            self.skipTest("cannot mount a tmpfs (needs root)")
        self.mounts.append(self.spool.queue)

    def fill(self):
        """Take every free byte of the spool's filesystem; returns the path."""
        path = os.path.join(self.spool.queue, "filler")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT)
        for chunk in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"x" * chunk)
            except OSError as e:
                self.assertEqual(e.errno, errno.ENOSPC)
        os.close(fd)
        return path


class FullDisk(Base):

    def test_submission_that_does_not_fit(self):
        self.tiny_spool()
        mid0, p = self.submit("fits")
        self.assertEqual(p.returncode, 0, p.stderr)
        before = self.spool.snapshot()
        mid1, p = self.submit("too-big", size=200 * 1024)
        self.assertRefused(p, "No space left on device")
        self.assertNothingLeft(before)
        self.deliver_all(mid0)
        self.assertEqual(copies(self.server, mid1), [])
        figure("exhaustion", submitted=1, delivered=1, refused=1, duplicates=0, lost=0)
        outcome("exhaustion", "64 KiB tmpfs, 200 KiB message",
                "exit %d \"%s\", nothing left in the queue"
                % (p.returncode, p.stderr.decode().strip()[:70]))

    def test_filling_up_one_message_at_a_time(self):
        """Until the spool is full: each message is either queued whole
        (exit 0) or refused with nothing left behind."""
        self.tiny_spool()
        queued, refused = [], 0
        for i in range(40):
            before = self.spool.snapshot()
            mid, p = self.submit("fill-%d" % i, size=1500 * (i % 4))
            if p.returncode == 0:
                queued.append(mid)
            else:
                self.assertRefused(p)
                self.assertNothingLeft(before)
                refused += 1
        self.assertGreater(refused, 0, "the spool never filled")
        self.assertEqual(self.spool.consistency(), [])
        self.deliver_all(*queued)
        figure("exhaustion", submitted=len(queued), delivered=len(queued), refused=refused,
               duplicates=0, lost=0)
        outcome("exhaustion", "64 KiB tmpfs filled by 40 submissions",
                "%d queued and delivered once, %d refused with nothing left behind"
                % (len(queued), refused))

    def test_no_inodes_left(self):
        self.tiny_spool("size=1m,nr_inodes=24")
        queued, refused = [], 0
        for i in range(20):
            before = self.spool.snapshot()
            mid, p = self.submit("inode-%d" % i)
            if p.returncode == 0:
                queued.append(mid)
            else:
                self.assertRefused(p, "No space left on device")
                self.assertNothingLeft(before)
                refused += 1
        self.assertGreater(refused, 0)
        self.deliver_all(*queued)
        figure("exhaustion", submitted=len(queued), delivered=len(queued), refused=refused,
               duplicates=0, lost=0)
        outcome("exhaustion", "tmpfs with 24 inodes", "%d queued and delivered once, %d "
                "refused with nothing left behind" % (len(queued), refused))

    def test_state_update_cannot_be_written(self):
        self.tiny_spool()
        mid, p = self.submit("update")
        self.assertEqual(p.returncode, 0, p.stderr)
        filler = self.fill()
        before = self.spool.snapshot()
        self.server.handler.rcpt_replies[RCPT] = "450 4.2.1 mailbox busy"
        p = self.spool.run(["-q"])
        self.assertEqual(p.returncode, 75, p.stderr)
        self.assertIn(b"No space left on device", p.stderr)
        self.assertNothingLeft(before)
        os.unlink(filler)
        self.server.handler.rcpt_replies.clear()
        self.deliver_all(mid)
        figure("exhaustion", submitted=1, delivered=1, duplicates=0, lost=0)
        outcome("exhaustion", "full spool, delivery deferred (state update fails)",
                "exit 75, envelope unchanged; delivered once after space returns")

    def test_bounce_cannot_be_written(self):
        self.tiny_spool()
        mid, p = self.submit("bounce")
        self.assertEqual(p.returncode, 0, p.stderr)
        [qid] = self.spool.ids()
        filler = self.fill()
        before = self.spool.snapshot()
        self.server.handler.rcpt_replies[RCPT] = "550 5.1.1 no such user"
        p = self.spool.run(["-q"])
        self.assertEqual(p.returncode, 75, p.stderr)
        self.assertIn(b"cannot queue the bounce", p.stderr)
        self.assertNothingLeft(before)
        os.unlink(filler)
        self.spool.run_until_empty(5)
        wait_idle(self.server)
        self.assertEqual(copies(self.server, mid), [])
        self.assertEqual(len(dsns(self.server)), 1)
        self.assertEqual(self.spool.listdir("failed"), [qid + ".data", qid + ".env"])
        self.assertEqual(self.spool.listdir("corrupt"), [])
        figure("exhaustion", submitted=1, bounced=1, delivered=0, duplicates=0, lost=0)
        outcome("exhaustion", "full spool, permanent failure (bounce cannot be written)",
                "exit 75, original untouched; one bounce once space returns")


class Descriptors(Base):

    def test_submission_with_few_descriptors(self):
        queued, refused, codes = [], 0, set()
        for n in range(4, 16):
            before = self.spool.snapshot()
            mid, p = self.submit("fd-%d" % n, preexec_fn=limit_nofile(n))
            if p.returncode == 0:
                queued.append(mid)
            else:
                # 71 (EX_OSERR): the front end could not make the socket
                # pair to its privilege-separated child.
                self.assertRefused(p, "Too many open files", TEMP_EXITS + (71,))
                self.assertNothingLeft(before)
                refused += 1
                codes.add(p.returncode)
        self.assertGreater(refused, 0)
        self.assertEqual(self.spool.consistency(), [])
        self.deliver_all(*queued)
        figure("exhaustion", submitted=len(queued), delivered=len(queued), refused=refused,
               duplicates=0, lost=0)
        outcome("exhaustion", "ulimit -n 4..15, submission",
                "%d queued and delivered once, %d refused (exit %s, \"Too many open "
                "files\"), nothing left behind"
                % (len(queued), refused, "/".join(map(str, sorted(codes)))))

    def test_queue_run_with_few_descriptors(self):
        mids = [self.submit("run-fd-%d" % i)[0] for i in range(3)]
        for n in range(4, 16):
            run(self.spool, ["-qf"], preexec_fn=limit_nofile(n))
            self.assertEqual(self.spool.consistency(), [], "ulimit -n %d" % n)
            wait_idle(self.server)
            for mid in mids:
                self.assertLessEqual(len(copies(self.server, mid)), 1)
        self.deliver_all(*mids)
        figure("exhaustion", submitted=3, delivered=3, duplicates=0, lost=0)
        outcome("exhaustion", "ulimit -n 4..15, queue runs",
                "errors reported, queue intact, each message delivered once")


class Unwritable(Base):

    def read_only(self):
        if not IS_ROOT:
            self.skipTest("needs root for a read-only bind mount")
        q = self.spool.queue
        if subprocess.run(["mount", "--bind", q, q]).returncode != 0:
            self.skipTest("cannot bind-mount")
        self.mounts.append(q)
        if subprocess.run(["mount", "-o", "remount,ro,bind", q]).returncode != 0:
            self.skipTest("cannot remount read-only")

    def test_read_only_spool_refuses_submission(self):
        mid0, p = self.submit("before-ro")
        self.assertEqual(p.returncode, 0)
        before = self.spool.snapshot()
        self.read_only()
        mid1, p = self.submit("ro")
        self.assertEqual(p.returncode, 73, p.stderr)
        self.assertIn(b"Read-only file system", p.stderr)
        self.assertNothingLeft(before)
        umount(self.spool.queue)
        self.mounts.clear()
        self.deliver_all(mid0)
        figure("exhaustion", submitted=1, delivered=1, refused=1, duplicates=0, lost=0)
        outcome("exhaustion", "read-only spool, submission",
                "exit 73 \"Read-only file system\", nothing written")

    def test_read_only_spool_queue_run_sends_nothing_twice(self):
        """A queue run on a read-only spool could deliver the message but not
        remove env/ID (EROFS), so every later run delivered it again. Fixed:
        runner_run refuses to start on a spool it cannot write."""
        mid, p = self.submit("ro-run")
        self.assertEqual(p.returncode, 0)
        self.read_only()
        for _ in range(3):
            self.spool.run(["-qf"])
        wait_idle(self.server)
        umount(self.spool.queue)
        self.mounts.clear()
        self.spool.run_until_empty(3)
        wait_idle(self.server)
        self.assertEqual(len(copies(self.server, mid)), 1)

    def test_file_where_a_queue_directory_should_be(self):
        mid0, p = self.submit("before-file")
        self.assertEqual(p.returncode, 0)
        tmp = os.path.join(self.spool.queue, "tmp")
        os.rmdir(tmp)
        with open(tmp, "w") as f:
            f.write("not a directory\n")
        before = self.spool.snapshot()
        mid1, p = self.submit("file")
        self.assertRefused(p, "Not a directory")
        p2 = self.spool.run(["-q"])
        self.assertNotEqual(p2.returncode, 0)
        self.assertIn(b"Not a directory", p2.stderr)
        self.assertNothingLeft(before)
        os.unlink(tmp)
        os.mkdir(tmp, 0o770)
        self.deliver_all(mid0)
        self.assertEqual(copies(self.server, mid1), [])
        figure("exhaustion", submitted=1, delivered=1, refused=1, duplicates=0, lost=0)
        outcome("exhaustion", "a file where queue/tmp should be",
                "submission exit %d, queue run exit %d, both \"Not a directory\"; "
                "nothing lost" % (p.returncode, p2.returncode))


ERRNO_FOR = {"write": "ENOSPC", "fsync": "EIO", "fdatasync": "EIO", "openat": "ENOSPC",
             "renameat2": "ENOSPC", "rename": "ENOSPC", "link": "ENOSPC", "mkdir": "ENOSPC",
             "fchmod": "EPERM", "flock": "ENOLCK", "read": "EIO"}
# Not close(): strace makes an injected error skip the call, so the
# descriptor stays open (on Linux a failing close still frees it) and the
# front end's parent waits for an EOF from its child that never comes.


@unittest.skipUnless(STRACE, "strace with fault injection not available")
class InjectedErrors(Base):
    """Every syscall of the enqueue path fails once (ENOSPC, EIO, ...): exit
    0 with the message whole in the queue, or a refusal with nothing left."""

    def test_error_at_every_enqueue_syscall(self):
        """An error in the parser child after the parent committed the
        message (EIO on its read of the parent's final "size" message) made
        sendmail exit non-zero although data/ID and env/ID were queued; a
        caller would retry and send it twice. Fixed: once the parent has
        committed, the exit status is 0 (main.c do_submit)."""
        self.submit("first")
        trace = os.path.join(self.spool.root, "enum.trace")
        mid, msg = make_message("enum")
        p = run(self.spool, ["-odq", "-i", "-f", SENDER, RCPT], input=msg,
                prefix=["strace", "-f", "-q", "-o", trace], preexec_fn=limit_nofile(NOFILE))
        self.assertEqual(p.returncode, 0, p.stderr)
        calls = parse_trace(trace, with_pid=True)
        start = next(i for i, (p_, n, a) in enumerate(calls)
                     if n == "mkdir" and "/queue\"" in a)
        pts = [pt for pt in points(calls, start) if pt[0] in ERRNO_FOR]
        self.spool.run_until_empty(3)
        problems, refused, accepted = [], 0, 0
        for name, n, args in pts:
            where = "%s #%d -> %s (%s)" % (name, n, ERRNO_FOR[name], args[:70])
            before = self.spool.snapshot()
            mid, msg = make_message("inject-%s-%d" % (name, n))
            p = run(self.spool, ["-odq", "-i", "-f", SENDER, RCPT], input=msg,
                    prefix=["strace", "-f", "-q", "-o", "/dev/null", "-e",
                            "inject=%s:error=%s:when=%d" % (name, ERRNO_FOR[name], n)],
                    preexec_fn=limit_nofile(NOFILE))
            if p.returncode == 0:
                accepted += 1
                bad = self.spool.consistency()
                if len(self.spool.ids()) != 1 or bad:
                    problems.append("%s: exit 0 but queue %s %s" % (where, self.spool.ids(), bad))
            else:
                refused += 1
                # Any refusal with a message: the injection may also hit the
                # privilege-separated child (even its dynamic loader: 127).
                if not p.stderr.strip():
                    problems.append("%s: exit %d %r" % (where, p.returncode, p.stderr))
                left = {k for k in self.spool.snapshot() if k not in before}
                if left:
                    problems.append("%s: refused but left %s" % (where, sorted(left)))
            self.spool.run_until_empty(3)
            wait_idle(self.server)
            got = len(copies(self.server, mid))
            if got != (1 if p.returncode == 0 else 0):
                problems.append("%s: exit %d, %d copies" % (where, p.returncode, got))
        self.assertEqual(problems, [])
        figure("exhaustion", submitted=accepted, delivered=accepted, refused=refused,
               duplicates=0, lost=0, injected_errors=len(pts))
        outcome("exhaustion", "error injected into each of %d enqueue syscalls" % len(pts),
                "%d refused (non-zero exit, message, nothing left), %d survived the error "
                "and were delivered once" % (refused, accepted))


if __name__ == "__main__":
    unittest.main(verbosity=2)
