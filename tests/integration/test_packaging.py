"""System integration files in contrib/ and the install layout.

Quick checks for every CI run: the systemd units pass `systemd-analyze
verify` (skipped without systemd) and their command lines work with relayq,
the php.ini sendmail_path works as PHP runs it (through /bin/sh), the cron.d
line is a valid cron line whose command works, the Debian maintainer
scripts parse, and `make install DESTDIR=...` / `make uninstall` lay out and
remove what they should. The .deb itself is too slow to build here: run
contrib/build-deb (it also runs lintian).
"""
import grp
import os
import re
import selectors
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import unittest

from harness import RELAYQ, SRCDIR, SpoolTest, main

CONTRIB = os.path.join(SRCDIR, "contrib")
DEBIAN = os.path.join(SRCDIR, "debian")
UNITS = ("relayq.service", "relayq-queue.service", "relayq-queue.timer")
SMTP_UNITS = ("relayq-smtp.socket", "relayq-smtp@.service")   # the -bs listener
INSTALLED = "/usr/sbin/relayq"


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def unit_settings(text):
    """[Section] key=value lines -> {(section, key): [values]}."""
    out, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault((section, key.strip()), []).append(value.strip())
    return out


def read_until(proc, needle, timeout=30):
    """stderr of proc up to the line holding needle (bounded wait)."""
    seen = b""
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not sel.select(left):
            break
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
    sel.close()
    return seen


class Units(SpoolTest):
    """contrib/*.service and *.timer."""

    def setUp(self):
        super().setUp()
        self.units = {u: read(os.path.join(CONTRIB, u)) for u in UNITS}

    def test_systemd_analyze_verify(self):
        tool = shutil.which("systemd-analyze")
        if tool is None:
            self.skipTest("systemd-analyze not installed")
        # verify insists that ExecStart= exists: point it at the build.
        d = tempfile.mkdtemp(prefix="relayq-units-")
        try:
            paths = []
            units = dict(self.units)
            units.update((u, read(os.path.join(CONTRIB, u))) for u in SMTP_UNITS
                         if os.path.exists(os.path.join(CONTRIB, u)))
            for name, text in units.items():
                p = os.path.join(d, name)
                with open(p, "w") as f:
                    f.write(text.replace(INSTALLED, os.path.abspath(RELAYQ)))
                paths.append(p)
            p = subprocess.run([tool, "verify", "--man=no"] + paths,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=60)
            # Unknown keys are only warnings: any output is a failure.
            self.assertEqual((p.returncode, p.stderr, p.stdout), (0, b"", b""))
        finally:
            shutil.rmtree(d)

    def test_sandbox_and_identity(self):
        for name in ("relayq.service", "relayq-queue.service"):
            with self.subTest(unit=name):
                s = unit_settings(self.units[name])
                svc = lambda k: s.get(("Service", k), [])
                self.assertEqual(svc("User"), ["relayq"])
                self.assertEqual(svc("Group"), ["relayq"])
                self.assertEqual(svc("ProtectSystem"), ["strict"])
                self.assertEqual(svc("ReadWritePaths"), ["/var/spool/relayq"])
                self.assertEqual(svc("NoNewPrivileges"), ["yes"])
                self.assertEqual(svc("PrivateTmp"), ["yes"])
                self.assertEqual(svc("ProtectHome"), ["yes"])
                self.assertEqual(svc("CapabilityBoundingSet"), [""])
                # getaddrinfo(AI_ADDRCONFIG) needs netlink; SMTP needs inet.
                fams = " ".join(svc("RestrictAddressFamilies")).split()
                self.assertLessEqual({"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"},
                                     set(fams))
        # The -bs listener runs unprivileged and needs the setgid bit to
        # work, so that its parser child can drop the group (privsep.h).
        smtp = unit_settings(read(os.path.join(CONTRIB, "relayq-smtp@.service")))
        self.assertEqual(smtp[("Service", "Group")], ["nogroup"])
        self.assertNotIn(("Service", "NoNewPrivileges"), smtp)
        self.assertNotIn(("Service", "RestrictSUIDSGID"), smtp)
        daemon = unit_settings(self.units["relayq.service"])
        timer = unit_settings(self.units["relayq-queue.timer"])
        self.assertEqual(daemon[("Unit", "Conflicts")], ["relayq-queue.timer"])
        self.assertEqual(timer[("Unit", "Conflicts")], ["relayq.service"])
        self.assertEqual(timer[("Timer", "Unit")], ["relayq-queue.service"])
        self.assertEqual(daemon[("Install", "WantedBy")], ["multi-user.target"])

    def exec_start(self, name):
        argv = shlex.split(unit_settings(self.units[name])[("Service", "ExecStart")][0])
        self.assertEqual(argv[0], INSTALLED)
        return argv[1:]

    def test_timer_command_runs_the_queue(self):
        args = self.exec_start("relayq-queue.service")
        self.assertExit(self.submit(["a@example.org"], b"Subject: t\n\nx\n"), 0)
        p = self.spool.run(args, argv0="relayq")
        # No smarthost configured: the run succeeds and the mail waits.
        self.assertExit(p, 0)
        self.assertEqual(len(self.spool.ids()), 1)

    def test_daemon_command_starts_and_stops(self):
        args = self.exec_start("relayq.service")
        self.assertEqual(args, ["-q5m"])
        proc = subprocess.Popen(self.spool.command("relayq") + args,
                                env=self.spool.environ(), stderr=subprocess.PIPE)
        try:
            seen = read_until(proc, b"queue daemon started")
            self.assertIn(b"interval 300s", seen)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn(b"queue daemon stopped", err)


class PhpIni(SpoolTest):
    """contrib/php-relayq.ini: PHP runs popen(sendmail_path [+ ' ' + extra])."""

    def sendmail_path(self):
        m = re.search(r'^sendmail_path\s*=\s*"([^"]*)"\s*$',
                      read(os.path.join(CONTRIB, "php-relayq.ini")), re.M)
        self.assertIsNotNone(m, "no quoted sendmail_path")
        path = m.group(1)
        self.assertEqual(shlex.split(path)[0], "/usr/sbin/sendmail")
        sendmail = " ".join(shlex.quote(a) for a in self.spool.command("sendmail"))
        return sendmail + path[len("/usr/sbin/sendmail"):]

    def php_mail(self, extra, message):
        cmd = self.sendmail_path() + (" " + extra if extra else "")
        return subprocess.run(["sh", "-c", cmd], input=message,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=self.spool.environ(), timeout=60)

    def test_mail_recipients_from_headers(self):
        # What mail('a@example.org', 'Hi', $body, 'Cc: b@...') writes.
        msg = (b"To: a@example.org\nSubject: Hi\nCc: b@example.org\n"
               b"Bcc: c@example.org\n\nline one\n.\nline after a lone dot\n")
        p = self.php_mail("", msg)
        self.assertExit(p, 0)
        ids = self.spool.ids()
        self.assertEqual(len(ids), 1)
        env = self.spool.envelope(ids[0])
        self.assertEqual(sorted(r["addr"] for r in env["rcpts"]),
                         ["a@example.org", "b@example.org", "c@example.org"])
        queued = self.spool.message(ids[0])
        self.assertIn(b"\n.\nline after a lone dot\n", queued)   # -i
        self.assertNotIn(b"c@example.org", queued)                # -t drops Bcc

    def test_fifth_argument_sets_sender(self):
        p = self.php_mail("-fbounce@example.net",
                          b"To: a@example.org\nSubject: Hi\n\nbody\n")
        self.assertExit(p, 0)
        env = self.spool.envelope(self.spool.ids()[0])
        self.assertEqual(env["sender"], "bounce@example.net")


# Cron field ranges: minute, hour, day of month, month, day of week.
CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def cron_field_ok(field, lo, hi):
    for part in field.split(","):
        base, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            return False
        if base == "*":
            continue
        a, _, b = base.partition("-")
        if not a.isdigit() or (b and not b.isdigit()):
            return False
        if not lo <= int(a) <= hi or (b and not int(a) <= int(b) <= hi):
            return False
    return True


class Cron(SpoolTest):
    """contrib/relayq.cron, an /etc/cron.d file."""

    def entries(self):
        text = read(os.path.join(CONTRIB, "relayq.cron"))
        self.assertTrue(text.endswith("\n"), "cron ignores a last line without newline")
        out = []
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", line):
                continue                                  # MAILTO="" and the like
            out.append(line.split(None, 6))
        return out

    def test_fields(self):
        entries = self.entries()
        self.assertEqual(len(entries), 1)
        fields = entries[0]
        self.assertEqual(len(fields), 7, fields)
        for f, (lo, hi) in zip(fields[:5], CRON_RANGES):
            self.assertTrue(cron_field_ok(f, lo, hi), "bad cron field %r" % f)
        self.assertEqual(fields[5], "relayq")
        self.assertNotIn("%", fields[6], "cron turns % into a newline")

    def test_command_runs_the_queue(self):
        argv = shlex.split(self.entries()[0][6])
        self.assertEqual(argv[0], INSTALLED)
        self.assertExit(self.submit(["a@example.org"], b"Subject: t\n\nx\n"), 0)
        self.assertExit(self.spool.run(argv[1:], argv0="relayq"), 0)


class Debian(unittest.TestCase):
    """debian/ maintainer scripts, contrib/build-deb (the build itself is
    slow) and the entrypoint script in contrib/Dockerfile.php-example."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="relayq-scripts-")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def docker_entrypoint(self):
        text = read(os.path.join(CONTRIB, "Dockerfile.php-example"))
        m = re.search(r"^COPY --chmod=0755 <<'EOF' /usr/local/bin/relayq-entrypoint\n"
                      r"(.*?)^EOF$", text, re.M | re.S)
        self.assertIsNotNone(m, "no entrypoint heredoc in the Dockerfile")
        path = os.path.join(self.tmp, "relayq-entrypoint")
        with open(path, "w") as f:
            f.write(m.group(1))
        return path

    def test_scripts_parse(self):
        scripts = [os.path.join(DEBIAN, n) for n in ("relayq.postinst", "relayq.postrm")]
        scripts.append(os.path.join(CONTRIB, "build-deb"))
        scripts.append(self.docker_entrypoint())
        for s in scripts:
            with self.subTest(script=s):
                self.assertTrue(os.access(s, os.R_OK), s)
                p = subprocess.run(["sh", "-n", s], stderr=subprocess.PIPE)
                self.assertEqual((p.returncode, p.stderr), (0, b""))
        self.assertTrue(os.access(os.path.join(CONTRIB, "build-deb"), os.X_OK))
        self.assertTrue(os.access(os.path.join(DEBIAN, "rules"), os.X_OK))


def builddir():
    return os.path.dirname(os.path.dirname(os.path.abspath(RELAYQ)))


class MakeInstall(unittest.TestCase):
    """make install / uninstall from the build tree into a scratch prefix."""

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="relayq-install-")
        mk = os.path.join(builddir(), "Makefile")
        if not os.path.exists(mk) or "relayq_privileged" not in read(mk):
            self.skipTest("no build tree Makefile with relayq's install hooks")

    def tearDown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def make(self, *args):
        env = {k: v for k, v in os.environ.items()
               if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
        p = subprocess.run(["make", "-s", "-C", builddir()] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=env, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout.decode(errors="replace"))
        return p.stdout.decode(errors="replace")

    def files(self):
        out = []
        for top, dirs, files in os.walk(self.root):
            out += [os.path.relpath(os.path.join(top, f), self.root) for f in files]
        return sorted(out)

    def layout(self, **paths):
        return ["prefix=/usr", "sysconfdir=/etc", "localstatedir=/var"] + \
               ["%s=%s" % kv for kv in paths.items()]

    def test_destdir_install_and_uninstall(self):
        args = ["DESTDIR=" + self.root] + self.layout()
        out = self.make("install", *args)
        r = self.root
        sbin = os.path.join(r, "usr/sbin")
        self.assertTrue(stat.S_ISREG(os.lstat(os.path.join(sbin, "relayq")).st_mode))
        for link in ("sendmail", "mailq", "newaliases", "runq"):
            self.assertEqual(os.readlink(os.path.join(sbin, link)), "relayq")
        deliver = os.path.join(r, "usr/libexec/relayq/relayq-deliver")
        self.assertTrue(stat.S_ISREG(os.lstat(deliver).st_mode))
        # Staged (DESTDIR): no special bits, and the install says so.
        self.assertEqual(os.stat(os.path.join(sbin, "relayq")).st_mode & 0o7000, 0)
        self.assertEqual(os.stat(deliver).st_mode & 0o7000, 0)
        self.assertIn("without setgid", out)
        conf = os.path.join(r, "etc/relayq.conf")
        self.assertEqual(stat.S_IMODE(os.stat(conf).st_mode), 0o640)
        self.assertEqual(read(conf), read(os.path.join(SRCDIR, "etc/relayq.conf")))
        for d in ("", "tmp", "data", "env", "failed", "corrupt"):
            st = os.stat(os.path.join(r, "var/spool/relayq", d))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o770, d)

        self.make("uninstall", *args)
        self.assertEqual(self.files(), [])
        self.assertFalse(os.path.exists(os.path.join(r, "var/spool/relayq")))
        self.assertEqual([n for n in os.listdir(sbin)], [])
        self.assertFalse(os.path.exists(os.path.dirname(deliver)))

    def test_existing_config_is_kept(self):
        args = ["DESTDIR=" + self.root] + self.layout()
        conf = os.path.join(self.root, "etc/relayq.conf")
        os.makedirs(os.path.dirname(conf))
        with open(conf, "w") as f:
            f.write("# mine\n")
        os.chmod(conf, 0o600)
        out = self.make("install", *args)
        self.assertIn("keeping the existing", out)
        self.assertEqual(read(conf), "# mine\n")
        self.assertEqual(stat.S_IMODE(os.stat(conf).st_mode), 0o600)
        out = self.make("uninstall", *args)
        self.assertEqual(read(conf), "# mine\n")
        self.assertIn("keeping", out)

    def test_spool_with_mail_survives_uninstall(self):
        args = ["DESTDIR=" + self.root] + self.layout()
        self.make("install", *args)
        entry = os.path.join(self.root, "var/spool/relayq/env/X")
        with open(entry, "w") as f:
            f.write("queued\n")
        out = self.make("uninstall", *args)
        self.assertIn("not empty", out)
        self.assertEqual(read(entry), "queued\n")

    def test_root_install_sets_group_and_modes(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        # An existing group, so that the test never creates one.
        group = next((g for g in ("mail", "nogroup", "daemon") if _group(g)), None)
        if group is None:
            self.skipTest("no mail, nogroup or daemon group")
        gid = grp.getgrnam(group).gr_gid
        p = self.root
        args = ["prefix=" + p, "sysconfdir=%s/etc" % p, "localstatedir=%s/var" % p,
                "spooldir=%s/var/spool/relayq" % p, "RELAYQ_GROUP=" + group,
                "RELAYQ_PRIVILEGED=auto"]
        self.make("install", *args)
        for prog in ("sbin/relayq", "libexec/relayq/relayq-deliver"):
            st = os.stat(os.path.join(p, prog))
            self.assertEqual((st.st_gid, stat.S_IMODE(st.st_mode)), (gid, 0o2755), prog)
        st = os.stat(os.path.join(p, "etc/relayq.conf"))
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (0, gid, 0o640))
        for d in ("", "tmp", "data", "env", "failed", "corrupt"):
            st = os.stat(os.path.join(p, "var/spool/relayq", d))
            self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)),
                             (0, gid, 0o770), d)
        self.make("uninstall", *args)
        self.assertEqual(self.files(), [])


def _group(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


if __name__ == "__main__":
    main()
