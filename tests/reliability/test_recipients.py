"""Backups to recipients the repository does not know are refused; changes are recorded.

Found (issue 11.3): the descriptor records the recipients' fingerprints but nothing compared
them: after [encryption] recipients was replaced by a foreign key, backups succeeded
silently — unreadable to the real identity. Now: exit 7 naming both sides and the command
that records a deliberate change; `key recipients rotate/add/remove` writes a new version
(write-once, the old kept, audited); `show` lists each backup's recipients.
"""

from __future__ import annotations

import json

from tests.reliability.harness import Setup

from posterity.pipeline import generate_identity
from posterity.repository.repository import fingerprint


def _use_recipients(s: Setup, *recipients: str) -> None:
    text = s.config.read_text()
    start = text.index("recipients = [")
    end = text.index("]", start) + 1
    s.config.write_text(text[:start] + "recipients = " + json.dumps(list(recipients)) + text[end:])


def test_backup_to_an_unrecorded_recipient_is_refused_until_the_change_is_recorded(local_setup: Setup):
    s = local_setup
    own = s.recipient
    first = s.backup()
    foreign = generate_identity(s.root / "foreign.txt")
    _use_recipients(s, foreign)

    r = s.run("backup", "db")
    assert r.code == 7, r  # was: 0, a backup only the foreign identity can read
    assert f"configured but not recorded: {fingerprint(foreign)}" in r.err, r
    assert f"recorded but not configured: {fingerprint(own)}" in r.err, r
    assert "posterity key recipients rotate" in r.err, r  # the hint names the command
    assert s.backup_ids() == [first] and s.keys("backups/db/") == sorted(
        k for k in s.keys("backups/db/") if first in k
    )

    r = s.run("key", "recipients", "rotate", "--reason", "new backup key", "--json")
    assert r.code == 0, r
    v2 = r.json()
    assert v2["version"] == 2 and v2["added"] == [fingerprint(foreign)] and v2["removed"] == [fingerprint(own)]
    assert s.keys("keys/") == ["keys/recipients-000002.json"]
    assert json.loads(s.context().repo.store.get_bytes("posterity.json"))["recipients"] == [fingerprint(own)]  # kept
    second = s.backup()

    shown = s.run("show", second, "--json").json()
    assert shown["recipient_fingerprints"] == [fingerprint(foreign)], shown
    assert s.run("show", first, "--json").json()["recipient_fingerprints"] == [fingerprint(own)]
    human = s.run("show", second).out
    assert f"recipients      {fingerprint(foreign)}  {foreign[:16]}…" in human, human

    # add / remove: a third version with both, then the foreign one removed again.
    assert s.run("key", "recipients", "add", own).code == 0
    _use_recipients(s, foreign, own)
    s.backup()
    r = s.run("key", "recipients", "remove", fingerprint(foreign), "--reason", "retired")
    assert r.code == 0, r
    assert s.run("backup", "db").code == 7  # the config still names the removed key
    _use_recipients(s, own)
    s.backup()
    r = s.run("key", "recipients", "remove", own)
    assert r.code == 2 and "at least one recipient" in r.err, r  # never none

    versions = s.run("key", "recipients", "list", "--json").json()
    assert [(v["version"], v["fingerprints"]) for v in versions] == [
        (1, [fingerprint(own)]),
        (2, [fingerprint(foreign)]),
        (3, sorted([fingerprint(foreign), fingerprint(own)])),
        (4, [fingerprint(own)]),
    ]
    assert versions[3]["reason"] == "retired"
    audit = [json.loads(line) for line in (s.root / "state" / "audit.jsonl").read_text().splitlines()]
    assert [a["operation"] for a in audit if a["operation"].startswith("key-recipients")] == [
        "key-recipients-rotate",
        "key-recipients-add",
        "key-recipients-remove",
    ]
