#!/usr/bin/python3
"""Retention benchmark: POP3 on large INBOXes with records, module on vs off.

    bench/retention/bench.py --build-dir _build/plain [--messages 60000]
        [--quit-messages 100000] [--reps 7]

One private Dovecot (tests/integration harness, default vsz_limit 256M)
with the dovekie plugin. Users' INBOXes hold N small messages (Maildir
files written straight into Maildir/cur, named with S= and W= sizes as
Dovecot names them, then indexed once by `doveadm mailbox status`):

- `on`:  dovekie_modules = retention (7 days, DELE = hide, expiry at QUIT);
- `off`: dovekie_modules = none (the plugin is loaded, no module);
- `flag`: like off, with pop3_deleted_flag = $PopHidden, which the module
  sets for its sessions.

Rows, each module on vs off in the same run:

1. records: one session per user RETRs every message (pipelined) and QUITs,
   so that `on` has a download record on every message (checked with
   `doveadm dovekie status`);
2. listing: login + STAT + UIDL + LIST + QUIT, `--reps` times per user,
   interleaved, over a raw socket; medians and ratios (goal <= 1.05x);
3. expiry run: `doveadm dovekie retention run -u on` over the N records
   (nothing is due, so it evaluates every message and expunges none);
   messages evaluated per second (goal >= 20,000/s);
4. big QUIT (users `big_on`, `big_off` with `--quit-messages` messages):
   one session RETRs and DELEs every message, then QUIT; QUIT time, its
   reply, the pop3 process's peak RSS (VmHWM, polled), and that every
   record was saved (status counts, and the next session lists nothing).

Run as root, like the tests. The machine may be shared: figures are
noisy, compare medians.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
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
    "big_on": {"password": "secret", "userdb": {"dovekie_modules": "retention",
                                                    "dovekie_retention_days": "7"}},
    "big_off": {"password": "secret", "userdb": {"dovekie_modules": "none"}},
}
LISTING_USERS = ("on", "off", "flag")
EXTRA_CONF = "mail_attribute_dict = file:%h/dovecot-attributes\n"
BATCH = 500


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


def login(port: int, user: str) -> Pop3:
    pop = Pop3(port)
    pop.cmd(f"USER {user}")
    pop.cmd("PASS secret")
    return pop


def fetch_all(pop: Pop3, count: int, dele: bool) -> None:
    """RETR (and DELE) messages 1..count, pipelined in batches."""
    for start in range(1, count + 1, BATCH):
        nums = range(start, min(start + BATCH, count + 1))
        cmds = "".join(f"RETR {n}\r\n" + (f"DELE {n}\r\n" if dele else "") for n in nums)
        pop.sock.sendall(cmds.encode())
        for n in nums:
            reply = pop.line()
            if not reply.startswith(b"+OK"):
                raise RuntimeError(f"RETR {n}: {reply!r}")
            end = pop.buf.find(b"\r\n.\r\n")
            while end < 0 and not pop.buf.startswith(b".\r\n"):
                pop._fill()
                end = pop.buf.find(b"\r\n.\r\n")
            pop.buf = pop.buf[3:] if pop.buf.startswith(b".\r\n") else pop.buf[end + 5:]
            if dele:
                reply = pop.line()
                if not reply.startswith(b"+OK"):
                    raise RuntimeError(f"DELE {n}: {reply!r}")


def pop3_pid(dc: PrivateDovecot, user: str, since: int) -> int:
    m = dc.wait_for_log(rf"pop3-login: Info: Login: user=<{user}>[^\n]*mpid=(\d+)",
                        since=since)
    return int(m.group(1))


def vm_hwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def big_quit(dc: PrivateDovecot, port: int, user: str, count: int) -> dict:
    """RETR + DELE every message in one session, then QUIT: the QUIT
    time, its reply and the process's peak RSS, polled until it exits."""
    since = dc.log_offset()
    pop = login(port, user)
    pid = pop3_pid(dc, user, since)
    t0 = time.perf_counter()
    fetch_all(pop, count, dele=True)
    fetch_ms = ms(t0)
    peak = vm_hwm_kib(pid) or 0
    stop = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not stop.is_set():
            v = vm_hwm_kib(pid)
            if v is None:
                return
            peak = max(peak, v)
            time.sleep(0.002)

    poller = threading.Thread(target=poll)
    poller.start()
    t0 = time.perf_counter()
    pop.sock.sendall(b"QUIT\r\n")
    reply = pop.line()
    quit_ms = ms(t0)
    while pop.sock.recv(1 << 16):
        pass
    pop.sock.close()
    closed_ms = ms(t0)
    stop.set()
    poller.join()
    return {"fetch_ms": fetch_ms, "quit_ms": quit_ms, "closed_ms": closed_ms,
            "reply": reply.decode(errors="replace"), "peak_kib": peak}


def status_counts(dc: PrivateDovecot, user: str) -> str:
    res = dc.doveadm("dovekie", "status", "-u", user)
    m = re.search(r"downloaded \d+; DELEd \(hidden or kept\) \d+; due to expire \d+",
                  res.stdout)
    return m.group(0) if m else f"status failed: {res.stdout} {res.stderr}"


def listed(port: int, user: str) -> int:
    pop = login(port, user)
    n = int(pop.cmd("STAT").split()[1])
    pop.quit()
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=str(HERE.parent.parent / "_build" / "plain"))
    ap.add_argument("--messages", type=int, default=60000)
    ap.add_argument("--quit-messages", type=int, default=100000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--run-reps", type=int, default=3)
    ap.add_argument("--on-setting", action="append", default=[], metavar="KEY=VALUE",
                    help="extra setting for the `on` users (userdb field), e.g. "
                         "dovekie_retention_expire_at_quit=no")
    args = ap.parse_args()
    for kv in args.on_setting:
        key, _, value = kv.partition("=")
        USERS["on"]["userdb"][key] = value
        USERS["big_on"]["userdb"][key] = value
    build = Path(args.build_dir).resolve()
    n = args.messages

    dc = PrivateDovecot(
        users=USERS,
        plugin_path=build / "hosts/dovecot/.libs/lib90_dovekie_plugin.so",
        module_files=[build / "modules/retention/.libs/retention.so"],
        plugin_settings={"dovekie_modules": "none"},
        extra_conf=EXTRA_CONF)
    dc.start()
    try:
        # service pop3 sets no vsz_limit of its own: default_vsz_limit holds.
        vsz = subprocess.run(["doveconf", "-c", str(dc.config_path), "-h",
                              "default_vsz_limit"], capture_output=True,
                             text=True).stdout.strip()
        t0 = time.perf_counter()
        for user in LISTING_USERS:
            fill(dc, user, n)
        print(f"filled and indexed {len(LISTING_USERS)} x {n} messages in "
              f"{time.perf_counter() - t0:.1f}s", file=sys.stderr)
        port = dc.ports["pop3"]

        # 1. a download record on every message of `on`
        record_ms = {}
        for user in LISTING_USERS:
            t0 = time.perf_counter()
            pop = login(port, user)
            fetch_all(pop, n, dele=False)
            pop.quit()
            record_ms[user] = ms(t0)
        on_status = status_counts(dc, "on")

        # 2. listing sessions
        for user in LISTING_USERS:  # warm-up: page cache, index cache, processes
            listing_session(port, user, n)
        listing = {u: [] for u in LISTING_USERS}
        for rep in range(args.reps):
            order = list(LISTING_USERS) if rep % 2 == 0 else list(reversed(LISTING_USERS))
            for user in order:
                listing[user].append(listing_session(port, user, n))

        # 3. the expiry run over every record
        run_s = []
        for _ in range(args.run_reps):
            t0 = time.perf_counter()
            res = dc.doveadm("dovekie", "retention", "run", "-u", "on")
            run_s.append(time.perf_counter() - t0)
            if res.returncode != 0:
                raise RuntimeError(f"retention run: {res.stderr}")

        # 4. QUIT after RETR + DELE of every message in one session
        q = args.quit_messages
        big = {}
        if q > 0:
            t0 = time.perf_counter()
            for user in ("big_on", "big_off"):
                fill(dc, user, q)
            print(f"filled and indexed 2 x {q} messages in "
                  f"{time.perf_counter() - t0:.1f}s", file=sys.stderr)
            for user in ("big_on", "big_off"):
                big[user] = big_quit(dc, port, user, q)
                big[user]["listed_after"] = listed(port, user)
            big_status = status_counts(dc, "big_on")
        errors = [m.group(0) for m in
                  dc.find_log(r"^[^\n]*(?:Error|Panic|Fatal|Warning|killed)[: ][^\n]*$")]
    finally:
        dc.stop()

    def report(title: str, runs: dict[str, list[dict[str, float]]], keys: list[str]) -> None:
        # The median, and the least: the machine's other load only adds
        # time, so the least of several runs is the closest to the cost.
        flag = "flag" in runs
        print(f"\n{title} (ms over {len(runs['on'])} runs: median | least)")
        print(f"{'step':10} {'off':>9} {'on':>9} {'on/off':>7}"
              + (f" {'flag':>9} {'on/flag':>7}" if flag else "")
              + f" | {'off':>7} {'on':>7} {'on/off':>7}"
              + (f" {'flag':>7} {'on/flag':>7}" if flag else ""))
        for key in keys:
            med = {u: statistics.median(r[key] for r in runs[u]) for u in runs}
            low = {u: min(r[key] for r in runs[u]) for u in runs}
            line = f"{key:10} {med['off']:9.1f} {med['on']:9.1f} {med['on'] / med['off']:7.3f}"
            if flag:
                line += f" {med['flag']:9.1f} {med['on'] / med['flag']:7.3f}"
            line += f" | {low['off']:7.1f} {low['on']:7.1f} {low['on'] / low['off']:7.3f}"
            if flag:
                line += f" {low['flag']:7.1f} {low['on'] / low['flag']:7.3f}"
            print(line)

    print(f"INBOX: {n} messages of ~170 bytes (Maildir); default_vsz_limit = {vsz}")
    print(f"\nrecords: RETR of every message, one session: off {record_ms['off']:.0f} ms, "
          f"on {record_ms['on']:.0f} ms ({record_ms['on'] / record_ms['off']:.3f}x); "
          f"on: {on_status}")
    report(f"listing session with a download record on every message: "
           f"login, STAT, UIDL, LIST, QUIT", listing,
           ["login", "stat", "uidl", "list", "quit", "session"])
    med, low = statistics.median(run_s), min(run_s)
    print(f"\nexpiry run over {n} records (doveadm process included): median "
          f"{med * 1000:.0f} ms of {len(run_s)}, {n / med:,.0f} messages/s evaluated "
          f"(least {low * 1000:.0f} ms, {n / low:,.0f}/s)")
    if big:
        print(f"\nQUIT after RETR + DELE of {q} messages in one session")
        print(f"{'user':8} {'RETR+DELE s':>11} {'QUIT ms':>8} {'closed ms':>9} "
              f"{'peak RSS MiB':>12} {'listed after':>12}  reply")
        for user, r in big.items():
            print(f"{user:8} {r['fetch_ms'] / 1000:11.1f} {r['quit_ms']:8.0f} "
                  f"{r['closed_ms']:9.0f} {r['peak_kib'] / 1024:12.1f} "
                  f"{r['listed_after']:12}  {r['reply']}")
        print(f"big_on: {big_status}")
    for line in errors[:5]:
        print(f"log: {line}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
