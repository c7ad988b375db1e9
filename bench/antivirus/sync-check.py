#!/usr/bin/python3
"""What the antivirus sync check costs, and the imap process's memory for a
large infected message (opt-in).

    python3 bench/antivirus/sync-check.py [--build-dir DIR] [--messages N] [--noops N]
                                          [--blocks N] [--big-mb MB]

Boots a private Dovecot with the antivirus module and a private clamd (the
integration-test harness; run as root). Prints:

  - sync cost: N clean messages are written straight into the Maildir; the
    time of the first SELECT (it judges them) and of a NOOP afterwards (each
    NOOP syncs: with the check, a sync of and a header lookup in a mailbox
    instance of our own; the least of --blocks blocks of --noops NOOPs),
    with dovekie_av_scan_on_read = unscanned and off (the module is asked
    but reads nothing; the check still runs); and of a STATUS of INBOX
    from a session that has not selected it (Dovecot opens and syncs the
    mailbox for it, and the check opens its own instance each time);
  - memory: one infected message of --big-mb MB (the EICAR string in a
    text part, padded with clean lines) is written into the Maildir; an
    IMAP session SELECTs INBOX and fetches every body, or a POP3 session
    retrieves every message, and the process's peak RSS (VmHWM) is read
    before it logs out; the same with a 1 MB one.
No corpus is needed.
"""
from __future__ import annotations

import argparse
import os
import poplib
import re
import socket
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from clamd_harness import EICAR, PrivateClamd  # noqa: E402
from dovekie_harness import PrivateDovecot, make_message  # noqa: E402


def plant(dc, messages) -> None:
    maildir = dc.home("alice") / "Maildir"
    conn = dc.imap()
    conn.list()
    conn.logout()
    for sub in ("", "new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
        os.chown(maildir / sub, dc.mail_uid, dc.mail_gid)
    for i, message in enumerate(messages):
        path = maildir / "new" / f"{time.time():.6f}.bench_{i}.planted"
        path.write_bytes(message)
        os.chown(path, dc.mail_uid, dc.mail_gid)


class Imap:
    """A bare IMAP client that reads every byte and knows its server pid."""

    def __init__(self, dc):
        offset = dc.log_offset()
        self.sock = socket.create_connection(("127.0.0.1", dc.ports["imap"]), timeout=600)
        self.f = self.sock.makefile("rb")
        self.n = 0
        self.f.readline()
        self.cmd(f"LOGIN alice {dc.password('alice')}")
        match = dc.wait_for_log(r"imap-login: [^\n]*Login: user=<alice>[^\n]*mpid=(\d+)",
                                since=offset)
        self.pid = int(match.group(1))

    def cmd(self, command: str) -> bytes:
        self.n += 1
        tag = f"b{self.n}".encode()
        self.sock.sendall(tag + b" " + command.encode() + b"\r\n")
        while True:
            line = self.f.readline()
            literal = re.search(rb"\{(\d+)\}\r\n$", line)
            if literal:
                self.f.read(int(literal.group(1)))
            elif line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(line)
                return line

    def peak_rss_kb(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))

    def close(self) -> None:
        self.cmd("LOGOUT")
        self.sock.close()


def pop3_peak_rss_kb(dc) -> int:
    """Logs in over POP3, retrieves every message, returns the pop3
    process's peak RSS."""
    offset = dc.log_offset()
    pop = dc.pop3()
    match = dc.wait_for_log(r"pop3-login: [^\n]*Login: user=<alice>[^\n]*mpid=(\d+)",
                            since=offset)
    for i in range(len(pop.list()[1])):
        pop.retr(i + 1)
    status = Path(f"/proc/{match.group(1)}/status").read_text()
    pop.quit()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))


def boot(plugin: Path, module: Path, clamd, **settings):
    plugin_settings = {"dovekie_modules": "antivirus", "dovekie_av_clamd": clamd.unix_address,
                       "dovekie_av_max_size": "200M", "dovekie_av_scan_timeout_msecs": "120000"}
    plugin_settings.update(settings)
    return PrivateDovecot(plugin_path=plugin, module_files=[module],
                          plugin_settings=plugin_settings,
                          extra_conf="mail_attribute_dict = file:%h/dovecot-attributes\n")


def big_infected(megabytes: int) -> bytes:
    filler = "A clean line of text to make the message large enough.\n"
    lines = (megabytes << 20) // len(filler)
    return make_message(f"big {megabytes} MB", "The test string follows.\n" + EICAR.decode()
                        + "\n" + filler * lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", default=os.environ.get("DOVEKIE_BUILD_DIR",
                                                              str(REPO / "_build" / "plain")))
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--noops", type=int, default=1000)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--big-mb", type=int, default=50)
    args = parser.parse_args()
    build = Path(args.build_dir).resolve()
    plugin = build / "hosts/dovecot/.libs/lib90_dovekie_plugin.so"
    module = build / "modules/antivirus/.libs/antivirus.so"
    for path in (plugin, module):
        if not path.is_file():
            sys.exit(f"not built: {path}")

    with PrivateClamd() as clamd:
        print(f"{'scan_on_read':>12} {'messages':>8} {'SELECT s':>8} {'NOOP us':>8} "
              f"{'STATUS us':>9}")
        for mode in ("unscanned", "off"):
            with boot(plugin, module, clamd, dovekie_av_scan_on_read=mode) as dc:
                plant(dc, [make_message(f"m{i}", f"clean message {i}\n" * 20)
                           for i in range(args.messages)])
                imap = Imap(dc)
                start = time.monotonic()
                imap.cmd("SELECT INBOX")
                select = time.monotonic() - start
                # The check judges at most 200 per sync: the rest on the
                # next syncs, before the NOOPs are timed.
                for _ in range(args.messages // 200 + 1):
                    imap.cmd("NOOP")
                # The least of several blocks: the machine's other load
                # only ever adds time.
                noop = float("inf")
                for _ in range(args.blocks):
                    start = time.monotonic()
                    for _ in range(args.noops):
                        imap.cmd("NOOP")
                    noop = min(noop, (time.monotonic() - start) / args.noops)
                imap.close()
                # STATUS of a mailbox the session has not selected opens
                # and syncs it: the check opens its own instance each time.
                imap = Imap(dc)
                status = float("inf")
                for _ in range(args.blocks):
                    start = time.monotonic()
                    for _ in range(args.noops):
                        imap.cmd("STATUS INBOX (MESSAGES UIDNEXT)")
                    status = min(status, (time.monotonic() - start) / args.noops)
                imap.close()
                print(f"{mode:>12} {args.messages:>8} {select:>8.2f} {noop * 1e6:>8.0f} "
                      f"{status * 1e6:>9.0f}")

        print(f"\n{'message MB':>10} {'client':>6} {'peak RSS kB':>11} {'moved':>5}")
        for megabytes in (1, args.big_mb):
            for client in ("imap", "pop3"):
                with boot(plugin, module, clamd) as dc:
                    plant(dc, [big_infected(megabytes)])
                    if client == "imap":
                        imap = Imap(dc)
                        imap.cmd("SELECT INBOX")
                        imap.cmd("FETCH 1:* (BODY.PEEK[])")
                        rss = imap.peak_rss_kb()
                        imap.close()
                    else:
                        rss = pop3_peak_rss_kb(dc)
                    time.sleep(0.5)
                    moved = len(dc.find_log(r"dovekie: moved uid="))
                    print(f"{megabytes:>10} {client:>6} {rss:>11} {moved:>5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
