"""Retention records written by an older dovekie stay right after an upgrade.

The retention table in INBOX's index grew by 16 bytes (the download
floors: a QUIT tells from them in O(1) whether anything can be due,
instead of reading every record). An index that an older version wrote
holds the shorter table and no floors. After the upgrade:

- the first QUIT finds no floors and runs the expiry plan, which grows
  the table in the index and sets the floors (no index error logged);
- what was hidden stays hidden, what was downloaded keeps its time;
- a QUIT after the retention period expires the message at QUIT, as
  before the upgrade.

The upgrade also crosses the split of the plugin into a core and
per-protocol parts: until the admin adds dovekie_pop3 to pop3's
mail_plugins, a POP3 login of a retention user is refused with a log line
that names the plugin and the setting (fail closed), and nothing changes;
after `doveadm reload` with the setting, sessions go on as above.

It needs a build of the older version (the plugin and the retention
module): DOVEKIE_UPGRADE_FROM_BUILD_DIR=<its build dir>, e.g. a build of
commit f03aa18, the last one with the shorter table. So it is not named
test_*.py: the default run (where a skipped test counts as failed) has no
older build to start from, and does not collect it. Run it by name:

    DOVEKIE_UPGRADE_FROM_BUILD_DIR=OLD DOVEKIE_BUILD_DIR=NEW \
        python3 -m pytest tests/integration/upgrade_retention.py
"""

from __future__ import annotations

import os
import poplib
import re
import shutil
from pathlib import Path

import pytest

from dovekie_harness import PARTS, is_dovecot24, mail_plugins_24, make_message
from test_retention import EXTRA_CONF, USERS, retention_module, set_clock_offset  # noqa: F401 (fixture)

DAY = 86400
OLD_BUILD = os.environ.get("DOVEKIE_UPGRADE_FROM_BUILD_DIR")


def pop3(dc, user="alice") -> poplib.POP3:
    pop = poplib.POP3("127.0.0.1", dc.ports["pop3"], timeout=30)
    pop.user(user)
    pop.pass_(dc.password(user))
    return pop


def replace_file(src: Path, dest: Path) -> None:
    """Puts src in dest's place atomically (running processes keep the old
    inode), owned and moded as the harness installs modules."""
    tmp = dest.with_name(dest.name + ".new")
    shutil.copyfile(src, tmp)
    os.chown(tmp, os.getuid(), os.getgid())
    tmp.chmod(0o644)
    os.replace(tmp, dest)


@pytest.mark.skipif(not OLD_BUILD, reason="DOVEKIE_UPGRADE_FROM_BUILD_DIR not set")
def test_upgrade_keeps_records_and_grows_the_table(dovecot, plugin_path, retention_module):
    old = Path(OLD_BUILD)
    old_plugin = old / "hosts/dovecot/.libs/lib90_dovekie_plugin.so"
    old_module = old / "modules/retention/.libs/retention.so"
    assert old_plugin.is_file() and old_module.is_file(), old
    dc = dovecot(plugin_path=old_plugin, module_files=[old_module],
                 plugin_settings={"dovekie_modules": "retention",
                                  "dovekie_retention_days": "7"},
                 users=USERS, extra_conf=EXTRA_CONF)
    imap = dc.imap()
    for i in range(5):
        typ, data = imap.append("INBOX", None, None, make_message(f"up-{i}", f"body {i}\n"))
        assert typ == "OK", data
    imap.logout()

    # The older version: RETR 1..3, DELE 1 (hidden, kept for IMAP).
    pop = pop3(dc)
    for n in (1, 2, 3):
        pop.retr(n)
    pop.dele(1)
    assert pop.quit().startswith(b"+OK")
    status_old = dc.doveadm("dovekie", "status", "-u", "alice").stdout
    assert "downloaded 3; DELEd (hidden or kept) 1" in status_old, status_old

    # The upgrade: new plugin and module files; new sessions load them.
    replace_file(plugin_path, dc.plugin_dir / plugin_path.name)
    replace_file(retention_module, dc.module_dir / retention_module.name)
    pop3_part = plugin_path.parent / PARTS["pop3"][0]
    if pop3_part.is_file():
        replace_file(pop3_part, dc.plugin_dir / pop3_part.name)
        # Not configured yet: refused, with the fix in the log.
        since = dc.log_offset()
        with pytest.raises(poplib.error_proto):
            pop3(dc)
        dc.wait_for_log(r"pop3\([^)]*\): Error: dovekie: refusing the POP3 login of alice: "
                        r"the plugin dovekie_pop3 is not loaded for pop3", since=since)
        block = (f"protocol pop3 {{\n{mail_plugins_24('dovekie_pop3', '  ')}\n}}\n"
                 if is_dovecot24() else
                 "protocol pop3 {\n  mail_plugins = $mail_plugins dovekie_pop3\n}\n")
        with open(dc.config_path, "a") as conf:
            conf.write(block)
        res = dc.doveadm("reload")
        assert res.returncode == 0, res.stderr
        dc.wait_for_log(r"master: Warning: SIGHUP received - reloading configuration",
                        since=since)
    since = dc.log_offset()
    pop = pop3(dc)
    assert pop.stat()[0] == 4  # uid 1 stays hidden
    pop.retr(1)  # uid 2 again: keeps its first download time
    assert pop.quit().startswith(b"+OK")
    status = dc.doveadm("dovekie", "status", "-u", "alice").stdout
    assert "downloaded 3; DELEd (hidden or kept) 1; due to expire 0" in status, status
    assert dc.message_count() == 5

    # A week later, a QUIT expires uid 1 (DELEd and downloaded 8 days ago).
    set_clock_offset(dc, 8 * DAY)
    pop = pop3(dc)
    assert pop.stat()[0] == 4
    assert pop.quit().startswith(b"+OK")
    dc.wait_for_log(r"expunge user=alice mailbox=\"?INBOX\"? uid=1 reason=expired",
                    since=since)
    assert dc.message_count() == 4
    # ... and only it: the floors now say nothing else is due.
    pop = pop3(dc)
    assert pop.stat()[0] == 4
    assert pop.quit().startswith(b"+OK")
    assert dc.message_count() == 4
    errors = [m.group(0) for m in
              dc.find_log(r"(?m)^.*(?:Error|Panic|Fatal|Warning|[Cc]orrupt).*$", since=since)
              if "SIGHUP received" not in m.group(0)]
    assert not errors, errors
    # The table in the index has its new size (the log holds the resize).
    res = dc.doveadm("dump", str(dc.home("alice") / "Maildir" / "dovecot.index.log"))
    assert res.returncode == 0, res.stderr
    # (the retention extension is the one with 24-byte records)
    sizes = re.findall(r"hdr_size = (\d+)\n - record_size = 24\n", res.stdout)
    assert sizes and sizes[0] == "4680" and sizes[-1] == "4696", (sizes, res.stdout[-2000:])
