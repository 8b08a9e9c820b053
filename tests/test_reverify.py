"""The daily re-verification: the newest snapshot, read again, proven again, in both buckets."""

from __future__ import annotations

import json
from datetime import UTC, datetime
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
    consul.state = RaftState(index=500, term=3, seed=5)
    newest = back_up(consul, bucket)
    capsys.readouterr()
    summary = verify_handler({}, None, env=verify_env(bucket))
    proven = summary["verified"]["bucket"]
    assert (proven["key"], proven["raft_index"]) == (newest["key"], 500)
    assert proven["sha256"] == newest["sha256"] and proven["sha256_checked"] is True
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


def test_a_snapshot_without_a_manifest_is_a_failure_that_says_so(s3, bucket, capsys):
    put_archive(
        s3, bucket, "prod", datetime(2026, 11, 1, tzinfo=UTC), 13, archive_bytes(RaftState())
    )
    with pytest.raises(VerificationError, match="has no manifest"):
        verify_handler({}, None, env=verify_env(bucket))
    assert run_record(capsys.readouterr().out)["VerifyFailure"] == 1


def test_an_archived_newest_snapshot_is_passed_over_for_one_that_reads_at_once(consul, s3, bucket):
    readable = back_up(consul, bucket)["key"]
    consul.state = RaftState(index=consul.state.index + 1, term=2, seed=1)
    archived = back_up(consul, bucket)["key"]
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
