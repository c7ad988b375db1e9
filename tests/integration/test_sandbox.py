"""The hand-testing sandbox boots, seeds and exits cleanly with --once."""

import re
import subprocess
import sys
from pathlib import Path

SANDBOX = Path(__file__).resolve().parent / "sandbox.py"


def test_sandbox_once(build_dir, plugin_path, module_paths):
    # plugin_path/module_paths make a missing build fail with a clear message
    # before the subprocess is even started.
    result = subprocess.run(
        [sys.executable, str(SANDBOX), "--build-dir", str(build_dir), "--once"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    out = result.stdout
    assert result.returncode == 0, f"stdout:\n{out}\nstderr:\n{result.stderr}"

    for proto in ("IMAP", "POP3", "LMTP"):
        assert re.search(rf"^  {proto}: +127\.0\.0\.1 port \d+$", out, re.M), out
    assert re.search(r"^  user: +demo$", out, re.M), out
    assert re.search(r"^  password: +demo$", out, re.M), out
    log = re.search(r"^  log: +(\S+)$", out, re.M)
    assert log and log.group(1).endswith("dovecot.log"), out
    assert "example" in re.search(r"^  modules: +(.*)$", out, re.M).group(1)
    # The example module refuses its embedded default marker, over LMTP
    # and over IMAP APPEND, with its reason.
    assert "DOVEKIE-EXAMPLE-REJECT was refused: 550" in out, out
    assert ("IMAP APPEND containing DOVEKIE-EXAMPLE-REJECT: NO [CANNOT] "
            "message refused by the example module") in out, out
    assert "IMAP login as demo OK, INBOX has 5 messages" in out, out
    # Every module shows its behaviour on its embedded defaults.
    assert re.search(r"^LMTP delivery of EICAR: 250 .*\(Quarantine has 1\)$", out, re.M), out
    assert re.search(r"^IMAP APPEND of EICAR: NO .*Dovekie\.Test\.Eicar", out, re.M), out
    assert "doveadm dovekie rescan: exit 0, Quarantine has 2" in out, out
    assert 'IMAP UID SEARCH BODY "nvoic": OK 1 hit(s)' in out, out
    # The retention module keeps a POP3 DELE for IMAP.
    assert "retention" in re.search(r"^  modules: +(.*)$", out, re.M).group(1)
    assert ("POP3 DELE 1 + QUIT: POP3 lists 4 of 5, "
            "IMAP INBOX has 5 (1 with $PopHidden)") in out, out
    # The temporary directory is removed on exit.
    assert not Path(log.group(1)).exists()
