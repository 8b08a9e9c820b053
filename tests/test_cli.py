"""The operator CLI against moto's S3 and the Consul double, over real HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from consul_backup.commands import COMMANDS
from consul_backup.exit_codes import ExitCode
from snapshot_backup.s3_upload import MIN_PART_BYTES
from testbed.archive_writer import RaftState, archive_bytes
from testbed.consul_double import ConsulDouble
from tests.conftest import PREFIX, back_up, cli, put_archive, regions_of_s3_clients


def corrupt(data: bytes) -> bytes:
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0xFF
    return bytes(damaged)


def test_list_is_newest_first_and_ignores_foreign_objects(s3, bucket):
    base = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    archive = archive_bytes(RaftState(index=5, term=1, data=b"x" * 100))
    keys = [
        put_archive(s3, bucket, "prod", base + timedelta(hours=h), 100 + h, archive)
        for h in (2, 0, 1)
    ]
    put_archive(s3, bucket, "stage", base + timedelta(hours=5), 9, archive)
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}prod/README.txt", Body=b"not a snapshot")

    result = cli("list", "--bucket", bucket, "--cluster", "prod", "--json")
    assert result.code == ExitCode.OK
    listed = [json.loads(line) for line in result.out.splitlines()]
    assert [r["key"] for r in listed] == [keys[0], keys[2], keys[1]]
    assert [r["raft_index"] for r in listed] == [102, 101, 100]
    assert all(r["bytes"] == len(archive) for r in listed)

    everything = cli("list", "--bucket", bucket)
    lines = everything.out.splitlines()
    assert lines[0].startswith("TAKEN (UTC)")
    [stage] = [line for line in lines if " stage " in line]
    assert "2026-11-20 15:00:00" in stage
    assert len(lines) == 5


def test_verify_latest_reports_identity_content_and_the_manifests_sha256(consul, s3, bucket):
    summary = back_up(consul, bucket)
    result = cli("verify", "--bucket", bucket, "--cluster", "prod", "latest")
    assert result.code == ExitCode.OK, result.err
    assert summary["key"] in result.out
    assert f"raft index {consul.state.index}" in result.out
    assert f"cluster prod, datacenter dc1, raft term {consul.state.term}" in result.out
    assert f"sha256 {summary['sha256']}: the same SHA-256 as its manifest records" in result.out
    as_json = json.loads(cli("verify", "--cluster", "prod", "--bucket", bucket, "latest",
                             "--json").out)  # fmt: skip
    assert as_json["sha256_checked"] is True and as_json["sha256"] == summary["sha256"]
    assert as_json["kv_entries"] == summary["state"]["kv_entries"] > 0


def test_verify_fails_on_a_corrupted_object(consul, s3, bucket):
    summary = back_up(consul, bucket)
    stored = s3.get_object(Bucket=bucket, Key=summary["key"])["Body"].read()
    later = datetime.now(UTC) + timedelta(hours=1)
    bad_key = put_archive(s3, bucket, "prod", later, 99, corrupt(stored))
    result = cli("verify", "--bucket", bucket, "--cluster", "prod", "latest")
    assert result.code == ExitCode.DEFECTIVE
    assert "DEFECTIVE" in result.err
    # An explicit key of the good one still verifies.
    assert (
        cli("verify", "--bucket", bucket, "--cluster", "prod", summary["key"]).code == ExitCode.OK
    )
    assert (
        cli("verify", "--bucket", bucket, "--cluster", "prod", bad_key).code == ExitCode.DEFECTIVE
    )


def test_verify_catches_an_object_that_is_not_what_its_manifest_records(consul, s3, bucket):
    summary = back_up(consul, bucket)
    # Another archive, whole and self-consistent, of the same size, under the same key.
    other = archive_bytes(RaftState(index=consul.state.index, term=1))
    s3.put_object(Bucket=bucket, Key=summary["key"], Body=other)
    result = cli("verify", "--bucket", bucket, "--cluster", "prod", "latest")
    assert result.code == ExitCode.DEFECTIVE
    assert f"not the archive its manifest records (SHA-256 {summary['sha256']})" in result.err


def test_a_snapshot_without_a_manifest_is_refused_unless_allowed(consul, s3, bucket):
    summary = back_up(consul, bucket)
    s3.delete_object(Bucket=bucket, Key=summary["key"].removesuffix(".snap") + ".manifest.json")
    refused = cli("verify", "--bucket", bucket, "--cluster", "prod", "latest")
    assert refused.code == ExitCode.DEFECTIVE and "has no manifest" in refused.err
    allowed = cli("verify", "--bucket", bucket, "--cluster", "prod", "latest",
                  "--allow-unrecorded", "--json")  # fmt: skip
    assert allowed.code == ExitCode.OK, allowed.err
    assert json.loads(allowed.out)["sha256_checked"] is False


def test_restore_round_trip_is_byte_identical(s3, bucket):
    source_state = RaftState(index=4242, term=9, size=MIN_PART_BYTES + 300_000, seed=11)
    with ConsulDouble(state=source_state) as source, ConsulDouble() as target:
        summary = back_up(source, bucket)
        assert summary["parts"] == 2
        stored = s3.get_object(Bucket=bucket, Key=summary["key"])["Body"].read()
        result = cli(
            "restore", "--bucket", bucket, "--cluster", "prod", "latest",
            "--consul-addr", target.address, "--yes",
            env={"CONSUL_HTTP_TOKEN": "root-token"},
        )  # fmt: skip
        assert result.code == ExitCode.OK, result.err
        [put] = [r for r in target.requests if r.method == "PUT"]
        assert put.headers["Content-Length"] == str(len(stored))
        assert put.headers["X-Consul-Token"] == "root-token"
        assert target.received[-1].body == stored
        assert target.restores == 1
        assert target.state.index == 4242 and target.state.term == 9
        assert target.state.data is not None
        assert len(target.state.data) == source_state.length
        assert target.state.sha256() == source_state.sha256()
    assert f"Restored {summary['key']}" in result.out


def test_restore_never_delivers_a_whole_defective_snapshot(consul, s3, bucket):
    summary = back_up(consul, bucket)
    stored = s3.get_object(Bucket=bucket, Key=summary["key"])["Body"].read()
    # Cut in half: the listing's size already disagrees with the manifest's.
    s3.put_object(Bucket=bucket, Key=summary["key"], Body=stored[: len(stored) // 2])
    with ConsulDouble() as target:
        result = cli(
            "restore", "--bucket", bucket, "--cluster", "prod", "latest",
            "--consul-addr", target.address, "--yes", env={"CONSUL_HTTP_TOKEN": "root-token"},
        )  # fmt: skip
        assert result.code == ExitCode.DEFECTIVE
        assert summary["sha256"] in result.err
        assert [r.method for r in target.requests if r.path == "/v1/snapshot"] == []
        assert target.restores == 0


def test_restore_asks_first_and_sends_nothing_without_a_yes(consul, s3, bucket):
    back_up(consul, bucket)
    with ConsulDouble() as target:
        args = ("restore", "--bucket", bucket, "--cluster", "prod", "latest",
                "--consul-addr", target.address)  # fmt: skip
        token = {"CONSUL_HTTP_TOKEN": "root-token"}
        refused = cli(*args, env=token, answer="no")
        assert refused.code == ExitCode.NOT_CONFIRMED
        assert [r for r in target.requests if r.method == "PUT"] == []
        accepted = cli(*args, env=token, answer="restore")
        assert accepted.code == ExitCode.OK, accepted.err
        assert target.restores == 1


def test_restore_reports_consuls_refusal(consul, s3, bucket):
    back_up(consul, bucket)
    with ConsulDouble() as target:
        result = cli(
            "restore", "--bucket", bucket, "--cluster", "prod", "latest",
            "--consul-addr", target.address, "--yes", env={"CONSUL_HTTP_TOKEN": "wrong"},
        )  # fmt: skip
    assert result.code == ExitCode.REMOTE
    assert "Consul refused" in result.err and "(403): ACL not found" in result.err
    assert target.restores == 0


def test_download_writes_only_a_verified_file(consul, s3, bucket, tmp_path):
    summary = back_up(consul, bucket)
    target = tmp_path / "prod.snap"
    result = cli("download", "--bucket", bucket, "--cluster", "prod", "latest", "-o", str(target))
    assert result.code == ExitCode.OK, result.err
    stored = s3.get_object(Bucket=bucket, Key=summary["key"])["Body"].read()
    assert target.read_bytes() == stored
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prod.snap"]
    assert cli("download", "--bucket", bucket, "--cluster", "prod", "latest",
               "-o", str(target)).code == ExitCode.USAGE  # fmt: skip

    s3.put_object(Bucket=bucket, Key=summary["key"], Body=corrupt(stored))
    broken = tmp_path / "broken.snap"
    result = cli("download", "--bucket", bucket, "--cluster", "prod", "latest", "-o", str(broken))
    assert result.code == ExitCode.DEFECTIVE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prod.snap"]


def test_backup_local_runs_the_handler(consul, s3, bucket):
    result = cli(
        "backup", "--local", "--bucket", bucket, "--cluster", "prod", "--keep-latest", "7",
        "--consul-addr", consul.address, env={"CONSUL_HTTP_TOKEN": "root-token"},
    )  # fmt: skip
    assert result.code == ExitCode.OK, result.err
    summary = json.loads(result.out)
    assert s3.head_object(Bucket=bucket, Key=summary["key"])["ContentLength"] == summary["bytes"]


def test_backup_local_failure_is_an_error_exit(consul, s3, bucket):
    consul.has_leader = False
    result = cli(
        "backup", "--local", "--bucket", bucket, "--cluster", "prod", "--keep-latest", "7",
        "--consul-addr", consul.address,
        env={"CONSUL_HTTP_TOKEN": "root-token", "CONSUL_RETRIES": "0"},
    )  # fmt: skip
    assert result.code == ExitCode.REMOTE
    assert "No cluster leader" in result.err


def test_missing_settings_and_snapshots(s3, bucket):
    env = {"BACKUP_BUCKET": ""}
    assert cli("list", env=env).code == ExitCode.USAGE
    missing = cli("verify", "--bucket", bucket, "--cluster", "prod", "latest")
    assert missing.code == ExitCode.NOT_FOUND
    assert "no snapshot of cluster 'prod'" in missing.err
    elsewhere = cli("verify", "--bucket", bucket, "--cluster", "prod", "other/key.snap")
    assert elsewhere.code == ExitCode.NOT_FOUND
    assert cli("backup", "--bucket", bucket, "--cluster", "prod").code == ExitCode.USAGE


@pytest.mark.parametrize("command", [command.name for command in COMMANDS])
def test_every_subcommand_has_help_in_the_installed_script(command):
    script = Path(sys.executable).parent / "consul-backup"
    assert script.exists(), "make installs the consul-backup console script into .venv"
    done = subprocess.run([str(script), command, "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    assert f"usage: consul-backup {command}" in done.stdout


def test_a_replica_in_another_region_reads_like_the_primary(consul, s3, monkeypatch):
    # In a regional outage the replica is the only copy: --bucket alone finds it.
    replica = boto3.client("s3", region_name="eu-central-1")
    replica.create_bucket(
        Bucket="replica-snapshots", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    summary = back_up(consul, "replica-snapshots")
    regions = regions_of_s3_clients(monkeypatch)
    env = {"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
    found = cli("verify", "--bucket", "replica-snapshots", "--cluster", "prod", "latest", env=env)
    assert found.code == ExitCode.OK, found.err
    assert summary["key"] in found.out
    assert "s3://replica-snapshots is in eu-central-1" in found.err
    assert regions[-1] == "eu-central-1"
    regions.clear()
    given = cli(
        "list", "--bucket", "replica-snapshots", "--region", "eu-central-1", "--json", env=env
    )
    assert given.code == ExitCode.OK and summary["key"] in given.out
    assert regions == ["eu-central-1"]  # no discovery asked for: one client, in that region


def archive_in_glacier(s3, bucket: str, key: str) -> None:
    s3.copy_object(
        Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key}, StorageClass="GLACIER"
    )


def test_an_archived_snapshot_stops_verify_download_and_restore_with_what_to_do(
    consul, s3, bucket, tmp_path
):
    key = back_up(consul, bucket)["key"]
    archive_in_glacier(s3, bucket, key)
    listed = cli("list", "--bucket", bucket, "--cluster", "prod")
    assert "GLACIER" in listed.out and "archived" in listed.out
    for command in (
        ("verify", "--bucket", bucket, "--cluster", "prod", "latest"),
        ("download", "--bucket", bucket, "--cluster", "prod", "latest", "-o", str(tmp_path / "s")),
        ("restore", "--bucket", bucket, "--cluster", "prod", "latest", "--yes",
         "--consul-addr", consul.address),
    ):  # fmt: skip
        result = cli(*command)
        assert result.code == ExitCode.ARCHIVED, result.err
        assert "is in GLACIER" in result.err and "consul-backup thaw" in result.err
    assert not (tmp_path / "s").exists() and consul.restores == 0


def test_thaw_restores_from_the_archive_and_then_it_verifies(consul, s3, bucket):
    key = back_up(consul, bucket)["key"]
    archive_in_glacier(s3, bucket, key)
    thawed = cli(
        "thaw", "--bucket", bucket, "--cluster", "prod", "latest",
        "--tier", "Bulk", "--days", "2", "--wait", "--poll-seconds", "0.1",
    )  # fmt: skip
    assert thawed.code == ExitCode.OK, thawed.err
    assert f"Thawing {key} from GLACIER (Bulk, kept 2 days)" in thawed.out
    assert "thawed until" in thawed.out
    listed = cli("list", "--bucket", bucket, "--cluster", "prod", "--json")
    assert json.loads(listed.out)["state"].startswith("thawed until")
    assert cli("verify", "--bucket", bucket, "--cluster", "prod", "latest").code == ExitCode.OK


def test_thaw_of_a_snapshot_that_reads_at_once_does_nothing(consul, s3, bucket):
    back_up(consul, bucket)
    result = cli("thaw", "--bucket", bucket, "--cluster", "prod", "latest")
    assert result.code == ExitCode.OK and "nothing to thaw" in result.out
