"""Conformance: ESEARCH, SEARCHRES, CONTEXT=SEARCH and UPDATE (issue 18, item 3).

RFC 4731 (ESEARCH: RETURN MIN, MAX, COUNT, ALL), RFC 5182 (SEARCHRES:
RETURN (SAVE) and `$`) and RFC 5267 (CONTEXT=SEARCH: PARTIAL, UPDATE with
ADDTO and REMOVEFROM, CANCELUPDATE) on a small mailbox, with full-text keys
the fts backend answers and flag keys Dovecot answers, mixed. Every response
line of a dovekie Dovecot (fts = dovekie, every module) is compared with a
stock Dovecot's (conformance.py).

The UPDATE case is the issue's: after `SEARCH RETURN (UPDATE) BODY body
SEEN`, flag changes and expunges, by this session and by another one, must
bring the same ADDTO and REMOVEFROM as stock Dovecot sends. With the fts
backend answering, no ADDTO followed `STORE 1,2,4 +FLAGS \\Seen`, no
REMOVEFROM followed -FLAGS or EXPUNGE, and a REMOVEFROM named context 0
(the issue expected `$` there; stock Dovecot sends 0 too).
"""

from __future__ import annotations

import random

from conformance import Pair, assert_clean_log, stock_and_dovekie  # noqa: F401

DATE = '"01-Jan-2024 10:00:00 +0000"'


def message(n: int, subject: str, body: str) -> bytes:
    return (f"From: sender{n}@example.test\r\nTo: alice@example.test\r\n"
            f"Subject: {subject}\r\nMessage-ID: <e{n}@example.test>\r\n"
            f"Date: Mon, {n:02d} Jan 2024 10:00:00 +0000\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{body}\r\n").encode()


BODIES = ["a body with apple", "another body, banana", "no such word here",
          "body of cherry apple", "body body banana", "plain text only",
          "the last body apple"]
MESSAGES = [message(i + 1, f"subject {w.split()[-1]} {i + 1}", w) for i, w in enumerate(BODIES)]


def fill(pair: Pair, s, mailbox: str = "INBOX") -> None:
    for raw in MESSAGES:
        pair.run(s, f"APPEND {mailbox} () {DATE}", raw)


def test_esearch_and_searchres(stock_and_dovekie):
    stock, dk = stock_and_dovekie
    pair = Pair(stock, dk)
    try:
        s = pair.open()
        fill(pair, s)
        caps = pair.run(s, "CAPABILITY")[0]
        for cap in (b"ESEARCH", b"SEARCHRES", b"CONTEXT=SEARCH"):
            assert cap in caps, caps
        pair.run(s, "SELECT INBOX")
        pair.run(s, "STORE 2,5 +FLAGS (\\Flagged)")
        got = {}
        for q in ["SEARCH RETURN () BODY apple", "SEARCH RETURN (MIN) BODY body",
                  "SEARCH RETURN (MAX) BODY body", "SEARCH RETURN (COUNT) BODY body",
                  "SEARCH RETURN (ALL) TEXT banana", "SEARCH RETURN (MIN MAX COUNT ALL) BODY body",
                  "SEARCH RETURN (MIN MAX) BODY nosuchword", "SEARCH RETURN (COUNT) NOT BODY body",
                  "UID SEARCH RETURN (MIN MAX COUNT ALL) BODY apple",
                  "SEARCH RETURN (ALL) OR BODY cherry FLAGGED",
                  "SEARCH RETURN (COUNT ALL) BODY body UNFLAGGED",
                  "SEARCH RETURN (ALL) SUBJECT banana", "SEARCH RETURN (ALL) 2:6 BODY body",
                  "SEARCH RETURN (PARTIAL 1:2) BODY body", "SEARCH RETURN (PARTIAL -1:-2) BODY body",
                  "UID SEARCH RETURN (PARTIAL 2:3 COUNT) TEXT body",
                  # SEARCHRES: save, then use $ in SEARCH, FETCH and STORE.
                  "SEARCH RETURN (SAVE) BODY apple", "FETCH $ (FLAGS)",
                  "SEARCH RETURN (ALL) $ BODY body", "SEARCH $ NOT FLAGGED",
                  "SEARCH RETURN (SAVE MIN MAX) BODY banana", "UID SEARCH $",
                  "SEARCH RETURN (SAVE) OR BODY cherry SUBJECT apple", "STORE $ +FLAGS (\\Answered)",
                  "SEARCH RETURN (ALL) ANSWERED", "SEARCH RETURN (SAVE) BODY nosuchword",
                  "SEARCH $", "UID SEARCH RETURN (SAVE COUNT) NOT BODY body", "UID FETCH $ (UID)",
                  "SEARCH RETURN (SAVE ALL) BODY apple FLAGGED", "SEARCH RETURN (ALL) $"]:
            got[q] = pair.run(s, q)
        assert got["SEARCH RETURN (MIN MAX COUNT ALL) BODY body"][0].endswith(
            b") MIN 1 MAX 7 ALL 1:2,4:5,7 COUNT 5\r\n")
        assert got["SEARCH RETURN (ALL) ANSWERED"][0].endswith(b" ALL 1,4,7\r\n")
        # After an expunge by another session, $ follows the messages.
        pair.run(s, "SEARCH RETURN (SAVE) BODY banana")
        other = pair.open()
        pair.run(other, "SELECT INBOX")
        pair.run(other, "STORE 2 +FLAGS.SILENT (\\Deleted)")
        pair.run(other, "EXPUNGE")
        for q in ["NOOP", "SEARCH $", "SEARCH RETURN (ALL) $ BODY body", "UID SEARCH $"]:
            pair.run(s, q)
    finally:
        pair.close()
    assert_clean_log(stock)
    assert_clean_log(dk)


UPDATE_SEARCHES = ["SEARCH RETURN (UPDATE) BODY body SEEN",
                   "UID SEARCH RETURN (UPDATE) BODY body SEEN",
                   "SEARCH RETURN (UPDATE COUNT) BODY body UNSEEN",
                   "SEARCH RETURN (UPDATE MIN MAX) OR BODY apple FLAGGED",
                   "SEARCH RETURN (UPDATE) TEXT banana NOT SEEN",
                   "SEARCH RETURN (UPDATE PARTIAL 1:3) BODY body",
                   "SEARCH RETURN (UPDATE ALL SAVE) BODY body SEEN",
                   "UID SEARCH RETURN (UPDATE ALL COUNT) NOT BODY apple SEEN"]


RANDOM_UPDATE_SEARCHES = ["SEARCH RETURN (UPDATE) BODY body SEEN",
                          "UID SEARCH RETURN (UPDATE) TEXT apple NOT FLAGGED",
                          "SEARCH RETURN (UPDATE COUNT) OR BODY banana SEEN",
                          "SEARCH RETURN (UPDATE) NOT BODY body ANSWERED",
                          "UID SEARCH RETURN (UPDATE MIN MAX) SUBJECT apple UNSEEN"]


def update_script(pair: Pair, s, other, search: str) -> list[bytes]:
    """One UPDATE search with flag changes and expunges, from this session
    and from another one; returns the lines of the last command."""
    pair.run(s, search)
    tag = f"c{s[0].count}"
    pair.run(s, "STORE 1,2,4 +FLAGS (\\Seen)")
    pair.run(s, "NOOP")
    pair.run(s, "STORE 2 -FLAGS (\\Seen)")
    pair.run(s, "STORE 3,5 +FLAGS (\\Seen \\Flagged)")
    pair.run(other, "STORE 7 +FLAGS (\\Seen)")
    pair.run(other, "STORE 4 -FLAGS (\\Seen)")
    pair.run(s, "NOOP")
    pair.run(s, "STORE 1 +FLAGS.SILENT (\\Deleted)")
    pair.run(s, "EXPUNGE")
    pair.run(other, "NOOP")
    pair.run(other, "STORE 3 +FLAGS.SILENT (\\Deleted)")
    pair.run(other, "EXPUNGE")
    pair.run(s, "NOOP")
    pair.run(s, f"APPEND INBOX (\\Seen) {DATE}", message(9, "appended seen", "appended body"))
    pair.run(s, "NOOP")
    pair.run(other, f"APPEND INBOX () {DATE}", message(10, "appended apple", "new body apple"))
    pair.run(s, "NOOP")
    pair.run(s, "STORE 1:* +FLAGS (\\Seen)")
    last = pair.run(s, f'CANCELUPDATE "{tag}"')
    pair.run(s, "STORE 1:* -FLAGS (\\Seen)")
    pair.run(s, "NOOP")
    return last


def test_context_update(stock_and_dovekie):
    stock, dk = stock_and_dovekie
    pair = Pair(stock, dk)
    try:
        s = pair.open()
        other = pair.open()
        for i, search in enumerate(UPDATE_SEARCHES):
            box = f"Up{i}"
            pair.run(s, f"CREATE {box}")
            fill(pair, s, box)
            pair.run(s, f"SELECT {box}")
            pair.run(other, f"SELECT {box}")
            update_script(pair, s, other, search)
        # The case, checked by value as well: ADDTO after +FLAGS,
        # REMOVEFROM after -FLAGS and EXPUNGE, with the context `$`.
        pair.run(s, "CREATE Issue")
        fill(pair, s, "Issue")
        pair.run(s, "SELECT Issue")
        pair.run(s, "SEARCH BODY body SEEN")
        pair.run(s, "SEARCH BODY body")
        first = pair.run(s, "SEARCH RETURN (UPDATE) BODY body SEEN")
        assert first[-1].startswith(b"TAG OK"), first
        added = pair.run(s, "STORE 1,2,4 +FLAGS (\\Seen)")
        assert any(b"ADDTO" in line for line in added), added
        removed = pair.run(s, "STORE 2 -FLAGS (\\Seen)")
        assert any(b"REMOVEFROM" in line for line in removed), removed
        pair.run(s, "STORE 1 +FLAGS.SILENT (\\Deleted)")
        expunged = pair.run(s, "EXPUNGE")
        pair.run(other, "NOOP")
        assert any(b"REMOVEFROM" in line for line in expunged), expunged
        # RFC 5267 gives a position of 0 where the server does not say
        # one; stock Dovecot does so (never `$`).
        assert expunged[0].endswith(b" REMOVEFROM (0 1)\r\n"), expunged
        uid_first = pair.run(s, "UID SEARCH RETURN (UPDATE ALL) BODY body NOT SEEN")
        assert uid_first[0].endswith(b" UID ALL 2,5,7\r\n"), uid_first
        flagged = pair.run(s, "STORE 1:* -FLAGS (\\Seen)")
        assert any(line.endswith(b" UID ADDTO (0 4)\r\n") for line in flagged), flagged

        # Random flag changes and expunges under several UPDATE searches at
        # once, from both sessions.
        rng = random.Random(18)
        pair.run(s, "CREATE Random")
        fill(pair, s, "Random")
        fill(pair, s, "Random")
        pair.run(s, "SELECT Random")
        pair.run(other, "SELECT Random")
        for search in RANDOM_UPDATE_SEARCHES:
            pair.run(s, search)
        exists = 2 * len(MESSAGES)
        for step in range(60):
            who = s if rng.random() < 0.6 else other
            if rng.random() < 0.08 and exists > 4:
                pair.run(who, f"STORE {rng.randint(1, exists)} +FLAGS.SILENT (\\Deleted)")
                pair.run(who, "EXPUNGE")
                exists -= 1
                pair.run(s if who is other else other, "NOOP")
            else:
                lo = rng.randint(1, exists)
                hi = rng.randint(lo, exists)
                sign = rng.choice("+-")
                flag = rng.choice(["\\Seen", "\\Flagged", "\\Seen \\Flagged", "\\Answered"])
                pair.run(who, f"STORE {lo}:{hi} {sign}FLAGS ({flag})")
            if step % 7 == 0:
                pair.run(s, "NOOP")
        seen = b"".join(b"".join(lines) for _, lines in pair.transcript[-100:])
        assert b"ADDTO" in seen and b"REMOVEFROM" in seen
    finally:
        pair.close()
    assert_clean_log(stock)
    assert_clean_log(dk)
