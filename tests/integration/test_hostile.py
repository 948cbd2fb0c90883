"""A hostile smarthost: relayq must survive whatever a server on the other
end of the connection sends, never hand it the password, and keep the mail
queued with a clear, escaped error.

The server here is our own (not aiosmtpd): a loopback socket that plays one
scripted dialogue per test, with real TLS (the ssl module, certificates from
certs.py), and records every byte it receives (after STARTTLS: decrypted).
Every scripted misbehaviour comes before AUTH would be sent, so a client
that carried on regardless would be caught sending it.

Also here: one test per limit key (max_reply_lines, max_reply_line,
max_smtp_line) showing that the configured value is the one enforced.
"""
import base64
import re
import socket
import ssl
import threading
import time

from harness import SpoolTest, main, VALGRIND
from certs import Certs

CERTS = None
USER, PASSWORD = "hostile-user", "Hostile-Pa55word!"
MSG = b"From: a@example.net\nTo: rcpt@example.org\nSubject: hostile\n\nbody\n"
# Control bytes that must never reach mailq, the log or the envelope raw.
RAW_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
IO_TIMEOUT = 150 if VALGRIND else 30


def certs():
    global CERTS
    if CERTS is None:
        CERTS = Certs()
    return CERTS


def secrets():
    """Everything that would give the password away on the wire."""
    b64 = lambda b: base64.b64encode(b)
    return [PASSWORD.encode(), b64(PASSWORD.encode()),
            b64(b"\0" + USER.encode() + b"\0" + PASSWORD.encode()),
            b64(USER.encode() + b"\0" + USER.encode() + b"\0" + PASSWORD.encode())]


class Peer:
    """One accepted connection: line reads, raw sends, STARTTLS."""

    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.sock.settimeout(IO_TIMEOUT)
        self.buf = b""

    def send(self, data):
        """False once the client has gone (the way every loop here ends)."""
        try:
            self.sock.sendall(data)
            return True
        except (OSError, ValueError):
            return False

    def line(self):
        """One line from the client (with its CRLF), b"" at EOF."""
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except (OSError, ValueError):
                chunk = b""
            if not chunk:
                rest, self.buf = self.buf, b""
                return rest
            self.server.record(chunk)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def expect(self, verb):
        line = self.line()
        if not line.upper().startswith(verb.encode()):
            raise AssertionError("expected %s, got %r" % (verb, line))
        return line

    def starttls(self, cert, key):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        self.sock = ctx.wrap_socket(self.sock, server_side=True)
        self.sock.settimeout(IO_TIMEOUT)

    def drain(self):
        """Whatever the client still says is recorded; QUIT is answered."""
        while True:
            line = self.line()
            if not line:
                return
            if line.upper().startswith(b"QUIT"):
                self.send(b"221 2.0.0 bye\r\n")
                return
            self.send(b"502 5.5.1 not here\r\n")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class HostileServer:
    """Listens on 127.0.0.1; each connection runs script(peer)."""

    def __init__(self, script):
        self.script = script
        self.received = bytearray()
        self.connections = 0
        self.errors = []
        self.lock = threading.Lock()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.threads = []
        self.stopping = False
        self.accepting = threading.Thread(target=self._accept, daemon=True)
        self.accepting.start()

    def record(self, data):
        with self.lock:
            self.received += data

    def _accept(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            if self.stopping:
                sock.close()
                return
            with self.lock:
                self.connections += 1
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, sock):
        peer = Peer(self, sock)
        try:
            self.script(peer)
            peer.drain()
        except (OSError, ssl.SSLError):
            pass                # the client hung up on us: expected
        except Exception as e:  # a broken script: fail the test, loudly
            self.errors.append(repr(e))
        finally:
            peer.close()

    def stop(self):
        # Wake the accept thread and wait for it before closing: a thread
        # still on its way into accept() would otherwise take the next
        # test's listener, which reuses the descriptor number.
        self.stopping = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.accepting.join(IO_TIMEOUT)
        self.listener.close()
        for t in self.threads:
            t.join(IO_TIMEOUT)


# --- pieces of dialogue ----------------------------------------------------

def lines(*ls):
    return b"".join(l + b"\r\n" for l in ls)


def plain_ehlo(peer, reply=None):
    """Greeting and first EHLO; STARTTLS and AUTH offered in clear (bait)."""
    peer.send(b"220 hostile.test ESMTP\r\n")
    peer.expect("EHLO")
    peer.send(reply or lines(b"250-hostile.test", b"250-STARTTLS",
                             b"250 AUTH PLAIN LOGIN"))


def to_tls(peer, cert=None, key=None):
    """Through STARTTLS to the EHLO after it; the caller answers that EHLO."""
    plain_ehlo(peer)
    peer.expect("STARTTLS")
    peer.send(b"220 2.0.0 go ahead\r\n")
    peer.starttls(cert or certs().server, key or certs().server_key)
    peer.expect("EHLO")


def endless(peer, line):
    """Continuation lines until the client goes away (bounded all the same)."""
    deadline = time.monotonic() + IO_TIMEOUT
    chunk = line * 64
    while time.monotonic() < deadline and peer.send(chunk):
        pass
    raise OSError("the client went away")


def transaction(peer, ehlo_reply, tls=False):
    """A server that behaves: optional AUTH, one message, QUIT."""
    peer.send(b"220 friendly.test ESMTP\r\n")
    peer.expect("EHLO")
    peer.send(ehlo_reply)
    while True:
        line = peer.line()
        verb = line[:4].upper()
        if not line or verb == b"QUIT":
            peer.send(b"221 2.0.0 bye\r\n")
            return
        if verb == b"STAR":
            peer.send(b"220 2.0.0 go ahead\r\n")
            peer.starttls(certs().server, certs().server_key)
            peer.expect("EHLO")
            peer.send(lines(b"250-friendly.test", b"250 AUTH PLAIN"))
        elif verb == b"AUTH":
            peer.send(b"235 2.7.0 ok\r\n")
        elif verb == b"DATA":
            peer.send(b"354 go ahead\r\n")
            while peer.line() not in (b".\r\n", b""):
                pass
            peer.send(b"250 2.0.0 queued\r\n")
        else:
            peer.send(b"250 2.0.0 ok\r\n")


# --- the tests ---------------------------------------------------------------

class HostileTest(SpoolTest):
    """Queue one message, run the queue against the script, check that
    relayq survived, kept the mail and the secret, and says why."""

    def setUp(self):
        super().setUp()
        self.server = None

    def tearDown(self):
        if self.server is not None:
            self.server.stop()
        super().tearDown()

    def configure(self, script, extra="", tls="starttls", auth=True, **keys):
        self.server = HostileServer(script)
        conf = {"host": '"127.0.0.1"', "port": str(self.server.port), "tls": tls,
                "tls_ca_file": '"%s"' % certs().ca, "timeout": "20s"}
        if auth:
            conf.update(username='"%s"' % USER, password='"%s"' % PASSWORD)
        conf.update(keys)
        body = "".join(" %s = %s\n" % (k, v) for k, v in conf.items() if v is not None)
        self.spool.write_config(extra, "smarthost hostile {\n%s}\n" % body)

    def assertSurvived(self, p):
        """Normal exit, no signal, nothing from the sanitizers."""
        self.assertIn(p.returncode, (0, 75), "exit %d (negative: a signal)\n%r"
                      % (p.returncode, p.stderr))
        for word in (b"Sanitizer", b"runtime error:", b"SUMMARY:"):
            self.assertNotIn(word, p.stderr)

    def attack(self, script, fragment, **kw):
        """The whole check for one hostile script; returns the error text."""
        self.configure(script, **kw)
        p = self.submit(["-odq", "-i", "rcpt@example.org"], MSG)
        self.assertEqual(p.returncode, 0, p.stderr)
        [qid] = self.spool.ids()
        # -v: the transcript of what the server sent goes to the log too.
        run = self.spool.run(["-q", "-v"])
        self.assertSurvived(run)
        self.assertEqual(self.server.errors, [])
        self.assertGreaterEqual(self.server.connections, 1, run.stderr)

        got = bytes(self.server.received)
        self.assertNotIn(b"AUTH", got.upper(), got[-300:])
        self.assertNotIn(b"MAIL FROM", got.upper())
        self.assertNotIn(b"Subject: hostile", got)
        for s in secrets():
            self.assertNotIn(s, got)
        for s in secrets():
            self.assertNotIn(s, run.stderr)

        self.assertEqual(self.spool.ids(), [qid])
        self.assertEqual(self.spool.listdir("failed"), [])
        env = self.spool.envelope(qid)
        self.assertEqual([r["status"] for r in env["rcpts"]], ["pending"])
        error = env.get("last-error", "")
        self.assertIn(fragment, error)
        self.assertIn("127.0.0.1", error)
        self.assertIsNone(RAW_CONTROL.search(error.encode("utf-8", "surrogateescape")))

        mailq = self.spool.run([], argv0="mailq")
        self.assertSurvived(mailq)
        self.assertIn(fragment.encode(), mailq.stdout)
        self.assertIsNone(RAW_CONTROL.search(mailq.stdout), mailq.stdout)
        self.assertIsNone(RAW_CONTROL.search(mailq.stderr), mailq.stderr)
        self.assertIsNone(RAW_CONTROL.search(run.stderr), run.stderr)
        with open(self.spool.queue + "/env/" + qid, "rb") as f:
            self.assertIsNone(RAW_CONTROL.search(f.read()))
        return error


class Hostile(HostileTest):

    def test_control_a_friendly_server_gets_auth_and_the_message(self):
        """The harness works: the same checks would see AUTH and the mail."""
        self.configure(lambda peer: transaction(
            peer, lines(b"250-friendly.test", b"250 STARTTLS")))
        p = self.submit(["-odi", "rcpt@example.org"], MSG)
        self.assertSurvived(p)
        self.assertEqual(self.spool.ids(), [])
        got = bytes(self.server.received)
        self.assertIn(b"AUTH PLAIN " + secrets()[2], got)
        self.assertIn(b"Subject: hostile", got)

    def test_oversized_reply_line(self):
        def script(peer):
            to_tls(peer)
            peer.send(b"250-" + b"x" * (100 * 1024) + b"\r\n250 AUTH PLAIN\r\n")
        self.attack(script, "line longer than 2048 bytes")

    def test_endless_reply(self):
        def script(peer):
            to_tls(peer)
            endless(peer, b"250-AUTH PLAIN LOGIN and more\r\n")
        self.attack(script, "reply to EHLO (after STARTTLS) has more than 100 lines")
        self.assertEqual(self.server.connections, 1)

    def test_endless_greeting_in_plaintext(self):
        def script(peer):
            endless(peer, b"220-hello again\r\n")
        self.attack(script, "reply to greeting has more than 100 lines")

    def test_mismatched_multiline_codes(self):
        def script(peer):
            to_tls(peer)
            peer.send(lines(b"250-hostile.test", b"250-AUTH PLAIN", b"550 oops"))
        self.attack(script, "mixes codes 250 and 550")

    def test_continuation_without_a_code(self):
        def script(peer):
            to_tls(peer)
            peer.send(lines(b"250-hostile.test", b"AUTH PLAIN", b"250 ok"))
        self.attack(script, 'malformed reply line to EHLO (after STARTTLS): "AUTH PLAIN"')

    def test_nul_in_reply(self):
        def script(peer):
            to_tls(peer)
            peer.send(lines(b"250-hostile\x00.test", b"250 AUTH PLAIN"))
        self.attack(script, "NUL byte in a line from")

    def test_terminal_escapes_in_an_error_reply(self):
        def script(peer):
            to_tls(peer)
            peer.send(lines(b"421-4.3.2 \x1b[2J\x1b[H\x1b]0;owned\x07 cleared",
                            b"421 4.3.2 \x1b[31mred\x1b[0m\x08\x7f bye"))
        err = self.attack(script, "EHLO rejected: 421 4.3.2")
        self.assertIn("\\x1b[2J", err)
        self.assertIn("\\x07", err)

    def test_terminal_escapes_in_a_malformed_line(self):
        def script(peer):
            to_tls(peer)
            peer.send(b"\x1b[2J\x1b[1;1H250 all is well\r\n")
        err = self.attack(script, "malformed reply line")
        self.assertIn("\\x1b[2J", err)

    def test_escapes_and_8bit_in_the_greeting(self):
        def script(peer):
            peer.send(b"554 5.7.1 \x1b[2J\xff\xfe\r\x1b]0;x\x07 go away\r\n")
        err = self.attack(script, "connection refused by the smarthost: 554 5.7.1")
        self.assertIn("\\xff", err)

    def test_starttls_stripped(self):
        def script(peer):
            plain_ehlo(peer, lines(b"250-hostile.test", b"250 AUTH PLAIN LOGIN"))
        self.attack(script, "does not offer STARTTLS; refusing to send in plaintext")

    def test_starttls_refused(self):
        def script(peer):
            plain_ehlo(peer)
            peer.expect("STARTTLS")
            peer.send(b"454 4.7.0 TLS not available\r\n")
        self.attack(script, "STARTTLS refused: 454 4.7.0")

    def test_plaintext_injected_after_starttls(self):
        def script(peer):
            plain_ehlo(peer)
            peer.expect("STARTTLS")
            peer.send(b"220 2.0.0 go ahead\r\n250-injected\r\n250 AUTH PLAIN\r\n")
            peer.starttls(certs().server, certs().server_key)
        self.attack(script, "plaintext data after STARTTLS")

    def test_no_auth_after_tls(self):
        def script(peer):
            to_tls(peer)
            peer.send(lines(b"250-hostile.test", b"250 PIPELINING"))
        self.attack(script, "offers no AUTH after TLS")

    def test_certificate_for_another_host(self):
        def script(peer):
            to_tls(peer, certs().wrong, certs().wrong_key)
        self.attack(script, "certificate is for another host")

    def test_certificate_for_another_host_smtps(self):
        def script(peer):
            peer.starttls(certs().wrong, certs().wrong_key)
            peer.send(b"220 hostile.test ESMTP\r\n")
        self.attack(script, "certificate is for another host", tls="smtps")

    def test_garbage_greeting(self):
        def script(peer):
            peer.send(b"HTTP/1.1 400 Bad Request\xff\x1b[2J\r\n\r\n")
        err = self.attack(script, 'malformed reply line to greeting: "HTTP/1.1 400')
        self.assertIn("\\x1b[2J", err)

    def test_binary_garbage_greeting(self):
        def script(peer):
            peer.send(bytes(range(256)) * 8 + b"\r\n")
        self.attack(script, "NUL byte in a line from")

    def test_close_mid_reply(self):
        def script(peer):
            to_tls(peer)
            peer.send(b"250-hostile.test\r\n250-AUTH PL")
            peer.close()
        self.attack(script, "while waiting for the reply to EHLO (after STARTTLS)")

    def test_close_mid_greeting(self):
        def script(peer):
            peer.send(b"220-hostile.test\r\n220-still")
            peer.close()
        self.attack(script, "while waiting for the greeting")


class Limits(HostileTest):
    """The limit keys: the value configured is the one enforced, both above
    and below the built-in default."""

    def deliver(self, ehlo_reply, extra):
        self.configure(lambda peer: transaction(peer, ehlo_reply), extra,
                       tls="none", auth=False, tls_ca_file=None)
        p = self.submit(["-odi", "rcpt@example.org"], MSG)
        self.assertSurvived(p)
        return p

    def refuse(self, ehlo_reply, extra, fragment):
        def script(peer):
            peer.send(b"220 hostile.test ESMTP\r\n")
            peer.expect("EHLO")
            peer.send(ehlo_reply)
        self.attack(script, fragment, extra=extra)

    def test_max_reply_lines_raised(self):
        reply = lines(*[b"250-x-line-%d" % i for i in range(149)] + [b"250 ok"])
        self.deliver(reply, "max_reply_lines = 200\n")
        self.assertEqual(self.spool.ids(), [])

    def test_max_reply_lines_default_refuses_150(self):
        reply = lines(*[b"250-x-line-%d" % i for i in range(149)] + [b"250 ok"])
        self.refuse(reply, "", "reply to EHLO has more than 100 lines")

    def test_max_reply_lines_lowered(self):
        reply = lines(*[b"250-x-line-%d" % i for i in range(29)] + [b"250 ok"])
        self.refuse(reply, "max_reply_lines = 20\n", "reply to EHLO has more than 20 lines")

    def test_max_reply_line_raised(self):
        reply = lines(b"250-friendly.test", b"250 X-LONG " + b"y" * 5000)
        self.deliver(reply, "max_reply_line = 8192\n")
        self.assertEqual(self.spool.ids(), [])

    def test_max_reply_line_default_refuses_5000(self):
        reply = lines(b"250-friendly.test", b"250 X-LONG " + b"y" * 5000)
        self.refuse(reply, "", "line longer than 2048 bytes")

    def test_max_reply_line_lowered(self):
        reply = lines(b"250-friendly.test", b"250 X-LONG " + b"y" * 600)
        self.refuse(reply, "max_reply_line = 600\n", "line longer than 600 bytes")

    def bs_codes(self, extra, *commands):
        self.spool.write_config(extra)
        p = self.spool.run(["-bs"], input=b"".join(c + b"\r\n" for c in commands))
        self.assertSurvived(p)
        codes = [l[:3] for l in p.stdout.split(b"\r\n") if l[3:4] == b" "]
        return codes, p.stdout

    def test_max_smtp_line(self):
        noop = lambda n: b"NOOP " + b"x" * (n - 5)
        codes, out = self.bs_codes("max_smtp_line = 600\n", b"EHLO client.test",
                                   noop(600), noop(601), b"QUIT")
        self.assertEqual(codes, [b"220", b"250", b"250", b"500", b"221"], out)
        self.assertIn(b"\r\n500 5.5.2 Error: line too long\r\n", out)
        codes, out = self.bs_codes("max_smtp_line = 4096\n", b"EHLO client.test",
                                   noop(3000), noop(4096), noop(4097), b"QUIT")
        self.assertEqual(codes, [b"220", b"250", b"250", b"250", b"500", b"221"], out)
        codes, out = self.bs_codes("", b"EHLO client.test", noop(1024), noop(1025),
                                   b"QUIT")
        self.assertEqual(codes, [b"220", b"250", b"250", b"500", b"221"], out)


if __name__ == "__main__":
    main()
