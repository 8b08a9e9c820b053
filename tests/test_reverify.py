"""The daily re-verification: the newest snapshot, read again, proven again, in both buckets."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from handler import verify_handler
from snapshot_backup.reverify import VerificationError
from testbed.archive_writer import RaftState, archive_bytes
from tests.conftest import back_up, put_archive, run_record


def verify_env(bucket: str, **extra: str) -> dict[str, str]:
    return {"BACKUP_BUCKET": bucket, "CLUSTER_NAME": "prod", **extra}


def records(captured: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith("{")]


def test_the_newest_snapshot_is_read_again_and_proven(consul, s3, bucket, capsys):
    back_up(consul, bucket)
    consul.state = RaftState(index=500, term=3, data=b"newest state")
    newest = back_up(consul, bucket)
    capsys.readouterr()
    summary = verify_handler({}, None, env=verify_env(bucket))
    proven = summary["verified"]["bucket"]
    assert (proven["key"], proven["raft_index"]) == (newest["key"], 500)
    assert proven["sha256"] == newest["sha256"]
    [line] = records(capsys.readouterr().out)
    assert line["outcome"] == "verified" and line["VerifySuccess"] == 1
    assert line["NewestVerifiedAge"] >= 0 and line["VerifiedBytes"] == newest["bytes"]
    names = {m["Name"] for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"VerifySuccess", "VerifyFailure", "NewestVerifiedAge", "VerifyDuration"} <= names


def test_a_replica_in_another_region_is_verified_too(consul, s3, bucket):
    replica = boto3.client("s3", region_name="eu-central-1")
    replica.create_bucket(
        Bucket="reverify-replica", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    back_up(consul, bucket)
    back_up(consul, "reverify-replica")
    env = verify_env(bucket, REPLICA_BUCKET="reverify-replica", REPLICA_REGION="eu-central-1")
    summary = verify_handler({}, None, env=env)
    assert set(summary["verified"]) == {"bucket", "replica"}


def test_a_snapshot_changed_after_it_was_stored_fails_and_says_where(consul, s3, bucket, capsys):
    stored = back_up(consul, bucket)
    other = archive_bytes(
        RaftState(index=stored["raft_index"], term=1, data=b"not what was stored")
    )
    # Same key, new content, and the recorded SHA-256 of the old one.
    head = s3.head_object(Bucket=bucket, Key=stored["key"])
    s3.put_object(Bucket=bucket, Key=stored["key"], Body=other, Metadata=head["Metadata"])
    capsys.readouterr()
    with pytest.raises(VerificationError, match=r"bucket s3://.*differs from the recorded"):
        verify_handler({}, None, env=verify_env(bucket))
    line = run_record(capsys.readouterr().out)
    assert line["VerifyFailure"] == 1 and "differs from the recorded" in line["error"]


def test_an_archived_newest_snapshot_is_passed_over_for_one_that_reads_at_once(s3, bucket):
    from datetime import UTC, datetime, timedelta

    base = datetime(2026, 11, 1, tzinfo=UTC)
    older = archive_bytes(RaftState(index=10, term=1, data=b"older"))
    readable = put_archive(s3, bucket, "prod", base, 10, older)
    archived = put_archive(s3, bucket, "prod", base + timedelta(hours=1), 11, b"cold")
    s3.copy_object(
        Bucket=bucket,
        Key=archived,
        CopySource={"Bucket": bucket, "Key": archived},
        StorageClass="GLACIER",
    )
    summary = verify_handler({}, None, env=verify_env(bucket))
    assert summary["verified"]["bucket"]["key"] == readable
    assert summary["verified"]["bucket"]["passed_over_archived"] == 1


def test_no_snapshot_at_all_is_a_failure(s3, bucket):
    with pytest.raises(VerificationError, match="no snapshot of prod"):
        verify_handler({}, None, env=verify_env(bucket))
