"""Fail closed (DESIGN.md principle 7), through a real Dovecot and clamd.

A module listed in dovekie_modules for a user that fails to start (a bad
value of one of its settings, globally or from a userdb field; its .so
missing, unloadable or unsafe; an init error; a misspelt setting with its
prefix; a global-only setting given from userdb) refuses what it guards
with a temporary error, never lets it through unguarded:
    antivirus  save and read: LMTP 451 4.3.0 "Mail checks are unavailable
               because of a server configuration problem, try again later",
               IMAP APPEND/COPY/MOVE NO [UNAVAILABLE], body FETCH refused
               (BYE under Dovecot's default imap_fetch_failure =
               disconnect-immediately; with no-after a NO, which Dovecot
               2.3 always codes [SERVERBUG]);
    retention  POP3: the login is refused with -ERR [SYS/TEMP];
    search     nothing: Dovecot's own search answers.
Every refusal logs an error naming the module, the setting and the value.
`doveadm dovekie check [-u USER | -A]` reports each problem once.

To boot few Dovecots, one instance (`main`) carries most scenarios as
users whose userdb fields hold the bad values; global bad values, and
damaged module directories, get one instance per case.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import re
import shutil
import smtplib
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from clamd_harness import EICAR, EICAR_SIGNATURE, PrivateClamd
from dovekie_harness import (CLIENT_TIMEOUT, DovecotStartError, PrivateDovecot,
                             ensure_mail_account, is_dovecot24, make_message)

GUARD_TEXT = ("Mail checks are unavailable because of a server configuration "
              "problem, try again later")
EXTRA_CONF = "mail_attribute_dict = file:%h/dovecot-attributes\n"
SEARCH_INDEX_FILE = "dovekie-search.db"
MODULES = ("antivirus", "retention", "search")
PLACE = "@MODULE_DIR@"  # stands for the instance's module directory in USERS

# --- the main instance: one user per scenario -----------------------------

DOVECOT24 = is_dovecot24()
# Dovecot 2.4 types every dovekie setting: its doveconf reads "30MB" as a
# size (30 MiB), so there the size out of the module's range is 0; and a
# userdb value of the wrong type (not one of a choice's values) fails the
# whole session in Dovecot before dovekie runs (TYPE_BAD_24).
BAD_SIZE = "0" if DOVECOT24 else "30MB"
TYPE_BAD_24 = [
    ("av_action", "dovekie_av_action", "bogus"),
    ("ret_dele", "dovekie_retention_dele", "destroy"),
]

# Users whose antivirus module fails to start: (user, key, value).
AV_BAD = [
    ("av_size", "dovekie_av_max_size", BAD_SIZE),
    ("av_quarantine", "dovekie_av_quarantine_mailbox", "INBOX"),
    ("av_action", "dovekie_av_action", "bogus"),
    ("av_misspelt", "dovekie_av_max_sise", "30M"),
    ("av_init", "dovekie_av_clamd", "nowhere"),  # fails in the module's init
]
# Users whose retention module fails to start.
RET_BAD = [
    ("ret_neg", "dovekie_retention_days", "-3"),
    ("ret_abc", "dovekie_retention_days", "abc"),
    ("ret_dele", "dovekie_retention_dele", "destroy"),
]
if DOVECOT24:
    AV_BAD = [bad for bad in AV_BAD if bad not in TYPE_BAD_24]
    RET_BAD = [bad for bad in RET_BAD if bad not in TYPE_BAD_24]
# Users given a global-only setting from userdb: every listed module fails.
GLOBAL_ONLY = [
    ("userdir", "dovekie_module_dir", PLACE),  # the right directory, wrong origin
    ("userclock", "dovekie_test_clock_offset", "0"),
]
SEARCH_USERDB = {"dovekie_modules": "search", "fts": "dovekie"}

USERS = {
    "carol": {},  # the global config, which is good: antivirus retention
    "nomod": {"dovekie_modules": "none"},
    "modulez": {"dovekie_modulez": "antivirus"},
    "search_ok": dict(SEARCH_USERDB),
    "search_bad": dict(SEARCH_USERDB, dovekie_search_batch_size="0"),
}
for _user, _key, _value in AV_BAD + RET_BAD + GLOBAL_ONLY + TYPE_BAD_24:
    USERS[_user] = {_key: _value}


# --- fixtures -------------------------------------------------------------

@pytest.fixture(scope="module")
def clamd():
    with PrivateClamd() as instance:
        yield instance


@pytest.fixture(scope="module")
def module_files(module_paths) -> dict[str, Path]:
    files = {p.stem: p for p in module_paths}
    missing = [name for name in MODULES if name not in files]
    if missing:
        pytest.fail(f"modules not built: {', '.join(missing)}", pytrace=False)
    return files


def make_module_dir(files: dict[str, Path], damage: str | None = None) -> Path:
    """A module directory laid out as the harness lays out its own (a
    root-owned tree, 0755 directories, 0644 files), with antivirus.so and
    retention.so damaged as `damage` says: symlink (a link to a good copy
    elsewhere), group-writable, foreign-owner (owned by the mail user),
    missing, garbage (not a shared object); or writable-dir: the module
    directory itself is group-writable."""
    top = Path(tempfile.mkdtemp(prefix="dovekie-fail-closed-"))
    top.chmod(0o755)
    moddir, elsewhere = top / "lib" / "dovekie", top / "elsewhere"
    for d in (top / "lib", moddir, elsewhere):
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o755)
    for name in MODULES:
        dest = moddir / f"{name}.so"
        damaged = damage is not None and name in ("antivirus", "retention")
        if damaged and damage == "missing":
            continue
        if damaged and damage == "garbage":
            dest.write_bytes(b"this is not a shared object\n" * 64)
        elif damaged and damage == "symlink":
            real = elsewhere / dest.name
            shutil.copyfile(files[name], real)
            real.chmod(0o644)
            dest.symlink_to(real)
            continue
        else:
            shutil.copyfile(files[name], dest)
        dest.chmod(0o664 if damaged and damage == "group-writable" else 0o644)
        if damaged and damage == "foreign-owner":
            uid, gid, _ = ensure_mail_account()
            os.chown(dest, uid, gid)
    if damage == "writable-dir":
        moddir.chmod(0o775)
    return moddir


def boot(plugin_path, moddir: Path, users: dict, clamd, extra_conf: str = "",
         **settings) -> PrivateDovecot:
    plugin_settings = {"dovekie_module_dir": str(moddir),
                       "dovekie_modules": "antivirus retention",
                       "dovekie_av_clamd": clamd.unix_address,
                       "dovekie_av_connect_timeout_msecs": "1000",
                       "dovekie_av_scan_timeout_msecs": "5000",
                       "dovekie_av_action": "reject",
                       "dovekie_retention_days": "7"}
    plugin_settings.update(settings)
    dc = PrivateDovecot(
        users={name: {"password": "secret",
                      "userdb": {k: str(v).replace(PLACE, str(moddir))
                                 for k, v in userdb.items()}}
               for name, userdb in users.items()},
        plugin_path=plugin_path, mail_plugins="$mail_plugins fts dovekie",
        plugin_settings=plugin_settings, extra_conf=EXTRA_CONF + extra_conf)
    dc.start()
    return dc


@contextmanager
def booted(plugin_path, module_files, users: dict, clamd, damage: str | None = None,
           **kwargs):
    """A Dovecot booted on a module directory of its own (damaged as
    `damage` says), stopped and its directory removed afterwards."""
    moddir = make_module_dir(module_files, damage)
    dc = None
    try:
        dc = boot(plugin_path, moddir, users, clamd, **kwargs)
        yield dc
    finally:
        try:
            if dc is not None:
                dc.stop()
        finally:
            shutil.rmtree(moddir.parents[1], ignore_errors=True)


@pytest.fixture(scope="module")
def main(plugin_path, module_files, clamd):
    with booted(plugin_path, module_files, USERS, clamd) as dc:
        yield dc


# Bad global values: each instance breaks antivirus and retention at once;
# user "av" lists antivirus only, user "pop" retention only.
GLOBAL_BAD = [
    pytest.param((("dovekie_av_max_size", BAD_SIZE), ("dovekie_retention_days", "-3")),
                 id=f"max_size={BAD_SIZE},days=-3"),
    pytest.param((("dovekie_av_quarantine_mailbox", "INBOX"),
                  ("dovekie_retention_days", "abc")), id="quarantine=INBOX,days=abc"),
    pytest.param((("dovekie_av_quarantine_mailbox", ""),
                  ("dovekie_retention_dayz", "7")), id="quarantine=empty,dayz"),
    pytest.param((("dovekie_av_action", "bogus"), ("dovekie_retention_dele", "destroy")),
                 id="action=bogus,dele=destroy"),
    pytest.param((("dovekie_av_max_sise", "30M"), ("dovekie_retention_view", "everyone")),
                 id="max_sise,view=everyone"),
]
SPLIT_USERS = {"av": {"dovekie_modules": "antivirus"},
               "pop": {"dovekie_modules": "retention"}}


@pytest.fixture(scope="module", params=GLOBAL_BAD)
def global_bad(request, plugin_path, module_files, clamd):
    """(dc, (av key, value), (retention key, value)) with both bad globally;
    imap_fetch_failure = no-after, so a refused FETCH answers NO."""
    av_bad, ret_bad = request.param
    try:
        with booted(plugin_path, module_files, SPLIT_USERS, clamd,
                    extra_conf="imap_fetch_failure = no-after\n",
                    **{av_bad[0]: av_bad[1], ret_bad[0]: ret_bad[1]}) as dc:
            yield dc, av_bad, ret_bad
    except DovecotStartError as err:
        # Dovecot 2.4's doveconf checks the type of every dovekie setting
        # and knows every name: an unknown key or a value of the wrong
        # type stops Dovecot before it starts, which is checked here.
        if not DOVECOT24:
            raise
        refused = re.search(r"doveconf: Fatal: [^\n]*", str(err))
        assert refused and (av_bad[0] in refused.group(0) or ret_bad[0] in refused.group(0)), err
        why = re.sub(r"^doveconf: Fatal: Error in configuration file \S+ ", "",
                     refused.group(0))
        pytest.skip(f"Dovecot 2.4 refuses this configuration at startup (checked: {why})")


@pytest.fixture(scope="module",
                params=["symlink", "group-writable", "foreign-owner", "writable-dir",
                        "missing", "garbage"])
def damaged(request, plugin_path, module_files, clamd):
    """(dc, damage): antivirus.so and retention.so damaged, search.so fine."""
    with booted(plugin_path, module_files, SPLIT_USERS, clamd, request.param) as dc:
        yield dc, request.param


# --- helpers --------------------------------------------------------------

def user_lines(dc: PrivateDovecot, user: str, since: int = 0) -> list[str]:
    """Log lines of user's sessions, e.g. `lmtp(user)<pid><id>: ...`, and
    the line pop3 logs when it cannot set the user up (a refused login):
    `pop3(pid): Error: dovekie: refusing the POP3 login of user: ...`."""
    rx = re.compile(rf"\w\({re.escape(user)}\)|\w\(\d+\): Error: dovekie: "
                    rf"refusing the POP3 login of {re.escape(user)}:")
    return [line for line in dc.log_since(since).splitlines() if rx.search(line)]


def setting_rx(key: str, value: str) -> str:
    """The setting and, after it on the same line, its value (maybe quoted):
    `key = value`, `key: 'value' is not ...`, `key "value"`."""
    if value == "":
        return rf"{re.escape(key)}\b[^\n]*?(?:\"\"|''|=\s*(?:[:;,)]|$)|\bempty\b)"
    return (rf"{re.escape(key)}\b[^\n]*?(?<![\w.-])[\"']?{re.escape(value)}[\"']?"
            rf"(?![\w.])")


def wait_user_error(dc: PrivateDovecot, user: str, *patterns: str, since: int = 0,
                    timeout: float = 10.0) -> list[str]:
    """The user's Error lines matching every pattern, once there is one."""
    rx = [re.compile(p) for p in patterns]
    head = re.compile(rf"\w\((?:{re.escape(user)}\)[^:\n]*|\d+\)): Error: ")
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in user_lines(dc, user, since)
                 if head.search(line) and all(r.search(line) for r in rx)]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert found, (f"no error line of {user} matching {patterns!r}; its lines:\n"
                   + "\n".join(user_lines(dc, user, since)[-30:]))
    return found


def wait_logout(dc: PrivateDovecot, user: str, proto: str, since: int) -> None:
    """Waits for the session's last line, so that everything it logged
    before is in the log."""
    dc.wait_for_log(rf"^[^\n]*\b{proto}\({re.escape(user)}\)[^\n]*"
                    rf"(?:Logged out|Disconnected)", since=since)


def eicar_message(to: str) -> bytes:
    return make_message("the EICAR test string",
                        "The next line is the EICAR test string.\n"
                        + EICAR.decode() + "\n", to=to)


def assert_no_eicar_stored(dc: PrivateDovecot, user: str) -> None:
    """No file under the user's home holds the EICAR string (any mailbox,
    the quarantine mailbox, temporary files, indexes)."""
    home = dc.home(user)
    hits = [str(p.relative_to(home)) for p in home.rglob("*")
            if p.is_file() and EICAR in p.read_bytes()]
    assert not hits, f"EICAR stored for {user}: {hits}"


def stored_messages(dc: PrivateDovecot, user: str) -> list[Path]:
    """Message files in every Maildir folder of the user (new/ and cur/)."""
    root = dc.home(user) / "Maildir"
    return [p for p in root.rglob("*") if p.is_file() and p.parent.name in ("new", "cur")]


def plant(dc: PrivateDovecot, user: str, message: bytes) -> None:
    """Puts a message straight into the user's INBOX on disk, past every
    hook (delivery is refused for the users this is used for)."""
    root = dc.home(user) / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    path = root / "new" / f"{uuid.uuid4().hex}.planted"
    path.write_bytes(message)
    for p in (root, root / "cur", root / "new", root / "tmp", path):
        os.chown(p, dc.mail_uid, dc.mail_gid)


def assert_guarded_lmtp(code: int, text: str) -> None:
    assert code == 451, (code, text)
    assert text.startswith("4.3.0"), text
    assert GUARD_TEXT in text, text


def imap_text(data) -> str:
    parts = []
    for item in data or []:
        if isinstance(item, tuple):
            parts.extend(x for x in item if isinstance(x, bytes))
        elif isinstance(item, bytes):
            parts.append(item)
    return b" ".join(parts).decode(errors="replace")


def assert_guarded_imap(typ: str, data, what: str) -> None:
    text = imap_text(data)
    assert typ == "NO", f"{what}: {typ} {text}"
    assert "[UNAVAILABLE]" in text, f"{what}: {text}"
    assert GUARD_TEXT in text, f"{what}: {text}"


def pop3_login(dc: PrivateDovecot, user: str) -> tuple[bytes, list[bytes]]:
    """USER/PASS, then RETR 1, DELE 1 and QUIT whatever the answer: returns
    the reply to PASS and the replies (or errors) of the three commands."""
    pop = poplib.POP3("127.0.0.1", dc.ports["pop3"], timeout=CLIENT_TIMEOUT)
    after = []
    try:
        pop.user(user)
        try:
            reply = pop.pass_(dc.password(user))
        except poplib.error_proto as err:
            reply = err.args[0]
        for command in (lambda: pop.retr(1)[0], lambda: pop.dele(1), pop.quit):
            try:
                after.append(command())
            except (poplib.error_proto, OSError, EOFError) as err:
                after.append(repr(err).encode())
    finally:
        pop.close()
    return reply, after


def assert_pop3_refused(dc: PrivateDovecot, user: str) -> None:
    """POP3 is refused with [SYS/TEMP], and the user's one message is still
    there for IMAP, with no flag POP3 would have set."""
    before = stored_messages(dc, user)
    assert len(before) == 1, before
    reply, after = pop3_login(dc, user)
    assert reply.startswith(b"-ERR [SYS/TEMP]"), reply
    assert not any(r.startswith(b"+OK") for r in after), after
    assert len(stored_messages(dc, user)) == 1
    imap = dc.imap(user)
    try:
        typ, data = imap.select("INBOX")
        assert typ == "OK" and int(data[0]) == 1, data
        typ, data = imap.fetch("1", "(FLAGS)")
        assert typ == "OK", data
        assert b"\\Deleted" not in data[0] and b"$PopHidden" not in data[0], data
    finally:
        imap.logout()


def body_fetch(dc: PrivateDovecot, user: str, item: str) -> tuple[str, str]:
    """FETCH item of the newest INBOX message: (NO/OK/BYE, all text)."""
    imap = dc.imap(user)
    try:
        typ, data = imap.select("INBOX")
        assert typ == "OK", data
        try:
            typ, data = imap.fetch(data[0].decode(), f"({item})")
        except imaplib.IMAP4.abort as err:  # BYE: a FETCH already started
            return "BYE", str(err)
        return typ, imap_text(data)
    finally:
        try:
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def doveadm_check(dc: PrivateDovecot, *args: str):
    return dc.doveadm("dovekie", "check", *args)


def name_rx(name: str) -> re.Pattern:
    return re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")


def report_lines(stdout: str, *needles: str) -> list[str]:
    return [line for line in stdout.splitlines()
            if all(name_rx(n).search(line) for n in needles)]


# --- A: antivirus, bad value from userdb ------------------------------------

@pytest.mark.parametrize("user,key,value", AV_BAD, ids=[u for u, _, _ in AV_BAD])
def test_userdb_bad_av_setting_tempfails_lmtp_and_logs_it(main, user, key, value):
    """A: antivirus fails to start for one user (a bad userdb value, a
    misspelt dovekie_av_ key, an init error): LMTP delivery of clean mail
    and of EICAR gets 451 4.3.0, nothing is stored, and the log names the
    module, the setting and the value."""
    dc = main
    offset = dc.log_offset()
    stored = len(stored_messages(dc, user))
    code, text = dc.deliver(f"{user}@example.test", make_message("clean", "clean\n"))
    assert_guarded_lmtp(code, text)
    code, text = dc.deliver(f"{user}@example.test", eicar_message(f"{user}@example.test"))
    assert_guarded_lmtp(code, text)
    assert len(stored_messages(dc, user)) == stored
    assert_no_eicar_stored(dc, user)
    wait_user_error(dc, user, "antivirus", setting_rx(key, value), since=offset)
    # One line when the module fails to start and one per refusal at most:
    # two refused deliveries, each its own session.
    named = [line for line in user_lines(dc, user, offset) if key in line]
    assert 1 <= len(named) <= 4, named


@pytest.mark.parametrize("user,key,value", AV_BAD, ids=[u for u, _, _ in AV_BAD])
def test_userdb_bad_av_setting_refuses_append_copy_and_move(main, user, key, value):
    """A: antivirus failed for the user: IMAP APPEND (clean and EICAR),
    COPY and MOVE of a stored message get NO [UNAVAILABLE]; the source
    message stays, the target mailbox stays empty, and each refusal logs
    one error line."""
    dc = main
    plant(dc, user, make_message("stored before", "stored before the module broke\n"))
    target = f"Target{uuid.uuid4().hex[:8]}"
    offset = dc.log_offset()
    imap = dc.imap(user)
    try:
        typ, data = imap.select("INBOX")
        assert typ == "OK", data
        count = int(data[0])
        assert count >= 1
        typ, data = imap.append("INBOX", None, None, make_message("clean", "clean\n"))
        assert_guarded_imap(typ, data, "APPEND clean")
        typ, data = imap.append("INBOX", None, None, eicar_message(f"{user}@example.test"))
        assert_guarded_imap(typ, data, "APPEND EICAR")
        assert imap.create(target)[0] == "OK"
        typ, data = imap.copy(str(count), target)
        assert_guarded_imap(typ, data, "COPY")
        typ, data = imap._simple_command("MOVE", str(count), target)
        assert_guarded_imap(typ, data, "MOVE")
        typ, data = imap.status(target, "(MESSAGES)")
        assert typ == "OK" and b"MESSAGES 0" in data[0], data
        typ, data = imap.select("INBOX")
        assert typ == "OK" and int(data[0]) == count, data
    finally:
        imap.logout()
    assert_no_eicar_stored(dc, user)
    # One error line per refused command, plus the module's failure.
    wait_logout(dc, user, "imap", offset)
    errors = [line for line in user_lines(dc, user, offset)
              if ": Error: " in line and "antivirus" in line]
    assert 4 <= len(errors) <= 5, errors


FETCH_ITEMS = ["BODY.PEEK[]", "BODY.PEEK[TEXT]", "BINARY.PEEK[]"]


@pytest.mark.parametrize("item", FETCH_ITEMS)
@pytest.mark.parametrize("user", [u for u, _, _ in AV_BAD])
def test_userdb_bad_av_setting_refuses_body_fetch(main, user, item):
    """A: antivirus (which guards reads) failed for the user: a FETCH of a
    body of mail that was already in the Maildir is refused with the
    reason, and no byte of the body is sent. The main instance keeps
    Dovecot's default imap_fetch_failure = disconnect-immediately, under
    which a failed FETCH ends the session with BYE, so BYE counts as the
    refusal (the global-value instances set no-after and expect NO)."""
    dc = main
    marker = f"planted-body-{uuid.uuid4().hex}"
    plant(dc, user, make_message("planted", f"{marker}\n"))
    offset = dc.log_offset()
    typ, text = body_fetch(dc, user, item)
    assert typ in ("NO", "BYE"), (typ, text)
    assert marker not in text, text
    assert GUARD_TEXT in text, text
    wait_user_error(dc, user, "antivirus", since=offset)


def test_refused_fetch_logs_one_error_line(main):
    """A: one refused FETCH BODY.PEEK[] (antivirus failed for av_size) logs
    one error line for the refusal, besides the one line the session logs
    when the module fails to start."""
    dc, user = main, "av_size"
    plant(dc, user, make_message("planted", "one refusal, one line\n"))
    offset = dc.log_offset()
    typ, text = body_fetch(dc, user, "BODY.PEEK[]")
    assert typ in ("NO", "BYE"), (typ, text)
    wait_logout(dc, user, "imap", offset)
    errors = [line for line in user_lines(dc, user, offset)
              if ": Error: " in line and "antivirus" in line]
    assert len(errors) == 2, "\n".join(errors)


# --- A: retention, bad value from userdb --------------------------------------

@pytest.mark.parametrize("user,key,value", RET_BAD, ids=[u for u, _, _ in RET_BAD])
def test_userdb_bad_retention_setting_refuses_pop3(main, user, key, value):
    """A: retention fails to start for one user: delivery still works
    (antivirus is fine), the POP3 login is refused with -ERR [SYS/TEMP], so
    RETR 1/DELE 1/QUIT delete nothing and IMAP still sees the message; the
    log names retention, the setting and the value."""
    dc = main
    if not stored_messages(dc, user):
        code, text = dc.deliver(f"{user}@example.test", make_message("keep me", "keep\n"))
        assert code == 250, text
    offset = dc.log_offset()
    assert_pop3_refused(dc, user)
    wait_user_error(dc, user, "retention", setting_rx(key, value), since=offset)


def test_refused_pop3_login_logs_one_error_line(main):
    """A: one refused POP3 login (retention failed for ret_dele) logs one
    error line for the refusal, besides the one line the session logs when
    the module fails to start (lines of the pop3 process with or without
    the user name in their prefix both count)."""
    dc, user = main, "ret_neg" if DOVECOT24 else "ret_dele"
    if not stored_messages(dc, user):
        plant(dc, user, make_message("keep me", "keep\n"))
    offset = dc.log_offset()
    reply, _ = pop3_login(dc, user)
    assert reply.startswith(b"-ERR [SYS/TEMP]"), reply
    pattern = (rf"^[^\n]*\bpop3\((?:{re.escape(user)}|\d+)\)[^\n]*: Error: "
               rf"[^\n]*retention[^\n]*$")
    # Waits for a third line that should never come.
    errors = dc.find_log_at_least(pattern, 3, timeout=2.0, since=offset)
    assert len(errors) == 2, [m.group(0) for m in errors]


# --- A: search, bad value from userdb -----------------------------------------

def test_failed_search_module_falls_back_to_dovecot_search(main):
    """A: the search module fails to start for search_bad
    (dovekie_search_batch_size = 0): SEARCH BODY still answers correctly
    (Dovecot's own search), the same as for search_ok whose index works,
    and no index is built; the log names search and the setting."""
    dc = main
    offset = dc.log_offset()
    results = {}
    for user in ("search_ok", "search_bad"):
        imap = dc.imap(user)
        try:
            for i, body in enumerate(["alpha zebrafish one", "beta nothing",
                                      "gamma zebrafish three"]):
                typ, data = imap.append("INBOX", None, None,
                                        make_message(f"s{i}", body + "\n"))
                assert typ == "OK", data
            assert imap.select("INBOX")[0] == "OK"
            typ, data = imap.uid("SEARCH", "BODY", "zebrafish")
            assert typ == "OK", data
            results[user] = data[0].split()
        finally:
            imap.logout()
    assert results["search_bad"] == [b"1", b"3"], results
    assert results["search_ok"] == results["search_bad"], results
    assert (dc.home("search_ok") / "Maildir" / SEARCH_INDEX_FILE).exists()
    assert not (dc.home("search_bad") / "Maildir" / SEARCH_INDEX_FILE).exists()
    wait_user_error(dc, "search_bad", "search", setting_rx("dovekie_search_batch_size", "0"),
                    since=offset)


if DOVECOT24:
    @pytest.mark.parametrize("user,key,value", TYPE_BAD_24, ids=[u for u, _, _ in TYPE_BAD_24])
    def test_userdb_value_of_the_wrong_type_fails_the_session(main, user, key, value):
        """A, Dovecot 2.4: a userdb value that is not of its setting's type
        fails the user's session in Dovecot itself: LMTP tempfails (4xx),
        nothing is stored, IMAP and POP3 refuse the user, and the log names
        the setting."""
        dc = main
        offset = dc.log_offset()
        stored = len(stored_messages(dc, user))
        code, text = dc.deliver(f"{user}@example.test", eicar_message(f"{user}@example.test"))
        assert 400 <= code < 500, (code, text)
        code, text = dc.deliver(f"{user}@example.test", make_message("clean", "clean\n"))
        assert 400 <= code < 500, (code, text)
        assert len(stored_messages(dc, user)) == stored
        assert_no_eicar_stored(dc, user)
        try:
            imap = dc.imap(user)
            selected = imap.select("INBOX")
            imap.logout()
        except (imaplib.IMAP4.error, imaplib.IMAP4.abort, OSError) as err:
            selected = ("refused", err)
        assert selected[0] != "OK", selected
        reply, _ = pop3_login(dc, user)
        assert reply.startswith(b"-ERR"), reply
        dc.wait_for_log(rf"Failed to override configuration from userdb: [^\n]*"
                        rf"{re.escape(key)}[^\n]*{re.escape(value)}", since=offset)


# --- A: only that user ------------------------------------------------------

def test_bad_userdb_value_affects_only_that_user(main):
    """A: one LMTP transaction to carol (good config) and av_size
    (dovekie_av_max_size=BAD_SIZE from userdb): carol gets 250 and the mail,
    av_size gets 451 4.3.0; carol's EICAR is still rejected by a working
    scanner and carol can use POP3."""
    dc = main
    before = dc.message_count("INBOX", user="carol")
    conn = dc.lmtp()
    try:
        conn.ehlo_or_helo_if_needed()
        assert conn.mail("sender@example.test")[0] == 250
        assert conn.rcpt("carol@example.test")[0] == 250
        code, text = conn.rcpt("av_size@example.test")
        replies = []
        if code != 250:
            replies.append(("av_size", code, text.decode(errors="replace")))
        try:
            code, text = conn.data(make_message("both", "to two users\n"))
        except smtplib.SMTPDataError as err:
            code, text = err.smtp_code, err.smtp_error
        replies.insert(0, ("carol", code, text.decode(errors="replace")))
        if len(replies) == 1:
            code, text = conn.getreply()
            replies.append(("av_size", code, text.decode(errors="replace")))
    finally:
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()
    assert replies[0][1] == 250, replies
    assert_guarded_lmtp(replies[1][1], replies[1][2])
    assert dc.message_count("INBOX", user="carol") == before + 1
    code, text = dc.deliver("carol@example.test", eicar_message("carol@example.test"))
    assert code == 550 and EICAR_SIGNATURE in text, text
    reply, after = pop3_login(dc, "carol")
    assert reply.startswith(b"+OK"), reply


# --- B and C: unknown settings ---------------------------------------------------

@pytest.mark.parametrize("user", ["nomod", "search_ok", "carol"])
def test_options_of_modules_not_loaded_are_not_unknown(main, user):
    """B: the global config sets dovekie_av_* and dovekie_retention_*;
    users who load neither (dovekie_modules = none from userdb), or only
    search, or both, log no "unknown setting" error in IMAP and LMTP."""
    dc = main
    offset = dc.log_offset()
    code, text = dc.deliver(f"{user}@example.test", make_message("hello", "hello\n"))
    assert code == 250, text
    imap = dc.imap(user)
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()
    wait_logout(dc, user, "imap", offset)
    bad = [line for line in user_lines(dc, user, offset)
           if re.search(r"unknown setting|Error: ", line)]
    assert not bad, bad


def test_misspelt_loader_key_is_still_unknown(main):
    """B: a truly misspelt unprefixed key (dovekie_modulez from userdb)
    still logs "unknown setting(s)" naming it."""
    dc = main
    offset = dc.log_offset()
    imap = dc.imap("modulez")
    imap.logout()
    wait_user_error(dc, "modulez", r"unknown setting\(s\)", "dovekie_modulez", since=offset)


@pytest.mark.parametrize("user,key,value", AV_BAD + RET_BAD,
                         ids=[u for u, _, _ in AV_BAD + RET_BAD])
def test_failed_module_gets_no_second_unknown_settings_line(main, user, key, value):
    """C: once a module failed to start, its own settings (the bad one and
    the global ones) are not reported again as "unknown setting(s) ... no
    loaded module declares them"; the failure itself is reported once per
    session."""
    dc = main
    offset = dc.log_offset()
    imap = dc.imap(user)
    imap.logout()
    wait_logout(dc, user, "imap", offset)
    lines = user_lines(dc, user, offset)
    assert not [line for line in lines if "no loaded module declares" in line], lines
    if key != "dovekie_av_max_sise":  # there the failure is an unknown key
        assert not [line for line in lines if "unknown setting" in line], lines
    named = [line for line in lines if re.search(setting_rx(key, value), line)]
    assert len(named) == 1, lines


# --- D: trust -----------------------------------------------------------------

@pytest.mark.parametrize("user,key,value", GLOBAL_ONLY, ids=[u for u, _, _ in GLOBAL_ONLY])
def test_global_only_setting_from_userdb_fails_every_listed_module(main, user, key, value):
    """D: dovekie_module_dir (even naming the right directory) or
    dovekie_test_clock_offset given from userdb: antivirus and retention
    both fail for that user (LMTP 451 4.3.0, POP3 -ERR [SYS/TEMP]) and the
    log says the setting is global-only."""
    dc = main
    offset = dc.log_offset()
    code, text = dc.deliver(f"{user}@example.test", eicar_message(f"{user}@example.test"))
    assert_guarded_lmtp(code, text)
    assert_no_eicar_stored(dc, user)
    if not stored_messages(dc, user):
        plant(dc, user, make_message("keep me", "keep\n"))
    assert_pop3_refused(dc, user)
    wait_user_error(dc, user, re.escape(key), r"global", since=offset)


def test_damaged_module_file_is_refused(damaged):
    """A and D: antivirus.so and retention.so in the module directory are a
    symlink (to a good copy), group-writable, owned by the mail user (not
    root), missing, or not a shared object, or the directory is
    group-writable: LMTP to a user listing antivirus gets 451 4.3.0 (EICAR is not
    stored), POP3 of a user listing retention is refused with [SYS/TEMP],
    and the log names the module."""
    dc, damage = damaged
    offset = dc.log_offset()
    code, text = dc.deliver("av@example.test", eicar_message("av@example.test"))
    assert_guarded_lmtp(code, text)
    code, text = dc.deliver("av@example.test", make_message("clean", "clean\n"))
    assert_guarded_lmtp(code, text)
    assert_no_eicar_stored(dc, "av")
    wait_user_error(dc, "av", "antivirus", since=offset)
    if not stored_messages(dc, "pop"):
        plant(dc, "pop", make_message("keep me", "keep\n"))
    offset = dc.log_offset()
    assert_pop3_refused(dc, "pop")
    wait_user_error(dc, "pop", "retention", since=offset)


# --- A: bad global values -------------------------------------------------------

def test_global_bad_av_setting_tempfails_delivery_append_and_fetch(global_bad):
    """A: a bad (or misspelt) dovekie_av_* value in the global config:
    LMTP (clean and EICAR) gets 451 4.3.0, APPEND NO [UNAVAILABLE], a body
    FETCH (imap_fetch_failure = no-after) NO with the reason (Dovecot
    picks the response code, [SERVERBUG]), nothing is stored, and the log names antivirus, the setting
    and the value."""
    dc, (key, value), _ = global_bad
    offset = dc.log_offset()
    code, text = dc.deliver("av@example.test", eicar_message("av@example.test"))
    assert_guarded_lmtp(code, text)
    code, text = dc.deliver("av@example.test", make_message("clean", "clean\n"))
    assert_guarded_lmtp(code, text)
    marker = f"planted-body-{uuid.uuid4().hex}"
    plant(dc, "av", make_message("planted", f"{marker}\n"))
    imap = dc.imap("av")
    try:
        typ, data = imap.append("INBOX", None, None, eicar_message("av@example.test"))
        assert_guarded_imap(typ, data, "APPEND EICAR")
    finally:
        imap.logout()
    for item in FETCH_ITEMS:
        typ, text = body_fetch(dc, "av", item)
        assert typ == "NO" and marker not in text, (item, typ, text)
        assert GUARD_TEXT in text, (item, text)
    assert_no_eicar_stored(dc, "av")
    wait_user_error(dc, "av", "antivirus", setting_rx(key, value), since=offset)
    assert not [line for line in user_lines(dc, "av", offset)
                if "no loaded module declares" in line]


def test_global_bad_retention_setting_refuses_pop3(global_bad):
    """A: a bad (or misspelt) dovekie_retention_* value in the global
    config: POP3 is refused with -ERR [SYS/TEMP] and deletes nothing; the
    log names retention, the setting and the value."""
    dc, _, (key, value) = global_bad
    if not stored_messages(dc, "pop"):
        plant(dc, "pop", make_message("keep me", "keep\n"))
    offset = dc.log_offset()
    assert_pop3_refused(dc, "pop")
    wait_user_error(dc, "pop", "retention", setting_rx(key, value), since=offset)


# --- E: doveadm dovekie check -------------------------------------------------------

def test_check_reports_global_problems_once(global_bad):
    """E: `doveadm dovekie check` on a config with a bad global antivirus
    and retention value exits non-zero and prints each problem once, on a
    line naming the setting, the value and "global"."""
    dc, av_bad, ret_bad = global_bad
    res = doveadm_check(dc)
    assert res.returncode != 0, res
    for key, value in (av_bad, ret_bad):
        lines = [line for line in res.stdout.splitlines() if key in line]
        assert len(lines) == 1, (key, res.stdout, res.stderr)
        assert re.search(setting_rx(key, value), lines[0]), lines
        assert name_rx("global").search(lines[0]), lines


def test_check_is_quiet_and_zero_on_a_good_config(main):
    """E: `doveadm dovekie check` on the main instance's global config
    (good) exits 0 and names no setting."""
    res = doveadm_check(main)
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    assert "dovekie_" not in res.stdout, res.stdout


@pytest.mark.parametrize("user", ["carol", "nomod", "search_ok"])
def test_check_user_with_good_config(main, user):
    """E: `doveadm dovekie check -u USER` for users whose config is good
    (including one with dovekie_modules = none) exits 0 and names no
    setting."""
    res = doveadm_check(main, "-u", user)
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    assert "dovekie_" not in res.stdout, res.stdout


CHECK_BAD = AV_BAD + RET_BAD + GLOBAL_ONLY + [
    ("search_bad", "dovekie_search_batch_size", "0"),
    ("modulez", "dovekie_modulez", "antivirus"),
]


@pytest.mark.parametrize("user,key,value", CHECK_BAD, ids=[u for u, _, _ in CHECK_BAD])
def test_check_user_reports_the_problem_once(main, user, key, value):
    """E: `doveadm dovekie check -u USER` for a user with a bad userdb
    value exits non-zero and prints one line naming the setting, the value
    and the user."""
    if value == PLACE:
        value = main.plugin_settings["dovekie_module_dir"]
    res = doveadm_check(main, "-u", user)
    assert res.returncode != 0, res
    lines = [line for line in res.stdout.splitlines() if key in line]
    assert len(lines) == 1, (res.stdout, res.stderr)
    assert re.search(setting_rx(key, value), lines[0]), lines
    assert name_rx(user).search(lines[0]), lines


def test_check_all_users(main):
    """E: `doveadm dovekie check -A` exits non-zero and prints each bad
    user's problem once, on a line naming the user and the setting; users
    with a good config are named on no line with a setting."""
    res = doveadm_check(main, "-A")
    assert res.returncode != 0, res
    for user, key, _ in CHECK_BAD:
        lines = report_lines(res.stdout, user, key)
        assert len(lines) == 1, (user, key, res.stdout, res.stderr)
    for user in ("carol", "nomod", "search_ok"):
        assert not [line for line in res.stdout.splitlines()
                    if name_rx(user).search(line) and "dovekie_" in line], res.stdout


def test_check_reports_a_damaged_module_file(damaged):
    """E: `doveadm dovekie check` with antivirus.so and retention.so
    damaged (as in test_damaged_module_file_is_refused) exits non-zero and
    reports each module once; `-A` too, not once per user (the problem is
    global). A group-writable module directory is one problem, reported
    once on a line naming the directory."""
    dc, damage = damaged
    moddir = dc.plugin_settings["dovekie_module_dir"]
    for args in ((), ("-A",)):
        res = doveadm_check(dc, *args)
        assert res.returncode != 0, (args, res)
        if damage == "writable-dir":
            lines = [line for line in res.stdout.splitlines() if moddir in line]
            assert len(lines) == 1, (args, res.stdout, res.stderr)
            continue
        for module in ("antivirus", "retention"):
            lines = [line for line in res.stdout.splitlines()
                     if name_rx(module).search(line) or f"/{module}.so" in line]
            assert len(lines) == 1, (args, module, res.stdout, res.stderr)
