"""Issue 16, invariant 11: shared and public namespaces.

In a shared namespace the owner's settings decide: the reader's session
judges the owner's mail with modules started from the global settings and
the owner's own userdb fields (looked up over Dovecot's auth-master
connection), never with the reader's userdb overrides. A bad owner value
fails closed for the owner's mailboxes only. In a public namespace there is
no owner: the global settings decide, never a reader's userdb overrides.
Either way a reader's session moves nothing: infected mail is refused and
stays where it is, and no reader ever gets a quarantine of someone else's
mail.

Real Dovecot, real clamd with the test signatures, unscanned mail written
straight into the Maildirs (as another MDA would).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from clamd_harness import EICAR, EICAR_SIGNATURE
from dovekie_harness import is_dovecot24, make_message
from test_antivirus import assert_no_crash, av_line, public_tmp  # noqa: F401
from test_av_read_paths import RawImap, assert_clean, clamd, eicar_7bit  # noqa: F401
from test_av_rescan import LOG, rescan, signature_db
from test_av_sync import SHARED_NAMESPACES, plant_all

QUARANTINE_REASON = b"held in quarantine by the virus scanner"


def start(dovecot, plugin_path, antivirus_module, clamd, public_tmp, users,
          extra_conf: str = "", attribute_dict: str = "file:%h/dovecot-attributes",
          **settings):
    db = signature_db(public_tmp, eicar=True)
    plugin_settings = {"dovekie_modules": "antivirus", "dovekie_av_clamd": clamd.unix_address,
                       "dovekie_av_libclamav_db": str(db)}
    plugin_settings.update(settings)
    return dovecot(plugin_path=plugin_path, module_files=[antivirus_module],
                   plugin_settings=plugin_settings, users=users,
                   extra_conf=f"mail_attribute_dict = {attribute_dict}\n"
                   + SHARED_NAMESPACES + extra_conf)


def plant_into(dc, maildir: Path, messages: list[bytes]) -> None:
    """Writes messages into the Maildir++ folder maildir (created), past
    every hook."""
    for sub in ("", "new", "cur", "tmp"):
        path = maildir / sub
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, dc.mail_uid, dc.mail_gid)
    for i, message in enumerate(messages):
        path = maildir / "new" / f"{os.getpid()}_{i}_{id(message)}.planted"
        path.write_bytes(message)
        os.chown(path, dc.mail_uid, dc.mail_gid)


def files_in(maildir: Path) -> int:
    return sum(len(list((maildir / sub).iterdir())) for sub in ("new", "cur")
               if (maildir / sub).exists())


def settle_log(dc, *users: str) -> None:
    """Waits until every IMAP session of users logged its end: the log is
    written asynchronously, and what a session logs comes before its end."""
    for user in users:
        logins = len(dc.find_log(rf"imap-login: [^\n]*Login: user=<{user}>"))
        found = dc.find_log_at_least(rf"imap\({user}\)[^\n]*: Info: Disconnected", logins)
        assert len(found) >= logins, dc.log_tail()


def assert_nothing_moved(dc, *readers: str) -> None:
    """No reader got a quarantine, and no session moved anything."""
    settle_log(dc, *readers)
    for reader in readers:
        maildir = dc.home(reader) / "Maildir"
        held = [p.name for p in maildir.glob(".*") if p.is_dir()] if maildir.exists() else []
        assert held == [], f"{reader} got mailboxes: {held}"
    assert not dc.find_log(r"dovekie: moved uid="), dc.log_tail()
    assert not dc.find_log(r"scan origin=sync mailbox=\"(?:shared|Public)/"), dc.log_tail()


def assert_no_errors(dc, *users: str) -> None:
    settle_log(dc, *users)
    for user in users:
        errors = dc.find_log(rf"^[^\n]*\b\w+\({user}\)[^\n]*: (?:Error|Panic|Fatal): [^\n]*$")
        assert not errors, "\n".join(m.group(0) for m in errors)


def read_all(dc, reader: str, mailbox: str) -> tuple[str, bytes]:
    imap = RawImap(dc, reader)
    status, raw = imap.cmd(f"SELECT \"{mailbox}\"")
    assert status == "OK", raw
    status, raw = imap.cmd("UID FETCH 1:* (BODY.PEEK[])")
    imap.close()
    return status, raw


# --- shared namespaces: whose settings --------------------------------------------

def test_owner_scan_on_read_off_decides_for_the_reader(dovecot, plugin_path, antivirus_module,
                                                       clamd, public_tmp):
    """alice turned scanning on read off for her mail: bob, with the
    defaults, reads her mailbox as she would, unjudged. His own defaults do
    not reach into her mailbox."""
    dc = start(dovecot, plugin_path, antivirus_module, clamd, public_tmp,
               users={"alice": {"userdb": {"dovekie_av_scan_on_read": "off"}}, "bob": {}})
    plant_all(dc, [make_message("alice clean", "clean\n"), eicar_7bit("owner-off")])
    status, raw = read_all(dc, "bob", "shared/alice/INBOX")
    assert status == "OK" and EICAR in raw, raw[-400:]
    settle_log(dc, "bob")
    assert not dc.find_log(r"imap\(bob\)[^\n]*dovekie-antivirus: scan"), dc.log_tail()
    assert_nothing_moved(dc, "bob")
    assert files_in(dc.home("alice") / "Maildir") == 2
    assert_no_errors(dc, "bob", "alice")
    assert_no_crash(dc)


def test_reader_scan_on_read_off_does_not_reach_the_owners_mail(dovecot, plugin_path,
                                                                 antivirus_module, clamd,
                                                                 public_tmp):
    """The reverse: bob turned scanning on read off for himself. alice's
    mail is judged by her settings (the defaults) in bob's session and
    refused with its signature; nothing moves. bob's own mail follows his
    setting."""
    dc = start(dovecot, plugin_path, antivirus_module, clamd, public_tmp,
               users={"alice": {}, "bob": {"userdb": {"dovekie_av_scan_on_read": "off"}}})
    plant_all(dc, [make_message("alice clean", "clean\n"), eicar_7bit("reader-off")])
    status, raw = read_all(dc, "bob", "shared/alice/INBOX")
    assert_clean(raw, "bob's FETCH of alice's mail")
    assert status == "NO" and EICAR_SIGNATURE.encode() in raw, raw
    assert dc.wait_for_log(av_line("imap", "scan origin=fetch mailbox=\"shared/alice/INBOX\" "
                               "[^\n]*result=infected", user="bob")), dc.log_tail()
    assert_nothing_moved(dc, "bob")
    assert files_in(dc.home("alice") / "Maildir") == 2

    # bob's own infected mail: his setting (off) decides, nothing judges it.
    plant_all(dc, [eicar_7bit("bob's own")], user="bob")
    status, raw = read_all(dc, "bob", "INBOX")
    assert status == "OK" and EICAR in raw, raw[-400:]
    assert_no_errors(dc, "bob", "alice")
    assert_no_crash(dc)


def test_owner_quarantine_name_decides(dovecot, plugin_path, antivirus_module, clamd,
                                       public_tmp):
    """alice's quarantine is "Held" (her userdb), bob's is "Keep" (his). In
    bob's session the bodies of alice's Held are refused and her Keep, an
    ordinary mailbox of hers, is served; headers of Held are served."""
    dc = start(dovecot, plugin_path, antivirus_module, clamd, public_tmp,
               users={"alice": {"userdb": {"dovekie_av_quarantine_mailbox": "Held"}},
                      "bob": {"userdb": {"dovekie_av_quarantine_mailbox": "Keep"}}})
    plant_all(dc, [make_message("alice inbox", "clean\n")])
    maildir = dc.home("alice") / "Maildir"
    plant_into(dc, maildir / ".Held", [make_message("held one", "held body\n")])
    plant_into(dc, maildir / ".Keep", [make_message("kept one", "kept body\n")])

    imap = RawImap(dc, "bob")
    status, raw = imap.cmd("SELECT \"shared/alice/Held\"")
    assert status == "OK" and b"* 1 EXISTS" in raw, raw
    status, raw = imap.cmd("UID FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert status == "OK" and b"Subject: held one" in raw, raw
    status, raw = imap.cmd("UID FETCH 1 (BODY.PEEK[])")
    assert status == "NO" and QUARANTINE_REASON in raw and b"held body" not in raw, raw
    status, raw = imap.cmd("SELECT \"shared/alice/Keep\"")
    assert status == "OK" and b"* 1 EXISTS" in raw, raw
    status, raw = imap.cmd("UID FETCH 1 (BODY.PEEK[])")
    assert status == "OK" and b"kept body" in raw, raw
    imap.close()
    assert_nothing_moved(dc, "bob")
    assert_no_errors(dc, "bob", "alice")
    assert_no_crash(dc)


def test_owner_action_tag_nothing_moves(dovecot, plugin_path, antivirus_module, clamd,
                                        public_tmp):
    """alice keeps infected mail tagged where it is (action = tag), bob has
    the defaults (quarantine). bob's reads are refused and move nothing;
    alice's own session, with her setting, moves nothing either."""
    dc = start(dovecot, plugin_path, antivirus_module, clamd, public_tmp,
               users={"alice": {"userdb": {"dovekie_av_action": "tag"}}, "bob": {}})
    plant_all(dc, [make_message("alice clean", "clean\n"), eicar_7bit("owner-tag")])
    status, raw = read_all(dc, "bob", "shared/alice/INBOX")
    assert_clean(raw, "bob's FETCH")
    assert status == "NO" and EICAR_SIGNATURE.encode() in raw, raw
    assert_nothing_moved(dc, "bob")
    imap = RawImap(dc, "alice")
    status, raw = imap.cmd("SELECT INBOX")
    assert status == "OK" and b"* 2 EXISTS" in raw, raw  # nothing moved
    imap.close()
    assert dc.wait_for_log(av_line("imap", "scan origin=sync [^\n]*result=infected[^\n]*action=refuse",
                               user="alice")), dc.log_tail()
    settle_log(dc, "alice")
    assert not dc.find_log(r"dovekie: moved uid="), dc.log_tail()
    assert not (dc.home("bob") / "Maildir" / ".Quarantine").exists()
    assert_no_crash(dc)


def test_bad_owner_value_fails_closed_for_the_owners_mail(dovecot, plugin_path,
                                                          antivirus_module, clamd, public_tmp):
    """A value of alice's userdb the module refuses: in bob's session the
    antivirus module for alice's mail does not start, so reads of her mail
    are refused (never served unguarded) with a log line naming the
    setting; bob's own mail is read as before."""
    # Dovecot 2.4 types the settings: a choice it does not know fails
    # alice's own sessions before any module runs, so there the bad value
    # is one only the module's range refuses.
    key, value = (("dovekie_av_max_recursion", "0") if is_dovecot24()
                  else ("dovekie_av_scan_on_read", "sometimes"))
    dc = start(dovecot, plugin_path, antivirus_module, clamd, public_tmp,
               users={"alice": {"userdb": {key: value}}, "bob": {}})
    plant_all(dc, [make_message("alice clean", "clean\n"), eicar_7bit("bad-owner")])
    plant_all(dc, [make_message("bob clean", "bob's own body\n")], user="bob")
    status, raw = read_all(dc, "bob", "shared/alice/INBOX")
    assert_clean(raw.replace(b"* BYE", b""), "bob's FETCH")
    assert b"clean\r\n" not in raw and status != "OK", raw
    assert dc.wait_for_log(r"imap\(bob\)[^\n]*: Error: dovekie: owner alice: module 'antivirus' "
                       rf"cannot start: from userdb: {key} = {value}"), dc.log_tail()
    assert dc.wait_for_log(r"imap\(bob\)[^\n]*dovekie: owner alice: refusing to read uid=1 from "
                       r"\"shared/alice/INBOX\": module antivirus is configured but not "
                       rf"running: [^\n]*{key}"), dc.log_tail()
    status, raw = read_all(dc, "bob", "INBOX")
    assert status == "OK" and b"bob's own body" in raw, raw
    assert_nothing_moved(dc, "bob")
    assert files_in(dc.home("alice") / "Maildir") == 2
    assert_no_crash(dc)


def test_two_readers_at_once_move_nothing(dovecot, plugin_path, antivirus_module, clamd,
                                          public_tmp):
    """bob and carol read alice's unscanned infected mail at the same time,
    again and again: every read is refused, nothing moves, nobody gets a
    quarantine; then alice's own session moves each message once, into her
    quarantine (her userdb's name)."""
    dc = start(dovecot, plugin_path, antivirus_module, clamd, public_tmp,
               users={"alice": {"userdb": {"dovekie_av_quarantine_mailbox": "Held"}},
                      "bob": {"userdb": {"dovekie_av_quarantine_mailbox": "Bobs"}},
                      "carol": {}})
    plant_all(dc, [eicar_7bit(f"two readers {i}") for i in range(3)])
    results: dict[str, list] = {"bob": [], "carol": []}

    def reader(name: str) -> None:
        imap = RawImap(dc, name)
        imap.cmd("SELECT \"shared/alice/INBOX\"")
        for _ in range(5):
            results[name].append(imap.cmd("UID FETCH 1:* (BODY.PEEK[] BINARY.PEEK[2])"))
        imap.close()

    threads = [threading.Thread(target=reader, args=(n,)) for n in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for name, answers in results.items():
        assert len(answers) == 5, name
        for status, raw in answers:
            assert_clean(raw, f"{name}'s FETCH")
            assert status == "NO" and EICAR_SIGNATURE.encode() in raw, raw
    assert_nothing_moved(dc, "bob", "carol")
    assert files_in(dc.home("alice") / "Maildir") == 3

    imap = RawImap(dc, "alice")
    status, raw = imap.cmd("SELECT INBOX")
    imap.close()
    assert status == "OK" and b"* 3 EXISTS" in raw, raw  # three notices
    assert dc.message_count("Held", user="alice") == 3
    settle_log(dc, "alice")
    assert len(dc.find_log(r"imap\(alice\)[^\n]*dovekie: moved uid=\d+ from \"INBOX\" "
                           r"to \"Held\"")) == 3, dc.log_tail()
    assert_no_errors(dc, "bob", "carol", "alice")
    assert_no_crash(dc)


def test_owner_lookup_failure_fails_closed(dovecot, plugin_path, antivirus_module, clamd,
                                           public_tmp):
    """userdb cannot be asked for alice's settings (its socket is gone
    after bob logged in): bob cannot open her mailboxes, with a log line
    saying why, rather than read them with settings that are not hers."""
    # No setting of the owner's needs %h, so Dovecot asks userdb for the
    # home only after the owner's mail_user is created, and the lookup
    # that fails first is ours.
    dc = start(dovecot, plugin_path, antivirus_module, clamd, public_tmp,
               users={"alice": {"userdb": {"dovekie_av_scan_on_read": "off"}}, "bob": {}},
               attribute_dict=f"file:{public_tmp}/attributes-%u")
    plant_all(dc, [make_message("alice clean", "clean\n"), eicar_7bit("lookup")])
    imap = RawImap(dc, "bob")
    socket_path = dc.tmpdir / "run" / "auth-userdb"
    socket_path.rename(dc.tmpdir / "run" / "auth-userdb.away")
    try:
        status, raw = imap.cmd("SELECT \"shared/alice/INBOX\"")
        assert status == "NO", raw
        status, raw = imap.cmd("UID FETCH 1:* (BODY.PEEK[])")
        assert status != "OK" and EICAR not in raw and b"clean" not in raw, raw
    finally:
        imap.close()
        (dc.tmpdir / "run" / "auth-userdb.away").rename(socket_path)
    if is_dovecot24():
        # 2.4 expands the namespace's mail_path, which needs alice's home,
        # before her mail_user exists: Dovecot's own lookup fails first
        # and fails the namespace.
        assert dc.wait_for_log(r"imap\(bob\)[^\n]*: Error: Namespace shared: [^\n]*Could not "
                               r"lookup home for user alice"), dc.log_tail()
    else:
        assert dc.wait_for_log(r"imap\(bob\)[^\n]*: Error: Couldn't create namespace 'shared/' "
                               r"for user alice: dovekie: cannot read the settings of alice, owner "
                               r"of a shared namespace of bob: userdb lookup of alice failed"), \
            dc.log_tail()
    assert_nothing_moved(dc, "bob")
    assert_no_crash(dc)


# --- public namespaces ------------------------------------------------------------

def public_namespace(root: Path) -> str:
    return f"""
namespace public {{
  type = public
  separator = /
  prefix = Public/
  location = maildir:{root}:INDEXPVT=~/Maildir/public
  subscriptions = no
  list = children
}}
"""


@pytest.mark.parametrize("global_on_read, reader_on_read, served", [
    ("unscanned", "off", False),   # a reader cannot turn the guard off
    ("off", "always", True),       # nor on: the global settings decide
])
def test_public_namespace_global_settings_decide(dovecot, plugin_path, antivirus_module,
                                                 clamd, public_tmp, global_on_read,
                                                 reader_on_read, served):
    """Public mail has no owner: the global settings decide whoever reads,
    never a reader's userdb overrides, and no session moves anything."""
    root = public_tmp / "public-mail"
    users = {"alice": {},
             "bob": {"userdb": {"dovekie_av_scan_on_read": reader_on_read,
                                "dovekie_av_quarantine_mailbox": "Public/News"}}}
    dc = start(dovecot, plugin_path, antivirus_module, clamd, public_tmp, users=users,
               extra_conf=public_namespace(root), dovekie_av_scan_on_read=global_on_read)
    plant_into(dc, root, [])
    plant_into(dc, root / ".News", [make_message("public clean", "public body\n"),
                                    eicar_7bit("public")])
    for reader in ("bob", "alice"):
        status, raw = read_all(dc, reader, "Public/News")
        if served:
            assert status == "OK" and EICAR in raw, (reader, raw[-400:])
        else:
            assert_clean(raw, f"{reader}'s FETCH")
            assert status == "NO" and EICAR_SIGNATURE.encode() in raw, (reader, raw)
            assert dc.wait_for_log(av_line("imap", "scan origin=fetch mailbox=\"Public/News\" "
                                       "[^\n]*result=infected", user=reader)), dc.log_tail()
        # bob's quarantine name points into the public folder: not his to
        # decide there, so the folder's bodies are not held back as a
        # quarantine's would be.
        assert QUARANTINE_REASON not in raw, raw
    assert_nothing_moved(dc, "bob", "alice")
    assert files_in(root / ".News") == 2
    assert_no_errors(dc, "bob", "alice")
    assert_no_crash(dc)


def test_public_mail_moves_only_by_the_caretakers_rescan(dovecot, plugin_path,
                                                         antivirus_module, clamd, public_tmp):
    """Nobody's session moves public mail, and a rescan as a reader refuses.
    The public folders' caretaker, a user whose private namespace holds
    them, rescans them: detections move into the caretaker's quarantine,
    which readers see as Public/Quarantine and whose bodies they are
    refused."""
    root = public_tmp / "public-mail"
    location = ({"mail_driver": "maildir", "mail_path": str(root)} if is_dovecot24()
                else {"mail": f"maildir:{root}"})
    users = {"bob": {}, "caretaker": {"userdb": location}}
    dc = start(dovecot, plugin_path, antivirus_module, clamd, public_tmp, users=users,
               extra_conf=public_namespace(root))
    plant_into(dc, root, [])
    plant_into(dc, root / ".News", [make_message("public clean", "public body\n"),
                                    eicar_7bit("public rescan")])
    status, raw = read_all(dc, "bob", "Public/News")
    assert_clean(raw, "bob's FETCH")
    assert status == "NO" and EICAR_SIGNATURE.encode() in raw, raw
    res = dc.doveadm("dovekie", "rescan", "-u", "bob", "Public/News")
    assert res.returncode != 0 and "public namespace, which has no owner" in res.stderr, \
        res.stderr
    assert_nothing_moved(dc, "bob")
    assert files_in(root / ".News") == 2

    rows = rescan(dc, "News", user="caretaker")
    assert rows["News"]["Infected"] == 1 and rows["News"]["Quarantined"] == 1, rows
    assert files_in(root / ".News") == 1 and files_in(root / ".Quarantine") == 1
    imap = RawImap(dc, "bob")
    status, raw = imap.cmd("SELECT \"Public/News\"")
    assert status == "OK" and b"* 1 EXISTS" in raw, raw
    status, raw = imap.cmd("UID FETCH 1:* (BODY.PEEK[])")
    assert status == "OK" and b"public body" in raw, raw
    status, raw = imap.cmd("SELECT \"Public/Quarantine\"")
    assert status == "OK" and b"* 1 EXISTS" in raw, raw
    status, raw = imap.cmd("UID FETCH 1:* (BODY.PEEK[])")
    assert_clean(raw, "bob's FETCH of the public quarantine")
    assert status == "NO" and QUARANTINE_REASON in raw, raw
    imap.close()
    assert not (dc.home("bob") / "Maildir" / ".Quarantine").exists()
    assert_no_errors(dc, "bob")
    assert_no_crash(dc)


@pytest.mark.parametrize("mover", ["sync", "rescan"])
def test_a_quarantine_in_a_public_folder_takes_the_move(dovecot, plugin_path, antivirus_module,
                                                        clamd, public_tmp, mover):
    """alice's quarantine is a public folder. Moving her infected mail there
    is her move, judged already by her modules: the public folder's own
    modules (the global settings) must not judge the copy again and refuse
    it. The "judged already" state belongs to the move, not to a user: it
    was kept on alice's modules and read from the destination's, so the
    move failed and the mail stayed in her INBOX."""
    root = public_tmp / "public-mail"
    users = {"alice": {"userdb": {"dovekie_av_quarantine_mailbox": "Public/Virus"}}}
    dc = start(dovecot, plugin_path, antivirus_module, clamd, public_tmp, users=users,
               extra_conf=public_namespace(root))
    plant_into(dc, root, [])
    plant_all(dc, [make_message("clean", "clean body\n"), eicar_7bit("to the public folder")])
    if mover == "rescan":
        rows = rescan(dc, "INBOX", user="alice")
        assert rows["INBOX"]["Infected"] == 1 and rows["INBOX"]["Quarantined"] == 1, \
            (rows, LOG["text"], dc.log_tail())
    else:
        imap = RawImap(dc, "alice")
        status, raw = imap.cmd("SELECT INBOX")
        imap.close()
        assert status == "OK", raw
        assert dc.wait_for_log(r"imap\(alice\)[^\n]*dovekie: moved uid=2 from \"INBOX\" "
                               r"to \"Public/Virus\""), dc.log_tail()
    assert files_in(root / ".Virus") == 1, dc.log_tail()
    status, raw = read_all(dc, "alice", "INBOX")
    assert_clean(raw, "alice's FETCH after the move")
    assert status == "OK" and b"clean body" in raw, raw
    assert not dc.find_log(r"cannot (?:quarantine|move) uid="), dc.log_tail()
    assert_no_errors(dc, "alice")
    assert_no_crash(dc)


def test_reader_saves_into_the_owners_mailbox_by_the_owners_settings(dovecot, plugin_path,
                                                                     antivirus_module, clamd,
                                                                     public_tmp):
    """bob stores into alice's shared INBOX: alice's modules judge the
    APPEND and the COPY although bob has no module at all, an infected
    APPEND is refused and nothing is stored, and a clean COPY from bob's
    own INBOX is judged once and stored."""
    dc = start(dovecot, plugin_path, antivirus_module, clamd, public_tmp,
               users={"alice": {}, "bob": {"userdb": {"dovekie_modules": "none"}}})
    plant_all(dc, [make_message("alice clean", "clean\n")])
    plant_all(dc, [make_message("bob's gift", "a clean gift\n")], user="bob")
    imap = dc.imap("bob")
    typ, data = imap.append("shared/alice/INBOX", None, None, eicar_7bit("bob's append"))
    assert typ == "NO" and EICAR_SIGNATURE in data[0].decode(), data
    imap.select("INBOX")
    typ, data = imap.uid("COPY", "1", "shared/alice/INBOX")
    assert typ == "OK", data
    imap.logout()
    settle_log(dc, "bob")
    assert dc.find_log(av_line("imap", "scan origin=append mailbox=\"shared/alice/INBOX\" "
                               "[^\n]*result=infected", user="bob")), dc.log_tail()
    copies = dc.find_log(av_line("imap", "scan[^\n]* origin=copy mailbox=\"shared/alice/INBOX\" ",
                                 user="bob"))
    assert len(copies) == 1, dc.log_tail()
    assert files_in(dc.home("alice") / "Maildir") == 2
    assert_nothing_moved(dc, "bob")
    assert_no_errors(dc, "bob", "alice")
    assert_no_crash(dc)
