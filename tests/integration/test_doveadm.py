"""`doveadm dovekie ...` against a private Dovecot."""

from __future__ import annotations

import importlib.util
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from clamd_harness import PrivateClamd, write_signatures
from dovekie_harness import is_dovecot24, make_message


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


# ---- doveadm dovekie check ----

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MODULES = ["antivirus", "example", "retention", "search"]


def on_block(text: str, first: str) -> str:
    """Uncomment the block (or line) whose first line is #<first>."""
    lines, out, depth = text.splitlines(), [], None
    for line in lines:
        if depth is None and re.fullmatch(rf"#{first}", line):
            depth = 0
        if depth is not None:
            assert line.startswith("#"), line
            line = line[1:]
            depth += line.count("{") - line.count("}")
            if depth == 0:
                depth = -1
        out.append(line)
        if depth == -1:
            break
    assert depth == -1, f"no commented block /{first}/ in the snippet"
    return "\n".join(out + lines[len(out):]) + "\n"


def shipped_snippets() -> str:
    """The repository's conf.d snippets with the lines an admin switches on
    (as tests/package/test_installed.py does with the installed ones)."""
    def on(text: str, pattern: str) -> str:
        new, n = re.subn(rf"^(\s*)#({pattern})$", r"\1\2", text, flags=re.M)
        assert n >= 1, f"no commented line /{pattern}/ in the snippet"
        return new

    if is_dovecot24():
        return shipped_snippets_24()
    main = (REPO_ROOT / "conf.d" / "10-dovekie.conf").read_text()
    main = on(main, r"mail_attribute_dict = .*")
    # The global line first: the protocol blocks append to it.
    main = on(main, r"mail_plugins = \$mail_plugins dovekie")
    main = on_block(main, r"protocol pop3 \{")
    main = on_block(main, r"protocol lmtp \{")
    main, n = re.subn(r"^(\s*)#dovekie_modules =.*$",
                      rf"\1dovekie_modules = {' '.join(SHIPPED_MODULES)}", main, flags=re.M)
    assert n == 1, "no commented dovekie_modules line in 10-dovekie.conf"
    search = (REPO_ROOT / "conf.d" / "20-dovekie-search.conf").read_text()
    search = on(search, r"mail_plugins = \$mail_plugins fts dovekie dovekie_fts")
    search = on(search, r"fts = dovekie")
    rest = "".join((REPO_ROOT / "conf.d" / name).read_text()
                   for name in ("30-dovekie-antivirus.conf", "40-dovekie-retention.conf"))
    return main + "\n" + search + "\n" + rest


def shipped_snippets_24() -> str:
    """shipped_snippets() for Dovecot 2.4: the snippets as the 2.4 package
    ships them (tools/conf-dovecot24.py), the same blocks switched on."""
    spec = importlib.util.spec_from_file_location(
        "conf_dovecot24", REPO_ROOT / "tools" / "conf-dovecot24.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

    on = on_block

    def snippet(name: str) -> str:
        return tool.rewrite((REPO_ROOT / "conf.d" / name).read_text(), name)

    main = on(snippet("10-dovekie.conf"), r"mail_attribute \{")
    for first in (r"mail_plugins \{", r"protocol pop3 \{", r"protocol lmtp \{"):
        main = on(main, first)
    main, n = re.subn(r"^#dovekie_modules =.*$",
                      f"dovekie_modules = {' '.join(SHIPPED_MODULES)}", main, flags=re.M)
    assert n == 1, "no commented dovekie_modules line in 10-dovekie.conf"
    search = snippet("20-dovekie-search.conf")
    for first in (r"mail_plugins \{", r"fts dovekie \{", r"language en \{"):
        search = on(search, first)
    rest = "".join(snippet(name) for name in ("30-dovekie-antivirus.conf",
                                              "40-dovekie-retention.conf"))
    return main + "\n" + search + "\n" + rest


@pytest.fixture
def shipped(dovecot, plugin_path, module_paths, tmp_path_factory):
    """Factory: a Dovecot configured by the shipped conf.d snippets, every
    module on, the antivirus module on in-process libclamav with the tiny
    signature DB (no clamd). make(settings={...}, users={...})."""
    files = {p.stem: p for p in module_paths}
    missing = [m for m in SHIPPED_MODULES if m not in files]
    if missing:
        pytest.fail(f"modules not built: {missing}", pytrace=False)
    # Not pytest's tmp_path: the mail processes (as the mail uid) read it.
    db = Path(tempfile.mkdtemp(prefix="dovekie-check-db-"))
    write_signatures(db)
    db.chmod(0o755)
    for f in db.iterdir():
        f.chmod(0o644)

    def make(settings=None, users=None):
        plugin_settings = {"dovekie_av_engine": "libclamav",
                           "dovekie_av_libclamav_db": str(db)}
        plugin_settings.update(settings or {})
        # The parts are loaded by the snippets' lines, not the harness.
        return dovecot(plugin_path=plugin_path, parts=(),
                       module_files=[files[m] for m in SHIPPED_MODULES],
                       users=users or {"alice": {"password": "a"},
                                       "bob": {"password": "b"}},
                       plugin_settings=plugin_settings,
                       extra_conf=shipped_snippets())

    yield make
    shutil.rmtree(db, ignore_errors=True)


# A size below dovekie_av_max_size's range. 2.3 passes the text to the
# module, which refuses "30MB"; 2.4's doveconf reads that as 30 MiB (and
# would refuse a size it cannot parse before Dovecot starts), so there the
# value out of range is 0, shown as `dovekie_av_max_size = 0`.
BAD_SIZE = "0" if is_dovecot24() else "30MB"
BAD_SIZE_SHOWN = "dovekie_av_max_size = 0" if is_dovecot24() else "30MB"


def check(dc, *options: str) -> tuple[int, list[str], str]:
    res = dc.doveadm("dovekie", "check", *options)
    return res.returncode, [line for line in res.stdout.splitlines() if line.strip()], res.stderr


def test_check_passes_on_the_shipped_configuration(shipped):
    dc = shipped()
    code, lines, stderr = check(dc)
    assert code == 0, (lines, stderr)
    assert lines == ["ok: no problems in the global configuration"], lines
    # Every user too: modules, the scanner's DB, the index directory and
    # the retention state.
    code, lines, stderr = check(dc, "-A")
    assert code == 0, (lines, stderr)
    assert lines == ["ok: no problems in the global configuration and 2 users"], lines
    code, lines, stderr = check(dc, "-u", "alice")
    assert (code, lines) == (0, ["ok: no problems in the global configuration and 1 user"]), \
        (lines, stderr)


def test_check_names_a_bad_global_value(shipped):
    dc = shipped(settings={"dovekie_av_max_size": BAD_SIZE})
    code, lines, stderr = check(dc)
    assert code == 78, (code, lines, stderr)
    bad = [line for line in lines if "dovekie_av_max_size" in line]
    assert len(bad) == 1, lines
    assert bad[0].startswith("global: ") and BAD_SIZE_SHOWN in bad[0], bad
    assert not any(line.startswith("ok") for line in lines), lines


def test_check_finds_a_userdb_value_and_names_the_user(shipped):
    dc = shipped(users={"alice": {"password": "a"},
                        "bob": {"password": "b",
                                "userdb": {"dovekie_av_max_size": BAD_SIZE}}})
    # The global configuration is fine.
    code, lines, stderr = check(dc)
    assert (code, lines) == (0, ["ok: no problems in the global configuration"]), \
        (lines, stderr)

    code, lines, stderr = check(dc, "-u", "bob")
    assert code == 78, (code, lines, stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith("bob: ") and "dovekie_av_max_size" in lines[0] \
        and BAD_SIZE_SHOWN in lines[0], lines

    code, lines, stderr = check(dc, "-u", "alice")
    assert code == 0, (lines, stderr)

    code, lines, stderr = check(dc, "-A")
    assert code == 78, (code, lines, stderr)
    assert [line.split(":")[0] for line in lines] == ["bob"], lines
    assert "dovekie_av_max_size" in lines[0], lines


def test_check_prints_a_global_problem_once(shipped):
    # Global: a bad size (every user inherits it). Bob's userdb: a setting
    # only the global configuration may set, which fails all his modules.
    dc = shipped(settings={"dovekie_av_max_size": BAD_SIZE},
                 users={"alice": {"password": "a"},
                        "bob": {"password": "b",
                                "userdb": {"dovekie_test_clock_offset": "60"}}})
    code, lines, stderr = check(dc, "-A")
    assert code == 78, (code, lines, stderr)
    size_lines = [line for line in lines if "dovekie_av_max_size" in line]
    assert len(size_lines) == 1 and size_lines[0].startswith("global: "), lines
    assert not any(line.startswith("alice: ") for line in lines), lines
    bob = [line for line in lines if line.startswith("bob: ")]
    assert bob and all("dovekie_av_max_size" not in line for line in bob), lines
    assert any("dovekie_test_clock_offset" in line for line in bob), lines
    # Each line once.
    assert len(lines) == len(set(lines)), lines


def test_check_exit_code_for_an_unknown_user(shipped):
    dc = shipped()
    code, lines, stderr = check(dc, "-u", "nobody-here")
    assert code == 67, (code, lines, stderr)
    assert not any(line.startswith("ok") for line in lines), lines


def test_status_shows_a_failed_module(shipped):
    dc = shipped(settings={"dovekie_av_max_size": BAD_SIZE})
    res = dc.doveadm("-f", "tab", "dovekie", "status", "-u", "alice")
    rows = [line.split("\t") for line in res.stdout.splitlines()[1:] if line.strip()]
    failed = [r for r in rows if r[0] == "module" and r[2].startswith("failed: ")]
    assert [r[1] for r in failed] == ["antivirus"], rows
    assert "dovekie_av_max_size" in failed[0][2] and BAD_SIZE_SHOWN in failed[0][2], failed
    # The modules that did start are listed as before.
    loaded = {r[1] for r in rows if r[0] == "module" and not r[2].startswith("failed: ")}
    assert loaded == {"example", "retention", "search"}, rows
    assert res.returncode == 78, (res.returncode, res.stderr)


def test_check_reports_a_dead_scanner_once(shipped):
    dc = shipped(settings={"dovekie_av_engine": "clamd",
                           "dovekie_av_clamd": "unix:/nonexistent/clamd.sock"})
    code, lines, stderr = check(dc, "-A")
    # A resource that does not answer is a tempfail, not a bad setting.
    assert code == 75, (code, lines, stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith("global: antivirus: the scanner does not answer: "), lines
    assert "unix:/nonexistent/clamd.sock" in lines[0], lines


def test_check_finds_an_unwritable_index_directory(shipped):
    dc = shipped()
    code, lines, stderr = check(dc, "-u", "alice")   # creates the Maildir
    assert code == 0, (lines, stderr)
    maildir = dc.home("alice") / "Maildir"
    maildir.chmod(0o555)
    try:
        code, lines, stderr = check(dc, "-A")
    finally:
        maildir.chmod(0o700)
    assert code == 75, (code, lines, stderr)
    assert lines == [f"alice: search: index directory {maildir} is not writable: "
                     "Permission denied"], lines
