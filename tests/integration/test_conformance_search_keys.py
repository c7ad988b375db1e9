"""Conformance: every RFC 3501 SEARCH key, and charsets (issue 18, item 4).

A small mixed mailbox (plain text, UTF-8 and ISO-8859-1 bodies in 8bit,
quoted-printable and base64, encoded-word headers, multipart with an
attachment, HTML, mixed case) with flags, keywords, internal dates and
sizes that differ. Each search key of RFC 3501 §6.4.4, alone, negated and
combined with a full-text key, then full-text needles sent with CHARSET
UTF-8 and ISO-8859-1 (as literals), with an unknown charset and with bytes
that are not valid in the charset. Every response line of a dovekie Dovecot
(fts = dovekie, every module) is compared with a stock Dovecot's
(conformance.py).
"""

from __future__ import annotations

import base64

from conformance import Pair, assert_clean_log, stock_and_dovekie  # noqa: F401
from test_search import INDEX_FILE


def head(n: int, subject: str, sender: str = "sender@example.test", extra: str = "",
         day: int = 1) -> str:
    return (f"From: {sender}\r\nTo: alice@example.test\r\nCc: carol{n}@example.test\r\n"
            f"Bcc: hidden{n}@example.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <k{n}@example.test>\r\nDate: Mon, {day:02d} Jan 2024 10:00:00 +0000\r\n"
            f"MIME-Version: 1.0\r\n{extra}")


LATIN1_BODY = "Größe und Übermaß, café crème".encode("latin-1")
MESSAGES = [
    (head(1, "Plain hello", day=2) + "Content-Type: text/plain\r\n\r\n"
     "Hello World, the Quick brown fox.\r\n").encode(),
    (head(2, "=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=", "Jörg <joerg@example.test>", day=3)
     + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
     "Grüße aus Köln, naïve café, 東京 and Ωmega.\r\n").encode(),
    (head(3, "latin one", day=4)
     + "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
     ).encode() + LATIN1_BODY + b"\r\n",
    (head(4, "quoted printable", day=5)
     + "Content-Type: text/plain; charset=iso-8859-1\r\n"
     "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
     "Gr=F6=DFe in quoted=3Dprintable, soft=\r\nwrapped word.\r\n").encode(),
    (head(5, "=?ISO-8859-1?B?" + base64.b64encode("Übersicht".encode("latin-1")).decode() + "?=",
          day=6)
     + "Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n"
     "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
     + base64.b64encode("base64 Zürich hidden needle".encode()).decode()
     + "\r\n--XX\r\nContent-Type: application/octet-stream\r\n"
     "Content-Disposition: attachment; filename=\"data.bin\"\r\n"
     "Content-Transfer-Encoding: base64\r\n\r\n"
     + base64.b64encode(b"attachment text zebra").decode() + "\r\n--XX--\r\n").encode(),
    (head(6, "HTML Mail", "Big Sender <BIG@EXAMPLE.TEST>", day=7)
     + "Content-Type: text/html; charset=utf-8\r\n\r\n"
     "<html><body><p>Some <b>bold</b> HTML text &amp; more</p></body></html>\r\n").encode(),
    (head(7, "Large one", day=8) + "Content-Type: text/plain\r\n\r\n"
     + "filler line of text\r\n" * 300 + "the end marker\r\n").encode(),
    (head(8, "no body at all", "other@example.test", "X-Custom: Special Value\r\n", day=9)
     + "Content-Type: text/plain\r\n\r\n").encode(),
]
DATES = ["01-Jan-2024 10:00:00 +0000", "02-Jan-2024 10:00:00 +0000", "03-Jan-2024 23:30:00 -0500",
         "04-Jan-2024 10:00:00 +0000", "05-Jan-2024 10:00:00 +0000", "06-Jan-2024 10:00:00 +0000",
         "07-Jan-2024 10:00:00 +0000", "08-Jan-2024 10:00:00 +0000"]
FLAGS = ["\\Seen", "\\Answered \\Seen", "\\Flagged", "\\Draft", "\\Deleted", "$Work", "\\Seen $Home",
         ""]

KEYS = ["ALL", "ANSWERED", "BCC hidden3", "BEFORE 4-Jan-2024", "BODY world", "CC carol2",
        "DELETED", "DRAFT", "FLAGGED", "FROM joerg", "FROM big@example", "HEADER X-Custom special",
        "HEADER X-Custom \"\"", "HEADER Subject plain", "KEYWORD $Work", "LARGER 1000", "NEW",
        "NOT SEEN", "OLD", "ON 3-Jan-2024", "OR FLAGGED DRAFT", "RECENT", "SEEN",
        "SENTBEFORE 4-Jan-2024", "SENTON 5-Jan-2024", "SENTSINCE 7-Jan-2024", "SINCE 6-Jan-2024",
        "SMALLER 500", "SUBJECT hello", "SUBJECT \"GRÜSSE\"", "TEXT quick", "TO alice", "UID 2:4,7",
        "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNKEYWORD $Work", "UNSEEN", "2:5",
        "1,3,*", "$", "BODY \"\"", "TEXT \"quick brown\"", "BODY \"BROWN FOX\"", "BODY html",
        "BODY bold", "BODY &amp;", "BODY zebra", "BODY \"zürich\"", "TEXT needle", "BODY marker",
        "TEXT data.bin", "TEXT special", "SUBJECT \"übersicht\"", "BODY printable", "BODY softwrapped",
        "BODY soft", "BODY o", "TEXT example.test", "BODY 10:00"]
# Full-text keys combined with the others.
COMBOS = ["BODY the SEEN", "TEXT example NOT DELETED", "OR BODY world BODY zebra",
          "NOT (BODY the OR SUBJECT one FLAGGED)", "BODY e LARGER 400 SINCE 2-Jan-2024",
          "UID 3:* NOT TEXT quick", "KEYWORD $Home TEXT \"grüße\"", "(BODY a BODY e) (NOT BODY q)"]
NEEDLES = ["größe", "GRÖSSE", "café", "köln", "東京", "ωmega", "übermaß", "zürich", "naïve",
           "ü", "crème",
           # one character, or two with punctuation (character terms, issue 20)
           "ß", "é", "Ö", "東", "&", ",", "<", "=", "e,", ".\r", "x",
           # three non-word characters (triple terms, schema 9)
           "></", "...", "://", "<>/"]


def test_every_search_key(stock_and_dovekie):
    stock, dk = stock_and_dovekie
    pair = Pair(stock, dk)
    try:
        s = pair.open()
        for raw, date, flags in zip(MESSAGES, DATES, FLAGS):
            pair.run(s, f'APPEND INBOX ({flags}) "{date}"', raw)
        pair.run(s, "SELECT INBOX")
        pair.run(s, "SEARCH RETURN (SAVE) BODY e")
        got = {}
        for key in KEYS + COMBOS:
            for form in ("SEARCH {}", "SEARCH NOT {}", "UID SEARCH {} UNDELETED"):
                q = form.format(key)
                got[q] = pair.run(s, q)
                assert got[q][-1].startswith(b"TAG OK"), (q, got[q])
        assert got["SEARCH BODY world"][0] == b"* SEARCH 1\r\n"
        assert got["SEARCH TEXT needle"][0] == b"* SEARCH 5\r\n"
        for needle in NEEDLES:
            for charset, encoding in (("UTF-8", "utf-8"), ("ISO-8859-1", "latin-1")):
                try:
                    raw = needle.encode(encoding)
                except UnicodeEncodeError:
                    continue
                for key in ("BODY", "TEXT", "SUBJECT", "FROM"):
                    got[(needle, charset, key)] = pair.run(
                        s, f"SEARCH CHARSET {charset} {key}", raw)
        assert got[("größe", "ISO-8859-1", "BODY")][0] == got[("größe", "UTF-8", "BODY")][0]
        assert got[("größe", "UTF-8", "BODY")][0] != b"* SEARCH\r\n"
        # Unknown charset, and bytes that are not UTF-8.
        pair.run(s, "SEARCH CHARSET X-NO-SUCH BODY", "größe".encode())
        pair.run(s, "SEARCH CHARSET UTF-8 BODY", b"gr\xf6\xdfe")
        pair.run(s, "SEARCH CHARSET US-ASCII BODY", "größe".encode())
        pair.run(s, 'SEARCH BODY "größe"')
    finally:
        pair.close()
    assert (dk.home("alice") / "Maildir" / INDEX_FILE).is_file(), "the index was not used"
    assert_clean_log(stock)
    assert_clean_log(dk)
