"""Issue 16: no infected byte reaches a client on any read path.

Unscanned infected mail is planted straight into the Maildir (as mail stored
before the module was enabled), then read through every IMAP fetch item,
SEARCH and POP3, with a real clamd whose tiny signature DB detects the EICAR
string and clam.exe (inside clam.zip). Two messages carry them:
    EICAR in a 7bit text/plain part (part 2)
    clam.zip in a base64 attachment (part 2)
Every response is read raw off the socket and must not hold the EICAR string,
the zip's bytes or any line of its base64, must not be BYE, and must end with
a tagged OK or NO.

With dovekie_av_read_action = refuse the messages stay and every read is
refused; with replace (the default) the first sync moved them into
quarantine before any view showed them (test_av_sync.py), and every item
over what is left is clean.

Also here: reads of the quarantine mailbox (invariant 4, first bullet),
dovekie_av_action = tag (invariant 5) and POP3 UIDLs and RETR next to a
quarantined message (invariant 6).
"""

from __future__ import annotations

import base64
import re
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from clamd_harness import EICAR, EICAR_SIGNATURE, TESTFILES, PrivateClamd
from dovekie_harness import make_message
from test_antivirus import FakeClamd, append, assert_no_crash, av_line, plant

ATTRIBUTE_DICT = "mail_attribute_dict = file:%h/dovecot-attributes\n"
CLAM_ZIP = (TESTFILES / "clam.zip").read_bytes()

# Every fetch item of the issue; one unscanned message is the first read of
# each, and each is asked again of a message already replaced or refused.
FETCH_ITEMS = [
    "BODY.PEEK[]", "BODY.PEEK[2]", "BODY.PEEK[2.MIME]", "BODY.PEEK[1]",
    "BINARY.PEEK[]", "BINARY.PEEK[2]", "BINARY.SIZE[2]", "RFC822", "RFC822.TEXT",
    "BODY.PEEK[TEXT]", "BODY.PEEK[]<0.200>", "BODY.PEEK[2]<0.40>",
    "BINARY.PEEK[2]<0.40>", "BODY.PEEK[TEXT]<100.300>",
]


@pytest.fixture(scope="module")
def clamd():
    with PrivateClamd() as daemon:
        yield daemon



@pytest.fixture
def av(dovecot, plugin_path, antivirus_module):
    def make(clamd_address, **settings):
        plugin_settings = {"dovekie_modules": "antivirus",
                           "dovekie_av_clamd": clamd_address,
                           "dovekie_av_connect_timeout_msecs": "1000",
                           "dovekie_av_scan_timeout_msecs": "5000"}
        plugin_settings.update({k: str(v) for k, v in settings.items()})
        return dovecot(plugin_path=plugin_path, module_files=[antivirus_module],
                       plugin_settings=plugin_settings, extra_conf=ATTRIBUTE_DICT)
    return make


@pytest.fixture
def public_tmp():
    path = Path(tempfile.mkdtemp(prefix="dovekie-av-read-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- messages ---------------------------------------------------------------

def multipart(tag: str, part2: bytes) -> bytes:
    return (b"From: sender@example.test\r\nTo: alice@example.test\r\n"
            b"Subject: read paths " + tag.encode() + b"\r\n"
            b"Message-ID: <" + tag.encode() + b"@example.test>\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n"
            b"--b0\r\nContent-Type: text/plain\r\n\r\n"
            + b"A harmless first part.\r\n" * 40 +
            b"--b0\r\n" + part2 + b"--b0--\r\n")


def eicar_7bit(tag: str) -> bytes:
    return multipart(tag, b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
                     b"The test string follows.\r\n" + EICAR + b"\r\n")


def zip_base64(tag: str) -> bytes:
    encoded = base64.encodebytes(CLAM_ZIP).replace(b"\n", b"\r\n")
    return multipart(tag, b"Content-Type: application/zip; name=\"clam.zip\"\r\n"
                     b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded)


ZIP_B64_LINES = [line for line in base64.encodebytes(CLAM_ZIP).split(b"\n") if len(line) >= 16]
MAKERS = {"eicar": eicar_7bit, "zip": zip_base64}


def assert_clean(response: bytes, what: str) -> None:
    assert EICAR not in response, f"{what}: the EICAR string was served"
    assert EICAR[:24] not in response, f"{what}: part of the EICAR string was served"
    assert CLAM_ZIP[:64] not in response, f"{what}: clam.zip was served"
    for line in ZIP_B64_LINES:
        assert line not in response, f"{what}: clam.zip's base64 was served"
    assert b"* BYE" not in response, f"{what}: BYE\n{response[-300:]!r}"


# --- a raw IMAP client: every byte the server sends is kept -----------------

class RawImap:
    def __init__(self, dc, user: str = "alice"):
        self.sock = socket.create_connection(("127.0.0.1", dc.ports["imap"]), timeout=20)
        self.buf = b""
        self.n = 0
        self._line()  # greeting
        status, text = self.cmd(f"LOGIN {user} {dc.password(user)}")
        assert status == "OK", text

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line + b"\r\n"

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def cmd(self, command: str) -> tuple[str, bytes]:
        """Sends one command; returns (OK|NO|BAD|EOF, every byte of the answer)."""
        self.n += 1
        tag = f"t{self.n}".encode()
        self.sock.sendall(tag + b" " + command.encode() + b"\r\n")
        out = b""
        try:
            while True:
                line = self._line()
                out += line
                literal = re.search(rb"\{(\d+)\}\r\n$", line)
                if literal:
                    out += self._exact(int(literal.group(1)))
                    continue
                if line.startswith(tag + b" "):
                    return line.split(b" ")[1].decode(), out
        except (EOFError, OSError):
            return "EOF", out

    def close(self) -> None:
        self.sock.close()


def uids_in(raw: bytes) -> list[int]:
    return [int(u) for u in re.findall(rb"\* SEARCH((?: \d+)*)", raw)[0].split()] \
        if re.search(rb"\* SEARCH", raw) else []


# --- invariant 1: the fetch matrix -------------------------------------------

@pytest.mark.parametrize("read_action", ["replace", "refuse"])
def test_no_infected_byte_on_any_fetch_item(av, clamd, read_action):
    dc = av(clamd.unix_address, dovekie_av_read_action=read_action)
    cases = []  # (kind, item), in planting order: UID i+1
    for kind in MAKERS:
        for item in FETCH_ITEMS:
            plant(dc, MAKERS[kind](f"{kind}-{len(cases)}"))
            cases.append((kind, item))
    imap = RawImap(dc)
    status, raw = imap.cmd("SELECT INBOX")
    # refuse: all there; replace: the notices of all, the originals moved.
    assert status == "OK" and f"* {len(cases)} EXISTS".encode() in raw, raw
    # What Dovecot tells before any body is read stays available: sizes and
    # structure come from the headers and the MIME parse, not the bytes.
    status, raw = imap.cmd("FETCH 1 (RFC822.SIZE BODYSTRUCTURE)")
    assert status == "OK" and b"RFC822.SIZE" in raw, raw
    if read_action == "replace":
        for item in FETCH_ITEMS:
            status, raw = imap.cmd(f"FETCH 1:* ({item})")
            assert_clean(raw, f"{item} over the notices")
            assert status == "OK", (item, raw[-300:])
    else:
        for uid, (kind, item) in enumerate(cases, start=1):
            # A first read through this item, then every other item.
            for again in [item] + FETCH_ITEMS:
                status, raw = imap.cmd(f"UID FETCH {uid} ({again})")
                assert_clean(raw, f"{kind} {again} after {item}")
                assert status == "NO" and b"[PARSE] Virus Dovekie.Test." in raw, \
                    (kind, again, raw)
    status, raw = imap.cmd("NOOP")
    assert status == "OK" and b"EXPUNGE" not in raw, raw
    imap.close()
    if read_action == "replace":
        assert dc.message_count("Quarantine") == len(cases)
    assert dc.message_count("INBOX") == len(cases)
    assert_no_crash(dc)


def test_search_and_pop3_serve_no_infected_byte(av, clamd):
    # refuse: the infected messages stay, so POP3 and SEARCH meet them.
    dc = av(clamd.unix_address, dovekie_av_read_action="refuse")
    for i in range(4):
        plant(dc, MAKERS["eicar" if i % 2 == 0 else "zip"](f"pop-{i}"))
    pop = socket.create_connection(("127.0.0.1", dc.ports["pop3"]), timeout=20)
    pop_raw = b""

    def pop_cmd(line: str, multi: bool) -> bytes:
        nonlocal pop_raw
        pop.sendall(line.encode() + b"\r\n")
        out = b""
        while True:
            out += pop.recv(65536)
            if (not multi and out.endswith(b"\r\n")) or out.endswith(b"\r\n.\r\n") or \
                    out.startswith(b"-ERR") and out.endswith(b"\r\n"):
                break
        pop_raw += out
        return out

    pop_raw += pop.recv(1024)
    pop_cmd("USER alice", False)
    assert pop_cmd(f"PASS {dc.password('alice')}", False).startswith(b"+OK")
    answers = [pop_cmd("RETR 4", True), pop_cmd("RETR 1", True), pop_cmd("TOP 2 5", True),
               pop_cmd("TOP 3 100", True), pop_cmd("TOP 4 0", True)]
    for answer in answers:
        assert_clean(answer, "pop3")
        # Still there, refused for now with the signature: never "expunged".
        assert answer.startswith(b"-ERR [SYS/TEMP] Virus Dovekie.Test."), answer
    pop_cmd("QUIT", False)
    pop.close()
    assert_clean(pop_raw, "pop3 session")

    # SEARCH over two more: a server-side read of refused messages.
    plant(dc, eicar_7bit("search-eicar"))
    plant(dc, zip_base64("search-zip"))
    offset = dc.log_offset()
    imap = RawImap(dc)
    status, raw = imap.cmd("SELECT INBOX")
    assert status == "OK"
    status, raw = imap.cmd("UID SEARCH BODY \"EICAR-STANDARD\"")
    assert_clean(raw, "SEARCH BODY")
    assert status in ("OK", "NO") and 5 not in uids_in(raw), raw
    status, raw = imap.cmd("UID SEARCH TEXT \"clam.zip\"")
    assert_clean(raw, "SEARCH TEXT")
    assert status in ("OK", "NO"), raw
    status, raw = imap.cmd("UID FETCH 1:* (BODY.PEEK[])")
    assert_clean(raw, "FETCH 1:* after SEARCH")
    imap.close()
    # The search did read them, and judged them first.
    found = dc.find_log_at_least(av_line("imap", "scan origin=fetch [^\n]*result=infected"), 2,
                                 since=offset)
    assert len(found) >= 2, dc.log_tail()
    assert dc.message_count("INBOX") == 6
    assert not dc.find_log(r"Broken MIME parts|Cached header size mismatch", since=offset)
    assert_no_crash(dc)


# --- invariant 4, first bullet: the quarantine mailbox -----------------------

def test_quarantine_mailbox_reads_never_bye(av, clamd):
    dc = av(clamd.unix_address)
    plant(dc, eicar_7bit("q-eicar"))
    plant(dc, zip_base64("q-zip"))
    imap = RawImap(dc)
    imap.cmd("SELECT INBOX")  # the sync moves both
    assert dc.message_count("Quarantine") == 2
    # A client that syncs every folder: LIST, SELECT, then every item.
    status, raw = imap.cmd("LIST \"\" \"*\"")
    assert b"Quarantine" in raw, raw
    status, raw = imap.cmd("SELECT Quarantine")
    assert status == "OK" and b"* 2 EXISTS" in raw, raw
    # What was held back is visible: sender, subject, date.
    status, raw = imap.cmd("FETCH 1:* (FLAGS ENVELOPE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])")
    assert status == "OK" and b"read paths q-eicar" in raw and b"read paths q-zip" in raw, raw
    for seq in (1, 2):
        for item in FETCH_ITEMS:
            status, raw = imap.cmd(f"FETCH {seq} ({item})")
            assert_clean(raw, f"Quarantine {item}")
            assert status == "NO" and b"quarantine" in raw.lower(), (item, raw)
    status, raw = imap.cmd("FETCH 1:* (BODY.PEEK[])")
    assert status == "NO" and b"* BYE" not in raw, raw
    # The session is still usable, and nothing moved.
    status, raw = imap.cmd("NOOP")
    assert status == "OK", raw
    imap.close()
    assert dc.message_count("Quarantine") == 2
    # POP3 is INBOX only; doveadm (the admin) still reads the original.
    res = dc.doveadm("fetch", "-u", "alice", "text", "mailbox", "Quarantine")
    assert res.returncode == 0 and EICAR.decode() in res.stdout, res.stderr
    assert_no_crash(dc)


# --- invariant 5: tag ---------------------------------------------------------

def test_tagged_message_is_delivered_and_never_moved_by_a_read(av, clamd):
    dc = av(clamd.unix_address, dovekie_av_action="tag")
    code, text = dc.deliver("alice@example.test", eicar_7bit("tagged"))
    assert code == 250, text
    assert dc.message_count("INBOX") == 1
    imap = RawImap(dc)
    status, raw = imap.cmd("SELECT INBOX")
    status, raw = imap.cmd("FETCH 1 (FLAGS)")
    assert b"$Infected" in raw, raw
    for item in ("BODY.PEEK[]", "BINARY.PEEK[2]", "BODY.PEEK[2]", "RFC822"):
        status, raw = imap.cmd(f"FETCH 1 ({item})")
        assert_clean(raw, f"tagged {item}")
        assert status == "NO" and EICAR_SIGNATURE.encode() in raw, (item, raw)
    imap.close()
    pop = dc.pop3()
    with pytest.raises(Exception):
        pop.retr(1)
    pop.quit()
    # Read three times, still in INBOX, tagged; nothing in quarantine.
    assert dc.message_count("INBOX") == 1
    assert not (dc.home("alice") / "Maildir" / ".Quarantine").exists()
    assert not dc.find_log(r"dovekie: moved uid="), dc.log_tail()
    assert_no_crash(dc)


# --- invariant 6: POP3 --------------------------------------------------------

def test_pop3_clean_uidls_stay_and_retr_of_clean_mail_works(av, clamd):
    dc = av(clamd.unix_address)
    plant(dc, make_message("clean one", "first clean message\n"))
    plant(dc, make_message("clean two", "second clean message\n"))
    pop = dc.pop3()
    before = dict(line.split() for line in pop.uidl()[1])
    pop.quit()
    clean_uidls = set(before.values())
    plant(dc, make_message("infected", "The test string follows.\n" + EICAR.decode()
                           + "\n" + "More text.\n" * 60))
    pop = dc.pop3()
    # The infected one left at the session's first sync; its notice is new.
    during = dict(line.split() for line in pop.uidl()[1])
    assert len(during) == 3 and clean_uidls <= set(during.values()), (before, during)
    _, lines, _ = pop.retr(3)
    assert EICAR not in b"\r\n".join(lines) and any(EICAR_SIGNATURE.encode() in l for l in lines)
    _, lines, _ = pop.retr(2)
    assert b"second clean message" in b"\r\n".join(lines)
    _, lines, _ = pop.retr(1)
    assert b"first clean message" in b"\r\n".join(lines)
    assert dict(line.split() for line in pop.uidl()[1]) == during
    pop.quit()
    pop = dc.pop3()
    after = dict(line.split() for line in pop.uidl()[1])
    pop.quit()
    assert after == during, (during, after)
    assert_no_crash(dc)


def pop3_raw(dc) -> tuple[socket.socket, "callable"]:
    """A logged-in POP3 socket and a function that sends one command and
    returns its first reply line (and, for +OK to RETR/TOP, the rest)."""
    sock = socket.create_connection(("127.0.0.1", dc.ports["pop3"]), timeout=20)
    reader = sock.makefile("rb")

    def cmd(line: str, multi: bool = False) -> bytes:
        sock.sendall(line.encode() + b"\r\n")
        out = reader.readline()
        if multi and out.startswith(b"+OK"):
            while not out.endswith(b"\r\n.\r\n"):
                out += reader.readline()
        return out

    assert reader.readline().startswith(b"+OK")
    assert cmd("USER alice").startswith(b"+OK")
    reply = cmd(f"PASS {dc.password('alice')}")
    assert reply.startswith(b"+OK"), reply
    return sock, cmd


@pytest.mark.parametrize("scanner", ["stopped", "garbage"])
def test_pop3_retr_with_the_scanner_down_is_a_temporary_failure(av, public_tmp, scanner):
    # Issue 16, invariant 6: Dovecot 2.3's pop3 answered "-ERR Message N
    # expunged." to a read dovekie could not judge, and leave-on-server
    # clients forget a message they are told is gone.
    own = PrivateClamd()
    fake = None
    try:
        own.start()
        if scanner == "garbage":
            fake = FakeClamd(public_tmp, "garbage")
            # The clean message is judged by the real clamd first (its
            # verdict is cached); then the address leads to the garbage one.
            link = public_tmp / "clamd-link.sock"
            link.symlink_to(own.socket_path)
            dc = av(f"unix:{link}", dovekie_av_scan_timeout_msecs="1000",
                    dovekie_av_clamd_database=own.db_dir)
        else:
            dc = av(own.unix_address, dovekie_av_clamd_conf=own.config_path)
        imap = dc.imap()
        typ, text = append(imap, make_message("scanned", "scanned and clean\n"))
        assert typ == "OK", text
        imap.logout()
        if scanner == "garbage":
            link.unlink()
            link.symlink_to(fake.path)
        else:
            own.stop_process()
        plant(dc, make_message("unscanned", "never scanned\n" + "More text.\n" * 30))
        offset = dc.log_offset()
        sock, cmd = pop3_raw(dc)
        uidls = cmd("UIDL", multi=True)
        for command in ("RETR 2", "TOP 2 0", "RETR 2"):
            reply = cmd(command, multi=True)
            assert reply.startswith(b"-ERR [SYS/TEMP] "), (command, reply)
            assert reply.endswith(b"\r\n") and reply.count(b"\r\n") == 1, reply
            assert b"expunged" not in reply and b"never scanned" not in reply, reply
            assert len(reply) > len("-ERR [SYS/TEMP] ") + 10, reply  # a reason, not empty
        # The scanned clean message is served whatever happens to the other:
        # its verdict is cached for the signature files clamd loads, which
        # the module reads from clamd's directory, not from clamd.
        reply = cmd("RETR 1", multi=True)
        assert reply.startswith(b"+OK") and b"scanned and clean" in reply, reply
        reply = cmd("TOP 1 0", multi=True)
        assert reply.startswith(b"+OK") and b"Subject: scanned" in reply, reply
        assert cmd("QUIT").startswith(b"+OK")
        sock.close()
        dc.wait_for_log(av_line("pop3", "result=error action=tempfail"), since=offset)
        # Nothing moved or lost, and the next session lists both, same UIDLs.
        assert dc.message_count("INBOX") == 2
        pop = dc.pop3()
        assert b"\r\n".join(pop.uidl()[1]) + b"\r\n" in uidls, uidls
        pop.quit()
        assert not dc.find_log(r"dovekie: moved uid=", since=offset)
        assert_no_crash(dc)
    finally:
        if fake is not None:
            fake.stop()
        own.stop()
