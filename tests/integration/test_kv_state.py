"""Module state (the kv store) through a real Dovecot.

The example module, with dovekie_example_count_saves = yes, keeps a counter
of accepted saves per origin in its kv state ("saves/append",
"saves/delivery") and logs their sum, read back with a prefix iteration. The host stores it as a private INBOX
attribute (mail_attribute_dict), so the count must carry across separate
imap and lmtp processes, and must be invisible to IMAP METADATA clients.
"""

from __future__ import annotations

import re

from dovekie_harness import make_message

ATTRIBUTE_DICT = "mail_attribute_dict = file:%h/dovecot-attributes\n"


def saves_logged(dc, proc: str, since: int) -> list[int]:
    pattern = (rf"{proc}\(alice\)[^\n]*dovekie-example: hook=save "
               rf"origin=\w+ mailbox=\"INBOX\" verdict=accept saves=(\d+)")
    return [int(m.group(1)) for m in dc.find_log(pattern, since=since)]


def test_state_persists_across_processes(dovekie):
    dc = dovekie(settings={"dovekie_example_count_saves": "yes"},
                 extra_conf=ATTRIBUTE_DICT + "imap_metadata = yes\n")
    start = dc.log_offset()

    for i in range(2):  # two separate imap processes
        imap = dc.imap()
        typ, data = imap.append("INBOX", None, None,
                                make_message(f"state {i}", "hello\n"))
        assert typ == "OK", data
        imap.logout()
    dc.deliver("alice@example.test", make_message("via lmtp", "hi\n"))

    dc.wait_for_log(r"lmtp\(alice\)[^\n]*saves=3", since=start)
    assert saves_logged(dc, "imap", start) == [1, 2]
    assert saves_logged(dc, "lmtp", start) == [3]

    # The state lives under vendor/vendor.dovecot/pvt/, which METADATA
    # clients can neither list nor read.
    imap = dc.imap()
    key = "/private/vendor/vendor.dovecot/pvt/dovekie/example/saves/append"
    typ, data = imap.xatom("GETMETADATA", '"INBOX"', f"({key})")
    _, meta = imap._untagged_response(typ, data, "METADATA")
    text = b" ".join(d for d in meta if isinstance(d, bytes)).decode()
    # Dovecot refuses the pvt/ key outright (NO) or answers NIL: never "3".
    assert typ == "NO" or "NIL" in text, (typ, data, text)
    assert '"2"' not in text and " 2)" not in text, text
    imap.logout()


def test_state_without_attribute_dict_is_a_clear_warning(dovekie):
    # No mail_attribute_dict: the module cannot keep state; it says so and
    # the save still goes through.
    dc = dovekie(settings={"dovekie_example_count_saves": "yes"})
    start = dc.log_offset()
    imap = dc.imap()
    typ, data = imap.append("INBOX", None, None, make_message("x", "y\n"))
    assert typ == "OK", data
    imap.logout()
    dc.wait_for_log(r"imap\(alice\)[^\n]*Warning: [^\n]*dovekie-example: "
                    r"cannot count saves: ", since=start)
    assert dc.message_count("INBOX") == 1
    assert saves_logged(dc, "imap", start) == [0]
