"""dovekie as the Debian package installs it.

Run by tests/package/run after `apt-get install ./dovecot-dovekie_*.deb`:
nothing comes from the build tree. A private Dovecot uses Dovecot's own
plugin directory and dovekie's compiled-in module directory, and enables
dovekie through the shipped /etc/dovecot/conf.d/10-dovekie.conf, with its
commented lines switched on the way an admin would.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from dovekie_harness import PrivateDovecot, make_message  # noqa: E402

from clamd_harness import EICAR, EICAR_SIGNATURE, write_signatures  # noqa: E402

CONF_D = Path("/etc/dovecot/conf.d")
SNIPPET = CONF_D / "10-dovekie.conf"
SEARCH_SNIPPET = CONF_D / "20-dovekie-search.conf"
MODULE_DIR = Path("/usr/lib/dovecot/dovekie")
MODULES = ["antivirus", "example", "retention", "search"]


def uncomment(text: str, pattern: str) -> str:
    """Turn the commented line matching `pattern` on, as an admin does."""
    new, n = re.subn(rf"^(\s*)#({pattern})$", r"\1\2", text, flags=re.M)
    assert n >= 1, f"no commented line /{pattern}/ in the snippet"
    return new


def uncomment_block(text: str, first: str) -> str:
    """Turn on the commented block whose first line is #<first>, up to the
    #} that closes it."""
    pattern = rf"^#({first}\n)((?:#[^\n]*\n)*?)#\}}$"
    new, n = re.subn(pattern, lambda m: m.group(1) + re.sub(r"^#", "", m.group(2), flags=re.M)
                     + "}", text, count=1, flags=re.M)
    assert n == 1, f"no commented block /{first}/ in the snippet"
    return new


def enabled_snippets() -> str:
    """The shipped snippets with the lines an admin switches on."""
    main = SNIPPET.read_text()
    main = uncomment(main, r"mail_attribute_dict = .*")
    # The global line first: the protocol blocks append the parts to it.
    main = uncomment(main, r"mail_plugins = \$mail_plugins dovekie")
    main = uncomment_block(main, r"protocol pop3 \{")
    main = uncomment_block(main, r"protocol lmtp \{")
    main = re.sub(r"^(\s*)#dovekie_modules =.*$",
                  rf"\1dovekie_modules = {' '.join(MODULES)}", main, flags=re.M)
    search = SEARCH_SNIPPET.read_text()
    search = uncomment(search, r"mail_plugins = \$mail_plugins fts dovekie dovekie_fts")
    search = uncomment(search, r"fts = dovekie")
    return main + "\n" + search


@pytest.fixture
def installed():
    assert SNIPPET.is_file(), "the package did not install its conf.d snippet"
    found = sorted(p.stem for p in MODULE_DIR.glob("*.so"))
    assert found == MODULES, found
    # Antivirus: in-process libclamav on a tiny signature DB (no clamd runs
    # here); everything else on the shipped defaults.
    # Not pytest's tmp_path: its parents are private to root, and the mail
    # processes run as the mail uid.
    db = Path(tempfile.mkdtemp(prefix="dovekie-pkg-clamav-"))
    write_signatures(db)
    for path in (db, *db.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    dc = PrivateDovecot(installed=True, extra_conf=enabled_snippets(),
                        plugin_settings={"dovekie_av_engine": "libclamav",
                                         "dovekie_av_libclamav_db": str(db)})
    try:
        dc.start()
        yield dc
    finally:
        dc.stop()
        shutil.rmtree(db, ignore_errors=True)


def test_status_lists_installed_modules(installed):
    res = installed.doveadm("dovekie", "status", "-u", "alice")
    assert res.returncode == 0, res.stderr
    for module in MODULES:
        assert re.search(rf"^module +{module} +0\.1\.0; ", res.stdout, re.M), res.stdout


def test_eicar_append_is_refused(installed):
    imap = installed.imap()
    typ, data = imap.append("INBOX", None, None,
                            make_message("eicar", EICAR.decode() + "\n"))
    assert typ == "NO", data
    assert EICAR_SIGNATURE in data[0].decode(), data
    imap.logout()
    assert installed.message_count("INBOX") == 0


def test_search_finds_a_substring(installed):
    imap = installed.imap()
    for body in ("the quick brown fox\n", "a lazy dog sleeps\n", "foxtrot uniform\n"):
        assert imap.append("INBOX", None, None, make_message("s", body))[0] == "OK"
    imap.select("INBOX")
    typ, data = imap.uid("SEARCH", "BODY", "oxtr")   # inside "foxtrot"
    assert typ == "OK", data
    assert data[0].split() == [b"3"], data
    typ, data = imap.uid("SEARCH", "BODY", "fox")
    assert sorted(data[0].split()) == [b"1", b"3"], data
    imap.logout()
    # The search module's index answered (not only Dovecot's own search).
    assert list((installed.home("alice") / "Maildir").rglob("dovekie-search.db*")), \
        "no search index was written"


def test_pop3_dele_keeps_the_mail_for_imap(installed):
    imap = installed.imap()
    assert imap.append("INBOX", None, None, make_message("p", "pop me\n"))[0] == "OK"
    imap.logout()
    pop = installed.pop3()
    pop.retr(1)
    pop.dele(1)
    assert pop.quit().startswith(b"+OK")
    pop = installed.pop3()
    assert pop.stat()[0] == 0
    pop.quit()
    imap = installed.imap()
    imap.select("INBOX")
    typ, data = imap.fetch("1", "(FLAGS)")
    assert typ == "OK" and b"$PopHidden" in data[0], data
    imap.logout()


def test_example_refusal_through_installed_files(installed):
    imap = installed.imap()
    typ, data = imap.append("INBOX", None, None,
                            make_message("x", "contains DOVEKIE-EXAMPLE-REJECT\n"))
    assert typ == "NO", data
    assert b"message refused by the example module" in b" ".join(
        d for d in data if isinstance(d, bytes))
    typ, data = imap.append("INBOX", None, None, make_message("y", "clean\n"))
    assert typ == "OK", data
    imap.logout()
    assert installed.message_count("INBOX") == 1
    assert not installed.find_log(r"dovekie: [^\n]*Error|Error: [^\n]*dovekie")


def test_timers_are_shipped_and_not_enabled():
    """The retention run, the antivirus rescan and the search index merge
    come as systemd timers, left for the admin to enable once the modules
    are on."""
    commands = {"retention": "doveadm dovekie retention run -A",
                "rescan": "doveadm dovekie rescan -A",
                "optimize": "doveadm fts optimize -A"}
    for name, command in commands.items():
        timer = Path(f"/lib/systemd/system/dovekie-{name}.timer")
        service = Path(f"/lib/systemd/system/dovekie-{name}.service")
        assert timer.is_file() and service.is_file(), name
        assert "OnCalendar=" in timer.read_text(), timer
        assert f"ExecStart=/usr/bin/{command}\n" in service.read_text(), service
        wants = Path(f"/etc/systemd/system/timers.target.wants/dovekie-{name}.timer")
        assert not wants.exists(), f"{wants} is enabled by the package"


def test_check_passes_on_the_installed_package(installed):
    """`doveadm dovekie check` loads the installed modules (globally and for
    alice) and finds nothing wrong in the shipped snippets."""
    res = installed.doveadm("dovekie", "check", "-A")
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert res.stdout.splitlines() == [
        "ok: no problems in the global configuration and 1 user"], res.stdout


POSTINST = Path("/var/lib/dpkg/info/dovecot-dovekie.postinst")


def run_postinst(tmp: Path, mail_plugins: str, check_output: str, check_code: int):
    """Runs the installed postinst ("configure") with doveconf and doveadm
    replaced by stand-ins that report `mail_plugins` and answer the check
    with `check_output` and `check_code`; the stand-in doveadm records its
    arguments."""
    shims = tmp / "bin"
    shims.mkdir()
    (shims / "doveconf").write_text(f"#!/bin/sh\necho '{mail_plugins}'\n")
    (shims / "doveadm").write_text(
        f"#!/bin/sh\necho \"$@\" >> {tmp}/doveadm.args\n"
        f"printf '%s\\n' '{check_output}'\nexit {check_code}\n")
    for shim in shims.iterdir():
        shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{shims}:/usr/sbin:/usr/bin:/sbin:/bin")
    return subprocess.run(["sh", str(POSTINST), "configure", "0.1.0"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=60)


def test_postinst_prints_the_check_without_failing(tmp_path):
    """dovekie enabled and the check failing: the install still succeeds
    and shows the check's findings."""
    assert POSTINST.is_file(), "the package has no postinst"
    res = run_postinst(tmp_path, "quota dovekie",
                       "global: dovekie_av_max_size = 30MB: bad", 78)
    assert res.returncode == 0, res.stdout
    assert "global: dovekie_av_max_size = 30MB: bad" in res.stdout, res.stdout
    assert "doveadm dovekie check -A" in res.stdout, res.stdout
    assert (tmp_path / "doveadm.args").read_text() == "dovekie check\n"


def test_postinst_stays_quiet_when_dovekie_is_not_enabled(tmp_path):
    res = run_postinst(tmp_path, "quota", "global: should not run", 78)
    assert res.returncode == 0, res.stdout
    assert "dovekie check" not in res.stdout and "should not run" not in res.stdout, res.stdout
    assert not (tmp_path / "doveadm.args").exists()
