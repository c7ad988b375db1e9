"""Conformance: searches around mailbox DELETE, CREATE and RENAME (issue 18, item 1).

One session appends a message with "oldword", searches (which builds the
index), deletes the mailbox, creates it again under the same name, appends
a message with "newword" and searches again. The search index of the old
mailbox must be gone with it: an index handle kept open in the imap
process (on the unlinked file) answered `* SEARCH` with nothing for BODY,
TEXT, SUBJECT and HEADER. A RENAME must keep the index usable under the
new name, and a mailbox created under the old name starts empty.

Every response line is compared with a stock Dovecot's (conformance.py),
and neither log may hold an Error line, the indexer-worker's included.
"""

from __future__ import annotations

from conformance import Pair, assert_clean_log, stock_and_dovekie  # noqa: F401
from test_search import INDEX_FILE


def message(subject: str, body: str, tag: str) -> bytes:
    return (f"From: sender@example.test\r\nTo: alice@example.test\r\n"
            f"Subject: {subject}\r\nX-Tag: {tag}\r\nMessage-ID: <{tag}@example.test>\r\n"
            "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{body}\r\n").encode()


OLD = message("oldsubject here", "the oldword body", "oldtag")
NEW = message("newsubject here", "the newword body", "newtag")
MORE = message("moresubject here", "the moreword body", "moretag")

SEARCHES = ["SEARCH BODY oldword", "SEARCH BODY newword", "SEARCH BODY moreword",
            "SEARCH TEXT oldword", "SEARCH TEXT newword", "SEARCH TEXT moreword",
            "SEARCH SUBJECT oldsubject", "SEARCH SUBJECT newsubject",
            "SEARCH SUBJECT moresubject", "SEARCH HEADER X-Tag oldtag",
            "SEARCH HEADER X-Tag newtag", "SEARCH HEADER X-Tag moretag",
            "UID SEARCH BODY word", "SEARCH NOT BODY oldword"]

DATE = '"01-Jan-2024 10:00:00 +0000"'


def search_all(pair: Pair, s, mailbox: str) -> dict[str, bytes]:
    pair.run(s, f"SELECT {mailbox}")
    return {q: pair.run(s, q)[0] for q in SEARCHES}


def maildir_index(dc, mailbox: str):
    return dc.home("alice") / "Maildir" / f".{mailbox}" / INDEX_FILE


def test_delete_create_rename_in_one_session(stock_and_dovekie):
    stock, dk = stock_and_dovekie
    pair = Pair(stock, dk)
    try:
        s = pair.open()
        # The case: DELETE and CREATE again, the same session.
        pair.run(s, "CREATE Box")
        pair.run(s, f"APPEND Box () {DATE}", OLD)
        first = search_all(pair, s, "Box")
        assert first["SEARCH BODY oldword"] == b"* SEARCH 1\r\n"
        assert maildir_index(dk, "Box").is_file(), "the index was not used"
        pair.run(s, "SELECT INBOX")
        pair.run(s, "DELETE Box")
        pair.run(s, "CREATE Box")
        pair.run(s, f"APPEND Box () {DATE}", NEW)
        again = search_all(pair, s, "Box")
        for q in ("SEARCH BODY newword", "SEARCH TEXT newword", "SEARCH SUBJECT newsubject",
                  "SEARCH HEADER X-Tag newtag"):
            assert again[q] == b"* SEARCH 1\r\n", (q, again[q])
        assert again["SEARCH BODY oldword"] == b"* SEARCH\r\n"

        # DELETE (as before: Dovecot disconnects a session whose selected
        # mailbox it deletes), then CREATE and two messages.
        pair.run(s, "SELECT INBOX")
        pair.run(s, "DELETE Box")
        pair.run(s, "CREATE Box")
        pair.run(s, f"APPEND Box () {DATE}", MORE)
        pair.run(s, f"APPEND Box () {DATE}", OLD)
        third = search_all(pair, s, "Box")
        assert third["SEARCH BODY moreword"] == b"* SEARCH 1\r\n"
        assert third["SEARCH BODY oldword"] == b"* SEARCH 2\r\n"

        # RENAME: the index moves with the mailbox and stays usable; the
        # old name, created again, starts empty.
        pair.run(s, "SELECT INBOX")
        pair.run(s, "RENAME Box Moved")
        moved = search_all(pair, s, "Moved")
        assert moved == third
        pair.run(s, f"APPEND Moved () {DATE}", NEW)
        moved = search_all(pair, s, "Moved")
        assert moved["SEARCH BODY newword"] == b"* SEARCH 3\r\n"
        pair.run(s, "CREATE Box")
        pair.run(s, f"APPEND Box () {DATE}", NEW)
        fresh = search_all(pair, s, "Box")
        assert fresh["SEARCH BODY newword"] == b"* SEARCH 1\r\n"
        assert fresh["SEARCH BODY moreword"] == b"* SEARCH\r\n"
        # RENAME of the selected mailbox, and back under a used name.
        pair.run(s, "SELECT Moved")
        pair.run(s, "RENAME Moved Twice")
        assert search_all(pair, s, "Twice") == moved
        pair.run(s, "DELETE Box")
        pair.run(s, "RENAME Twice Box")
        assert search_all(pair, s, "Box") == moved
        assert search_all(pair, s, "Box") == moved

        # Another session deletes and creates the mailbox this one searched.
        other = pair.open()
        pair.run(s, "SELECT INBOX")
        pair.run(other, "DELETE Box")
        pair.run(other, "CREATE Box")
        pair.run(other, f"APPEND Box () {DATE}", MORE)
        last = search_all(pair, s, "Box")
        assert last["SEARCH BODY moreword"] == b"* SEARCH 1\r\n"
        assert last["SEARCH BODY newword"] == b"* SEARCH\r\n"
    finally:
        pair.close()
    assert maildir_index(dk, "Box").is_file()
    assert not maildir_index(dk, "Moved").exists() and not maildir_index(dk, "Twice").exists()
    assert_clean_log(stock)
    assert_clean_log(dk)
