"""Retention property test through a real Dovecot (issue 17, item 5): the
unit property test (modules/retention/test-dovekie-retention.c) with real
processes, real clients and the records in the real index.

Random steps over alice's INBOX (7 days, DELE = hide):

- delivery (IMAP APPEND);
- a POP3 session of one of four logins polling at different rates
  (alice, alice#laptop, alice#desktop, alice#phone): it RETRs and DELEs
  some of what it lists and ends with QUIT, or drops the connection, or
  its pop3 process is killed (SIGKILL) mid-session;
- IMAP: $PopHidden removed by the user (a restore), set by hand on a
  message POP3 never touched, an expunge, a MOVE out of INBOX and back
  (a new UID; the keyword goes with it, the record does not);
- `doveadm dovekie retention run` at a clock some days ahead.

A model tracks the truth (what each client really downloaded and DELEd,
with QUIT, and when it last said QUIT) and after every step checks:

- the POP3 listing is exactly what the model says (nothing hidden that
  should be offered, nothing offered that a QUIT hid);
- nothing expunged early: only messages downloaded `days` before the
  run's clock, DELEd by some client, and fetched (downloaded or DELEd) by
  every client active within the period;
- nothing hidden for ever: after a run no message carries $PopHidden
  without a DELE on record, and no DELE-hidden message was unhidden;
- nothing lost for IMAP: INBOX holds exactly the messages the model holds.

The default run is small (seconds); DOVEKIE_STRESS_SECONDS runs more seeds
for that long (marker `stress`, opt-in).
"""

from __future__ import annotations

import imaplib
import os
import poplib
import random
import re
import time

import pytest

from dovekie_harness import make_message
from test_retention import (DAY, KEYWORD, imap_flags, retention, retention_module,
                            set_clock_offset)

__all__ = ["retention", "retention_module"]  # fixtures used by name

DAYS = 7
LOGINS = ("alice", "alice#laptop", "alice#desktop", "alice#phone")
WEIGHTS = (4, 3, 2, 1)  # how often each polls, relative to the others
FETCH = (0.6, 0.5, 0.3, 0.15)  # and how much of what it lists it RETRs


class Model:
    def __init__(self, per_client: bool):
        self.per_client = per_client
        self.msgs: dict[int, dict] = {}      # uid -> state
        self.last_quit: dict[str, float] = {}

    def identity(self, login: str) -> str:
        return login.split("#", 1)[1] if self.per_client and "#" in login else "*"

    def add(self, uid: int, keyword: bool = False) -> None:
        self.msgs[uid] = {"keyword": keyword, "first": 0.0, "deleted": False,
                          "ever_deleted": False, "seen_by": set()}

    def visible(self, ident: str) -> set[int]:
        return {uid for uid, m in self.msgs.items()
                if not m["keyword"] and not (self.per_client and ident in m["seen_by"])}


def uid_map(pop: poplib.POP3) -> dict[int, int]:
    """msgnum -> UID (the harness's pop3_uidl_format is %08Xu%08Xv)."""
    resp, lines, _ = pop.uidl()
    assert resp.startswith(b"+OK"), resp
    return {int(n): int(u[:8], 16) for n, u in (l.decode().split() for l in lines)}


def pop3_pid(dc, since: int) -> int:
    m = dc.wait_for_log(r"pop3-login: Info: (?:Login|Logged in): user=<alice>[^\n]*mpid=(\d+)",
                        since=since)
    return int(m.group(1))


def imap_uids(dc) -> dict[int, bool]:
    """UID -> carries $PopHidden."""
    return {uid: KEYWORD in flags.split() for uid, flags in imap_flags(dc).items()}


def check_expunged(model: Model, gone: list[tuple[int, str]], clock: float,
                   where: str) -> None:
    """What a plan at `clock` expunged: only what the rules allow."""
    for uid, reason in gone:
        msg = model.msgs.pop(uid)
        assert reason == "expired", (where, uid, reason)
        assert msg["first"] > 0, (where, uid, "never downloaded")
        assert clock + 5 >= msg["first"] + DAYS * DAY, (where, uid, "early")
        assert msg["deleted"], (where, uid, "never DELEd")
        for ident, last in model.last_quit.items():
            assert last < clock - DAYS * DAY + 5 or ident in msg["seen_by"], \
                (where, uid, f"{ident} is active and never fetched it")


def reconcile_unhidden(model: Model, seen: dict[int, bool], where: str) -> None:
    """A plan removes $PopHidden from messages without a DELE on record:
    never from one a DELE hid."""
    for uid, m in model.msgs.items():
        if m["keyword"] and uid in seen and not seen[uid]:
            assert not m["deleted"], (where, uid, "unhidden after its DELE")
            m["keyword"] = False


EPOCH_STEPS = 12   # POP3 sessions move their clock ahead every this many steps
EPOCH_DAYS = 5


def run_property(dc, seed: int, steps: int, per_client: bool) -> None:
    rnd = random.Random(seed)
    model = Model(per_client)
    pop3_offset = 0  # the POP3 sessions' clock, ahead of real time
    imap = dc.imap()
    imap.select("INBOX")
    imap.create("Out")
    counter = 0
    killed: set[int] = set()

    def deliver() -> None:
        nonlocal counter
        counter += 1
        typ, data = imap.append("INBOX", None, None,
                                make_message(f"prop-{seed}-{counter}", "body\n"))
        assert typ == "OK", data
        uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))
        model.add(uid)

    for _ in range(4):
        deliver()
    for step in range(steps):
        if step > 0 and step % EPOCH_STEPS == 0:
            # Days pass for the clients too: so that a client can be active
            # while a message another client fetched long ago is due.
            pop3_offset += EPOCH_DAYS * DAY
            try:
                imap.logout()
            except imaplib.IMAP4.abort:
                pass
            set_clock_offset(dc, pop3_offset)  # a reload: new connections
            imap = dc.imap()
            imap.select("INBOX")
        what = rnd.randrange(100)
        where = f"seed {seed} step {step}"
        if what < 10:
            deliver()
        elif what < 55:
            which = rnd.choices(range(len(LOGINS)), weights=WEIGHTS)[0]
            login = LOGINS[which]
            ident = model.identity(login)
            since = dc.log_offset()
            pop = dc.pop3(login, "secret")
            pid = pop3_pid(dc, since)
            nums = uid_map(pop)
            assert set(nums.values()) == model.visible(ident), (where, login, nums)
            retr = [n for n in nums if rnd.random() < FETCH[which]]
            dele = [n for n in nums if rnd.random() < FETCH[which] * 0.7]
            for n in retr:
                pop.retr(n)
            for n in dele:
                pop.dele(n)
            end = rnd.randrange(6)
            if end == 0:
                os.kill(pid, 9)  # a crashed or killed process
                killed.add(pid)
                pop.close()
                dc.wait_for_log(rf"pop3\(alice\)<{pid}>[^\n]*|child {pid} killed",
                                since=since)
            elif end == 1:
                pop.close()  # dropped without QUIT
            else:
                assert pop.quit().startswith(b"+OK"), where
                now = time.time() + pop3_offset
                for n in retr:
                    m = model.msgs[nums[n]]
                    m["first"] = m["first"] or now
                    m["seen_by"].add(ident)
                for n in dele:
                    m = model.msgs[nums[n]]
                    m["deleted"] = m["ever_deleted"] = True
                    m["seen_by"].add(ident)
                    if not per_client:
                        m["keyword"] = True
                model.last_quit[ident] = now
                # The expiry check at QUIT runs after the reply, before the
                # process logs its disconnection.
                dc.wait_for_log(rf"pop3\(alice\)<{pid}>[^\n]*Disconnected", since=since)
                gone = [(int(m.group(1)), m.group(2)) for m in dc.find_log(
                    rf"pop3\(alice\)<{pid}>[^\n]*dovekie-retention: expunge user=alice "
                    r'mailbox="INBOX" uid=(\d+) reason=(\S+)', since=since)]
                check_expunged(model, gone, now, where)
                reconcile_unhidden(model, imap_uids(dc), where)
        elif what < 80 and model.msgs:
            uid = rnd.choice(sorted(model.msgs))
            m = model.msgs[uid]
            action = rnd.randrange(4)
            if action == 0:
                # The user's restore wins: new for POP3.
                typ, data = imap.uid("STORE", str(uid), "-FLAGS", f"({KEYWORD})")
                assert typ == "OK", data
                if m["keyword"]:
                    m.update(first=0.0, deleted=False, seen_by=set())
                m["keyword"] = False
            elif action == 1:
                if not m["ever_deleted"] and not m["seen_by"]:
                    typ, data = imap.uid("STORE", str(uid), "+FLAGS", f"({KEYWORD})")
                    assert typ == "OK", data
                    m["keyword"] = True
            elif action == 2:
                typ, data = imap.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)")
                assert typ == "OK", data
                typ, data = imap.uid("EXPUNGE", str(uid))
                assert typ == "OK", data
                del model.msgs[uid]
            else:
                # MOVE out and back: a new UID, the keyword kept, no record.
                typ, data = imap.uid("MOVE", str(uid), "Out")
                assert typ == "OK", data
                imap.select("Out")
                typ, data = imap.uid("MOVE", "1:*", "INBOX")
                assert typ == "OK", data
                new = int(re.search(rb"COPYUID \d+ \S+ (\d+)", b" ".join(
                    x if isinstance(x, bytes) else b"" for x in
                    imap.untagged_responses.pop("OK", []) + data)).group(1))
                imap.select("INBOX")
                keyword = m["keyword"]
                del model.msgs[uid]
                model.add(new, keyword)
        else:
            # A run's clock: up to 9 days past the sessions' one (a
            # client may have been active within the last 7 of them).
            offset = pop3_offset + rnd.randrange(0, 9 * DAY)
            res = dc.doveadm("-o", f"plugin/dovekie_test_clock_offset={offset}",
                             "dovekie", "retention", "run", "-u", "alice")
            assert res.returncode == 0, (where, res.stderr)
            clock = time.time() + offset
            gone = [(int(m.group(1)), m.group(2)) for m in
                    re.finditer(r"(?m)^\s*INBOX\s+(\d+)\s+(\S+)\s+expunged", res.stdout)]
            check_expunged(model, gone, clock, where)
            # Nothing hidden for ever; nothing a DELE hid was unhidden.
            seen = imap_uids(dc)
            reconcile_unhidden(model, seen, where)
            for uid, m in model.msgs.items():
                assert not seen.get(uid) or m["deleted"], (where, uid, "hidden, no DELE")
        # Nothing lost for IMAP, keywords as the model says.
        seen = imap_uids(dc)
        assert set(seen) == set(model.msgs), (where, sorted(seen), sorted(model.msgs))
        for uid, m in model.msgs.items():
            assert seen[uid] == m["keyword"], (where, uid, seen[uid])
    imap.logout()
    # No crash but the processes this test killed.
    bad = [m.group(0) for m in dc.find_log(r"^[^\n]*(?:Panic: |Fatal: |killed with signal)[^\n]*$")
           if not any(f"<{pid}>" in m.group(0) or f"child {pid} " in m.group(0)
                      for pid in killed)]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("view", ["shared", "per-client"])
def test_retention_property(retention, view):
    dc = retention(view=view)
    # Seeds that meet the hard cases in few steps (checked by breaking the
    # module: seed 33 has an active client that never fetched a due
    # message; seed 17 a message hidden by hand and one moved while hidden).
    run_property(dc, seed=17 if view == "shared" else 33, steps=60,
                 per_client=view == "per-client")


@pytest.mark.stress
def test_retention_property_long(retention):
    budget = float(os.environ.get("DOVEKIE_STRESS_SECONDS", "0"))
    deadline = time.monotonic() + budget
    seed = 1000
    while time.monotonic() < deadline:
        view = "per-client" if seed % 2 else "shared"
        dc = retention(view=view)
        run_property(dc, seed=seed, steps=200, per_client=view == "per-client")
        dc.stop()
        seed += 1
