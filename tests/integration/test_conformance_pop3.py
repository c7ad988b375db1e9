"""Differential POP3 conformance: stock Dovecot is the oracle for POP3 too.

The stock Dovecot hides mail the way the retention module's shared view
does without the module: `pop3_deleted_flag = $PopHidden`. The dovekie
Dovecot loads every module (retention among them, which lists INBOX with
its own test of that keyword instead of Dovecot's search filter). Both get
the same mail and the same keywords over IMAP, and then every POP3 command
that reads (STAT, LIST, UIDL, TOP, RETR, with and without a message number,
in and out of range, NOOP, RSET, LAST, QUIT) must answer line for line what
stock answers. Two differences are the module's by design, and the test
asserts exactly them: DELE is left out (the module hides instead of
expunging, test_retention*.py), and the keyword belongs to the module: a
message that has it with no DELE on record (here: set over IMAP) is
unhidden by the next expiry plan, which `doveadm dovekie retention run`
makes, or a QUIT that finds something can be due (doc/retention.md).
After that run the test removes the keyword on stock too, checks that
both servers' IMAP flags are then equal, and compares again.
"""

from __future__ import annotations

import re
import socket
import threading

from conformance import (ATTRIBUTE_DICT, RawImap, assert_clean_log, assert_same_lines,  # noqa: F401
                         run_threads, stock_and_dovekie_with)
from dovekie_harness import make_message

KEYWORD = "$PopHidden"
# pop3_uidl_format's default ends with the UIDVALIDITY, which each server
# makes itself: "%08Xu%08Xv".
_UIDL_RE = re.compile(rb"^((?:\+OK )?\d+ [0-9A-Fa-f]{8})[0-9A-Fa-f]{8}\r\n$")


class RawPop3:
    """One POP3 session, logged in; `run` returns the reply's lines as sent
    (a multi-line reply up to and with its final '.')."""

    def __init__(self, dc, user: str = "alice", timeout: float = 30.0):
        self.sock = socket.create_connection(("127.0.0.1", dc.ports["pop3"]), timeout=timeout)
        self.rfile = self.sock.makefile("rb")
        greeting = self.rfile.readline()
        assert greeting.startswith(b"+OK"), greeting
        assert self.run(f"USER {user}")[0].startswith(b"+OK")
        reply = self.run(f"PASS {dc.password(user)}")
        assert reply[0].startswith(b"+OK"), reply

    def run(self, command: str, multi: bool = False) -> list[bytes]:
        self.sock.sendall(command.encode() + b"\r\n")
        lines = [self.rfile.readline()]
        if multi and lines[0].startswith(b"+OK"):
            while True:
                line = self.rfile.readline()
                if not line:
                    raise ConnectionError("server closed the connection in a reply")
                lines.append(line)
                if line == b".\r\n":
                    break
        return [_UIDL_RE.sub(rb"\1V\r\n", line) for line in lines]

    def close(self) -> None:
        self.sock.close()


def both_imap(stock, dk, command: str) -> None:
    pair = (RawImap(stock), RawImap(dk))
    try:
        assert_same_lines(command, pair[0].run("SELECT INBOX"), pair[1].run("SELECT INBOX"))
        assert_same_lines(command, pair[0].run(command), pair[1].run(command))
    finally:
        for s in pair:
            s.close()


READS = [("STAT", False), ("LIST", True), ("UIDL", True), ("LIST 1", False),
         ("LIST 6", False), ("LIST 7", False), ("LIST 0", False), ("LIST 99", False),
         ("UIDL 2", False), ("UIDL 99", False), ("TOP 1 0", True), ("TOP 3 2", True),
         ("TOP 99 0", True), ("RETR 2", True), ("RETR 7", True), ("RETR 8", True),
         ("LAST", False), ("NOOP", False), ("RSET", False), ("STAT", False)]


def unhide_lines(dc) -> str:
    return "".join(m.group(0) + "\n" for m in dc.find_log(r"^[^\n]*dovekie-retention: unhide [^\n]*$"))


def session(dc) -> list[tuple[str, list[bytes]]]:
    pop = RawPop3(dc)
    try:
        out = [(cmd, pop.run(cmd, multi)) for cmd, multi in READS]
        out.append(("QUIT", pop.run("QUIT")))
        return out
    finally:
        pop.close()


def test_pop3_reads_equal_stock_with_hidden_mail(dovecot, stock_and_dovekie_with):
    stock = dovecot(plugin_path=None, mail_plugins="",
                    extra_conf=ATTRIBUTE_DICT + f"pop3_deleted_flag = \"{KEYWORD}\"\n")
    _, dk = stock_and_dovekie_with(boot_stock=False)
    messages = [make_message(f"pop3 conformance {i}", f"line one of {i}\nline two\nline three\n")
                for i in range(10)]
    for dc in (stock, dk):
        imap = RawImap(dc)
        for msg in messages:
            assert imap.append("INBOX", msg)[-1].startswith(b"TAG OK")
        imap.close()
    # 20 other keywords first: $PopHidden's bit is past the record's second byte.
    others = " ".join(f"$K{i:02d}" for i in range(20))
    for command in (f"UID STORE 1 +FLAGS ({others})", "UID STORE 4 +FLAGS ($K19)",
                    f"UID STORE 5 +FLAGS ({KEYWORD}X)", f"UID STORE 3,6,10 +FLAGS ({KEYWORD})",
                    "UID STORE 2 +FLAGS (\\Seen)"):
        both_imap(stock, dk, command)

    def compare() -> dict[str, list[bytes]]:
        runs = session(stock), session(dk)
        for (command, want), (_, got) in zip(*runs):
            assert_same_lines(command, want, got)
        return dict(runs[0])

    def flags() -> None:
        both_imap(stock, dk, "UID FETCH 1:* (FLAGS)")

    # The listing leaves out exactly the three messages with the keyword.
    assert compare()["STAT"][0].startswith(b"+OK 7 ")
    # That QUIT wrote the download records of RETR 2 and 7. The next expiry
    # plan unhides the three (no DELE on record); stock keeps them hidden.
    # On 2.3 the first QUIT runs one (the attribute migration wrote the
    # table without its floors), on 2.4 the run below does.
    dk.wait_for_log(r"pop3\(alice\)[^\n]*Disconnected")
    res = dk.doveadm("dovekie", "retention", "run", "-u", "alice")
    assert res.returncode == 0, res.stderr
    unhidden = unhide_lines(dk) + res.stderr
    for uid in (3, 6, 10):
        assert len(re.findall(rf'unhide user=alice mailbox="INBOX" uid={uid} '
                              r"reason=no-record", unhidden)) == 1, unhidden
    in_log = unhide_lines(dk)
    imap = RawImap(stock)
    imap.run("SELECT INBOX")
    assert imap.run(f"UID STORE 3,6,10 -FLAGS.SILENT ({KEYWORD})")[-1].startswith(b"TAG OK")
    imap.close()
    flags()
    assert compare()["STAT"][0].startswith(b"+OK 10 ")
    # Hidden again over IMAP: both leave it out; the table's floors are set
    # now, nothing is due, so no plan runs and nothing more is unhidden.
    both_imap(stock, dk, f"UID STORE 6 +FLAGS ({KEYWORD})")
    assert compare()["STAT"][0].startswith(b"+OK 9 ")
    # Four sessions at once list what stock lists alone.
    want = session(stock)
    results: list = [None] * 4
    errors: list[BaseException] = []

    def one(i: int) -> None:
        results[i] = session(dk)

    run_threads([threading.Thread(target=one, args=(i,)) for i in range(4)], errors)
    for got in results:
        for (command, w), (_, g) in zip(want, got):
            assert_same_lines(command, w, g)
    flags()
    assert unhide_lines(dk) == in_log
    assert_clean_log(dk)
    assert_clean_log(stock)
