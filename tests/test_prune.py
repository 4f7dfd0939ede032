"""Prune against real repositories (file:// and SeaweedFS S3) holding real pg_dump backups
of the sample database."""

from __future__ import annotations

import io
import json
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from tests.support.ops import (
    FrozenNow,
    RecordingStore,
    config_text,
    keys_of,
    make_context,
    make_keys,
    s3_repo_extra,
)

from posterity.errors import LockHeld
from posterity.operations.audit import read_audit
from posterity.operations.backup import backup_source
from posterity.operations.prune import prune
from posterity.repository import layout
from posterity.repository.locks import exclusive_lock

DAY = timedelta(days=1)
START = datetime(2024, 3, 1, 2, 0, tzinfo=UTC)


@pytest.fixture(params=["file", "s3"])
def repo_env(request, tmp_path, sample_db, monkeypatch):
    """(context factory, frozen clock): a repository with the sample db as source 'db'."""
    recipient, identity = make_keys(tmp_path)
    if request.param == "file":
        url, extra = f"file://{tmp_path}/repo", ""
    else:
        s3 = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        url, extra = f"s3://{bucket}/prod", s3_repo_extra(s3)
    clock = FrozenNow(monkeypatch, "posterity.operations.backup")

    def factory(retention: str = ""):
        text = config_text(url, recipient, identity, tmp_path / "state", {"db": sample_db.dsn}, retention, extra)
        ctx = make_context(text)
        ctx.repo.store = RecordingStore(ctx.repo.store)
        return ctx

    ctx = factory()
    ctx.repo.init([recipient])
    return factory, clock


def take(ctx, clock, when, tags=("daily",)):
    clock.when = when
    try:
        return backup_source(ctx, "db", tags=list(tags)).manifest
    finally:
        clock.when = None


def decode(ctx, manifest) -> bytes:
    """Every artifact of the backup, hash-checked and decrypted (proves the payloads)."""
    out = io.BytesIO()
    for a in manifest.artifacts:
        ctx.repo.read_artifact(a, out, ctx.identities())
    return out.getvalue()


def test_dry_run_shows_every_backup_with_its_rule_and_deletes_nothing(repo_env):
    factory, clock = repo_env
    ctx = factory("[retention]\nkeep_last = 2\n")
    made = [take(ctx, clock, START + i * DAY) for i in range(4)]
    before = keys_of(ctx.repo.store)
    ctx.repo.store.deletes.clear()  # the backups' lock releases

    from posterity.cli.main import State, cli

    runner = CliRunner()
    state = State()
    state._ctx = ctx
    result = runner.invoke(cli, ["prune", "--dry-run", "--json"], obj=state)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    rows = {b["id"]: b for b in report["backups"]}
    assert set(rows) == {m.id for m in made}
    assert [rows[m.id]["action"] for m in made] == ["remove", "remove", "keep", "keep"]
    assert rows[made[3].id]["rule"] == "newest of source; last 1/2"
    assert rows[made[2].id]["rule"] == "last 2/2"
    assert rows[made[0].id]["rule"] == "matched no keep rule"
    assert keys_of(ctx.repo.store) == before
    assert ctx.repo.store.deletes == []
    assert read_audit(ctx, op="prune") == []  # a dry run changes nothing, so it is not audited

    state.json = False
    human = runner.invoke(cli, ["prune", "--dry-run"], obj=state)
    assert human.exit_code == 0
    assert "dry run: nothing was removed" in human.output and "would remove 2 backup(s)" in human.output


def test_prune_deletes_manifests_before_payloads_and_keeps_what_the_policy_keeps(repo_env):
    factory, clock = repo_env
    ctx = factory('[retention]\nkeep_daily = 2\n[retention.tags.weekly]\nkeep_weekly = 2\n')
    daily = [take(ctx, clock, START + i * DAY) for i in range(5)]
    weekly = [take(ctx, clock, START + i * 7 * DAY + timedelta(hours=1), tags=("weekly",)) for i in range(3)]

    report = prune(ctx, now=START + 30 * DAY)

    removed = {b.id for b in report.backups if b.action == "removed"}
    assert removed == {daily[0].id, daily[1].id, daily[2].id, weekly[0].id}
    for m in [daily[0], daily[1], daily[2], weekly[0]]:
        mkey = layout.manifest_key("db", m.id)
        first_payload = min(ctx.repo.store.delete_position(a.key) for a in m.artifacts)
        assert ctx.repo.store.delete_position(mkey) < first_payload
        assert keys_of(ctx.repo.store, layout.backup_prefix("db", m.id)) == set()
    survivors = {m.id for m in ctx.repo.manifests("db")}
    assert survivors == {daily[3].id, daily[4].id, weekly[1].id, weekly[2].id}
    # The kept backups still decode to the same dump (payloads untouched).
    for m in ctx.repo.manifests("db"):
        assert decode(ctx, m).startswith(b"PGDMP")
    assert report.deleted_bytes == sum(m.size for m in [daily[0], daily[1], daily[2], weekly[0]]) + sum(
        len(m.to_json()) for m in [daily[0], daily[1], daily[2], weekly[0]]
    )

    (record,) = read_audit(ctx, op="prune")
    assert record["result"] == "succeeded"
    assert sorted(record["removed"]) == sorted(f"db/{i}" for i in removed)
    local = read_audit(ctx, op="prune", local=True)
    assert [r["removed"] for r in local] == [record["removed"]]


def test_prune_never_removes_the_newest_backup_even_if_no_rule_keeps_it(repo_env):
    factory, clock = repo_env
    ctx = factory('[retention.tags.weekly]\nkeep_weekly = 1\n[retention]\nkeep_within = "1h"\n')
    old = take(ctx, clock, START, tags=("weekly",))
    new = take(ctx, clock, START + DAY, tags=("adhoc",))
    report = prune(ctx, now=START + 400 * DAY)
    actions = {b.id: (b.action, b.rule) for b in report.backups}
    assert actions[new.id] == ("keep", "newest of source; within 1h of newest")
    assert actions[old.id] == ("keep", "weekly 1/1 [tag weekly]")
    ctx2 = factory("[retention]\nkeep_last = 1\n")
    take(ctx2, clock, START + 2 * DAY, tags=("adhoc",))
    prune(ctx2, now=START + 400 * DAY)
    assert [m.id for m in ctx2.repo.manifests("db")][-1] > new.id
    assert len(ctx2.repo.manifests("db")) == 1


def test_payload_referenced_by_a_kept_manifest_is_never_deleted(repo_env):
    factory, clock = repo_env
    ctx = factory("[retention]\nkeep_last = 1\n")
    old = take(ctx, clock, START)
    # A newer backup whose artifact is "unchanged from" the old one: it names the old key.
    new = take(ctx, clock, START + DAY)
    ref_id = layout.new_backup_id(START + 2 * DAY)
    shared = old.artifacts[0]
    raw = new.to_dict()
    raw["id"] = ref_id
    raw["artifacts"][0]["key"] = shared.key
    raw["artifacts"][0]["facts"] = {**raw["artifacts"][0]["facts"], "unchanged_from": old.id}
    raw["artifacts"][0].update(size=shared.size, sha256=shared.sha256, raw_size=shared.raw_size)
    ctx.repo.store.put(layout.manifest_key("db", ref_id), json.dumps(raw).encode())

    report = prune(ctx, now=START + 10 * DAY)
    assert {b.id for b in report.backups if b.action == "removed"} == {old.id, new.id}
    left = keys_of(ctx.repo.store, "backups/")
    assert shared.key in left  # still needed by the kept manifest
    assert layout.manifest_key("db", old.id) not in left
    assert new.artifacts[0].key not in left
    (kept,) = ctx.repo.manifests("db")
    assert decode(ctx, kept).startswith(b"PGDMP")
    # The leftover payload is not mistaken for a killed backup while it is referenced.
    assert all(o.id != old.id for o in report.orphans)


def test_uncommitted_payloads_are_removed_only_after_the_grace_period(repo_env):
    factory, clock = repo_env
    ctx = factory('[retention]\nkeep_last = 5\nuncommitted_grace = "24h"\n')
    kept = take(ctx, clock, START)
    now = START + 10 * DAY
    killed_old = layout.new_backup_id(now - timedelta(hours=30))
    killed_young = layout.new_backup_id(now - timedelta(hours=2))
    for bid in (killed_old, killed_young):
        ctx.repo.store.put(layout.payload_key("db", bid, "db"), b"x" * 1000)

    # A parallel restore killed two days ago left its staged dump behind; one is running now.
    staging = ctx.staging_dir
    staging.mkdir(parents=True)
    (staging / "posterity-restore-old.pgdump").write_bytes(b"x")
    (staging / "posterity-restore-new.pgdump").write_bytes(b"x")
    (staging / "unrelated.txt").write_bytes(b"x")
    two_days_ago = time.time() - 2 * 86400
    for name in ("posterity-restore-old.pgdump", "unrelated.txt"):
        os.utime(staging / name, (two_days_ago, two_days_ago))

    dry = prune(ctx, dry_run=True, now=now)
    assert {o.id: o.action for o in dry.orphans} == {killed_old: "remove", killed_young: "within grace"}
    report = prune(ctx, now=now)
    assert {o.id: o.action for o in report.orphans} == {killed_old: "removed", killed_young: "within grace"}
    assert sorted(p.name for p in staging.iterdir()) == ["posterity-restore-new.pgdump", "unrelated.txt"]
    assert report.staging_removed == [str(staging / "posterity-restore-old.pgdump")]
    left = keys_of(ctx.repo.store, "backups/")
    assert layout.payload_key("db", killed_old, "db") not in left
    assert layout.payload_key("db", killed_young, "db") in left
    assert [m.id for m in ctx.repo.manifests("db")] == [kept.id]


def test_prune_skips_a_source_whose_backup_is_running_and_refuses_a_second_prune(repo_env):
    factory, clock = repo_env
    ctx = factory("[retention]\nkeep_last = 1\n")
    for i in range(3):
        take(ctx, clock, START + i * DAY)
    before = keys_of(ctx.repo.store, "backups/")
    with exclusive_lock(ctx.repo.store, "backup-db", "backup"):
        report = prune(ctx, now=START + 5 * DAY)
        assert "db" in report.skipped and "backup-db" in report.skipped["db"]
        assert report.backups == [] and keys_of(ctx.repo.store, "backups/") == before
    with exclusive_lock(ctx.repo.store, "prune", "prune"), pytest.raises(LockHeld):
        prune(ctx, now=START + 5 * DAY)
    (failed,) = [r for r in read_audit(ctx, op="prune") if r["result"] == "failed"]
    assert "prune" in failed["error"]
    report = prune(ctx, now=START + 5 * DAY)
    assert len([b for b in report.backups if b.action == "removed"]) == 2
    assert keys_of(ctx.repo.store, "locks/") == set()  # every lock prune took is released


def test_keys_a_bucket_lock_protects_are_reported_not_errors(tmp_path, sample_db, s3_server, s3_bucket, r2_proxy,
                                                             monkeypatch):
    recipient, identity = make_keys(tmp_path)
    text = config_text(f"s3://{s3_bucket}/locked", recipient, identity, tmp_path / "state", {"db": sample_db.dsn},
                       "[retention]\nkeep_last = 1\n", s3_repo_extra(s3_server, r2_proxy.endpoint))
    ctx = make_context(text)
    ctx.repo.init([recipient])
    clock = FrozenNow(monkeypatch, "posterity.operations.backup")
    old = take(ctx, clock, START)
    new = take(ctx, clock, START + DAY)
    # Every delete is refused like an R2 bucket-lock rule does (403 AccessDenied).
    r2_proxy.fail_next(method="DELETE", path_contains="/backups/", status=403, code="AccessDenied", times=50)
    report = prune(ctx, now=START + 5 * DAY)
    assert layout.manifest_key("db", old.id) in report.locked_keys
    assert {b.id: b.action for b in report.backups} == {old.id: "locked", new.id: "keep"}
    # The manifest could not go, so its payloads were not even tried: the backup is whole.
    r2_proxy.clear_faults()
    assert [m.id for m in ctx.repo.manifests("db")] == [old.id, new.id]
    assert decode(ctx, old).startswith(b"PGDMP")
    # Once the lock allows, a later prune removes it.
    report = prune(ctx, now=START + 5 * DAY)
    assert report.locked_keys == [] and [m.id for m in ctx.repo.manifests("db")] == [new.id]


def test_prune_removes_wal_only_a_removed_base_backup_needed(tmp_path):
    from posterity.repository import ArtifactRecord, Manifest

    recipient, identity = make_keys(tmp_path)
    ctx = make_context(config_text(f"file://{tmp_path}/repo", recipient, identity, tmp_path / "state", {},
                                   "[retention]\nkeep_last = 1\n"))
    ctx.repo.init([recipient])
    seg = "00000001000000000000000{}".format
    for start, when in [(2, START), (5, START + DAY)]:
        bid = layout.new_backup_id(when)
        key = layout.payload_key("pitr", bid, "base")
        ctx.repo.store.put(key, b"base backup bytes")
        ctx.repo.commit(Manifest(
            id=bid, source="pitr", kind="postgres-physical", started_at=when.isoformat(),
            finished_at=when.isoformat(), posterity_version="t", host="h",
            artifacts=[ArtifactRecord("base", key, "tar", 17, "0" * 64, 17, [])],
            facts={"wal_start_segment": seg(start), "wal_segment_size": 16 * 1024 * 1024},
        ))
    wal = [f"wal/pitr/00000001/{seg(n)}{suffix}" for n in range(1, 8) for suffix in (".zst.age", ".json")]
    wal.append("wal/pitr/00000002/00000002.history.zst.age")
    for k in wal:
        ctx.repo.store.put(k, b"w")

    dry = prune(ctx, dry_run=True)
    assert dry.wal_deleted == 8 and keys_of(ctx.repo.store, "wal/") == set(wal)
    report = prune(ctx)
    assert report.wal_deleted == 8
    # Once the base backup starting at segment 2 is removed, segments 1..4 (payload and
    # record each) precede the kept one's start 5; the history file and 5..7 stay.
    gone = {k for k in wal if any(seg(n) in k for n in (1, 2, 3, 4))}
    assert keys_of(ctx.repo.store, "wal/") == set(wal) - gone
    assert [m.facts["wal_start_segment"] for m in ctx.repo.manifests("pitr")] == [seg(5)]
