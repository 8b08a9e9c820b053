"""The whole backup run: the real handler against the Consul double and moto's S3.

Fault tests prove that nothing was stored: no object, no version, no open
multipart upload.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import threading
import time
import traceback
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from handler import handler
from snapshot_backup.aws_clients import aws_client
from snapshot_backup.consul import ConsulError
from snapshot_backup.deadline import DEADLINE_MARGIN_SECONDS, DeadlineError
from snapshot_backup.keys import SnapshotKey
from snapshot_backup.s3_upload import MIN_PART_BYTES, UploadError
from snapshot_backup.settings import SettingsError
from snapshot_backup.token_source import MIN_HIDDEN_PIECE, RedactedError, Redactor, TokenError
from snapshot_backup.verify import ArchiveError, StricterThanConsulError
from testbed.archive_writer import ArchiveDefects, RaftState, write_archive
from testbed.consul_double import ConsulDouble, MidStreamFault
from testbed.moto_server import free_port
from testbed.tls import make_private_ca
from tests.conftest import (
    assert_nothing_stored,
    backup_env,
    run_record,
    stored_archives,
    stored_objects,
)
from tests.test_consul_client import QuietServer
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
    # The snapshot, and its manifest beside it: nothing else.
    manifest_key = summary["key"].removesuffix(".snap") + ".manifest.json"
    assert sorted(o["Key"] for o in stored_objects(s3, bucket)) == [manifest_key, summary["key"]]

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
    # A full-object checksum: S3 checked every part against its CRC-32, and the
    # assembled object against the CRC-32 of the whole stream.
    head = s3.head_object(Bucket=bucket, Key=summary["key"], ChecksumMode="ENABLED")
    assert served.body is not None
    whole = base64.b64encode(zlib.crc32(served.body).to_bytes(4, "big")).decode()
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (whole, "FULL_OBJECT")
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
    assert stored_archives(s3, bucket) == [summary["key"]]
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
    assert len(stored_archives(s3, bucket)) == 1


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
    data, _ = STRICTER["SHA256SUMS with one space"]
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


def test_a_run_that_meets_a_stored_snapshot_records_already_stored(consul, s3, bucket, capsys):
    # Occupy the keys of the next few seconds, as an earlier run at the same index would.
    now = datetime.now(UTC)
    occupied = {
        SnapshotKey.of(
            "consul-snapshots/", "prod", now + timedelta(seconds=s), consul.state.index
        ).key
        for s in range(0, 6)
    }
    for key in occupied:
        s3.put_object(Bucket=bucket, Key=key, Body=b"earlier snapshot")
    summary = handler({}, None, env=backup_env(consul, bucket))
    assert summary["result"] == "already stored" and summary["key"] in occupied
    for key in occupied:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"earlier snapshot"
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    # Not a failure, and no manifest describing what it did not store.
    record = run_record(capsys.readouterr().out)
    assert record["BackupSuccess"] == 1 and record["outcome"] == "success"
    assert not [o for o in stored_objects(s3, bucket) if o["Key"].endswith(".manifest.json")]


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
    assert stored_archives(s3, bucket) == [summary["key"]]


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
    consul.state = RaftState(index=consul.state.index + 1, term=2)
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


def test_a_failure_to_retire_is_reported_and_the_snapshot_still_stored(consul, s3, bucket, capsys):
    handler({}, None, env=backup_env(consul, bucket))

    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObjectTagging")

    s3_client = aws_client("s3")
    s3_client.meta.events.register("before-call.s3.PutObjectTagging", refuse)
    try:
        consul.state = RaftState(index=consul.state.index + 1, term=2)
        summary = handler({}, None, env=backup_env(consul, bucket, KEEP_LATEST="1"))
    finally:
        s3_client.meta.events.unregister("before-call.s3.PutObjectTagging", refuse)
    assert summary["key"] in stored_archives(s3, bucket)
    assert "AccessDenied" in summary["retire_error"]
    record = run_record(capsys.readouterr().out.splitlines()[-1])
    assert record["BackupSuccess"] == 1 and record["RetireFailure"] == 1


def test_a_run_that_retires_reports_no_retire_failure(consul, s3, bucket, capsys):
    handler({}, None, env=backup_env(consul, bucket))
    assert run_record(capsys.readouterr().out)["RetireFailure"] == 0


# --- the token never reaches a log line or the error Lambda reports ---------

CONSUL_UUID = "9f3c2a1e-7b4d-4c1e-9a2f-3d5e6f7a8b9c"
SECOND_UUID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
# Tokens a hand rotation or a broken secret may leave; True: one an HTTP header
# cannot carry, refused where it is read.
HOSTILE_TOKENS: dict[str, tuple[str, bool]] = {
    "two lines (LF)": (f"{CONSUL_UUID}\n{SECOND_UUID}", True),
    "two lines (CRLF)": (f"{CONSUL_UUID}\r\n{SECOND_UUID}", True),
    "a NUL": (f"{CONSUL_UUID}\x00{SECOND_UUID}", True),
    "a tab": (f"{CONSUL_UUID}\t{SECOND_UUID}", True),
    "a non-ASCII é": (f"{CONSUL_UUID}é{SECOND_UUID}", True),
    "a € beyond Latin-1": (f"{CONSUL_UUID}€", True),
    "8 KiB long": ((CONSUL_UUID * 228)[:8192], False),
    "a substring of Consul's URL": ("127.0.0.1", False),
}


def traces_of(token: str) -> set[str]:
    """How text may show ``token``: as is, escaped as Python and JSON escape it,
    and each long piece of it between characters a header cannot carry."""
    forms = {token, repr(token)[1:-1], ascii(token)[1:-1], json.dumps(token)[1:-1]}
    forms.add(repr(token.encode("utf-8"))[2:-1])
    pieces = re.split(r"[^\x21-\x7e]", token)
    forms.update(piece for piece in pieces if len(piece) >= MIN_HIDDEN_PIECE)
    return forms


def exception_texts(exc: BaseException) -> list[str]:
    """All that Lambda or a log can show of ``exc``: its traceback as Python prints
    it, and each linked exception's str, repr, args, notes and text attributes."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        link = pending.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        texts += [str(link), repr(link), repr(link.args), *getattr(link, "__notes__", [])]
        texts += [repr(value) for value in vars(link).values() if isinstance(value, str | bytes)]
        pending += [link.__cause__, link.__context__]
    return texts


def assert_no_trace_of(token: str, texts: list[str]) -> None:
    found = [form for form in traces_of(token) if any(form in text for text in texts)]
    assert not found, f"{len(found)} spellings of the token found (not shown)"


@pytest.mark.parametrize("source", ["secret", "env"])
@pytest.mark.parametrize("case", list(HOSTILE_TOKENS), ids=list(HOSTILE_TOKENS))
@pytest.mark.parametrize("consul_up", [True, False], ids=["consul up", "consul down"])
def test_no_token_reaches_a_log_line_or_the_raised_error(
    case, source, consul_up, consul, secrets, s3, bucket, capsys
):
    token, unsendable = HOSTILE_TOKENS[case]
    env = backup_env(consul, bucket)
    if not consul_up:  # the error then names Consul's address
        env["CONSUL_HTTP_ADDR"] = f"http://127.0.0.1:{free_port()}"
    if source == "secret":
        where = secrets.create_secret(Name=f"consul-{bucket}", SecretString=token)["ARN"]
        env["CONSUL_TOKEN_SECRET_ARN"] = where
        del env["CONSUL_HTTP_TOKEN"]
    else:
        env["CONSUL_HTTP_TOKEN"] = token
        where = "CONSUL_HTTP_TOKEN"
    with pytest.raises(TokenError if unsendable else ConsulError) as raised:
        handler({}, None, env=env)
    captured = capsys.readouterr()
    assert_no_trace_of(token, [captured.out, captured.err, *exception_texts(raised.value)])
    assert run_record(captured.out)["outcome"] == "failure"
    if unsendable:  # refused where it was read, with where it came from and where it is wrong
        assert where in str(raised.value) and "position 37 of " in str(raised.value)
        assert consul.snapshot_requests() == []
    assert_nothing_stored(s3, bucket)


def test_a_token_echoed_back_in_an_error_is_redacted_and_the_error_kept(consul, s3, bucket, capsys):
    # A proxy in front of Consul that quotes the request's headers in its error.
    consul.tokens = {CONSUL_UUID: True}
    consul.scripted_errors.append((502, f"upstream refused X-Consul-Token: {CONSUL_UUID}"))
    with pytest.raises(ConsulError) as raised:
        handler({}, None, env=backup_env(consul, bucket, CONSUL_HTTP_TOKEN=CONSUL_UUID))
    mask = Redactor([CONSUL_UUID]).mask
    assert str(raised.value) == (
        f"Consul refused the snapshot (502): upstream refused X-Consul-Token: {mask}"
    )
    assert raised.value.status == 502 and CONSUL_UUID not in raised.value.body
    captured = capsys.readouterr()
    assert_no_trace_of(CONSUL_UUID, [captured.out, captured.err, *exception_texts(raised.value)])
    assert run_record(captured.out)["error"].endswith(f"X-Consul-Token: {mask}")
    assert_nothing_stored(s3, bucket)


def test_an_error_whose_text_cannot_be_cleaned_is_replaced_without_its_chain(
    consul, bucket, capsys, monkeypatch
):
    # OSError's text comes from a slot, not from its args: cleaning cannot reach it.
    def fail(*_args: Any) -> None:
        try:
            raise ValueError(f"not a token: {CONSUL_UUID}")
        except ValueError as inner:
            failure = OSError(5, f"cannot use {CONSUL_UUID}")
            failure.add_note(f"sent {CONSUL_UUID}")
            raise failure from inner

    monkeypatch.setattr("snapshot_backup.backup.run_backup", fail)
    with pytest.raises(RedactedError) as raised:
        handler({}, None, env=backup_env(consul, bucket, CONSUL_HTTP_TOKEN=CONSUL_UUID))
    mask = Redactor([CONSUL_UUID]).mask
    assert str(raised.value) == f"OSError: [Errno 5] cannot use {mask}"
    assert raised.value.__cause__ is None and raised.value.__context__ is None
    captured = capsys.readouterr()
    assert_no_trace_of(CONSUL_UUID, [captured.out, captured.err, *exception_texts(raised.value)])
    assert (
        run_record(captured.out)["error"] == f"RedactedError: OSError: [Errno 5] cannot use {mask}"
    )


# --- nothing waits past the deadline: the run always ends with its log line --


def test_a_consul_that_never_answers_ends_the_run_at_its_deadline_with_its_log_line(
    consul, s3, bucket, capsys
):
    # Consul accepts the connection and never answers. Retries (1 s, 3 s, 9 s)
    # and a read timeout as long again each time once ran 35 s in a 25 s function.
    usable = 2.0
    with QuietServer() as quiet:
        env = {**backup_env(consul, bucket, CONSUL_RETRIES="3"), "CONSUL_HTTP_ADDR": quiet.address}
        started = time.monotonic()
        with pytest.raises(DeadlineError, match=f"no snapshot from Consul at {quiet.address}"):
            handler({}, LambdaContext(DEADLINE_MARGIN_SECONDS + usable), env=env)
        elapsed = time.monotonic() - started
        attempts = len(quiet.connections)
    # Lambda would stop the run DEADLINE_MARGIN_SECONDS later; it stopped at the deadline.
    assert usable - 0.3 < elapsed < usable + 0.5
    assert attempts == 1  # no retry was left time for
    record = run_record(capsys.readouterr().out)
    assert record["BackupFailure"] == 1 and record["error"].startswith("DeadlineError")
    assert f"Consul at {quiet.address}" in record["error"]
    assert_nothing_stored(s3, bucket)


class StalledSecrets:
    """A Secrets Manager that answers ``answers`` reads, then stops answering until released."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)
        self.released = threading.Event()

    def get_secret_value(self, SecretId: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        if self.answers:
            return {"SecretString": self.answers.pop(0)}
        self.released.wait(60)
        raise ClientError({"Error": {"Code": "Throttling", "Message": "late"}}, "GetSecretValue")


@pytest.mark.parametrize(
    ("answers", "what"),
    [
        ([], "reading the settings and the Consul token"),
        (["token-before"], "reading the Consul token again from Secrets Manager"),
    ],
    ids=["first read", "read again after Consul refused the token"],
)
def test_a_secrets_manager_that_stops_answering_ends_the_run_at_its_deadline(
    answers, what, consul, s3, bucket, capsys, monkeypatch
):
    stalled = StalledSecrets(answers)
    monkeypatch.setattr(
        "snapshot_backup.backup.aws_client",
        lambda service: stalled if service == "secretsmanager" else aws_client(service),
    )
    consul.tokens = {"token-after": True}  # refuses token-before: the secret is read again
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:consul-AbCdEf"
    env = backup_env(consul, bucket, CONSUL_TOKEN_SECRET_ARN=arn)
    usable = 1.5
    started = time.monotonic()
    try:
        with pytest.raises(DeadlineError, match=re.escape(f"{what}")):
            handler({}, LambdaContext(DEADLINE_MARGIN_SECONDS + usable), env=env)
        elapsed = time.monotonic() - started
    finally:
        stalled.released.set()
    assert usable - 0.3 < elapsed < usable + 0.5
    assert run_record(capsys.readouterr().out)["error"].startswith("DeadlineError")
    assert_nothing_stored(s3, bucket)


def test_an_unreadable_previous_manifest_costs_the_comparison_not_the_run(consul, s3, bucket):
    first = handler({}, None, env=backup_env(consul, bucket))
    s3.put_object(
        Bucket=bucket, Key=first["key"].removesuffix(".snap") + ".manifest.json", Body=b"{"
    )
    consul.state = RaftState(index=consul.state.index + 1, term=2)
    second = handler({}, None, env=backup_env(consul, bucket))
    assert second["result"] == "stored"
    assert any("no content comparison" in note for note in second["notes"])
    manifest = second["key"].removesuffix(".snap") + ".manifest.json"
    assert s3.head_object(Bucket=bucket, Key=manifest)["ContentLength"] > 0
