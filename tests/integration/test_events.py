"""Module counters as Dovecot events, counted by Dovecot's stats service."""

from __future__ import annotations

import re

from dovekie_harness import make_message

METRIC = """
metric dovekie_example_saves {
  filter = event=dovekie_example_saved
  group_by = verdict
}
"""


def test_module_events_reach_dovecot_stats(dovekie):
    dc = dovekie(settings={"dovekie_example_reject": "STATS-REJECT"},
                 extra_conf=METRIC)
    imap = dc.imap()
    for body in ("clean one\n", "clean two\n", "has STATS-REJECT\n"):
        imap.append("INBOX", None, None, make_message("s", body))
    imap.logout()
    dc.deliver("alice@example.test", make_message("l", "clean three\n"))

    res = dc.doveadm("stats", "dump")
    assert res.returncode == 0, res.stderr
    # metric_name, field, count, sum, ...
    counts = {}
    for line in res.stdout.splitlines():
        fields = line.split("\t")
        if fields[0].startswith("dovekie_example_saves"):
            counts[fields[0]] = int(fields[2])
    assert counts.get("dovekie_example_saves") == 4, res.stdout
    assert counts.get("dovekie_example_saves_accept") == 3, res.stdout
    assert counts.get("dovekie_example_saves_reject") == 1, res.stdout
