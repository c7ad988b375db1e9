"""Boot a private, throw-away Dovecot for integration tests.

`PrivateDovecot` writes a self-contained dovecot.conf into a fresh temporary
directory, starts Debian's `dovecot` binary in the foreground (so we own the
master PID and never have to look processes up by name), waits until its
IMAP, POP3 and LMTP listeners on 127.0.0.1 accept connections, and offers
small helpers to talk to it and to read its log.

Only the Python standard library is used, so the module can be imported by
pytest's conftest as well as by the stand-alone sandbox script.

On Dovecot 2.4 (tests/dovecot24/run runs the suite inside a Debian 13 root
as root) the same arguments give 2.4's configuration: see conf_for_24() and
settings_24() for what is rewritten; the tests stay written in 2.3's terms.

Typical use:

    with PrivateDovecot(users={"alice": {"password": "secret"}}) as dc:
        imap = dc.imap()
        ...
        dc.wait_for_log(r"imap\\(alice\\).*: Info: dovekie-example: hook=save")
"""

from __future__ import annotations

import email.utils
import grp
import imaplib
import os
import poplib
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Iterable, Mapping, Optional

#: System account that owns mail when the tests run as root: Dovecot refuses
#: to run mail processes (imap, pop3, lmtp after privilege drop) as uid 0.
MAIL_USER = "dovekie-test"

#: Where Debian installs Dovecot's stock mail plugins.
SYSTEM_MODULE_DIR = Path("/usr/lib/dovecot/modules")

DEFAULT_USERS = {"alice": {"password": "secret"}}

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

# A sanitizer runtime to preload into every Dovecot process (and doveadm),
# for a plugin and modules built with --enable-asan/--enable-ubsan: ASan
# must be the first library loaded, and Dovecot's binaries are not
# instrumented. tests/run sets it for its ASan pass. Reports go to files
# in <tmp>/sanitizer/, which stop() turns into a test failure.
SANITIZER_PRELOAD = os.environ.get("DOVEKIE_SANITIZER_PRELOAD", "")


class SanitizerReport(AssertionError):
    """A Dovecot process of this instance wrote a sanitizer report."""
CLIENT_TIMEOUT = 15.0

# Characters that would break a passwd-file line or Dovecot's config syntax.
_PASSWD_FILE_BAD = re.compile(r"[:\s]")
_CONF_VALUE_BAD = re.compile(r"[\r\n{}]")


class DovecotStartError(RuntimeError):
    """Dovecot did not come up; the message carries the diagnostics."""


_VERSION: Optional[tuple[int, int]] = None


def dovecot_version() -> tuple[int, int]:
    """(major, minor) of the `dovecot` binary on PATH, asked once."""
    global _VERSION
    if _VERSION is None:
        out = subprocess.run(["dovecot", "--version"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True).stdout
        m = re.match(r"(\d+)\.(\d+)", out)
        if not m:
            raise RuntimeError(f"cannot read Dovecot's version from {out!r}")
        _VERSION = (int(m.group(1)), int(m.group(2)))
    return _VERSION


def is_dovecot24() -> bool:
    """True on Dovecot 2.4 and later: no plugin { } block, every setting
    declared, new variable syntax (see conf_for_24)."""
    return dovecot_version() >= (2, 4)


def _vars_24(value: str) -> str:
    """2.3's short variables in a value, in 2.4's %{...} form."""
    for old, new in (("%Ln", "%{user | username | lower}"), ("%h", "%{home}"),
                     ("%u", "%{user}"), ("%n", "%{user | username}"),
                     ("%d", "%{user | domain}")):
        value = value.replace(old, new)
    return value


def mail_location_24(location: str) -> str:
    """A 2.3 mail_location (driver:path[:KEY=value...]) as 2.4 settings."""
    parts = location.split(":")
    lines = [f"mail_driver = {parts[0]}"]
    if len(parts) > 1 and parts[1]:
        lines.append(f"mail_path = {_vars_24(parts[1])}")
    keys = {"INBOX": "mail_inbox_path", "INDEX": "mail_index_path",
            "CONTROL": "mail_control_path", "LAYOUT": "mailbox_list_layout",
            "INDEXPVT": "mail_index_private_path",
            "VOLATILEDIR": "mail_volatile_path"}
    for extra in parts[2:]:
        key, _, value = extra.partition("=")
        if key not in keys:
            raise ValueError(f"mail_location part {extra!r} has no 2.4 form here")
        lines.append(f"{keys[key]} = {_vars_24(value)}")
    return "\n".join(lines)


def mail_plugins_24(value: str, indent: str = "") -> str:
    """2.3's `$mail_plugins a b` (or `a b`) as 2.4's boollist block."""
    names = [{"zlib": "mail_compress"}.get(n, n) for n in value.split()
             if n != "$mail_plugins"]
    return (f"{indent}mail_plugins {{\n"
            + "".join(f"{indent}  {n} = yes\n" for n in names) + f"{indent}}}")


# The host's per-protocol parts (hosts/dovecot/dovekie-part.h): part name ->
# (plugin file, the protocol whose mail_plugins loads it, or None for the
# global list, where it goes with fts).
PARTS = {
    "pop3": ("lib95_dovekie_pop3_plugin.so", "pop3"),
    "lmtp": ("lib95_dovekie_lmtp_plugin.so", "lmtp"),
    "fts": ("lib95_dovekie_fts_plugin.so", None),
}


def conf_for_24(text: str) -> str:
    """Raw 2.3 configuration text (a test's extra_conf) in 2.4 syntax: the
    attribute dict, mail_location, metric grouping and short variables.
    Lines it does not know pass through; doveconf then names what is
    wrong."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^(\s*)mail_attribute_dict = file:(\S+)$", line)
        if m:
            out.append(f"{m.group(1)}mail_attribute {{\n  dict file {{\n"
                       f"    path = {_vars_24(m.group(2))}\n  }}\n}}")
            continue
        # mail_location, or a namespace's location
        m = re.match(r"^(\s*)(?:mail_)?location = (\S+)$", line)
        if m:
            out.extend(m.group(1) + part
                       for part in mail_location_24(m.group(2)).splitlines())
            continue
        m = re.match(r"^\s*mail_plugins = (.*)$", line)
        if m:
            out.append(mail_plugins_24(m.group(1)))
            continue
        m = re.match(r"^(\s*)group_by = ([\w ]+)$", line)
        if m:
            out.extend(f"{m.group(1)}group_by {g} {{\n{m.group(1)}}}"
                       for g in m.group(2).split())
            continue
        out.append(_vars_24(line))
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def settings_24(settings: Mapping[str, str]) -> str:
    """What 2.3 kept in the plugin { } block, as 2.4 settings: dovekie_*
    and other plugins' keys top-level, `fts = NAME` as the fts list filter,
    `quota = driver:name` as a quota root, zlib's as mail_compress's."""
    lines = []
    for key, value in settings.items():
        if key == "fts":
            lines.append(f"fts {value} {{\n}}")
        elif key == "quota":
            driver, _, name = value.partition(":")
            lines.append(f"quota \"{name or 'User quota'}\" {{\n  driver = {driver}\n}}")
        elif key == "zlib_save":
            lines.append(f"mail_compress_write_method = {value}")
        elif key == "zlib_save_level":
            lines.append(f"compress_gz_level = {value}")
        elif key == "quota_rule":
            m = re.match(r"^\*:storage=(\S+)$", value)
            if not m:
                raise ValueError(f"quota_rule {value!r} has no 2.4 form here")
            lines.append(f"quota_storage_size = {m.group(1)}")
        else:
            lines.append(f"{key} = {_vars_24(value)}")
    return "\n".join(lines)


def doveadm_peak_rss_kb(pid: int) -> int:
    """The peak RSS in KiB (VmHWM) of process `pid` while it runs doveadm,
    else 0 (gone, or not yet doveadm). Not ru_maxrss from os.wait4(): it
    survives exec, so it also counts the vforked copy of the (large) Python
    process that started it and doveadm's first image, doveconf, which
    parses the config and execs doveadm again. Callers sample this while
    the process runs and keep the highest value."""
    try:
        if not os.readlink(f"/proc/{pid}/exe").endswith("/doveadm"):
            return 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (bind to port 0).

    There is a small window in which another process could take the port
    before Dovecot binds it; that is accepted for a test harness.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def ensure_mail_account() -> tuple[int, int, str]:
    """Return (uid, gid, name) of the account that should own the mail.

    As root this is the system user `dovekie-test`, created on first use.
    Otherwise it is the current user (Dovecot supports unprivileged runs as
    long as every service runs as that same user).
    """
    if os.geteuid() != 0:
        uid, gid = os.getuid(), os.getgid()
        return uid, gid, pwd.getpwuid(uid).pw_name
    probe = subprocess.run(["getent", "passwd", MAIL_USER],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if probe.returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", MAIL_USER],
                       check=True, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    entry = pwd.getpwnam(MAIL_USER)
    return entry.pw_uid, entry.pw_gid, MAIL_USER


def make_message(subject: str, body: str,
                 sender: str = "sender@example.test",
                 to: str = "alice@example.test",
                 extra_headers: Optional[Mapping[str, str]] = None) -> bytes:
    """Build a small RFC 5322 message with CRLF line ends."""
    headers = {
        "From": sender,
        "To": to,
        "Subject": subject,
        "Date": email.utils.formatdate(localtime=False),
        "Message-ID": email.utils.make_msgid(domain="example.test"),
        "MIME-Version": "1.0",
        "Content-Type": "text/plain; charset=utf-8",
    }
    headers.update(extra_headers or {})
    lines = [f"{k}: {v}" for k, v in headers.items()]
    lines.append("")
    lines.extend(body.splitlines() or [""])
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _stop_master(proc: subprocess.Popen, tmpdir: str, keep: bool) -> None:
    """Terminate the Dovecot master by PID and remove the state directory.

    A module-level function (not a method) so that weakref.finalize can call
    it at interpreter exit without keeping the PrivateDovecot object alive.
    """
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()  # SIGKILL to the master PID only
            proc.wait(timeout=STOP_TIMEOUT)
        except ProcessLookupError:
            pass
    if not keep:
        shutil.rmtree(tmpdir, ignore_errors=True)


class PrivateDovecot:
    """A private Dovecot instance living in its own temporary directory.

    Parameters:
        users: {name: {"password": str, "userdb": {field: value}}}. Userdb
            fields end up as `userdb_<field>=<value>` extra fields, which
            Dovecot exposes to plugins like plugin settings (and they take
            precedence over the `plugin { }` block).
        plugin_path: built Dovecot mail plugin (.so) to install, or None for
            a stock Dovecot.
        module_files: built dovekie GModule .so files to install.
        plugin_settings: key/values for the `plugin { }` block. When a plugin
            is given, `dovekie_module_dir` defaults to the private module
            directory.
        mail_plugins: value of `mail_plugins`; defaults to "$mail_plugins
            dovekie" when a plugin is given.
        parts: the host's per-protocol parts (PARTS: "pop3", "lmtp", "fts")
            to load where mail_plugins has dovekie; None: every part built
            beside plugin_path (all of them are installed). Each is added
            where it belongs: dovekie_pop3 and dovekie_lmtp to their
            protocol's mail_plugins, dovekie_fts to the global one when it
            has fts. () leaves that to extra_conf (the shipped snippets); a
            part left out otherwise is a misconfiguration the plugin must
            refuse.
        extra_conf: raw text appended to dovecot.conf.
        mail_debug: set `mail_debug = yes` (very verbose log).
        ports: optional {"imap": n, "pop3": n, "lmtp": n} to pin ports.
        installed: use the dovekie installed on this machine (the Debian
            package): Dovecot's own plugin directory and dovekie's compiled-in
            module directory, nothing copied; enable it through extra_conf
            (e.g. the shipped conf.d snippet).
    """

    def __init__(self,
                 users: Optional[Mapping[str, Mapping]] = None,
                 plugin_path: Optional[os.PathLike | str] = None,
                 module_files: Iterable[os.PathLike | str] = (),
                 plugin_settings: Optional[Mapping[str, object]] = None,
                 mail_plugins: Optional[str] = None,
                 parts: Optional[Iterable[str]] = None,
                 extra_conf: str = "",
                 mail_debug: bool = False,
                 ports: Optional[Mapping[str, int]] = None,
                 installed: bool = False):
        self.installed = installed
        self.users = {name: dict(spec) for name, spec in
                      (users if users is not None else DEFAULT_USERS).items()}
        self.plugin_path = Path(plugin_path) if plugin_path else None
        self.module_files = [Path(p) for p in module_files]
        self._plugin_settings = dict(plugin_settings or {})
        self._mail_plugins = mail_plugins
        self._parts = None if parts is None else set(parts)
        unknown = (self._parts or set()) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown parts: {sorted(unknown)}")
        self.extra_conf = extra_conf
        self.mail_debug = mail_debug
        self._requested_ports = dict(ports or {})

        self.keep_tmp = os.environ.get("DOVEKIE_KEEP_TMP") == "1"
        self.tmpdir: Optional[Path] = None
        self.config_path: Optional[Path] = None
        self.log_path: Optional[Path] = None
        self.ports: dict[str, int] = {}
        self.mail_uid = self.mail_gid = -1
        self.mail_user = ""
        self.plugin_dir: Optional[Path] = None   # -> mail_plugin_dir
        self.module_dir: Optional[Path] = None   # -> dovekie_module_dir
        self.proc: Optional[subprocess.Popen] = None
        self._finalizer: Optional[weakref.finalize] = None

    # ------------------------------------------------------------------
    # Lifecycle

    def __enter__(self) -> "PrivateDovecot":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "PrivateDovecot":
        if self.proc is not None:
            raise RuntimeError("this PrivateDovecot was already started")
        self.mail_uid, self.mail_gid, self.mail_user = ensure_mail_account()
        self.tmpdir = Path(tempfile.mkdtemp(prefix="dovekie-dovecot-"))
        # mkdtemp creates 0700; the mail uid and Dovecot's own unprivileged
        # users (dovenull, dovecot) must be able to traverse it.
        self.tmpdir.chmod(0o755)
        self.config_path = self.tmpdir / "dovecot.conf"
        self.log_path = self.tmpdir / "dovecot.log"
        try:
            self._pick_ports()
            if self.installed:
                self.plugin_dir = SYSTEM_MODULE_DIR
            else:
                self._install_modules()
            self._write_users()
            self.config_path.write_text(self._render_config())
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def _sanitizer_env(self) -> dict[str, str]:
        """Environment for processes that load the plugin, or {}."""
        if not SANITIZER_PRELOAD:
            return {}
        logs = self.tmpdir / "sanitizer" / "report"
        # Dovecot's own leaks at exit are not ours to judge; unit tests
        # check our leaks under valgrind and LeakSanitizer.
        return {
            "LD_PRELOAD": SANITIZER_PRELOAD,
            "ASAN_OPTIONS": f"detect_leaks=0:abort_on_error=1:log_path={logs}",
            "UBSAN_OPTIONS": f"print_stacktrace=1:halt_on_error=1:log_path={logs}",
        }

    def process_env(self) -> dict[str, str]:
        """Environment for a process a test starts itself that loads the
        plugin (e.g. a doveadm run it kills): ours plus the sanitizer's."""
        return dict(os.environ, **self._sanitizer_env())

    def sanitizer_reports(self) -> list[str]:
        """Texts of the sanitizer reports written so far."""
        if self.tmpdir is None or not (self.tmpdir / "sanitizer").is_dir():
            return []
        return [f.read_text(errors="replace")
                for f in sorted((self.tmpdir / "sanitizer").iterdir())]

    def stop(self) -> None:
        """Stop Dovecot (SIGTERM, then SIGKILL) and clean up; idempotent.

        Raises SanitizerReport if a process wrote a sanitizer report."""
        reports = []
        if self._finalizer is not None and self._finalizer.alive:
            # Stop first, so the processes' last words are on disk.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
            reports = self.sanitizer_reports()
        self._stop_and_clean()
        if reports:
            raise SanitizerReport("sanitizer report(s) from Dovecot processes:\n"
                                  + "\n".join(reports))

    def _stop_and_clean(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # runs _stop_master at most once
        elif self.tmpdir is not None and not self.keep_tmp:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ------------------------------------------------------------------
    # Setup steps

    def _pick_ports(self) -> None:
        used: set[int] = set()
        for proto in ("imap", "pop3", "lmtp"):
            port = self._requested_ports.get(proto)
            while port is None or port in used:
                port = free_port()
            used.add(port)
            self.ports[proto] = port

    def _install_modules(self) -> None:
        """Copy the built plugin and modules into the private lib dirs.

        Copies rather than symlinks: the build tree may live under /root,
        which the mail uid cannot read, and dovekie's module loader refuses
        files that are group/world-writable or owned by someone else.
        """
        owner_uid, owner_gid = os.getuid(), os.getgid()
        self.plugin_dir = self.tmpdir / "lib" / "dovecot-modules"
        self.module_dir = self.tmpdir / "lib" / "dovekie"
        for d in (self.tmpdir / "lib", self.plugin_dir, self.module_dir):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)

        def install(src: Path, dest_dir: Path) -> None:
            if not src.is_file():
                raise FileNotFoundError(f"build artefact not found: {src}")
            dest = dest_dir / src.name
            shutil.copyfile(src, dest)
            os.chown(dest, owner_uid, owner_gid)
            dest.chmod(0o644)

        if self.plugin_path is not None:
            install(self.plugin_path, self.plugin_dir)
            # Every part built beside it; self.parts says which are loaded.
            for file, _ in PARTS.values():
                if (self.plugin_path.parent / file).is_file():
                    install(self.plugin_path.parent / file, self.plugin_dir)
        for module in self.module_files:
            install(module, self.module_dir)

        # mail_plugin_dir now points here, so make the stock plugins (fts,
        # quota, ...) reachable too. They are root-owned system files, so a
        # symlink is enough. Our own plugin wins if the names collide.
        if SYSTEM_MODULE_DIR.is_dir():
            for so in sorted(SYSTEM_MODULE_DIR.glob("*.so")):
                link = self.plugin_dir / so.name
                if not link.exists():
                    link.symlink_to(so)

    def _write_users(self) -> None:
        home_root = self.tmpdir / "home"
        home_root.mkdir(mode=0o755)
        home_root.chmod(0o755)
        lines = []
        for name, spec in self.users.items():
            password = str(spec.get("password", "secret"))
            for what, value in (("user name", name), ("password", password)):
                if _PASSWD_FILE_BAD.search(value) or not value:
                    raise ValueError(f"unsupported {what}: {value!r}")
            extra = []
            for key, value in dict(spec.get("userdb") or {}).items():
                value = str(value)
                # passwd-file extra fields are space-separated key=value.
                if _PASSWD_FILE_BAD.search(key) or re.search(r"\s", value):
                    raise ValueError(f"unsupported userdb field {key}={value!r}")
                if is_dovecot24():
                    value = _vars_24(value.replace("%{orig_user}", "%{original_user}"))
                extra.append(f"userdb_{key}={value}")
            home = self.home(name)
            home.mkdir(mode=0o700)
            os.chown(home, self.mail_uid, self.mail_gid)
            lines.append(f"{name}:{{PLAIN}}{password}:{self.mail_uid}:"
                         f"{self.mail_gid}::{home}::{' '.join(extra)}")
        users_file = self.tmpdir / "users"
        users_file.write_text("\n".join(lines) + "\n")
        # Read by the auth process, which runs as Dovecot's internal user.
        users_file.chmod(0o644)

    @property
    def plugin_settings(self) -> dict[str, str]:
        settings: dict[str, str] = {}
        if self.plugin_path is not None and not self.installed:
            settings["dovekie_module_dir"] = str(self.module_dir)
        settings.update({k: str(v) for k, v in self._plugin_settings.items()})
        return settings

    @property
    def parts(self) -> list[str]:
        """The parts this instance loads (see the class docstring). A build
        from before the split has none beside its plugin."""
        if self.plugin_path is None:
            return []
        found = [p for p in PARTS if (self.plugin_path.parent / PARTS[p][0]).is_file()]
        return [p for p in found if self._parts is None or p in self._parts]

    @property
    def mail_plugins(self) -> str:
        """The global mail_plugins, with dovekie_fts where it belongs."""
        if self._mail_plugins is not None:
            value = self._mail_plugins
        else:
            value = "$mail_plugins dovekie" if self.plugin_path is not None else ""
        names = value.split()
        if "fts" in self.parts and "fts" in names and "dovekie" in names:
            value += " dovekie_fts"
        return value

    def protocol_mail_plugins(self) -> dict[str, str]:
        """Protocol -> the plugins its mail_plugins adds (the pop3 and lmtp
        parts), for a global list that has dovekie."""
        if "dovekie" not in self.mail_plugins.split():
            return {}
        return {PARTS[p][1]: "dovekie_" + p for p in self.parts
                if PARTS[p][1] is not None}

    def _protocol_conf(self) -> str:
        if is_dovecot24():
            return "".join(f"protocol {proto} {{\n{mail_plugins_24(names, '  ')}\n}}\n"
                           for proto, names in self.protocol_mail_plugins().items())
        return "".join(f"protocol {proto} {{\n  mail_plugins = $mail_plugins {names}\n}}\n"
                       for proto, names in self.protocol_mail_plugins().items())

    def _render_config(self) -> str:
        for key, value in self.plugin_settings.items():
            if _CONF_VALUE_BAD.search(key) or _CONF_VALUE_BAD.search(value):
                raise ValueError(f"unsupported plugin setting {key}={value!r}")
        if is_dovecot24():
            return self._render_config_24()
        t = self.tmpdir
        plugin_block = "\n".join(f"  {k} = {v}"
                                 for k, v in self.plugin_settings.items())

        if os.geteuid() == 0:
            # Stock Debian accounts for login/internal processes.
            privilege_conf = ""
        else:
            # Unprivileged run: every service must run as ourselves and
            # nothing may chroot.
            privilege_conf = f"""
default_login_user = {self.mail_user}
default_internal_user = {self.mail_user}
default_internal_group = {grp.getgrgid(self.mail_gid).gr_name}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service pop3-login {{
  chroot =
}}
service auth-worker {{
  user = $default_internal_user
}}
"""

        return f"""# Generated by dovekie_harness.py for one test run; do not edit.
base_dir = {t}/run
state_dir = {t}/state
# A distinct name keeps `doveadm instance list` entries apart.
instance_name = dovekie-{t.name}
listen = 127.0.0.1
protocols = imap pop3 lmtp
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# Users are plain names; LMTP's RCPT TO:<alice@example.test> is looked up
# as "alice".
auth_username_format = %Ln
log_path = {self.log_path}
info_log_path = {self.log_path}
mail_debug = {"yes" if self.mail_debug else "no"}
mail_location = maildir:~/Maildir
mail_plugin_dir = {self.plugin_dir}
mail_plugins = {self.mail_plugins}
pop3_uidl_format = %08Xu%08Xv
postmaster_address = postmaster@example.test
first_valid_uid = {self.mail_uid}
last_valid_uid = {self.mail_uid}
first_valid_gid = {self.mail_gid}
last_valid_gid = {self.mail_gid}
{privilege_conf}
passdb {{
  driver = passwd-file
  args = {t}/users
}}
userdb {{
  driver = passwd-file
  args = {t}/users
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.ports["imap"]}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.ports["pop3"]}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.ports["lmtp"]}
  }}
}}

plugin {{
{plugin_block}
}}
{self._protocol_conf()}
{self._sanitizer_conf()}
{self.extra_conf}
"""

    def _render_config_24(self) -> str:
        """The same instance in Dovecot 2.4's syntax. Run as root only (the
        Debian 13 root of tests/dovecot24/run), with no sanitizer."""
        t = self.tmpdir
        if os.geteuid() != 0 or SANITIZER_PRELOAD:
            raise RuntimeError("the Dovecot 2.4 configuration is written for root "
                               "runs without a sanitizer")
        listeners = "\n".join(
            f"""service {proto}{'-login' if proto != 'lmtp' else ''} {{
  inet_listener {proto} {{
    listen = 127.0.0.1
    port = {self.ports[proto]}
  }}
}}""" for proto in ("imap", "pop3", "lmtp"))
        return f"""# Generated by dovekie_harness.py for one test run; do not edit.
dovecot_config_version = 2.4.1
dovecot_storage_version = 2.4.1
base_dir = {t}/run
state_dir = {t}/state
instance_name = dovekie-{t.name}
listen = 127.0.0.1
protocols = imap pop3 lmtp
ssl = no
auth_allow_cleartext = yes
auth_mechanisms = plain login
auth_username_format = %{{user | username | lower}}
log_path = {self.log_path}
info_log_path = {self.log_path}
{"log_debug = category=mail" if self.mail_debug else ""}
mail_driver = maildir
mail_path = ~/Maildir
mail_plugin_dir = {self.plugin_dir}
{mail_plugins_24(self.mail_plugins) if self.mail_plugins else ""}
pop3_uidl_format = %{{uid | hex(8)}}%{{uidvalidity | hex(8)}}
postmaster_address = postmaster@example.test
first_valid_uid = {self.mail_uid}
last_valid_uid = {self.mail_uid}
first_valid_gid = {self.mail_gid}
last_valid_gid = {self.mail_gid}
passdb passwd-file {{
  passwd_file_path = {t}/users
}}
userdb passwd-file {{
  passwd_file_path = {t}/users
}}
{listeners}
# 2.4's fts needs a default language, also when a userdb field (fts=NAME)
# is what selects the backend.
language en {{
  default = yes
}}
{settings_24(self.plugin_settings)}
{self._protocol_conf()}
{conf_for_24(self.extra_conf)}
"""

    def _sanitizer_conf(self) -> str:
        env = self._sanitizer_env()
        if not env:
            return ""
        sandir = self.tmpdir / "sanitizer"
        sandir.mkdir(exist_ok=True)
        os.chmod(sandir, 0o1777)  # mail processes run as the mail uid
        pairs = " ".join(f"{k}={v}" for k, v in env.items())
        # ASan reserves terabytes of address space for its shadow memory:
        # Dovecot's vsz_limit (256M) would kill every process at start.
        return (f"import_environment = TZ CORE_OUTOFMEM CORE_ERROR {pairs}\n"
                "default_vsz_limit = 0\n")

    def _launch(self) -> None:
        self._stderr_path = self.tmpdir / "dovecot.stderr"
        stderr = open(self._stderr_path, "wb")
        try:
            # -F: stay in the foreground, so the PID we hold is the master.
            # New session: a Ctrl-C aimed at the sandbox script must not hit
            # Dovecot directly; the script stops it itself.
            self.proc = subprocess.Popen(
                ["dovecot", "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                start_new_session=True)
        finally:
            stderr.close()
        # Runs on stop() or, failing that, at interpreter exit.
        self._finalizer = weakref.finalize(self, _stop_master, self.proc,
                                           str(self.tmpdir), self.keep_tmp)

        deadline = time.monotonic() + START_TIMEOUT
        pending = set(self.ports)
        while pending:
            if self.proc.poll() is not None:
                raise DovecotStartError(self._start_diagnostics(
                    f"dovecot exited with status {self.proc.returncode}"))
            pending = {p for p in pending if not _port_accepts(self.ports[p])}
            if not pending:
                break
            if time.monotonic() > deadline:
                raise DovecotStartError(self._start_diagnostics(
                    f"ports not listening after {START_TIMEOUT:.0f}s: "
                    + ", ".join(f"{p}={self.ports[p]}" for p in sorted(pending))))
            time.sleep(0.1)

    def _start_diagnostics(self, headline: str) -> str:
        check = subprocess.run(["doveconf", "-n", "-c", str(self.config_path)],
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
        try:
            stderr = self._stderr_path.read_text(errors="replace")
        except OSError:
            stderr = ""
        return (f"{headline}\n"
                f"--- config: {self.config_path}\n"
                f"--- doveconf -n errors (rc={check.returncode}):\n"
                f"{check.stderr.strip() or '(none)'}\n"
                f"--- dovecot stderr:\n{stderr.strip() or '(empty)'}\n"
                f"--- log tail ({self.log_path}):\n{self.log_tail()}")

    # ------------------------------------------------------------------
    # Accessors

    def home(self, user: str) -> Path:
        return self.tmpdir / "home" / user

    def password(self, user: str) -> str:
        return str(self.users[user].get("password", "secret"))

    # ------------------------------------------------------------------
    # Clients

    def imap(self, user: str = "alice", password: Optional[str] = None
             ) -> imaplib.IMAP4:
        """An IMAP connection, already logged in."""
        conn = imaplib.IMAP4("127.0.0.1", self.ports["imap"],
                             timeout=CLIENT_TIMEOUT)
        conn.login(user, password if password is not None
                   else self.password(user))
        return conn

    def pop3(self, user: str = "alice", password: Optional[str] = None
             ) -> poplib.POP3:
        """A POP3 connection, already authenticated (USER/PASS)."""
        conn = poplib.POP3("127.0.0.1", self.ports["pop3"],
                           timeout=CLIENT_TIMEOUT)
        conn.user(user)
        conn.pass_(password if password is not None else self.password(user))
        return conn

    def lmtp(self) -> smtplib.LMTP:
        """An LMTP connection (TCP), not yet greeted with LHLO."""
        return smtplib.LMTP("127.0.0.1", self.ports["lmtp"],
                            local_hostname="client.example.test",
                            timeout=CLIENT_TIMEOUT)

    def deliver(self, rcpt: str, message: bytes,
                sender: str = "sender@example.test") -> tuple[int, str]:
        """Deliver one message over LMTP without raising on refusal.

        Returns (code, text) of the first reply that was not a success,
        or of the final DATA reply. With one recipient LMTP sends exactly
        one reply after DATA, which is what smtplib reads.
        """
        conn = self.lmtp()
        try:
            conn.ehlo_or_helo_if_needed()
            for step in (lambda: conn.mail(sender), lambda: conn.rcpt(rcpt)):
                code, text = step()
                if code != 250:
                    return code, text.decode(errors="replace")
            code, text = conn.data(message)
            return code, text.decode(errors="replace")
        finally:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()

    def message_count(self, mailbox: str = "INBOX", user: str = "alice") -> int:
        """Number of messages in a mailbox, via a fresh IMAP STATUS."""
        conn = self.imap(user)
        try:
            typ, data = conn.status(mailbox, "(MESSAGES)")
            if typ != "OK":
                raise AssertionError(f"STATUS {mailbox} failed: {data!r}")
            m = re.search(rb"MESSAGES (\d+)", data[0])
            return int(m.group(1))
        finally:
            conn.logout()

    def set_global_setting(self, key: str, value: object) -> None:
        """Write a global dovekie setting into dovecot.conf (replacing an
        earlier value); the caller reloads. 2.3 keeps it in the plugin { }
        block, 2.4 top-level."""
        text = self.config_path.read_text()
        text = re.sub(rf"(?m)^\s*{re.escape(key)} = .*\n", "", text)
        if is_dovecot24():
            text += f"{key} = {value}\n"
        else:
            text = text.replace("plugin {\n", f"plugin {{\n  {key} = {value}\n", 1)
        self.config_path.write_text(text)

    def doveadm(self, *args: str, check: bool = False
                ) -> subprocess.CompletedProcess:
        """Run `doveadm -c <conf> ARGS...` and return the result (text)."""
        env = dict(os.environ, **self._sanitizer_env())
        if is_dovecot24():
            # 2.4 has no plugin/ prefix: a setting is named as declared.
            args = tuple(a[len("plugin/"):] if a.startswith("plugin/") else a
                         for a in args)
        return subprocess.run(["doveadm", "-c", str(self.config_path), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, check=check, timeout=60, env=env)

    # ------------------------------------------------------------------
    # Log access

    def log_offset(self) -> int:
        """Current end of the log, to pass to log_since()/wait_for_log()."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_text(self) -> str:
        return self.log_since(0)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(empty)"

    def find_log(self, pattern: str, since: int = 0) -> list[re.Match]:
        """All matches of `pattern` (multi-line mode) after `since`."""
        return list(re.finditer(pattern, self.log_since(since), re.M))

    def wait_for_log(self, pattern: str, timeout: float = 10.0,
                     since: int = 0) -> re.Match:
        """Wait until `pattern` (multi-line mode) appears after `since`.

        Dovecot's log process writes asynchronously, so a line caused by a
        command may land shortly after the client saw the reply.
        """
        found = self.find_log_at_least(pattern, 1, timeout=timeout, since=since)
        if not found:
            raise AssertionError(
                f"log pattern not seen within {timeout:.0f}s: {pattern!r}\n"
                f"--- log tail ({self.log_path}):\n{self.log_tail()}")
        return found[0]

    def find_log_at_least(self, pattern: str, count: int, timeout: float = 10.0,
                          since: int = 0) -> list[re.Match]:
        """find_log() once `count` matches are there or `timeout` has
        passed: Dovecot's log process writes asynchronously, so the lines of
        the last command may land after its reply. The caller asserts the
        exact count (a check for no more than `count` waits in vain only
        when the count is wrong)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.find_log(pattern, since=since)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PrivateDovecot {state} tmp={self.tmpdir} ports={self.ports}>"
