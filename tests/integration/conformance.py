"""Differential IMAP conformance: a stock Dovecot and a dovekie Dovecot side by side.

The stock Dovecot loads no plugin at all; the dovekie one loads every module
(antivirus on libclamav with the tiny test signatures, search as the fts
backend, retention, example). Both get the same mail, and a test runs the
same scripted sessions on each, comparing every response line with the tag
and timing text ("(0.001 + 0.000 secs)") normalized away. Stock Dovecot is
the oracle (DESIGN.md, principle 9).

`RawImap` speaks IMAP on a socket and returns response lines as sent, a
literal's bytes inline, so nothing an IMAP library parses away is lost.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from clamd_harness import write_signatures
from dovekie_harness import PrivateDovecot

ERROR_LOG_RE = r"^[^\n]*(?:Panic: |Fatal: |killed with signal|Error: )[^\n]*$"
# A fixed INTERNALDATE for every APPEND: both servers store the same mail.
APPEND_DATE = "01-Jan-2024 10:00:00 +0000"
ATTRIBUTE_DICT = "mail_attribute_dict = file:%h/dovecot-attributes\n"

_TIMING_RE = re.compile(rb" \(\d+\.\d+ \+ \d+\.\d+(?: \+ \d+\.\d+)? secs\)")
# Each server makes its own UIDVALIDITY.
_UIDVALIDITY_RE = re.compile(rb"((?:UIDVALIDITY|APPENDUID|COPYUID) )\d+")
_LITERAL_RE = re.compile(rb"\{(\d+)\}\r\n$")


class RawImap:
    """One IMAP session, logged in; `run` sends a command and returns its
    normalized response lines, untagged ones first, the tagged one last."""

    def __init__(self, dc: PrivateDovecot, user: str = "alice", timeout: float = 30.0):
        self.sock = socket.create_connection(("127.0.0.1", dc.ports["imap"]), timeout=timeout)
        self.rfile = self.sock.makefile("rb")
        self.count = 0
        greeting = self.rfile.readline()
        assert greeting.startswith(b"* OK"), greeting
        lines = self.run(f'LOGIN {user} "{dc.password(user)}"')
        assert lines[-1].startswith(b"TAG OK"), lines

    def _line(self) -> bytes:
        line = self.rfile.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        while (m := _LITERAL_RE.search(line)) is not None:
            line += self.rfile.read(int(m.group(1)))
            more = self.rfile.readline()
            if not more:
                raise ConnectionError("server closed the connection inside a literal")
            line += more
        return line

    def run(self, command: str, literal: bytes | None = None) -> list[bytes]:
        """Sends `command` (with `literal` after it as a LITERAL+ literal)."""
        self.count += 1
        tag = f"c{self.count}".encode()
        data = tag + b" " + command.encode()
        if literal is not None:
            data += b" {%d+}\r\n" % len(literal) + literal
        self.sock.sendall(data + b"\r\n")
        lines = []
        while True:
            line = self._line()
            if line.startswith(tag + b" "):
                lines.append(normalize(b"TAG" + line[len(tag):]))
                return lines
            lines.append(normalize(line))

    def append(self, mailbox: str, message: bytes) -> list[bytes]:
        lines = self.run(f'APPEND {mailbox} () "{APPEND_DATE}"', message)
        assert lines[-1].startswith(b"TAG OK"), lines
        return lines

    def close(self) -> None:
        try:
            self.sock.sendall(b"z LOGOUT\r\n")
            while self.rfile.readline().split(b" ", 1)[0] not in (b"z", b""):
                pass
        except OSError:
            pass
        self.rfile.close()
        self.sock.close()


def run_threads(threads: list[threading.Thread], errors: list[BaseException],
                timeout: float = 120) -> None:
    """Starts the client threads, waits for them, and asserts that none
    failed (their exceptions in `errors`) and none hangs."""
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)


def normalize(line: bytes) -> bytes:
    line = _TIMING_RE.sub(b"", line)
    return _UIDVALIDITY_RE.sub(rb"\1N", line)


def assert_same_lines(label: str, stock: list[bytes], dovekie: list[bytes]) -> None:
    assert dovekie == stock, (f"{label}: dovekie differs from stock Dovecot\n"
                              f"  stock:   {stock!r}\n  dovekie: {dovekie!r}")


def tagged(lines: list[bytes]) -> bytes:
    return lines[-1]


class Pair:
    """The same scripted sessions on both servers: `open` returns a session
    on each, `run` runs one command on both and asserts equal lines."""

    def __init__(self, stock: PrivateDovecot, dovekie: PrivateDovecot):
        self.stock, self.dovekie = stock, dovekie
        self.sessions: list[RawImap] = []
        self.transcript: list[tuple[str, list[bytes]]] = []

    def open(self, user: str = "alice") -> tuple[RawImap, RawImap]:
        pair = (RawImap(self.stock, user), RawImap(self.dovekie, user))
        self.sessions += pair
        return pair

    def run(self, sessions: tuple[RawImap, RawImap], command: str,
            literal: bytes | None = None) -> list[bytes]:
        want = sessions[0].run(command, literal)
        got = sessions[1].run(command, literal)
        assert_same_lines(command, want, got)
        self.transcript.append((command, want))
        return want

    def close(self) -> None:
        for s in self.sessions:
            s.close()
        self.sessions.clear()


def every_module_settings(modules: dict[str, Path], db_dir: Path) -> dict[str, str]:
    return {"dovekie_modules": "antivirus search retention example",
            "fts": "dovekie",
            "dovekie_av_engine": "libclamav",
            "dovekie_av_libclamav_db": str(db_dir),
            "dovekie_retention_days": "7",
            # Saves queue indexing in the indexer-worker, which then races
            # with the session (DELETE under it, expunges).
            "fts_autoindex": "yes"}


@contextlib.contextmanager
def _pairs(dovecot, plugin_path, module_paths):
    """Yields make(boot_stock=True, **settings) -> (stock, dovekie): two
    fresh Dovecots (stock None without boot_stock), the second with every
    module and `settings` over every_module_settings()."""
    files = {p.stem: p for p in module_paths}
    for name in ("antivirus", "search", "retention", "example"):
        if name not in files:
            pytest.fail(f"module {name} not built", pytrace=False)
    dbs: list[Path] = []

    def make(boot_stock: bool = True,
             **settings: str) -> tuple[PrivateDovecot | None, PrivateDovecot]:
        db = Path(tempfile.mkdtemp(prefix="dovekie-conf-db-"))
        dbs.append(db)
        db.chmod(0o755)
        write_signatures(db)
        for f in db.iterdir():
            f.chmod(0o644)
        stock = (dovecot(plugin_path=None, mail_plugins="", extra_conf=ATTRIBUTE_DICT)
                 if boot_stock else None)
        dk = dovecot(plugin_path=plugin_path,
                     module_files=[files[n] for n in ("antivirus", "search", "retention",
                                                      "example")],
                     mail_plugins="$mail_plugins fts dovekie",
                     plugin_settings={**every_module_settings(files, db), **settings},
                     extra_conf=ATTRIBUTE_DICT)
        return stock, dk

    try:
        yield make
    finally:
        for db in dbs:
            shutil.rmtree(db, ignore_errors=True)


@pytest.fixture
def stock_and_dovekie(dovecot, plugin_path, module_paths):
    """(stock, dovekie): two fresh Dovecots, the second with every module."""
    with _pairs(dovecot, plugin_path, module_paths) as make:
        yield make()


@pytest.fixture
def stock_and_dovekie_with(dovecot, plugin_path, module_paths):
    """Factory: stock_and_dovekie_with(**settings) -> (stock, dovekie), the
    dovekie one with `settings` added to every module's; with
    boot_stock=False, stock is None."""
    with _pairs(dovecot, plugin_path, module_paths) as make:
        yield make


def assert_clean_log(dc: PrivateDovecot, since: int = 0) -> None:
    bad = dc.find_log(ERROR_LOG_RE, since=since)
    assert not bad, "errors in the Dovecot log:\n" + "\n".join(m.group(0) for m in bad)
