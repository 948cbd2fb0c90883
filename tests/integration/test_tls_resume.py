"""TLS session resumption across runs: a session verified in one delivery
is kept in QUEUE_DIR/tls/<smarthost> and resumed by the next, which the
server itself reports (aiosmtpd's ssl_object.session_reused, Postfix's
log). Any change to what verification depends on, a damaged cache file or
a server that will not resume means a full handshake, and mail still
goes; the cache never lets a changed pin or CA through."""
import os
import pwd
import shutil
import ssl
import stat
import struct
import time
import unittest

from harness import main
from test_relay import RelayTest, certs, MSG, USER
import postfix

HEADER = 8 + 32 + 8 + 4 + 12  # magic, settings digest, verified at, length, IV
TAG = 16                      # AES-256-GCM


class ResumeTest(RelayTest):

    def cache_path(self, name="main"):
        return os.path.join(self.spool.queue, "tls", name)

    def key_path(self):
        return os.path.join(self.spool.queue, "tls", ".key")

    def deliver(self, server=None, verbose=False):
        """Queue one message and run the queue; it must arrive."""
        server = server or self.server
        before = len(server.messages)
        self.queue()
        p = self.run_queue("-v") if verbose else self.run_queue()
        self.assertEqual(len(server.messages), before + 1, p.stderr.decode())
        self.assertEqual(self.spool.ids(), [])
        return p.stderr.decode()

    def resumed(self, server=None):
        """The server's view of the latest TLS connection."""
        return (server or self.server).handler.tls_sessions[-1]["resumed"]

    def assertFull(self, server=None):
        self.assertFalse(self.resumed(server), "session was resumed")

    def assertResumed(self, server=None):
        self.assertTrue(self.resumed(server), "full handshake")


class Resumption(ResumeTest):

    def test_second_delivery_resumes(self):
        self.configure()
        err = self.deliver(verbose=True)
        self.assertFull()
        self.assertIn("full handshake", err)
        self.assertIn("TLS session cache %s: saved" % self.cache_path(), err)
        st = os.stat(self.cache_path())
        self.assertTrue(stat.S_ISREG(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(self.cache_path())).st_mode),
                         0o770)
        self.assertLessEqual(st.st_size, 16384)
        with open(self.cache_path(), "rb") as f:
            self.assertEqual(f.read(8), b"RQTLSS2\n")
        key = os.stat(self.key_path())
        self.assertEqual((key.st_size, stat.S_IMODE(key.st_mode)), (32, 0o640))
        err = self.deliver(verbose=True)
        self.assertResumed()
        self.assertRegex(err, r"TLS with 127\.0\.0\.1: TLSv1\.3 \S+, session resumed")
        self.deliver()
        self.assertResumed()
        self.assertEqual([m.auth for m in self.server.messages], [USER] * 3)

    def test_smtps(self):
        server = self.start_server("smtps")
        self.configure(smarthosts=self.smarthost_conf(server, tls="smtps"))
        self.deliver(server)
        self.assertFull(server)
        self.deliver(server)
        self.assertResumed(server)

    def test_tls12(self):
        server = self.start_server("starttls", max_tls=ssl.TLSVersion.TLSv1_2)
        self.configure(smarthosts=self.smarthost_conf(server))
        self.deliver(server)
        self.assertFull(server)
        self.assertEqual(server.handler.tls_sessions[-1]["version"], "TLSv1.2")
        self.deliver(server)
        self.assertResumed(server)

    def test_no_cache_when_turned_off(self):
        self.configure(smarthosts=self.smarthost_conf(tls_session_cache="no"))
        self.deliver()
        self.deliver()
        self.assertEqual([s["resumed"] for s in self.server.handler.tls_sessions],
                         [False, False])
        self.assertFalse(os.path.exists(os.path.dirname(self.cache_path())))

    def test_selftest_shows_it(self):
        self.configure()
        os.mkdir(self.spool.queue, 0o770)    # --test never creates the spool
        for want in ("full handshake", "resumed"):
            p = self.spool.run(["--test"], argv0="relayq")
            self.assertExit(p, 0)
            self.assertIn("  tls session: %s\n" % want, p.stdout.decode())
        self.assertResumed()
        # The second connection of each test (with AUTH) resumed too.
        self.assertEqual([s["resumed"] for s in self.server.handler.tls_sessions],
                         [False, True, True, True])


class Settings(ResumeTest):
    """Each change to what verification depends on: a full handshake."""

    def primed(self, **keys):
        self.configure(smarthosts=self.smarthost_conf(**keys))
        self.deliver()
        self.deliver()
        self.assertResumed()

    def test_changes_force_full_handshake(self):
        c = certs()
        ca_copy = os.path.join(self.spool.root, "ca-copy.pem")
        shutil.copyfile(c.ca, ca_copy)
        pin = '"%s"' % c.fingerprint(c.server)
        changes = [
            ("CA file", dict(tls_ca_file='"%s"' % ca_copy)),
            ("pin", dict(tls_fingerprint=pin)),
            ("host", dict(host='"localhost"')),
            ("minimum version", dict(tls_min_version='"1.3"')),
            ("verification off", dict(tls_verify="no")),
            ("client certificate", dict(tls_cert_file='"%s"' % c.wrong,
                                        tls_key_file='"%s"' % c.wrong_key)),
        ]
        self.primed()
        for what, keys in changes:
            with self.subTest(what):
                self.configure(smarthosts=self.smarthost_conf(**keys))
                self.deliver()
                self.assertFull()
                self.deliver()
                self.assertResumed()
                self.configure()
                self.deliver()
                self.assertFull()

    def test_ca_file_rewritten_in_place(self):
        c = certs()
        ca_copy = os.path.join(self.spool.root, "ca-copy.pem")
        shutil.copyfile(c.ca, ca_copy)
        self.primed(tls_ca_file='"%s"' % ca_copy)
        with open(ca_copy, "ab") as f:    # same name, new contents
            f.write(b"\n")
        self.deliver()
        self.assertFull()

    def test_changed_pin_is_still_checked(self):
        c = certs()
        self.primed(tls_fingerprint='"%s"' % c.fingerprint(c.server))
        self.configure(smarthosts=self.smarthost_conf(
            tls_fingerprint='"sha256:%s"' % ("ab" * 32)))
        qid = self.queue()
        self.run_queue()
        # The certificate itself was checked against the new pin.
        self.assertIn("fingerprint mismatch (got %s)" % c.fingerprint(c.server),
                      self.spool.envelope(qid)["last-error"])
        self.assertEqual(len(self.server.messages), 2)

    def test_changed_ca_is_still_checked(self):
        c = certs()
        self.primed()
        self.configure(smarthosts=self.smarthost_conf(tls_ca_file='"%s"' % c.selfsigned))
        qid = self.queue()
        self.run_queue()
        self.assertIn("unknown certificate authority",
                      self.spool.envelope(qid)["last-error"])
        self.assertEqual(len(self.server.messages), 2)


class DamagedCache(ResumeTest):
    """Whatever is in the cache file, mail goes; only a full handshake is lost."""

    def damage(self, how):
        path = self.cache_path()
        with open(path, "rb") as f:
            good = f.read()
        os.unlink(path)
        if how == "empty":
            open(path, "wb").close()
        elif how == "truncated":
            with open(path, "wb") as f:
                f.write(good[:len(good) // 2])
        elif how == "header only":
            with open(path, "wb") as f:
                f.write(good[:HEADER])
        elif how == "bad magic":
            with open(path, "wb") as f:
                f.write(b"X" + good[1:])
        elif how == "other digest":
            with open(path, "wb") as f:
                f.write(good[:8] + bytes([good[8] ^ 1]) + good[9:])
        elif how == "sealed bytes flipped":
            with open(path, "wb") as f:
                f.write(good[:HEADER + 20] + bytes(b ^ 0x5a for b in good[HEADER + 20:HEADER + 40])
                        + good[HEADER + 40:])
        elif how == "header changed":       # authenticated with the session
            old = int(time.time()) - 2 * 86400
            with open(path, "wb") as f:
                f.write(good[:40] + struct.pack(">Q", old) + good[48:])
        elif how == "new key":
            os.unlink(self.key_path())
            with open(path, "wb") as f:
                f.write(good)
        elif how == "trailing garbage":
            with open(path, "wb") as f:
                f.write(good + b"\0" * 7)
        elif how == "length too big":
            with open(path, "wb") as f:
                f.write(good[:48] + struct.pack(">I", len(good)) + good[HEADER:])
        elif how == "oversized":
            with open(path, "wb") as f:
                f.write(good + b"\0" * (16385 - len(good)))
        elif how == "huge":
            with open(path, "wb") as f:
                f.truncate(1 << 30)             # sparse: never read
        elif how == "symlink":
            target = os.path.join(self.spool.root, "elsewhere")
            with open(target, "wb") as f:
                f.write(good)
            os.symlink(target, path)
        elif how == "fifo":
            os.mkfifo(path, 0o640)
        elif how == "directory":
            os.mkdir(path)
        else:
            raise ValueError(how)

    CASES = ("empty", "truncated", "header only", "bad magic", "other digest",
             "sealed bytes flipped", "header changed", "new key", "trailing garbage",
             "length too big", "oversized", "huge", "symlink", "fifo")

    def test_damage_means_full_handshake(self):
        self.configure()
        self.deliver()
        for how in self.CASES:
            with self.subTest(how):
                self.damage(how)
                err = self.deliver(verbose=True)
                self.assertFull()
                self.assertIn("TLS session cache %s: " % self.cache_path(), err)
                # And the cache is whole again.
                self.assertTrue(stat.S_ISREG(os.lstat(self.cache_path()).st_mode))
                self.deliver()
                self.assertResumed()

    def test_untrusted_key_is_replaced(self):
        """A key others could read, or of the wrong size: a new one, and
        the session sealed with the old one is not used."""
        self.configure()
        for how in ("readable by everyone", "short"):
            with self.subTest(how):
                self.deliver()
                with open(self.key_path(), "rb") as f:
                    old = f.read()
                if how == "short":
                    with open(self.key_path(), "wb") as f:
                        f.write(old[:16])
                else:
                    os.chmod(self.key_path(), 0o644)
                err = self.deliver(verbose=True)
                self.assertFull()
                self.assertIn("new key", err)
                with open(self.key_path(), "rb") as f:
                    self.assertNotEqual(f.read(), old)
                self.assertEqual(stat.S_IMODE(os.stat(self.key_path()).st_mode), 0o640)
                self.deliver()
                self.assertResumed()

    @unittest.skipUnless(os.geteuid() == 0, "needs root to give files away")
    def test_ownership(self):
        """The key must be made by a trusted user; a session file is good
        whoever wrote it, since only the key opens it."""
        nobody = pwd.getpwnam("nobody")
        self.configure()
        self.deliver()
        os.chown(self.cache_path(), nobody.pw_uid, nobody.pw_gid)
        self.deliver()
        self.assertResumed()
        os.chown(self.key_path(), nobody.pw_uid, nobody.pw_gid)
        err = self.deliver(verbose=True)
        self.assertFull()
        self.assertIn("untrusted user", err)
        self.assertEqual(os.stat(self.key_path()).st_uid, 0)

    def test_directory_in_the_way(self):
        self.configure()
        self.deliver()
        self.damage("directory")
        self.deliver()
        self.assertFull()
        self.deliver()
        self.assertFull()

    def test_unreadable_and_unwritable_cache(self):
        self.configure()
        self.deliver()
        os.chmod(self.cache_path(), 0)
        os.chmod(os.path.dirname(self.cache_path()), 0o500)
        try:
            self.deliver()
            if os.geteuid() != 0:          # root reads and writes anyway
                self.assertFull()
                self.deliver()
                self.assertFull()
        finally:
            os.chmod(os.path.dirname(self.cache_path()), 0o770)


class RefusingServer(ResumeTest):

    def test_handshake_failure_retries_without_the_session(self):
        """The cached session offered and the handshake failing (here: a
        plain server where TLS was): the session is forgotten and the
        connection tried once more at once with a full handshake."""
        server = self.start_server("smtps")
        self.configure(smarthosts=self.smarthost_conf(server, tls="smtps"))
        self.deliver(server)
        port = server.port
        server.stop()
        self.servers.remove(server)
        plain = self.start_server("none", port=port)
        qid = self.queue()
        p = self.run_queue("-v")
        err = p.stderr.decode()
        self.assertEqual(err.count("trying again without the cached TLS session"), 1, err)
        self.assertEqual(err.count("CONNECT -> TLS handshake"), 2, err)
        self.assertFalse(os.path.exists(self.cache_path()))
        self.assertEqual(plain.messages, [])
        self.assertEqual(self.spool.ids(), [qid])
        plain.stop()
        self.servers.remove(plain)
        server = self.start_server("smtps", port=port)
        self.spool.run(["-qf"])
        self.assertEqual(len(server.messages), 1)
        self.assertFull(server)

    def test_server_without_tickets(self):
        server = self.start_server("starttls", tickets=False)
        self.configure(smarthosts=self.smarthost_conf(server))
        self.deliver(server)
        self.deliver(server)
        self.assertEqual([s["resumed"] for s in server.handler.tls_sessions],
                         [False, False])
        self.assertFalse(os.path.exists(self.cache_path()))

    def test_server_forgot_its_keys(self):
        """A restarted server cannot read the old ticket: full handshake."""
        self.configure()
        self.deliver()
        self.deliver()
        self.assertResumed()
        port = self.server.port
        self.server.stop()
        self.servers.remove(self.server)
        self.server = self.start_server("starttls", port=port)
        self.deliver()
        self.assertFull()
        self.deliver()
        self.assertResumed()

    def test_restarted_without_tickets(self):
        """The old ticket is refused and no new one comes: the file goes."""
        self.configure()
        self.deliver()
        port = self.server.port
        self.server.stop()
        self.servers.remove(self.server)
        self.server = self.start_server("starttls", port=port, tickets=False)
        err = self.deliver(verbose=True)
        self.assertFull()
        self.assertIn("TLS session cache %s: removed" % self.cache_path(), err)
        self.assertFalse(os.path.exists(self.cache_path()))
        self.deliver()
        self.assertFull()


class WithPostfix(ResumeTest):
    """Postfix issues TLS 1.3 tickets by default (tlsmgr); at loglevel 2 it
    logs each reuse."""

    @classmethod
    def setUpClass(cls):
        why = postfix.unavailable()
        if why:
            raise unittest.SkipTest(why)
        cls.pf = postfix.Postfix(certs(), extra_main_cf="smtpd_tls_loglevel = 2\n")
        try:
            cls.pf.start()
        except postfix.Unavailable as e:
            raise unittest.SkipTest(str(e))

    @classmethod
    def tearDownClass(cls):
        cls.pf.stop()

    def pf_conf(self, tls, port):
        return ("smarthost pf {\n host = \"127.0.0.1\"\n port = %d\n tls = %s\n"
                " tls_ca_file = \"%s\"\n username = \"%s\"\n password = \"%s\"\n"
                " timeout = 20s\n}\n" % (port, tls, certs().ca, self.pf.user,
                                         self.pf.password))

    def reuses(self):
        return self.pf.log().count("Reusing old session")

    def check(self, tls, port):
        self.configure(smarthosts=self.pf_conf(tls, port))
        before = self.reuses()
        for i in range(3):
            self.queue()
            self.run_queue()
            self.assertEqual(self.spool.ids(), [])
        self.assertTrue(os.path.exists(self.cache_path("pf")))
        log = self.pf.wait_log(lambda text: text.count("Reusing old session") >= before + 2)
        self.assertEqual(log.count("Reusing old session") - before, 2, log[-3000:])

    def test_starttls(self):
        self.check("starttls", self.pf.starttls_port)

    def test_smtps(self):
        self.check("smtps", self.pf.smtps_port)


if __name__ == "__main__":
    main()
