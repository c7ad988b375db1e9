"""Two Dovecot backends on one storage (issue 17, item 4), as installations
that outgrow one machine run them behind a proxy that keeps a user on one
backend and moves users on failover.

Two private Dovecot instances on this machine serve the same mail
directories (the second's mail_location points into the first's homes; the
INBOX index, and with it the retention records and the search index, lives
in the Maildir). The user is served by one, then the other, then both at
once, as during a failover. Checked through real IMAP and POP3 clients:

- retention: every DELE hides exactly its message, each message is offered
  (listed by a new POP3 session) until it is DELEd and never after, and the
  records agree on both backends (`doveadm dovekie status`);
- search: every word is found in exactly its message, on both backends,
  whichever backend delivered or indexed it;
- nothing lost: IMAP sees every message on both backends.
"""

from __future__ import annotations

import threading

import pytest

from dovekie_harness import PrivateDovecot, make_message
from test_retention import KEYWORD, assert_no_crash, imap_flags, uidls

USERS = {"alice": {"password": "secret",
                   "userdb": {"dovekie_retention_days": "7"}}}
PLUGIN = {"fts": "dovekie", "dovekie_modules": "retention search"}


@pytest.fixture
def backends(dovecot, plugin_path, module_paths):
    modules = [p for p in module_paths if p.name in ("retention.so", "search.so")]
    if len(modules) != 2:
        pytest.fail("retention and search modules not built", pytrace=False)

    def start(extra_conf: str = "") -> PrivateDovecot:
        return dovecot(plugin_path=plugin_path, module_files=modules, users=USERS,
                       mail_plugins="$mail_plugins fts dovekie",
                       plugin_settings=PLUGIN, extra_conf=extra_conf)

    first = start()
    # Later settings win: the second backend's alice keeps her mail in the
    # first backend's home.
    second = start(f"mail_location = maildir:{first.home('alice')}/Maildir\n")
    return first, second


def word(i: int) -> str:
    return f"zqx{i:04d}marker"


def append(dc: PrivateDovecot, numbers) -> None:
    imap = dc.imap()
    for i in numbers:
        typ, data = imap.append("INBOX", None, None,
                                make_message(f"two-{i}", f"body {word(i)} end\n"))
        assert typ == "OK", data
    imap.logout()


def subject_uids(dc: PrivateDovecot) -> dict[int, int]:
    """message number i -> its UID, through IMAP."""
    imap = dc.imap()
    try:
        imap.select("INBOX")
        typ, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK", data
        out = {}
        for item in data:
            if isinstance(item, tuple):
                uid = int(item[0].split(b"UID ")[1].split()[0])
                out[int(item[1].split(b"two-")[1].split()[0])] = uid
        return out
    finally:
        imap.logout()


def assert_search(dc: PrivateDovecot, expected: dict[int, int]) -> None:
    imap = dc.imap()
    try:
        imap.select("INBOX")
        for i, uid in expected.items():
            typ, data = imap.uid("SEARCH", "BODY", word(i))
            assert typ == "OK", data
            got = sorted(int(x) for x in (data[0] or b"").split())
            assert got == [uid], (dc, word(i), got, uid)
        typ, data = imap.uid("SEARCH", "BODY", "zqx9999marker")
        assert typ == "OK" and not data[0], data
    finally:
        imap.logout()


def listed(dc: PrivateDovecot) -> set[str]:
    pop = dc.pop3()
    try:
        return set(uidls(pop).values())
    finally:
        pop.quit()


def pop3_take(dc: PrivateDovecot, count: int):
    """A POP3 session that RETRs and DELEs its first `count` messages and
    QUITs; returns the UIDLs it took."""
    pop = dc.pop3()
    ids = uidls(pop)
    took = []
    for n in sorted(ids)[:count]:
        pop.retr(n)
        pop.dele(n)
        took.append(ids[n])
    assert pop.quit().startswith(b"+OK")
    return took


def status(dc: PrivateDovecot) -> str:
    res = dc.doveadm("dovekie", "status", "-u", "alice")
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_one_then_the_other_then_both(backends):
    a, b = backends
    append(a, range(0, 6))
    all_ids = listed(a)
    assert len(all_ids) == 6 and listed(b) == all_ids

    # Served by a: takes 2.
    gone = set(pop3_take(a, 2))
    assert listed(a) == listed(b) == all_ids - gone
    # Failover to b: mail delivered there too, b takes 2 more.
    append(b, range(6, 10))
    all_ids = listed(b) | gone
    assert len(all_ids) == 10
    gone |= set(pop3_take(b, 2))
    assert listed(a) == listed(b) == all_ids - gone

    # Both at once (a failover in progress): each session lists what is
    # left, then each takes different messages (the first 2 and the next 2
    # of its own listing would overlap, so b takes from the end).
    barrier = threading.Barrier(2)
    results = {}

    def session(name, dc, count, reverse):
        pop = dc.pop3()
        ids = uidls(pop)
        barrier.wait(timeout=30)
        nums = sorted(ids, reverse=reverse)[:count]
        for n in nums:
            pop.retr(n)
            pop.dele(n)
        barrier.wait(timeout=30)
        results[name] = ([ids[n] for n in nums], pop.quit())

    threads = [threading.Thread(target=session, args=("a", a, 2, False)),
               threading.Thread(target=session, args=("b", b, 2, True))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results["a"][1].startswith(b"+OK") and results["b"][1].startswith(b"+OK"), results
    gone |= set(results["a"][0]) | set(results["b"][0])
    assert len(gone) == 8
    # Nothing offered twice, nothing lost: the two left on both backends.
    assert listed(a) == listed(b) == all_ids - gone
    for dc in (a, b):
        assert "downloaded 8; DELEd (hidden or kept) 8;" in status(dc), status(dc)
        flags = imap_flags(dc)
        assert len(flags) == 10
        assert sum(KEYWORD in f.split() for f in flags.values()) == 8, flags

    # The search index: built partly by each backend, right on both.
    expected = subject_uids(a)
    assert len(expected) == 10 and subject_uids(b) == expected
    assert_search(a, expected)
    append(b, range(10, 12))
    expected = subject_uids(b)
    assert_search(b, expected)
    assert_search(a, expected)
    for dc in (a, b):
        assert_no_crash(dc)
        assert not dc.find_log(r"^[^\n]*Error: [^\n]*$"), dc.log_tail()
