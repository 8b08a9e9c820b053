"""The floor under expiry, proven on real objects: a year of failed backups loses nothing new.

The lifecycle rules are the ones the component registers; the objects are the
ones real backups stored in moto (tagged by the function as it runs); S3's
documented lifecycle semantics are applied by ``lifecycle_model``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from snapshot_backup.keys import SnapshotKey
from snapshot_backup.retention import RETIRED_TAG_KEY, apply_floor, content_drops
from snapshot_backup.store import SnapshotStore
from testbed.archive_writer import RaftState
from testbed.pulumi_mocks import run_program
from tests.conftest import back_up, locked_bucket
from tests.lifecycle_model import is_current_object, read_versions, s3_rules, surviving

PREFIX = "consul-snapshots/"
ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:consul/token-AbCdEf"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"


def component_rules(**settings: Any) -> list[dict[str, Any]]:
    """The lifecycle rules the component registers for cluster "prod", in S3's shape."""
    entry = {"name": "prod", "consulAddress": "http://consul:8500", "tokenSecretArn": ARN}
    run = run_program({"clusters": [entry | settings]})
    return s3_rules(run.one(LIFECYCLE, "prod-snapshots-lifecycle").inputs["rules"])


def back_up_runs(consul: Any, bucket: str, runs: int, keep_latest: int) -> list[str]:
    keys = []
    for run in range(1, runs + 1):
        consul.state = RaftState(index=100 + run, term=2, seed=run)
        keys.append(back_up(consul, bucket, KEEP_LATEST=str(keep_latest))["key"])
    return keys


def retired(s3: Any, bucket: str, key: str) -> bool:
    tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return any(t["Key"] == RETIRED_TAG_KEY for t in tags)


def test_the_newest_snapshots_outlive_a_year_of_failed_backups(consul, s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    rules = component_rules(keepLatest=3, retentionDays=30, noncurrentVersionDays=7)
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    keys = back_up_runs(consul, bucket, runs=6, keep_latest=3)
    # The function retired what fell out of the newest three, and nothing else.
    assert [retired(s3, bucket, key) for key in keys] == [True] * 3 + [False] * 3

    stored_rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    versions = read_versions(s3, bucket)
    now = datetime.now(UTC)
    # Age counts from creation: within retentionDays nothing expires.
    month = surviving(stored_rules, versions, now + timedelta(days=20))
    assert all(is_current_object(month[key]) for key in keys)
    # Then backups fail for a year: the three newest stay, current, under their keys.
    year = surviving(stored_rules, versions, now + timedelta(days=365))
    assert [is_current_object(year[key]) for key in keys[3:]] == [True] * 3
    assert [year[key] for key in keys[:3]] == [[], [], []]  # expired, then removed for good
    newest = SnapshotStore(s3, bucket, "consul-snapshots/").list("prod")[:3]
    assert [s.key for s in newest] == keys[:2:-1]


def test_locked_versions_stay_until_their_lock_ends_even_when_retired(s3):
    bucket = locked_bucket(s3, "locked-floor", "GOVERNANCE", 400)
    rules = component_rules(keepLatest=1, retentionDays=30, noncurrentVersionDays=7)
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    key = "consul-snapshots/prod/2026/01/01/prod-20260101T000000Z-1.snap"
    s3.put_object(Bucket=bucket, Key=key, Body=b"snapshot")
    s3.put_object_tagging(
        Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": RETIRED_TAG_KEY, "Value": "true"}]}
    )
    versions = read_versions(s3, bucket)
    assert versions[0].locked_until is not None  # the bucket's default retention applied
    stored_rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    now = datetime.now(UTC)
    after_a_year = surviving(stored_rules, versions, now + timedelta(days=365))[key]
    # Expired (a delete marker on top), yet the locked version is still there.
    assert [v.delete_marker for v in after_a_year] == [False, True]
    # Once the lock has ended, lifecycle removes the version, then its delete marker.
    assert surviving(stored_rules, versions, now + timedelta(days=410))[key] == []


# --- the floor over every snapshot, on objects put directly ---------------------

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def put_snapshots(
    s3: Any, bucket: str, count: int, start_index: int = 100, recorded: bool = True
) -> list[str]:
    """``count`` hourly snapshots (with a manifest beside each when ``recorded``), oldest first."""
    keys = []
    for n in range(count):
        name = SnapshotKey.of(PREFIX, "prod", T0 + timedelta(hours=n), start_index + n)
        s3.put_object(Bucket=bucket, Key=name.key, Body=b"archive")
        if recorded:  # the floor looks at whether there is one, not inside
            s3.put_object(Bucket=bucket, Key=name.manifest_key, Body=b"{}")
        keys.append(name.key)
    return keys


def tag_of(s3: Any, bucket: str, key: str) -> str | None:
    tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return next((t["Value"] for t in tags if t["Key"] == RETIRED_TAG_KEY), None)


def count_calls(s3: Any, operation: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    s3.meta.events.register(
        f"before-parameter-build.s3.{operation}", lambda params, **_: calls.append(dict(params))
    )
    return calls


def test_every_snapshot_beyond_the_floor_is_retired_however_many(s3, bucket):
    keys = put_snapshots(s3, bucket, 25, recorded=False)  # stored by the old code
    # The old window retired only the three just beyond keepLatest: 15 were stranded.
    for key in keys[15:18]:
        s3.put_object_tagging(
            Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": RETIRED_TAG_KEY, "Value": "true"}]}
        )
    store = SnapshotStore(s3, bucket, PREFIX)
    result = apply_floor(store, "prod", keep_latest=7)
    assert sorted(result.retired) == sorted(keys[:18]) and not result.errors
    # Inside the floor, the old code's snapshots are said "false" outright: it may
    # have tagged some of them without leaving a marker.
    assert [tag_of(s3, bucket, key) for key in keys] == ["true"] * 18 + ["false"] * 7
    listed = store.list("prod")
    assert [s.retired for s in listed] == [False] * 7 + [True] * 18
    # The markers are born tagged, so they expire with their snapshots.
    marker = SnapshotKey.of(PREFIX, "prod", T0, 100).retired_key
    assert tag_of(s3, bucket, marker) == "true"

    # Snapshots the old code stored sit inside the floor without markers: their
    # tag is not known, so each run says "false" again (7 requests, no more).
    tagging = count_calls(s3, "PutObjectTagging")
    again = apply_floor(store, "prod", keep_latest=7)
    assert again.retired == [] and sorted(again.kept_again) == sorted(keys[18:])
    assert {call["Tagging"]["TagSet"][0]["Value"] for call in tagging} == {"false"}


def test_a_recorded_floor_costs_one_listing_and_no_change(s3, bucket):
    put_snapshots(s3, bucket, 12)
    store = SnapshotStore(s3, bucket, PREFIX)
    apply_floor(store, "prod", keep_latest=7)
    tagging = count_calls(s3, "PutObjectTagging")
    deletes = count_calls(s3, "DeleteObject")
    again = apply_floor(store, "prod", keep_latest=7)
    assert (again.retired, again.kept_again, tagging, deletes) == ([], [], [], [])


def test_legacy_snapshots_tagged_by_the_old_code_come_back_into_a_raised_floor(s3, bucket):
    keys = put_snapshots(s3, bucket, 10, recorded=False)
    for key in keys[:3]:  # the old window tagged ranks 8 to 10, and left no marker
        s3.put_object_tagging(
            Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": RETIRED_TAG_KEY, "Value": "true"}]}
        )
    apply_floor(SnapshotStore(s3, bucket, PREFIX), "prod", keep_latest=10)
    assert [tag_of(s3, bucket, key) for key in keys] == ["false"] * 10


def test_a_long_retirement_is_counted_in_the_runs_line_not_listed(s3, bucket):
    put_snapshots(s3, bucket, 40)
    record = apply_floor(SnapshotStore(s3, bucket, PREFIX), "prod", keep_latest=1).as_record()
    assert record["retired_count"] == 39 and len(record["retired"]) == 10


def test_lowering_and_raising_keep_latest_moves_the_floor_both_ways(s3, bucket):
    keys = put_snapshots(s3, bucket, 10)
    store = SnapshotStore(s3, bucket, PREFIX)
    apply_floor(store, "prod", keep_latest=7)
    lowered = apply_floor(store, "prod", keep_latest=2)
    assert sorted(lowered.retired) == sorted(keys[3:8])
    raised = apply_floor(store, "prod", keep_latest=5)
    assert sorted(raised.kept_again) == sorted(keys[5:8])
    assert [tag_of(s3, bucket, key) for key in keys] == ["true"] * 5 + ["false"] * 3 + [None] * 2
    assert [s.retired for s in store.list("prod")] == [False] * 5 + [True] * 5
    # Back out of the floor later: retired again, not stranded by its old marker.
    assert sorted(apply_floor(store, "prod", keep_latest=2).retired) == sorted(keys[5:8])


def test_the_floor_keeps_the_newest_by_index_and_the_newest_by_time(s3, bucket):
    store = SnapshotStore(s3, bucket, PREFIX)
    before_the_disaster = put_snapshots(s3, bucket, 3, start_index=1000)
    # A cluster rebuilt from an older snapshot: newer snapshots, lower indexes.
    rebuilt = []
    for n in range(3):
        name = SnapshotKey.of(PREFIX, "prod", T0 + timedelta(days=1, hours=n), 401 + n)
        s3.put_object(Bucket=bucket, Key=name.key, Body=b"archive")
        rebuilt.append(name.key)
    result = apply_floor(store, "prod", keep_latest=1)
    kept = {s.key for s in store.list("prod") if not s.retired}
    assert kept == {before_the_disaster[-1], rebuilt[-1]}
    assert sorted(result.retired) == sorted(before_the_disaster[:2] + rebuilt[:2])


def test_a_held_snapshot_is_never_retired_until_released(s3, bucket):
    keys = put_snapshots(s3, bucket, 4)
    held = SnapshotKey.of(PREFIX, "prod", T0, 100)
    s3.put_object(Bucket=bucket, Key=held.hold_key, Body=b"{}")
    store = SnapshotStore(s3, bucket, PREFIX)
    assert sorted(apply_floor(store, "prod", keep_latest=1).retired) == sorted(keys[1:3])
    assert tag_of(s3, bucket, keys[0]) is None
    s3.delete_object(Bucket=bucket, Key=held.hold_key)  # consul-backup release
    assert apply_floor(store, "prod", keep_latest=1).retired == [keys[0]]


def test_a_failure_is_reported_and_the_rest_still_retired(s3, bucket):
    keys = put_snapshots(s3, bucket, 5)

    def refuse(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == keys[1]:
            raise RuntimeError("AccessDenied for this one")

    s3.meta.events.register("before-parameter-build.s3.PutObjectTagging", refuse)
    result = apply_floor(SnapshotStore(s3, bucket, PREFIX), "prod", keep_latest=2)
    assert sorted(result.retired) == sorted([keys[0], keys[2]])
    assert result.errors == [f"{keys[1]}: RuntimeError: AccessDenied for this one"]
    assert "AccessDenied" in result.as_record()["retire_error"]


def test_without_time_left_nothing_changes_and_the_rest_is_deferred(s3, bucket):
    put_snapshots(s3, bucket, 5)
    result = apply_floor(SnapshotStore(s3, bucket, PREFIX), "prod", 2, time_left=lambda: False)
    assert (result.retired, result.deferred) == ([], 3)


@pytest.mark.parametrize(
    ("before", "after", "flagged"),
    [
        (1000, 400, True),  # 60 % gone
        (1000, 500, False),  # exactly half: not more than 50 %
        (20, 0, True),
        (19, 0, False),  # too few to judge
        (100, 150, False),
    ],
)
def test_a_drop_of_more_than_the_percentage_is_flagged(before, after, flagged):
    drops = content_drops({"kv_entries": before}, {"kv_entries": after}, 50)
    assert drops == ({"kv_entries": {"from": before, "to": after}} if flagged else {})


def test_every_watched_count_is_judged():
    previous = {"kv_entries": 100, "service_instances": 100, "nodes": 100, "acl_tokens": 100}
    current = {"kv_entries": 10, "service_instances": 90, "nodes": 0, "acl_tokens": 49}
    assert set(content_drops(previous, current, 50)) == {"kv_entries", "nodes", "acl_tokens"}
