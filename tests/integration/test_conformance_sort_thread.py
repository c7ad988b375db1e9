"""Conformance: SORT and THREAD (RFC 5256) with full-text keys (issue 18, item 3).

SORT by every criterion and THREAD by ORDEREDSUBJECT and REFERENCES over a
small mailbox of threaded messages with distinct dates, sizes, senders and
subjects, with search keys the fts backend answers (BODY, TEXT, SUBJECT,
HEADER, their NOT and OR) mixed with flag keys, also as UID SORT/THREAD,
ESORT (RETURN options), and again after flag changes and an expunge by
another session. Every response line of a dovekie Dovecot (fts = dovekie,
every module) is compared with a stock Dovecot's (conformance.py).
"""

from __future__ import annotations

from conformance import Pair, assert_clean_log, stock_and_dovekie  # noqa: F401

DATE = '"01-Jan-2024 10:00:00 +0000"'


def message(n: int, sender: str, subject: str, body: str, day: int,
            reply_to: int | None = None, cc: str = "") -> bytes:
    refs = f"In-Reply-To: <t{reply_to}@example.test>\r\nReferences: <t{reply_to}@example.test>\r\n" \
        if reply_to else ""
    cc_line = f"Cc: {cc}\r\n" if cc else ""
    return (f"From: {sender}\r\nTo: alice@example.test\r\n{cc_line}"
            f"Subject: {subject}\r\nMessage-ID: <t{n}@example.test>\r\n{refs}"
            f"Date: Mon, {day:02d} Jan 2024 1{n % 10}:00:00 +0000\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{body}\r\n" + "padding line\r\n" * (n * 3 % 7)).encode()


MESSAGES = [
    message(1, "Zed <zed@example.test>", "Plans for spring", "let us talk about the garden", 5),
    message(2, "amy@example.test", "Re: Plans for spring", "garden sounds good, apple trees", 6,
            reply_to=1, cc="bob@example.test"),
    message(3, "Bob <bob@example.test>", "invoice 42", "please pay the invoice for apples", 3),
    message(4, "carol@example.test", "Re: Re: Plans for spring", "and a pond in the garden", 8,
            reply_to=2),
    message(5, "dave@example.test", "Fwd: invoice 42", "forwarding the invoice", 4, reply_to=3),
    message(6, "Amy <amy@example.test>", "lunch", "lunch at noon? garden cafe", 9),
    message(7, "eve@example.test", "Re: lunch", "yes, noon works", 7, reply_to=6,
            cc="zed@example.test"),
    message(8, "frank@example.test", "unrelated", "nothing about gardens here", 1),
]

KEYS = ["ALL", "BODY garden", "TEXT apple", "SUBJECT plans", "HEADER Cc example",
        "NOT BODY garden", "OR BODY invoice SUBJECT lunch", "BODY garden SEEN",
        "BODY garden NOT FLAGGED", "TEXT noon UNSEEN", "2:7 BODY the", "FROM amy BODY garden"]
SORTS = ["ARRIVAL", "REVERSE DATE", "FROM", "SUBJECT", "SIZE", "REVERSE TO", "CC",
         "DISPLAYFROM", "REVERSE DISPLAYTO", "SUBJECT REVERSE SIZE", "REVERSE ARRIVAL"]


def queries() -> list[str]:
    out = []
    for i, key in enumerate(KEYS):
        out.append(f"SORT ({SORTS[i % len(SORTS)]}) UTF-8 {key}")
        out.append(f"UID SORT ({SORTS[(i + 3) % len(SORTS)]}) UTF-8 {key}")
        out.append(f"THREAD ORDEREDSUBJECT UTF-8 {key}")
        out.append(f"UID THREAD REFERENCES UTF-8 {key}")
    out += ["SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 BODY garden",
            "UID SORT RETURN (ALL) (REVERSE SIZE) UTF-8 TEXT invoice",
            "SORT RETURN (PARTIAL 1:2) (SUBJECT) UTF-8 BODY the",
            "SORT (DATE) US-ASCII BODY garden", "THREAD REFERENCES US-ASCII NOT TEXT lunch",
            "SEARCH RETURN (SAVE) BODY garden", "SORT (SIZE) UTF-8 $",
            "THREAD REFERENCES UTF-8 $ NOT SUBJECT lunch"]
    return out


def test_sort_and_thread(stock_and_dovekie):
    stock, dk = stock_and_dovekie
    pair = Pair(stock, dk)
    try:
        s = pair.open()
        for raw in MESSAGES:
            pair.run(s, f"APPEND INBOX () {DATE}", raw)
        caps = pair.run(s, "CAPABILITY")[0]
        for cap in (b"SORT", b"THREAD=REFERENCES", b"THREAD=ORDEREDSUBJECT", b"ESORT"):
            assert cap in caps, caps
        pair.run(s, "SELECT INBOX")
        first = {q: pair.run(s, q) for q in queries()}
        assert first["SORT (ARRIVAL) UTF-8 ALL"][0] == b"* SORT 1 2 3 4 5 6 7 8\r\n"
        assert first["UID THREAD REFERENCES UTF-8 BODY garden"][0] == \
            b"* THREAD (8)(1 2 4)(6)\r\n", first["UID THREAD REFERENCES UTF-8 BODY garden"]
        pair.run(s, "STORE 2,4,6 +FLAGS (\\Seen)")
        pair.run(s, "STORE 1,6 +FLAGS (\\Flagged)")
        other = pair.open()
        pair.run(other, "SELECT INBOX")
        pair.run(other, "STORE 2 +FLAGS.SILENT (\\Deleted)")
        pair.run(other, "EXPUNGE")
        pair.run(s, "NOOP")
        pair.run(s, f"APPEND INBOX () {DATE}",
                 message(9, "gina@example.test", "Re: Plans for spring", "garden gnome", 2,
                         reply_to=2))
        pair.run(s, "NOOP")
        second = {q: pair.run(s, q) for q in queries()}
        assert second != first
    finally:
        pair.close()
    assert_clean_log(stock)
    assert_clean_log(dk)
