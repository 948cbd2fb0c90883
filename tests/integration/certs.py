"""Test certificates made at test time with the openssl command line:
a CA, a server certificate for localhost/127.0.0.1/::1, an expired one, one
for the wrong name, and a self-signed one."""
import os
import subprocess
import tempfile

CA_CONF = """
[ ca ]
default_ca = testca
[ testca ]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
default_md = sha256
policy = anything
copy_extensions = copy
unique_subject = no
[ anything ]
commonName = supplied
"""


def _run(*args, cwd=None):
    subprocess.run(["openssl"] + list(args), check=True, cwd=cwd,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Certs:
    """All files live in one temporary directory; attributes are paths."""

    def __init__(self, directory=None):
        self.dir = directory or tempfile.mkdtemp(prefix="relayq-certs-")
        d = self.dir
        with open(os.path.join(d, "ca.cnf"), "w") as f:
            f.write(CA_CONF.format(dir=d))
        open(os.path.join(d, "index.txt"), "w").close()
        with open(os.path.join(d, "serial"), "w") as f:
            f.write("1000\n")
        self.ca_key = os.path.join(d, "ca.key")
        self.ca = os.path.join(d, "ca.pem")
        _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.ca_key,
             "-out", self.ca, "-days", "3650", "-subj", "/CN=relayq test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.server_key, self.server = self._issue(
            "server", "localhost", "DNS:localhost,IP:127.0.0.1,IP:::1")
        self.expired_key, self.expired = self._issue(
            "expired", "localhost", "DNS:localhost,IP:127.0.0.1",
            start="20200101000000Z", end="20200201000000Z")
        self.wrong_key, self.wrong = self._issue(
            "wrong", "wrong.example", "DNS:wrong.example")
        self.selfsigned_key = os.path.join(d, "self.key")
        self.selfsigned = os.path.join(d, "self.pem")
        _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
             self.selfsigned_key, "-out", self.selfsigned, "-days", "365",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")

    def _issue(self, name, cn, san, start=None, end=None):
        d = self.dir
        key = os.path.join(d, name + ".key")
        csr = os.path.join(d, name + ".csr")
        pem = os.path.join(d, name + ".pem")
        _run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
             "-subj", "/CN=" + cn, "-addext", "subjectAltName=" + san)
        dates = (["-startdate", start, "-enddate", end] if start
                 else ["-days", "365"])
        _run("ca", "-batch", "-config", os.path.join(d, "ca.cnf"), "-cert", self.ca,
             "-keyfile", self.ca_key, "-in", csr, "-out", pem, "-notext", *dates)
        return key, pem

    def fingerprint(self, pem):
        out = subprocess.run(["openssl", "x509", "-in", pem, "-noout", "-fingerprint",
                              "-sha256"], check=True, capture_output=True, text=True)
        return "sha256:" + out.stdout.strip().split("=", 1)[1].replace(":", "").lower()


if __name__ == "__main__":
    c = Certs()
    print(c.dir)
