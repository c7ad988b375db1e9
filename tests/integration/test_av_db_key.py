"""Issue 16, invariant 7: verdicts are keyed by what the scanner really uses.

clamd's VERSION only moves with the official .cvd/.cld files. An unofficial
signature file (Sanesecurity-style .ndb/.hdb, or an admin's own) changes
what clamd finds without changing VERSION, and a cached "clean" verdict was
then served to APPEND and to reads. The module now reads clamd's signature
directory (DatabaseDirectory of clamd.conf, or dovekie_av_clamd_database):
any change there retires cached verdicts.

A real clamd; a marker string that no signature knows at first; a new .ndb
file that knows it, and a clamd RELOAD.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from clamd_harness import PrivateClamd
from dovekie_harness import make_message
from test_antivirus import append, assert_no_crash, av_line

ATTRIBUTE_DICT = "mail_attribute_dict = file:%h/dovecot-attributes\n"
MARKER = "DOVEKIE-UNOFFICIAL-SIGNATURE-MARKER-7f3a9c"
SIGNATURE = "Dovekie.Test.Unofficial"


@pytest.fixture
def own_clamd():
    daemon = PrivateClamd()
    daemon.start()
    yield daemon
    daemon.stop()


def av_dovecot(dovecot, plugin_path, antivirus_module, clamd, **settings):
    plugin_settings = {"dovekie_modules": "antivirus",
                       "dovekie_av_clamd": clamd.unix_address,
                       "dovekie_av_connect_timeout_msecs": "1000",
                       "dovekie_av_scan_timeout_msecs": "5000",
                       "dovekie_av_db_check_interval": "1"}
    plugin_settings.update({k: str(v) for k, v in settings.items()})
    return dovecot(plugin_path=plugin_path, module_files=[antivirus_module],
                   plugin_settings=plugin_settings, extra_conf=ATTRIBUTE_DICT)


def add_unofficial_signature(clamd: PrivateClamd) -> None:
    """A new .ndb file for the marker, then clamd RELOAD; returns once
    clamd finds the marker (the reload is done)."""
    path = clamd.db_dir / "local-unofficial.ndb"
    path.write_text(f"{SIGNATURE}:0:*:{MARKER.encode().hex()}\n")
    os.chmod(path, 0o644)
    version = clamd.version()
    assert clamd._command(socket.AF_UNIX, str(clamd.socket_path), b"RELOAD") == b"RELOADING"
    deadline = time.monotonic() + 60
    while SIGNATURE not in clamd.instream(MARKER.encode()):
        assert time.monotonic() < deadline, "clamd did not reload"
        time.sleep(0.2)
    # The point of the issue: clamd's VERSION says nothing of it.
    assert clamd.version() == version


def marked(subject: str) -> bytes:
    return make_message(subject, f"Some text.\n{MARKER}\nMore text.\n")


@pytest.mark.parametrize("source", ["clamd.conf", "setting"])
def test_unofficial_signature_retires_cached_verdicts(dovecot, plugin_path, antivirus_module,
                                                      own_clamd, source):
    if source == "clamd.conf":
        settings = {"dovekie_av_clamd_conf": own_clamd.config_path}
    else:
        settings = {"dovekie_av_clamd_conf": "", "dovekie_av_clamd_database": own_clamd.db_dir}
    dc = av_dovecot(dovecot, plugin_path, antivirus_module, own_clamd, **settings)
    message = marked("unofficial")
    # Scanned clean and cached: an APPEND, then the same bytes again
    # (served from the cache).
    imap = dc.imap()
    for _ in range(2):
        typ, text = append(imap, message)
        assert typ == "OK", text
    imap.logout()
    dc.wait_for_log(av_line("imap", "scan origin=append [^\n]*result=clean[^\n]*cached=yes"))

    add_unofficial_signature(own_clamd)
    time.sleep(1.2)  # past dovekie_av_db_check_interval
    offset = dc.log_offset()
    imap = dc.imap()
    typ, text = append(imap, message)
    assert typ == "NO" and SIGNATURE in text, text
    # The two stored copies are judged again (never the old "clean"): the
    # first sync moves them into quarantine, and no byte of the marker is
    # served.
    imap.select("INBOX")
    typ, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[])")
    served = b"".join(part[1] for part in data if isinstance(part, tuple))
    assert MARKER.encode() not in served, data
    imap.logout()
    found = dc.find_log(av_line("imap", f"result=infected[^\n]*{SIGNATURE}|"
                                        f"{SIGNATURE}[^\n]*result=infected"), since=offset)
    assert len(found) >= 2, dc.log_tail()
    assert not dc.find_log(r"uid=[12] [^\n]*result=clean[^\n]*cached=yes", since=offset), \
        dc.log_tail()
    assert_no_crash(dc)


def test_another_clamds_conf_is_not_used(dovecot, plugin_path, antivirus_module, own_clamd,
                                         tmp_path):
    # A clamd.conf whose LocalSocket is not one of dovekie_av_clamd describes
    # another clamd: verdicts go by VERSION, as before, and nothing breaks.
    conf = tmp_path / "other-clamd.conf"
    conf.write_text("LocalSocket /nonexistent/other.sock\nDatabaseDirectory /nonexistent\n")
    conf.chmod(0o644)
    tmp_path.chmod(0o755)
    dc = av_dovecot(dovecot, plugin_path, antivirus_module, own_clamd,
                    dovekie_av_clamd_conf=conf)
    code, text = dc.deliver("alice@example.test", make_message("x", "y\n"))
    assert code == 250, text
    dc.wait_for_log(av_line("lmtp", "result=clean"))
    assert_no_crash(dc)


def test_unreadable_database_setting_fails_closed(dovecot, plugin_path, antivirus_module,
                                                  own_clamd):
    dc = av_dovecot(dovecot, plugin_path, antivirus_module, own_clamd,
                    dovekie_av_clamd_database="/nonexistent/clamav")
    code, text = dc.deliver("alice@example.test", make_message("x", "y\n"))
    assert 400 <= code < 500, (code, text)
    assert dc.find_log(r"dovekie_av_clamd_database = /nonexistent/clamav"), dc.log_tail()
    assert dc.message_count("INBOX") == 0
    assert_no_crash(dc)


# --- issue 17, item 2: verdict writes are held and committed in batches ------

def test_held_verdicts_are_committed_in_batches_and_at_session_end(
        dovecot, plugin_path, antivirus_module, own_clamd):
    # Verdicts go through the host's kv_defer: held, committed 256 at a time
    # and when the session ends. 300 distinct APPENDs in one session: the
    # attribute file holds nothing while under 256 writes are held, 255
    # verdicts once 255 verdicts and the record counter made 256 (one
    # batch), and all 300 after the logout; a new session finds them.
    dc = av_dovecot(dovecot, plugin_path, antivirus_module, own_clamd,
                    dovekie_av_clamd_database=own_clamd.db_dir)
    attrs = dc.home("alice") / "dovecot-attributes"

    def verdicts() -> int:
        return attrs.read_text().count("dovekie/antivirus/v/") if attrs.exists() else 0

    messages = [make_message(f"batch {i}", f"body {i}\n") for i in range(300)]
    imap = dc.imap()
    for message in messages[:254]:
        typ, text = append(imap, message)
        assert typ == "OK", text
    assert verdicts() == 0  # held
    for message in messages[254:]:
        typ, text = append(imap, message)
        assert typ == "OK", text
    assert verdicts() == 255  # one batch
    imap.logout()
    deadline = time.monotonic() + 10
    while verdicts() < 300:
        assert time.monotonic() < deadline, verdicts()
        time.sleep(0.1)
    offset = dc.log_offset()
    imap = dc.imap()
    for message in messages[::50]:
        typ, text = append(imap, message)
        assert typ == "OK", text
    imap.logout()
    assert len(dc.find_log(r"scan origin=append [^\n]*cached=yes", since=offset)) == 6
    assert "cache-count" in attrs.read_text()
    assert_no_crash(dc)
