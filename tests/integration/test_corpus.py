"""Every message of the shared corpus, plus generated hard cases, is queued
with its body byte-identical after line-ending normalisation."""
import os
import re

from harness import SpoolTest, main, split_message, header_fields, CORPUS, SKIP

CORPUS_DIR = os.path.join(CORPUS, "python-email")
REMOVED = {"bcc", "resent-bcc", "return-path", "content-length"}


def normalise(raw):
    """What the queue should hold, with LF line ends: CRLF/CR -> LF, NUL
    dropped, final newline added, mbox From_ line dropped."""
    text = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\0", b"")
    if not text.endswith(b"\n"):
        text += b"\n"
    if text.startswith(b"From "):
        text = text.split(b"\n", 1)[1]
    return text


FIELD = re.compile(rb"^[!-9;-~]+:")


def split_original(text):
    """(header, body) the way RFC 5322 readers see it: the header ends at
    the first empty line, or at the first line that is neither a field nor
    a continuation (which then starts the body)."""
    lines = text.split(b"\n")[:-1]
    for i, line in enumerate(lines):
        if line == b"":
            return b"".join(l + b"\n" for l in lines[:i]), b"".join(l + b"\n" for l in lines[i + 1:])
        if not (FIELD.match(line) or (i > 0 and line[:1] in (b" ", b"\t"))):
            return b"".join(l + b"\n" for l in lines[:i]), b"".join(l + b"\n" for l in lines[i:])
    return text, b""


class Corpus(SpoolTest):

    def queue_one(self, raw):
        p = self.submit(["-i", "rcpt@example.org"], raw)
        self.assertExit(p, 0)
        ids = self.spool.ids()
        self.assertEqual(len(ids), 1)
        msg = self.spool.message(ids[0])
        for sub in ("env", "data"):
            os.unlink(os.path.join(self.spool.queue, sub, ids[0]))
        return msg

    def check_message(self, raw):
        want = normalise(raw)
        got = self.queue_one(raw)
        want_head, want_body = split_original(want)
        got_head, got_body = split_message(got)
        self.assertEqual(got_body, want_body)
        # Every original header field survives (unless it must be removed).
        got_fields = header_fields(got_head)
        got_names = [n for n, _ in got_fields]
        for name, _ in header_fields(want_head):
            if name in REMOVED:
                self.assertNotIn(name, got_names)
            else:
                self.assertIn(name, got_names)

    def test_corpus(self):
        if not os.path.isdir(CORPUS_DIR):
            self.skipTest("corpus %s not present" % CORPUS_DIR)
        names = sorted(os.listdir(CORPUS_DIR))
        self.assertGreater(len(names), 10)
        for name in names:
            with self.subTest(message=name):
                with open(os.path.join(CORPUS_DIR, name), "rb") as f:
                    self.check_message(f.read())

    def test_generated(self):
        cases = {
            "utf8 header": "Subject: Grüße\nFrom: Jörg <j@example.org>\n\nÄrger\n".encode(),
            "leading dots": b"Subject: d\n\n.\n..\n...x\n. \n",
            "no final newline": b"Subject: n\n\nlast line",
            "crlf": b"Subject: c\r\n\r\nline\r\nline2\r\n",
            "bare cr": b"Subject: c\n\nold\rmac\rlines\n",
            "nul bytes": b"Subject: z\n\nnul\0here\n",
            "empty body": b"Subject: e\n\n",
            "no header": b"\njust a body\n",
            "mbox from line": b"From someone Mon Jan  1 00:00:00 2024\nSubject: m\n\nb\n",
            "binary-ish": b"Subject: b\n\n" + bytes(range(1, 256)).replace(b"\r", b"").replace(b"\n", b"") + b"\n",
            "many lines": b"Subject: l\n\n" + b"line\n" * 100000,
        }
        for label, raw in cases.items():
            with self.subTest(case=label):
                self.check_message(raw)


if __name__ == "__main__":
    main()
