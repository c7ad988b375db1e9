"""dovekie as the Debian package installs it.

Run by tests/package/run after `apt-get install ./dovecot-dovekie_*.deb`:
nothing comes from the build tree. A private Dovecot uses Dovecot's own
plugin directory and dovekie's compiled-in module directory, and enables
dovekie through the shipped /etc/dovecot/conf.d/10-dovekie.conf, with its
commented lines switched on the way an admin would.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from dovekie_harness import PrivateDovecot, make_message  # noqa: E402

SNIPPET = Path("/etc/dovecot/conf.d/10-dovekie.conf")
MODULE_DIR = Path("/usr/lib/dovecot/dovekie")


def enabled_snippet(modules: str) -> str:
    """The shipped snippet with mail_plugins, the attribute dict and
    dovekie_modules uncommented, as an admin enables it."""
    text = SNIPPET.read_text()
    text = re.sub(r"^#(mail_plugins = \$mail_plugins dovekie)$", r"\1", text, flags=re.M)
    text = re.sub(r"^#(mail_attribute_dict = .*)$", r"\1", text, flags=re.M)
    text = re.sub(r"^(\s*)#dovekie_modules =.*$", rf"\1dovekie_modules = {modules}",
                  text, flags=re.M)
    return text


@pytest.fixture
def installed():
    assert SNIPPET.is_file(), "the package did not install its conf.d snippet"
    modules = " ".join(sorted(p.stem for p in MODULE_DIR.glob("*.so")))
    assert "example" in modules.split(), modules
    snippet = enabled_snippet(modules)
    assert "\ndovekie_modules" not in snippet  # sanity: inside plugin {}
    dc = PrivateDovecot(installed=True, extra_conf=snippet)
    dc.start()
    yield dc
    dc.stop()


def test_status_lists_installed_modules(installed):
    res = installed.doveadm("dovekie", "status", "-u", "alice")
    assert res.returncode == 0, res.stderr
    assert re.search(r"^example +0\.1\.0 ", res.stdout, re.M), res.stdout


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
