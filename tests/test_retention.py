"""The floor under expiry, proven on real objects: a year of failed backups loses nothing new.

The lifecycle rules are the ones the component registers; the objects are the
ones real backups stored in moto (tagged by the function as it runs); S3's
documented lifecycle semantics are applied by ``lifecycle_model``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from snapshot_backup.retention import RETIRED_TAG_KEY
from snapshot_backup.store import SnapshotStore
from testbed.archive_writer import RaftState
from testbed.pulumi_mocks import run_program
from tests.conftest import back_up, locked_bucket
from tests.lifecycle_model import is_current_object, read_versions, s3_rules, surviving

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
        consul.state = RaftState(index=100 + run, term=2, data=b"state %d" % run)
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
    newest = SnapshotStore(s3, bucket, "consul-snapshots/").newest("prod", 3)
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
