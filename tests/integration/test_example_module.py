"""The dovekie example module, driven through a real Dovecot.

Contract under test (plugin settings):
    dovekie_modules = example
    dovekie_module_dir = <dir with example.so>
    dovekie_example_reject = <string>   refuse any saved message containing it
    dovekie_example_reason = <text>     default "message refused by the
                                        example module"

The module logs one Info line per hook call, prefixed `dovekie-example: `:
    hook=save origin=append|copy|delivery mailbox=M verdict=accept|reject
    hook=read origin=fetch|pop3 mailbox=M uid=N
    hook=pop3_start messages=N
    hook=pop3_end quit=yes|no
    hook=expunge mailbox=M uid=N
Each assertion also checks the Dovecot process/user prefix of the line
(`imap(alice)`, `pop3(alice)`, `lmtp(alice)`): that is the proof that the
real imap/pop3/lmtp process called the module.
"""

from __future__ import annotations

import re
import smtplib

import pytest

from dovekie_harness import DovecotStartError, PrivateDovecot, is_dovecot24, make_message

REJECT = "DOVEKIE-TEST-REJECT-7F3A"
REASON = "refused by the integration test policy"
DEFAULT_REASON = "message refused by the example module"


def _literal(text: str) -> str:
    """re.escape, but keep spaces readable in assertion messages."""
    return re.escape(text).replace("\\ ", " ")


def example_line(proc: str, user: str, fields: str) -> str:
    """Regex for one example-module log line written by proc(user).

    `fields` is the literal text after `dovekie-example: `. Dovecot's prefix
    is `proc(user)<pid><session>: Info: `; an event sub-prefix between
    `Info: ` and `dovekie-example: ` is tolerated.
    """
    return (rf"^[^\n]*\b{re.escape(proc)}\({re.escape(user)}\)(?:<[^>\n]*>)*"
            rf": Info: (?:[^\n]*?: )?dovekie-example: {_literal(fields)}"
            rf"(?=[ \t]|$)")


def host_error(name: str) -> str:
    """Regex for an Error line of the dovekie host naming `name`."""
    return rf"^[^\n]*: Error: (?:[^\n]*?: )?dovekie: [^\n]*{re.escape(name)}"


def assert_no_crash(dc: PrivateDovecot) -> None:
    bad = dc.find_log(r"^[^\n]*(?:Panic: |Fatal: |killed with signal)[^\n]*$")
    assert not bad, "Dovecot crashed or failed fatally:\n" + "\n".join(
        m.group(0) for m in bad)


def append(imap, text: str, mailbox: str = "INBOX",
           subject: str = "test message"):
    """APPEND a message whose body is `text`; returns (typ, response text)."""
    typ, data = imap.append(mailbox, None, None, make_message(subject, text))
    return typ, b" ".join(d for d in data if isinstance(d, bytes)).decode(
        errors="replace")


def select_count(imap, mailbox: str = "INBOX") -> int:
    typ, data = imap.select(mailbox)
    assert typ == "OK", data
    return int(data[0])


@pytest.fixture
def dc(dovekie):
    """Dovecot with the example module, a reject word and a custom reason."""
    instance = dovekie(settings={"dovekie_example_reject": REJECT,
                                 "dovekie_example_reason": REASON})
    yield instance
    assert_no_crash(instance)


# --- (a), (b): IMAP APPEND -------------------------------------------------

def test_append_with_reject_string_is_refused(dc):
    offset = dc.log_offset()
    imap = dc.imap()
    typ, text = append(imap, f"hello\nthis line carries {REJECT} inside\n")
    assert typ == "NO", text
    assert REASON in text

    assert select_count(imap) == 0
    imap.logout()
    assert dc.message_count("INBOX") == 0

    dc.wait_for_log(example_line(
        "imap", "alice", "hook=save origin=append mailbox=\"INBOX\" verdict=reject"),
        since=offset)
    assert not dc.find_log(r"dovekie-example: hook=save [^\n]*verdict=accept",
                           since=offset)


def test_append_refusal_uses_default_reason(dovekie):
    dc = dovekie(settings={"dovekie_example_reject": REJECT})
    imap = dc.imap()
    typ, text = append(imap, f"{REJECT}\n")
    assert typ == "NO", text
    assert DEFAULT_REASON in text
    imap.logout()
    assert dc.message_count("INBOX") == 0
    assert_no_crash(dc)


def test_clean_append_is_accepted(dc):
    offset = dc.log_offset()
    imap = dc.imap()
    typ, text = append(imap, "an entirely harmless message\n")
    assert typ == "OK", text
    assert select_count(imap) == 1
    imap.logout()

    dc.wait_for_log(example_line(
        "imap", "alice", "hook=save origin=append mailbox=\"INBOX\" verdict=accept"),
        since=offset)


# --- (c): LMTP delivery ------------------------------------------------------

def test_lmtp_delivery_with_reject_string_gets_550(dc):
    offset = dc.log_offset()
    lmtp = dc.lmtp()
    message = make_message("spam", f"buy now {REJECT}\n")
    try:
        lmtp.sendmail("sender@example.test", ["alice@example.test"], message)
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = exc.recipients["alice@example.test"]
    except smtplib.SMTPDataError as exc:
        code, text = exc.smtp_code, exc.smtp_error
    else:
        raise AssertionError("message with the reject string was delivered")
    finally:
        lmtp.close()
    text = text.decode(errors="replace")
    assert code == 550, text
    assert text.startswith("5.7.1"), text
    assert REASON in text

    assert dc.message_count("INBOX") == 0
    dc.wait_for_log(example_line(
        "lmtp", "alice",
        "hook=save origin=delivery mailbox=\"INBOX\" verdict=reject"),
        since=offset)


def test_clean_lmtp_delivery_is_accepted(dc):
    offset = dc.log_offset()
    code, text = dc.deliver("alice@example.test",
                            make_message("hello", "a clean delivery\n"))
    assert code == 250, text
    assert dc.message_count("INBOX") == 1
    dc.wait_for_log(example_line(
        "lmtp", "alice",
        "hook=save origin=delivery mailbox=\"INBOX\" verdict=accept"),
        since=offset)


# --- (d): IMAP COPY ------------------------------------------------------------

def test_copy_into_new_mailbox_calls_save_hook(dc):
    imap = dc.imap()
    assert append(imap, "keep me\n")[0] == "OK"
    assert imap.create("Archive")[0] == "OK"
    select_count(imap)

    offset = dc.log_offset()
    typ, data = imap.copy("1", "Archive")
    assert typ == "OK", data
    imap.logout()

    assert dc.message_count("Archive") == 1
    assert dc.message_count("INBOX") == 1
    dc.wait_for_log(example_line(
        "imap", "alice", "hook=save origin=copy mailbox=\"Archive\" verdict=accept"),
        since=offset)


def plant(dc, user: str, text: str, name: str = "1700000000.M1P1.planted") -> None:
    """Put a message straight into the user's Maildir, past every hook."""
    import os
    path = dc.home(user) / "Maildir" / "new" / name
    path.write_bytes(make_message("planted", text))
    os.chown(path, dc.mail_uid, dc.mail_gid)


def test_refused_copy_gets_no_with_the_reason(dc):
    # Bug: a refused COPY sent the client freed memory as its NO text (the
    # check read the source in the COPY's own transaction; its commit
    # freed the error text). ASan found it; this test runs under ASan too.
    imap = dc.imap()
    assert imap.create("Archive")[0] == "OK"  # Dovecot makes the Maildir
    plant(dc, "alice", f"planted before the policy: {REJECT}\n")
    assert select_count(imap) == 1
    offset = dc.log_offset()
    typ, data = imap.copy("1", "Archive")
    assert typ == "NO", data
    assert f"[CANNOT] {REASON}" in data[0].decode(), data
    # The COPY judged the source once and did not count as a client read.
    assert not dc.find_log(r"dovekie-example: hook=read", since=offset)
    imap.logout()
    assert dc.message_count("Archive") == 0
    dc.wait_for_log(example_line(
        "imap", "alice", "hook=save origin=copy mailbox=\"Archive\" verdict=reject"),
        since=offset)


def test_copy_by_saving_keeps_the_bytes(dovekie):
    # Without hard links Dovecot copies by reading the source and saving it
    # again, after our save hook read the same source to its end: the copy
    # must still carry every byte. Nothing is lost.
    dc = dovekie(settings={"dovekie_example_reject": REJECT},
                 extra_conf="maildir_copy_with_hardlinks = no\n")
    body = "".join(f"line {i} of a message that is copied\n" for i in range(2000))
    imap = dc.imap()
    assert append(imap, body)[0] == "OK"
    assert imap.create("Archive")[0] == "OK"
    select_count(imap)
    typ, data = imap.fetch("1", "(BODY.PEEK[])")
    original = data[0][1]
    offset = dc.log_offset()
    assert imap.copy("1", "Archive")[0] == "OK"
    assert select_count(imap, "Archive") == 1
    typ, data = imap.fetch("1", "(BODY.PEEK[])")
    imap.logout()
    assert data[0][1] == original
    dc.wait_for_log(example_line(
        "imap", "alice", "hook=save origin=copy mailbox=\"Archive\" verdict=accept"),
        since=offset)


# --- (e): IMAP FETCH -----------------------------------------------------------

def test_fetch_body_calls_read_hook(dc):
    imap = dc.imap()
    assert append(imap, "read me please\n")[0] == "OK"
    select_count(imap)

    offset = dc.log_offset()
    typ, data = imap.fetch("1", "(BODY[])")
    assert typ == "OK", data
    assert b"read me please" in data[0][1]
    imap.logout()

    dc.wait_for_log(example_line(
        "imap", "alice", "hook=read origin=fetch mailbox=\"INBOX\" uid=1"),
        since=offset)


# --- (f), (g): POP3 ------------------------------------------------------------

def test_pop3_session_hooks_with_quit(dc):
    imap = dc.imap()
    assert append(imap, "fetched over pop3\n")[0] == "OK"
    imap.logout()

    offset = dc.log_offset()
    pop = dc.pop3()
    assert pop.stat()[0] == 1
    resp, lines, _ = pop.retr(1)
    assert resp.startswith(b"+OK")
    assert b"fetched over pop3" in b"\n".join(lines)
    pop.quit()

    start = dc.wait_for_log(
        example_line("pop3", "alice", "hook=pop3_start messages=1"),
        since=offset)
    read = dc.wait_for_log(
        example_line("pop3", "alice", "hook=read origin=pop3 mailbox=\"INBOX\" uid=1"),
        since=offset)
    end = dc.wait_for_log(
        example_line("pop3", "alice", "hook=pop3_end quit=yes"), since=offset)
    assert start.start() < read.start() < end.start(), "hooks out of order"


def test_pop3_session_without_quit(dc):
    imap = dc.imap()
    assert append(imap, "topped over pop3\n")[0] == "OK"
    imap.logout()

    offset = dc.log_offset()
    pop = dc.pop3()
    assert pop.stat()[0] == 1
    assert pop.top(1, 0)[0].startswith(b"+OK")
    pop.close()  # drop the connection without QUIT

    dc.wait_for_log(example_line("pop3", "alice", "hook=pop3_start messages=1"),
                    since=offset)
    dc.wait_for_log(
        example_line("pop3", "alice", "hook=read origin=pop3 mailbox=\"INBOX\" uid=1"),
        since=offset)
    dc.wait_for_log(example_line("pop3", "alice", "hook=pop3_end quit=no"),
                    since=offset)
    # Without QUIT, POP3 must not expunge anything.
    assert dc.message_count("INBOX") == 1


def test_pop3_dele_calls_expunge_hook(dc):
    imap = dc.imap()
    assert append(imap, "delete me over pop3\n")[0] == "OK"
    imap.logout()

    offset = dc.log_offset()
    pop = dc.pop3()
    assert pop.dele(1).startswith(b"+OK")
    pop.quit()

    dc.wait_for_log(
        example_line("pop3", "alice", "hook=expunge mailbox=\"INBOX\" uid=1"),
        since=offset)
    dc.wait_for_log(example_line("pop3", "alice", "hook=pop3_end quit=yes"),
                    since=offset)
    # The example module does not veto expunges: the message is gone.
    assert dc.message_count("INBOX") == 0


# --- (h): unknown module in the list ---------------------------------------

def test_unknown_module_is_reported_and_guards_everything(dovekie):
    """Fail closed: a listed module that does not exist may have been meant
    to guard anything, so the user's saves are refused with a temporary
    error (nothing is stored unguarded), and the log names it once."""
    dc = dovekie(settings={"dovekie_modules": "example nosuchmodule",
                           "dovekie_example_reject": REJECT})
    imap = dc.imap()
    dc.wait_for_log(host_error("nosuchmodule"))

    offset = dc.log_offset()
    typ, text = append(imap, "clean message despite a bad module list\n")
    assert typ == "NO", text
    assert "[UNAVAILABLE]" in text and "server configuration problem" in text, text
    assert select_count(imap) == 0
    imap.logout()
    dc.wait_for_log(r"^[^\n]*imap\(alice\)[^\n]*: Error: [^\n]*refusing to store a message "
                    r"\(uid 0\): module nosuchmodule is configured but not running",
                    since=offset)
    assert_no_crash(dc)


# --- (i): per-user override from userdb -----------------------------------

def test_userdb_field_overrides_plugin_setting(dovekie):
    dc = dovekie(
        settings={"dovekie_example_reject": "ALICEWORD"},
        users={"alice": {"password": "secret"},
               "bob": {"password": "bobpass",
                       "userdb": {"dovekie_example_reject": "BOBWORD"}}})

    bob = dc.imap("bob")
    typ, text = append(bob, "this mentions BOBWORD\n")
    assert typ == "NO", text
    # The override replaces the global word for bob.
    typ, text = append(bob, "this mentions ALICEWORD\n")
    assert typ == "OK", text
    bob.logout()
    dc.wait_for_log(example_line(
        "imap", "bob", "hook=save origin=append mailbox=\"INBOX\" verdict=reject"))

    alice = dc.imap("alice")
    typ, text = append(alice, "this mentions ALICEWORD\n")
    assert typ == "NO", text
    typ, text = append(alice, "this mentions BOBWORD\n")
    assert typ == "OK", text
    alice.logout()

    assert dc.message_count("INBOX", user="bob") == 1
    assert dc.message_count("INBOX", user="alice") == 1
    assert_no_crash(dc)


# --- (j): unknown setting key ------------------------------------------------

def test_misspelt_setting_stops_its_module_and_guards(dovekie):
    """Fail closed: a misspelt option of a listed module means the admin's
    intent is unknown, so the module does not start and what it guards
    (saves, for the example module) is refused with a temporary error.
    On Dovecot 2.4 every dovekie_* key is declared to doveconf, which
    refuses the misspelt one before Dovecot starts."""
    if is_dovecot24():
        with pytest.raises(DovecotStartError) as refused:
            dovekie(settings={"dovekie_example_bogus": "1"})
        assert "Unknown setting: dovekie_example_bogus" in str(refused.value), refused.value
        return
    dc = dovekie(settings={"dovekie_example_bogus": "1"})
    offset = dc.log_offset()
    imap = dc.imap()
    typ, text = append(imap, "refused for now\n")
    assert typ == "NO", text
    assert "[UNAVAILABLE]" in text, text
    assert select_count(imap) == 0
    imap.logout()

    dc.wait_for_log(r"^[^\n]*: Error: [^\n]*unknown setting dovekie_example_bogus = 1: "
                    r"module example declares no such setting", since=offset)
    assert not dc.find_log(r"unknown setting\(s\)", since=offset)
    assert_no_crash(dc)
