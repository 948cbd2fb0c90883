"""The benchmark's smarthost on loopback, and what it counted.

Postfix when it can run here (root, postfix and Cyrus SASL installed): a
private instance in a temporary directory, never /etc/postfix or port 25.
One smtpd port requires STARTTLS and AUTH (PLAIN, LOGIN from a sasldb),
another speaks plain SMTP to loopback clients for smtp-source; accepted
mail goes to the discard transport, so the smarthost's cost per message is
smtpd + cleanup writing (and fsyncing) its queue file, as in production.
Connections, TLS handshakes and accepted messages are counted from its
maillog, per port.

Otherwise aiosmtpd (tests/integration/smarthost.py) in a child process
with the same two ports; it is much slower than Postfix (Python), and the
report says which one was used.

Used by bench/run; the aiosmtpd child is this file run as a program.
"""
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

POSTFIX = "/usr/sbin/postfix"
SASLPASSWD2 = "/usr/sbin/saslpasswd2"
SASL_PLUGINS = ("/usr/lib/x86_64-linux-gnu/sasl2", "/usr/lib/aarch64-linux-gnu/sasl2",
                "/usr/lib/sasl2")
USER, PASSWORD = "bench", "bench-Secret-1"


class Unavailable(Exception):
    pass


def free_ports(n):
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


def wait_banner(port, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                f = s.makefile("rb")
                line = f.readline()
                s.sendall(b"QUIT\r\n")
                f.readline()
                if line.startswith(b"220"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise Unavailable("no SMTP banner on port %d" % port)
        time.sleep(0.05)


# --- Postfix -----------------------------------------------------------------

MAIN_CF = """\
compatibility_level = 3.6
config_directory = {d}/etc
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = smarthost.bench.test
mydomain = bench.test
myorigin = $myhostname
mydestination =
relay_domains =
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
local_recipient_maps =
biff = no
default_transport = discard:bench
relay_transport = discard:bench
local_transport = discard:bench
virtual_transport = discard:bench
# Big enough for the 1 GB message; queue_minfree follows (1.5x).
message_size_limit = 2000000000
mailbox_size_limit = 0
# Measure the clients, not Postfix's arrival-rate throttle.
in_flow_delay = 0
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
smtpd_banner = $myhostname ESMTP relayq-bench
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
smtpd_tls_cert_file = {d}/etc/server.pem
smtpd_tls_key_file = {d}/etc/server.key
smtpd_tls_security_level = encrypt
smtpd_tls_auth_only = yes
smtpd_tls_loglevel = 1
smtpd_tls_session_cache_database = btree:{d}/data/smtpd_scache
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
# Debian's Postfix looks in $config_directory/sasl whatever this says.
cyrus_sasl_config_path = {d}/etc/sasl
smtpd_sasl_local_domain = bench.test
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous
"""

MASTER_CF = """\
127.0.0.1:{tls} inet n - n - - smtpd
  -o syslog_name=postfix/bench-tls
127.0.0.1:{plain} inet n - n - - smtpd
  -o syslog_name=postfix/bench-plain
  -o smtpd_tls_security_level=none
  -o smtpd_sasl_auth_enable=no
  -o smtpd_relay_restrictions=permit_mynetworks,reject
  -o smtpd_recipient_restrictions=permit_mynetworks,reject
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
"""

SASL_CONF = """\
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: {d}/sasldb2
mech_list: PLAIN LOGIN
"""


def postfix_unavailable():
    if os.geteuid() != 0:
        return "not root"
    for prog in (POSTFIX, SASLPASSWD2):
        if not os.access(prog, os.X_OK):
            return "%s not installed" % prog
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "no postfix user"
    plugins = [d for d in SASL_PLUGINS if os.path.isdir(d)]
    if not plugins or not any(f.startswith("libsasldb") for f in os.listdir(plugins[0])):
        return "Cyrus SASL sasldb plugin not installed (libsasl2-modules-db)"
    return None


class Postfix:
    kind = "postfix"

    def __init__(self, certs):
        self.certs = certs
        self.root = None
        self.running = False
        self.user, self.password = USER, PASSWORD
        self.ca = certs.ca

    @property
    def description(self):
        v = subprocess.run(["/usr/sbin/postconf", "-d", "-h", "mail_version"],
                           capture_output=True, text=True).stdout.strip()
        return "Postfix %s (STARTTLS + AUTH PLAIN/LOGIN, discard transport)" % v

    def start(self):
        why = postfix_unavailable()
        if why:
            raise Unavailable(why)
        d = self.root = tempfile.mkdtemp(prefix="relayq-bench-postfix-")
        os.chmod(d, 0o755)
        pf = pwd.getpwnam("postfix")
        for sub in ("etc", "etc/sasl", "queue", "data"):
            os.mkdir(os.path.join(d, sub), 0o755)
        os.chown(os.path.join(d, "data"), pf.pw_uid, pf.pw_gid)
        self.tls_port, self.plain_port = free_ports(2)
        shutil.copyfile(self.certs.server, os.path.join(d, "etc", "server.pem"))
        key = os.path.join(d, "etc", "server.key")
        shutil.copyfile(self.certs.server_key, key)
        os.chmod(key, 0o600)
        for name, text in (("etc/main.cf", MAIN_CF), ("etc/master.cf", MASTER_CF),
                           ("etc/sasl/smtpd.conf", SASL_CONF)):
            with open(os.path.join(d, name), "w") as f:
                f.write(text.format(d=d, tls=self.tls_port, plain=self.plain_port))
        sasldb = os.path.join(d, "sasldb2")
        p = subprocess.run([SASLPASSWD2, "-f", sasldb, "-p", "-c", "-u", "bench.test",
                            self.user], input=self.password.encode(),
                           capture_output=True, timeout=30)
        if p.returncode != 0:
            raise Unavailable("saslpasswd2: %s" % p.stderr.decode(errors="replace"))
        os.chown(sasldb, 0, pf.pw_gid)
        os.chmod(sasldb, 0o640)
        p = subprocess.run([POSTFIX, "-c", os.path.join(d, "etc"), "start"],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise Unavailable("postfix start: %s %s" % (p.stdout, p.stderr))
        self.running = True
        wait_banner(self.tls_port, 30)
        wait_banner(self.plain_port, 30)
        return self

    def stop(self):
        if self.running:
            subprocess.run([POSTFIX, "-c", os.path.join(self.root, "etc"), "stop"],
                           capture_output=True, timeout=60)
            self.running = False
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _log(self):
        try:
            with open(os.path.join(self.root, "maillog"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def idle(self):
        """Nothing left in Postfix's queue: the last messages accepted were
        also handed to the discard transport, so their work is not charged
        to whoever is measured next."""
        q = os.path.join(self.root, "queue")
        for sub in ("maildrop", "incoming", "active"):
            for _, _, files in os.walk(os.path.join(q, sub)):
                if files:
                    return False
        return True

    def counts(self):
        """Totals so far per port: connections, tls handshakes, accepted."""
        text = self._log()
        out = {}
        for port, name in (("tls", "bench-tls"), ("plain", "bench-plain")):
            pre = r"postfix/%s/smtpd\[\d+\]: " % name
            conns = len(re.findall(pre + r"connect from", text))
            tls = len(re.findall(pre + r"\S+ TLS connection established", text))
            accepted = 0
            for m in re.finditer(pre + r"disconnect from .*", text):
                # Messages accepted: successful DATA, or with CHUNKING the
                # successful MAIL transactions (bdat= counts chunks).
                d = re.search(r" data=(\d+)", m.group(0))
                b = re.search(r" bdat=\d+.* mail=(\d+)|mail=(\d+).* bdat=\d+", m.group(0))
                if d:
                    accepted += int(d.group(1))
                elif b:
                    accepted += int(b.group(1) or b.group(2))
            out[port] = {"connections": conns, "tls": tls, "accepted": accepted,
                         "open": conns - len(re.findall(pre + r"disconnect from", text))}
        out["queued"] = len(re.findall(r"postfix/qmgr\[\d+\]: \w+: from=.*\(queue active\)",
                                       text))
        return out


# --- aiosmtpd (fallback) -----------------------------------------------------

class Aiosmtpd:
    """tests/integration/smarthost.py in a child process (this file's main)."""
    kind = "aiosmtpd"

    def __init__(self, certs):
        self.certs = certs
        self.user, self.password = USER, PASSWORD
        self.ca = certs.ca
        self.proc = None
        self.description = ("aiosmtpd (Python; STARTTLS + AUTH PLAIN/LOGIN; far slower "
                            "than a real MTA, so drain rates measure mostly the smarthost)")

    def start(self):
        here = os.path.dirname(os.path.abspath(__file__))
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), self.certs.server,
             self.certs.server_key],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=here)
        line = self.proc.stdout.readline()
        if not line:
            raise Unavailable("aiosmtpd smarthost did not start")
        ports = json.loads(line)
        self.tls_port, self.plain_port = ports["tls"], ports["plain"]
        return self

    @staticmethod
    def idle():
        return True       # aiosmtpd keeps nothing after its reply

    def counts(self):
        self.proc.stdin.write("counts\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self):
        if self.proc:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
            self.proc = None


def _aiosmtpd_main(cert, key):
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(top, "tests", "integration"))
    import smarthost as sh   # tests/integration/smarthost.py

    counters = {"tls": {"tls": 0}, "plain": {"tls": 0}}

    def counting(kind):
        class S(sh.CountingSMTP):
            async def smtp_STARTTLS(self, arg):
                counters[kind]["tls"] += 1
                return await super().smtp_STARTTLS(arg)
        return S

    servers = {}
    for kind, tls in (("tls", "starttls"), ("plain", "none")):
        s = sh.Smarthost(tls, cert, key, {USER: PASSWORD},
                         extra={"data_size_limit": 2000000000})
        klass = counting(kind)
        s.controller.factory = (lambda c=s.controller, k=klass:
                                k(c.handler, **c.SMTP_kwargs))
        # Keep no copy of the messages: the bench sends thousands.
        s.handler.messages = _Counter()
        servers[kind] = s.start()
    print(json.dumps({"tls": servers["tls"].port, "plain": servers["plain"].port}),
          flush=True)
    for line in sys.stdin:
        out = {}
        for kind, s in servers.items():
            out[kind] = {"connections": s.handler.connections,
                         "tls": counters[kind]["tls"],
                         "accepted": len(s.handler.messages), "open": 0}
        out["queued"] = out["tls"]["accepted"] + out["plain"]["accepted"]
        print(json.dumps(out), flush=True)
    for s in servers.values():
        s.stop()


class _Counter:
    """A list that only counts what is appended."""

    def __init__(self):
        self.n = 0

    def append(self, _):
        self.n += 1

    def __len__(self):
        return self.n


if __name__ == "__main__":
    _aiosmtpd_main(sys.argv[1], sys.argv[2])
