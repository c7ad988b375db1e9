#!/usr/bin/python3
"""No C source of ours calls strcpy, strcat, sprintf, vsprintf or gets.

Untrusted bytes only go through bounded APIs (STYLE.md). Runs under
`make check`; comments and string literals are not code, so they are
stripped before the search.
"""
import os
import re
import sys
from pathlib import Path

BANNED = ("strcpy", "strcat", "sprintf", "vsprintf", "gets")
CALL = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(BANNED) + r")\s*\(")
STRIP = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)

srcdir = Path(os.environ.get("DOVEKIE_SRCDIR", Path(__file__).resolve().parents[1]))
files = sorted(p for d in ("loader", "modules", "hosts", "tools", "tests", "include")
               for p in (srcdir / d).rglob("*") if p.suffix in (".c", ".h"))
problems = []
for path in files:
    text = path.read_text(errors="replace")
    code = STRIP.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for m in CALL.finditer(code):
        line = code.count("\n", 0, m.start()) + 1
        problems.append(f"{path.relative_to(srcdir)}:{line}: {m.group(1)}()")

for p in problems:
    print("FAIL", p)
print(f"{len(files) - len({p.split(':')[0] for p in problems})} passed, "
      f"{len({p.split(':')[0] for p in problems})} failed")
sys.exit(1 if problems else 0)
