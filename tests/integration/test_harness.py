"""Self-tests of the harness against a stock Dovecot (no dovekie plugin).

If these fail, the problem is the environment or the harness, not dovekie.
"""

import os
import smtplib

from dovekie_harness import make_message


def test_imap_append_and_select(dovecot):
    dc = dovecot()
    imap = dc.imap()
    typ, data = imap.append("INBOX", None, None,
                            make_message("harness", "hello over IMAP"))
    assert typ == "OK", data
    typ, data = imap.select("INBOX")
    assert typ == "OK", data
    assert data == [b"1"]  # imaplib returns the EXISTS count
    imap.logout()


def test_pop3_stat_sees_message(dovecot):
    dc = dovecot()
    imap = dc.imap()
    body = make_message("for pop3", "hello over POP3")
    assert imap.append("INBOX", None, None, body)[0] == "OK"
    imap.logout()

    pop = dc.pop3()
    count, size = pop.stat()
    assert count == 1
    assert size > 0
    pop.quit()


def test_lmtp_delivery_then_imap_sees_it(dovecot):
    dc = dovecot()
    imap = dc.imap()
    assert imap.append("INBOX", None, None,
                       make_message("first", "appended"))[0] == "OK"
    imap.logout()

    code, text = dc.deliver("alice@example.test",
                            make_message("second", "delivered over LMTP"))
    assert code == 250, text

    # smtplib's own high-level API works as well (raises on refusal).
    lmtp = dc.lmtp()
    refused = lmtp.sendmail("sender@example.test", ["alice@example.test"],
                            make_message("third", "via sendmail"))
    assert refused == {}
    lmtp.quit()

    assert dc.message_count("INBOX") == 3
    dc.wait_for_log(r"^.*lmtp\(alice\)<\d+><[^>]+>: Info: .*saved mail to INBOX")


def test_lmtp_unknown_recipient_is_refused(dovecot):
    dc = dovecot()
    lmtp = dc.lmtp()
    try:
        lmtp.sendmail("sender@example.test", ["nobody@example.test"],
                      make_message("lost", "nobody home"))
    except smtplib.SMTPRecipientsRefused as exc:
        code, _ = exc.recipients["nobody@example.test"]
        assert code == 550
    else:
        raise AssertionError("unknown recipient was accepted")
    finally:
        lmtp.close()


def test_log_helpers(dovecot):
    dc = dovecot()
    dc.wait_for_log(r"master: Info: Dovecot v2\.[34]\.\S+ .*starting up")
    offset = dc.log_offset()
    dc.imap().logout()
    m = dc.wait_for_log(r"imap\((alice)\)<\d+><[^>]+>: Info: Disconnected",
                        since=offset)
    assert m.group(1) == "alice"
    # Only the new part of the log is searched.
    assert "starting up" not in dc.log_since(offset)


def test_userdb_fields_and_doveadm(dovecot):
    dc = dovecot(users={"alice": {"password": "secret"},
                        "bob": {"password": "hunter2",
                                "userdb": {"dovekie_example_reject": "BOBWORD"}}})
    result = dc.doveadm("user", "bob")
    assert result.returncode == 0, result.stderr
    assert "dovekie_example_reject\tBOBWORD" in result.stdout
    assert str(dc.home("bob")) in result.stdout
    assert os.stat(dc.home("bob")).st_uid == dc.mail_uid
    dc.imap("bob").logout()


def test_stop_removes_state_and_process(dovecot, monkeypatch):
    monkeypatch.delenv("DOVEKIE_KEEP_TMP", raising=False)
    dc = dovecot()
    pid = dc.proc.pid
    tmpdir = dc.tmpdir
    dc.stop()
    assert dc.proc.returncode is not None
    assert not tmpdir.exists()
    # The master PID is gone (reaped by Popen.wait, so kill(0) fails).
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"dovecot master {pid} still alive")
    dc.stop()  # idempotent
