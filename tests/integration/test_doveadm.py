"""`doveadm dovekie ...` against a private Dovecot."""

from __future__ import annotations

import re

import pytest

from clamd_harness import PrivateClamd
from dovekie_harness import make_message


def test_status_lists_loaded_modules(dovekie):
    dc = dovekie(users={"alice": {"password": "a"},
                        "bob": {"password": "b",
                                "userdb": {"dovekie_modules": "none"}}})
    res = dc.doveadm("dovekie", "status", "-u", "alice")
    assert res.returncode == 0, res.stderr
    row = [line for line in res.stdout.splitlines() if re.match(r"module +example ", line)]
    assert len(row) == 1, res.stdout
    assert re.match(r"module +example +\S+; services: -; refuses messages containing",
                    row[0]), row

    # -A walks every user; bob's userdb turns the modules off.
    res = dc.doveadm("dovekie", "status", "-A")
    assert res.returncode == 0, res.stderr
    assert re.search(r"^alice +module +example ", res.stdout, re.M), res.stdout
    assert re.search(r"^bob +module +- +no module loaded", res.stdout, re.M), res.stdout
    assert "unknown module" not in res.stderr, res.stderr


def status_rows(dc, *options: str) -> tuple[int, list[list[str]], str]:
    res = dc.doveadm(*options, "-f", "tab", "dovekie", "status", "-u", "alice")
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    assert lines and lines[0].split("\t") == ["Area", "Name", "State"], res.stdout + res.stderr
    return res.returncode, [line.split("\t") for line in lines[1:]], res.stderr


def state(rows, area: str, name: str) -> str:
    found = [r[2] for r in rows if r[0] == area and r[1] == name]
    assert len(found) == 1, (area, name, rows)
    return found[0]


@pytest.fixture
def every_module(dovecot, plugin_path, module_paths):
    files = {p.stem: p for p in module_paths}
    for name in ("antivirus", "search", "retention"):
        if name not in files:
            pytest.fail(f"module {name} not built", pytrace=False)
    clamd = PrivateClamd()
    clamd.start()
    dc = dovecot(plugin_path=plugin_path,
                 module_files=[files["antivirus"], files["search"], files["retention"]],
                 mail_plugins="$mail_plugins fts dovekie",
                 plugin_settings={"dovekie_modules": "antivirus search retention",
                                  "fts": "dovekie",
                                  "dovekie_av_clamd": clamd.unix_address,
                                  "dovekie_retention_days": "7"},
                 extra_conf="mail_attribute_dict = file:%h/dovecot-attributes\n")
    yield dc, clamd
    clamd.stop()


def test_status_shows_scanner_index_and_retention_state(every_module):
    dc, clamd = every_module
    imap = dc.imap()
    for i in range(3):
        typ, data = imap.append("INBOX", None, None, make_message(f"s{i}", f"status {i}\n"))
        assert typ == "OK", data
    assert imap.create("Work")[0] == "OK"
    assert imap.append("Work", None, None, make_message("w", "work\n"))[0] == "OK"
    imap.logout()
    res = dc.doveadm("index", "-u", "alice", "INBOX")
    assert res.returncode == 0, res.stderr
    pop = dc.pop3()
    pop.retr(1)
    pop.dele(1)
    pop.retr(2)
    assert pop.quit().startswith(b"+OK")

    code, rows, stderr = status_rows(dc)
    assert code == 0, (rows, stderr)
    assert {r[1] for r in rows if r[0] == "module"} == {"antivirus", "search", "retention"}
    scanner = [r for r in rows if r[0] == "antivirus"]
    assert len(scanner) == 1 and scanner[0][1] == "clamd " + clamd.unix_address, rows
    assert re.fullmatch(r"reachable; DB version [^/\s]+/\d+", scanner[0][2]), rows
    assert re.fullmatch(r"indexed 3/3 messages; index [1-9]\d* bytes",
                        state(rows, "search", "INBOX")), rows
    assert state(rows, "search", "Work") == "not indexed: 0/1 messages", rows
    assert state(rows, "retention", "INBOX") == \
        "downloaded 2; DELEd (hidden or kept) 1; due to expire 0", rows

    # Eight days later (the loader's test clock) the DELEd one is due;
    # status expunges nothing.
    code, rows, stderr = status_rows(
        dc, "-o", f"plugin/dovekie_test_clock_offset={8 * 86400}")
    assert code == 0, (rows, stderr)
    assert state(rows, "retention", "INBOX").endswith("due to expire 1"), rows
    assert dc.message_count("INBOX") == 3

    # The scanner gone: shown, and the exit code says so.
    clamd.stop_process()
    code, rows, stderr = status_rows(dc)
    assert code != 0
    assert state(rows, "antivirus", "clamd " + clamd.unix_address).startswith(
        "unreachable: "), rows
