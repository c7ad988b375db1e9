#!/usr/bin/python3
"""Search vocabulary bench: copies of one mail of random words.

    bench/search-vocab.py --build-dir _build/plain [--copies 10] [--mbytes 4.5]

One private Dovecot (tests/integration harness) with the search module as
its fts backend. It APPENDs one mail of random words (--mbytes of them, more
distinct words than the writer's cache holds at the default size), indexes
it with `doveadm index`, then appends and indexes it again, --copies times
in all. After each copy it prints the vocabulary's size (the bytes of
vocab_log in the index file, read with sqlite3), its rows, and the time of
an IMAP SEARCH BODY for a run of letters, which reads the vocabulary. The
goal (issue 17): the vocabulary after 10 copies is the size of one copy.
Run as root, like the tests.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
from dovekie_harness import PrivateDovecot, make_message  # noqa: E402


def vocab(path: Path) -> tuple[int, int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        size, rows = db.execute("SELECT coalesce(sum(length(words)), 0), count(*) "
                                "FROM vocab_log").fetchone()
        return int(size), int(rows)
    finally:
        db.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=str(HERE.parent / "_build" / "plain"))
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--mbytes", type=float, default=4.5)
    args = ap.parse_args()
    build = Path(args.build_dir).resolve()

    rnd = random.Random(17)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words, size = [], 0
    while size < args.mbytes * 1e6:
        w = "".join(rnd.choice(letters) for _ in range(rnd.randrange(5, 11)))
        words.append(w)
        size += len(w) + 1
    body = "\n".join(" ".join(words[i:i + 12]) for i in range(0, len(words), 12)) + "\n"
    message = make_message("random words", body)
    needle = words[len(words) // 2][1:5]

    dc = PrivateDovecot(
        users={"alice": {"password": "secret"}},
        plugin_path=build / "hosts/dovecot/.libs/lib90_dovekie_plugin.so",
        module_files=[build / "modules/search/.libs/search.so"],
        mail_plugins="$mail_plugins fts dovekie",
        plugin_settings={"fts": "dovekie", "dovekie_modules": "search"})
    dc.start()
    rows_out = []
    try:
        index_file = dc.home("alice") / "Maildir" / "dovekie-search.db"
        for copy in range(1, args.copies + 1):
            imap = dc.imap()
            typ, data = imap.append("INBOX", None, None, message)
            assert typ == "OK", data
            imap.logout()
            t0 = time.perf_counter()
            res = dc.doveadm("index", "-u", "alice", "INBOX")
            index_s = time.perf_counter() - t0
            if res.returncode != 0:
                raise RuntimeError(res.stderr)
            size_b, rows = vocab(index_file)
            imap = dc.imap()
            imap.select("INBOX")
            t0 = time.perf_counter()
            typ, data = imap.uid("SEARCH", "BODY", needle)
            search_ms = (time.perf_counter() - t0) * 1000
            imap.logout()
            found = len((data[0] or b"").split())
            if typ != "OK" or found != copy:
                raise RuntimeError(f"SEARCH BODY {needle}: {typ} {data}")
            rows_out.append((copy, size_b, rows, index_s, search_ms))
        errors = [m.group(0) for m in
                  dc.find_log(r"^[^\n]*(?:Error|Panic|Fatal|Warning): [^\n]*$")]
    finally:
        dc.stop()

    print(f"one mail of {len(body) / 1e6:.1f} MB, {len(set(words))} distinct random words; "
          f"SEARCH BODY {needle!r} after each copy")
    print(f"{'copies':>6} {'vocabulary bytes':>16} {'rows':>5} {'index s':>8} {'search ms':>9}")
    for copy, size_b, rows, index_s, search_ms in rows_out:
        print(f"{copy:6} {size_b:16} {rows:5} {index_s:8.2f} {search_ms:9.1f}")
    ratio = rows_out[-1][1] / rows_out[0][1]
    print(f"vocabulary after {args.copies} copies / after one: {ratio:.3f} (goal 1.000)")
    for line in errors[:5]:
        print(f"log: {line}")
    return 0 if ratio == 1.0 and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
