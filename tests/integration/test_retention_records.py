"""Where the retention records live, through a real Dovecot: INBOX's own
index (the "dovekie-retention" extension, doc/retention.md "State").

    migration   records an older version kept as private INBOX attributes
                (vendor/vendor.dovecot/pvt/dovekie/retention/uid/<UID>) are
                moved into the index by the first session, and the old
                attributes are removed: nothing a user had is lost
    move        a copy of a message has no record: a message moved out of
                INBOX and back is a new message for POP3
"""

from __future__ import annotations

import re
import time

import pytest

from test_retention import (DAY, KEYWORD, append, assert_no_crash, imap_flags,
                            retention, retention_module, retention_run, uidls)

__all__ = ["retention", "retention_module"]  # fixtures used by name

OLD_PREFIX = "vendor/vendor.dovecot/pvt/dovekie/retention/uid/"


def inbox_guid(dc) -> str:
    res = dc.doveadm("mailbox", "status", "-u", "alice", "guid", "INBOX")
    assert res.returncode == 0, res.stderr
    m = re.search(r"guid=([0-9a-f]{32})", res.stdout)
    assert m, res.stdout
    return m.group(1)


def write_old_attributes(dc, records: dict[int, str], extra: dict[str, str]) -> None:
    """The attribute dict file (file:%h/dovecot-attributes) as an older
    version left it: one private INBOX attribute per record."""
    guid = inbox_guid(dc)
    lines = []
    for uid, value in records.items():
        lines += [f"priv/{guid}/{OLD_PREFIX}{uid}", value]
    for key, value in extra.items():
        lines += [f"priv/{guid}/{key}", value]
    (dc.home("alice") / "dovecot-attributes").write_text("\n".join(lines) + "\n")


@pytest.mark.dovecot23_only(
    reason="the records an older dovekie kept as INBOX attributes were only ever "
           "written on Dovecot 2.3; the first 2.4 build keeps them in the index")
def test_old_attribute_records_are_migrated(retention):
    dc = retention()
    append(dc, 3)
    now = int(time.time())
    # UID 1: downloaded and DELEd (hidden); UID 2: downloaded, kept.
    imap = dc.imap()
    imap.select("INBOX")
    typ, data = imap.uid("STORE", "1", "+FLAGS", f"({KEYWORD})")
    assert typ == "OK", data
    imap.logout()
    other = "vendor/vendor.dovecot/pvt/dovekie/antivirus/x"
    write_old_attributes(dc, {1: f"1 *:{now}:d", 2: f"1 *:{now}:-", 3: "not a record"},
                         {other: "kept"})

    start = dc.log_offset()
    pop = dc.pop3()
    assert len(uidls(pop)) == 2
    pop.quit()
    dc.wait_for_log(r"dovekie-retention: moved 2 record\(s\) of 3 old kv entries "
                    r"into the mailbox index", since=start)
    dc.wait_for_log(r"uid=3: old record not migrated", since=start)
    attributes = (dc.home("alice") / "dovecot-attributes").read_text()
    assert OLD_PREFIX not in attributes, attributes
    assert other in attributes, attributes

    res = dc.doveadm("dovekie", "status", "-u", "alice")
    assert "downloaded 2; DELEd (hidden or kept) 1;" in res.stdout, res.stdout
    # The migrated DELE expires on its old schedule; the kept one does not.
    res = retention_run(dc, 8 * DAY)
    assert re.search(r"INBOX\s+1\s+expired", res.stdout), res.stdout
    assert sorted(imap_flags(dc)) == [2, 3]
    # Once is enough: a second session moves nothing.
    start = dc.log_offset()
    pop = dc.pop3()
    assert len(uidls(pop)) == 2
    pop.quit()
    time.sleep(0.3)
    assert not dc.find_log(r"moved \d+ record", since=start)
    assert_no_crash(dc)


def test_moved_out_and_back_has_no_record(retention):
    """MOVE gives a new UID, and Dovecot copies no record with it: the
    message is new for POP3, downloaded or not before."""
    dc = retention()
    append(dc, 2)
    pop = dc.pop3()
    pop.retr(1)
    pop.retr(2)
    assert pop.quit().startswith(b"+OK")
    imap = dc.imap()
    imap.create("Keep")
    imap.select("INBOX")
    for cmd in (("MOVE", "1", "Keep"),):
        typ, data = imap.uid(*cmd)
        assert typ == "OK", data
    imap.select("Keep")
    typ, data = imap.uid("MOVE", "1:*", "INBOX")
    assert typ == "OK", data
    imap.logout()
    res = dc.doveadm("dovekie", "status", "-u", "alice")
    assert "downloaded 1;" in res.stdout, res.stdout  # only UID 2 still has one
    assert sorted(imap_flags(dc)) == [2, 3]
    assert_no_crash(dc)
