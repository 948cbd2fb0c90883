"""A private Postfix instance on loopback as a real smarthost for relayq's tests.

Everything lives in one temporary directory: its own main.cf and master.cf,
queue and data directories, a Cyrus SASL sasldb with one user, the TLS
certificate (certs.Certs), a maillog file, and a capture directory into which
a pipe transport writes every message Postfix accepts (envelope and bytes).
The system's /etc/postfix and port 25 are never used. smtpd listens on two
free loopback ports: STARTTLS required on one, implicit TLS on the other; AUTH
PLAIN, LOGIN, CRAM-MD5 and SCRAM-SHA-256 from the sasldb (user "relayuser" in
realm relayq.test, which is also smtpd_sasl_local_domain, so the bare name and
relayuser@relayq.test both log in); an authenticated client may relay to any
domain, nobody else to any. The maillog shows each session's AUTH mechanism
and, on disconnect, its command counts (mail=20 ...).

Postfix must be started as root. unavailable() names what is missing; start()
raises Unavailable when Postfix does not come up, with its own words.
"""
import base64
import json
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

POSTFIX = "/usr/sbin/postfix"
SASLPASSWD2 = "/usr/sbin/saslpasswd2"
SASL_PLUGINS = ("/usr/lib/x86_64-linux-gnu/sasl2", "/usr/lib/aarch64-linux-gnu/sasl2",
                "/usr/lib/sasl2")
MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256")
CAPTURE_USER = "nobody"


class Unavailable(Exception):
    """Postfix cannot be used here; the message says why."""


def unavailable():
    """Why Postfix cannot run here, or None."""
    if os.geteuid() != 0:
        return "Postfix tests need root (postfix start)"
    for prog in (POSTFIX, SASLPASSWD2, "/usr/sbin/postconf"):
        if not os.access(prog, os.X_OK):
            return "%s not installed (contrib/install-deps installs it)" % prog
    try:
        pwd.getpwnam("postfix")
        pwd.getpwnam(CAPTURE_USER)
    except KeyError as e:
        return "missing user: %s" % e
    plugins = [d for d in SASL_PLUGINS if os.path.isdir(d)]
    if not plugins or not any(f.startswith("libscram") for f in os.listdir(plugins[0])):
        return "Cyrus SASL SCRAM plugin not installed (libsasl2-modules)"
    if not any(f.startswith("libsasldb") for f in os.listdir(plugins[0])):
        return "Cyrus SASL sasldb plugin not installed (libsasl2-modules-db)"
    return None


CAPTURE_SCRIPT = r'''
import base64, json, os, sys, time
out, sender, rcpts = sys.argv[1], sys.argv[2], sys.argv[3:]
data = sys.stdin.buffer.read()
name = "%d.%d.json" % (time.time_ns(), os.getpid())
tmp = os.path.join(out, "tmp", name)
with open(tmp, "w") as f:
    json.dump({"sender": sender, "rcpts": rcpts,
               "data": base64.b64encode(data).decode()}, f)
    f.flush()
    os.fsync(f.fileno())
os.rename(tmp, os.path.join(out, "new", name))
'''

MAIN_CF = """\
compatibility_level = 3.6
config_directory = {d}/etc
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.relayq.test
mydomain = relayq.test
myorigin = $myhostname
mydestination =
relay_domains =
mynetworks = 127.0.0.1/32
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
smtputf8_enable = yes
message_size_limit = 20480000
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
default_transport = capture
relay_transport = capture
local_transport = capture
virtual_transport = capture
capture_destination_recipient_limit = 1000
smtpd_banner = $myhostname ESMTP relayq-test
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = {d}/etc/sasl
smtpd_sasl_local_domain = {realm}
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous
smtpd_sasl_authenticated_header = yes
broken_sasl_auth_clients = no
"""

# No chroot anywhere (column 5 "n"): the instance's paths are outside any jail.
MASTER_CF = """\
127.0.0.1:{starttls} inet n - n - - smtpd
  -o syslog_name=postfix/starttls
  -o smtpd_tls_security_level=encrypt
127.0.0.1:{smtps} inet n - n - - smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
capture   unix  -       n       n       -       -       pipe
  null_sender= user={capture_user}
  argv=/usr/bin/python3 {d}/capture.py {d}/captured ${{sender}} ${{recipient}}
"""

SASL_CONF = """\
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: {d}/sasldb2
mech_list: {mechs}
"""


class Captured:
    """One delivery by the capture transport."""

    def __init__(self, path):
        with open(path) as f:
            j = json.load(f)
        self.path = path
        self.sender = j["sender"]
        self.rcpts = j["rcpts"]
        self.data = base64.b64decode(j["data"])   # LF line ends, as pipe(8) gives them


class Postfix:
    """One private instance. Use start() and stop() (or as a context manager)."""

    user = "relayuser"
    password = "pf-Secret-w0rd"
    realm = "relayq.test"

    def __init__(self, certs, extra_main_cf=""):
        """extra_main_cf: lines appended to main.cf (they override)."""
        self.certs = certs
        self.extra_main_cf = extra_main_cf
        self.root = None
        self.starttls_port = self.smtps_port = None
        self.running = False

    # --- lifecycle -----------------------------------------------------------
    def start(self, timeout=30):
        why = unavailable()
        if why:
            raise Unavailable(why)
        self.root = tempfile.mkdtemp(prefix="relayq-postfix-")
        os.chmod(self.root, 0o755)        # postfix and nobody must traverse it
        try:
            self._write_files()
            self._postfix("check")
            self.running = True           # so a half-started master is stopped
            self._postfix("start")
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        if self.running:
            subprocess.run([POSTFIX, "-c", self.etc, "stop"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
            self.running = False
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def etc(self):
        return os.path.join(self.root, "etc")

    def _write_files(self):
        d = self.root
        nobody = pwd.getpwnam(CAPTURE_USER)
        pf = pwd.getpwnam("postfix")
        for sub in ("etc", "etc/sasl", "queue", "data", "captured", "captured/tmp",
                    "captured/new"):
            os.mkdir(os.path.join(d, sub), 0o755)
        os.chown(os.path.join(d, "data"), pf.pw_uid, pf.pw_gid)
        os.chmod(os.path.join(d, "data"), 0o700)
        for sub in ("captured", "captured/tmp", "captured/new"):
            os.chown(os.path.join(d, sub), nobody.pw_uid, nobody.pw_gid)
        self.starttls_port, self.smtps_port = _free_ports(2)
        # Own copies of the certificate and key: the Certs directory is 0700.
        cert, key = os.path.join(d, "etc", "server.pem"), os.path.join(d, "etc", "server.key")
        shutil.copyfile(self.certs.server, cert)
        shutil.copyfile(self.certs.server_key, key)
        os.chown(key, 0, pf.pw_gid)
        os.chmod(key, 0o640)
        _write(os.path.join(d, "etc", "main.cf"), MAIN_CF.format(
            d=d, cert=cert, key=key, realm=self.realm) + self.extra_main_cf)
        _write(os.path.join(d, "etc", "master.cf"), MASTER_CF.format(
            d=d, starttls=self.starttls_port, smtps=self.smtps_port,
            capture_user=CAPTURE_USER))
        # Debian's Postfix reads $config_directory/sasl/smtpd.conf whatever
        # cyrus_sasl_config_path says; upstream's follows the parameter.
        _write(os.path.join(d, "etc", "sasl", "smtpd.conf"),
               SASL_CONF.format(d=d, mechs=" ".join(MECHANISMS)))
        _write(os.path.join(d, "capture.py"), CAPTURE_SCRIPT)
        sasldb = os.path.join(d, "sasldb2")
        p = subprocess.run([SASLPASSWD2, "-f", sasldb, "-p", "-c", "-u", self.realm,
                            self.user], input=self.password.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        if p.returncode != 0 or not os.path.exists(sasldb):
            raise Unavailable("saslpasswd2 failed: %s" % p.stdout.decode(errors="replace"))
        os.chown(sasldb, 0, pf.pw_gid)
        os.chmod(sasldb, 0o640)

    def _postfix(self, command):
        p = subprocess.run([POSTFIX, "-c", self.etc, command], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode(errors="replace")
        if p.returncode != 0 or "fatal" in out:
            raise Unavailable("postfix %s failed (exit %d): %s%s" % (
                command, p.returncode, out.strip(), self._log_tail()))

    def _wait_ready(self, timeout):
        """Both ports answer with the 220 banner (over TLS on the smtps port)."""
        deadline = time.monotonic() + timeout
        for port, tls in ((self.starttls_port, False), (self.smtps_port, True)):
            while True:
                try:
                    banner = self.banner(port, tls)
                    if banner.startswith(b"220 "):
                        break
                    problem = "banner %r" % banner
                except (OSError, ssl.SSLError) as e:
                    problem = str(e)
                if time.monotonic() > deadline:
                    raise Unavailable("postfix smtpd on port %d not ready: %s%s" % (
                        port, problem, self._log_tail()))
                time.sleep(0.05)

    def banner(self, port, tls=False):
        """Connect, read the greeting, say QUIT; returns the greeting line."""
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            if tls:
                ctx = ssl.create_default_context(cafile=self.certs.ca)
                s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
            f = s.makefile("rb")
            line = f.readline()
            s.sendall(b"QUIT\r\n")
            f.readline()
            return line

    # --- what arrived -------------------------------------------------------
    def messages(self):
        d = os.path.join(self.root, "captured", "new")
        return [Captured(os.path.join(d, n)) for n in sorted(os.listdir(d))]

    def wait_messages(self, count, match=lambda m: True, timeout=30):
        """The captured messages that match, once there are count of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.messages() if match(m)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def log(self):
        try:
            with open(os.path.join(self.root, "maillog"), "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_log(self, predicate, timeout=30):
        """The maillog once predicate(log) holds, or as it is at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            if predicate(text) or time.monotonic() > deadline:
                return text
            time.sleep(0.05)

    def _log_tail(self):
        if not self.root:
            return ""
        tail = self.log().splitlines()[-15:]
        return ("\nmaillog:\n" + "\n".join(tail)) if tail else ""


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _free_ports(n):
    """n distinct free loopback ports (held open together, so no repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


if __name__ == "__main__":
    import certs as _certs
    with Postfix(_certs.Certs()) as pf:
        print("postfix in %s: starttls %d, smtps %d" % (pf.root, pf.starttls_port,
                                                        pf.smtps_port), flush=True)
        try:
            input("press enter to stop\n")
        except EOFError:
            pass
