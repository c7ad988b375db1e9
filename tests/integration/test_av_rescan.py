"""`doveadm dovekie rescan`: stored mail rescanned with in-process libclamav.

Mail is planted straight into the Maildir (stored before the module saw
it), then rescanned. The signature DB starts with the clam.exe hash only;
adding the EICAR signature file is a signature update: the DB version the
module goes by changes (it carries a fingerprint of unofficial signature
files), so the next rescan scans again what it had judged clean.
"""

from __future__ import annotations

import re
import time

from clamd_harness import (CLAM_EXE_SIGNATURE, EICAR, EICAR_SIGNATURE, TESTFILES,
                           write_signatures)
from dovekie_harness import make_message
from test_antivirus import (append, assert_no_crash, av,  # noqa: F401
                            eicar_inline, plant, public_tmp, with_attachment)

COLUMNS = ["Mailbox", "After UID", "Checked", "Scanned", "Cached", "Too big",
           "Infected", "Quarantined", "State"]


def signature_db(root, eicar: bool):
    db = root / "db"
    db.mkdir(exist_ok=True)
    db.chmod(0o755)
    write_signatures(db)
    if not eicar:
        (db / "test.ndb").unlink()
    for f in db.iterdir():
        f.chmod(0o644)
    return db


LOG = {}  # the last run's log (doveadm logs to its stderr)


def rescan(dc, *args: str, user: str = "alice", ok: bool = True) -> dict[str, dict]:
    """Runs the rescan; returns its rows by mailbox."""
    res = dc.doveadm("-f", "tab", "dovekie", "rescan", "-u", user, *args)
    LOG["text"] = res.stderr
    if not ok:
        assert res.returncode != 0, res.stdout + res.stderr
        return {"_stderr": res.stdout + res.stderr}
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    assert lines[0].split("\t") == COLUMNS, res.stdout
    rows = {}
    for line in lines[1:]:
        fields = line.split("\t")
        row = dict(zip(COLUMNS, fields))
        for key in COLUMNS[1:-1]:
            row[key] = int(row[key])
        rows[fields[0]] = row
    return rows


def stored(dc, mailbox: str, user: str = "alice") -> int:
    """Messages in a mailbox as doveadm sees them: an IMAP STATUS would sync
    the mailbox, and a sync moves new infected mail itself (test_av_sync.py)."""
    res = dc.doveadm("-f", "flow", "mailbox", "status", "-u", user, "messages", mailbox)
    assert res.returncode == 0, res.stderr
    return int(res.stdout.split("=")[1])


def assert_logged(pattern: str) -> None:
    assert re.search(pattern, LOG["text"]), f"/{pattern}/ not in:\n{LOG['text']}"


def counts(row) -> tuple:
    return (row["Checked"], row["Scanned"], row["Cached"], row["Infected"], row["Quarantined"])


def test_rescan_quarantines_what_new_signatures_find(av, public_tmp):
    db = signature_db(public_tmp, eicar=False)
    # Online scanning through a clamd that does not exist: the rescan uses
    # in-process libclamav whatever the user's engine is.
    dc = av("unix:" + str(public_tmp / "no-clamd.sock"), dovekie_av_action=None,
            dovekie_av_libclamav_db=str(db))
    plant(dc, eicar_inline())
    plant(dc, make_message("clean", "nothing to see here\n"))
    plant(dc, with_attachment("zip", "clam.zip", (TESTFILES / "clam.zip").read_bytes()))
    assert dc.message_count("INBOX") == 3

    rows = rescan(dc)
    assert set(rows) == {"INBOX"}, rows
    assert rows["INBOX"]["After UID"] == 0 and rows["INBOX"]["State"] == "done", rows
    assert counts(rows["INBOX"]) == (3, 3, 0, 1, 1), rows
    assert dc.message_count("INBOX") == 2
    assert dc.message_count("Quarantine") == 1
    assert_logged(r"dovekie-antivirus: scan origin=rescan [^\n]*result=infected signature="
                  + CLAM_EXE_SIGNATURE + r"[^\n]*engine=libclamav")
    assert_logged(r"dovekie: rescan user=alice mailbox=\"INBOX\" uid=3 signature="
                  + CLAM_EXE_SIGNATURE + r"[^\n]*action=quarantine mailbox=\"Quarantine\"")
    assert_logged(r"dovekie: rescan done user=alice mailbox=\"INBOX\" checked=3 scanned=3 "
                  r"cached=0 too_big=0 infected=1 moved=1")
    # Not subscribed: the user finds it by LIST, not in a client's folder pane.
    imap = dc.imap()
    typ, data = imap.lsub('""', "*")
    assert typ == "OK" and not any(b"Quarantine" in d for d in data if d), data
    imap.logout()

    # Same DB: the run resumes after the last UID; nothing to do.
    rows = rescan(dc)
    assert rows["INBOX"]["After UID"] == 3 and counts(rows["INBOX"]) == (0, 0, 0, 0, 0), rows

    # A signature update: what was clean is scanned again, once.
    time.sleep(0.01)
    signature_db(public_tmp, eicar=True)
    rows = rescan(dc)
    assert set(rows) == {"INBOX"}, rows  # the quarantine mailbox is left alone
    assert rows["INBOX"]["After UID"] == 0, rows
    assert counts(rows["INBOX"]) == (2, 2, 0, 1, 1), rows
    assert dc.message_count("INBOX") == 1
    assert dc.message_count("Quarantine") == 2
    assert_logged(r"dovekie-antivirus: scan origin=rescan [^\n]*result=infected signature="
                  + EICAR_SIGNATURE)
    # --restart with the same DB: every message again, all from the cache.
    rows = rescan(dc, "--restart")
    assert counts(rows["INBOX"]) == (1, 0, 1, 0, 0), rows
    # Named mailboxes: the quarantine too, when asked; nothing moves there.
    rows = rescan(dc, "--restart", "Quarantine")
    assert set(rows) == {"Quarantine"}, rows
    # The EICAR message was judged with this DB; clam.zip only with the
    # previous one, so it is scanned (once) now.
    assert counts(rows["Quarantine"]) == (2, 1, 1, 2, 0), rows
    assert dc.message_count("Quarantine") == 2
    assert_no_crash(dc)


def test_rescan_resumes_where_it_stopped(av, public_tmp):
    db = signature_db(public_tmp, eicar=True)
    dc = av(None, dovekie_av_engine="libclamav", dovekie_av_libclamav_db=str(db))
    for i in range(5):
        plant(dc, make_message(f"m{i}", f"message number {i}\n"))
    plant(dc, eicar_inline())  # UID 6
    rows = rescan(dc, "--max-messages", "2")
    assert rows["INBOX"]["State"] == "partial" and counts(rows["INBOX"])[0] == 2, rows
    rows = rescan(dc, "--max-messages", "3")
    assert rows["INBOX"]["After UID"] == 2, rows
    assert rows["INBOX"]["State"] == "partial" and counts(rows["INBOX"])[0] == 3, rows
    assert stored(dc, "INBOX") == 6  # UID 6 not reached yet
    rows = rescan(dc)
    assert rows["INBOX"]["After UID"] == 5, rows
    assert rows["INBOX"]["State"] == "done" and counts(rows["INBOX"]) == (1, 1, 0, 1, 1), rows
    assert stored(dc, "INBOX") == 5 and stored(dc, "Quarantine") == 1
    rescan(dc, "--restart", "--max-messages", "2")
    assert_logged(r"dovekie: rescan progress user=alice mailbox=\"INBOX\" checked=2/5 infected=0")
    assert_no_crash(dc)


def test_rescan_of_every_user(av, public_tmp):
    db = signature_db(public_tmp, eicar=True)
    dc = av(None, dovekie_av_engine="libclamav", dovekie_av_libclamav_db=str(db),
            users={"alice": {"password": "secret"}, "bob": {"password": "secret"}})
    plant(dc, eicar_inline(), user="alice")
    plant(dc, make_message("hi", "hello bob\n"), user="bob")
    res = dc.doveadm("-f", "tab", "dovekie", "rescan", "-A")
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [line.split("\t") for line in res.stdout.splitlines()[1:] if line.strip()]
    by_user = {(r[0], r[1]): r for r in rows}
    assert set(by_user) == {("alice", "INBOX"), ("bob", "INBOX")}, res.stdout
    assert by_user[("alice", "INBOX")][7:9] == ["1", "1"], res.stdout
    assert by_user[("bob", "INBOX")][7:9] == ["0", "0"], res.stdout
    assert dc.message_count("Quarantine", user="alice") == 1


def test_rescan_faults_are_clear_and_move_nothing(av, dovekie, public_tmp):
    # A signature directory that does not exist: the module does not start
    # (fail closed), the rescan says so with the reason, nothing is moved.
    dc = av(None, dovekie_av_engine="libclamav",
            dovekie_av_libclamav_db=str(public_tmp / "missing"))
    plant(dc, eicar_inline())
    out = rescan(dc, ok=False)["_stderr"]
    assert "the antivirus module failed to start for user alice" in out, out
    assert "dovekie_av_libclamav_db" in out and "missing: no such directory" in out, out
    assert dc.message_count("INBOX") == 1
    # A bad option value.
    out = rescan(dc, "--max-messages", "0", ok=False)["_stderr"]
    assert "--max-messages" in out, out
    # A mailbox that does not exist.
    db = signature_db(public_tmp, eicar=True)
    dc2 = av(None, dovekie_av_engine="libclamav", dovekie_av_libclamav_db=str(db))
    out = rescan(dc2, "NoSuchBox", ok=False)["_stderr"]
    assert "NoSuchBox" in out, out
    # Without the module.
    dc3 = dovekie()
    res = dc3.doveadm("dovekie", "rescan", "-u", "alice")
    assert res.returncode != 0
    assert "antivirus module is not loaded" in res.stdout + res.stderr
    assert_no_crash(dc)


# --- issue 16, invariant 9: over-size mail ---------------------------------

def big_infected(subject: str, lines: int) -> bytes:
    return make_message(subject, ("x" * 75 + "\n") * lines + EICAR.decode() + "\n")


def test_over_size_mail_is_left_to_the_rescan_which_catches_it(av, public_tmp):
    # Issue: a message over dovekie_av_max_size was scanned nowhere, and an
    # infected 50 MB mail stayed in INBOX for good. Default policy now:
    # accepted and logged online, scanned by the rescan job with its own
    # limit (dovekie_av_rescan_max_size, 512M by default).
    db = signature_db(public_tmp, eicar=True)
    dc = av("unix:" + str(public_tmp / "no-clamd.sock"), dovekie_av_action=None,
            dovekie_av_max_size="64k", dovekie_av_libclamav_db=str(db))
    big = big_infected("big delivered", 1200)  # ~92 KB
    code, text = dc.deliver("alice@example.test", big)
    assert code == 250, text
    imap = dc.imap()
    typ, text = append(imap, big_infected("big appended", 1300))
    assert typ == "OK", text
    imap.logout()
    assert len(dc.find_log(r"result=too-big size>65536 action=accept-and-log "
                           r"\(left to the rescan job\)")) == 2, dc.log_tail()
    assert dc.message_count("INBOX") == 2

    rows = rescan(dc)
    assert counts(rows["INBOX"]) == (2, 2, 0, 2, 2), rows
    assert rows["INBOX"]["Too big"] == 0, rows
    assert dc.message_count("INBOX") == 0
    assert dc.message_count("Quarantine") == 2
    assert_logged(r"scan origin=rescan [^\n]*size=9\d{4} [^\n]*result=infected signature="
                  + EICAR_SIGNATURE)
    assert_no_crash(dc)


def test_mail_over_the_rescan_limit_too_is_refused_on_every_path(av, public_tmp):
    db = signature_db(public_tmp, eicar=True)
    dc = av("unix:" + str(public_tmp / "no-clamd.sock"), dovekie_av_max_size="64k",
            dovekie_av_rescan_max_size="128k", dovekie_av_libclamav_db=str(db))
    huge = big_infected("huge", 2400)  # ~185 KB
    code, text = dc.deliver("alice@example.test", huge)
    assert code == 550 and "too large" in text, (code, text)
    imap = dc.imap()
    typ, text = append(imap, huge)
    assert typ == "NO" and "too large" in text, text
    # Between the two limits: accepted, for the rescan.
    typ, text = append(imap, big_infected("between", 1200))
    assert typ == "OK", text
    imap.logout()
    assert dc.find_log(r"result=too-big size>65536 action=reject \(over "
                       r"dovekie_av_rescan_max_size too"), dc.log_tail()
    assert dc.message_count("INBOX") == 1
    # Mail stored before the module (planted) over the rescan limit: the
    # rescan says so, row and log, and leaves it.
    plant(dc, huge)
    rows = rescan(dc)
    assert rows["INBOX"]["Too big"] == 1 and rows["INBOX"]["Infected"] == 1, rows
    assert_logged(r"scan origin=rescan [^\n]*result=too-big size>131072")
    assert_no_crash(dc)


def test_rescan_limit_below_the_online_limit_is_refused(av, public_tmp):
    dc = av("unix:" + str(public_tmp / "no-clamd.sock"), dovekie_av_max_size="1M",
            dovekie_av_rescan_max_size="512k")
    code, text = dc.deliver("alice@example.test", make_message("x", "y\n"))
    assert 400 <= code < 500, (code, text)
    assert dc.find_log(r"dovekie_av_rescan_max_size \(524288 bytes\) is below "
                       r"dovekie_av_max_size"), dc.log_tail()
    assert dc.message_count("INBOX") == 0
