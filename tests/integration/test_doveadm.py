"""`doveadm dovekie ...` against a private Dovecot."""

from __future__ import annotations

import re


def test_status_lists_loaded_modules(dovekie):
    dc = dovekie(users={"alice": {"password": "a"},
                        "bob": {"password": "b",
                                "userdb": {"dovekie_modules": "none"}}})
    res = dc.doveadm("dovekie", "status", "-u", "alice")
    assert res.returncode == 0, res.stderr
    row = [line for line in res.stdout.splitlines() if line.startswith("example ")]
    assert len(row) == 1, res.stdout
    assert re.match(r"example +\S+ +- +refuses messages containing", row[0]), row

    # -A walks every user; bob's userdb turns the modules off.
    res = dc.doveadm("dovekie", "status", "-A")
    assert res.returncode == 0, res.stderr
    assert re.search(r"^alice +example ", res.stdout, re.M), res.stdout
    assert re.search(r"^bob +- +- +- +no module loaded", res.stdout, re.M), res.stdout
    assert "unknown module" not in res.stderr, res.stderr
