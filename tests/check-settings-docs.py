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

for p in problems:
    print("FAIL", p)
print(f"{len(declared) - len(problems)} passed, {len(problems)} failed")
sys.exit(1 if problems else 0)
