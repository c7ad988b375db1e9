#!/usr/bin/python3
"""Build-cost A/B of two dovekie builds: `doveadm index` only, alternating.

    bench/search-build-ab.py --build-dir NEW --ab-build-dir OLD --scale 1 --runs 6

Each build gets one private Dovecot whose maildir holds the corpus
(`--scale` copies, as search-bench.py writes it), written once. Then, for
each run, each build in turn (the order alternating from run to run):
the index file is removed, `doveadm fts rescan` makes Dovecot forget what
it had indexed, and `doveadm index` builds the index again. Per build it
prints the CPU seconds (user + system of the doveadm process), the wall
time, messages per CPU second and per wall second, the index size, and the
medians. No queries: search-bench.py gives the answers and their times.

CPU time is the figure to decide on: the load of other jobs on a shared
machine moves wall time by 2-3x, CPU time much less. The mailbox is the
same file set for every run of a build, in the page cache after the
first run (the first run of each build reads it from disk: it is left
out of the medians with --warmup, default 1).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
from dovekie_harness import PrivateDovecot, doveadm_peak_rss_kb  # noqa: E402

_spec = importlib.util.spec_from_file_location("search_bench", HERE / "search-bench.py")
search_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(search_bench)


def start(build: Path, settings: dict) -> PrivateDovecot:
    dc = PrivateDovecot(plugin_path=build / "hosts/dovecot/.libs/lib90_dovekie_plugin.so",
                        module_files=[build / "modules/search/.libs/search.so"],
                        mail_plugins="$mail_plugins fts dovekie",
                        plugin_settings=dict({"fts": "dovekie", "dovekie_modules": "search"},
                                             **settings))
    dc.start()
    return dc


def build_once(dc: PrivateDovecot) -> dict:
    maildir = dc.home("alice") / "Maildir"
    for p in maildir.glob("dovekie-search.db*"):
        p.unlink()
    dc.doveadm("fts", "rescan", "-u", "alice", check=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(["doveadm", "-c", str(dc.config_path), "index", "-u", "alice",
                             "INBOX"])
    waited = [0.0]
    done = threading.Event()

    def sample_runqueue_wait() -> None:
        # /proc/PID/schedstat: time on the CPU, time waiting for one (ns).
        # Not proc.poll(): that would reap the child before os.wait4 does.
        while not done.is_set():
            try:
                with open(f"/proc/{proc.pid}/schedstat") as f:
                    waited[0] = int(f.read().split()[1]) / 1e9
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample_runqueue_wait, daemon=True)
    sampler.start()
    status, hwm_kb, _, cpu_s, _ = search_bench.wait_sampling_rss(proc)
    wall = time.monotonic() - t0
    done.set()
    sampler.join()
    if status != 0:
        raise RuntimeError(f"doveadm index failed:\n{dc.log_tail()}")
    size = sum(p.stat().st_size for p in maildir.glob("dovekie-search.db*"))
    return {"cpu": cpu_s, "wall": wall, "rss": hwm_kb / 1024, "bytes": size,
            "runq": waited[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--ab-build-dir", required=True)
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1,
                    help="runs of each build left out of the medians")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a plugin setting for build A only (repeatable)")
    ap.add_argument("--set-b", action="append", default=[], metavar="KEY=VALUE",
                    help="a plugin setting for build B only (repeatable)")
    args = ap.parse_args()
    messages = search_bench.corpus()
    builds = {"A": Path(args.build_dir).resolve(), "B": Path(args.ab_build_dir).resolve()}
    sets = {"A": dict(s.split("=", 1) for s in args.set),
            "B": dict(s.split("=", 1) for s in args.set_b)}
    dcs, mbox, results = {}, {}, {"A": [], "B": []}
    try:
        for name, build in builds.items():
            dcs[name] = start(build, sets[name])
            mbox[name] = search_bench.write_maildir(dcs[name], messages, args.scale)
        count = dcs["A"].message_count()
        for run in range(args.runs):
            order = ["A", "B"] if run % 2 == 0 else ["B", "A"]
            for name in order:
                r = build_once(dcs[name])
                results[name].append(r)
                print(f"run {run + 1} {name}: {r['cpu']:.2f} CPU s, {r['wall']:.2f} s wall, "
                      f"{count / r['cpu']:,.0f} msg/CPU s, {count / r['wall']:,.0f} msg/s, "
                      f"{r['runq']:.2f} s waiting for a CPU, "
                      f"{r['wall'] - r['cpu'] - r['runq']:.2f} s neither, "
                      f"index {r['bytes'] / mbox[name]:.3f}x, RSS {r['rss']:.0f} MB",
                      flush=True)
    finally:
        for dc in dcs.values():
            dc.stop()
    print(f"x{args.scale}, {count:,} messages; A = {builds['A']}, B = {builds['B']}")
    for name in ("A", "B"):
        rs = results[name][args.warmup:] or results[name]
        cpu = statistics.median(r["cpu"] for r in rs)
        wall = statistics.median(r["wall"] for r in rs)
        print(f"{name}: median {cpu:.2f} CPU s ({count / cpu:,.0f} msg/CPU s), "
              f"{wall:.2f} s wall ({count / wall:,.0f} msg/s); CPU "
              + ", ".join(f"{r['cpu']:.2f}" for r in rs)
              + f"; index {statistics.median(r['bytes'] for r in rs) / mbox[name]:.3f}x"
              f"; RSS {max(r['rss'] for r in rs):.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
