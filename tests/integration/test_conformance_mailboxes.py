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

import random
import re
import threading

from conformance import Pair, RawImap, assert_clean_log, run_threads, stock_and_dovekie  # noqa: F401
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

SEARCHES = ["SEARCH BODY alpha", "SEARCH BODY oldword", "SEARCH BODY newword", "SEARCH BODY moreword",
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


# ---- concurrent ----

SEARCHERS = 3
CYCLES = 12

# What Dovecot answers a session whose mailbox another one deletes and
# creates under it; stock gives each of them too. A SERVERBUG reply must
# come with nothing but Dovecot's own race errors in the log (below).
# Two DELETEs of one mailbox at once: the first marks its index deleted
# and only then renames the directory away; the second, opening it in
# between, finds the mark, takes it for a \Noselect directory and answers
# "Mailbox exists." (mailbox_delete_real(), maildir_list_delete_dir()).
# A DELETE while another session appends: "New mails were added to mailbox
# during deletion." (index_storage_mailbox_delete_pre()).
STOCK_RACE_REPLIES = re.compile(
    rb"^NO \[(?:NONEXISTENT|TRYCREATE|ALREADYEXISTS)\] |^NO Mailbox doesn't exist"
    rb"|^NO \[EXPUNGEISSUED\] |^NO Mailbox was deleted under us"
    rb"|^NO \[SERVERBUG\] Internal error occurred"
    rb"|^NO Mailbox exists\.|^NO New mails were added to mailbox during deletion\.")
# Dovecot's own maildir races between DELETE, CREATE and an open of the same
# mailbox: stock logs them too, about its index, cache, uidlist and temporary
# files. A dovekie line is allowed only with such a race as its cause (the
# index failed to read a mail because of it); any other Error is a failure.
DOVECOT_RACE = (r"Mailbox \S+: .*(?:dovecot\.index|dovecot-uidlist|/tmp/)"
                # with or without a "Mailbox ...: (" before it (maildir-uidlist.c
                # logs the unlink of a dovecot-uidlist.tmp of a deleted folder bare)
                r"|\b(?:unlink|rename)\(.*(?:dovecot-uidlist|/tmp/).*\) failed: No such file"
                r"|dotlock .*dovecot-uidlist\.lock was immediately deleted under us"
                r"|Mailbox \S+: Deleting corrupted cache: "
                # Dovecot's fts plugin reads each mail it indexes itself, and
                # the indexer-worker logs any failure: any fts backend.
                r"|Failed to read stream: Mailbox was deleted under us")
DOVECOT_RACE_ERRORS = re.compile(
    DOVECOT_RACE + r"|Mailbox \S+: indexer failed to index mailbox"
    r"|Transaction commit failed: FTS transaction commit failed: backend deinit")


def _owner(dc, done: threading.Event, replies: list[bytes],
           errors: list[BaseException]) -> None:
    """Deletes Box, creates it again and appends to it, over and over."""
    try:
        s = RawImap(dc)
        try:
            for i in range(CYCLES):
                s.run("DELETE Box")
                # A session that has it open may have brought the directory
                # back (Dovecot's maildir, stock too): then it exists.
                created = s.run("CREATE Box")[-1]
                assert created.startswith((b"TAG OK", b"TAG NO [ALREADYEXISTS]")), created
                word = "alpha" if i % 2 else "beta"
                for raw in (message(f"cycle {word}", f"{word} body {i}", f"t{i}"),
                            message("cycle other", f"other body {i}", f"u{i}")):
                    status = s.run(f"APPEND Box () {DATE}", raw)[-1]
                    if not status.startswith(b"TAG OK"):
                        replies.append(status[len(b"TAG "):].strip())
        finally:
            s.close()
    except BaseException as e:  # reported by the main thread
        errors.append(e)
    finally:
        done.set()


def _searcher(dc, seed: int, done: threading.Event, replies: list[bytes],
              errors: list[BaseException]) -> None:
    rng = random.Random(seed)
    s = None
    try:
        while not done.is_set():
            try:
                if s is None:
                    s = RawImap(dc)
                lines = s.run("EXAMINE Box")
                if lines[-1].startswith(b"TAG OK"):
                    lines = s.run(rng.choice(["SEARCH BODY alpha", "SEARCH TEXT beta",
                                              "SEARCH SUBJECT alpha", "SEARCH HEADER X-Tag t1",
                                              "UID SEARCH BODY other"]))
            except ConnectionError:
                # Dovecot disconnects a session whose selected mailbox
                # another one deleted; stock does too.
                s = None
                continue
            if not lines[-1].startswith(b"TAG OK"):
                replies.append(lines[-1][len(b"TAG "):].strip())
    except BaseException as e:  # reported by the main thread
        errors.append(e)
    finally:
        if s is not None:
            s.close()


def run_concurrent(dc) -> list[bytes]:
    replies: list[bytes] = []
    errors: list[BaseException] = []
    done = threading.Event()
    RawImap(dc).run("CREATE Box")
    threads = [threading.Thread(target=_owner, args=(dc, done, replies, errors))]
    threads += [threading.Thread(target=_searcher, args=(dc, seed, done, replies, errors))
                for seed in range(SEARCHERS)]
    run_threads(threads, errors)
    return replies


def unexpected_errors(dc) -> list[str]:
    """Error lines beyond Dovecot's own races; a dovekie line only with such
    a race as its cause."""
    return [m.group(0) for m in dc.find_log(r"^[^\n]*(?:Panic: |Fatal: |Error: )[^\n]*$")
            if not re.search(DOVECOT_RACE if "dovekie" in m.group(0) else DOVECOT_RACE_ERRORS,
                             m.group(0))]


def test_concurrent_delete_create_and_search(stock_and_dovekie):
    stock, dk = stock_and_dovekie
    stock_replies = run_concurrent(stock)
    dk_replies = run_concurrent(dk)
    allowed = set(stock_replies)
    unexpected = [r for r in dk_replies
                  if r not in allowed and not STOCK_RACE_REPLIES.match(r)]
    assert not unexpected, f"NO/BAD from dovekie that stock did not give: {unexpected}"
    # The mailbox left is searched right through its index: a search finds
    # exactly the messages whose text holds the word.
    s = RawImap(dk)
    try:
        s.run("CREATE Box")
        s.append("Box", message("after alpha", "alpha after", "a1"))
        s.append("Box", message("after beta", "beta after", "a2"))
        assert s.run("SELECT Box")[-1].startswith(b"TAG OK")
        texts = s.run("UID FETCH 1:* (BODY.PEEK[TEXT])")
        assert len(texts) > 2, texts
        for word in ("alpha", "beta", "other"):
            want = [m.group(1).decode() for line in texts if (m := re.match(
                rb"\* \d+ FETCH \(UID (\d+) BODY\[TEXT\] \{\d+\}\r\n", line))
                and word.encode() in line.split(b"}\r\n", 1)[1]]
            got = s.run(f"UID SEARCH BODY {word}")[0]
            assert got == " ".join(["* SEARCH"] + want).encode() + b"\r\n", (word, got, want)
    finally:
        s.close()
    assert not unexpected_errors(stock), ("stock", unexpected_errors(stock))
    assert not unexpected_errors(dk), ("dovekie", unexpected_errors(dk))
