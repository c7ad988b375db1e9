"""dovekie inside Dovecot 2.4 (a Debian 13 root), driven from outside.

Run by tests/dovecot24/run once the build is installed in the root:
    smoke.py --root ROOT
It writes a 2.4 dovecot.conf (no plugin {} block: every dovekie_* key is a
declared setting), starts that root's Dovecot with chroot, drives it over
IMAP, POP3 and LMTP on 127.0.0.1 with Python's clients, runs doveconf and
doveadm there, and stops Dovecot by its PID. Each check prints PASS or FAIL
with what it saw; the exit status is 0 when every check passed.
"""

from __future__ import annotations

import argparse
import imaplib
import os
import poplib
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))
from clamd_harness import EICAR, EICAR_SIGNATURE, write_signatures  # noqa: E402

UID = 5123
CONF_DIR = "/srv/dovekie"  # inside the root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dovecot24:
    def __init__(self, root: Path):
        self.root = root
        self.dir = root / CONF_DIR.lstrip("/")
        self.imap, self.pop3, self.lmtp = free_port(), free_port(), free_port()
        self.pid = None

    def chroot(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(["chroot", str(self.root), *args], capture_output=True,
                              text=True, check=check, timeout=120)

    def doveconf(self, *args: str) -> subprocess.CompletedProcess:
        return self.chroot("doveconf", "-c", f"{CONF_DIR}/dovecot.conf", *args)

    def doveadm(self, *args: str) -> subprocess.CompletedProcess:
        return self.chroot("doveadm", "-c", f"{CONF_DIR}/dovecot.conf", *args)

    def conf(self, extra: str = "") -> str:
        return f"""dovecot_config_version = 2.4.1
dovecot_storage_version = 2.4.1
base_dir = {CONF_DIR}/run
state_dir = {CONF_DIR}/state
instance_name = dovekie24
log_path = {CONF_DIR}/dovecot.log
protocols = imap pop3 lmtp
listen = 127.0.0.1
first_valid_uid = {UID}
default_internal_user = {self.user}
default_internal_group = {self.user}
default_login_user = {self.user}
auth_mechanisms = plain
auth_allow_cleartext = yes
ssl = no
mail_driver = maildir
mail_path = ~/Maildir
mail_uid = {self.user}
mail_gid = {self.user}
mail_attribute {{
  dict file {{
    path = %{{home}}/dovecot-attributes
  }}
}}
passdb passwd-file {{
  passwd_file_path = {CONF_DIR}/passwd
}}
userdb passwd-file {{
  passwd_file_path = {CONF_DIR}/passwd
}}
service imap-login {{
  inet_listener imap {{
    port = {self.imap}
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {self.pop3}
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    listen = 127.0.0.1
    port = {self.lmtp}
  }}
}}
mail_plugins {{
  fts = yes
  dovekie = yes
  dovekie_fts = yes
}}
protocol pop3 {{
  mail_plugins {{
    dovekie_pop3 = yes
  }}
}}
protocol lmtp {{
  mail_plugins {{
    dovekie_lmtp = yes
  }}
}}
fts dovekie {{
}}
fts_autoindex = yes
language en {{
  default = yes
}}
dovekie_modules = example antivirus search retention
dovekie_av_engine = libclamav
dovekie_av_libclamav_db = {CONF_DIR}/clamdb
{extra}"""

    def write(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        for sub in ("run", "state", "home", "clamdb"):
            (self.dir / sub).mkdir(parents=True)
        write_signatures(self.dir / "clamdb")
        # The unprivileged mail user (Dovecot refuses root): uid UID, made once.
        self.chroot("sh", "-c", f"getent passwd {UID} >/dev/null || useradd -u {UID} -M -d /nonexistent dovekie",
                    check=True)
        self.user = self.chroot("getent", "passwd", str(UID), check=True).stdout.split(":")[0]
        home = f"{CONF_DIR}/home"
        users = [
            "alice:{PLAIN}secret:%d:%d::%s/alice" % (UID, UID, home),
            "bob:{PLAIN}secret:%d:%d::%s/bob::userdb_dovekie_example_reject=BOB-MARKER" % (UID, UID, home),
            # out of range: the loader fails the search module only
            "carol:{PLAIN}secret:%d:%d::%s/carol::userdb_dovekie_search_batch_size=0" % (UID, UID, home),
            # global-only setting from userdb: every listed module fails
            "dave:{PLAIN}secret:%d:%d::%s/dave::userdb_dovekie_module_dir=/tmp" % (UID, UID, home),
            # wrong type from userdb: Dovecot refuses the session
            "erin:{PLAIN}secret:%d:%d::%s/erin::userdb_dovekie_av_cache=maybe" % (UID, UID, home),
        ]
        (self.dir / "passwd").write_text("\n".join(users) + "\n")
        (self.dir / "dovecot.conf").write_text(self.conf())
        self.chroot("chown", "-R", f"{UID}:{UID}", f"{home}", check=True)

    def start(self) -> None:
        # The master daemonizes and keeps its stdio: no pipes to wait on.
        errors = self.dir / "start.err"
        with open(errors, "w") as err:
            rc = subprocess.run(["chroot", str(self.root), "dovecot", "-c", f"{CONF_DIR}/dovecot.conf"],
                                stdin=subprocess.DEVNULL, stdout=err, stderr=err, timeout=60).returncode
        if rc != 0:
            raise RuntimeError(f"dovecot did not start: {errors.read_text()}")
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                self.pid = int((self.dir / "run" / "master.pid").read_text())
                with socket.create_connection(("127.0.0.1", self.imap), timeout=1):
                    return
            except (OSError, ValueError):
                time.sleep(0.2)
        raise RuntimeError("dovecot 2.4 did not answer on IMAP")

    def stop(self) -> None:
        if self.pid is None:
            return
        try:
            os.kill(self.pid, 15)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)

    def log(self) -> str:
        return (self.dir / "dovecot.log").read_text(errors="replace")

    def imap_login(self, user: str) -> imaplib.IMAP4:
        c = imaplib.IMAP4("127.0.0.1", self.imap)
        c.login(user, "secret")
        return c


def message(subject: str, body: str | bytes) -> bytes:
    if isinstance(body, str):
        body = body.encode()
    return (f"From: a@example.org\r\nTo: b@example.org\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@dovekie.test>\r\n\r\n").encode() + body + b"\r\n"


def lmtp_deliver(port: int, rcpts: list[str], data: bytes) -> list[bytes]:
    """One LMTP transaction; the reply lines after DATA, one per recipient
    (RFC 2033), which smtplib does not read."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        f = s.makefile("rb")

        def reply() -> bytes:
            line = f.readline()
            while line[3:4] == b"-":
                line = f.readline()
            return line.rstrip()

        def cmd(text: str) -> bytes:
            s.sendall(text.encode() + b"\r\n")
            return reply()

        reply()
        cmd("LHLO dovekie.test")
        cmd("MAIL FROM:<x@example.org>")
        for r in rcpts:
            cmd(f"RCPT TO:<{r}>")
        cmd("DATA")
        body = data.replace(b"\r\n.", b"\r\n..")
        s.sendall(body + b".\r\n")
        replies = [reply() for _ in rcpts]
        cmd("QUIT")
        return replies


results: list[tuple[bool, str, str]] = []


def check(name: str, ok: bool, seen: object) -> None:
    results.append((bool(ok), name, repr(seen)))
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else f": saw {seen!r}"), flush=True)


def run_checks(d: Dovecot24) -> None:
    # -- doveconf: every setting declared, typed, with its default
    r = d.doveconf("-d")
    check("doveconf -d shows dovekie defaults",
          "dovekie_av_engine = clamd" in r.stdout and "dovekie_search_batch_size = 1000" in r.stdout,
          r.stdout[-300:] + r.stderr)
    conf = (d.dir / "dovecot.conf").read_text()
    for bad, why in (("dovekie_modulez = x", "Unknown setting"),
                     ("dovekie_av_engine = clamdd", "Invalid value"),
                     ("dovekie_av_max_size = 10Q", "Invalid size"),
                     ("dovekie_av_cache = maybe", "Invalid boolean"),
                     ("dovekie_search_batch_size = lots", "Invalid number")):
        (d.dir / "dovecot.conf").write_text(conf + bad + "\n")
        r = d.doveconf("-n")
        check(f"doveconf refuses '{bad}'", r.returncode != 0 and why in r.stderr, r.stderr)
    (d.dir / "dovecot.conf").write_text(conf)

    # -- the installed 2.4 conf.d snippets, every setting uncommented
    snippets = sorted((d.root / "etc/dovecot/conf.d").glob("*-dovekie*.conf"))
    lines = []
    for path in snippets:
        for line in path.read_text().splitlines():
            body = line[1:]
            if (line.startswith("#") and not line.startswith("##")
                    and re.match(r"^(\S[\w/ ]*=.*|\s+[\w/]+ = .*|[\w ]+\{|\s*\})$", body)):
                lines.append(body)
    (d.dir / "snippets.conf").write_text("dovecot_config_version = 2.4.1\n"
                                         "dovecot_storage_version = 2.4.1\n" + "\n".join(lines) + "\n")
    r = d.chroot("doveconf", "-c", f"{CONF_DIR}/snippets.conf", "dovekie_retention_separator",
                 "dovekie_av_engine", "dovekie_search_batch_size")
    check("doveconf takes the 2.4 conf.d snippets with every setting uncommented",
          len(snippets) == 4 and len(lines) > 50 and r.returncode == 0
          and 'dovekie_retention_separator = "#"' in r.stdout,  # doveconf quotes a #
          (len(snippets), len(lines), r.stdout, r.stderr))

    d.start()
    # -- save hooks: example and antivirus (libclamav), userdb override
    c = d.imap_login("alice")
    r = c.append("INBOX", None, None, message("hello one", "the quick brown fox jumps"))
    check("APPEND clean mail", r[0] == "OK", r)
    r = c.append("INBOX", None, None, message("marker", "DOVEKIE-EXAMPLE-REJECT inside"))
    check("APPEND refused by the example module", r[0] == "NO" and b"example module" in r[1][0], r)
    r = c.append("INBOX", None, None, message("eicar", EICAR))
    check("APPEND of EICAR refused by antivirus (libclamav)",
          r[0] == "NO" and EICAR_SIGNATURE.encode() in r[1][0], r)
    c.select("INBOX")
    r = c.search(None, "BODY", '"uick bro"')
    check("SEARCH BODY substring through fts = dovekie", r == ("OK", [b"1"]), r)
    r = c.search(None, "BODY", "nowhere")
    check("SEARCH BODY absent word", r == ("OK", [b""]), r)
    r = c.uid("FETCH", "1", "(BODY.PEEK[TEXT])")
    check("FETCH of clean mail", r[0] == "OK" and b"quick brown fox" in r[1][0][1], r)
    c.logout()

    c = d.imap_login("bob")
    r = c.append("INBOX", None, None, message("bob marker", "BOB-MARKER inside"))
    check("userdb override of a module setting", r[0] == "NO" and b"example module" in r[1][0], r)
    r = c.append("INBOX", None, None, message("bob global marker", "DOVEKIE-EXAMPLE-REJECT"))
    check("userdb override replaces the global value", r[0] == "OK", r)
    c.logout()

    # -- fail closed from userdb
    c = d.imap_login("carol")
    r = c.append("INBOX", None, None, message("carol", "text"))
    check("search module failed from userdb: other guards still run (APPEND ok)", r[0] == "OK", r)
    c.logout()
    check("the failed module is logged with its origin",
          "dovekie_search_batch_size = 0" in d.log() and "from userdb" in d.log(), d.log()[-500:])
    c = d.imap_login("dave")
    r = c.append("INBOX", None, None, message("dave", "text"))
    check("global-only setting from userdb: saves refused",
          r[0] == "NO" and b"UNAVAILABLE" in r[1][0], r)
    c.logout()
    try:
        c = d.imap_login("erin")
        r = c.select("INBOX")
        ok = r[0] != "OK"
    except (imaplib.IMAP4.error, imaplib.IMAP4.abort, OSError) as e:
        r, ok = e, True
    check("wrong-type value from userdb: session refused", ok, r)

    # -- LMTP: two recipients, one clean message, one infected
    r = lmtp_deliver(d.lmtp, ["alice", "bob"], message("lmtp clean", "delivered to two"))
    check("LMTP clean to two recipients", len(r) == 2 and all(x.startswith(b"250") for x in r), r)
    r = lmtp_deliver(d.lmtp, ["alice", "bob"], message("lmtp eicar", EICAR))
    c = d.imap_login("alice")
    c.select("INBOX")
    r2 = c.search(None, "SUBJECT", '"lmtp eicar"')
    inbox = c.search(None, "SUBJECT", '"lmtp clean"')
    c.logout()
    check("LMTP: infected mail not in INBOX, clean mail delivered",
          r2 == ("OK", [b""]) and inbox[1][0] != b"", (r, r2, inbox))

    # -- POP3 retention: DELE hides, IMAP keeps
    p = poplib.POP3("127.0.0.1", d.pop3)
    p.user("alice")
    p.pass_("secret")
    count = p.stat()[0]
    p.retr(1)
    p.dele(1)
    q = p.quit()
    check("POP3 QUIT after DELE", q.startswith(b"+OK"), q)
    p = poplib.POP3("127.0.0.1", d.pop3)
    p.user("alice")
    p.pass_("secret")
    after = p.stat()[0]
    p.quit()
    check("POP3: DELE hides the message from POP3", after == count - 1, (count, after))
    c = d.imap_login("alice")
    c.select("INBOX")
    r = c.search(None, "KEYWORD", "$PopHidden")
    c.logout()
    check("IMAP still has the hidden message, keyword set", r == ("OK", [b"1"]), r)

    # -- doveadm
    r = d.doveadm("dovekie", "status", "-u", "alice")
    check("doveadm dovekie status", r.returncode == 0 and "antivirus" in r.stdout and "retention" in r.stdout,
          r.stdout + r.stderr)
    r = d.doveadm("dovekie", "check", "-A")
    check("doveadm dovekie check -A finds the broken users (exit 78)",
          r.returncode == 78 and "carol:" in r.stdout and "dave:" in r.stdout and "alice" not in r.stdout,
          (r.returncode, r.stdout, r.stderr))
    r = d.doveadm("dovekie", "retention", "run", "-u", "alice", "--dry-run")
    check("doveadm dovekie retention run --dry-run", r.returncode == 0, r.stdout + r.stderr)
    r = d.doveadm("dovekie", "rescan", "-u", "alice", "--max-messages", "0")
    check("doveadm dovekie rescan refuses --max-messages 0", r.returncode != 0 and "--max-messages" in r.stderr,
          r.stderr)
    r = d.doveadm("dovekie", "rescan", "-u", "alice")
    check("doveadm dovekie rescan", r.returncode == 0, r.stdout + r.stderr)

    log = d.log()
    bad = [line for line in log.splitlines()
           if ("Panic" in line or "Fatal" in line) and "erin" not in line]
    check("no Panic or Fatal in the Dovecot log", not bad, bad)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    args = ap.parse_args()
    d = Dovecot24(Path(args.root))
    d.write()
    try:
        run_checks(d)
    except Exception as e:  # a crash of the script is a failure, with its reason
        check("smoke run completed", False, f"{type(e).__name__}: {e}")
    finally:
        d.stop()
    failed = [r for r in results if not r[0]]
    print(f"smoke: {len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        print("--- Dovecot log tail ---\n" + d.log()[-3000:])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
