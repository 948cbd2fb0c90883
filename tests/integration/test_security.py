"""The privilege model of a real setgid install, exercised as unprivileged
users (DESIGN.md, security model; issue 5, "Proof" and "Secrets").

The test makes what `make install` makes, in a scratch directory: a relayq
group, a copy of the built binary setgid to it (root:GROUP 2755), the spool
0770 root:GROUP with its subdirectories, a config 0640 root:GROUP with a
smarthost password and a password_file 0640 root:GROUP, and two ordinary
users. A setgid relayq ignores RELAYQ_CONFIG and reads SYSCONFDIR/relayq.conf,
so every command runs in a private mount namespace where a read-only
overlay puts the test's config at that path; the host is never modified.
Users, group and files are removed at the end.

Needs root (CI runs as root): skipped otherwise, under valgrind, which
cannot run a setgid program with its privileges, and in a sanitizer build,
whose LeakSanitizer cannot either.
"""
import base64
import fcntl
import grp
import json
import os
import pwd
import re
import resource
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
import unittest

from harness import RELAYQ, VALGRIND, main, parse_envelope
from certs import Certs
import smarthost

TOOLS = ("unshare", "setpriv", "findmnt", "mount", "useradd", "userdel",
         "groupadd", "groupdel")
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SPOOL_SUBDIRS = ("tmp", "data", "env", "failed", "corrupt")
# One AUTH user per way of giving the password, so the smarthost tells
# which source was used.
SECRETS = {
    "password": ("inlineuser", "Inline-Pw-7q!x9"),
    "password_file": ("fileuser", "File-Pw-3k#v2"),
    "password_command": ("cmduser", "Command-Pw-8m%z5"),
}
CANARY = "caller-canary-6f2a"
MSG = (b"From: Someone <someone@example.net>\nTo: rcpt@example.org\n"
       b"Subject: security\n\nbody\n")
# read(2), poll(2) and ppoll(2) on each architecture, as /proc/PID/syscall
# shows them (None: the architecture has no such call).
SYSCALLS = {"x86_64": (0, 7, 271), "aarch64": (63, None, 73),
            "riscv64": (63, None, 73)}
# Exec the rest with signals ignored and blocked, as a careless caller may.
IGNORED = (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)
BLOCKED = (signal.SIGTERM, signal.SIGALRM, signal.SIGUSR1)
HOSTILE_SIGNALS = [
    "/usr/bin/python3", "-c", "import os, signal, sys\n"
    "for s in (%s): signal.signal(s, signal.SIG_IGN)\n"
    "signal.pthread_sigmask(signal.SIG_BLOCK, (%s))\n"
    "os.execvp(sys.argv[1], sys.argv[1:])" % (
        ", ".join(str(int(s)) for s in IGNORED) + ",",
        ", ".join(str(int(s)) for s in BLOCKED) + ",")]
WAIT = 30.0     # seconds any single wait for a process state may take


def run_root(*args):
    return subprocess.run(list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=True)


def taken(name):
    """Is name a user or a group already?"""
    for lookup in (pwd.getpwnam, grp.getgrnam):
        try:
            lookup(name)
            return True
        except KeyError:
            pass
    return False


def b64(data):
    return base64.b64encode(data).decode()


def proc_ids(pid):
    """(uids, gids, groups) of a process from /proc/PID/status."""
    uids = gids = groups = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == "Uid":
                uids = [int(x) for x in value.split()]
            elif key == "Gid":
                gids = [int(x) for x in value.split()]
            elif key == "Groups":
                groups = sorted(int(x) for x in value.split())
    return uids, gids, groups


def signal_masks(pid):
    """(blocked, ignored) signal bit masks of a process."""
    masks = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("SigBlk", "SigIgn"):
                masks[key] = int(value, 16)
    return masks["SigBlk"], masks["SigIgn"]


def core_limit(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max core file size"):
                return line.split()[4:6]
    return None


def fd_targets(pid):
    d = "/proc/%d/fd" % pid
    out = {}
    for name in os.listdir(d):
        try:
            out[int(name)] = os.readlink(os.path.join(d, name))
        except FileNotFoundError:
            pass
    return out


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def reading_stdin(pid):
    """Is pid blocked reading stdin: read(0, ...), or poll/ppoll on the one
    descriptor 0? None where we cannot tell (unknown architecture)."""
    calls = SYSCALLS.get(os.uname().machine)
    try:
        with open("/proc/%d/syscall" % pid) as f:
            fields = f.read().split()
    except FileNotFoundError:
        return False
    except PermissionError:
        return None
    if calls is None:
        return None
    if len(fields) < 3 or fields[0] == "running":
        return False
    nr, args = int(fields[0]), [int(x, 16) for x in fields[1:3]]
    if nr == calls[0]:
        return args[0] == 0
    if nr in calls[1:] and args[1] == 1:
        with open("/proc/%d/mem" % pid, "rb") as mem:   # struct pollfd
            mem.seek(args[0])
            return int.from_bytes(mem.read(4), "little", signed=True) == 0
    return False


def suid_capable_dir():
    """A scratch directory on a filesystem mounted without nosuid."""
    candidates = [tempfile.gettempdir(), "/var/tmp",
                  os.path.dirname(os.path.abspath(RELAYQ))]
    for parent in candidates:
        if not os.path.isdir(parent):
            continue
        d = tempfile.mkdtemp(prefix="relayq-sec-", dir=parent)
        opts = subprocess.run(["findmnt", "-no", "OPTIONS", "--target", d],
                              stdout=subprocess.PIPE, text=True).stdout
        if "nosuid" not in opts.split(","):
            return d
        shutil.rmtree(d)
    return None


def compiled_sysconfdir():
    """SYSCONFDIR as built in: the path the binary reads its config from."""
    env = {"PATH": SAFE_PATH}
    p = subprocess.run([RELAYQ, "-bP"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, env=env, text=True)
    m = re.search(r"(/[^\s:()]*)/relayq\.conf", p.stdout)
    return m.group(1) if m else None


def compiled_deliver_path():
    """RELAYQ_DELIVER_PATH as built in: the only relayq-deliver a setgid
    relayq runs."""
    with open(RELAYQ, "rb") as f:
        m = re.search(rb"\0(/[\x21-\x7e]*/relayq-deliver)\0", f.read())
    return m.group(1).decode() if m else None


def existing_ancestor(path):
    while not os.path.isdir(path):
        path = os.path.dirname(path)
    return path


class Security(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if VALGRIND:
            raise unittest.SkipTest("valgrind cannot run a setgid program "
                                    "with its privileges")
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root: creates users, a group and "
                                    "a setgid binary")
        with open(RELAYQ, "rb") as f:
            if b"__asan_init" in f.read():
                # Its tracer cannot attach to a setgid (non-dumpable)
                # process, and it cannot be told: it reads its options from
                # /proc/self/environ, which such a process cannot open.
                raise unittest.SkipTest("LeakSanitizer fails in a setgid "
                                        "process; the plain build runs these")
        missing = [t for t in TOOLS if shutil.which(t) is None]
        if missing:
            raise unittest.SkipTest("missing tools: " + " ".join(missing))
        cls.sysconfdir = compiled_sysconfdir()
        if cls.sysconfdir is None or not os.path.isdir(cls.sysconfdir):
            raise unittest.SkipTest("compiled-in SYSCONFDIR %r is not a "
                                    "directory here" % cls.sysconfdir)
        cls.deliver_path = compiled_deliver_path()
        if cls.deliver_path is None:
            raise unittest.SkipTest("no relayq-deliver path in %s" % RELAYQ)
        # Overlaid like the config; never "/" and never above SYSCONFDIR's
        # own overlay, which is mounted on top of it.
        cls.deliver_anchor = existing_ancestor(os.path.dirname(cls.deliver_path))
        if cls.deliver_anchor == "/":
            raise unittest.SkipTest("no directory to overlay for %s"
                                    % cls.deliver_path)
        cls.base = suid_capable_dir()
        if cls.base is None:
            raise unittest.SkipTest("no scratch filesystem without nosuid")
        cls.addClassCleanup(shutil.rmtree, cls.base, True)
        os.chmod(cls.base, 0o755)
        cls.make_accounts()
        cls.make_install()
        cls.make_smarthost()
        cls.make_configs()
        probe = subprocess.run(cls.wrap("system", ["true"]),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if probe.returncode != 0:
            raise unittest.SkipTest("no private mount namespace with an "
                                    "overlay here: %r" % probe.stderr)

    # --- the installation -------------------------------------------------

    @classmethod
    def make_accounts(cls):
        for _ in range(100):
            tag = os.urandom(3).hex()
            names = ("rqs%sg" % tag, "rqs%sa" % tag, "rqs%sb" % tag)
            if not any(taken(n) for n in names):
                break
        cls.group, cls.users = names[0], names[1:]
        run_root("groupadd", cls.group)
        cls.addClassCleanup(subprocess.run, ["groupdel", cls.group],
                            stderr=subprocess.DEVNULL)
        for u in cls.users:
            run_root("useradd", "-M", "-U", "-d", "/nonexistent",
                     "-s", "/usr/sbin/nologin", u)
            cls.addClassCleanup(subprocess.run, ["groupdel", u],
                                stderr=subprocess.DEVNULL)
            cls.addClassCleanup(subprocess.run, ["userdel", u],
                                stderr=subprocess.DEVNULL)
        cls.gid = grp.getgrnam(cls.group).gr_gid
        cls.alice, cls.bob = (pwd.getpwnam(u) for u in cls.users)

    @classmethod
    def path(cls, *parts):
        return os.path.join(cls.base, *parts)

    @classmethod
    def own(cls, path, mode, gid=None):
        os.chown(path, 0, cls.gid if gid is None else gid)
        os.chmod(path, mode)

    @classmethod
    def make_install(cls):
        os.mkdir(cls.path("bin"), 0o755)
        cls.binary = cls.path("bin", "relayq")
        shutil.copyfile(RELAYQ, cls.binary)
        cls.own(cls.binary, 0o2755)
        # relayq-deliver, setgid too, at its compiled-in path (an overlay
        # layer: the host is never modified).
        cls.deliver_layer = cls.path("deliver-layer")
        rel = os.path.relpath(cls.deliver_path, cls.deliver_anchor)
        d = cls.deliver_layer
        os.mkdir(d)
        os.chmod(d, os.stat(cls.deliver_anchor).st_mode & 0o7777)
        for part in os.path.dirname(rel).split(os.sep):
            d = os.path.join(d, part)
            os.mkdir(d)
            os.chmod(d, 0o755)
        deliver = os.path.join(cls.deliver_layer, rel)
        shutil.copyfile(os.path.join(os.path.dirname(RELAYQ), "relayq-deliver"),
                        deliver)
        cls.own(deliver, 0o2755)
        for name in ("sendmail", "mailq"):
            os.symlink("relayq", cls.path("bin", name))
        cls.spool = cls.path("spool")
        os.mkdir(cls.spool)
        cls.own(cls.spool, 0o770)
        for sub in SPOOL_SUBDIRS:
            os.mkdir(cls.path("spool", sub))
            cls.own(cls.path("spool", sub), 0o770)
        cls.secret = cls.path("relayq.secret")
        with open(cls.secret, "w") as f:
            f.write(SECRETS["password_file"][1] + "\n")
        cls.own(cls.secret, 0o640)
        # What the password command records: only the group may read it.
        cls.out = cls.path("out")
        os.mkdir(cls.out)
        cls.own(cls.out, 0o770)
        cls.pwcmd = cls.path("pwcmd")
        record = cls.path("pwrecord.py")
        with open(cls.pwcmd, "w") as f:
            f.write(PWCMD.format(out=cls.out, record=record))
        with open(record, "w") as f:
            f.write(PWRECORD.format(out=cls.out, password=SECRETS["password_command"][1]))
        cls.own(cls.pwcmd, 0o755, gid=0)
        cls.own(record, 0o644, gid=0)
        # A spool the first user owns, for configs the user may name.
        cls.userspool = cls.path("userspool")
        os.mkdir(cls.userspool)
        os.chown(cls.userspool, cls.alice.pw_uid, cls.alice.pw_gid)
        os.chmod(cls.userspool, 0o700)

    @classmethod
    def make_smarthost(cls):
        os.mkdir(cls.path("certs"), 0o755)
        cls.certs = Certs(cls.path("certs"))
        os.chmod(cls.certs.ca, 0o644)
        cls.arrived = threading.Semaphore(0)
        cls.server = smarthost.Smarthost("starttls", cls.certs.server,
                                         cls.certs.server_key,
                                         dict(SECRETS.values()))
        orig = cls.server.handler.handle_DATA

        async def handle_DATA(server, session, envelope):
            reply = await orig(server, session, envelope)
            if reply.startswith("250"):
                cls.arrived.release()
            return reply
        cls.server.handler.handle_DATA = handle_DATA
        cls.server.start()
        cls.addClassCleanup(cls.server.stop)

    @classmethod
    def smarthost_conf(cls, source="password", name="main", **keys):
        user, password = SECRETS[source]
        value = {"password": '"%s"' % password,
                 "password_file": '"%s"' % cls.secret,
                 "password_command": '"%s"' % cls.pwcmd}[source]
        conf = {"host": '"127.0.0.1"', "port": str(cls.server.port),
                "tls": "starttls", "tls_ca_file": '"%s"' % cls.certs.ca,
                "username": '"%s"' % user, source: value, "timeout": "20s"}
        conf.update(keys)
        body = "".join(" %s = %s\n" % (k, v) for k, v in conf.items())
        return "smarthost %s {\n%s}\n" % (name, body)

    @classmethod
    def config_text(cls, smarthosts, queue_dir=None, extra=""):
        return ('hostname = "host.example.com"\n'
                'domain = "example.com"\n'
                'queue_dir = "%s"\n'
                'aliases = "%s"\n'
                'log = "stderr"\n'
                'delivery = queue\n%s%s'
                % (queue_dir or cls.spool, cls.path("aliases"), extra, smarthosts))

    @classmethod
    def write_config(cls, name, text):
        """A system config: DIR/confs/NAME/relayq.conf, 0640 root:GROUP."""
        d = cls.path("confs", name)
        os.makedirs(d, 0o755, exist_ok=True)
        os.chmod(d, 0o755)      # the overlay's root takes these modes
        path = os.path.join(d, "relayq.conf")
        with open(path, "w") as f:
            f.write(text)
        cls.own(path, 0o640)
        return path

    @classmethod
    def make_configs(cls):
        # The system config: a password in it and a password_file.
        cls.system_conf = cls.write_config("system", cls.config_text(
            cls.smarthost_conf("password") +
            cls.smarthost_conf("password_file", name="backup")))
        for source in SECRETS:
            for mech in ("PLAIN", "LOGIN"):
                cls.write_config("%s-%s" % (source, mech), cls.config_text(
                    cls.smarthost_conf(source, auth='{ "%s" }' % mech)))
        # Configs a user may read and name with -C: one for the system
        # spool, one for a spool of the user's own.
        cls.userconf = cls.path("user-system-spool.conf")
        cls.userconf_own = cls.path("user-own-spool.conf")
        for path, spool in ((cls.userconf, cls.spool),
                            (cls.userconf_own, cls.userspool)):
            with open(path, "w") as f:
                f.write(cls.config_text("", queue_dir=spool))
            os.chmod(path, 0o644)

    # --- running commands ---------------------------------------------------

    @classmethod
    def as_user(cls, user, argv):
        if user is None:
            return list(argv)
        return ["setpriv", "--reuid=%d" % user.pw_uid, "--regid=%d" % user.pw_gid,
                "--init-groups", "--"] + list(argv)

    @classmethod
    def wrap(cls, conf, argv):
        """argv in a mount namespace where SYSCONFDIR/relayq.conf is the
        test's config NAME and relayq-deliver is at its compiled-in path
        (read-only overlays: nothing else changes)."""
        return ["unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", 'mount -t overlay relayq-test -o "lowerdir=$3:$4" "$4" '
                '&& mount -t overlay relayq-test -o "lowerdir=$1:$2" "$2" '
                '&& shift 4 && exec "$@"', "sh", cls.path("confs", conf),
                cls.sysconfdir, cls.deliver_layer, cls.deliver_anchor] + list(argv)

    def environ(self, extra=None):
        env = {"PATH": SAFE_PATH, "CANARY": CANARY, "HOME": "/nonexistent-home",
               "TZ": "UTC", "LD_LIBRARY_PATH": "/nonexistent-lib"}
        env.update(extra or {})
        return env

    def command(self, user, args, conf="system", argv0="sendmail", via=()):
        """via: a program that execs the rest, run just before setpriv."""
        return self.wrap(conf, list(via) + self.as_user(
            user, [self.path("bin", argv0)] + list(args)))

    def relayq(self, user, args, input=b"", conf="system", argv0="sendmail",
               env=None, via=(), timeout=60):
        return subprocess.run(self.command(user, args, conf, argv0, via), input=input,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=self.environ(env), timeout=timeout)

    def plain(self, user, argv, conf=None):
        """Any program as user (in the namespace when conf is given)."""
        argv = self.as_user(user, argv)
        if conf:
            argv = self.wrap(conf, argv)
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=self.environ())

    def assertExit(self, proc, code):
        self.assertEqual(proc.returncode, code, "exit %d, stderr: %r"
                         % (proc.returncode, proc.stderr))

    def assertDenied(self, user, path, conf=None):
        p = self.plain(user, ["cat", path], conf)
        self.assertNotEqual(p.returncode, 0, "%s could read %s" % (user.pw_name, path))
        self.assertIn(b"Permission denied", p.stderr)
        self.assertEqual(p.stdout, b"")

    def assertNoSecret(self, text, what=""):
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        for user, password in SECRETS.values():
            for bad in (password, b64(password.encode()),
                        b64(b"\0" + user.encode() + b"\0" + password.encode()),
                        b64(user.encode() + b"\0" + user.encode() + b"\0" +
                            password.encode())):
                self.assertNotIn(bad, text, "secret shown %s" % what)

    # --- the queue ------------------------------------------------------------

    @staticmethod
    def read(path):
        with open(path, "rb") as f:
            return f.read()

    def ids(self):
        return set(os.listdir(os.path.join(self.spool, "env")))

    def counts(self):
        return {sub: len(os.listdir(os.path.join(self.spool, sub)))
                for sub in ("tmp", "data", "env")}

    def submit(self, user, args=("rcpt@example.org",), message=MSG, **kw):
        before = self.ids()
        p = self.relayq(user, ["-odq", "-i"] + list(args), input=message, **kw)
        self.assertExit(p, 0)
        new = self.ids() - before
        self.assertEqual(len(new), 1, p.stderr)
        return new.pop()

    def wait_for(self, cond, what):
        deadline = time.monotonic() + WAIT
        while not cond():
            self.assertLess(time.monotonic(), deadline, "waited for " + what)
            time.sleep(0.01)

    def wait_arrival(self):
        self.assertTrue(self.arrived.acquire(timeout=WAIT),
                        "no message reached the smarthost")

    def setUp(self):
        for d in (self.out,) + tuple(os.path.join(self.spool, s) for s in SPOOL_SUBDIRS):
            for name in os.listdir(d):
                os.unlink(os.path.join(d, name))
        for name in os.listdir(self.userspool):
            shutil.rmtree(os.path.join(self.userspool, name))
        while self.arrived.acquire(blocking=False):
            pass
        del self.server.messages[:]

    # --- submit and mailq ------------------------------------------------------

    def test_user_submits_into_a_spool_it_cannot_read(self):
        qid = self.submit(self.alice)
        env = parse_envelope(self.read(os.path.join(self.spool, "env", qid)))
        self.assertEqual(env["sender"], "%s@example.com" % self.alice.pw_name)
        self.assertEqual([r["addr"] for r in env["rcpts"]], ["rcpt@example.org"])
        for sub in ("data", "env"):
            path = os.path.join(self.spool, sub, qid)
            st = os.stat(path)
            self.assertEqual(st.st_gid, self.gid, path)
            self.assertEqual(stat.S_IMODE(st.st_mode) & 0o027, 0, oct(st.st_mode))
            self.assertDenied(self.alice, path)
        self.assertIn(b"body", self.read(os.path.join(self.spool, "data", qid)))
        p = self.plain(self.alice, ["ls", os.path.join(self.spool, "env")])
        self.assertNotEqual(p.returncode, 0)
        self.assertNotIn(qid.encode(), p.stdout)
        self.assertEqual(self.counts()["tmp"], 0)

    def test_mailq_as_user(self):
        qid = self.submit(self.bob)
        for argv0, args in (("mailq", []), ("sendmail", ["-bp"])):
            p = self.relayq(self.alice, args, argv0=argv0)
            self.assertExit(p, 0)
            self.assertIn(qid.encode(), p.stdout)
            self.assertIn(b"rcpt@example.org", p.stdout)

    def test_user_cannot_read_config_secrets_or_others_mail(self):
        theirs = [self.submit(self.bob), self.submit(None)]
        self.assertDenied(self.alice, self.system_conf)
        self.assertDenied(self.alice, os.path.join(self.sysconfdir, "relayq.conf"),
                          conf="system")
        self.assertDenied(self.alice, self.secret)
        for qid in theirs:
            for sub in ("data", "env"):
                self.assertDenied(self.alice, os.path.join(self.spool, sub, qid))
            # Nor through relayq: the queue tools are for operators.
            p = self.relayq(self.alice, ["--show", qid], argv0="relayq")
            self.assertExit(p, 77)
            self.assertNotIn(b"security", p.stdout + p.stderr)

    # --- what the user may learn -------------------------------------------------

    def test_print_config_masks_the_password(self):
        p = self.relayq(self.alice, ["-bP"])
        self.assertExit(p, 0)
        out = p.stdout.decode()
        self.assertIn('password = "********"', out)
        self.assertIn('password_file = "%s"' % self.secret, out)
        self.assertNoSecret(p.stdout + p.stderr)

    def test_print_config_of_a_named_protected_file_is_refused(self):
        """-C FILE drops the group first: the system config by its own path
        cannot be read, a clear error and EX_CONFIG."""
        p = self.relayq(self.alice, ["-bP", "-C", self.system_conf])
        self.assertExit(p, 78)
        self.assertIn(self.system_conf.encode(), p.stderr)
        self.assertIn(b"Permission denied", p.stderr)
        self.assertEqual(p.stdout, b"")
        self.assertNoSecret(p.stderr)

    def test_verbose_delivery_shows_no_password(self):
        for source, (user, _) in SECRETS.items():
            for mech in ("PLAIN", "LOGIN"):
                with self.subTest(source=source, mech=mech):
                    del self.server.messages[:]
                    p = self.relayq(self.alice, ["-v", "-odi", "-i", "rcpt@example.org"],
                                    input=MSG, conf="%s-%s" % (source, mech))
                    self.assertExit(p, 0)
                    self.wait_arrival()
                    self.assertEqual([m.auth for m in self.server.messages], [user])
                    err = p.stderr.decode()
                    self.assertIn("AUTH %s" % mech, err)
                    self.assertIn("235", err)
                    self.assertNoSecret(err, "in the -v transcript")
                    self.assertNoSecret(p.stdout)
                    self.assertEqual(self.ids(), set())

    def test_errors_never_show_the_password(self):
        password = SECRETS["password"][1]
        sh = self.smarthost_conf("password")
        cases = {
            # The file fails after the password was read.
            "later-key": sh.replace("timeout = 20s", "timeout = 20s\n port = 99999"),
            "later-section": sh + "smarthost second {\n host = \"bad host\"\n}\n",
            "quote-not-closed": sh.replace('"%s"' % password, '"%s' % password),
            "control-char": sh.replace(password, password + "\x01"),
            "missing-equals": sh.replace(' password = ', ' password '),
            "list-value": sh.replace('"%s"' % password, '{"%s"}' % password),
            "trailing-comma": sh.replace('"%s"' % password, '"%s",' % password),
        }
        for name, text in cases.items():
            with self.subTest(case=name):
                self.write_config("broken-" + name, self.config_text(text))
                for args in (["-bP"], ["-odq", "rcpt@example.org"]):
                    p = self.relayq(self.alice, args, input=MSG, conf="broken-" + name)
                    self.assertExit(p, 78)
                    self.assertIn(b"relayq.conf:", p.stderr)
                    self.assertNoSecret(p.stdout + p.stderr, "in %s" % name)
        # The smarthost refuses the password: deferred, and still not shown.
        self.write_config("wrong-password", self.config_text(self.smarthost_conf(
            "password", password='"Wrong-Pw-%s"' % password)))
        p = self.relayq(self.alice, ["-v", "-odi", "rcpt@example.org"], input=MSG,
                        conf="wrong-password")
        self.assertExit(p, 0)
        self.assertIn(b"535", p.stderr)
        self.assertNoSecret(p.stderr)
        self.assertNotIn(b"Wrong-Pw-", p.stderr)
        self.assertEqual(len(self.ids()), 1)

    def test_error_for_an_unquoted_password_shows_none_of_it(self):
        """libconfuse stops an unquoted value at a space and reports the
        next word as an unknown key; a caller who cannot read the config
        gets only file and line (main.c config_failed)."""
        sh = self.smarthost_conf("password", password="correct horse-staple battery")
        self.write_config("unquoted", self.config_text(sh))
        p = self.relayq(self.alice, ["-bP"], conf="unquoted")
        self.assertExit(p, 78)
        self.assertNotIn(b"horse-staple", p.stderr)
        self.assertIn(b"configuration error", p.stderr)

    # --- password_command and the delivery processes -------------------------------

    def recorded(self):
        with open(os.path.join(self.out, "pwcmd.json")) as f:
            return json.load(f)

    def assertCommandRecord(self, rec, user):
        """password_command ran with nothing of the caller, as the caller
        with the relayq group, from a delivery process with the same ids."""
        self.assertEqual(rec["env"], {"PATH": SAFE_PATH, "PWD": "/"})
        self.assertEqual(rec["cwd"], "/")
        self.assertEqual(rec["fds"], {"0": "/dev/null", "1": rec["fds"]["1"],
                                      "2": rec["fds"]["2"]})
        self.assertTrue(rec["fds"]["1"].startswith("pipe:"), rec["fds"])
        for who in ("self", "parent"):
            uids, gids, groups = rec[who]
            self.assertEqual(uids, [user.pw_uid] * 4, who)
            self.assertEqual(gids, [user.pw_gid] + [self.gid] * 3, who)
            self.assertNotIn(self.gid, groups, who)
        self.assertNotIn(CANARY, json.dumps(rec))

    def test_password_command_environment_foreground(self):
        p = self.relayq(self.alice, ["-odi", "-i", "rcpt@example.org"], input=MSG,
                        conf="password_command-PLAIN")
        self.assertExit(p, 0)
        self.wait_arrival()
        self.assertEqual([m.auth for m in self.server.messages],
                         [SECRETS["password_command"][0]])
        self.assertCommandRecord(self.recorded(), self.alice)
        self.assertDenied(self.alice, os.path.join(self.out, "pwcmd.json"))

    def test_setgid_front_end_runs_only_the_installed_deliver(self):
        """A relayq-deliver next to the setgid front end (where an
        unprivileged build tree keeps it) is never run: only the compiled-in
        path, which users cannot write."""
        planted = self.path("bin", "relayq-deliver")
        marker = self.path("out", "planted-ran")
        with open(planted, "w") as f:
            f.write("#!/bin/sh\ntouch %s\n" % marker)
        os.chmod(planted, 0o755)
        self.addCleanup(os.unlink, planted)
        p = self.relayq(self.alice, ["-odi", "-i", "rcpt@example.org"], input=MSG)
        self.assertExit(p, 0)
        self.wait_arrival()
        self.assertEqual(len(self.server.messages), 1)
        self.assertFalse(os.path.exists(marker), "the planted program ran")
        self.assertEqual(self.ids(), set())

    def test_background_delivery_credentials(self):
        p = subprocess.Popen(self.command(self.alice, ["-odb", "-i", "rcpt@example.org"],
                                          conf="password_command-LOGIN"),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=self.environ())
        out, err = p.communicate(MSG, timeout=WAIT)
        self.assertEqual(p.returncode, 0, err)
        self.wait_arrival()
        rec = self.recorded()
        self.assertCommandRecord(rec, self.alice)
        # The detached delivery process, not the front end the caller ran.
        self.assertNotEqual(rec["ppid"], p.pid)
        self.wait_for(lambda: not self.ids(), "the delivered message to go")

    # --- naming files drops the group ------------------------------------------------

    def test_config_option_drops_the_group(self):
        before = self.counts()
        p = self.relayq(self.alice, ["-C", self.userconf, "-odq", "rcpt@example.org"],
                        input=MSG)
        self.assertIn(p.returncode, (73, 75), p.stderr)
        self.assertIn(b"Permission denied", p.stderr)
        self.assertIn(self.spool.encode(), p.stderr)
        self.assertEqual(self.counts(), before)
        # A spool of the user's own works, and gets no relayq group.
        p = self.relayq(self.alice, ["-C", self.userconf_own, "-odq", "rcpt@example.org"],
                        input=MSG)
        self.assertExit(p, 0)
        mine = os.listdir(os.path.join(self.userspool, "data"))
        self.assertEqual(len(mine), 1)
        st = os.stat(os.path.join(self.userspool, "data", mine[0]))
        self.assertEqual((st.st_uid, st.st_gid), (self.alice.pw_uid, self.alice.pw_gid))
        self.assertEqual(self.counts(), before)

    def test_log_file_option_is_ignored(self):
        """-X names a traffic log; like Postfix, relayq accepts it and never
        opens the file, so it can be no way to write one with the group."""
        before = self.counts()
        log = self.path("userspool", "x.log")
        p = self.relayq(self.alice, ["-X", log, "-odq", "rcpt@example.org"], input=MSG)
        self.assertExit(p, 0)
        self.assertFalse(os.path.exists(log))
        after = self.counts()
        self.assertEqual((after["data"], after["env"]), (before["data"] + 1, before["env"] + 1))
        self.assertNoSecret(p.stderr)

    def test_config_variable_is_ignored_when_setgid(self):
        qid = self.submit(self.alice, env={"RELAYQ_CONFIG": self.userconf_own})
        self.assertIn(qid, self.ids())
        self.assertFalse(os.path.exists(os.path.join(self.userspool, "env")) and
                         os.listdir(os.path.join(self.userspool, "env")))

    # --- hostile arguments ----------------------------------------------------------------

    def test_line_breaks_in_arguments_are_refused(self):
        cases = [
            ["-f", "a@example.com\r\nRCPT TO:<evil@example.org>", "rcpt@example.org"],
            ["-f", "a@example.com\nBcc: evil@example.org", "rcpt@example.org"],
            ["-F", "Name\nBcc: evil@example.org", "rcpt@example.org"],
            ["-F", "Name\r", "rcpt@example.org"],
            ["-V", "envid\r\nRCPT TO:<evil@example.org>", "rcpt@example.org"],
            ["-N", "success\r\nRCPT TO:<evil@example.org>", "rcpt@example.org"],
            ["rcpt@example.org\r\nRCPT TO:<evil@example.org>"],
            ["rcpt@example.org\nevil@example.org"],
        ]
        for args in cases:
            with self.subTest(args=args):
                before = self.counts()
                p = self.relayq(self.alice, ["-odq"] + args, input=MSG)
                self.assertIn(p.returncode, (64, 65), p.stderr)
                self.assertNotEqual(p.stderr, b"")
                self.assertEqual(self.counts(), before)

    def test_caller_ignoring_sigchld_still_gets_success(self):
        """Ignored signals survive exec; waitpid() must still work, or a
        queued message is reported as lost (and sent twice on a retry)."""
        before = self.ids()
        p = self.relayq(self.alice, ["-odq", "rcpt@example.org"], input=MSG,
                        via=HOSTILE_SIGNALS)
        self.assertExit(p, 0)
        self.assertEqual(len(self.ids() - before), 1)

    # --- the running processes ---------------------------------------------------------------

    def stalled(self, args, conf="system", user=None, extra_fd=None, via=()):
        """Start relayq as user (alice by default) with stdin open and
        nothing on it; return (proc, parent pid, child pid) once the child
        is blocked reading stdin."""
        user = user or self.alice

        def hostile():
            # Core dumps allowed, few descriptors, one left open high up.
            resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2)
            resource.setrlimit(resource.RLIMIT_NOFILE, (20, 1024))
        p = subprocess.Popen(self.command(user, args, conf, via=via), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=self.environ(), preexec_fn=hostile,
                             pass_fds=[extra_fd] if extra_fd is not None else [])
        self.addCleanup(lambda: p.poll() is None and p.kill())
        deadline = time.monotonic() + WAIT
        child = None
        while time.monotonic() < deadline:
            kids = children(p.pid)
            try:
                exe = os.readlink("/proc/%d/exe" % p.pid)
            except OSError:
                exe = None
            if kids and exe == self.binary:
                child = kids[0]
                state = reading_stdin(child)
                if state or (state is None and
                             proc_ids(child)[1] == [user.pw_gid] * 4):
                    return p, p.pid, child
            if p.poll() is not None:
                break
            time.sleep(0.01)
        p.kill()
        out, err = p.communicate()
        self.fail("relayq never blocked on stdin (child %r): %r" % (child, err))

    def assertUnprivileged(self, pid, user):
        uids, gids, groups = proc_ids(pid)
        self.assertEqual(uids, [user.pw_uid] * 4)
        self.assertEqual(gids, [user.pw_gid] * 4)
        self.assertNotIn(self.gid, groups)

    def test_stdin_is_read_without_the_group(self):
        fd = os.open(self.userconf, os.O_RDONLY)
        high = fcntl.fcntl(fd, fcntl.F_DUPFD, 50)   # left open for relayq
        os.close(fd)
        try:
            p, parent, child = self.stalled(["-odq", "rcpt@example.org"], extra_fd=high,
                                            via=HOSTILE_SIGNALS)
        finally:
            os.close(high)
        # The reader of stdin: the caller's ids only, for good.
        self.assertUnprivileged(child, self.alice)
        self.assertTrue(reading_stdin(child) in (True, None))
        # Its parent holds the group and does not read stdin.
        uids, gids, groups = proc_ids(parent)
        self.assertEqual(uids, [self.alice.pw_uid] * 4)
        self.assertEqual(gids, [self.alice.pw_gid] + [self.gid] * 3)
        self.assertFalse(reading_stdin(parent))
        # Not as the caller left them: none blocked, none ignored.
        for pid in (parent, child):
            blocked, ignored = signal_masks(pid)
            self.assertEqual(blocked, 0, "pid %d" % pid)
            for sig in IGNORED:
                self.assertFalse(ignored & (1 << (sig - 1)), "%s ignored" % sig)
        # Core dumps off in both, whatever the caller allowed.
        self.assertEqual(core_limit(parent), ["0", "0"])
        self.assertEqual(core_limit(child), ["0", "0"])
        # Nothing inherited: stdio, the socket to the parent and the
        # queue file being written; no config, no caller descriptor.
        for pid, what in ((child, "child"), (parent, "parent")):
            fds = fd_targets(pid)
            self.assertEqual(sorted(fds)[:3], [0, 1, 2], what)
            rest = sorted(v for k, v in fds.items() if k > 2)
            self.assertEqual(len(rest), 2, "%s: %r" % (what, fds))
            self.assertTrue(rest[0].startswith(os.path.join(self.spool, "tmp") + "/"),
                            "%s: %r" % (what, fds))
            self.assertTrue(rest[1].startswith("socket:"), "%s: %r" % (what, fds))
        out, err = p.communicate(MSG, timeout=WAIT)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(len(self.ids()), 1)

    def test_smtp_dialogue_runs_without_the_group(self):
        """As contrib/relayq-smtp@.service runs it too: a user that is not
        in the group, the binary setgid."""
        p, parent, child = self.stalled(["-bs"])
        self.assertUnprivileged(child, self.alice)
        self.assertEqual(proc_ids(parent)[1], [self.alice.pw_gid] + [self.gid] * 3)
        out, err = p.communicate(b"QUIT\r\n", timeout=WAIT)
        self.assertEqual(p.returncode, 0, err)
        self.assertTrue(out.startswith(b"220 "), out)


# The password command: records what it was given, then prints the secret.
# "sh -p": without it dash gives up the setgid group at once. The
# environment is taken by env(1) from the shell, which adds PWD; Python
# would add LC_CTYPE to its own.
PWCMD = """#!/bin/sh -p
env -0 > {out}/env0 && exec /usr/bin/python3 -I {record}
"""
PWRECORD = """import json, os

def ids(pid):
    out = [None, None, []]
    for line in open("/proc/%d/status" % pid):
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid"):
            out[0 if key == "Uid" else 1] = [int(x) for x in value.split()]
        elif key == "Groups":
            out[2] = sorted(int(x) for x in value.split())
    return out

fds = {{}}
d = "/proc/self/fd"
for name in os.listdir(d):
    try:
        target = os.readlink(os.path.join(d, name))
    except OSError:
        continue
    if not target.startswith("/proc/"):
        fds[name] = target
env = dict(v.split("=", 1) for v in
           open("{out}/env0").read().split("\\0") if v)
rec = {{"env": env, "cwd": os.getcwd(), "fds": fds,
       "self": ids(os.getpid()), "parent": ids(os.getppid()),
       "ppid": os.getppid()}}
with open("{out}/pwcmd.json", "w") as f:
    json.dump(rec, f)
print("{password}")
"""


if __name__ == "__main__":
    main()
