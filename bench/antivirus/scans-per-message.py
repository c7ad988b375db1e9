#!/usr/bin/python3
"""Scans per delivered message, at 1 and at 20 LMTP recipients (opt-in).

    python3 bench/antivirus/scans-per-message.py [--build-dir DIR] [--messages N]

Boots a private Dovecot with the antivirus module and a private clamd (the
integration-test harness; run as root), delivers N distinct messages (half
of them carrying the EICAR string) once with 1 recipient per LMTP
transaction and once with 20, and prints how many scans the module made
per message (its "scan origin=delivery" log lines; results reused within
a transaction are logged as "scan reused") and the wall time per message.
No corpus is needed.
"""
from __future__ import annotations

import argparse
import os
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

USERS = [f"u{n:02d}" for n in range(1, 21)]


def transaction(port: int, rcpts: list[str], message: bytes) -> list[int]:
    """One LMTP transaction; the reply code of each recipient after DATA."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        f = sock.makefile("rb")

        def reply() -> int:
            while True:
                line = f.readline()
                if not line:
                    raise RuntimeError("LMTP connection closed")
                if line[3:4] != b"-":
                    return int(line[:3])

        def command(text: str) -> int:
            sock.sendall(text.encode() + b"\r\n")
            return reply()

        reply()
        command("LHLO bench.example.test")
        command("MAIL FROM:<sender@example.test>")
        for rcpt in rcpts:
            if command(f"RCPT TO:<{rcpt}@example.test>") != 250:
                raise RuntimeError(f"RCPT {rcpt} refused")
        command("DATA")
        lines = message.replace(b"\r\n", b"\n").split(b"\n")
        body = b"\r\n".join(b"." + l if l.startswith(b".") else l for l in lines)
        sock.sendall(body.rstrip(b"\r\n") + b"\r\n.\r\n")
        codes = [reply() for _ in rcpts]
        command("QUIT")
        return codes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", default=os.environ.get("DOVEKIE_BUILD_DIR",
                                                              str(REPO / "_build" / "plain")))
    parser.add_argument("--messages", type=int, default=10)
    args = parser.parse_args()
    build = Path(args.build_dir).resolve()
    plugin = build / "hosts/dovecot/.libs/lib90_dovekie_plugin.so"
    module = build / "modules/antivirus/.libs/antivirus.so"
    for path in (plugin, module):
        if not path.is_file():
            sys.exit(f"not built: {path}")

    with PrivateClamd() as clamd:
        settings = {"dovekie_modules": "antivirus", "dovekie_av_clamd": clamd.unix_address,
                    "dovekie_av_action": "quarantine", "dovekie_av_scan_on_read": "off"}
        users = {name: {"password": "secret"} for name in USERS}
        with PrivateDovecot(users=users, plugin_path=plugin, module_files=[module],
                            plugin_settings=settings) as dc:
            print(f"{'recipients':>10} {'messages':>8} {'scans':>6} {'reused':>6} "
                  f"{'scans/msg':>9} {'ms/msg':>7}")
            for count in (1, 20):
                offset = dc.log_offset()
                start = time.monotonic()
                for n in range(args.messages):
                    text = f"message {n} for {count} recipients\n"
                    if n % 2:
                        text += EICAR.decode() + "\n"
                    message = make_message(f"bench {count}/{n}", text)
                    rcpts = USERS[:count]
                    if count == 1:
                        rcpts = [USERS[n % len(USERS)]]
                    codes = transaction(dc.ports["lmtp"], rcpts, message)
                    if set(codes) != {250}:
                        raise RuntimeError(f"unexpected replies {codes}")
                elapsed = time.monotonic() - start
                time.sleep(0.5)  # the log process writes asynchronously
                log = dc.log_since(offset)
                scans = len(re.findall(r"dovekie-antivirus: scan origin=delivery ", log))
                reused = len(re.findall(r"dovekie-antivirus: scan reused origin=delivery ", log))
                print(f"{count:>10} {args.messages:>8} {scans:>6} {reused:>6} "
                      f"{scans / args.messages:>9.2f} {1000 * elapsed / args.messages:>7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
