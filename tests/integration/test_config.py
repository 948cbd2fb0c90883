"""Config errors end to end: exit 78, one line naming file, line and key."""
import os

from harness import SpoolTest, main

SIMPLE = b"Subject: hello\n\nbody\n"


class ConfigErrors(SpoolTest):

    def check(self, text, fragments):
        self.spool.write_config(text)
        p = self.spool.run(["a@example.org"], input=SIMPLE)
        self.assertExit(p, 78)
        err = p.stderr.decode()
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        for frag in fragments:
            self.assertIn(frag, err)
        self.assertEqual(self.spool.ids(), [])

    def test_unknown_key(self):
        # The harness writes 6 lines first, so this is line 7.
        self.check("bogus = 1\n", [self.spool.config, ":7", "bogus"])

    def test_bad_duration(self):
        self.check("queue_lifetime = 5x\n", [self.spool.config, ":7", "queue_lifetime"])

    def test_bad_delivery(self):
        self.check("delivery = sometimes\n", ["delivery"])

    def test_smarthost_without_host(self):
        self.check("smarthost a {\n port = 25\n}\n", ["host"])

    def test_plaintext_password_to_remote_host(self):
        self.check('smarthost a {\n host = "smtp.example.com"\n tls = none\n'
                   ' username = "u"\n password = "p"\n}\n', ["tls", "smtp.example.com"])

    def test_missing_file(self):
        missing = os.path.join(self.spool.root, "nope.conf")
        p = self.spool.run(["a@example.org"], input=SIMPLE,
                           env={"RELAYQ_CONFIG": missing})
        self.assertExit(p, 78)
        self.assertIn(missing.encode(), p.stderr)

    def test_dash_C_selects_file(self):
        other = os.path.join(self.spool.root, "other.conf")
        with open(other, "w") as f:
            f.write('queue_dir = "%s"\ndomain = "other.example"\n'
                    'log = stderr\ndelivery = queue\n' % self.spool.queue)
        p = self.spool.run(["-C", other, "root"], input=SIMPLE,
                           env={"RELAYQ_CONFIG": "/nonexistent"})
        self.assertExit(p, 0)
        env = self.spool.envelope(self.spool.ids()[0])
        self.assertEqual(env["rcpts"][0]["addr"], "root@other.example")


if __name__ == "__main__":
    main()
