"""Retention as a pure function: properties (hypothesis) and worked examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posterity.config import loads_config
from posterity.config.durations import format_duration, parse_duration
from posterity.repository.retention import NEWEST, Policy, Snapshot, apply_policy, decide, resolver

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def snap(i: int, minutes: int, source: str = "db", tags: tuple[str, ...] = ()) -> Snapshot:
    return Snapshot(f"id{i:04d}", source, T0 + timedelta(minutes=minutes), frozenset(tags))


# Backups spread over ~3 years at minute resolution, some sharing a timestamp.
snapshots = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3 * 365 * 24 * 60),
        st.sampled_from(["db", "search"]),
        st.sets(st.sampled_from(["daily", "weekly", "adhoc"]), max_size=2),
    ),
    min_size=1,
    max_size=40,
).map(lambda xs: [snap(i, m, s, tuple(t)) for i, (m, s, t) in enumerate(xs)])

counts = st.one_of(st.none(), st.integers(min_value=1, max_value=6))
policies = st.builds(
    Policy,
    keep_last=counts,
    keep_hourly=counts,
    keep_daily=counts,
    keep_weekly=counts,
    keep_monthly=counts,
    keep_yearly=counts,
    keep_within=st.one_of(st.none(), st.integers(min_value=0, max_value=400).map(lambda d: timedelta(days=d))),
)


def single(policy: Policy):
    return lambda source, tag: policy if tag is None else None


def kept_ids(decisions) -> set[str]:
    return {d.snapshot.id for d in decisions if d.keep}


@settings(max_examples=150, deadline=None)
@given(snapshots, policies)
def test_newest_backup_of_every_source_is_always_kept(snaps, policy):
    decisions = decide(snaps, single(policy))
    for source in {s.source for s in snaps}:
        newest = max((s for s in snaps if s.source == source), key=lambda s: (s.time, s.id))
        d = next(d for d in decisions if d.snapshot.id == newest.id)
        assert d.keep and NEWEST in d.reasons
    assert len(decisions) == len(snaps)


@settings(max_examples=150, deadline=None)
@given(snapshots, policies, st.randoms(use_true_random=False))
def test_result_is_independent_of_input_order(snaps, policy, rnd):
    shuffled = list(snaps)
    rnd.shuffle(shuffled)
    policy_for = resolver_with_tags(policy)
    a = {(d.snapshot.id, d.keep, tuple(d.reasons)) for d in decide(snaps, policy_for)}
    b = {(d.snapshot.id, d.keep, tuple(d.reasons)) for d in decide(shuffled, policy_for)}
    assert a == b


def resolver_with_tags(policy: Policy):
    weekly = Policy(keep_weekly=2)

    def policy_for(source, tag):
        if tag is None:
            return policy
        return weekly if tag == "weekly" else None

    return policy_for


def _bucket_counts_honoured(snaps, n, bucket):
    """keep_X=n alone keeps exactly the newest backup of each of the n newest buckets."""
    ordered = sorted(snaps, key=lambda s: (s.time, s.id), reverse=True)
    expected, seen = set(), []
    for s in ordered:
        b = bucket(s.time)
        if b not in seen:
            if len(seen) == n:
                break
            seen.append(b)
            expected.add(s.id)
    return expected


@settings(max_examples=150, deadline=None)
@given(snapshots, st.integers(min_value=1, max_value=8))
def test_keep_counts_are_honoured(snaps, n):
    one = [s for s in snaps if s.source == "db"] or [snap(0, 0)]
    cases = {
        "keep_daily": lambda t: t.date(),
        "keep_hourly": lambda t: (t.date(), t.hour),
        "keep_weekly": lambda t: t.isocalendar()[:2],
        "keep_monthly": lambda t: (t.year, t.month),
        "keep_yearly": lambda t: t.year,
    }
    for fname, bucket in cases.items():
        kept = kept_ids(decide(one, single(Policy(**{fname: n}))))
        assert kept == _bucket_counts_honoured(one, n, bucket), fname
        assert len(kept) == min(n, len({bucket(s.time) for s in one}))
    last = kept_ids(decide(one, single(Policy(keep_last=n))))
    newest_n = sorted(one, key=lambda s: (s.time, s.id), reverse=True)[:n]
    assert last == {s.id for s in newest_n}


@settings(max_examples=150, deadline=None)
@given(snapshots, st.integers(min_value=0, max_value=500))
def test_keep_within_keeps_exactly_the_backups_near_the_newest(snaps, days):
    one = [s for s in snaps if s.source == "db"] or [snap(0, 0)]
    within = timedelta(days=days)
    kept = kept_ids(decide(one, single(Policy(keep_within=within))))
    newest = max(s.time for s in one)
    assert kept == {s.id for s in one if newest - s.time <= within}


@settings(max_examples=100, deadline=None)
@given(snapshots, policies, policies)
def test_rules_combine_as_a_union(snaps, a, b):
    merged = Policy(**{f: getattr(a, f) if getattr(a, f) is not None else getattr(b, f)
                       for f in Policy.__dataclass_fields__})
    # Only compose when no field is set in both (otherwise "merged" is not A ∪ B).
    if any(getattr(a, f) is not None and getattr(b, f) is not None for f in Policy.__dataclass_fields__):
        return
    if a.empty() or b.empty():
        return
    union = kept_ids(decide(snaps, single(a))) | kept_ids(decide(snaps, single(b)))
    assert kept_ids(decide(snaps, single(merged))) == union


def test_empty_policy_keeps_everything():
    snaps = [snap(i, i * 1000) for i in range(10)]
    decisions = decide(snaps, single(Policy()))
    assert all(d.keep for d in decisions)


def test_worked_example_daily_weekly_with_tag_groups():
    # Daily backups at 02:00 for 60 days; every Sunday's also tagged weekly.
    snaps = []
    for day in range(60):
        t = T0 + timedelta(days=day, hours=2)
        tags = ("daily", "weekly") if t.isoweekday() == 7 else ("daily",)
        snaps.append(Snapshot(f"{t:%Y%m%dT%H%M%SZ}-0000", "db", t, frozenset(tags)))
    policies = {"daily": Policy(keep_within=timedelta(days=7)), "weekly": Policy(keep_weekly=4)}

    def policy_for(source, tag):
        return policies.get(tag) if tag else Policy(keep_last=1)

    decisions = decide(snaps, policy_for)
    kept = sorted(d.snapshot.time.date().isoformat() for d in decisions if d.keep)
    # 8 days within 7d of the newest (Feb 22..29), plus the 4 newest Sundays (Feb 4..25).
    assert kept == ["2024-02-04", "2024-02-11", "2024-02-18", "2024-02-22", "2024-02-23", "2024-02-24",
                    "2024-02-25", "2024-02-26", "2024-02-27", "2024-02-28", "2024-02-29"]
    by_day = {d.snapshot.time.date().isoformat(): d for d in decisions}
    assert by_day["2024-02-25"].reasons == ["within 1w of newest [tag daily]", "weekly 1/4 [tag weekly]"]
    assert by_day["2024-02-29"].reasons[0] == NEWEST
    assert not by_day["2024-01-28"].keep and by_day["2024-01-28"].rule == "matched no keep rule"


def test_apply_policy_skips_empty_buckets():
    # Backups on days 0, 1, 5, 6: keep_daily=3 keeps days 6, 5 and 1 (gaps do not use slots).
    snaps = [snap(d, d * 1440) for d in (0, 1, 5, 6)]
    kept = apply_policy(snaps, Policy(keep_daily=3))
    assert sorted(kept) == ["id0001", "id0005", "id0006"]
    assert kept["id0006"] == ["daily 1/3"]


RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"


def test_config_precedence_source_over_global_tag_over_default():
    cfg = loads_config(f"""
[repository]
url = "file:///tmp/unused"
[encryption]
recipients = ["{RECIPIENT}"]
[retention]
keep_last = 2
[retention.tags.weekly]
keep_weekly = 52
[retention.sources.db]
keep_daily = 14
[retention.sources.db.tags.weekly]
keep_within = "1y"
[retention.sources.search.tags.monthly]
keep_monthly = 84
""")
    policy_for = resolver(cfg.retention)
    assert policy_for("db", None) == Policy(keep_daily=14)
    assert policy_for("db", "weekly") == Policy(keep_within=timedelta(days=365))
    assert policy_for("search", None) == Policy(keep_last=2)  # a tags-only source section inherits
    assert policy_for("search", "weekly") == Policy(keep_weekly=52)
    assert policy_for("search", "monthly") == Policy(keep_monthly=84)
    assert policy_for("db", "monthly") is None
    assert policy_for("other", "adhoc") is None


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("26h", 93600), ("14d", 1209600), ("1d12h", 129600),
                                              ("52w", 52 * 7 * 86400), ("1y", 365 * 86400)])
def test_durations_parse_and_format_round_trip(text, seconds):
    assert parse_duration(text).total_seconds() == seconds
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


@pytest.mark.parametrize("bad", ["", "14", "1 month", "d", "-3d", "3x"])
def test_bad_durations_are_refused_with_the_accepted_form(bad):
    with pytest.raises(ValueError, match="write a number and a unit"):
        parse_duration(bad)


def test_bad_retention_config_points_at_the_key():
    from posterity.config import ConfigProblems

    with pytest.raises(ConfigProblems) as info:
        loads_config(f"""
[repository]
url = "file:///tmp/unused"
[encryption]
recipients = ["{RECIPIENT}"]
[retention]
keep_within = "2 months"
keep_daily = 0
[[schedule]]
name = "daily"
cron = "0 25 * * *"
""")
    text = str(info.value)
    assert "retention.keep_within" in text and "retention.keep_daily" in text and "schedule.0.cron" in text


def test_example_config_renders_the_operations_sections_and_parses(monkeypatch):
    from posterity.config.example import example_config

    for var in ("R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY", "MEILI_MASTER_KEY"):
        monkeypatch.setenv(var, "x")
    text = example_config()
    for header in ("[retention]", "# [retention.tags.weekly]", "# [retention.sources.db]", "[[schedule]]",
                   "[daemon]", "[notify]", "# max_age = \"26h\""):
        assert header in text
    cfg = loads_config(text)
    assert [(s.name, s.cron, s.tag) for s in cfg.schedule] == [("daily", "0 2 * * *", "daily"),
                                                               ("weekly-archive", "0 3 * * 0", "weekly")]
    # The commented nested tables are valid TOML once uncommented.
    uncommented = text.replace("# [retention.", "[retention.").replace("# keep_", "keep_")
    policy_for = resolver(loads_config(uncommented).retention)
    assert policy_for("db", None) == Policy(keep_daily=14)
    assert policy_for("db", "monthly") == Policy(keep_monthly=84)
