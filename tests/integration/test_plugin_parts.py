"""The host's per-protocol parts (hosts/dovecot/dovekie-part.h), through a
real Dovecot whose configuration leaves one out globally.

dovekie_pop3, dovekie_lmtp and dovekie_fts are Dovecot plugins of their own
that depend on the core plugin dovekie. A guard that cannot run refuses
rather than lets mail through: when a user's modules need a part that is
not loaded, the session (POP3 login, LMTP delivery, any session with
fts = dovekie) is refused with one log line that names the missing plugin
and the setting to fix. A part whose dependency is missing is refused by
Dovecot itself (`<name>_dependencies`).
"""

from __future__ import annotations

import poplib
import socket
import time

import pytest

from dovekie_harness import CLIENT_TIMEOUT, is_dovecot24, make_message

DOVECOT24 = is_dovecot24()


@pytest.fixture
def modules(module_paths):
    files = {p.stem: p for p in module_paths}
    return lambda *names: [files[n] for n in names]


def pop3_pass(dc, user: str = "alice") -> bytes:
    """The reply to PASS (an -ERR is returned, not raised)."""
    pop = poplib.POP3("127.0.0.1", dc.ports["pop3"], timeout=CLIENT_TIMEOUT)
    try:
        pop.user(user)
        try:
            return pop.pass_(dc.password(user))
        except poplib.error_proto as err:
            return err.args[0]
    finally:
        pop.close()


def imap_login_raw(dc, user: str = "alice") -> bytes:
    """LOGIN, then everything the server says until it closes."""
    with socket.create_connection(("127.0.0.1", dc.ports["imap"]),
                                  timeout=CLIENT_TIMEOUT) as sock:
        reader = sock.makefile("rb")
        reader.readline()  # greeting
        sock.sendall(f"a LOGIN {user} {dc.password(user)}\r\n".encode())
        return b"".join(iter(reader.readline, b""))


def one_log_line(dc, pattern: str, since: int) -> str:
    """Waits for the refusal's line and checks it is the only one."""
    dc.wait_for_log(pattern, since=since)
    time.sleep(0.5)  # a second line, if any, would be written by now
    found = dc.find_log(pattern, since=since)
    assert len(found) == 1, dc.log_since(since)
    return found[0].group(0)


def check_lines(dc, *args: str) -> tuple[int, list[str]]:
    """`doveadm dovekie check ARGS`: its exit code and its lines."""
    result = dc.doveadm("dovekie", "check", *args)
    return result.returncode, result.stdout.splitlines()


def part_line(protocol: str, scope: str) -> str:
    fix = (f"protocol {protocol} {{ mail_plugins {{ dovekie_{protocol} = yes }} }}"
           if DOVECOT24 else
           f"protocol {protocol} {{ mail_plugins = $mail_plugins dovekie_{protocol} }}")
    return (f"global: {protocol}: the plugin dovekie_{protocol} is not in protocol "
            f"{protocol}'s mail_plugins, and the modules ({scope}) act in {protocol}: "
            f"its sessions are refused; set {fix}")


def maildir_files(dc, user: str = "alice") -> list:
    root = dc.home(user) / "Maildir"
    return [p for sub in ("new", "cur") for p in (root / sub).glob("*")]


def test_retention_without_the_pop3_part_refuses_pop3(dovecot, plugin_path, modules):
    dc = dovecot(plugin_path=plugin_path, module_files=modules("retention"),
                 plugin_settings={"dovekie_modules": "retention"},
                 parts=("lmtp", "fts"))
    imap = dc.imap()
    assert imap.append("INBOX", None, None, make_message("kept", "kept\n"))[0] == "OK"
    imap.logout()
    since = dc.log_offset()
    reply = pop3_pass(dc)
    assert reply.startswith(b"-ERR"), reply
    line = one_log_line(dc, r"[^\n]*dovekie: refusing the POP3 login of alice: the plugin "
                        r"dovekie_pop3 is not loaded for pop3[^\n]*", since)
    fix = ("protocol pop3 { mail_plugins { dovekie_pop3 = yes } }" if DOVECOT24 else
           "protocol pop3 { mail_plugins = $mail_plugins dovekie_pop3 }")
    assert fix in line, line
    assert "Error" in line, line
    # Nothing was hidden or expunged; IMAP is not refused.
    assert dc.message_count() == 1
    # The admin's check says so too, before any session, and the lmtp part
    # (loaded) is no problem.
    code, lines = check_lines(dc)
    assert (code, lines) == (78, [part_line("pop3", "global")]), (code, lines)


def test_check_names_the_user_whose_modules_need_a_missing_part(dovecot, plugin_path,
                                                                modules):
    """Global modules that act nowhere, one user given retention from userdb:
    the global check alone finds nothing, the check of that user names the
    missing pop3 part and the user, and POP3 refuses exactly that user."""
    dc = dovecot(plugin_path=plugin_path, module_files=modules("search", "retention"),
                 plugin_settings={"dovekie_modules": "search"},
                 users={"alice": {"password": "secret"},
                        "bob": {"password": "secret",
                                "userdb": {"dovekie_modules": "retention"}}},
                 parts=("lmtp", "fts"))
    code, lines = check_lines(dc)
    assert code == 0 and len(lines) == 1 and lines[0].startswith("ok: "), (code, lines)
    code, lines = check_lines(dc, "-u", "bob")
    assert (code, lines) == (78, [part_line("pop3", "bob")]), (code, lines)
    code, lines = check_lines(dc, "-u", "alice")
    assert code == 0, (code, lines)
    assert pop3_pass(dc, "alice").startswith(b"+OK")
    assert pop3_pass(dc, "bob").startswith(b"-ERR")


def test_antivirus_without_the_pop3_part_refuses_pop3(dovecot, plugin_path, modules):
    # The scanner does not matter: the part's absence is found first.
    dc = dovecot(plugin_path=plugin_path, module_files=modules("antivirus"),
                 plugin_settings={"dovekie_modules": "antivirus"},
                 parts=("lmtp", "fts"))
    since = dc.log_offset()
    assert pop3_pass(dc).startswith(b"-ERR")
    one_log_line(dc, r"[^\n]*refusing the POP3 login of alice: the plugin dovekie_pop3 "
                 r"is not loaded[^\n]*", since)


def test_pop3_and_lmtp_without_modules_that_act_there_are_served(dovecot, plugin_path,
                                                                 modules):
    """The search module has no save, read or expunge hook: neither POP3 nor
    LMTP needs a part for it (and without fts = dovekie, no fts part)."""
    dc = dovecot(plugin_path=plugin_path, module_files=modules("search"),
                 plugin_settings={"dovekie_modules": "search"}, parts=())
    code, text = dc.deliver("alice@example.test", make_message("in", "in\n"))
    assert code == 250, (code, text)
    assert pop3_pass(dc).startswith(b"+OK")
    assert not dc.find_log("refusing the")
    code, lines = check_lines(dc, "-A")
    assert code == 0 and len(lines) == 1 and lines[0].startswith("ok: "), (code, lines)


def test_a_save_guard_without_the_lmtp_part_refuses_delivery(dovecot, plugin_path, modules):
    dc = dovecot(plugin_path=plugin_path, module_files=modules("example"),
                 plugin_settings={"dovekie_modules": "example"},
                 parts=("pop3", "fts"))
    since = dc.log_offset()
    code, text = dc.deliver("alice@example.test", make_message("clean", "clean\n"))
    assert code == 451, (code, text)
    line = one_log_line(dc, r"[^\n]*dovekie: refusing the delivery of alice: the plugin "
                        r"dovekie_lmtp is not loaded for lmtp[^\n]*", since)
    fix = ("protocol lmtp { mail_plugins { dovekie_lmtp = yes } }" if DOVECOT24 else
           "protocol lmtp { mail_plugins = $mail_plugins dovekie_lmtp }")
    assert fix in line, line
    assert dc.message_count() == 0
    # With the part, the same delivery goes through (the harness default).
    code, lines = check_lines(dc)
    assert (code, lines) == (78, [part_line("lmtp", "global")]), (code, lines)


def test_fts_dovekie_without_the_fts_part_refuses_the_session(dovecot, plugin_path, modules):
    dc = dovecot(plugin_path=plugin_path, module_files=modules("search"),
                 mail_plugins="$mail_plugins fts dovekie",
                 plugin_settings={"dovekie_modules": "search", "fts": "dovekie"},
                 parts=("pop3", "lmtp"))
    since = dc.log_offset()
    # Dovecot answers the LOGIN (the login process authenticated it), then
    # BYE and closes: the session never starts.
    reply = imap_login_raw(dc)
    assert b"* BYE" in reply, reply
    line = one_log_line(dc, r"[^\n]*dovekie: refusing the session of alice: the plugin "
                        r"dovekie_fts is not loaded for imap[^\n]*", since)
    assert "dovekie_fts" in line.split("; set ", 1)[1], line
    # A delivery is refused too (the MTA retries), and nothing is stored.
    since = dc.log_offset()
    code, text = dc.deliver("alice@example.test", make_message("m", "m\n"))
    assert code == 451, (code, text)
    one_log_line(dc, r"[^\n]*refusing the session of alice: the plugin dovekie_fts "
                 r"is not loaded for lmtp[^\n]*", since)
    assert maildir_files(dc) == []
    # The check asks the user's own fts settings (doveadm loads the parts
    # of mail_plugins, so the missing one is seen directly).
    code, lines = check_lines(dc, "-u", "alice")
    assert code == 78, (code, lines)
    assert len(lines) == 1, lines
    assert lines[0].startswith("alice: the plugin dovekie_fts is not loaded for doveadm, "
                               "and the fts settings select the dovekie backend; set "), lines


def test_a_part_without_the_core_plugin_is_refused_by_dovecot(dovecot, plugin_path, modules):
    """dovekie_pop3_plugin_dependencies names dovekie: Dovecot will not load
    the part alone."""
    dc = dovecot(plugin_path=plugin_path, module_files=modules("retention"),
                 plugin_settings={"dovekie_modules": "retention"},
                 mail_plugins="", parts=(),
                 extra_conf="protocol pop3 {\n  mail_plugins = dovekie_pop3\n}\n")
    since = dc.log_offset()
    assert pop3_pass(dc).startswith(b"-ERR")
    dc.wait_for_log(r"Plugin dovekie must be loaded also", since=since)


def test_the_lmtp_part_cannot_load_in_pop3(dovecot, plugin_path, modules):
    """A part is meant for one binary: put in the wrong protocol, it does not
    load (the binary's symbols are missing; lmtp_module_register is data,
    which even a lazy dlopen must resolve, so Dovecot does not get to the
    `<name>_binary_dependency` check) and the session is refused."""
    dc = dovecot(plugin_path=plugin_path, module_files=modules("example"),
                 plugin_settings={"dovekie_modules": "example"}, parts=(),
                 extra_conf="protocol pop3 {\n  mail_plugins = $mail_plugins dovekie_lmtp\n}\n")
    since = dc.log_offset()
    assert pop3_pass(dc).startswith(b"-ERR")
    dc.wait_for_log(r"pop3\(alice\)[^\n]*Error: Couldn't load required plugin "
                    r"\S*lib95_dovekie_lmtp_plugin\.so", since=since)


def test_every_part_loaded_serves_pop3_and_lmtp(dovecot, plugin_path, modules):
    """The harness default: retention in POP3, the example module's guard in
    LMTP, both parts loaded, no refusal."""
    dc = dovecot(plugin_path=plugin_path, module_files=modules("example", "retention"),
                 plugin_settings={"dovekie_modules": "example retention"})
    code, text = dc.deliver("alice@example.test", make_message("ok", "ok\n"))
    assert code == 250, (code, text)
    assert pop3_pass(dc).startswith(b"+OK")
    assert not dc.find_log(r"refusing the")
    code, lines = check_lines(dc, "-A")
    assert code == 0 and len(lines) == 1 and lines[0].startswith("ok: "), (code, lines)
