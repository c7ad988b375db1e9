"""Issue 16, invariants 2, 3 and 12: detection happens at sync, never in a read.

Unscanned infected mail is written straight into the Maildir (as another MDA
would), next to clean mail, with a real clamd and the test signatures. The
first session that syncs the mailbox judges the new mail before its view can
show it and moves detections into quarantine with an ordinary copy and
expunge, adding a short notice as a new message. Reads (FETCH, SEARCH) never
move anything: Dovecot's cache stays consistent, sizes and BODYSTRUCTURE a
client fetched stay true, and N sessions at once leave exactly one
quarantine copy and one notice per message.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time

import pytest

from clamd_harness import EICAR_SIGNATURE
from dovekie_harness import is_dovecot24, make_message
from test_antivirus import assert_no_crash, av_line, public_tmp  # noqa: F401
from test_av_db_key import MARKER, SIGNATURE, add_unofficial_signature, av_dovecot, marked
from test_av_db_key import own_clamd  # noqa: F401
from test_av_rescan import signature_db
from test_av_read_paths import (FETCH_ITEMS, RawImap, assert_clean, av,  # noqa: F401
                                clamd, eicar_7bit, uids_in, zip_base64)

CACHE_TROUBLE = r"Broken MIME parts|Cached header size mismatch|corrupted cache|Corrupted"


def plant_all(dc, messages: list[bytes], user: str = "alice") -> None:
    """Writes every message into the user's Maildir new/ at once, past every
    hook, the Maildir created first by a login that selects nothing."""
    maildir = dc.home(user) / "Maildir"
    if not (maildir / "new").exists():
        conn = dc.imap(user)
        conn.list()
        conn.logout()
        for sub in ("new", "cur", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
            os.chown(maildir / sub, dc.mail_uid, dc.mail_gid)
        os.chown(maildir, dc.mail_uid, dc.mail_gid)
    for i, message in enumerate(messages):
        path = maildir / "new" / f"{time.time():.6f}.{os.getpid()}_{i}.planted"
        path.write_bytes(message)
        os.chown(path, dc.mail_uid, dc.mail_gid)


def flags_of(dc, mailbox: str, user: str = "alice") -> list[str]:
    conn = dc.imap(user)
    conn.select(mailbox, readonly=True)
    typ, data = conn.fetch("1:*", "(FLAGS)")
    conn.logout()
    return [d.decode() for d in data if d]


# --- invariant 2 ---------------------------------------------------------------

def test_new_infected_mail_leaves_at_the_first_sync(av, clamd):
    dc = av(clamd.unix_address)
    clean = make_message("clean one", "nothing to see\n")
    plant_all(dc, [clean, eicar_7bit("s-eicar"), zip_base64("s-zip")])
    offset = dc.log_offset()
    imap = RawImap(dc)
    status, raw = imap.cmd("SELECT INBOX")
    # The view never held the infected two: the clean message and the two
    # notices, stored after the moves.
    assert status == "OK" and b"* 3 EXISTS" in raw, raw
    status, raw = imap.cmd("UID SEARCH ALL")
    assert status == "OK" and re.search(rb"\* SEARCH 1 4 5\r\n", raw), raw
    for item in FETCH_ITEMS + ["BODYSTRUCTURE", "RFC822.SIZE"]:
        status, raw = imap.cmd(f"UID FETCH 1:* ({item})")
        assert_clean(raw, item)
        assert status == "OK", (item, raw[-300:])
    status, raw = imap.cmd("UID FETCH 2:3 (BODY.PEEK[])")
    assert status == "OK" and b"FETCH" not in raw, raw  # not there, never were
    status, raw = imap.cmd("UID FETCH 4:5 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT])")
    assert raw.count(b"Subject: [virus removed] read paths s-") == 2, raw
    assert EICAR_SIGNATURE.encode() in raw, raw
    imap.close()
    # One copy each in quarantine, each with its signature's keyword, and
    # the notices are small, whatever the original's size.
    assert dc.message_count("Quarantine") == 2
    flags = " ".join(flags_of(dc, "Quarantine"))
    assert f"$Virus:{EICAR_SIGNATURE}" in flags and "$Virus:Dovekie.Test.ClamExe" in flags, flags
    found = dc.find_log_at_least(av_line("imap", "scan origin=sync [^\n]*result=infected"
                                         "[^\n]*action=quarantine"), 2, since=offset)
    assert len(found) == 2, dc.log_tail()
    assert len(dc.find_log(r"dovekie: moved uid=[23] from \"INBOX\" to \"Quarantine\"",
                           since=offset)) == 2, dc.log_tail()
    # Reads found every message judged already.
    assert not dc.find_log(av_line("imap", "scan origin=fetch[^\n]*cached=no"), since=offset)
    assert not dc.find_log(CACHE_TROUBLE, since=offset), dc.log_tail()
    assert_no_crash(dc)


def test_search_and_fetch_never_change_the_mailbox(av, clamd):
    """A body SEARCH over mail that arrived during the session: the search
    runs over the view the client has, the sync after it judges the new mail,
    and what the client fetched before stays true."""
    dc = av(clamd.unix_address)
    plant_all(dc, [make_message(f"clean {i}", f"clean body {i}\n" * 20) for i in range(3)])
    imap = RawImap(dc)
    status, raw = imap.cmd("SELECT INBOX")
    assert b"* 3 EXISTS" in raw, raw
    status, before = imap.cmd("UID FETCH 1:3 (RFC822.SIZE BODYSTRUCTURE BINARY.SIZE[1])")
    assert status == "OK", before
    offset = dc.log_offset()
    plant_all(dc, [eicar_7bit("late-eicar"), zip_base64("late-zip"),
                   make_message("clean late", "EICAR-STANDARD is only a name here\n")])
    status, raw = imap.cmd("UID SEARCH BODY \"EICAR-STANDARD\"")
    assert_clean(raw, "SEARCH BODY")
    assert status == "OK" and re.search(rb"\* SEARCH\r\n", raw), raw
    untagged = raw
    status, raw = imap.cmd("UID SEARCH TEXT \"clam.zip\"")
    assert_clean(raw, "SEARCH TEXT")
    assert status == "OK", raw
    untagged += raw
    status, raw = imap.cmd("NOOP")
    untagged += raw
    # The sync after the first SEARCH reported the clean newcomer and two
    # notices; no EXPUNGE of anything the client ever saw.
    assert b"* 6 EXISTS" in untagged and b"EXPUNGE" not in untagged, untagged
    status, raw = imap.cmd("UID SEARCH BODY \"EICAR-STANDARD\"")
    assert_clean(raw, "SEARCH BODY after the sync")
    assert status == "OK" and re.search(rb"\* SEARCH 6\r\n", raw), raw
    status, raw = imap.cmd("UID FETCH 1:* (BODY.PEEK[])")
    assert_clean(raw, "FETCH 1:*")
    assert status == "OK", raw
    status, after = imap.cmd("UID FETCH 1:3 (RFC822.SIZE BODYSTRUCTURE BINARY.SIZE[1])")
    assert after.split(b"\r\n")[:-2] == before.split(b"\r\n")[:-2], (before, after)
    imap.close()
    assert dc.message_count("Quarantine") == 2
    assert not dc.find_log(CACHE_TROUBLE, since=offset), dc.log_tail()
    assert not dc.find_log(av_line("imap", "scan origin=fetch[^\n]*result=infected"),
                           since=offset)
    assert_no_crash(dc)


def test_a_read_refuses_and_never_moves(av, clamd):
    """refuse: nothing moves at sync either; every read of the infected
    message is refused with its signature and the mailbox stays as it is."""
    dc = av(clamd.unix_address, dovekie_av_read_action="refuse")
    plant_all(dc, [make_message("clean", "fine\n"), eicar_7bit("stays")])
    offset = dc.log_offset()
    imap = RawImap(dc)
    status, raw = imap.cmd("SELECT INBOX")
    assert b"* 2 EXISTS" in raw, raw
    for item in ("BODY.PEEK[]", "BINARY.PEEK[2]", "RFC822.TEXT"):
        status, raw = imap.cmd(f"UID FETCH 2 ({item})")
        assert_clean(raw, item)
        assert status == "NO" and EICAR_SIGNATURE.encode() in raw, raw
    status, raw = imap.cmd("UID SEARCH BODY \"EICAR-STANDARD\"")
    assert_clean(raw, "SEARCH")
    status, raw = imap.cmd("NOOP")
    assert b"EXPUNGE" not in raw and b"EXISTS" not in raw, raw
    imap.close()
    assert dc.message_count("INBOX") == 2
    assert not dc.find_log(r"dovekie: moved uid=", since=offset)
    assert not dc.find_log(CACHE_TROUBLE, since=offset), dc.log_tail()
    assert_no_crash(dc)


def test_pop3_lists_only_what_the_sync_let_through(av, clamd):
    dc = av(clamd.unix_address)
    plant_all(dc, [make_message("clean one", "first clean message\n"), eicar_7bit("pop"),
                   make_message("clean two", "second clean message\n")])
    pop = dc.pop3()
    count, _ = pop.stat()
    assert count == 3, count  # two clean, one notice
    bodies = [b"\r\n".join(pop.retr(i)[1]) for i in (1, 2, 3)]
    for body in bodies:
        assert_clean(body, "RETR")
    assert b"first clean message" in bodies[0] and b"second clean message" in bodies[1]
    assert b"[virus removed]" in bodies[2] and EICAR_SIGNATURE.encode() in bodies[2]
    before = pop.uidl()[1]
    pop.quit()
    pop = dc.pop3()
    assert pop.uidl()[1] == before
    pop.quit()
    assert dc.message_count("Quarantine") == 1
    assert_no_crash(dc)


# --- invariant 3 -----------------------------------------------------------------

def run_sessions(dc, imap_sessions: int, pop3: bool = False) -> list[tuple[str, bytes]]:
    """Starts the sessions at one moment: each IMAP one SELECTs INBOX and
    fetches every body; the POP3 one retrieves everything. Returns
    (status, every byte received) per session: "OKOK" or "pop3"."""
    count = imap_sessions + (1 if pop3 else 0)
    barrier = threading.Barrier(count)
    results: list[tuple[str, bytes]] = []
    errors: list[BaseException] = []

    def session(kind: str) -> None:
        try:
            if kind == "pop3":
                barrier.wait()
                pop = dc.pop3()
                lines = [b"\r\n".join(pop.retr(i + 1)[1]) for i in range(pop.stat()[0])]
                pop.quit()
                results.append(("pop3", b"".join(lines)))
                return
            imap = RawImap(dc)
            barrier.wait()
            status, raw = imap.cmd("SELECT INBOX")
            status2, raw2 = imap.cmd("FETCH 1:* (BODY.PEEK[])")
            imap.close()
            results.append((status + status2, raw + raw2))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=("pop3" if pop3 and i == 0 else "imap",))
               for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == count, results
    return results


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_sessions_leave_one_copy(av, clamd, round_):
    dc = av(clamd.unix_address)
    plant_all(dc, [eicar_7bit(f"race-{round_}-{i}") for i in range(3)] +
              [zip_base64(f"race-{round_}-zip")])
    results = run_sessions(dc, 5, pop3=True)
    assert len(results) == 6
    for status, raw in results:
        assert_clean(raw, status)
        assert status in ("OKOK", "pop3"), (status, raw[-300:], dc.log_tail())
    assert dc.message_count("Quarantine") == 4
    assert dc.message_count("INBOX") == 4  # the notices, one each
    conn = dc.imap()
    conn.select("INBOX", readonly=True)
    typ, data = conn.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    conn.logout()
    subjects = sorted(d[1] for d in data if isinstance(d, tuple))
    assert len(set(subjects)) == 4, subjects
    assert len(dc.find_log(r"dovekie: moved uid=")) == 4, dc.log_tail()
    assert_no_crash(dc)


def test_rescan_and_sessions_at_once_leave_one_copy(av, clamd, public_tmp):
    """The rescan (doveadm, libclamav) moves under the sessions' lock too.
    The sessions start as soon as the rescan has listed the mailbox, so
    both find the same six infected messages to move; whoever locks first
    moves them, the others find them gone. Every copy carries its
    signature's keyword, whichever moved it."""
    db = signature_db(public_tmp, eicar=True)
    dc = av(clamd.unix_address, dovekie_av_libclamav_db=str(db))
    plant_all(dc, [eicar_7bit(f"both-{i}") for i in range(6)])
    rescan = subprocess.Popen(
        ["doveadm", "-c", str(dc.config_path), "-f", "tab", "dovekie", "rescan", "-u", "alice",
         "INBOX"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, **dc._sanitizer_env()))
    stderr = ""
    while "rescan start" not in stderr:
        line = rescan.stderr.readline()
        assert line, stderr
        stderr += line
    results = run_sessions(dc, 3)
    out, rest = rescan.communicate(timeout=60)
    stderr += rest
    assert rescan.returncode == 0, out + stderr
    for status, raw in results:
        assert_clean(raw, status)
    by_sessions = len(dc.find_log(r"imap\(alice\)[^\n]*dovekie: moved uid="))
    by_rescan = len(re.findall(r"dovekie: rescan user=[^\n]*action=quarantine", stderr))
    assert by_sessions + by_rescan == 6, (by_sessions, by_rescan, stderr, dc.log_tail())
    assert dc.message_count("Quarantine") == 6
    assert dc.message_count("INBOX") == by_sessions  # a notice per move at a sync
    flags = flags_of(dc, "Quarantine")
    assert len(flags) == 6 and all(f"$Virus:{EICAR_SIGNATURE}" in f for f in flags), flags
    assert_no_crash(dc)


# --- invariant 11: shared namespaces --------------------------------------------

SHARED_NAMESPACES_23 = """
namespace inbox {
  inbox = yes
  separator = /
}
namespace shared {
  type = shared
  separator = /
  prefix = shared/%%u/
  location = maildir:%%h/Maildir:INDEXPVT=~/Maildir/shared/%%u
  subscriptions = no
  list = children
}
"""
# The same in Dovecot 2.4's words: the owner's variables are %{owner_...},
# the prefix names the user with $user.
SHARED_NAMESPACES_24 = """
namespace inbox {
  inbox = yes
  separator = /
}
namespace shared {
  type = shared
  separator = /
  prefix = shared/$user/
  mail_driver = maildir
  mail_path = %{owner_home}/Maildir
  mail_index_private_path = ~/Maildir/shared/%{owner_user}
  subscriptions = no
  list = children
}
"""
SHARED_NAMESPACES = SHARED_NAMESPACES_24 if is_dovecot24() else SHARED_NAMESPACES_23


def test_shared_mailbox_reader_moves_nothing(dovecot, plugin_path, antivirus_module, clamd,
                                             public_tmp):
    """bob reads alice's INBOX through a shared namespace: nothing moves
    between users (bob's session neither moves alice's mail nor creates a
    quarantine of his own), bob's reads are refused, and alice's own session
    moves it into her quarantine, named by her settings."""
    db = signature_db(public_tmp, eicar=True)
    settings = {"dovekie_modules": "antivirus", "dovekie_av_clamd": clamd.unix_address,
                "dovekie_av_libclamav_db": str(db)}
    dc = dovecot(plugin_path=plugin_path, module_files=[antivirus_module],
                 plugin_settings=settings,
                 users={"alice": {"userdb": {"dovekie_av_quarantine_mailbox": "Held"}},
                        "bob": {}},
                 extra_conf="mail_attribute_dict = file:%h/dovecot-attributes\n"
                 + SHARED_NAMESPACES)
    plant_all(dc, [make_message("alice clean", "clean\n"), eicar_7bit("shared")], user="alice")
    bob = RawImap(dc, "bob")
    status, raw = bob.cmd("SELECT \"shared/alice/INBOX\"")
    assert status == "OK" and b"* 2 EXISTS" in raw, raw
    status, raw = bob.cmd("UID FETCH 1:* (BODY.PEEK[])")
    assert_clean(raw, "bob's FETCH")
    assert status == "NO" and EICAR_SIGNATURE.encode() in raw, raw
    status, raw = bob.cmd("UID SEARCH BODY \"EICAR-STANDARD\"")
    assert_clean(raw, "bob's SEARCH")
    status, raw = bob.cmd("NOOP")
    assert b"EXPUNGE" not in raw, raw
    bob.close()
    # A rescan as bob does not reach into alice's mailbox either.
    res = dc.doveadm("dovekie", "rescan", "-u", "bob", "shared/alice/INBOX")
    assert res.returncode != 0 and "rescan it as its owner" in res.stderr, res.stderr
    assert not (dc.home("bob") / "Maildir" / ".Quarantine").exists()
    assert not dc.find_log(r"dovekie: moved uid="), dc.log_tail()
    assert not dc.find_log(r"imap\(bob\)[^\n]*scan origin=sync"), dc.log_tail()
    assert dc.find_log(av_line("imap", "scan origin=fetch mailbox=\"shared/alice/INBOX\" "
                               "[^\n]*result=infected", user="bob")), dc.log_tail()

    # alice's own first sync: her settings, her quarantine.
    alice = RawImap(dc, "alice")
    status, raw = alice.cmd("SELECT INBOX")
    assert status == "OK" and b"* 2 EXISTS" in raw, raw  # clean + notice
    alice.close()
    assert dc.message_count("Held", user="alice") == 1
    flags = flags_of(dc, "Held")
    assert f"$Virus:{EICAR_SIGNATURE}" in flags[0], flags
    dc.wait_for_log(r"imap\(alice\)[^\n]*dovekie: moved uid=2 from \"INBOX\" to \"Held\"")
    bob = RawImap(dc, "bob")
    status, raw = bob.cmd("SELECT \"shared/alice/INBOX\"")
    status, raw = bob.cmd("UID FETCH 1:* (BODY.PEEK[])")
    assert_clean(raw, "bob after the move")
    assert status == "OK" and b"[virus removed]" in raw, raw
    bob.close()
    assert_no_crash(dc)


def test_lmtp_deliveries_during_syncs_leave_one_copy_each(av, clamd):
    """LMTP stores a diverted delivery into quarantine only, never into the
    mailbox first, so sessions syncing meanwhile have nothing to move: one
    copy per delivery, no notice."""
    dc = av(clamd.unix_address)
    plant_all(dc, [make_message("clean", "fine\n")])
    codes: list[int] = []

    def deliver(i: int) -> None:
        codes.append(dc.deliver("alice@example.test", eicar_7bit(f"lmtp-{i}"))[0])

    senders = [threading.Thread(target=deliver, args=(i,)) for i in range(3)]
    for t in senders:
        t.start()
    results = run_sessions(dc, 3)
    for t in senders:
        t.join(60)
    assert codes == [250, 250, 250], codes
    for status, raw in results:
        assert_clean(raw, status)
    assert dc.message_count("Quarantine") == 3
    assert dc.message_count("INBOX") == 1
    assert not dc.find_log(r"dovekie: moved uid="), dc.log_tail()
    assert_no_crash(dc)


# --- release puts mail back where it came from -----------------------------------

def plant_into(dc, folder: str, message: bytes) -> None:
    """Writes message into the new/ of an existing Maildir++ folder."""
    new = dc.home("alice") / "Maildir" / f".{folder}" / "new"
    path = new / f"{time.time():.6f}.{os.getpid()}.planted"
    path.write_bytes(message)
    os.chown(path, dc.mail_uid, dc.mail_gid)


def test_release_goes_back_to_the_mailbox_it_came_from(av, clamd, public_tmp):
    db = signature_db(public_tmp, eicar=True)
    dc = av(clamd.unix_address, dovekie_av_libclamav_db=str(db))
    imap = dc.imap()
    for folder in ("Archive", "Work"):
        assert imap.create(folder)[0] == "OK"
    imap.logout()
    # Archive: moved by a session's sync; Work: moved by the rescan.
    plant_into(dc, "Archive", eicar_7bit("from-archive"))
    imap = RawImap(dc)
    status, raw = imap.cmd("SELECT Archive")
    assert status == "OK" and b"* 1 EXISTS" in raw, raw  # the notice
    imap.close()
    plant_into(dc, "Work", eicar_7bit("from-work"))
    res = dc.doveadm("-f", "tab", "dovekie", "rescan", "-u", "alice", "Work")
    assert res.returncode == 0 and "action=quarantine" in res.stderr, res.stdout + res.stderr
    res = dc.doveadm("-f", "tab", "dovekie", "quarantine", "list", "-u", "alice")
    assert res.returncode == 0, res.stderr
    rows = {line.split("\t")[4]: line.split("\t")[1] for line in res.stdout.splitlines()[1:]
            if line.strip()}
    assert set(rows) == {"read paths from-archive", "read paths from-work"}, res.stdout
    res = dc.doveadm("mailbox", "metadata", "list", "-u", "alice", "-p", "INBOX")
    assert res.stdout.count("dovekie/quarantine/o/") == 2, res.stdout + res.stderr
    released = ""
    for subject in rows:
        res = dc.doveadm("dovekie", "quarantine", "release", "-u", "alice", rows[subject])
        assert res.returncode == 0, res.stdout + res.stderr
        released += res.stderr  # doveadm logs to its stderr
    assert dc.message_count("Quarantine") == 0
    conn = dc.imap()
    for folder, tag in (("Archive", b"from-archive"), ("Work", b"from-work")):
        conn.select(folder, readonly=True)
        typ, data = conn.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        text = b" ".join(d[1] if isinstance(d, tuple) else d for d in data)
        assert b"read paths " + tag in text and b"$Virus:" not in text, (folder, text)
    conn.select("INBOX", readonly=True)
    assert conn.search(None, "ALL")[1] == [b""]  # nothing went to INBOX
    conn.logout()
    assert re.search(r"quarantine: released uid=\d+ to \"Archive\"", released), released
    assert re.search(r"quarantine: released uid=\d+ to \"Work\"", released), released
    # The records went with the messages.
    res = dc.doveadm("mailbox", "metadata", "list", "-u", "alice", "-p", "INBOX")
    assert "dovekie/quarantine/" not in res.stdout, res.stdout
    assert_no_crash(dc)


# --- a stale verdict met by a read --------------------------------------------------

def test_stale_verdict_read_is_refused_and_nothing_moves(dovecot, plugin_path, antivirus_module,
                                                         own_clamd):
    """A message judged clean at sync, then caught by a signature update
    while a session has it in view: the read judges it again and refuses
    it; nothing moves under the session (no EXPUNGE), the sync after does
    not move it either (its mark is past it: a signature update is the
    rescan's work), and no byte of it is served."""
    dc = av_dovecot(dovecot, plugin_path, antivirus_module, own_clamd,
                    dovekie_av_clamd_conf="", dovekie_av_clamd_database=own_clamd.db_dir)
    plant_all(dc, [make_message("clean", "fine\n"), marked("stale")])
    imap = RawImap(dc)
    status, raw = imap.cmd("SELECT INBOX")
    assert status == "OK" and b"* 2 EXISTS" in raw, raw
    status, before = imap.cmd("UID FETCH 1:2 (RFC822.SIZE BODYSTRUCTURE)")
    add_unofficial_signature(own_clamd)
    time.sleep(1.2)  # past dovekie_av_db_check_interval
    offset = dc.log_offset()
    status, raw = imap.cmd("UID FETCH 2 (BODY.PEEK[])")
    assert MARKER.encode() not in raw, raw
    assert status == "NO" and SIGNATURE.encode() in raw, raw
    # A server-side read: judged the same way, never reported as a match.
    status, raw = imap.cmd("UID SEARCH BODY \"" + MARKER + "\"")
    assert status in ("OK", "NO") and 2 not in uids_in(raw), raw
    status, raw = imap.cmd("NOOP")
    assert status == "OK" and b"EXPUNGE" not in raw, raw
    status, after = imap.cmd("UID FETCH 1:2 (RFC822.SIZE BODYSTRUCTURE)")
    assert after.split(b"\r\n")[:-2] == before.split(b"\r\n")[:-2], (before, after)
    imap.close()
    assert dc.message_count("INBOX") == 2
    assert not (dc.home("alice") / "Maildir" / ".Quarantine").exists()
    assert not dc.find_log(r"dovekie: moved uid=", since=offset), dc.log_tail()
    dc.wait_for_log(av_line("imap", f"scan origin=fetch [^\\n]*uid=2 [^\\n]*result=infected"
                                    f"[^\\n]*{SIGNATURE}"), since=offset)
    assert_no_crash(dc)


def test_scanner_down_at_sync_costs_one_attempt(av, public_tmp):
    """clamd unreachable: the first sync asks about one new message, not
    every one, and the session's syncs of the next minute do not ask again;
    nothing moves and the messages stay (reads are refused for now)."""
    dc = av(f"unix:{public_tmp / 'no-clamd.sock'}")
    plant_all(dc, [eicar_7bit(f"down-{i}") for i in range(3)])
    offset = dc.log_offset()
    imap = RawImap(dc)
    status, raw = imap.cmd("SELECT INBOX")
    assert status == "OK" and b"* 3 EXISTS" in raw, raw
    for _ in range(3):
        assert imap.cmd("NOOP")[0] == "OK"
    imap.close()
    errors = dc.find_log_at_least(av_line("imap", "scan origin=sync [^\n]*result=error"), 1,
                                  since=offset)
    assert len(errors) == 1, dc.log_tail()
    assert len(dc.find_log(r"sync: \"INBOX\": not judging new mail for 60 s", since=offset)) == 1
    assert not dc.find_log(r"dovekie: moved uid=", since=offset)
    assert_no_crash(dc)


def test_one_sync_judges_at_most_sync_max_messages(av, clamd):
    """dovekie_av_sync_max_messages = 2 and five new infected messages: each
    sync moves two; the three the first sync left are in the view, and a
    read of them is refused (judged on the read) until a later sync moves
    them, which the client sees as an EXPUNGE of a message it never read."""
    dc = av(clamd.unix_address, dovekie_av_sync_max_messages=2)
    plant_all(dc, [eicar_7bit(f"bound-{i}") for i in range(5)])
    imap = RawImap(dc)
    status, raw = imap.cmd("SELECT INBOX")
    assert status == "OK" and b"* 5 EXISTS" in raw, raw  # three left, two notices
    status, raw = imap.cmd("UID FETCH 3:5 (BODY.PEEK[])")
    assert_clean(raw, "unjudged yet")
    assert status == "NO" and EICAR_SIGNATURE.encode() in raw, raw
    # The syncs after that FETCH (UID FETCH may report expunges) and the
    # NOOPs move the other three, two at a time.
    untagged = raw
    for _ in range(3):
        status, raw = imap.cmd("NOOP")
        untagged += raw
    assert untagged.count(b" EXPUNGE") == 3, untagged
    status, raw = imap.cmd("UID FETCH 1:* (BODY.PEEK[])")
    assert_clean(raw, "all moved")
    assert status == "OK" and raw.count(b"[virus removed]") == 5, raw
    imap.close()
    assert dc.message_count("Quarantine") == 5
    assert_no_crash(dc)


def test_over_size_tempfail_at_sync_does_not_stop_the_sync(av, clamd):
    """dovekie_av_over_size = tempfail: an over-size message found new at a
    sync is not a scanner failure. It stays (its reads get the tempfail),
    and the same sync judges the infected message after it and moves it;
    before, the sync stopped at the big one for a minute and the infected
    one stayed in the view."""
    dc = av(clamd.unix_address, dovekie_av_over_size="tempfail", dovekie_av_max_size="4096")
    big = make_message("big", "a clean line of text\n" * 400)
    plant_all(dc, [big, eicar_7bit("after-big")])
    offset = dc.log_offset()
    imap = RawImap(dc)
    status, raw = imap.cmd("SELECT INBOX")
    # The big one and the notice of the infected one.
    assert status == "OK" and b"* 2 EXISTS" in raw, raw
    status, raw = imap.cmd("UID FETCH 3 (BODY.PEEK[])")
    assert status == "OK" and b"[virus removed]" in raw, raw
    # A temporary failure of a read: Dovecot 2.3's default
    # imap_fetch_failure ends the session (BYE), as with a scanner down.
    status, raw = imap.cmd("UID FETCH 1 (BODY.PEEK[])")
    assert status in ("NO", "EOF") and b"a clean line" not in raw, raw
    assert b"too large to be scanned" in raw, raw
    imap.close()
    assert dc.message_count("Quarantine") == 1
    assert dc.find_log(av_line("imap", "scan origin=sync [^\n]*result=too-big [^\n]*"
                               r"action=reject \(at a sync"), since=offset), dc.log_tail()
    assert not dc.find_log(r"not judging new mail", since=offset), dc.log_tail()
    assert_no_crash(dc)
