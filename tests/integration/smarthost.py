"""A real SMTP smarthost on loopback for relayq's tests, built on aiosmtpd.

Used in-process by the integration tests (Smarthost(...).start()) and as a
program by contrib/demo:

    python3 smarthost.py --port 2525 --tls starttls --cert C --key K \\
        --user demo:secret --outdir DIR

Every accepted message is recorded with its envelope. Faults are scripted
per test: a reply for a given recipient, for MAIL or DATA, a number of
transactions to refuse with 4xx first, or a connection dropped after the
final dot.
"""
import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import ssl
import sys
import logging
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword, SMTP


# aiosmtpd logs a deprecation warning for every AUTH (its own code uses
# Session.login_data); our tests have nothing to learn from it.
logging.getLogger("mail.log").setLevel(logging.ERROR)


class Message:
    def __init__(self, envelope, session, server):
        self.mail_from = envelope.mail_from
        self.rcpt_tos = list(envelope.rcpt_tos)
        self.mail_options = list(envelope.mail_options)
        self.rcpt_options = list(envelope.rcpt_options)
        self.data = envelope.original_content  # bytes as received, CRLF, unstuffed
        login = getattr(session.auth_data, "login", None)
        self.auth = login.decode() if isinstance(login, bytes) else login
        self.tls = (server.transport.get_extra_info("ssl_object") is not None
                    or getattr(server, "_tls_protocol", None) is not None)


class Handler:
    def __init__(self, users=None, outdir=None):
        self.users = users or {}
        self.outdir = outdir
        self.messages = []
        self.lock = threading.Lock()
        self.rcpt_replies = {}      # address -> reply line
        self.mail_reply = None
        self.data_reply = None
        self.defer_transactions = 0  # refuse this many DATA with 451 first
        self.drop_after_dot = 0      # close the connection instead of replying
        self.rcpt_limit = 0          # 452 past this many recipients per transaction
        self.transactions = 0
        self.connections = 0
        self.used_mechanisms = []

    # --- SMTP hooks -------------------------------------------------------
    async def handle_MAIL(self, server, session, envelope, address, options):
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        reply = self.rcpt_replies.get(address.lower())
        if reply:
            return reply
        if self.rcpt_limit and len(envelope.rcpt_tos) >= self.rcpt_limit:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.transactions += 1
            if self.drop_after_dot > 0:
                self.drop_after_dot -= 1
                server.transport.close()
                return "421 dropped"
            if self.defer_transactions > 0:
                self.defer_transactions -= 1
                return "451 4.3.0 try again later"
            if self.data_reply:
                return self.data_reply
            msg = Message(envelope, session, server)
            self.messages.append(msg)
            n = len(self.messages)
        if self.outdir:
            base = os.path.join(self.outdir, "%04d" % n)
            with open(base + ".eml", "wb") as f:
                f.write(msg.data)
            with open(base + ".json", "w") as f:
                json.dump({"mail_from": msg.mail_from, "rcpt_tos": msg.rcpt_tos,
                           "mail_options": msg.mail_options, "auth": msg.auth,
                           "tls": msg.tls}, f, indent=1)
        return "250 2.0.0 Ok: queued as %d" % n

    # --- AUTH ---------------------------------------------------------------
    def authenticator(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            user, pw = auth_data.login.decode(), auth_data.password.decode()
            if self.users.get(user) == pw:
                self.used_mechanisms.append(mechanism)
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    async def auth_CRAM__MD5(self, server, args):
        challenge = ("<%d.relayq@localhost>" % os.getpid()).encode()
        response = await server.challenge_auth(challenge)
        if not isinstance(response, bytes):
            return AuthResult(success=False, handled=True)
        user, _, digest = response.decode(errors="replace").rpartition(" ")
        pw = self.users.get(user)
        if pw is not None and hmac.compare_digest(
                digest, hmac.new(pw.encode(), challenge, hashlib.md5).hexdigest()):
            self.used_mechanisms.append("CRAM-MD5")
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        return AuthResult(success=False, handled=False)

    async def auth_SCRAM__SHA__256(self, server, args):
        """RFC 5802/7677 server side, so the client's proof and our signature
        are both checked against an independent implementation."""
        if len(args) < 2:
            first = await server.challenge_auth(b"")
        else:
            first = base64.b64decode(args[1])
        if not isinstance(first, bytes) or not first.startswith(b"n,,"):
            return AuthResult(success=False, handled=False)
        bare = first[3:].decode()
        attrs = dict(kv.split("=", 1) for kv in bare.split(","))
        user, cnonce = attrs["n"], attrs["r"]
        pw = self.users.get(user)
        salt, iters = b"relayq-salt-1234", 4096
        snonce = cnonce + base64.b64encode(os.urandom(18)).decode()
        server_first = "r=%s,s=%s,i=%d" % (snonce, base64.b64encode(salt).decode(), iters)
        final = await server.challenge_auth(server_first.encode())
        if not isinstance(final, bytes) or pw is None:
            return AuthResult(success=False, handled=False)
        final = final.decode()
        without_proof, _, proof = final.rpartition(",p=")
        if "r=" + snonce not in without_proof:
            return AuthResult(success=False, handled=False)
        salted = hashlib.pbkdf2_hmac("sha256", pw.encode(), salt, iters)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        auth_message = ",".join((bare, server_first, without_proof)).encode()
        client_sig = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        expected = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, client_sig)))
        if not hmac.compare_digest(expected, proof.encode()):
            return AuthResult(success=False, handled=False)
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        sig = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        ack = await server.challenge_auth(b"v=" + base64.b64encode(sig))
        if ack is not None and not isinstance(ack, bytes):
            return AuthResult(success=False, handled=True)
        self.used_mechanisms.append("SCRAM-SHA-256")
        return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))


class CountingSMTP(SMTP):
    async def _handle_client(self):
        self.event_handler.connections += 1
        await super()._handle_client()


class Smarthost:
    """One listening smarthost. tls: "none", "starttls" or "smtps"."""

    def __init__(self, tls="none", cert=None, key=None, users=None, port=0,
                 require_tls=True, outdir=None, host="127.0.0.1", extra=None):
        self.handler = Handler(users, outdir)
        self.host = host
        self.port = port or _free_port(host)
        kwargs = dict(server_hostname="smarthost.test", authenticator=self.handler.authenticator,
                      auth_require_tls=require_tls, enable_SMTPUTF8=True,
                      data_size_limit=100 * 1024 * 1024)
        kwargs.update(extra or {})
        ctx = None
        if tls in ("starttls", "smtps"):
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
        if tls == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=True)
        if tls == "smtps":
            # aiosmtpd only knows STARTTLS as "TLS"; the socket is TLS already.
            kwargs.update(auth_require_tls=False)
        self.controller = _Controller(self.handler, hostname=host, port=self.port,
                                      ssl_context=ctx if tls == "smtps" else None, **kwargs)

    @property
    def messages(self):
        return self.handler.messages

    def start(self):
        self.controller.start()
        self.handler.connections = 0   # forget the controller's own probe
        return self

    def stop(self):
        self.controller.stop()


class _Controller(Controller):
    def factory(self):
        return CountingSMTP(self.handler, **self.SMTP_kwargs)


def _free_port(host):
    import socket
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2525)
    ap.add_argument("--tls", choices=("none", "starttls", "smtps"), default="starttls")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--user", action="append", default=[], help="name:password")
    ap.add_argument("--outdir", required=True)
    a = ap.parse_args()
    users = dict(u.split(":", 1) for u in a.user)
    os.makedirs(a.outdir, exist_ok=True)
    sh = Smarthost(a.tls, a.cert, a.key, users, a.port, outdir=a.outdir, host=a.host)
    sh.start()
    print("smarthost listening on %s:%d (%s)" % (a.host, sh.port, a.tls), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    sh.stop()


if __name__ == "__main__":
    main()
