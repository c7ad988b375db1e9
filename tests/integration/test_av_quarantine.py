"""`doveadm dovekie quarantine`: a quarantine people can use (issue 16, invariant 4).

Infected mail is delivered over LMTP with the default action (quarantine),
through a real clamd with the test signatures. The owner sees what was held
back (envelope, and the keyword "$Virus:<signature>"); the admin lists,
releases, deletes and expires it with doveadm.
"""

from __future__ import annotations

from clamd_harness import CLAM_EXE, CLAM_EXE_SIGNATURE, EICAR, EICAR_SIGNATURE
from test_antivirus import (assert_no_crash, av, av_line,  # noqa: F401
                            eicar_inline, shared_clamd, with_attachment)

LIST_COLUMNS = ["username", "uid", "date", "from", "subject", "signature"]
UNOFFICIAL = ".UNOFFICIAL"  # clamd's suffix for signatures outside its official DB
DAY = 86400


def table(res) -> list[dict]:
    """The rows of a `doveadm -f tab` table."""
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    if not lines:
        return []
    header = [h.lower() for h in lines[0].split("\t")]
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def quarantine(dc, *args: str, offset: int = 0):
    opts = ["-o", f"plugin/dovekie_test_clock_offset={offset}"] if offset else []
    return dc.doveadm(*opts, "-f", "tab", "dovekie", "quarantine", *args)


def quarantined(dc, eicar_subject: str = "inline test string"):
    code, text = dc.deliver("alice@example.test", eicar_inline())
    assert code == 250, text
    code, text = dc.deliver("alice@example.test",
                            with_attachment("sample", "clam.exe", CLAM_EXE.read_bytes()))
    assert code == 250, text
    assert dc.message_count("Quarantine") == 2
    assert dc.message_count("INBOX") == 0


def test_list_release_delete(av, shared_clamd):
    dc = av(shared_clamd.unix_address, dovekie_av_action=None)
    quarantined(dc)

    # The owner sees sender, subject, date and the signature (a keyword).
    imap = dc.imap()
    imap.select("Quarantine")
    typ, data = imap.uid("FETCH", "1:*", "(FLAGS ENVELOPE INTERNALDATE)")
    assert typ == "OK", data
    text = b" ".join(d if isinstance(d, bytes) else b" ".join(d) for d in data).decode()
    assert f"$Virus:{EICAR_SIGNATURE}" in text and f"$Virus:{CLAM_EXE_SIGNATURE}" in text, text
    assert "inline test string" in text and "sender" in text, text
    imap.logout()

    rows = table(quarantine(dc, "list", "-u", "alice"))
    assert list(rows[0]) == LIST_COLUMNS, rows
    assert [r["signature"] for r in rows] == [EICAR_SIGNATURE + UNOFFICIAL,
                                              CLAM_EXE_SIGNATURE + UNOFFICIAL], rows
    assert rows[0]["username"] == "alice" and rows[0]["uid"] == "1", rows
    assert rows[0]["subject"] == "inline test string", rows
    assert "sender@example.test" in rows[0]["from"], rows
    assert rows[0]["date"][:2] == "20", rows

    # Release: back into INBOX, without the quarantine keyword, and a read
    # serves it (the released verdict answers) instead of moving it again.
    offset = dc.log_offset()
    res = quarantine(dc, "release", "-u", "alice", "1")
    assert [(r["uid"], r["result"]) for r in table(res)] == [("1", "released")], res.stdout
    assert dc.message_count("INBOX") == 1
    assert dc.message_count("Quarantine") == 1
    imap = dc.imap()
    imap.select("INBOX")
    typ, data = imap.fetch("1", "(FLAGS BODY.PEEK[])")
    assert typ == "OK", data
    assert EICAR in data[0][1], data
    assert b"$Virus:" not in data[0][0], data
    imap.logout()
    # The released verdict answers once (at the session's sync, which
    # leaves the read memo for the fetch).
    dc.wait_for_log(av_line("imap", r"scan origin=(?:sync|fetch) mailbox=\"INBOX\"[^\n]*"
                            r"result=clean[^\n]*cached=yes"), since=offset)
    assert dc.message_count("INBOX") == 1
    assert dc.message_count("Quarantine") == 1
    status = dc.doveadm("-f", "tab", "dovekie", "scan-status", "-u", "alice")
    assert "\treleased\t1" in status.stdout, status.stdout + status.stderr

    # A UID that is not there fails, and changes nothing.
    res = quarantine(dc, "release", "-u", "alice", "1")
    assert res.returncode != 0 and "no such message" in res.stderr, res.stdout + res.stderr
    assert dc.message_count("INBOX") == 1

    # Delete: gone from quarantine, nothing back in INBOX.
    res = quarantine(dc, "delete", "-u", "alice", "2")
    assert [(r["uid"], r["result"]) for r in table(res)] == [("2", "deleted")], res.stdout
    assert dc.message_count("Quarantine") == 0
    assert dc.message_count("INBOX") == 1
    assert table(quarantine(dc, "list", "-u", "alice")) == []
    assert_no_crash(dc)


def test_expire_after_the_configured_days(av, shared_clamd):
    dc = av(shared_clamd.unix_address, dovekie_av_action=None, dovekie_av_quarantine_days="2")
    quarantined(dc)
    # One day on: kept.
    assert table(quarantine(dc, "expire", "-u", "alice", offset=DAY)) == []
    assert dc.message_count("Quarantine") == 2
    # Three days on: both go, and nothing else does.
    rows = table(quarantine(dc, "expire", "-u", "alice", offset=3 * DAY))
    assert sorted((r["uid"], r["result"]) for r in rows) == [("1", "expired"), ("2", "expired")]
    assert dc.message_count("Quarantine") == 0
    assert dc.message_count("INBOX") == 0
    assert_no_crash(dc)


def test_expire_never_with_zero_days(av, shared_clamd):
    dc = av(shared_clamd.unix_address, dovekie_av_action=None, dovekie_av_quarantine_days="0")
    quarantined(dc)
    assert table(quarantine(dc, "expire", "-u", "alice", offset=400 * DAY)) == []
    assert dc.message_count("Quarantine") == 2
