"""Shared helpers for relayq's integration tests.

Every test runs the built binary (path in $RELAYQ) in a throwaway spool with
its own config (passed through $RELAYQ_CONFIG, which relayq honours only when
it is not running with extra privileges). Assertions are made on what is on
disk: the envelope and the wire-form data file.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

RELAYQ = os.environ.get("RELAYQ") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "src", "relayq")
SRCDIR = os.environ.get("RELAYQ_SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.environ.get("RELAYQ_CORPUS", os.path.join(SRCDIR, "..", "shared", "corpus"))

SKIP = 77
VALGRIND = os.environ.get("RELAYQ_VALGRIND")


def wrapper():
    """valgrind memcheck, one log per process (children of fork and exec included),
    scanned by tests/valgrind-check after the run."""
    if not VALGRIND:
        return []
    # relayq hands network work to relayq-deliver by exec: follow it, but
    # not into system programs or a test's password_command script.
    return ["valgrind", "-q", "--leak-check=full", "--trace-children=yes",
            "--trace-children-skip=/bin/*,/usr/*,/sbin/*,*/token",
            "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect",
            "--log-file=%s/vg.%%p.log" % VALGRIND]


class Spool:
    """A temporary queue directory plus config file."""

    def __init__(self, extra_config="", smarthosts="", separate=True):
        self.separate = separate
        self.root = tempfile.mkdtemp(prefix="relayq-test-")
        self.queue = os.path.join(self.root, "queue")
        self.config = os.path.join(self.root, "relayq.conf")
        self.bindir = os.path.join(self.root, "bin")
        os.mkdir(self.bindir)
        for name in ("sendmail", "mailq", "newaliases", "runq", "relayq"):
            os.symlink(os.path.abspath(RELAYQ), os.path.join(self.bindir, name))
        self.write_config(extra_config, smarthosts)

    def write_config(self, extra_config="", smarthosts=""):
        with open(self.config, "w") as f:
            f.write('hostname = "host.example.com"\n'
                    'domain = "example.com"\n'
                    'queue_dir = "%s"\n'
                    'log = "stderr"\n'
                    'delivery = queue\n' % self.queue)
            if "aliases =" not in extra_config:
                # Never the host's /etc/aliases: tests must not depend on it.
                f.write('aliases = "%s"\n' % os.path.join(self.root, "aliases"))
            f.write(extra_config)
            f.write(smarthosts)

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def command(self, argv0="sendmail"):
        """argv prefix that runs relayq under the given name (and under
        valgrind when $RELAYQ_VALGRIND names a directory for its logs)."""
        return wrapper() + [os.path.join(self.bindir, argv0)]

    def environ(self, env=None):
        e = dict(os.environ)
        e["RELAYQ_CONFIG"] = self.config
        # Parse in the separated child as a setgid install does for users;
        # unprivileged (and for root) relayq has nothing to separate and
        # parses in one process: the *InProcess test classes.
        e["RELAYQ_PRIVSEP"] = "always" if self.separate else "no"
        e.setdefault("TZ", "UTC")
        if env:
            e.update(env)
        return e

    def run(self, args, input=b"", argv0="sendmail", env=None, timeout=60):
        if VALGRIND:
            timeout *= 5
        return subprocess.run(self.command(argv0) + list(args),
                              input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=self.environ(env),
                              timeout=timeout)

    def ids(self):
        d = os.path.join(self.queue, "env")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def listdir(self, sub):
        d = os.path.join(self.queue, sub)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def envelope(self, qid):
        return parse_envelope(_read(os.path.join(self.queue, "env", qid)))

    def data(self, qid):
        return _read(os.path.join(self.queue, "data", qid))

    def message(self, qid):
        """The queued message with the wire form undone: LF line ends, unstuffed."""
        return unwire(self.data(qid))


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def parse_envelope(raw):
    """Envelope text -> dict; recipients as a list of dicts under 'rcpts'."""
    text = raw.decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    assert lines[0] == "relayq-envelope 1", lines[0]
    env = {"rcpts": []}
    ended = False
    for line in lines[1:]:
        if line == "end":
            ended = True
            break
        key, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "rcpt":
            status, _, addr = value.partition(" ")
            env["rcpts"].append({"status": status, "addr": addr})
        elif key.startswith("rcpt-"):
            env["rcpts"][-1][key[5:]] = value
        else:
            env[key] = value
    assert ended, "envelope without end line"
    return env


def unwire(data):
    """CRLF -> LF and undo dot-stuffing."""
    assert b"\r\n" in data or data == b""
    out = []
    for line in data.split(b"\r\n")[:-1]:
        assert b"\r" not in line and b"\n" not in line, line
        if line.startswith(b"."):
            line = line[1:]
        out.append(line)
    return b"\n".join(out) + b"\n" if out else b""


def split_message(msg):
    """(header bytes, body bytes) at the first empty line."""
    if msg.startswith(b"\n"):
        return b"", msg[1:]
    head, sep, body = msg.partition(b"\n\n")
    return head + b"\n", body


def header_fields(head):
    """Unfolded header fields as (name-lower, value) pairs."""
    fields = []
    for line in head.split(b"\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b" " + line.strip())
        else:
            name, _, value = line.partition(b":")
            fields.append((name.strip().lower().decode(), value.strip()))
    return fields


class SpoolTest(unittest.TestCase):
    """Base class: a fresh spool per test."""

    extra_config = ""
    separate = True        # see Spool.environ

    def setUp(self):
        self.spool = Spool(self.extra_config, separate=self.separate)

    def tearDown(self):
        self.spool.cleanup()

    def submit(self, args, message, **kw):
        return self.spool.run(args, input=message, **kw)

    def assertExit(self, proc, code):
        self.assertEqual(proc.returncode, code,
                         "exit %d, stderr: %r" % (proc.returncode, proc.stderr))

    def assertQueueEmpty(self):
        self.assertEqual(self.spool.ids(), [])
        self.assertEqual(self.spool.listdir("data"), [])
        self.assertEqual(self.spool.listdir("tmp"), [])


def main():
    if not os.access(RELAYQ, os.X_OK):
        print("relayq binary not found at %s" % RELAYQ, file=sys.stderr)
        sys.exit(99)
    unittest.main(verbosity=2)
