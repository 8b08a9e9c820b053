"""The whole backup run: the real handler against the Consul double and moto's S3.

Fault tests prove that nothing was stored: no object, no version, no open
multipart upload.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import re
import threading
import time
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from handler import handler
from snapshot_backup.consul import ConsulError
from snapshot_backup.deadline import DEADLINE_MARGIN_SECONDS, DeadlineError
from snapshot_backup.keys import snapshot_key
from snapshot_backup.s3_upload import MIN_PART_BYTES, UploadError
from snapshot_backup.settings import SettingsError
from snapshot_backup.verify import ArchiveError, StricterThanConsulError
from testbed.archive_writer import ArchiveDefects, RaftState, write_archive
from testbed.consul_double import ConsulDouble, MidStreamFault
from testbed.tls import make_private_ca
from tests.conftest import assert_nothing_stored, backup_env, run_record, stored_objects
from tests.test_verify import REFUSED, STRICTER

MULTIPART_STATE = RaftState(index=90210, term=7, size=3 * MIN_PART_BYTES + 12345, seed=3)
KEY_PATTERN = re.compile(
    r"consul-snapshots/prod/(\d{4})/(\d{2})/(\d{2})/prod-(\d{8}T\d{6}Z)-(\d+)\.snap"
)


def test_small_snapshot_round_trip_is_byte_identical(consul, s3, bucket, capsys):
    summary = handler({}, None, env=backup_env(consul, bucket, CONSUL_DATACENTER="dc1"))
    served = consul.served[-1]
    stored = s3.get_object(Bucket=bucket, Key=summary["key"], ChecksumMode="ENABLED")
    body = stored["Body"].read()
    assert body == served.body
    assert summary["sha256"] == served.sha256
    assert summary["bytes"] == served.size == stored["ContentLength"]
    assert summary["raft_index"] == consul.state.index
    assert summary["parts"] == 1
    assert stored["Metadata"] == {
        "cluster": "prod",
        "datacenter": "dc1",
        "consul-index": str(consul.state.index),
        "raft-index": str(consul.state.index),
        "raft-term": str(consul.state.term),
        "known-leader": "true",
        "last-contact-ms": "0",
        "sha256": served.sha256,
    }
    # S3 verified the body against the archive's own SHA-256.
    assert base64.b64decode(stored["ChecksumSHA256"]).hex() == served.sha256
    assert [o["Key"] for o in stored_objects(s3, bucket)] == [summary["key"]]

    record = run_record(capsys.readouterr().out)
    assert record["outcome"] == "success"
    assert record["BackupSuccess"] == 1 and record["BackupFailure"] == 0
    assert record["SnapshotBytes"] == served.size
    metrics = record["_aws"]["CloudWatchMetrics"][0]
    assert metrics["Namespace"] == "ConsulBackup"
    assert metrics["Dimensions"] == [["Cluster"]]
    assert record["Cluster"] == "prod"
    assert {m["Name"] for m in metrics["Metrics"]} >= {
        "BackupSuccess",
        "SnapshotBytes",
        "BackupDuration",
    }


def test_multipart_round_trip_is_byte_identical(s3, bucket):
    with ConsulDouble(state=MULTIPART_STATE) as consul:
        summary = handler({}, None, env=backup_env(consul, bucket))
        served = consul.served[-1]
    assert summary["parts"] >= 3
    stored = s3.get_object(Bucket=bucket, Key=summary["key"])
    assert stored["ContentLength"] == served.size > 3 * MIN_PART_BYTES
    assert stored["Body"].read() == served.body
    assert summary["sha256"] == served.sha256
    assert stored["Metadata"]["raft-index"] == "90210"
    assert stored["Metadata"]["raft-term"] == "7"
    # A composite checksum: S3 checked every part against the CRC-32 sent with it.
    head = s3.head_object(Bucket=bucket, Key=summary["key"], ChecksumMode="ENABLED")
    assert served.body is not None
    part_crcs = b"".join(
        zlib.crc32(served.body[start : start + MIN_PART_BYTES]).to_bytes(4, "big")
        for start in range(0, len(served.body), MIN_PART_BYTES)
    )
    composite = base64.b64encode(zlib.crc32(part_crcs).to_bytes(4, "big")).decode()
    assert head["ChecksumCRC32"].split("-")[0] == composite
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_key_layout_sorts_by_time(consul, bucket):
    before = datetime.now(UTC).replace(microsecond=0)
    summary = handler({}, None, env=backup_env(consul, bucket))
    after = datetime.now(UTC)
    match = KEY_PATTERN.fullmatch(summary["key"])
    assert match, summary["key"]
    taken = datetime.strptime(match[4], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= taken <= after
    assert (match[1], match[2], match[3]) == (f"{taken:%Y}", f"{taken:%m}", f"{taken:%d}")
    assert int(match[5]) == consul.state.index


def test_custom_prefix_is_honoured(consul, bucket):
    summary = handler({}, None, env=backup_env(consul, bucket, BACKUP_PREFIX="team/consul"))
    assert summary["key"].startswith("team/consul/prod/")


def test_token_comes_from_secrets_manager_and_is_never_logged(consul, s3, secrets, bucket, capsys):
    token = "9f3c2a1e-secret-token"
    consul.tokens = {token: True}
    arn = secrets.create_secret(Name=f"consul-{bucket}", SecretString=token)["ARN"]
    env = backup_env(consul, bucket, CONSUL_TOKEN_SECRET_ARN=arn)
    del env["CONSUL_HTTP_TOKEN"]
    summary = handler({}, None, env=env)
    assert consul.snapshot_requests()[-1].headers["X-Consul-Token"] == token
    assert stored_objects(s3, bucket)[0]["Key"] == summary["key"]
    # A failed run, whose error text is logged, must not leak it either.
    consul.has_leader = False
    with pytest.raises(ConsulError):
        handler({}, None, env=env)
    out = capsys.readouterr()
    assert token not in out.out and token not in out.err


def test_stale_backup_while_the_cluster_has_no_leader(consul, s3, bucket):
    consul.has_leader = False
    with pytest.raises(ConsulError, match="No cluster leader"):
        handler({}, None, env=backup_env(consul, bucket))
    assert_nothing_stored(s3, bucket)
    summary = handler({}, None, env=backup_env(consul, bucket, CONSUL_STALE="true"))
    assert consul.snapshot_requests()[-1].query["stale"] == [""]
    metadata = s3.head_object(Bucket=bucket, Key=summary["key"])["Metadata"]
    assert metadata["known-leader"] == "false"


def test_tls_to_a_privately_signed_consul(s3, bucket, tmp_path):
    ca = make_private_ca()
    with ConsulDouble(tls=ca.server_context()) as consul:
        summary = handler({}, None, env=backup_env(consul, bucket, CONSUL_CACERT_PEM=ca.ca_pem))
        assert summary["key"].endswith(".snap")
        with pytest.raises(ConsulError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
            handler({}, None, env=backup_env(consul, bucket))
    assert len(stored_objects(s3, bucket)) == 1


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_an_archive_file_streamed_by_sendfile_round_trips(s3, bucket, tmp_path, tls):
    # The benchmark's double serves a file with sendfile(2), bypassing Python.
    archive = tmp_path / "snapshot.snap"
    with archive.open("wb") as out:
        write_archive(out, MULTIPART_STATE)
    ca = make_private_ca() if tls else None
    double = ConsulDouble(
        archive_file=archive,
        record_served=False,
        tls=ca.server_context() if ca else None,
    )
    extra = {"CONSUL_CACERT_PEM": ca.ca_pem} if ca else {}
    with double as consul:
        summary = handler({}, None, env=backup_env(consul, bucket, **extra))
    stored = s3.get_object(Bucket=bucket, Key=summary["key"])["Body"].read()
    assert stored == archive.read_bytes()
    assert summary["parts"] >= 3


def test_the_stored_archive_is_not_gzipped_twice(consul, s3, bucket):
    summary = handler({}, None, env=backup_env(consul, bucket))
    body = s3.get_object(Bucket=bucket, Key=summary["key"])["Body"].read()
    assert gzip.decompress(body)[:2] != b"\x1f\x8b"  # one gzip layer: the archive's own


SMALL = RaftState(index=77, term=3, size=200_000, seed=5)

FAULTS: dict[str, tuple[RaftState, dict[str, Any], type[Exception]]] = {
    "cut mid-stream with error text": (
        SMALL,
        {"fault": MidStreamFault(after_bytes=50_000)},
        ArchiveError,
    ),
    "cut after parts were uploaded": (
        MULTIPART_STATE,
        {"fault": MidStreamFault(after_bytes=2 * MIN_PART_BYTES + 100)},
        ArchiveError,
    ),
    "connection reset mid-stream": (
        SMALL,
        {"fault": MidStreamFault(after_bytes=60_000, kind="reset")},
        ConsulError,
    ),
    "connection reset after parts were uploaded": (
        MULTIPART_STATE,
        {"fault": MidStreamFault(after_bytes=MIN_PART_BYTES + 4096, kind="reset")},
        ConsulError,
    ),
    "hash mismatch": (SMALL, {"defects": ArchiveDefects(wrong_hash_for="state.bin")}, ArchiveError),
    "hash mismatch in a multipart snapshot": (
        MULTIPART_STATE,
        {"defects": ArchiveDefects(wrong_hash_for="state.bin")},
        ArchiveError,
    ),
    "missing member": (SMALL, {"defects": ArchiveDefects(omit_member="state.bin")}, ArchiveError),
    "extra member": (SMALL, {"defects": ArchiveDefects(extra_member="evil.sh")}, ArchiveError),
    "missing hash line": (
        SMALL,
        {"defects": ArchiveDefects(omit_hash_for="meta.json")},
        ArchiveError,
    ),
    "not gzip": (SMALL, {"not_gzip": True}, ArchiveError),
    "ACL not found": (SMALL, {"tokens": {"other": True}}, ConsulError),
    "token lacks acl:write": (SMALL, {"tokens": {"root-token": False}}, ConsulError),
    "no leader": (SMALL, {"has_leader": False}, ConsulError),
    "rate limited": (SMALL, {"scripted_errors": [(429, "")]}, ConsulError),
}


@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_every_fault_raises_and_stores_nothing(fault, s3, bucket, capsys):
    state, attributes, error = FAULTS[fault]
    with ConsulDouble(state=state) as consul:
        for name, value in attributes.items():
            setattr(consul, name, value)
        with pytest.raises(error):
            handler({}, None, env=backup_env(consul, bucket))
    assert_nothing_stored(s3, bucket)
    record = run_record(capsys.readouterr().out)
    assert record["outcome"] == "failure"
    assert record["BackupSuccess"] == 0 and record["BackupFailure"] == 1
    assert record["error"]


END_TO_END = [
    "tar record padding after the end marker (tarfile stream mode, GNU tar)",
    "a header with a bad checksum after the last member",
    "Index written 13.0",
    "SHA256SUMS split at \\x1c",
]


@pytest.mark.parametrize("case", END_TO_END)
def test_an_archive_consul_would_not_restore_is_never_stored(case, s3, bucket, capsys):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    earlier = s3.put_object(Bucket=bucket, Key="consul-snapshots/prod/earlier.snap", Body=b"x")
    data, message = REFUSED[case]
    with ConsulDouble(archive_body=data) as consul, pytest.raises(ArchiveError) as raised:
        handler({}, None, env=backup_env(consul, bucket))
    assert str(raised.value).startswith(message)
    # Nothing stored, nothing lost: the earlier snapshot is the bucket's only version.
    versions = s3.list_object_versions(Bucket=bucket)
    assert [v["VersionId"] for v in versions.get("Versions", [])] == [earlier["VersionId"]]
    assert not versions.get("DeleteMarkers")
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert message in run_record(capsys.readouterr().out)["error"]


def test_a_snapshot_consul_would_restore_but_never_writes_is_not_stored(s3, bucket):
    data, _ = STRICTER["meta.json Size that disagrees with state.bin"]
    with ConsulDouble(archive_body=data) as consul, pytest.raises(StricterThanConsulError):
        handler({}, None, env=backup_env(consul, bucket))
    assert_nothing_stored(s3, bucket)


def test_a_missing_bucket_is_an_error_for_small_and_multipart_snapshots(consul, s3):
    # Nothing can be left in a bucket that does not exist; the S3 failure that
    # strikes mid-upload, and its clean-up, is the vanished-upload test below.
    with pytest.raises(ClientError, match="NoSuchBucket"):
        handler({}, None, env=backup_env(consul, "no-such-bucket-here"))
    with (
        ConsulDouble(state=MULTIPART_STATE) as big,
        pytest.raises(ClientError, match="NoSuchBucket"),
    ):
        handler({}, None, env=backup_env(big, "no-such-bucket-here"))


def test_a_second_run_never_overwrites_a_stored_snapshot(consul, s3, bucket):
    # Occupy the keys of the next few seconds, as an earlier run at the same index would.
    now = datetime.now(UTC)
    occupied = {
        snapshot_key("consul-snapshots/", "prod", now + timedelta(seconds=s), consul.state.index)
        for s in range(0, 6)
    }
    for key in occupied:
        s3.put_object(Bucket=bucket, Key=key, Body=b"earlier snapshot")
    with pytest.raises(ClientError, match="PreconditionFailed"):
        handler({}, None, env=backup_env(consul, bucket))
    for key in occupied:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"earlier snapshot"
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("CLUSTER_NAME", "CLUSTER_NAME is required"),
        ("BACKUP_BUCKET", "BACKUP_BUCKET is required"),
        ("CONSUL_HTTP_ADDR", "CONSUL_HTTP_ADDR is required"),
    ],
)
def test_missing_settings_are_named(consul, bucket, missing, message, capsys):
    env = backup_env(consul, bucket)
    del env[missing]
    with pytest.raises(SettingsError, match=message):
        handler({}, None, env=env)
    assert run_record(capsys.readouterr().out)["outcome"] == "failure"


class LambdaContext:
    """What Lambda passes as context: the time this invocation has left."""

    def __init__(self, remaining_seconds: float) -> None:
        self.remaining_seconds = remaining_seconds
        self.started = time.monotonic()

    def get_remaining_time_in_millis(self) -> int:
        return int((self.remaining_seconds - (time.monotonic() - self.started)) * 1000)


@pytest.mark.parametrize(
    ("state", "bytes_per_second"),
    [(SMALL, 100_000), (MULTIPART_STATE, 24 << 20)],
    ids=["single part", "after parts were uploaded"],
)
def test_a_run_about_to_time_out_aborts_and_stores_nothing(
    state, bytes_per_second, s3, bucket, capsys
):
    # A slow Consul, and a second of usable time: the run stops mid-stream.
    context = LambdaContext(DEADLINE_MARGIN_SECONDS + 1.0)
    with (
        ConsulDouble(state=state, bytes_per_second=bytes_per_second) as consul,
        pytest.raises(DeadlineError) as raised,
    ):
        handler({}, context, env=backup_env(consul, bucket))
    found = re.search(r"after (\d+) bytes", str(raised.value))
    assert found, raised.value
    stopped_after = int(found[1])
    assert 0 < stopped_after < state.length  # it stopped mid-stream
    assert_nothing_stored(s3, bucket)
    assert run_record(capsys.readouterr().out)["error"].startswith("DeadlineError")


def test_a_stream_that_stalls_near_the_deadline_is_cut_at_the_deadline(s3, bucket, capsys):
    # Consul sends for a second, then stops; the read timeout (2 s, as long as
    # the invocation has left when it starts) would end the wait only a second
    # after the deadline, too late to abort and log before Lambda kills the run.
    context = LambdaContext(DEADLINE_MARGIN_SECONDS + 2.0)
    stall = MidStreamFault(after_bytes=1 << 20, kind="stall")
    with (
        ConsulDouble(state=MULTIPART_STATE, bytes_per_second=1 << 20, fault=stall) as consul,
        pytest.raises(DeadlineError, match="Consul stopped sending the snapshot"),
    ):
        handler({}, context, env=backup_env(consul, bucket))
    assert_nothing_stored(s3, bucket)
    assert run_record(capsys.readouterr().out)["error"].startswith("DeadlineError")


def test_a_lambda_context_with_time_to_spare_changes_nothing(consul, s3, bucket):
    summary = handler({}, LambdaContext(900), env=backup_env(consul, bucket))
    assert stored_objects(s3, bucket)[0]["Key"] == summary["key"]


@pytest.mark.skipif(
    not os.environ.get("CONSUL_HTTP_ADDR"),
    reason="set CONSUL_HTTP_ADDR (and CONSUL_HTTP_TOKEN) to run against a real Consul",
)
def test_round_trip_against_a_real_consul(s3, bucket):
    env = {**os.environ, "BACKUP_BUCKET": bucket, "CLUSTER_NAME": "real"}
    summary = handler({}, None, env=env)
    stored = s3.get_object(Bucket=bucket, Key=summary["key"])["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == summary["sha256"]
    assert summary["raft_index"] > 0


def test_an_upload_that_vanishes_mid_stream_raises_and_stores_nothing(s3, bucket, capsys):
    # S3 loses the multipart upload while parts are still coming: every later
    # call fails, and the run must fail loudly, leaving nothing behind.
    stop = threading.Event()

    def abort_it_when_it_appears() -> None:
        while not stop.is_set():
            for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                s3.abort_multipart_upload(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
                return
            time.sleep(0.02)

    saboteur = threading.Thread(target=abort_it_when_it_appears)
    saboteur.start()
    try:
        with (
            ConsulDouble(state=MULTIPART_STATE, bytes_per_second=16 << 20) as consul,
            pytest.raises((UploadError, ClientError)),
        ):
            handler({}, None, env=backup_env(consul, bucket))
    finally:
        stop.set()
        saboteur.join()
    assert_nothing_stored(s3, bucket)
    record = run_record(capsys.readouterr().out)
    assert record["outcome"] == "failure"
    # The first failure is the one reported; the failed clean-up is noted with it.
    assert "failed" in record["error"] and "aborting the upload failed too" in record["error"]


def test_a_rotated_token_is_read_again_and_both_runs_succeed(consul, s3, secrets, bucket, capsys):
    arn = secrets.create_secret(Name="consul/rotating", SecretString="token-before")["ARN"]
    consul.tokens = {"token-before": True}
    env = backup_env(consul, bucket, CONSUL_TOKEN_SECRET_ARN=arn)
    first = handler({}, None, env=env)
    # Rotation: the secret gets a new value and Consul stops accepting the old one.
    secrets.put_secret_value(SecretId=arn, SecretString="token-after")
    consul.tokens = {"token-after": True}
    consul.state = RaftState(index=consul.state.index + 1, term=2, data=b"later")
    second = handler({}, None, env=env)  # same process: the old token is still cached
    assert first["key"] != second["key"]
    sent = [r.headers.get("X-Consul-Token") for r in consul.snapshot_requests()]
    assert sent == ["token-before", "token-before", "token-after"]
    assert "token-after" not in capsys.readouterr().out


def test_a_token_that_lacks_the_right_is_not_retried_forever(consul, s3, secrets, bucket):
    arn = secrets.create_secret(Name="consul/readonly", SecretString="read-only")["ARN"]
    consul.tokens = {"read-only": False}
    with pytest.raises(ConsulError, match="lacks permission 'acl:write'"):
        handler({}, None, env=backup_env(consul, bucket, CONSUL_TOKEN_SECRET_ARN=arn))
    # The secret is read again, but it has not changed: no second request.
    assert len(consul.snapshot_requests()) == 1
    assert_nothing_stored(s3, bucket)


def test_a_failure_to_retire_is_reported_and_the_snapshot_still_stored(
    consul, s3, bucket, capsys, monkeypatch
):
    def refuse(*_args: Any) -> list[str]:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObjectTagging")

    monkeypatch.setattr("snapshot_backup.backup.retire_beyond_floor", refuse)
    summary = handler({}, None, env=backup_env(consul, bucket))
    assert [o["Key"] for o in stored_objects(s3, bucket)] == [summary["key"]]
    assert summary["retire_error"].startswith("ClientError")
    record = run_record(capsys.readouterr().out)
    assert record["BackupSuccess"] == 1 and record["RetireFailure"] == 1


def test_a_run_that_retires_reports_no_retire_failure(consul, s3, bucket, capsys):
    handler({}, None, env=backup_env(consul, bucket))
    assert run_record(capsys.readouterr().out)["RetireFailure"] == 0
