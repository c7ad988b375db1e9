#!/usr/bin/python3
"""Every setting a module declares is documented in conf.d with its default.

Runs under `make check`: asks tools/dovekie-doc for the declared settings of
the loader and of every built module, then looks for `#<name> = <default>`
in conf.d/*.conf. Declared once in C, shown correctly to admins.
"""
import glob
import os
import re
import subprocess
import sys

tool = os.environ["DOVEKIE_DOC_TOOL"]
modules = os.environ.get("DOVEKIE_MODULE_SOS", "").split()
srcdir = os.environ["DOVEKIE_SRCDIR"]

listing = subprocess.run([tool, "--list", *modules], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
declared = [line.split("\t") for line in listing.splitlines() if line]
conf = "\n".join(open(p).read() for p in sorted(glob.glob(f"{srcdir}/conf.d/*.conf")))

problems = []
for name, _type, default, _range, help_text in declared:
    match = re.search(rf"^\s*#\s*{re.escape(name)}\s*=[ \t]*(.*?)[ \t]*$", conf, re.M)
    if match is None:
        problems.append(f"{name}: not in conf.d/*.conf")
    elif name != "dovekie_module_dir" and match.group(1) not in (default, f'"{default}"'):
        problems.append(f"{name}: conf.d shows '{match.group(1)}', the code's default is '{default}'")
    if not help_text:
        problems.append(f"{name}: declared without a help line")

# Every commented line shaped like a setting is one an admin can switch on
# by removing the '#': a choice or boolean shows a value the setting takes
# (a prose line that starts with a setting's name is caught here; Dovecot
# 2.4's doveconf would refuse it).
kinds = {name: (kind, rng) for name, kind, _d, rng, _h in declared}
for match in re.finditer(r"^\s*#\s*(dovekie_\w+)\s*=[ \t]*(.*?)[ \t]*$", conf, re.M):
    name, value = match.group(1), match.group(2).strip('"')
    kind, rng = kinds.get(name, (None, ""))
    if kind in ("choice", "boolean") and value not in rng.split("|"):
        problems.append(f"{name}: a conf.d line shows '{value}', not one of {rng}")

for p in problems:
    print("FAIL", p)
print(f"{len(declared) - len(problems)} passed, {len(problems)} failed")
sys.exit(1 if problems else 0)
