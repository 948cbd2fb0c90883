"""Shared helpers for relayq's reliability tests (tests/reliability).

Everything here works on what can be seen from outside: the queue
directory on disk, the smarthost's record of what it received, the exit
status and stderr of relayq. The figures each test produces (submitted,
delivered, duplicates, bounced, lost) are collected in FIGURES and printed
by tests/reliability/run.
"""
import collections
import hashlib
import logging
import os
import re
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness                     # noqa: E402
from harness import Spool, parse_envelope, unwire   # noqa: E402,F401
import smarthost                   # noqa: E402
from certs import Certs            # noqa: E402

# Injected faults make aiosmtpd log every broken session; expected here.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)

RELAYQ = harness.RELAYQ
SCALE = float(os.environ.get("RELIABILITY_SCALE", "1") or "1")
SENDER = "sender@example.net"
RCPT = "rcpt@example.org"
IS_ROOT = os.geteuid() == 0

# part -> Counter(submitted=, delivered=, duplicates=, bounced=, lost=, ...)
FIGURES = collections.OrderedDict()
# (part, case, outcome) rows for the tables in doc/RELIABILITY.md
OUTCOMES = []


def figure(part, **counts):
    c = FIGURES.setdefault(part, collections.Counter())
    c.update(counts)


def outcome(part, case, text):
    OUTCOMES.append((part, case, text))


_certs = None


def certs():
    global _certs
    if _certs is None:
        _certs = Certs()
    return _certs


# --- messages ----------------------------------------------------------------

def make_message(tag, body_lines=3, size=0):
    """A message with a unique Message-ID <tag@reliability.test> and a body
    whose last line carries the SHA-256 of the lines before it, so a
    truncated or altered copy is recognised wherever it shows up."""
    mid = "<%s@reliability.test>" % tag
    lines = [("line %d of %s .dot\n" % (i, tag)) for i in range(body_lines)]
    lines.insert(1, ".leading dot line\n")
    body = "".join(lines)
    if size > len(body):
        filler = ("%s filler " % tag) * (900 // (len(tag) + 8)) + "\n"
        body += filler * ((size - len(body)) // len(filler) + 1)
    digest = hashlib.sha256(body.encode()).hexdigest()
    body += "sha256: %s\n" % digest
    head = ("From: Sender <%s>\nTo: %s\nSubject: reliability %s\n"
            "Message-ID: %s\n\n" % (SENDER, RCPT, tag, mid))
    return mid, (head + body).encode()


MID_RE = re.compile(rb"^Message-ID:\s*(<[^>\r\n]*>)", re.I | re.M)


def message_id(data):
    m = MID_RE.search(data)
    return m.group(1).decode() if m else None


def is_whole(data):
    """True if a received (CRLF, unstuffed) or queued message body is intact."""
    text = data.replace(b"\r\n", b"\n")
    head, sep, body = text.partition(b"\n\n")
    if not sep:
        return False
    m = re.search(rb"sha256: ([0-9a-f]{64})\n\Z", body)
    if not m:
        return False
    return hashlib.sha256(body[:m.start()]).hexdigest().encode() == m.group(1)


def is_dsn(msg):
    return msg.mail_from in ("<>", "")


# --- the spool -----------------------------------------------------------------

class RelSpool(Spool):
    """harness.Spool with the checks the reliability tests share."""

    def files(self, sub):
        return self.listdir(sub)

    def snapshot(self):
        """Every file under the queue with its bytes (for before/after)."""
        out = {}
        for sub in ("tmp", "data", "env", "failed", "corrupt"):
            d = os.path.join(self.queue, sub)
            if os.path.isdir(d):
                for name in os.listdir(d):
                    p = os.path.join(d, name)
                    if os.path.isfile(p):
                        with open(p, "rb") as f:
                            out[sub + "/" + name] = f.read()
        return out

    def age(self, seconds=3 * 86400, subs=("tmp", "data")):
        """Make files look old, so the runner's cleanup (24 h grace) acts now."""
        t = time.time() - seconds
        for sub in subs:
            d = os.path.join(self.queue, sub)
            if os.path.isdir(d):
                for name in os.listdir(d):
                    try:
                        os.utime(os.path.join(d, name), (t, t), follow_symlinks=False)
                    except FileNotFoundError:
                        pass

    def consistency(self):
        """Problems with the queue as it stands: every env/ID parses, has
        its data/ID of the recorded size, and the data is whole."""
        problems = []
        for qid in self.ids():
            try:
                env = self.envelope(qid)
            except (AssertionError, OSError, UnicodeError) as e:
                problems.append("env/%s does not parse: %s" % (qid, e))
                continue
            dpath = os.path.join(self.queue, "data", qid)
            if not os.path.isfile(dpath):
                problems.append("env/%s without data/%s" % (qid, qid))
                continue
            data = self.data(qid)
            if int(env["size"]) != len(data):
                problems.append("data/%s is %d bytes, envelope says %s"
                                % (qid, len(data), env["size"]))
            elif env.get("sender") != "" and not is_whole(unwire(data)):
                problems.append("data/%s is not whole" % qid)
        if self.listdir("corrupt"):
            problems.append("corrupt/ holds %s" % self.listdir("corrupt"))
        return problems

    def run_until_empty(self, max_runs=10, args=("-qf",), **kw):
        """Queue runs until env/ is empty (bounded); returns the runs made."""
        for i in range(max_runs):
            if not self.ids():
                return i
            self.run(list(args), **kw)
        return max_runs if self.ids() else max_runs


def spool_config(server=None, tls="none", auth=False, timeout="2s", extra=""):
    """Config text: one smarthost, short timeouts, a long lifetime."""
    conf = ('queue_lifetime = 5d\nretry = { 1s }\n' + extra)
    if server is None:
        return conf, ""
    keys = {"host": '"127.0.0.1"', "port": str(server.port), "tls": tls,
            "timeout": timeout, "connect_timeout": "2s"}
    if tls != "none":
        keys["tls_ca_file"] = '"%s"' % certs().ca
    if auth:
        keys["username"] = '"%s"' % USER
        keys["password"] = '"%s"' % PASSWORD
    body = "".join(" %s = %s\n" % kv for kv in keys.items())
    return conf, "smarthost main {\n%s}\n" % body


USER, PASSWORD = "reliable", "n0-loss-n0-dup"


def start_server(tls="none", **kw):
    c = certs() if tls != "none" else None
    s = smarthost.Smarthost(tls, c.server if c else None, c.server_key if c else None,
                            {USER: PASSWORD}, **kw)
    return s.start()


def wait_idle(server, timeout=10.0):
    """Until the smarthost has no connection open (it has processed all
    it was sent). Polls; returns False on timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if server.handler.open_connections <= 0:
            return True
        time.sleep(0.01)
    return False


def copies(server, mid):
    return [m for m in server.messages if message_id(m.data) == mid and not is_dsn(m)]


def dsns(server):
    return [m for m in server.messages if is_dsn(m)]


def limit_nofile(n):
    """preexec_fn: RLIMIT_NOFILE = n (also keeps relayq's close loop short)."""
    def fn():
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return fn


def run(spool, args, input=b"", env=None, timeout=120, preexec_fn=None, prefix=()):
    """relayq under its sendmail name with the spool's config."""
    return subprocess.run(list(prefix) + spool.command() + list(args), input=input,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=spool.environ(env), timeout=timeout,
                          preexec_fn=preexec_fn)


def mounted_tmpfs(path, options):
    """Mount a tmpfs on path; False if that is not possible here."""
    if not IS_ROOT:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return r.returncode == 0


def umount(path):
    subprocess.run(["umount", "-l", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
