"""The sendmail front end: options, exit codes and what lands in the queue."""
import os
import pwd

from harness import SpoolTest, main, split_message, header_fields

LOGIN = pwd.getpwuid(os.getuid()).pw_name
SIMPLE = b"Subject: hello\n\nbody line\n"


class SubmitBasics(SpoolTest):

    def only_entry(self):
        ids = self.spool.ids()
        self.assertEqual(len(ids), 1, ids)
        return ids[0]

    def test_argv_recipient_is_queued_with_fixups(self):
        p = self.submit(["rcpt@example.org"], SIMPLE)
        self.assertExit(p, 0)
        self.assertEqual(p.stdout, b"")
        qid = self.only_entry()
        env = self.spool.envelope(qid)
        self.assertEqual(env["id"], qid)
        self.assertEqual(env["sender"], LOGIN + "@example.com")
        self.assertEqual([r["addr"] for r in env["rcpts"]], ["rcpt@example.org"])
        self.assertEqual([r["status"] for r in env["rcpts"]], ["pending"])
        head, body = split_message(self.spool.message(qid))
        names = [n for n, _ in header_fields(head)]
        self.assertEqual(names[0], "received")
        self.assertIn(qid.encode(), head)
        for n in ("date", "message-id", "from", "subject"):
            self.assertEqual(names.count(n), 1, (n, head))
        self.assertEqual(body, b"body line\n")
        self.assertEqual(int(env["size"]), len(self.spool.data(qid)))
        # Durable: nothing left behind in tmp/.
        self.assertEqual(self.spool.listdir("tmp"), [])

    def test_existing_headers_are_kept(self):
        msg = (b"From: Alice <alice@example.org>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n"
               b"Message-ID: <x@y>\nSubject: s\n\nb\n")
        self.assertExit(self.submit(["bob@example.org"], msg), 0)
        head, _ = split_message(self.spool.message(self.only_entry()))
        fields = header_fields(head)
        self.assertEqual([v for n, v in fields if n == "from"], [b"Alice <alice@example.org>"])
        self.assertEqual([v for n, v in fields if n == "message-id"], [b"<x@y>"])
        self.assertEqual([v for n, v in fields if n == "date"],
                         [b"Mon, 1 Jan 2024 00:00:00 +0000"])

    def test_full_name_in_from(self):
        self.assertExit(self.submit(["-F", "Cron Daemon", "a@example.org"], SIMPLE), 0)
        head, _ = split_message(self.spool.message(self.only_entry()))
        frm = [v for n, v in header_fields(head) if n == "from"]
        self.assertEqual(frm, [b'"Cron Daemon" <%s@example.com>' % LOGIN.encode()])

    def test_bare_local_names_are_qualified(self):
        p = self.submit(["root", "www-data"], b"From: root (Cron Daemon)\nTo: root\n\nx\n")
        self.assertExit(p, 0)
        qid = self.only_entry()
        env = self.spool.envelope(qid)
        self.assertEqual([r["addr"] for r in env["rcpts"]],
                         ["root@example.com", "www-data@example.com"])
        head, _ = split_message(self.spool.message(qid))
        fields = dict(header_fields(head))
        self.assertEqual(fields["from"], b"root@example.com (Cron Daemon)")
        self.assertEqual(fields["to"], b"root@example.com")

    def test_sender_option_and_null_sender(self):
        for flag, value, want in (("-f", "sender@example.net", "sender@example.net"),
                                  ("-r", "<other@example.net>", "other@example.net"),
                                  ("-f", "<>", ""), ("-f", "", ""),
                                  ("-f", "root", "root@example.com")):
            with self.subTest(flag=flag, value=value):
                self.setUp()
                p = self.submit([flag, value, "a@example.org"], SIMPLE)
                self.assertExit(p, 0)
                self.assertEqual(self.spool.envelope(self.only_entry())["sender"], want)
                self.tearDown()

    def test_glued_sender(self):
        self.assertExit(self.submit(["-fglued@example.net", "a@example.org"], SIMPLE), 0)
        self.assertEqual(self.spool.envelope(self.only_entry())["sender"], "glued@example.net")

    def test_extract_recipients(self):
        msg = (b"To: A <a@example.org>, b@example.org\nCc: c@example.org\n"
               b"Bcc: hidden@example.org\nSubject: t\n\nbody\n")
        p = self.submit(["-t", "-i", "b@example.org", "d@example.org"], msg)
        self.assertExit(p, 0)
        qid = self.only_entry()
        rcpts = sorted(r["addr"] for r in self.spool.envelope(qid)["rcpts"])
        self.assertEqual(rcpts, ["a@example.org", "b@example.org", "c@example.org",
                                 "d@example.org", "hidden@example.org"])
        head, _ = split_message(self.spool.message(qid))
        self.assertNotIn(b"hidden", head)
        self.assertNotIn(b"\nbcc:", b"\n" + head.lower())

    def test_resent_headers_take_precedence(self):
        msg = b"To: old@example.org\nResent-To: new@example.org\nSubject: t\n\nx\n"
        self.assertExit(self.submit(["-t"], msg), 0)
        rcpts = [r["addr"] for r in self.spool.envelope(self.only_entry())["rcpts"]]
        self.assertEqual(rcpts, ["new@example.org"])

    def test_removed_headers(self):
        msg = (b"Return-Path: <x@y>\nContent-Length: 3\nResent-Bcc: r@example.org\n"
               b"Subject: t\n\nx\n")
        self.assertExit(self.submit(["a@example.org"], msg), 0)
        head, _ = split_message(self.spool.message(self.only_entry()))
        for name in (b"return-path", b"content-length", b"resent-bcc"):
            self.assertNotIn(name, head.lower())

    def test_dot_line_ends_input_without_i(self):
        msg = b"Subject: t\n\nline1\n..dotted\n.\nafter the dot\n"
        self.assertExit(self.submit(["a@example.org"], msg), 0)
        _, body = split_message(self.spool.message(self.only_entry()))
        self.assertEqual(body, b"line1\n.dotted\n")

    def test_dots_are_data_with_i(self):
        msg = b"Subject: t\n\nline1\n..dotted\n.\nafter the dot\n"
        for flag in ("-i", "-oi"):
            with self.subTest(flag=flag):
                self.setUp()
                self.assertExit(self.submit([flag, "a@example.org"], msg), 0)
                _, body = split_message(self.spool.message(self.only_entry()))
                self.assertEqual(body, b"line1\n..dotted\n.\nafter the dot\n")
                # Wire form: every leading dot is doubled on disk.
                self.assertIn(b"\r\n...dotted\r\n..\r\n", self.spool.data(self.only_entry()))
                self.tearDown()

    def test_crlf_and_missing_final_newline(self):
        self.assertExit(self.submit(["-i", "a@example.org"], b"Subject: t\r\n\r\nl1\r\nl2"), 0)
        data = self.spool.data(self.only_entry())
        self.assertTrue(data.endswith(b"\r\nl1\r\nl2\r\n"), data)
        self.assertNotIn(b"\r\r", data)

    def test_long_line_is_never_sent_broken(self):
        body = b"x" * 2500 + b"\n"
        self.assertExit(self.submit(["-i", "a@example.org"], b"Subject: t\n\n" + body), 0)
        data = self.spool.data(self.only_entry())
        for line in data.split(b"\r\n"):
            self.assertLessEqual(len(line), 998)
        _, got = split_message(self.spool.message(self.only_entry()))
        self.assertEqual(got.replace(b"\n", b""), body.strip())

    def test_8bit_is_recorded(self):
        self.assertExit(self.submit(["a@example.org"], "Subject: é\n\nçà\n".encode()), 0)
        self.assertEqual(self.spool.envelope(self.only_entry())["body"], "8bitmime")

    def test_dsn_options(self):
        p = self.submit(["-N", "failure,delay", "-R", "hdrs", "-V", "env42",
                         "a@example.org"], SIMPLE)
        self.assertExit(p, 0)
        env = self.spool.envelope(self.only_entry())
        self.assertEqual(env["ret"], "hdrs")
        self.assertEqual(env["envid"], "env42")
        self.assertEqual(env["rcpts"][0]["notify"], "failure,delay")

    def test_argv_recipient_list(self):
        self.assertExit(self.submit(["a@example.org, B <b@example.org>", "a@example.org"],
                                    SIMPLE), 0)
        rcpts = [r["addr"] for r in self.spool.envelope(self.only_entry())["rcpts"]]
        self.assertEqual(rcpts, ["a@example.org", "b@example.org"])

    def test_verbose_names_the_queue_id(self):
        p = self.submit(["-v", "a@example.org"], SIMPLE)
        self.assertExit(p, 0)
        self.assertIn(self.only_entry().encode(), p.stderr)


class ExitCodes(SpoolTest):
    """Every failure: one clear line, the right sysexits code, nothing queued."""

    def assertFails(self, args, message, code, fragment, argv0="sendmail"):
        p = self.submit(args, message, argv0=argv0)
        self.assertExit(p, code)
        self.assertIn(fragment.encode(), p.stderr)
        self.assertQueueEmpty()
        return p

    def test_no_recipients(self):
        self.assertFails([], SIMPLE, 64, "no recipients")

    def test_no_recipients_in_header(self):
        self.assertFails(["-t"], SIMPLE, 64, "no recipient")

    def test_unknown_option(self):
        p = self.assertFails(["-z", "a@example.org"], SIMPLE, 64, "z")
        self.assertEqual(len(p.stderr.decode().strip().splitlines()), 1, p.stderr)

    def test_missing_option_argument(self):
        self.assertFails(["-f"], SIMPLE, 64, "-f")

    def test_unsupported_modes(self):
        for mode in ("-bt", "-ba", "-bx"):
            with self.subTest(mode=mode):
                self.assertFails([mode], b"", 64, mode[1:])

    def test_daemon_modes_unavailable(self):
        for mode in ("-bd", "-bD"):
            with self.subTest(mode=mode):
                self.assertFails([mode], b"", 69, "never")

    def test_noop_modes(self):
        for mode in ("-bh", "-bH"):
            with self.subTest(mode=mode):
                self.assertExit(self.submit([mode], b""), 0)

    def test_header_injection_in_arguments(self):
        for args in (["-f", "a@b\r\nBcc: x@y", "r@example.org"],
                     ["-F", "Name\nBcc: x@y", "r@example.org"],
                     ["-V", "id\r\nX", "r@example.org"],
                     ["r@example.org\nBcc: evil@example.org"]):
            with self.subTest(args=args):
                p = self.submit(args, SIMPLE)
                self.assertIn(p.returncode, (64, 65), p.stderr)
                self.assertQueueEmpty()

    def test_bad_address(self):
        self.assertFails(["a@@example.org"], SIMPLE, 65, "a@@example.org")
        self.assertFails(["<unterminated@example.org"], SIMPLE, 65, "unterminated")

    def test_too_big(self):
        self.spool.write_config("max_message_size = 1K\n")
        self.assertFails(["-i", "a@example.org"], b"Subject: t\n\n" + b"y" * 2000 + b"\n",
                         65, "size")

    def test_queue_not_writable(self):
        blocker = os.path.join(self.spool.root, "file")
        open(blocker, "w").close()
        self.spool.queue = os.path.join(blocker, "queue")
        self.spool.write_config()
        p = self.submit(["a@example.org"], SIMPLE)
        self.assertIn(p.returncode, (73, 75), p.stderr)
        self.assertIn(b"queue", p.stderr)

    def test_ignored_options_are_accepted(self):
        for args in (["-m"], ["-om"], ["-o7"], ["-o8"], ["-U"], ["-Ac"], ["-Am"],
                     ["-h", "17"], ["-L", "tag"], ["-O", "DeliveryMode=b"], ["-oem"],
                     ["-oep"], ["-B", "8BITMIME"], ["-n"], ["-x"], ["-odq"], ["-odb"],
                     ["-bm"], ["-FCronDaemon", "-i", "-B8BITMIME", "-oem"]):
            with self.subTest(args=args):
                self.setUp()
                self.assertExit(self.submit(args + ["a@example.org"], SIMPLE), 0)
                self.assertEqual(len(self.spool.ids()), 1)
                self.tearDown()

    def test_config_error_is_78(self):
        self.spool.write_config("no_such_key = 1\n")
        p = self.assertFails(["a@example.org"], SIMPLE, 78, "no_such_key")
        self.assertIn(self.spool.config.encode(), p.stderr)


class SubmitBasicsInProcess(SubmitBasics):
    """The same, parsed in the one process: relayq has no privilege to
    separate (not setgid, or run by root)."""
    separate = False


class ExitCodesInProcess(ExitCodes):
    """The same, parsed in the one process: relayq has no privilege to
    separate (not setgid, or run by root)."""
    separate = False


if __name__ == "__main__":
    main()
