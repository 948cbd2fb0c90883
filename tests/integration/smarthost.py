"""A real SMTP smarthost on loopback for relayq's tests, built on aiosmtpd.

Used in-process by the integration tests (Smarthost(...).start()) and as a
program by contrib/demo:

    python3 smarthost.py --port 2525 --tls starttls --cert C --key K \\
        --user demo:secret --outdir DIR

Every accepted message is recorded with its envelope. Faults are scripted
per test: a reply for a given recipient, for MAIL or DATA, a number of
transactions to refuse with 4xx first, or a connection dropped after the
final dot.

Fault injection (tests/reliability): Handler.set_fault(stage, action) makes
the server misbehave at one point of the dialogue, on every connection or
on the next `times` occasions: close the connection, reset it (RST),
stall (never answer), answer 4xx, answer 5xx, or answer garbage. Stages are
listed in STAGES, actions in ACTIONS; Handler.chooser (for example a
RandomFaults) picks faults when none is scripted.
"""
import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import errno
import os
import random
import socket
import ssl
import struct
import sys
import logging
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword, SMTP


# aiosmtpd logs a deprecation warning for every AUTH (its own code uses
# Session.login_data); our tests have nothing to learn from it.
logging.getLogger("mail.log").setLevel(logging.ERROR)


class Message:
    lost_reply = False    # taken, but the reply was lost (a "dot" close/reset fault)

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
        self.conn = getattr(server, "conn_serial", None)   # which connection carried it


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
        # Fault injection: stage -> [action, times left or None for always].
        self.faults = {}
        self.chooser = None          # callable(stage, conn) -> action or None
        self.faults_applied = []     # (stage, action), in order
        self.dot_stall = 5.0         # a "dot" stall answers 250 after this (None: never)
        self.store_on_lost_dot = True  # close/reset after the dot: the message was taken
        self.open_connections = 0
        self.stall_limit = 60.0      # a stalled connection is dropped after this
        self.tls_sessions = []       # per TLS connection: {"resumed": bool, "version": str}
        self.conn_serials = 0        # connections numbered in order of arrival
        # Awaited (data_hook(server)) before each DATA is looked at: a test
        # can hold replies; if the client goes away meanwhile, nothing is stored.
        self.data_hook = None
        # Offer PIPELINING (RFC 2920) as every real smarthost does; aiosmtpd
        # reads pipelined commands in order, it only does not say so.
        self.pipelining = False

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname      # this hook replaces aiosmtpd's own
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

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
        if self.data_hook is not None:
            await self.data_hook(server)
        act = self.take_fault("dot", server)
        if act is not None:
            reply = await self._dot_fault(act, server, session, envelope)
            if reply is not None:
                return reply
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

    # --- fault injection ------------------------------------------------------
    def set_fault(self, stage, action, times=None):
        """Misbehave at stage with action: always, or the next `times` times."""
        if stage not in STAGES or action not in ACTIONS:
            raise ValueError("unknown fault %s/%s" % (stage, action))
        if stage == "tls" and action in ("4xx", "5xx"):
            raise ValueError("a TLS handshake has no reply codes")
        with self.lock:
            self.faults[stage] = [action, times]

    def clear_faults(self):
        with self.lock:
            self.faults.clear()
            self.chooser = None

    def take_fault(self, stage, conn):
        """The action for this stage now, or None; counts it as applied."""
        with self.lock:
            f = self.faults.get(stage)
            act = None
            if f is not None:
                act = f[0]
                if f[1] is not None:
                    f[1] -= 1
                    if f[1] <= 0:
                        del self.faults[stage]
            elif self.chooser is not None:
                act = self.chooser(stage, conn)
            if act is not None:
                self.faults_applied.append((stage, act))
            return act

    def record(self, envelope, session, server):
        with self.lock:
            self.transactions += 1
            msg = Message(envelope, session, server)
            self.messages.append(msg)
            return len(self.messages)

    async def _dot_fault(self, act, server, session, envelope):
        """After the final dot, before the reply. None: answer normally."""
        if act in ("close", "reset"):
            # The worst case for the client: the message was taken, the
            # reply is lost (the one duplicate SMTP allows).
            if self.store_on_lost_dot:
                n = self.record(envelope, session, server)
                self.messages[n - 1].lost_reply = True
            server.fault_hangup(act == "reset")
            await server.fault_hang()
        if act == "stall":
            if self.dot_stall is None:
                await server.fault_hang()
            await asyncio.sleep(self.dot_stall)
            return None
        if act == "garbage":
            server.fault_garbage()
            await server.fault_hang()
        return FAULT_REPLIES[act] % "end of data"

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

    async def _oauth(self, server, args, name, parse):
        """XOAUTH2 / OAUTHBEARER: the token is checked as the user's password."""
        blob = base64.b64decode(args[1]) if len(args) > 1 else \
            await server.challenge_auth(b"")
        try:
            user, token = parse(blob.decode())
        except (ValueError, AttributeError):
            return AuthResult(success=False, handled=False)
        if self.users.get(user) == token:
            self.used_mechanisms.append(name)
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        await server.challenge_auth(b'{"status":"401"}')
        return AuthResult(success=False, handled=False)

    async def auth_XOAUTH2(self, server, args):
        def parse(text):
            fields = dict(f.split("=", 1) for f in text.split("\x01") if f)
            return fields["user"], fields["auth"].split("Bearer ", 1)[1]
        return await self._oauth(server, args, "XOAUTH2", parse)

    async def auth_OAUTHBEARER(self, server, args):
        def parse(text):
            gs2, _, rest = text.partition("\x01")
            user = gs2.split("a=", 1)[1].rstrip(",")
            fields = dict(f.split("=", 1) for f in rest.split("\x01") if f)
            return user, fields["auth"].split("Bearer ", 1)[1]
        return await self._oauth(server, args, "OAUTHBEARER", parse)

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


STAGES = ("greeting", "ehlo", "starttls", "tls", "auth", "mail", "rcpt", "data",
          "body", "dot", "rset", "quit")
ACTIONS = ("close", "reset", "stall", "4xx", "5xx", "garbage")
FAULT_REPLIES = {"4xx": "451 4.3.0 Injected temporary failure at %s",
                 "5xx": "554 5.3.0 Injected permanent failure at %s"}
GARBAGE = b"garbage \x00\xff\x1b[2J this is not SMTP\r\n"


class FaultySMTP(CountingSMTP):
    """aiosmtpd's SMTP with the Handler's faults applied at each stage; with
    no fault scripted it behaves exactly like CountingSMTP."""

    body_fault_after = 1        # "body" faults strike after this many data lines

    def connection_made(self, transport):
        first = self.transport is None
        super().connection_made(transport)
        if first:
            with self.event_handler.lock:
                self.event_handler.open_connections += 1
                self.event_handler.conn_serials += 1
                self.conn_serial = self.event_handler.conn_serials
            # A "body" stall must block the client's writes: keep the
            # receive window small (set before any data flows).
            f = self.event_handler.faults.get("body")
            if f and f[0] == "stall":
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    def connection_lost(self, error):
        with self.event_handler.lock:
            self.event_handler.open_connections -= 1
        super().connection_lost(error)

    def note_tls(self):
        """Record each TLS connection once, at its first EHLO: the
        server's own view of whether the client resumed a session."""
        if getattr(self, "_tls_noted", False) or self.transport is None:
            return
        obj = self.transport.get_extra_info("ssl_object")
        if obj is None:
            return
        self._tls_noted = True
        with self.event_handler.lock:
            self.event_handler.tls_sessions.append(
                {"resumed": obj.session_reused, "version": obj.version()})

    # --- the actions ----------------------------------------------------------
    def _raw_transport(self):
        if self._original_transport is not None:
            return self._original_transport
        t = self.transport
        proto = getattr(t, "_ssl_protocol", None)
        return proto._transport if proto is not None else t

    def fault_hangup(self, reset):
        raw = self._raw_transport()
        if raw is None:
            return
        if reset:
            sock = raw.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                struct.pack("ii", 1, 0))
            raw.abort()
        else:
            if self.transport is not None and self.transport is not raw:
                self.transport.close()
            raw.close()

    def fault_garbage(self):
        raw = self._raw_transport() if self._tls_protocol is None else self.transport
        if raw is not None:
            raw.write(GARBAGE)

    async def fault_hang(self):
        """Never answer; ends when the client goes away (the coroutine is
        cancelled by eof_received or connection_lost)."""
        try:
            await asyncio.wait_for(self.loop.create_future(),
                                   self.event_handler.stall_limit)
        except asyncio.TimeoutError:
            # A client blocked writing to us never sees our socket close
            # while we do not read: give up so the connection ends.
            self.fault_hangup(True)
            await self.loop.create_future()
        except asyncio.CancelledError:
            if self.transport is not None:
                self.transport.close()
            raise

    async def _inject(self, stage, what=None):
        """Apply a fault at stage, if any. True: the command was handled."""
        act = self.event_handler.take_fault(stage, self)
        if act is None:
            return False
        if act in ("close", "reset"):
            self.fault_hangup(act == "reset")
            await self.fault_hang()
        elif act == "stall":
            await self.fault_hang()
        elif act == "garbage":
            self.fault_garbage()
            await self.fault_hang()
        else:
            await self.push(FAULT_REPLIES[act] % (what or stage))
        return True

    # --- the stages -----------------------------------------------------------
    async def _handle_client(self):
        self.event_handler.connections += 1
        act = self.event_handler.take_fault("greeting", self)
        if act is None:
            return await SMTP._handle_client(self)
        if act in ("close", "reset"):
            self.fault_hangup(act == "reset")
            return
        if act == "garbage":
            self.fault_garbage()
        if act in ("stall", "garbage"):
            await self.fault_hang()
        await self.push(FAULT_REPLIES[act] % "greeting")
        # A refusing server still answers QUIT (RFC 5321 3.1).
        try:
            while self.transport is not None:
                line = await self._reader.readuntil()
                if line.strip().upper() == b"QUIT":
                    await self.push("221 2.0.0 Bye")
                    self.transport.close()
                    return
                await self.push("503 5.5.1 Bad sequence of commands")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def smtp_STARTTLS(self, arg):
        if await self._inject("starttls", "STARTTLS"):
            return
        act = self.event_handler.take_fault("tls", self)
        if act is None:
            return await SMTP.smtp_STARTTLS(self, arg)
        await self.push("220 Ready to start TLS")
        if act in ("close", "reset"):
            self.fault_hangup(act == "reset")
        elif act == "garbage":
            self.fault_garbage()
        await self.fault_hang()

    async def smtp_DATA(self, arg):
        if await self._inject("data", "DATA"):
            return
        if "body" not in self.event_handler.faults and self.event_handler.chooser is None:
            return await SMTP.smtp_DATA(self, arg)
        if not self.envelope.rcpt_tos or arg:
            return await SMTP.smtp_DATA(self, arg)
        act = self.event_handler.take_fault("body", self)
        if act is None:
            return await SMTP.smtp_DATA(self, arg)
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        if act == "stall":
            await self.fault_hang()         # read nothing more
        ended = False
        for _ in range(self.body_fault_after):
            if await self._reader.readuntil(b"\r\n") == b".\r\n":
                ended = True
                break
        if act in ("close", "reset"):
            self.fault_hangup(act == "reset")
            await self.fault_hang()
        # An early reply: read the rest of the data and throw it away, so
        # the client finds the reply where it expects the one to its dot.
        if act == "garbage":
            self.fault_garbage()
        else:
            await self.push(FAULT_REPLIES[act] % "message body")
        while not ended:
            ended = await self._reader.readuntil(b"\r\n") == b".\r\n"
        self._set_post_data_state()
        if act == "garbage":
            await self.fault_hang()


def _faulty_command(name, stage):
    base = getattr(SMTP, name)

    async def method(self, arg):
        if await self._inject(stage, name[5:]):
            return
        await base(self, arg)
    for attr in ("__smtp_syntax__", "__smtp_syntax_extended__", "__smtp_syntax_when__"):
        if hasattr(base, attr):
            setattr(method, attr, getattr(base, attr))
    method.__name__ = name
    return method


for _name, _stage in (("smtp_EHLO", "ehlo"), ("smtp_AUTH", "auth"), ("smtp_MAIL", "mail"),
                      ("smtp_RCPT", "rcpt"), ("smtp_RSET", "rset"), ("smtp_QUIT", "quit")):
    setattr(FaultySMTP, _name, _faulty_command(_name, _stage))


def _noting_tls(base):
    async def smtp_EHLO(self, arg):
        self.note_tls()
        await base(self, arg)
    for attr in ("__smtp_syntax__", "__smtp_syntax_extended__", "__smtp_syntax_when__"):
        if hasattr(base, attr):
            setattr(smtp_EHLO, attr, getattr(base, attr))
    return smtp_EHLO


FaultySMTP.smtp_EHLO = _noting_tls(FaultySMTP.smtp_EHLO)


class RandomFaults:
    """A Handler.chooser: each transaction (decided at MAIL) meets a fault
    with probability `rate`, at a stage drawn from `stages` and an action
    drawn from `actions`; `conn_rate` does the same per connection for the
    connection stages. Thread-safe through the Handler's lock."""

    TX_STAGES = ("mail", "rcpt", "data", "body", "dot", "rset")
    CONN_STAGES = ("greeting", "ehlo", "starttls", "tls", "auth", "quit")

    def __init__(self, rate=0.2, actions=("4xx",), stages=("mail", "rcpt", "data", "dot"),
                 conn_rate=0.0, conn_stages=(), seed=None, exclude=(("body", "stall"),)):
        # A body stall needs a small receive window set at connect time.
        self.exclude = set(exclude)
        self.rate, self.actions, self.stages = rate, tuple(actions), tuple(stages)
        self.conn_rate, self.conn_stages = conn_rate, tuple(conn_stages)
        self.rng = random.Random(seed)
        self.plan = {}               # id(conn) -> {stage: action}

    def _draw(self, stages):
        stage = self.rng.choice(stages)
        acts = [a for a in self.actions
                if not (stage == "tls" and a in ("4xx", "5xx"))
                and (stage, a) not in self.exclude] or ["close"]
        return stage, self.rng.choice(acts)

    def __call__(self, stage, conn):
        plan = self.plan.setdefault(id(conn), {})
        if stage == "greeting":
            plan.clear()
            if self.conn_stages and self.rng.random() < self.conn_rate:
                s, a = self._draw(self.conn_stages)
                plan[s] = a
        elif stage == "mail":
            for s in self.TX_STAGES:
                plan.pop(s, None)
            if self.stages and self.rng.random() < self.rate:
                s, a = self._draw(self.stages)
                plan[s] = a
        return plan.pop(stage, None)


class Smarthost:
    """One listening smarthost. tls: "none", "starttls" or "smtps"."""

    def __init__(self, tls="none", cert=None, key=None, users=None, port=0,
                 require_tls=True, outdir=None, host="127.0.0.1", extra=None,
                 tickets=True, max_tls=None):
        """tickets=False: no session tickets (TLS 1.2 or 1.3), so no
        resumption; max_tls: an ssl.TLSVersion to stop at."""
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
            if not tickets:
                ctx.options |= ssl.OP_NO_TICKET
                ctx.num_tickets = 0
            if max_tls is not None:
                ctx.maximum_version = max_tls
        if tls == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=True)
        if tls == "smtps":
            # aiosmtpd only knows STARTTLS as "TLS"; the socket is TLS already.
            kwargs.update(auth_require_tls=False)
        self._auto_port = not port
        self._make = lambda p: _Controller(self.handler, hostname=host, port=p,
                                           ssl_context=ctx if tls == "smtps" else None,
                                           **kwargs)
        self.controller = self._make(self.port)

    @property
    def messages(self):
        return self.handler.messages

    def start(self):
        # A port found free can be taken by a parallel test before we bind
        # it: then take another one.
        for attempt in range(10):
            try:
                self.controller.start()
                break
            except OSError as e:
                if not self._auto_port or e.errno != errno.EADDRINUSE or attempt == 9:
                    raise
                self.port = _free_port(self.host)
                self.controller = self._make(self.port)
        self.handler.connections = 0   # forget the controller's own probe
        return self

    def stop(self):
        self.controller.stop()


class _Controller(Controller):
    def factory(self):
        return FaultySMTP(self.handler, **self.SMTP_kwargs)


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
