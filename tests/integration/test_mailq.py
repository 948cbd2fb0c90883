"""mailq / sendmail -bp: Postfix's listing format; newaliases; -bP."""
import re

from harness import SpoolTest, main

SIMPLE = b"Subject: hello\n\nbody\n"
HEADER = "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------"


class MailqTest(SpoolTest):

    def test_empty_queue(self):
        for argv0, args in (("mailq", []), ("sendmail", ["-bp"])):
            with self.subTest(argv0=argv0):
                p = self.spool.run(args, argv0=argv0)
                self.assertExit(p, 0)
                self.assertEqual(p.stdout, b"Mail queue is empty\n")

    def test_entries_listed(self):
        self.assertExit(self.submit(["-f", "s@example.net", "a@example.org", "b@example.org"],
                                    SIMPLE), 0)
        self.assertExit(self.submit(["-f", "<>", "c@example.org"], SIMPLE), 0)
        ids = self.spool.ids()
        p = self.spool.run([], argv0="mailq")
        self.assertExit(p, 0)
        out = p.stdout.decode()
        lines = out.splitlines()
        self.assertEqual(lines[0], HEADER)
        entry = re.compile(r"^(?P<id>[0-9A-F]{17})[ *!]\s+(?P<size>\d+) "
                           r"(?P<date>\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d)  (?P<sender>\S+)$")
        found = [m.groupdict() for m in map(entry.match, lines) if m]
        self.assertEqual([f["id"] for f in found], ids)
        self.assertEqual([f["sender"] for f in found], ["s@example.net", "MAILER-DAEMON"])
        for f in found:
            env = self.spool.envelope(f["id"])
            self.assertEqual(int(f["size"]), int(env["size"]))
        self.assertIn(" " * 41 + "a@example.org", lines)
        self.assertIn(" " * 41 + "b@example.org", lines)
        self.assertIn(" " * 41 + "c@example.org", lines)
        total = sum(int(self.spool.envelope(i)["size"]) for i in ids)
        self.assertEqual(lines[-1], "-- %d Kbytes in 2 Requests." % ((total + 1023) // 1024))


class OtherModes(SpoolTest):

    def test_newaliases(self):
        self.assertExit(self.spool.run([], argv0="newaliases"), 0)
        self.assertExit(self.spool.run(["-bi"]), 0)

    def test_print_config_masks_secrets(self):
        self.spool.write_config(
            "", 'smarthost main {\n host = "127.0.0.1"\n tls = none\n'
                ' username = "u"\n password = "s3cret-value"\n}\n')
        p = self.spool.run(["-bP"])
        self.assertExit(p, 0)
        self.assertNotIn(b"s3cret-value", p.stdout)
        self.assertIn(b"127.0.0.1", p.stdout)
        self.assertIn(b"host.example.com", p.stdout)

    def test_version_and_help(self):
        p = self.spool.run(["--version"])
        self.assertExit(p, 0)
        self.assertTrue(p.stdout.startswith(b"relayq "))
        self.assertExit(self.spool.run(["--help"]), 0)


if __name__ == "__main__":
    main()
