"""The read memo: a read of mail already accepted with the current signature
DB and policy asks nothing (issue 17's FETCH figure).

The mailbox index keeps, per message, the key of the antivirus read policy
under which a read (or the sync check) accepted it; a read that finds the
current key there is served without hashing the message or asking the
module. What must hold: the memo never outlives the signature DB it was made
with. A real clamd; a marker no signature knows at first; then a new
unofficial signature for it and a clamd RELOAD: the next read must refuse
the very message the memo accepted before.
"""

from __future__ import annotations

import re
import time

from dovekie_harness import make_message
from test_antivirus import append, assert_no_crash, av_line
from test_av_db_key import (ATTRIBUTE_DICT, MARKER, SIGNATURE, add_unofficial_signature,  # noqa: F401
                            av_dovecot, own_clamd)


def fetch_body(imap, uid: str):
    typ, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
    body = b"".join(part[1] for part in data if isinstance(part, tuple))
    return typ, body, data


def test_read_memo_serves_judged_mail_and_dies_with_the_db(dovecot, plugin_path, antivirus_module,
                                                            own_clamd):
    dc = av_dovecot(dovecot, plugin_path, antivirus_module, own_clamd,
                    dovekie_av_clamd_database=own_clamd.db_dir)
    message = make_message("memo", f"Some text.\n{MARKER}\nMore text.\n")
    imap = dc.imap()
    typ, text = append(imap, message)
    assert typ == "OK", text
    imap.logout()

    # The APPEND judged the message and left the memo: the syncs and the
    # reads of this session and the next ask nothing.
    offset = dc.log_offset()
    for _ in range(2):
        imap = dc.imap()
        imap.select("INBOX")
        for _ in range(2):
            typ, body, data = fetch_body(imap, "1")
            assert typ == "OK" and MARKER.encode() in body, data
        imap.logout()
    assert dc.find_log(av_line("imap", r"scan origin=append [^\n]*result=clean"))
    judged = dc.find_log(av_line("imap", r"scan (?:reused )?origin=(?:sync|fetch)"), since=offset)
    assert judged == [], dc.log_since(offset)

    # POP3 reads the same memo.
    offset = dc.log_offset()
    pop = dc.pop3()
    assert MARKER.encode() in b"\n".join(pop.retr(1)[1])
    pop.quit()
    assert not dc.find_log(av_line("pop3", "scan origin="), since=offset), dc.log_since(offset)

    # A new signature for the marker: the memo's key is gone with the old
    # DB, and the read is judged again and refused.
    add_unofficial_signature(own_clamd)
    time.sleep(1.2)  # past dovekie_av_db_check_interval
    offset = dc.log_offset()
    imap = dc.imap()
    imap.select("INBOX")
    typ, body, data = fetch_body(imap, "1")
    imap.logout()
    assert MARKER.encode() not in body, data
    assert dc.find_log(av_line("imap", f"result=infected[^\n]*{re.escape(SIGNATURE)}|"
                                       f"{re.escape(SIGNATURE)}[^\n]*result=infected"),
                       since=offset), dc.log_since(offset)
    assert_no_crash(dc)


def test_no_memo_when_reads_judge_every_time(dovecot, plugin_path, antivirus_module, own_clamd):
    # dovekie_av_scan_on_read = always: every read asks the module.
    dc = av_dovecot(dovecot, plugin_path, antivirus_module, own_clamd,
                    dovekie_av_clamd_database=own_clamd.db_dir,
                    dovekie_av_scan_on_read="always")
    imap = dc.imap()
    typ, text = append(imap, make_message("always", "plain text\n"))
    assert typ == "OK", text
    imap.logout()
    offset = dc.log_offset()
    imap = dc.imap()
    imap.select("INBOX")
    for _ in range(3):
        typ, body, data = fetch_body(imap, "1")
        assert typ == "OK" and b"plain text" in body, data
    imap.logout()
    fetches = dc.find_log(av_line("imap", "scan (?:reused )?origin=fetch"), since=offset)
    assert len(fetches) == 3, dc.log_since(offset)  # one per FETCH
    assert_no_crash(dc)


def test_no_memo_of_what_the_scanner_could_not_judge(dovecot, plugin_path, antivirus_module,
                                                      own_clamd):
    # dovekie_av_on_error = accept: with the scanner down, the sync and the
    # read accept infected mail unjudged, by design. That acceptance must
    # not be remembered: once the scanner is back, the next read judges the
    # message and refuses it.
    from test_antivirus import eicar_inline, plant
    dc = av_dovecot(dovecot, plugin_path, antivirus_module, own_clamd,
                    dovekie_av_clamd_database=own_clamd.db_dir,
                    dovekie_av_on_error="accept")
    own_clamd.stop_process()
    plant(dc, eicar_inline())
    imap = dc.imap()
    imap.select("INBOX")
    typ, body, data = fetch_body(imap, "1")
    imap.logout()
    assert typ == "OK" and b"EICAR" in body, data  # accepted unjudged, as configured
    assert dc.find_log(av_line("imap", "result=error action=accept")), dc.log_tail()

    own_clamd.start()
    offset = dc.log_offset()
    imap = dc.imap()
    imap.select("INBOX")
    typ, body, data = fetch_body(imap, "1")
    imap.logout()
    assert b"EICAR-STANDARD" not in body, data
    assert dc.find_log(av_line("imap", "origin=fetch [^\n]*result=infected"), since=offset), \
        dc.log_since(offset)
    assert_no_crash(dc)


def test_saved_mail_is_judged_once(dovecot, plugin_path, antivirus_module, own_clamd):
    # What LMTP (one transaction, three recipients), COPY and MOVE accepted
    # was judged as it was stored: the copies carry the memo, so neither the
    # recipients' syncs nor their reads judge them again; a new signature
    # still reaches every copy.
    from test_antivirus import lmtp_transaction
    users = {name: {"password": "secret"} for name in ("alice", "u01", "u02", "u03")}
    dc = dovecot(plugin_path=plugin_path, module_files=[antivirus_module], users=users,
                 plugin_settings={"dovekie_modules": "antivirus",
                                  "dovekie_av_clamd": own_clamd.unix_address,
                                  "dovekie_av_clamd_database": str(own_clamd.db_dir),
                                  "dovekie_av_db_check_interval": "1"},
                 extra_conf=ATTRIBUTE_DICT)
    message = make_message("memo at delivery", f"Some text.\n{MARKER}\nMore text.\n")
    replies = lmtp_transaction(dc, ["u01", "u02", "u03"], message)
    assert [code for code, _ in replies] == [250, 250, 250], replies

    offset = dc.log_offset()
    for user in ("u01", "u02", "u03"):
        imap = dc.imap(user)
        imap.select("INBOX")
        typ, body, data = fetch_body(imap, "1")
        assert typ == "OK" and MARKER.encode() in body, data
        if user == "u01":
            assert imap.create("Archive")[0] == "OK"
            assert imap.create("Moved")[0] == "OK"
            assert imap.uid("COPY", "1", "Archive")[0] == "OK"
            assert imap.uid("MOVE", "1", "Moved")[0] == "OK"
            for mailbox in ("Archive", "Moved"):
                imap.select(mailbox)
                typ, body, data = fetch_body(imap, "1")
                assert typ == "OK" and MARKER.encode() in body, (mailbox, data)
        imap.logout()
    judged = dc.find_log(r"^[^\n]*dovekie-antivirus: scan (?:reused )?origin=(?:sync|fetch) "
                         r"[^\n]*$", since=offset)
    assert judged == [], dc.log_since(offset)

    add_unofficial_signature(own_clamd)
    time.sleep(1.2)  # past dovekie_av_db_check_interval
    for user, mailbox in (("u02", "INBOX"), ("u01", "Archive"), ("u01", "Moved")):
        imap = dc.imap(user)
        # The sync check sees the key change and moves the message away;
        # either way no byte of it is served.
        imap.select(mailbox)
        typ, body, data = fetch_body(imap, "1")
        imap.logout()
        assert MARKER.encode() not in body, (user, mailbox, data)
    assert_no_crash(dc)
