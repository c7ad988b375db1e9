"""Retention semantics of issue 17, through a real Dovecot and real clients
(poplib for POP3, imaplib for IMAP, doveadm for the expiry run).

One test per rule (doc/retention.md):
    client names   1..64 of [A-Za-z0-9._-]; anything else is refused at
                   login with a log line, never merged into the shared client
    dele = ignore  QUIT says the messages were kept
    IMAP wins      removing $PopHidden cancels the message's expiry
    out and back   a hidden message without a DELE record is unhidden by
                   the next run: a new message for POP3
    QUIT           answered after the records are committed; -ERR and no
                   change when they cannot be
    killed         a pop3 process killed mid-session changes no record
    admin's flag   an admin's own pop3_deleted_flag (global or userdb) keeps
                   hiding beside the module's keyword, and is never taken off
"""

from __future__ import annotations

import os
import poplib
import re

import pytest

from test_retention import (DAY, KEYWORD, append, assert_no_crash, imap_flags,
                            retention, retention_module, retention_run, uidls)

__all__ = ["retention", "retention_module"]  # fixtures used by name

NAME64 = "abcdefghijklmnopqrstuvwxyz012345" * 2


def pop3_refused(dc, login: str) -> bytes:
    """The -ERR line a POP3 login as `login` gets."""
    pop = poplib.POP3("127.0.0.1", dc.ports["pop3"], timeout=10)
    try:
        pop.user(login)
        with pytest.raises(poplib.error_proto) as err:
            pop.pass_(dc.password("alice"))
        return err.value.args[0]
    finally:
        pop.close()


def test_client_name_not_valid_is_refused_at_login(retention):
    dc = retention(view="per-client")
    append(dc, 2)
    for login, name in (("alice#a#b", "a#b"),
                        ("alice#" + NAME64 + "x", NAME64 + "x"),
                        ("alice#lap@top", "lap@top")):
        since = dc.log_offset()
        reply = pop3_refused(dc, login)
        assert reply.startswith(b"-ERR [SYS/TEMP]"), reply
        # One error line per refusal (pop3 logs the user's setup error).
        pattern = (r"pop3\((?:alice|\d+)\)[^\n]*: Error: dovekie: refusing the POP3 "
                   r"login: client name "
                   + re.escape(f'"{name}" of login "{login}" is not valid: '
                               "a client name is 1 to 64 characters of "
                               "A-Z a-z 0-9 . _ -"))
        dc.wait_for_log(pattern, since=since)
        assert len(dc.find_log_at_least(r"^[^\n]*Error:[^\n]*$", 2, timeout=0.5,
                                        since=since)) == 1
    # Nothing was recorded for the shared client, and a 64-character name
    # is a client of its own.
    pop = dc.pop3("alice#" + NAME64, "secret")
    assert len(uidls(pop)) == 2
    pop.retr(1)
    assert pop.quit().startswith(b"+OK")
    pop = dc.pop3()
    assert len(uidls(pop)) == 2
    pop.quit()
    pop = dc.pop3("alice#" + NAME64, "secret")
    assert len(uidls(pop)) == 1
    pop.quit()
    assert_no_crash(dc)


def test_dele_ignore_quit_says_messages_kept(retention):
    dc = retention(dele="ignore")
    append(dc, 2)
    pop = dc.pop3()
    pop.retr(1)
    pop.dele(1)
    assert pop.quit() == (b"+OK Logging out, messages kept "
                          b"(deletion is disabled on this server).")
    # Without a DELE, pop3's own line; the messages are all still there.
    pop = dc.pop3()
    assert len(uidls(pop)) == 2
    assert pop.quit() == b"+OK Logging out."
    flags = imap_flags(dc)
    assert sorted(flags) == [1, 2] and KEYWORD not in flags[1].split(), flags
    assert_no_crash(dc)


def test_removing_the_keyword_over_imap_cancels_expiry(retention):
    dc = retention(expire_at_quit="no")
    append(dc, 3)
    pop = dc.pop3()
    for n in (1, 2):
        pop.retr(n)
        pop.dele(n)
    pop.quit()
    # The user brings messages 1 and 2 back: 1 is then listed by POP3 (its
    # history is dropped at that QUIT), 2 only by the next run.
    imap = dc.imap()
    imap.select("INBOX")
    typ, data = imap.uid("STORE", "1", "-FLAGS", f"({KEYWORD})")
    assert typ == "OK", data
    pop = dc.pop3()
    assert len(uidls(pop)) == 2
    pop.quit()
    typ, data = imap.uid("STORE", "2", "-FLAGS", f"({KEYWORD})")
    assert typ == "OK", data
    imap.logout()

    restored = (r"\$PopHidden was removed over IMAP; its POP3 history is dropped "
                r"and it does not expire")
    dc.wait_for_log(r"pop3\(alice\)[^\n]*dovekie-retention: uid=1: " + restored)
    res = retention_run(dc, 8 * DAY)
    assert "expunged" not in res.stdout, res.stdout
    assert sorted(imap_flags(dc)) == [1, 2, 3]
    assert re.search(r"dovekie-retention: uid=2: " + restored, res.stderr), res.stderr
    assert "uid=1:" not in res.stderr
    pop = dc.pop3()
    assert len(uidls(pop)) == 3
    pop.quit()
    # Control: a message still hidden expires on time.
    pop = dc.pop3()
    pop.retr(3)
    pop.dele(3)
    pop.quit()
    res = retention_run(dc, 16 * DAY)
    assert re.search(r"INBOX\s+3\s+expired\s+expunged", res.stdout), res.stdout
    assert sorted(imap_flags(dc)) == [1, 2]


def test_hidden_message_moved_out_and_back_is_new_for_pop3(retention):
    dc = retention()
    append(dc, 2)
    pop = dc.pop3()
    before = uidls(pop)
    pop.retr(1)
    pop.dele(1)
    pop.quit()

    imap = dc.imap()
    assert imap.create("Other")[0] == "OK"
    imap.select("INBOX")
    assert imap.uid("MOVE", "1", "Other")[0] == "OK"
    imap.select("Other")
    assert imap.uid("MOVE", "1:*", "INBOX")[0] == "OK"
    imap.logout()
    flags = imap_flags(dc)
    assert sorted(flags) == [2, 3] and KEYWORD in flags[3].split(), flags
    pop = dc.pop3()
    assert list(uidls(pop).values()) == [before[2]]  # hidden, with no record
    pop.quit()

    res = retention_run(dc, 0)
    assert re.search(r'dovekie-retention: unhide user=alice mailbox="INBOX" uid=3 '
                     r"reason=no-record", res.stderr), res.stderr
    flags = imap_flags(dc)
    assert KEYWORD not in flags[3].split(), flags
    pop = dc.pop3()
    listed = uidls(pop)
    pop.quit()
    assert len(listed) == 2 and before[2] in listed.values()
    assert before[1] not in listed.values()  # a new UID, a new UIDL
    # Never downloaded under its new UID: no run expunges it.
    res = retention_run(dc, 1000 * DAY)
    assert "expunged" not in res.stdout, res.stdout
    assert sorted(imap_flags(dc)) == [2, 3]


def test_quit_answers_after_the_records_are_committed(retention):
    dc = retention()
    append(dc, 3)
    # Answered +OK: the next session, opened at once, already sees the DELE.
    pop = dc.pop3()
    pop.retr(1)
    pop.dele(1)
    assert pop.quit() == b"+OK Logging out, messages deleted."
    pop = dc.pop3()
    assert len(uidls(pop)) == 2
    pop.quit()

    assert_no_crash(dc)


def test_quit_answers_err_and_changes_nothing_when_records_fail(retention):
    """The records cannot be written: a mailbox keeps at most 64 client
    identities (doc/retention.md), so the 65th client's QUIT fails. It gets
    -ERR, and neither its RETR nor its DELE nor pop3's \\Seen changed
    anything; its next session sees the same listing."""
    dc = retention(view="per-client")
    append(dc, 2)
    for i in range(64):
        pop = dc.pop3(f"alice#c{i}", "secret")
        pop.retr(1)
        assert pop.quit().startswith(b"+OK")
    start = dc.log_offset()
    pop = dc.pop3("alice#c64", "secret")
    assert len(uidls(pop)) == 2
    pop.retr(2)
    pop.dele(2)
    with pytest.raises(poplib.error_proto) as err:
        pop.quit()
    pop.close()
    assert err.value.args[0].startswith(
        b"-ERR [SYS/TEMP] Could not save the session, nothing was changed"), err.value
    dc.wait_for_log(r"pop3\(alice\)[^\n]*retention: recording the session failed: "
                    r"no room for client identity 'c64'[^\n]*QUIT answered -ERR, "
                    r"nothing was changed", since=start)
    pop = dc.pop3("alice#c64", "secret")
    assert len(uidls(pop)) == 2
    pop.quit()
    flags = imap_flags(dc)
    assert "\\Seen" not in flags[2].split(), flags  # pop3's own changes rolled back
    # The 64 clients keep what they had.
    pop = dc.pop3("alice#c0", "secret")
    assert len(uidls(pop)) == 1
    pop.quit()
    assert_no_crash(dc)


def test_killed_pop3_process_changes_nothing(retention):
    """A pop3 process killed mid-session (SIGKILL: no QUIT, no cleanup)
    leaves the records exactly as the last QUIT saved them: the RETRs and
    DELEs of the killed session are not recorded, the earlier ones are."""
    dc = retention()
    append(dc, 4)
    pop = dc.pop3()
    pop.retr(1)
    pop.dele(1)
    assert pop.quit() == b"+OK Logging out, messages deleted."

    since = dc.log_offset()
    pop = dc.pop3()
    login = dc.wait_for_log(r"pop3-login: Info: (?:Login|Logged in): user=<alice>[^\n]*mpid=(\d+)",
                            since=since)
    pid = int(login.group(1))
    assert len(uidls(pop)) == 3
    pop.retr(1)  # UID 2
    pop.dele(1)
    pop.retr(2)  # UID 3
    os.kill(pid, 9)
    pop.close()
    dc.wait_for_log(rf"pop3\(alice\)<{pid}>[^\n]*killed with signal 9|"
                    rf"service\(pop3\): child {pid} killed with signal 9", since=since)

    pop = dc.pop3()
    assert len(uidls(pop)) == 3  # UID 2 is back: its DELE was never committed
    pop.quit()
    flags = imap_flags(dc)
    assert KEYWORD in flags[1].split() and KEYWORD not in flags[2].split(), flags
    res = dc.doveadm("dovekie", "status", "-u", "alice")
    assert "downloaded 1; DELEd (hidden or kept) 1;" in res.stdout, res.stdout
    # Only UID 1 has a download and a DELE on record: only it expires.
    res = retention_run(dc, 8 * DAY)
    assert re.search(r"INBOX\s+1\s+expired", res.stdout), res.stdout
    assert sorted(imap_flags(dc)) == [2, 3, 4]


@pytest.mark.parametrize("view", ["shared", "per-client"])
def test_listing_hides_the_keyword_at_any_keyword_position(retention, view):
    """The listing skips a message by the hide keyword's own bit, wherever
    the index keeps it: here after 20 other keywords (the third byte of the
    record's bitmap), next to a keyword that only shares its prefix, and on
    a message that has no record at all (set over IMAP)."""
    dc = retention(view=view)
    append(dc, 12)
    pop = dc.pop3()
    before = uidls(pop)
    pop.quit()
    assert sorted(before) == list(range(1, 13))
    imap = dc.imap()
    imap.select("INBOX")
    others = " ".join(f"$K{i:02d}" for i in range(20))
    for uids, flags in (("1", others), ("4", "$K19"), ("5", KEYWORD + "X"),
                        ("3,9,12", KEYWORD), ("9", "$K07")):
        typ, data = imap.uid("STORE", uids, "+FLAGS", f"({flags})")
        assert typ == "OK", data
    imap.logout()
    for login in ("alice", "alice#laptop") if view == "per-client" else ("alice",):
        pop = dc.pop3(login, dc.password("alice"))
        listed = uidls(pop)
        resp, lines, _ = pop.list()
        pop.quit()
        # Same messages in the same order as before, less UIDs 3, 9, 12;
        # LIST agrees with UIDL message for message.
        assert list(listed.values()) == [before[u] for u in range(1, 13)
                                         if u not in (3, 9, 12)], listed
        assert [int(l.split()[0]) for l in lines] == list(range(1, 10)), lines
    flags = imap_flags(dc)
    assert all(KEYWORD in flags[u].split() for u in (3, 9, 12)), flags
    assert_no_crash(dc)


@pytest.mark.parametrize("where", ["global", "userdb"])
def test_an_admins_own_pop3_deleted_flag_hides_beside_the_module(retention, where):
    """An admin who set pop3_deleted_flag (globally, or for one user from
    userdb) to a keyword other than dovekie_retention_keyword keeps it: pop3
    sets it on a DELE and hides what has it, as stock Dovecot does, and the
    module hides with its own keyword beside it, warns once per session
    that both hide, and expires the DELEd message on its own schedule. It
    never takes the admin's keyword off (unlike its own, which it takes off
    a message with no record)."""
    users = {"alice": {"password": "secret",
                       "userdb": {"dovekie_retention_login": "%{orig_user}"}}}
    extra = ""
    if where == "global":
        extra = 'pop3_deleted_flag = "$Trash"\n'
    else:
        users["alice"]["userdb"]["pop3_deleted_flag"] = "$Trash"
    dc = retention(extra_conf=extra, users=users)
    append(dc, 4)
    imap = dc.imap()
    imap.select("INBOX")
    typ, data = imap.uid("STORE", "4", "+FLAGS", "($Trash)")
    assert typ == "OK", data
    imap.logout()

    since = dc.log_offset()
    pop = dc.pop3()
    assert len(uidls(pop)) == 3  # the admin's keyword hides message 4
    pop.retr(1)
    pop.dele(1)
    assert pop.quit().startswith(b"+OK")
    dc.wait_for_log(r"pop3\(alice\)[^\n]*Warning: dovekie: retention: "
                    r"pop3_deleted_flag=\$Trash also hides messages from POP3; "
                    r"dovekie_retention_keyword=\$PopHidden is the one dovekie sets",
                    since=since)
    flags = imap_flags(dc)
    assert sorted(flags) == [1, 2, 3, 4], flags
    assert {"$Trash", KEYWORD} <= set(flags[1].split()), flags
    pop = dc.pop3()
    assert len(uidls(pop)) == 2
    pop.quit()

    # A week later the run expunges the DELEd message and leaves the
    # admin's keyword where it is: message 4 stays, hidden from POP3.
    res = retention_run(dc, 8 * DAY)
    flags = imap_flags(dc)
    assert sorted(flags) == [2, 3, 4], (flags, res.stdout)
    assert "$Trash" in flags[4].split(), flags
    pop = dc.pop3()
    assert len(uidls(pop)) == 2
    pop.quit()
    assert_no_crash(dc)
