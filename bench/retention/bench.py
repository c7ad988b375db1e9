#!/usr/bin/python3
"""Retention overhead benchmark: POP3 on a large INBOX, module on vs off.

    bench/retention/bench.py --build-dir _build/plain [--messages 60000] [--reps 7]

One private Dovecot (tests/integration harness) with the dovekie plugin and
two users whose INBOXes hold the same N small messages (Maildir files
written straight into Maildir/cur, named with S= and W= sizes as Dovecot
names them, then indexed once by `doveadm mailbox status`):

- `on`:  dovekie_modules = retention (7 days, DELE = hide, expiry at QUIT);
- `off`: dovekie_modules = none (the plugin is loaded, no module);
- `flag`: like off, with pop3_deleted_flag = $PopHidden, which the module
  sets for its sessions (listing session only).

Per repetition (on and off interleaved, order alternating) it times, over a
raw socket so that client-side parsing stays out of the figures:

- a listing session: connect + USER/PASS (login), STAT, UIDL, LIST, QUIT
  (until the server closes the connection);
- a download session: login, RETR + DELE of the first 100 listed messages,
  QUIT (until close). Retention writes its state at QUIT, so this is where
  its cost shows. With DELE = hide the `on` mailbox keeps its messages
  (hidden from POP3); the `off` one loses 100 per repetition.

It prints medians (ms) and the on/off ratio of each. Run as root, like the
tests. The machine may be shared: figures are noisy, compare medians.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests" / "integration"))
from dovekie_harness import PrivateDovecot  # noqa: E402

USERS = {
    "on": {"password": "secret", "userdb": {"dovekie_modules": "retention",
                                                "dovekie_retention_days": "7"}},
    "off": {"password": "secret", "userdb": {"dovekie_modules": "none"}},
    # No module, but POP3 hides $PopHidden like the module's sessions do:
    # the share of the overhead that is Dovecot's own keyword filter.
    "flag": {"password": "secret", "userdb": {"dovekie_modules": "none",
                                              "pop3_deleted_flag": "$PopHidden"}},
}
EXTRA_CONF = "mail_attribute_dict = file:%h/dovecot-attributes\n"
DOWNLOADS = 100


def fill(dc: PrivateDovecot, user: str, count: int) -> None:
    """Writes `count` small messages into the user's Maildir/cur."""
    maildir = dc.home(user) / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    base = int(time.time()) - count
    for i in range(count):
        body = (f"From: sender{i % 97}@example.test\n"
                f"To: {user}@example.test\n"
                f"Subject: bench message {i}\n"
                f"Message-ID: <bench-{i}@example.test>\n"
                f"Date: Wed, 25 Nov 2026 10:00:00 +0000\n"
                f"\n"
                f"Body of message {i}.\n").encode()
        lines = body.count(b"\n")
        name = f"{base + i}.M{i}P1.bench,S={len(body)},W={len(body) + lines}:2,S"
        path = maildir / "cur" / name
        path.write_bytes(body)
        os.utime(path, (base + i, base + i))
    for root, dirs, files in os.walk(maildir):
        os.chown(root, dc.mail_uid, dc.mail_gid)
        for f in files:
            os.chown(os.path.join(root, f), dc.mail_uid, dc.mail_gid)
    res = dc.doveadm("-f", "flow", "mailbox", "status", "-u", user, "messages", "INBOX")
    if res.returncode != 0 or f"messages={count}" not in res.stdout.split():
        raise RuntimeError(f"indexing {user}: {res.stdout} {res.stderr}")


class Pop3:
    """A minimal POP3 client over a raw socket, with big reads."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.buf = b""
        self.line()

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, text: str) -> bytes:
        self.sock.sendall(text.encode() + b"\r\n")
        reply = self.line()
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"{text.split()[0]}: {reply!r}")
        return reply

    def multi(self, text: str) -> bytes:
        self.cmd(text)
        end = self.buf.find(b"\r\n.\r\n")
        while end < 0 and not self.buf.startswith(b".\r\n"):
            self._fill()
            end = self.buf.find(b"\r\n.\r\n")
        if self.buf.startswith(b".\r\n"):
            body, self.buf = b"", self.buf[3:]
        else:
            body, self.buf = self.buf[:end + 2], self.buf[end + 5:]
        return body

    def quit(self) -> None:
        """QUIT, then wait until the server closes (its QUIT work is done)."""
        self.cmd("QUIT")
        while self.sock.recv(1 << 16):
            pass
        self.sock.close()


def ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def listing_session(port: int, user: str, expect: int) -> dict[str, float]:
    out = {}
    t_all = t0 = time.perf_counter()
    pop = Pop3(port)
    pop.cmd(f"USER {user}")
    pop.cmd("PASS secret")
    out["login"] = ms(t0)
    t0 = time.perf_counter()
    stat = pop.cmd("STAT")
    out["stat"] = ms(t0)
    t0 = time.perf_counter()
    uidl = pop.multi("UIDL")
    out["uidl"] = ms(t0)
    t0 = time.perf_counter()
    lst = pop.multi("LIST")
    out["list"] = ms(t0)
    t0 = time.perf_counter()
    pop.quit()
    out["quit"] = ms(t0)
    out["session"] = ms(t_all)
    n = int(stat.split()[1])
    if n != expect or uidl.count(b"\r\n") != n or lst.count(b"\r\n") != n:
        raise RuntimeError(f"{user}: STAT {stat!r}, expected {expect} messages")
    return out


def download_session(port: int, user: str) -> dict[str, float]:
    out = {}
    t_all = time.perf_counter()
    pop = Pop3(port)
    pop.cmd(f"USER {user}")
    pop.cmd("PASS secret")
    t0 = time.perf_counter()
    for n in range(1, DOWNLOADS + 1):
        pop.multi(f"RETR {n}")
        pop.cmd(f"DELE {n}")
    out["retr_dele"] = ms(t0)
    t0 = time.perf_counter()
    pop.quit()
    out["quit"] = ms(t0)
    out["session"] = ms(t_all)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=str(HERE.parent.parent / "_build" / "plain"))
    ap.add_argument("--messages", type=int, default=60000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--download-reps", type=int, default=5)
    ap.add_argument("--on-setting", action="append", default=[], metavar="KEY=VALUE",
                    help="extra setting for the `on` user (userdb field), e.g. "
                         "dovekie_retention_expire_at_quit=no")
    args = ap.parse_args()
    for kv in args.on_setting:
        key, _, value = kv.partition("=")
        USERS["on"]["userdb"][key] = value
    build = Path(args.build_dir).resolve()

    dc = PrivateDovecot(
        users=USERS,
        plugin_path=build / "hosts/dovecot/.libs/lib90_dovekie_plugin.so",
        module_files=[build / "modules/retention/.libs/retention.so"],
        plugin_settings={"dovekie_modules": "none"},
        extra_conf=EXTRA_CONF)
    dc.start()
    try:
        t0 = time.perf_counter()
        for user in USERS:
            fill(dc, user, args.messages)
        print(f"filled and indexed {len(USERS)} x {args.messages} messages in "
              f"{time.perf_counter() - t0:.1f}s", file=sys.stderr)
        port = dc.ports["pop3"]
        for user in USERS:  # warm-up: page cache, index cache, processes
            listing_session(port, user, args.messages)

        listing = {u: [] for u in USERS}
        pair = ["on", "off"]
        for rep in range(args.reps):
            order = list(USERS) if rep % 2 == 0 else list(reversed(USERS))
            for user in order:
                listing[user].append(listing_session(port, user, args.messages))
        downloads = {u: [] for u in pair}
        for rep in range(args.download_reps):
            order = pair if rep % 2 == 0 else list(reversed(pair))
            for user in order:
                downloads[user].append(download_session(port, user))

        on_count = dc.message_count(user="on")
        off_count = dc.message_count(user="off")
        left = args.messages - DOWNLOADS * args.download_reps
        after = {u: [] for u in pair}
        for rep in range(3):
            for user in pair:
                after[user].append(listing_session(port, user, left))
        errors = [m.group(0) for m in
                  dc.find_log(r"^[^\n]*(?:Error|Panic|Fatal|Warning): [^\n]*$")]
    finally:
        dc.stop()

    def report(title: str, runs: dict[str, list[dict[str, float]]], keys: list[str]) -> None:
        flag = "flag" in runs
        print(f"\n{title} (median ms over {len(runs['on'])} runs)")
        print(f"{'step':10} {'off':>9} {'on':>9} {'on/off':>7}"
              + (f" {'flag':>9} {'on/flag':>7}" if flag else ""))
        for key in keys:
            off = statistics.median(r[key] for r in runs["off"])
            on = statistics.median(r[key] for r in runs["on"])
            line = f"{key:10} {off:9.1f} {on:9.1f} {on / off:7.3f}"
            if flag:
                fl = statistics.median(r[key] for r in runs["flag"])
                line += f" {fl:9.1f} {on / fl:7.3f}"
            print(line)

    print(f"INBOX: {args.messages} messages of ~170 bytes (Maildir)")
    report("listing session: login, STAT, UIDL, LIST, QUIT", listing,
           ["login", "stat", "uidl", "list", "quit", "session"])
    report(f"download session: RETR+DELE {DOWNLOADS}, QUIT", downloads,
           ["retr_dele", "quit", "session"])
    report(f"listing session after the downloads ({DOWNLOADS * args.download_reps} "
           f"retention records for on)", after, ["stat", "session"])
    print(f"\nafter: IMAP sees on={on_count} off={off_count} messages; "
          f"POP3 lists {left} for both")
    for line in errors[:5]:
        print(f"log: {line}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
