"""The retention module (POP3 leave-on-server) through a real Dovecot.

Real clients: python poplib and fetchmail for POP3, imaplib for IMAP,
doveadm for the expiry job. The clock the module sees is moved with the
loader's dovekie_test_clock_offset setting (doveadm -o, or dovecot.conf and a reload
for POP3 sessions), never by sleeping.

Contract under test (plugin settings, see conf.d/40-dovekie-retention.conf):
    dovekie_modules = retention
    dovekie_retention_days = 7
    dovekie_retention_dele = hide | expunge | ignore
    dovekie_retention_view = shared | per-client
    dovekie_retention_login = %{orig_user}   (userdb field)
Logs: `dovekie-retention: expunge user=U mailbox="INBOX" uid=N reason=R`.
"""

from __future__ import annotations

import os
import poplib
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from dovekie_harness import PrivateDovecot, make_message

DAY = 86400
KEYWORD = "$PopHidden"
EXTRA_CONF = ("mail_attribute_dict = file:%h/dovecot-attributes\n"
              # alice#laptop -> alice@laptop -> %Ln -> alice
              "auth_username_translation = \"#@\"\n")
USERS = {"alice": {"password": "secret",
                   "userdb": {"dovekie_retention_login": "%{orig_user}"}}}


@pytest.fixture(scope="session")
def retention_module(module_paths: list[Path]) -> Path:
    for path in module_paths:
        if path.name == "retention.so":
            return path
    pytest.fail("retention module not built (modules/retention/.libs/"
                "retention.so)", pytrace=False)


@pytest.fixture
def retention(dovecot, plugin_path, retention_module):
    """Factory: a Dovecot with only the retention module (7 days)."""

    def make(extra_conf: str = "", plugin_extra: dict | None = None, mail_plugins=None,
             users: dict | None = None, **settings) -> PrivateDovecot:
        plugin_settings = {"dovekie_modules": "retention",
                           "dovekie_retention_days": "7"}
        plugin_settings.update({f"dovekie_retention_{k}": str(v)
                                for k, v in settings.items()})
        plugin_settings.update(plugin_extra or {})
        kwargs = {"mail_plugins": mail_plugins} if mail_plugins else {}
        return dovecot(plugin_path=plugin_path,
                       module_files=[retention_module],
                       plugin_settings=plugin_settings,
                       users=users or USERS, extra_conf=EXTRA_CONF + extra_conf,
                       **kwargs)

    return make


# ---- helpers ----

def append(dc: PrivateDovecot, count: int, prefix: str = "ret") -> None:
    imap = dc.imap()
    for i in range(count):
        typ, data = imap.append("INBOX", None, None,
                                make_message(f"{prefix}-{i}", f"body {i}\n"))
        assert typ == "OK", data
    imap.logout()


def imap_flags(dc: PrivateDovecot) -> dict[int, str]:
    """UID -> FLAGS text of every INBOX message, through IMAP."""
    imap = dc.imap()
    try:
        typ, data = imap.select("INBOX")
        assert typ == "OK", data
        if int(data[0]) == 0:
            return {}
        typ, data = imap.fetch("1:*", "(UID FLAGS)")
        assert typ == "OK", data
        out = {}
        for line in data:
            m = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", line)
            out[int(m.group(1))] = m.group(2).decode()
        return out
    finally:
        imap.logout()


def uidls(pop: poplib.POP3) -> dict[int, str]:
    """msgnum -> UIDL of the session."""
    resp, lines, _ = pop.uidl()
    assert resp.startswith(b"+OK"), resp
    return {int(n): u for n, u in (l.decode().split() for l in lines)}


def retention_run(dc: PrivateDovecot, offset: int, *args: str):
    res = dc.doveadm("-o", f"plugin/dovekie_test_clock_offset={offset}",
                     "dovekie", "retention", "run", "-u", "alice", *args)
    assert res.returncode == 0, res.stderr
    return res


def set_clock_offset(dc: PrivateDovecot, offset: int) -> None:
    """Give the next sessions a shifted clock. The clock offset is a global
    setting only (a userdb value fails the modules: whoever controls a
    userdb field must not move the retention clock), so this rewrites
    dovecot.conf and has the master reload it."""
    dc.set_global_setting("dovekie_test_clock_offset", offset)
    since = dc.log_offset()
    res = dc.doveadm("reload")
    assert res.returncode == 0, res.stderr
    dc.wait_for_log(r"master: Warning: SIGHUP received - reloading configuration",
                    since=since)
    # New processes read the new configuration once the config service
    # has restarted; a login right away may still get the old one.
    time.sleep(1.0)


STATS_METRICS = """
metric dovekie_retention_downloads {
  filter = event=dovekie_retention_downloaded
}
metric dovekie_retention_hides {
  filter = event=dovekie_retention_hidden
  group_by = view
}
metric dovekie_retention_expunges {
  filter = event=dovekie_retention_expunged
  group_by = reason
}
"""


def stats_counts(dc: PrivateDovecot, want: dict[str, int]) -> dict[str, int]:
    """Counts of our metrics in `doveadm stats dump`, once they reach `want`
    (events of a POP3 session's end may land after the client saw +OK)."""
    deadline = time.monotonic() + 10
    while True:
        res = dc.doveadm("stats", "dump")
        assert res.returncode == 0, res.stderr
        counts = {}
        for line in res.stdout.splitlines():
            fields = line.split("\t")
            if fields[0].startswith("dovekie_retention_"):
                counts[fields[0]] = int(fields[2])
        if all(counts.get(k) == v for k, v in want.items()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def assert_no_crash(dc: PrivateDovecot) -> None:
    bad = dc.find_log(r"^[^\n]*(?:Panic: |Fatal: |killed with signal)[^\n]*$")
    assert not bad, "\n".join(m.group(0) for m in bad)


# ---- DELE = hide ----

def test_dele_hides_from_pop3_and_keeps_for_imap(retention):
    dc = retention()
    append(dc, 3)
    pop = dc.pop3()
    before = uidls(pop)
    assert len(before) == 3
    pop.retr(1)
    pop.dele(1)
    pop.retr(2)
    assert pop.quit().startswith(b"+OK")

    pop = dc.pop3()
    after = uidls(pop)
    pop.quit()
    # Message 1 is gone from POP3; the others keep their UIDLs.
    assert sorted(after.values()) == sorted([before[2], before[3]])

    flags = imap_flags(dc)
    assert sorted(flags) == [1, 2, 3], flags
    assert KEYWORD in flags[1].split(), flags
    assert KEYWORD not in flags[2].split()
    assert_no_crash(dc)


def test_session_dropped_without_quit_changes_nothing(retention):
    dc = retention()
    append(dc, 2)
    pop = dc.pop3()
    pop.retr(1)
    pop.dele(1)
    pop.close()  # drop the connection: no QUIT (RFC 1939: nothing happens)
    dc.wait_for_log(r"pop3\(alice\)[^\n]*Disconnected")

    pop = dc.pop3()
    assert len(uidls(pop)) == 2
    pop.quit()
    flags = imap_flags(dc)
    assert all(KEYWORD not in f.split() for f in flags.values()), flags
    # Nothing was recorded as downloaded: no run ever expunges these.
    res = retention_run(dc, 1000 * DAY)
    assert "expunged" not in res.stdout
    assert dc.message_count() == 2


def test_expiry_only_after_the_retention_days(retention):
    dc = retention(expire_at_quit="no")
    append(dc, 3)
    pop = dc.pop3()
    pop.retr(1)
    pop.dele(1)      # downloaded and DELEd: expires after 7 days
    pop.dele(2)      # DELEd, never downloaded: never expires
    pop.retr(3)      # downloaded, kept: not expired (expire = deleted)
    pop.quit()

    res = retention_run(dc, 7 * DAY - 3600)
    assert "expunged" not in res.stdout
    assert dc.message_count() == 3

    # --dry-run names the message and changes nothing.
    res = retention_run(dc, 8 * DAY, "--dry-run")
    assert re.search(r"INBOX\s+1\s+expired\s+would-expunge", res.stdout), res.stdout
    assert dc.message_count() == 3
    assert "would expunge user=alice mailbox=\"INBOX\" uid=1 reason=expired" in res.stderr

    res = retention_run(dc, 8 * DAY)
    assert re.search(r"INBOX\s+1\s+expired\s+expunged", res.stdout), res.stdout
    assert "uid=2" not in res.stderr and "uid=3" not in res.stderr
    assert sorted(imap_flags(dc)) == [2, 3]

    # Even 100 years on, the undownloaded DELEd message stays.
    res = retention_run(dc, 36000 * DAY)
    assert "expunged" not in res.stdout
    assert sorted(imap_flags(dc)) == [2, 3]


def test_expiry_runs_at_the_end_of_a_pop3_session(retention):
    dc = retention()
    append(dc, 2)
    pop = dc.pop3()
    pop.retr(1)
    pop.dele(1)
    pop.quit()
    assert dc.message_count() == 2

    set_clock_offset(dc, 8 * DAY)
    start = dc.log_offset()
    pop = dc.pop3()
    assert len(uidls(pop)) == 1
    pop.quit()
    dc.wait_for_log(r"pop3\(alice\)[^\n]*dovekie-retention: expunge user=alice "
                    r"mailbox=\"INBOX\" uid=1 reason=expired", since=start)
    assert sorted(imap_flags(dc)) == [2]
    assert_no_crash(dc)


def test_retention_counters_reach_dovecot_stats(retention):
    dc = retention(extra_conf=STATS_METRICS)
    append(dc, 3)
    pop = dc.pop3()
    pop.retr(1)
    pop.dele(1)
    pop.retr(2)
    pop.quit()
    want = {"dovekie_retention_downloads": 2,
            "dovekie_retention_hides": 1,
            "dovekie_retention_hides_shared": 1}
    counts = stats_counts(dc, want)
    assert all(counts.get(k) == v for k, v in want.items()), counts
    assert counts.get("dovekie_retention_expunges") == 0, counts

    # A second download of message 2 counts nothing; after 7 days the
    # check at QUIT expunges message 1. Moving the clock reloads Dovecot,
    # which restarts the stats service: the counts start again from 0.
    set_clock_offset(dc, 8 * DAY)
    pop = dc.pop3()
    pop.retr(1)
    pop.quit()
    want = {"dovekie_retention_downloads": 0,
            "dovekie_retention_hides": 0,
            "dovekie_retention_expunges": 1,
            "dovekie_retention_expunges_expired": 1}
    counts = stats_counts(dc, want)
    assert all(counts.get(k) == v for k, v in want.items()), counts
    assert sorted(imap_flags(dc)) == [2, 3]
    assert_no_crash(dc)


def test_dele_expunge_is_classic_pop3(retention):
    dc = retention(dele="expunge", extra_conf=STATS_METRICS)
    append(dc, 2)
    pop = dc.pop3()
    pop.dele(1)
    pop.quit()
    assert sorted(imap_flags(dc)) == [2]
    want = {"dovekie_retention_expunges_dele": 1, "dovekie_retention_hides": 0}
    counts = stats_counts(dc, want)
    assert all(counts.get(k) == v for k, v in want.items()), counts


def test_dele_ignore_has_no_effect(retention):
    dc = retention(dele="ignore")
    append(dc, 2)
    pop = dc.pop3()
    pop.retr(1)
    pop.dele(1)
    pop.quit()
    pop = dc.pop3()
    assert len(uidls(pop)) == 2
    pop.quit()
    flags = imap_flags(dc)
    assert sorted(flags) == [1, 2] and KEYWORD not in flags[1].split()


# ---- per-client views ----

def test_per_client_views_with_poplib(retention):
    dc = retention(view="per-client")
    append(dc, 3)
    laptop = dc.pop3("alice#laptop", "secret")
    assert len(uidls(laptop)) == 3
    laptop.retr(1)
    laptop.retr(2)
    laptop.dele(3)
    laptop.quit()

    laptop = dc.pop3("alice#laptop", "secret")
    assert len(uidls(laptop)) == 0
    laptop.quit()
    desktop = dc.pop3("alice#desktop", "secret")
    assert len(uidls(desktop)) == 3
    desktop.quit()
    plain = dc.pop3()  # the shared identity
    assert len(uidls(plain)) == 3
    plain.quit()
    # Per-client: IMAP keeps everything, with no global keyword.
    flags = imap_flags(dc)
    assert sorted(flags) == [1, 2, 3]
    assert all(KEYWORD not in f.split() for f in flags.values()), flags


# ---- fetchmail ----

FETCHMAIL = shutil.which("fetchmail")


def fetchmail(dc: PrivateDovecot, login: str, keep: bool, workdir: Path) -> list[str]:
    """One fetchmail run as `login`; returns the Subjects it delivered."""
    workdir.mkdir(exist_ok=True)
    name = re.sub(r"[^a-z0-9]", "_", login)
    out = workdir / f"{name}.mbox"
    before = out.read_text() if out.exists() else ""
    rc = workdir / f"{name}.rc"
    rc.write_text(
        "set no bouncemail\n"
        f"poll 127.0.0.1 with protocol POP3 and port {dc.ports['pop3']}"
        " and auth password\n"
        f"  user \"{login}\" there with password \"secret\" is \"root\" here\n"
        f"  {'keep' if keep else 'no keep'} no rewrite\n"
        f"  mda \"/bin/sh -c 'cat >> {out}'\"\n")
    rc.chmod(0o600)
    res = subprocess.run(
        [FETCHMAIL, "-f", str(rc), "-i", str(workdir / f"{name}.ids"),
         "--pidfile", str(workdir / f"{name}.pid"), "--nosyslog",
         "--sslproto", "", "--nosslcertck"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=60, env=dict(os.environ, HOME=str(workdir)))
    # 0: mail fetched; 1: no mail.
    assert res.returncode in (0, 1), res.stdout
    after = out.read_text() if out.exists() else ""
    return re.findall(r"^Subject: (.*)$", after[len(before):], re.M)


@pytest.mark.skipif(FETCHMAIL is None, reason="fetchmail is not installed")
def test_two_fetchmail_clients_each_download_every_message_once(retention, tmp_path):
    dc = retention(view="per-client")
    append(dc, 3, "first")
    got_laptop = fetchmail(dc, "alice#laptop", True, tmp_path)
    got_desktop = fetchmail(dc, "alice#desktop", False, tmp_path)
    assert sorted(got_laptop) == ["first-0", "first-1", "first-2"]
    assert sorted(got_desktop) == ["first-0", "first-1", "first-2"]

    # Again: nothing new for either.
    assert fetchmail(dc, "alice#laptop", True, tmp_path) == []
    assert fetchmail(dc, "alice#desktop", False, tmp_path) == []

    append(dc, 1, "second")
    assert fetchmail(dc, "alice#desktop", False, tmp_path) == ["second-0"]
    assert fetchmail(dc, "alice#laptop", True, tmp_path) == ["second-0"]
    # The desktop's DELEs (no keep) kept everything for IMAP.
    assert dc.message_count() == 4
    assert_no_crash(dc)


@pytest.mark.skipif(FETCHMAIL is None, reason="fetchmail is not installed")
def test_fetchmail_no_keep_hides_and_the_run_expires(retention, tmp_path):
    dc = retention(expire_at_quit="no")
    append(dc, 2)
    assert sorted(fetchmail(dc, "alice", False, tmp_path)) == ["ret-0", "ret-1"]
    assert fetchmail(dc, "alice", False, tmp_path) == []
    flags = imap_flags(dc)
    assert sorted(flags) == [1, 2]
    assert all(KEYWORD in f.split() for f in flags.values()), flags

    assert "expunged" not in retention_run(dc, 6 * DAY).stdout
    res = retention_run(dc, 7 * DAY + 60)
    assert len(re.findall(r"expired\s+expunged", res.stdout)) == 2, res.stdout
    assert dc.message_count() == 0


@pytest.mark.skipif(FETCHMAIL is None, reason="fetchmail is not installed")
def test_fetchmail_keep_leaves_mail_and_downloads_once(retention, tmp_path):
    dc = retention()
    append(dc, 2)
    assert sorted(fetchmail(dc, "alice", True, tmp_path)) == ["ret-0", "ret-1"]
    assert fetchmail(dc, "alice", True, tmp_path) == []
    flags = imap_flags(dc)
    assert sorted(flags) == [1, 2]
    assert all(KEYWORD not in f.split() for f in flags.values()), flags


def test_quota_rule_expunges_oldest_downloads_first(retention):
    """Over dovekie_retention_quota_percent of Dovecot's own quota (the quota
    plugin), the run expunges downloaded messages, oldest download first,
    until the mailbox is under it; never one no client downloaded."""
    # The run, not the end of a POP3 session (test_expiry_runs_at_the_end_of
    # _a_pop3_session covers that path, which plans the same way).
    dc = retention(quota_percent=50, expire_at_quit="no",
                   mail_plugins="$mail_plugins quota dovekie",
                   plugin_extra={"quota": "maildir:User quota",
                                 "quota_rule": "*:storage=48K"})
    imap = dc.imap()
    for i in range(6):  # 6 x 5 KB of 48 KB: 62 %
        typ, data = imap.append("INBOX", None, None,
                                make_message(f"q-{i}", f"line {i}\n" * 700))
        assert typ == "OK", data
    imap.logout()
    res = dc.doveadm("-f", "tab", "quota", "get", "-u", "alice")
    row = [line.split("\t") for line in res.stdout.splitlines() if "\tSTORAGE\t" in line]
    assert len(row) == 1, res.stdout + res.stderr
    used, limit = int(row[0][2]), int(row[0][3])  # KB
    assert limit == 48 and used > 24, row

    # Downloads in two sessions: 1 and 2 first, then 3 and 4 a day later.
    pop = dc.pop3()
    pop.retr(1)
    pop.retr(2)
    assert pop.quit().startswith(b"+OK")
    set_clock_offset(dc, DAY)
    pop = dc.pop3()
    pop.retr(3)
    pop.retr(4)
    assert pop.quit().startswith(b"+OK")

    res = retention_run(dc, DAY, "--dry-run")
    planned = re.findall(r"^INBOX\s+(\d+)\s+quota\s+would-expunge", res.stdout, re.M)
    # 62 % -> under 50 %: the two oldest downloads are enough; 5 and 6
    # (never downloaded) are never candidates.
    assert planned == ["1", "2"], res.stdout
    res = retention_run(dc, DAY)
    assert re.findall(r"^INBOX\s+(\d+)\s+quota\s+expunged", res.stdout, re.M) == ["1", "2"]
    assert dc.message_count() == 4
    # Under the threshold now: the next run expunges nothing.
    assert "expunged" not in retention_run(dc, DAY).stdout
