"""Conformance: a message expunged by another session (issue 18, item 2).

Session 1 has the mailbox selected; session 2 expunges messages; session 1
then searches and fetches them before it has seen the EXPUNGE. Stock
Dovecot answers the searches with OK [EXPUNGEISSUED] and the fetches as it
does for a vanished file. With every dovekie module loaded the answers
must be the same, line by line: the read hook (antivirus) once turned the
failed read into `NO [UNAVAILABLE] Temporary failure reading the message`
and logged an Error. An expunged message has no bytes, so passing
Dovecot's own error on serves nothing unscanned.

A short concurrent run follows: several sessions expunging, searching and
fetching at once give no NO or BAD that stock Dovecot does not give, and
the log stays free of Error, Panic and Fatal lines.
"""

from __future__ import annotations

import random
import re
import threading

from conformance import RawImap, Pair, assert_clean_log, run_threads, stock_and_dovekie  # noqa: F401


def message(n: int, body: str, multipart: bool = False) -> bytes:
    head = (f"From: sender{n}@example.test\r\nTo: alice@example.test\r\n"
            f"Subject: message {n} subj{n}\r\nMessage-ID: <m{n}@example.test>\r\n"
            "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n")
    if not multipart:
        return (head + "Content-Type: text/plain; charset=utf-8\r\n\r\n"
                + body + "\r\n").encode()
    return (head + "Content-Type: multipart/mixed; boundary=BND\r\n\r\n"
            "--BND\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n"
            "Ym9keSBhYiBpbiBiYXNlNjQ=\r\n"
            f"--BND\r\nContent-Type: text/plain\r\n\r\n{body}\r\n--BND--\r\n").encode()


MESSAGES = [message(1, "first ab body"), message(2, "second ab body", multipart=True),
            message(3, "third ab body"), message(4, "fourth body"),
            message(5, "fifth ab body", multipart=True), message(6, "sixth body"),
            message(7, "seventh ab body"), message(8, "eighth ab body")]

# What session 1 sends about a message (sequence number `seq`) that session 2
# has just expunged; seq stays valid in session 1's view until it is told.
READS = ["SEARCH BODY ab", "SEARCH TEXT ab", "SEARCH TEXT subj{seq}", "SEARCH BODY body",
         "FETCH {seq} (BODY[])", "FETCH {seq} (BODY.PEEK[TEXT])",
         "FETCH {seq} (BINARY.PEEK[1])", "FETCH {seq} (RFC822.SIZE)",
         "FETCH 1:* (FLAGS BODY.PEEK[TEXT])", "FETCH {seq} (BODY.PEEK[HEADER])"]


def fill(pair: Pair) -> None:
    setup = pair.open()
    for raw in MESSAGES:
        pair.run(setup, f'APPEND INBOX () "01-Jan-2024 10:00:00 +0000"', raw)


def expunge_seq(pair: Pair, session, seq: int) -> None:
    pair.run(session, f"STORE {seq} +FLAGS.SILENT (\\Deleted)")
    lines = pair.run(session, "EXPUNGE")
    assert f"* {seq} EXPUNGE".encode() + b"\r\n" in lines, lines


def test_reads_of_a_message_expunged_by_another_session(stock_and_dovekie):
    stock, dk = stock_and_dovekie
    pair = Pair(stock, dk)
    try:
        fill(pair)
        s1, s2 = pair.open(), pair.open()
        pair.run(s1, "SELECT INBOX")
        pair.run(s2, "SELECT INBOX")

        # Round 1: SEARCH first (the case), then the FETCHes.
        expunge_seq(pair, s2, 2)
        search = pair.run(s1, "SEARCH BODY ab")
        assert search[0] == b"* SEARCH 1 3 5 7 8\r\n", search
        assert search[-1].startswith(b"TAG OK [EXPUNGEISSUED]"), search
        for read in READS:
            pair.run(s1, read.format(seq=2))
        pair.run(s1, "NOOP")

        # Round 2: FETCH first, then SEARCH, each kind once more; the
        # UID forms also report the EXPUNGE at their end.
        expunge_seq(pair, s2, 3)  # message 4 of the original eight
        expunge_seq(pair, s2, 3)  # message 5 (multipart)
        for read in reversed(READS):
            pair.run(s1, read.format(seq=4))
        pair.run(s1, "UID FETCH 5 (BODY.PEEK[] RFC822.SIZE)")
        pair.run(s1, "UID SEARCH TEXT ab")

        # Round 3: UID commands on a freshly expunged message.
        expunge_seq(pair, s2, 1)
        pair.run(s1, "UID FETCH 1 (BODY.PEEK[])")
        pair.run(s1, "UID FETCH 1:* (BINARY.PEEK[1] RFC822.SIZE)")
        pair.run(s1, "UID SEARCH BODY ab")
        pair.run(s1, "SEARCH BODY ab")
        # Every message left still reads, and the answers still agree.
        final = pair.run(s1, "FETCH 1:* (BODY.PEEK[])")
        assert final[-1].startswith(b"TAG OK"), final
        assert sum(1 for line in final if b" FETCH (" in line) == 4, final
    finally:
        pair.close()
    # Some commands are bound to answer NO in both (FETCH of an expunged
    # message): the test is that dovekie answers the same, never a tempfail.
    assert not any(b"UNAVAILABLE" in line for _, lines in pair.transcript for line in lines)
    assert_clean_log(stock)
    assert_clean_log(dk)
    assert not dk.find_log(r"cannot read message uid="), "the read hook logged a failed read"


# ---- concurrent ----

CONCURRENT_SESSIONS = 5
CONCURRENT_ROUNDS = 25


def _worker(dc, seed: int, replies: list[bytes], errors: list[BaseException]) -> None:
    rng = random.Random(seed)
    try:
        s = RawImap(dc)
        try:
            s.run("SELECT INBOX")
            for i in range(CONCURRENT_ROUNDS):
                op = rng.random()
                if op < 0.2:
                    cmd = "NOOP"
                    s.append("INBOX", message(100 + seed * 100 + i,
                                              f"concurrent {'ab' if i % 2 else 'cd'} {seed}"))
                elif op < 0.4:
                    n = rng.randint(1, 3)
                    s.run(f"STORE {n} +FLAGS.SILENT (\\Deleted)")
                    cmd = "EXPUNGE"
                elif op < 0.7:
                    cmd = rng.choice(["SEARCH BODY ab", "SEARCH TEXT concurrent",
                                      "UID SEARCH BODY ab", "SEARCH SUBJECT message"])
                else:
                    cmd = rng.choice(["FETCH 1:3 (BODY.PEEK[])", "FETCH 2 (BODY[TEXT])",
                                      "UID FETCH 1:* (RFC822.SIZE)",
                                      "FETCH 1:* (BINARY.PEEK[1])"])
                lines = s.run(cmd)
                status = lines[-1]
                if not status.startswith(b"TAG OK"):
                    replies.append(re.sub(rb"^TAG ", b"", status).strip())
        finally:
            s.close()
    except BaseException as e:  # reported by the main thread
        errors.append(e)


def run_concurrent(dc) -> list[bytes]:
    replies: list[bytes] = []
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_worker, args=(dc, seed, replies, errors))
               for seed in range(CONCURRENT_SESSIONS)]
    run_threads(threads, errors)
    return replies


# The NO replies Dovecot itself gives when messages vanish under a command.
STOCK_EXPUNGE_REPLIES = re.compile(
    rb"^NO (?:\[EXPUNGEISSUED\] )?(?:Some of the requested messages no longer exist"
    rb"|Invalid messageset|No matching messages)")


def test_concurrent_expunge_search_and_fetch(stock_and_dovekie):
    stock, dk = stock_and_dovekie
    pair = Pair(stock, dk)
    try:
        fill(pair)
    finally:
        pair.close()
    stock_replies = run_concurrent(stock)
    dk_replies = run_concurrent(dk)
    allowed = set(stock_replies)
    unexpected = [r for r in dk_replies
                  if r not in allowed and not STOCK_EXPUNGE_REPLIES.match(r)]
    assert not unexpected, f"NO/BAD from dovekie that stock did not give: {unexpected}"
    assert not any(r.startswith(b"BAD") for r in dk_replies), dk_replies
    assert_clean_log(stock)
    assert_clean_log(dk)
    # The index still agrees with the mail: a search through it finds
    # exactly the messages whose text holds the word.
    s = RawImap(dk)
    try:
        s.run("SELECT INBOX")
        texts = s.run("UID FETCH 1:* (BODY.PEEK[TEXT])")
        want = sorted(int(m.group(1)) for line in texts
                      if (m := re.match(rb"\* \d+ FETCH \(UID (\d+) BODY\[TEXT\] \{\d+\}\r\n",
                                        line)) and b"ab" in line.split(b"}\r\n", 1)[1].lower())
        got = s.run("UID SEARCH BODY ab")
        assert got[0] == ("* SEARCH" + "".join(f" {u}" for u in want) + "\r\n").encode(), \
            (got, want)
    finally:
        s.close()
    assert_clean_log(dk)
