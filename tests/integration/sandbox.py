#!/usr/bin/python3
"""Boot a private Dovecot with dovekie loaded, to poke at by hand.

    python3 tests/integration/sandbox.py [--build-dir DIR]
                                         [--ports IMAP,POP3,LMTP] [--once]

Loads the built plugin (DIR/hosts/dovecot/.libs/lib90_dovekie_plugin.so)
with its per-protocol parts beside it (lib95_dovekie_{pop3,lmtp,fts}_plugin.so,
each in the mail_plugins where it belongs) and every built module (DIR/modules/*/.libs/*.so) on their embedded
defaults, creates user `demo` (password `demo`), seeds the INBOX over LMTP
and prints how to connect. Runs until Ctrl-C or SIGTERM, then stops Dovecot
and removes its temporary directory (keep it with DOVEKIE_KEEP_TMP=1).

--once boots, seeds, prints, checks one IMAP login and exits 0; the test
suite uses it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dovekie_harness import PrivateDovecot, make_message  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_RELPATH = Path("hosts/dovecot/.libs/lib90_dovekie_plugin.so")
USER, PASSWORD = "demo", "demo"
ADDRESS = "demo@example.test"
# The example module's embedded default marker (dovekie_example_reject).
DEMO_REJECT = "DOVEKIE-EXAMPLE-REJECT"
# Module state (the kv store) lives in private mailbox attributes.
EXTRA_CONF = "mail_attribute_dict = file:%h/dovecot-attributes\n"

# (sender, subject, body) of the seeded INBOX.
DEMO_MESSAGES = [
    ("Mira Koch <mira.koch@example.test>", "Welcome to the dovekie sandbox",
     "Hi!\n\nThis mailbox lives in a throw-away Dovecot. Every message you\n"
     "save, read or delete here passes through the dovekie modules.\n\n"
     "Mira\n"),
    ("Build Bot <ci@example.test>", "Nightly build #1289 passed",
     "All 214 tests passed on debian-12/amd64.\nDuration: 6m 12s\n"),
    ("Jonas Berg <jonas@example.test>", "Lunch on Thursday?",
     "The usual place at 12:30? I can book a table for four.\n\nJonas\n"),
    ("Accounts <billing@example.test>", "Invoice 2024-0117",
     "Dear customer,\n\nplease find the summary of invoice 2024-0117 below.\n"
     "Amount due: 42.00 EUR, payable within 14 days.\n"),
    ("Lena Vogt <lena.vogt@example.test>", "Re: slides for the review",
     "I went through the slides; only two small comments on page 7.\n"
     "Looks good otherwise.\n\nLena\n"),
]


def parse_ports(text: str) -> dict[str, int]:
    try:
        imap, pop3, lmtp = (int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected IMAP,POP3,LMTP port numbers")
    return {"imap": imap, "pop3": pop3, "lmtp": lmtp}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, default=REPO_ROOT,
                        help="top of the build tree (default: %(default)s)")
    parser.add_argument("--ports", type=parse_ports, default=None,
                        help="pin ports as IMAP,POP3,LMTP (default: free ports)")
    parser.add_argument("--once", action="store_true",
                        help="boot, seed, print, verify one login, exit")
    args = parser.parse_args(argv)

    build = args.build_dir.resolve()
    plugin = build / PLUGIN_RELPATH
    modules = sorted(build.glob("modules/*/.libs/*.so"))
    if not plugin.is_file():
        print(f"error: plugin not built: {plugin}", file=sys.stderr)
        return 2
    if not modules:
        print(f"error: no modules under {build}/modules/*/.libs/", file=sys.stderr)
        return 2
    names = [m.stem for m in modules]

    # Every module on its embedded defaults: only the list is set.
    settings = {"dovekie_modules": " ".join(names)}
    # --- antivirus (owned by the antivirus module) ---
    # The exception: antivirus defaults to clamd and fails closed (tempfail)
    # when no scanner answers, and a sandbox runs no clamd. It scans
    # in-process with libclamav instead, on a tiny signature DB made from
    # Debian's clamav-testfiles (clam.exe and the EICAR string).
    if "antivirus" in names:
        import atexit
        import shutil
        import tempfile
        from clamd_harness import write_signatures
        av_db = Path(tempfile.mkdtemp(prefix="dovekie-sandbox-av-"))
        atexit.register(shutil.rmtree, av_db, True)
        av_db.chmod(0o755)
        write_signatures(av_db)
        for sig in av_db.iterdir():
            sig.chmod(0o644)
        settings["dovekie_av_engine"] = "libclamav"
        settings["dovekie_av_libclamav_db"] = str(av_db)
    # --- end antivirus ---
    # Search is an FTS backend: Dovecot's fts plugin must load first and be
    # told to use it (the harness adds the backend's plugin, dovekie_fts);
    # indexing happens as mail arrives.
    mail_plugins = None
    if "search" in names:
        mail_plugins = "$mail_plugins fts dovekie"
        settings["fts"] = "dovekie"
        settings["fts_autoindex"] = "yes"

    # Handlers go in before boot, so a signal during startup still stops
    # Dovecot through the context manager.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    with PrivateDovecot(users={USER: {"password": PASSWORD}},
                        plugin_path=plugin, module_files=modules,
                        plugin_settings=settings, ports=args.ports,
                        mail_plugins=mail_plugins,
                        extra_conf=EXTRA_CONF) as dc:
        for sender, subject, body in DEMO_MESSAGES:
            code, text = dc.deliver(
                ADDRESS, make_message(subject, body, sender=sender, to=ADDRESS))
            if code != 250:
                print(f"error: seeding '{subject}' failed: {code} {text}",
                      file=sys.stderr)
                return 1

        expected = len(DEMO_MESSAGES)  # messages INBOX should hold
        refusal = ""
        if "example" in names:
            code, text = dc.deliver(ADDRESS, make_message(
                "Refusal demo", f"This body contains {DEMO_REJECT}.\n",
                to=ADDRESS))
            outcome = "refused" if code >= 400 else "NOT refused"
            expected += code == 250
            refusal = (f"  demo refusal: delivery containing {DEMO_REJECT} "
                       f"was {outcome}: {code} {text}\n")

        imap, pop3, lmtp = (dc.ports[p] for p in ("imap", "pop3", "lmtp"))
        print(f"""dovekie sandbox is running (Dovecot master pid {dc.proc.pid})
  modules:  {', '.join(names)}
  IMAP:     127.0.0.1 port {imap}
  POP3:     127.0.0.1 port {pop3}
  LMTP:     127.0.0.1 port {lmtp}
  user:     {USER}
  password: {PASSWORD}
  seeded:   {len(DEMO_MESSAGES)} messages in INBOX
{refusal}  log:      {dc.log_path}
  config:   {dc.config_path}

Try it:
  python3 -c "import imaplib; c = imaplib.IMAP4('127.0.0.1', {imap}); \
c.login('{USER}', '{PASSWORD}'); print(c.select('INBOX')); \
print(c.fetch('1', '(BODY[HEADER.FIELDS (SUBJECT)])'))"
  telnet 127.0.0.1 {pop3}    then: USER {USER} / PASS {PASSWORD} / STAT / RETR 1 / QUIT
  tail -f {dc.log_path}
""", flush=True)

        if args.once:
            conn = dc.imap(USER)
            typ, data = conn.select("INBOX")
            conn.logout()
            if typ != "OK" or int(data[0]) != expected:
                print(f"error: IMAP check failed: {typ} {data}", file=sys.stderr)
                return 1
            print(f"IMAP login as {USER} OK, INBOX has {int(data[0])} messages")
            if "example" in names:
                # The refusal again, this time through IMAP APPEND.
                conn = dc.imap(USER)
                typ, data = conn.append("INBOX", None, None, make_message(
                    "Refusal demo", f"This body contains {DEMO_REJECT}.\n"))
                conn.logout()
                text = b" ".join(d for d in data if isinstance(d, bytes)).decode()
                print(f"IMAP APPEND containing {DEMO_REJECT}: {typ} {text}")
                if typ != "NO":
                    return 1
            # --- retention (owned by the retention module) ---
            # A POP3 DELE keeps the mail for IMAP: gone from POP3 after
            # QUIT, still in the IMAP INBOX with the hide keyword.
            if "retention" in names:
                pop = dc.pop3(USER)
                before = pop.stat()[0]
                pop.dele(1)
                pop.quit()
                pop = dc.pop3(USER)
                after = pop.stat()[0]
                pop.quit()
                conn = dc.imap(USER)
                conn.select("INBOX")
                typ, data = conn.search(None, "KEYWORD", "$PopHidden")
                conn.logout()
                kept = len((data[0] or b"").split()) if typ == "OK" else 0
                imap_count = dc.message_count(user=USER)
                print(f"POP3 DELE 1 + QUIT: POP3 lists {after} of {before}, "
                      f"IMAP INBOX has {imap_count} ({kept} with $PopHidden)")
                if after != before - 1 or imap_count != expected or kept != 1:
                    return 1
            # --- end retention ---
            if "antivirus" in names:
                # EICAR over LMTP: on the embedded default action it is
                # quarantined (kept, out of INBOX); over APPEND it is refused.
                from clamd_harness import EICAR
                code, text = dc.deliver(ADDRESS, make_message(
                    "EICAR demo", EICAR.decode() + "\n", to=ADDRESS))
                quarantined = dc.message_count("Quarantine", user=USER)
                print(f"LMTP delivery of EICAR: {code} {text.strip()} "
                      f"(Quarantine has {quarantined})")
                conn = dc.imap(USER)
                typ, data = conn.append("INBOX", None, None, make_message(
                    "EICAR demo", EICAR.decode() + "\n"))
                conn.logout()
                text = b" ".join(d for d in data if isinstance(d, bytes)).decode()
                print(f"IMAP APPEND of EICAR: {typ} {text}")
                if code != 250 or quarantined != 1 or typ != "NO":
                    return 1
                # Mail stored before the signatures knew it: put straight
                # into the Maildir, then found by the rescan job.
                import os
                new = dc.home(USER) / "Maildir" / "new"
                stored = new / "1.sandbox-stored-before-the-update"
                stored.write_bytes(make_message("stored EICAR", EICAR.decode() + "\n"))
                os.chown(stored, dc.mail_uid, dc.mail_gid)
                res = dc.doveadm("dovekie", "rescan", "-u", USER)
                quarantined = dc.message_count("Quarantine", user=USER)
                print(f"doveadm dovekie rescan: exit {res.returncode}, "
                      f"Quarantine has {quarantined}")
                if res.returncode != 0 or quarantined != 2:
                    print(res.stdout + res.stderr, file=sys.stderr)
                    return 1
            if "search" in names:
                # A substring inside a word, answered with the search index.
                conn = dc.imap(USER)
                conn.select("INBOX")
                typ, data = conn.uid("SEARCH", "BODY", "nvoic")
                conn.logout()
                hits = (data[0] or b"").decode().split() if typ == "OK" else []
                print(f"IMAP UID SEARCH BODY \"nvoic\": {typ} {len(hits)} hit(s)")
                if typ != "OK" or len(hits) != 1:
                    return 1
            return 0

        print("Press Ctrl-C to stop.", flush=True)
        while not stop.wait(1.0):
            if not dc.running:
                print("error: Dovecot exited unexpectedly; log tail:\n"
                      + dc.log_tail(), file=sys.stderr)
                return 1
        print("stopping Dovecot...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
