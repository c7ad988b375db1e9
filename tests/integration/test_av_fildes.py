"""clamd FILDES: clamd reads the mail file Dovecot holds, through a passed fd.

With a unix: clamd and dovekie_av_clamd_fildes = yes (the default), the
module passes the message's fd (SCM_RIGHTS) when the host offers one. The
Dovecot host offers it only when the file behind the mail stream holds
exactly the message (maildir here), not for LMTP's raw mail nor for a
compressed maildir (zlib plugin): those are streamed (INSTREAM).

Two independent proofs that FILDES was used for a scan:
  - the module's log line says `engine=unix:<socket> mode=fildes`;
  - clamd's own log names the scanned file: for FILDES it is the mail file
    in the user's Maildir (clamd resolves the fd), for INSTREAM a
    temporary file of clamd's own. With `LogClean yes` clamd logs clean
    verdicts as well.
"""

from __future__ import annotations

import re
import time

import pytest

from clamd_harness import EICAR, EICAR_SIGNATURE, PrivateClamd
from dovekie_harness import make_message
from test_antivirus import append, assert_no_crash, av_line, eicar_inline, plant

ATTRIBUTE_DICT = "mail_attribute_dict = file:%h/dovecot-attributes\n"


@pytest.fixture(scope="module")
def logging_clamd():
    """A private clamd that logs clean verdicts too."""
    with PrivateClamd(extra_conf="LogClean yes\n") as clamd:
        yield clamd


@pytest.fixture
def av(dovecot, plugin_path, antivirus_module):
    """av(clamd_address, mail_plugins=None, **settings) -> a Dovecot scanning
    with it; infected deliveries are rejected, the verdict cache is off (so
    every check is a real scan)."""

    def make(clamd_address, mail_plugins=None, extra_conf="", **settings):
        plugin_settings = {"dovekie_modules": "antivirus",
                           "dovekie_av_clamd": clamd_address,
                           "dovekie_av_connect_timeout_msecs": "1000",
                           "dovekie_av_scan_timeout_msecs": "5000",
                           "dovekie_av_action": "reject",
                           "dovekie_av_cache": "no"}
        plugin_settings.update({k: str(v) for k, v in settings.items()})
        kwargs = {}
        if mail_plugins is not None:
            kwargs["mail_plugins"] = mail_plugins
        return dovecot(plugin_path=plugin_path, module_files=[antivirus_module],
                       plugin_settings=plugin_settings, extra_conf=ATTRIBUTE_DICT + extra_conf,
                       **kwargs)

    return make



def clamd_lines_since(clamd: PrivateClamd, offset: int, timeout: float = 5.0,
                      want: str | None = None) -> str:
    """clamd's log after `offset` (characters); waits up to `timeout` for a
    line matching the regex `want` (clamd writes its log asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        text = clamd.log_text()[offset:]
        if want is None or re.search(want, text, re.M) or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def maildir_file_line(dc, verdict: str) -> str:
    """Regex of a clamd log line for a file in alice's Maildir."""
    return rf"^[^\n]*{re.escape(str(dc.home('alice') / 'Maildir'))}/[^\n]*: {verdict}$"


# --- APPEND -------------------------------------------------------------------

def test_append_eicar_is_refused_over_fildes(av, logging_clamd):
    dc = av(logging_clamd.unix_address)
    imap = dc.imap()
    offset, clamd_offset = dc.log_offset(), len(logging_clamd.log_text())
    typ, text = append(imap, eicar_inline())
    assert typ == "NO", text
    assert EICAR_SIGNATURE in text, text
    imap.logout()
    assert dc.message_count("INBOX") == 0
    dc.wait_for_log(av_line("imap", rf"scan origin=append mailbox=\"INBOX\" [^\n]*result=infected "
                            rf"signature={EICAR_SIGNATURE}[^\n]* "
                            + re.escape(f"engine={logging_clamd.unix_address} mode=fildes ")),
                    since=offset)
    # clamd read the saved file itself: its log names the file in the Maildir.
    log = clamd_lines_since(logging_clamd, clamd_offset,
                            want=maildir_file_line(dc, rf"{EICAR_SIGNATURE}\S* FOUND"))
    assert re.search(maildir_file_line(dc, rf"{EICAR_SIGNATURE}\S* FOUND"), log, re.M), log
    assert "instream" not in log.lower(), log
    assert_no_crash(dc)


def test_append_clean_is_stored_over_fildes(av, logging_clamd):
    dc = av(logging_clamd.unix_address)
    message = make_message("clean over fildes", "nothing to see here\n" * 200)
    imap = dc.imap()
    offset, clamd_offset = dc.log_offset(), len(logging_clamd.log_text())
    typ, text = append(imap, message)
    assert typ == "OK", text
    imap.select("INBOX")
    typ, data = imap.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK"
    assert data[0][1] == message
    imap.logout()
    dc.wait_for_log(av_line("imap", r"scan origin=append mailbox=\"INBOX\" [^\n]*result=clean "
                            + re.escape(f"engine={logging_clamd.unix_address} mode=fildes ")),
                    since=offset)
    log = clamd_lines_since(logging_clamd, clamd_offset, want=maildir_file_line(dc, "OK"))
    assert re.search(maildir_file_line(dc, "OK"), log, re.M), log


def test_fildes_off_streams_the_message(av, logging_clamd):
    dc = av(logging_clamd.unix_address, dovekie_av_clamd_fildes="no")
    imap = dc.imap()
    offset, clamd_offset = dc.log_offset(), len(logging_clamd.log_text())
    typ, text = append(imap, eicar_inline())
    assert typ == "NO" and EICAR_SIGNATURE in text, text
    imap.logout()
    dc.wait_for_log(av_line("imap", r"scan origin=append [^\n]*result=infected [^\n]*"
                            + re.escape(f"engine={logging_clamd.unix_address} mode=instream ")),
                    since=offset)
    log = clamd_lines_since(logging_clamd, clamd_offset, want=rf"{EICAR_SIGNATURE}\S* FOUND")
    assert re.search(rf"{EICAR_SIGNATURE}\S* FOUND", log), log
    assert not re.search(maildir_file_line(dc, r".*"), log, re.M), log


def test_tcp_server_streams_the_message(av, logging_clamd):
    dc = av(logging_clamd.tcp_address)
    imap = dc.imap()
    offset = dc.log_offset()
    typ, text = append(imap, eicar_inline())
    assert typ == "NO" and EICAR_SIGNATURE in text, text
    imap.logout()
    dc.wait_for_log(av_line("imap", r"scan origin=append [^\n]*result=infected [^\n]*"
                            + re.escape(f"engine={logging_clamd.tcp_address} mode=instream ")),
                    since=offset)


# --- stored mail, read back -----------------------------------------------------

def test_planted_eicar_is_caught_at_sync_over_fildes(av, logging_clamd):
    dc = av(logging_clamd.unix_address)
    plant(dc, eicar_inline())
    offset, clamd_offset = dc.log_offset(), len(logging_clamd.log_text())
    imap = dc.imap()
    # The first sync judges the planted file (clamd opens it by fd) and
    # moves it out before the view shows it: INBOX holds the notice.
    assert int(imap.select("INBOX")[1][0]) == 1
    typ, data = imap.fetch("1", "(BODY.PEEK[])")
    body = b"".join(part[1] for part in data if isinstance(part, tuple))
    assert typ == "OK" and EICAR not in body and b"[virus removed]" in body, data
    imap.logout()
    dc.wait_for_log(av_line("imap", rf"scan origin=sync mailbox=\"INBOX\" [^\n]*result=infected "
                            rf"signature={EICAR_SIGNATURE}[^\n]* "
                            + re.escape(f"engine={logging_clamd.unix_address} mode=fildes ")),
                    since=offset)
    log = clamd_lines_since(logging_clamd, clamd_offset,
                            want=maildir_file_line(dc, rf"{EICAR_SIGNATURE}\S* FOUND"))
    assert re.search(maildir_file_line(dc, rf"{EICAR_SIGNATURE}\S* FOUND"), log, re.M), log


# --- where the host must not offer the fd ---------------------------------------

def test_lmtp_eicar_is_rejected_and_streamed(av, logging_clamd):
    """LMTP's raw mail is LMTP's trace headers on top of the DATA (in memory
    or a temp file): no file holds exactly the message, so it is streamed."""
    dc = av(logging_clamd.unix_address)
    offset = dc.log_offset()
    code, text = dc.deliver("alice@example.test", eicar_inline())
    assert code == 550, text
    assert EICAR_SIGNATURE in text, text
    assert dc.message_count("INBOX") == 0
    dc.wait_for_log(av_line("lmtp", rf"scan origin=delivery mailbox=\"INBOX\" [^\n]*result=infected "
                            rf"signature={EICAR_SIGNATURE}[^\n]* "
                            + re.escape(f"engine={logging_clamd.unix_address} mode=instream ")),
                    since=offset)


@pytest.mark.parametrize("location", ["sdbox:~/sdbox", "mdbox:~/mdbox",
                                      "mbox:~/mail:INBOX=~/mail/inbox"])
def test_dbox_and_mbox_files_are_streamed_not_passed(av, logging_clamd, location):
    """A dbox file has a header and metadata around the message, an mdbox
    or mbox file holds several messages: the fd is never offered, so clamd
    judges the message alone."""
    dc = av(logging_clamd.unix_address, extra_conf=f"mail_location = {location}\n",
            dovekie_av_scan_on_read="always")
    imap = dc.imap()
    offset = dc.log_offset()
    clean = [make_message(f"clean {i}", f"message {i} of a shared file\n" * 50)
             for i in range(2)]
    for message in clean:
        typ, text = append(imap, message)
        assert typ == "OK", text
    typ, text = append(imap, eicar_inline())
    assert typ == "NO" and EICAR_SIGNATURE in text, text
    imap.select("INBOX")
    typ, data = imap.fetch("1:2", "(BODY.PEEK[])")
    assert typ == "OK", data
    assert [part[1] for part in data if isinstance(part, tuple)] == clean
    imap.logout()
    scans = dc.find_log_at_least(av_line("imap", r"scan origin=(append|fetch) [^\n]*"), 5,
                                 since=offset)
    assert len(scans) == 5, [m.group(0) for m in scans]
    for match in scans:
        assert f"engine={logging_clamd.unix_address} mode=instream " in match.group(0), \
            match.group(0)
    assert_no_crash(dc)


def test_compressed_maildir_is_streamed_not_passed(av, logging_clamd):
    """With the zlib plugin the maildir file is gzip: its fd is not the
    message, and passing it would let clamd scan compressed bytes. The
    host sees that and the module streams the decompressed message."""
    dc = av(logging_clamd.unix_address, mail_plugins="$mail_plugins zlib dovekie",
            zlib_save="gz", zlib_save_level="6")
    imap = dc.imap()
    offset = dc.log_offset()
    typ, text = append(imap, eicar_inline())
    assert typ == "NO" and EICAR_SIGNATURE in text, text
    dc.wait_for_log(av_line("imap", r"scan origin=append [^\n]*result=infected [^\n]*"
                            + re.escape(f"engine={logging_clamd.unix_address} mode=instream ")),
                    since=offset)
    # A clean message is really stored compressed, and read back whole.
    message = make_message("compressed", "plain words, many times\n" * 300)
    typ, text = append(imap, message)
    assert typ == "OK", text
    stored = [p for sub in ("cur", "new") for p in (dc.home("alice") / "Maildir" / sub).iterdir()]
    assert len(stored) == 1
    assert stored[0].read_bytes()[:2] == b"\x1f\x8b", "zlib_save did not compress"
    imap.select("INBOX")
    typ, data = imap.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == message
    imap.logout()
    assert not dc.find_log(av_line("imap", r"mode=fildes"), since=offset)
    assert_no_crash(dc)
