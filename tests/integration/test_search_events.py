"""The search module's counters as Dovecot events, counted by Dovecot's stats.

dovekie_search_indexed (messages, bytes) is emitted per committed batch and
dovekie_search_lookup (scope, definite, maybe) per search key the index
answers. A handful of messages keeps this fast; test_search.py proves the
results themselves.
"""

from __future__ import annotations

import time

import pytest

from test_search import OWN_MESSAGES, uid_search, write_maildir

METRICS = """
metric dovekie_search_indexed {
  filter = event=dovekie_search_indexed
  fields = messages bytes
}
metric dovekie_search_lookup {
  filter = event=dovekie_search_lookup
  fields = definite maybe
  group_by = scope
}
"""


def stats(dc) -> dict[tuple[str, str], tuple[int, int]]:
    """(metric, field) -> (count, sum) from `doveadm stats dump`."""
    res = dc.doveadm("stats", "dump")
    assert res.returncode == 0, res.stderr
    out = {}
    for line in res.stdout.splitlines():
        cols = line.split("\t")
        if cols[0].startswith("dovekie_search_") and len(cols) >= 4:
            out[(cols[0], cols[1])] = (int(cols[2]), int(cols[3]))
    return out


def wait_stats(dc, key, count, timeout=10.0) -> dict:
    """Stats arrive asynchronously: polls until `key` reaches `count`."""
    deadline = time.monotonic() + timeout
    while True:
        got = stats(dc)
        if got.get(key, (0, 0))[0] >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_search_events_reach_dovecot_stats(dovecot, plugin_path, module_paths):
    search = [p for p in module_paths if p.name == "search.so"]
    if not search:
        pytest.fail("search module not built (modules/search/.libs/search.so)",
                    pytrace=False)
    dc = dovecot(plugin_path=plugin_path, module_files=search,
                 mail_plugins="$mail_plugins fts dovekie",
                 plugin_settings={"fts": "dovekie", "dovekie_modules": "search"},
                 extra_conf=METRICS)
    write_maildir(dc, "alice", OWN_MESSAGES)
    conn = dc.imap("alice")
    assert conn.select("INBOX")[0] == "OK"
    # The first search indexes the mailbox, then asks the index.
    assert uid_search(conn, "BODY zebrafish") == [3]   # one word: the index proves it
    assert uid_search(conn, "BODY zeb") == [3]         # inside a word: proven too
    assert uid_search(conn, "BODY \"of the\"") == [4]  # spans a space: verified
    assert uid_search(conn, "SUBJECT folded") == [4]   # keyed headers: proven
    assert uid_search(conn, "FROM john") == [4]
    assert uid_search(conn, "HEADER X-Custom tab") == [4]  # any header: verified
    assert uid_search(conn, "BODY \"x  y\"") == []      # no index term: not asked
    conn.logout()

    got = wait_stats(dc, ("dovekie_search_lookup_header", "duration"), 1)
    got = wait_stats(dc, ("dovekie_search_lookup", "duration"), 6)
    messages = got.get(("dovekie_search_indexed", "messages"))
    assert messages is not None and messages[0] >= 1, got
    assert messages[1] == len(OWN_MESSAGES), got  # every message, once
    assert got[("dovekie_search_indexed", "bytes")][1] > 200, got
    assert got.get(("dovekie_search_lookup", "duration"), (0, 0))[0] == 6, got
    assert got.get(("dovekie_search_lookup_body", "duration"), (0, 0))[0] == 3, got
    assert got.get(("dovekie_search_lookup_subject", "duration"), (0, 0))[0] == 1, got
    assert got.get(("dovekie_search_lookup_from", "duration"), (0, 0))[0] == 1, got
    assert got.get(("dovekie_search_lookup_header", "duration"), (0, 0))[0] == 1, got
    # Each answer held the one matching message: definite for the needles
    # inside a word (in a body or in the header a SUBJECT or FROM key
    # compares), maybe (verified by Dovecot) for the one that spans a space.
    # A search in any other header is maybe: "tab" is in two messages'
    # headers (X-Custom here, "quoted-printable" in the first).
    assert got[("dovekie_search_lookup", "definite")][1] == 4, got
    assert got[("dovekie_search_lookup_body", "maybe")][1] == 1, got
    assert got[("dovekie_search_lookup_subject", "maybe")][1] == 0, got
    assert got[("dovekie_search_lookup_from", "maybe")][1] == 0, got
    assert got[("dovekie_search_lookup_header", "maybe")][1] == 2, got
