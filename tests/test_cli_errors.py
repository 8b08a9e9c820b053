"""The CLI's failures: one line and a documented exit code each, never a traceback.

Run in process through ``cli()`` against moto and the Consul double, as
``test_cli.py`` does; the broken pipe through a real pipe to the installed script.
"""

from __future__ import annotations

import ast
import json
import os
import re
import ssl
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest

import consul_backup
from components import schedule
from components.outputs import ClusterOutputs, OutputsError
from consul_backup import backup_command
from consul_backup.cli import build_parser
from consul_backup.errors import (
    LocalFileError,
    NotConfirmedError,
    OutputClosedError,
    SnapshotArchivedError,
    UsageError,
    failure_of,
)
from consul_backup.exit_codes import DEBUG_VARIABLE, ExitCode
from snapshot_backup.consul import ConsulError
from snapshot_backup.environment import EnvVar
from snapshot_backup.keys import ClusterNameError
from snapshot_backup.settings import SettingsError
from snapshot_backup.store import SnapshotNotFoundError
from snapshot_backup.token_source import TokenError
from snapshot_backup.verify import ArchiveError, StricterThanConsulError
from testbed.archive_writer import RaftState, archive_bytes
from testbed.consul_double import ConsulDouble
from tests.conftest import PREFIX, Result, back_up, cli, put_archive, regions_of_s3_clients

SCRIPT = Path(sys.executable).parent / "consul-backup"


def one_line(result: Result) -> str:
    """The failure as the user sees it: exactly one line on standard error, no traceback."""
    assert "Traceback" not in result.err
    lines = [line for line in result.err.splitlines() if line.startswith("consul-backup:")]
    assert len(lines) == 1, result.err
    return lines[0]


def outputs_file(path: Path, bucket: str, **changes: Any) -> Path:
    """``pulumi stack output clusters --json`` of a stack with one cluster, ``prod``."""
    fields: dict[str, Any] = {
        "cluster": "prod",
        "bucket": bucket,
        "prefix": PREFIX,
        "key_prefix": f"{PREFIX}prod/",
        "region": "us-east-1",
        "function_name": "prod-function",
        "verify_function_name": "prod-verify",
        "rule_name": "prod-schedule",
        "alarm_topic_arn": "arn:aws:sns:us-east-1:123456789012:prod-alarms",
        "replica_bucket": "",
        "replica_region": "",
        "backup_window_minutes": 120,
        "alarm_names": (),
        "keep_latest": 7,
        "content_drop_percent": 50,
        **changes,
    }
    path.write_text(json.dumps({"prod": ClusterOutputs(**fields).to_dict()}))
    return path


# --- local files ----------------------------------------------------------------


def test_download_into_a_missing_directory_says_so(consul, s3, bucket, tmp_path):
    back_up(consul, bucket)
    target = tmp_path / "missing" / "prod.snap"
    result = cli("download", "--bucket", bucket, "--cluster", "prod", "latest", "-o", str(target))
    assert result.code == ExitCode.LOCAL_FILE
    assert f"cannot write {target}: No such file or directory" in one_line(result)
    assert list(tmp_path.iterdir()) == []


def test_download_never_writes_through_a_planted_link_and_is_private(consul, s3, bucket, tmp_path):
    summary = back_up(consul, bucket)
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours to overwrite")
    target = tmp_path / "prod.snap"
    planted = tmp_path / "prod.snap.unverified"
    planted.symlink_to(victim)
    result = cli("download", "--bucket", bucket, "--cluster", "prod", "latest", "-o", str(target))
    assert result.code == ExitCode.OK, result.err
    assert victim.read_bytes() == b"not yours to overwrite"
    assert not target.is_symlink()
    assert target.read_bytes() == s3.get_object(Bucket=bucket, Key=summary["key"])["Body"].read()
    # A snapshot holds ACL tokens in clear: only its owner reads it.
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "prod.snap",
        "prod.snap.unverified",
        "victim",
    ]


def test_force_replaces_a_link_at_the_target_not_what_it_points_to(consul, s3, bucket, tmp_path):
    back_up(consul, bucket)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    target = tmp_path / "prod.snap"
    target.symlink_to(victim)
    args = ("download", "--bucket", bucket, "--cluster", "prod", "latest", "-o", str(target))
    assert cli(*args).code == ExitCode.USAGE  # a link is a file there: --force or nothing
    assert cli(*args, "--force").code == ExitCode.OK
    assert not target.is_symlink() and victim.read_bytes() == b"keep"


def test_force_keeps_the_old_file_when_the_new_one_is_defective(consul, s3, bucket, tmp_path):
    summary = back_up(consul, bucket)
    stored = s3.get_object(Bucket=bucket, Key=summary["key"])["Body"].read()
    target = tmp_path / "prod.snap"
    target.write_bytes(b"yesterday's good snapshot")
    s3.put_object(Bucket=bucket, Key=summary["key"], Body=stored[: len(stored) // 2])
    result = cli(
        "download", "--bucket", bucket, "--cluster", "prod", "latest", "-o", str(target), "--force"
    )
    assert result.code == ExitCode.DEFECTIVE
    assert target.read_bytes() == b"yesterday's good snapshot"
    assert [p.name for p in tmp_path.iterdir()] == ["prod.snap"]


@pytest.mark.parametrize(
    ("content", "code", "says"),
    [
        (None, ExitCode.LOCAL_FILE, "cannot read the stack outputs {path}: No such file"),
        ("clusters: {prod: ...}", ExitCode.USAGE, "{path} is not JSON"),
        (json.dumps({"prod": {"bucket": "b"}}), ExitCode.USAGE, "{path}: cluster 'prod' lacks"),
        (json.dumps({}), ExitCode.USAGE, "{path} holds no clusters"),
    ],
    ids=["missing", "not-json", "incomplete", "empty"],
)
def test_status_outputs_that_cannot_be_read(aws_endpoint, tmp_path, content, code, says):
    path = tmp_path / "clusters.json"
    if content is not None:
        path.write_text(content)
    result = cli("status", "--outputs", str(path))
    assert result.code == code
    assert says.format(path=path) in one_line(result)


@pytest.mark.parametrize(
    ("content", "code", "says"),
    [
        (None, ExitCode.LOCAL_FILE, "cannot read the CA bundle (--ca-cert) {path}: No such file"),
        ("not a certificate\n", ExitCode.USAGE, "the CA bundle {path} (--ca-cert or CONSUL_CACERT)"
         " is not a PEM CA bundle"),
    ],
    ids=["missing", "garbage"],
)  # fmt: skip
def test_restore_with_a_bad_ca_bundle_sends_nothing(
    consul, s3, bucket, tmp_path, content, code, says
):
    back_up(consul, bucket)
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    with ConsulDouble() as target:
        result = cli(
            "restore", "--bucket", bucket, "--cluster", "prod", "latest", "--yes",
            "--consul-addr", target.address, "--ca-cert", str(path),
        )  # fmt: skip
        assert result.code == code
        assert says.format(path=path) in one_line(result)
        assert target.requests == [] and target.restores == 0


# --- pipes and flags ------------------------------------------------------------


def test_a_reader_that_leaves_early_ends_list_silently(s3, bucket):
    """``consul-backup list | head -1``: the reader closes the pipe; no word about it, exit 141."""
    older_snapshots(s3, bucket, 3)
    listing = subprocess.Popen(
        [str(SCRIPT), "list", "--bucket", bucket],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert listing.stdout is not None and listing.stderr is not None
    listing.stdout.close()  # the reader is gone before the first line
    errors = listing.stderr.read()
    assert listing.wait(timeout=60) == ExitCode.BROKEN_PIPE
    assert errors == b""


def test_window_minutes_must_be_within_the_stacks_bounds(aws_endpoint, bucket):
    low, high = schedule.MIN_ALARM_WINDOW_MINUTES, schedule.MAX_ALARM_WINDOW_MINUTES
    for wrong in ("-5", "0", str(high + 1), "soon"):
        result = cli("status", "--bucket", bucket, "--cluster", "prod", "--window-minutes", wrong)
        assert result.code == ExitCode.USAGE
        says = f"--window-minutes: '{wrong}' is not a whole number of minutes from {low} to {high}"
        assert says in one_line(result)
        assert "usage: consul-backup status" in result.err


def test_window_minutes_default_is_the_schedules(monkeypatch):
    monkeypatch.setattr(schedule, "DEFAULT_ALARM_WINDOW_MINUTES", 77)
    args = build_parser({}).parse_args(["status"])
    assert args.window_minutes == 77


def test_cluster_names_are_checked_naming_the_flag(aws_endpoint, bucket):
    result = cli("list", "--bucket", bucket, "--cluster", "Prod_1")
    assert result.code == ExitCode.USAGE
    assert "--cluster: 'Prod_1' is not a valid cluster name (lowercase letters" in one_line(result)


def test_argparse_errors_are_usage_exits_not_system_exits(aws_endpoint):
    result = cli("list", "--no-such-flag")
    assert result.code == ExitCode.USAGE
    assert "unrecognized arguments: --no-such-flag" in one_line(result)
    assert result.err.startswith("usage: consul-backup")
    assert cli("no-such-command").code == ExitCode.USAGE


# --- AWS: buckets, regions, credentials -----------------------------------------


def test_a_wrong_bucket_is_named(aws_endpoint):
    for extra in ((), ("--region", "us-east-1")):  # found by HeadBucket, or by the listing
        result = cli("list", "--bucket", "no-such-bucket-here", *extra)
        assert result.code == ExitCode.USAGE
        assert (
            "no bucket named no-such-bucket-here (or no access to it): check --bucket / "
            "BACKUP_BUCKET, and that your AWS credentials are for the bucket's account"
        ) in one_line(result)


def test_status_takes_the_buckets_region(consul, monkeypatch):
    boto3.client("s3", region_name="eu-central-1").create_bucket(
        Bucket="status-in-frankfurt",
        CreateBucketConfiguration={"LocationConstraint": "eu-central-1"},
    )
    back_up(consul, "status-in-frankfurt")
    regions = regions_of_s3_clients(monkeypatch)
    result = cli(
        "status", "--bucket", "status-in-frankfurt", "--cluster", "prod",
        "--region", "eu-central-1", "--window-minutes", "60",
    )  # fmt: skip
    assert result.code == ExitCode.OK, result.err
    assert regions == ["eu-central-1"]  # given: nothing asked of S3, one client there


def test_status_region_is_the_buckets_the_replica_keeps_its_own(
    consul, bucket, tmp_path, monkeypatch
):
    boto3.client("s3", region_name="eu-central-1").create_bucket(
        Bucket="status-replica-region",
        CreateBucketConfiguration={"LocationConstraint": "eu-central-1"},
    )
    back_up(consul, bucket)
    back_up(consul, "status-replica-region")
    outputs = outputs_file(
        tmp_path / "clusters.json", bucket, region="us-west-2",
        replica_bucket="status-replica-region", replica_region="eu-central-1",
    )  # fmt: skip
    regions = regions_of_s3_clients(monkeypatch)
    result = cli("status", "--outputs", str(outputs), "--region", "us-east-1", "--json")
    assert result.code == ExitCode.OK, result.err
    assert json.loads(result.out)["places"]["replica"]["bucket"] == "status-replica-region"
    assert regions == ["us-east-1", "eu-central-1"]


@pytest.fixture
def no_aws_configuration(aws_endpoint, tmp_path, monkeypatch):
    """No credentials and no region anywhere boto3 looks (and no instance metadata to ask)."""
    for name in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN", "PROFILE",
                 "DEFAULT_PROFILE", "REGION", "DEFAULT_REGION"):  # fmt: skip
        monkeypatch.delenv(f"AWS_{name}", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches what it found


def test_missing_credentials_say_how_to_give_them(no_aws_configuration):
    result = cli("list", "--bucket", "any-bucket", "--region", "us-east-1")
    assert result.code == ExitCode.USAGE
    line = one_line(result)
    assert "Unable to locate credentials" in line
    assert "aws sso login" in line and "AWS_PROFILE" in line and "AWS_ACCESS_KEY_ID" in line


def test_missing_region_says_how_to_give_it(no_aws_configuration):
    result = cli("backup", "--cluster", "prod", "--function-name", "prod-function")
    assert result.code == ExitCode.USAGE
    assert "no AWS region: set AWS_REGION" in one_line(result)


# --- backup --local: the address and the floor ----------------------------------


def local_backup(consul: ConsulDouble, bucket: str, *extra: str, **env: str) -> Result:
    return cli(
        "backup", "--local", "--cluster", "prod", "--consul-addr", consul.address, *extra,
        env={"CONSUL_HTTP_TOKEN": "root-token", "CONSUL_RETRIES": "0", "BACKUP_BUCKET": bucket,
             "KEEP_LATEST": "", **env},
    )  # fmt: skip


def older_snapshots(s3: Any, bucket: str, count: int) -> list[str]:
    """``count`` snapshots of ``prod`` from the past days, ranked below the double's."""
    archive = archive_bytes(RaftState(index=1, term=1, data=b"old"))
    now = datetime.now(UTC)
    return [
        put_archive(s3, bucket, "prod", now - timedelta(days=day), count + 1 - day, archive)
        for day in range(1, count + 1)
    ]


def test_backup_local_without_an_address_names_the_flag(consul, s3, bucket):
    result = cli(
        "backup", "--local", "--bucket", bucket, "--cluster", "prod", "--keep-latest", "7",
        env={"CONSUL_HTTP_ADDR": ""},
    )  # fmt: skip
    assert result.code == ExitCode.USAGE
    assert "no Consul address: pass --consul-addr or set CONSUL_HTTP_ADDR" in one_line(result)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_backup_local_refuses_without_the_stacks_floor(consul, s3, bucket):
    older = older_snapshots(s3, bucket, 9)
    result = local_backup(consul, bucket)
    assert result.code == ExitCode.USAGE
    assert "--outputs clusters.json" in one_line(result) and "--keep-latest N" in result.err
    assert consul.snapshot_requests() == []
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == sorted(older)


def test_backup_local_keeps_the_floor_of_the_stack_outputs(consul, s3, bucket, tmp_path):
    older_snapshots(s3, bucket, 9)
    outputs = outputs_file(tmp_path / "clusters.json", bucket, keep_latest=12)
    result = local_backup(consul, bucket, "--outputs", str(outputs))
    assert result.code == ExitCode.OK, result.err
    assert json.loads(result.out)["retired"] == []  # ten snapshots, a floor of twelve


def test_backup_local_retires_beyond_keep_latest(consul, s3, bucket):
    older = older_snapshots(s3, bucket, 9)
    result = local_backup(consul, bucket, "--keep-latest", "3")
    assert result.code == ExitCode.OK, result.err
    # Ten snapshots, newest first: the new one and older[0:2] are the floor; beyond it,
    # retired, starting with older[2] (how many per run is the floor's own business).
    retired = set(json.loads(result.out)["retired"])
    assert older[2] in retired and retired <= set(older[2:])


def test_backup_local_passes_the_floor_through_the_functions_environment(
    consul, bucket, tmp_path, monkeypatch
):
    seen: list[dict[str, str]] = []

    def handler(event: Any, context: Any, env: dict[str, str]) -> dict[str, Any]:
        seen.append(dict(env))
        return {"outcome": "success"}

    monkeypatch.setattr(backup_command, "backup_handler", handler)
    outputs = outputs_file(tmp_path / "c.json", bucket, keep_latest=24, content_drop_percent=35)
    assert local_backup(consul, bucket, "--outputs", str(outputs)).code == ExitCode.OK
    assert local_backup(consul, bucket, KEEP_LATEST="5").code == ExitCode.OK
    flagged = local_backup(consul, bucket, "--outputs", str(outputs), "--keep-latest", "2")
    assert flagged.code == ExitCode.OK
    floors = [(env[EnvVar.KEEP_LATEST], env.get(EnvVar.CONTENT_DROP_PERCENT)) for env in seen]
    assert floors == [("24", "35"), ("5", None), ("2", "35")]


def test_backup_outputs_of_another_bucket_are_refused(consul, s3, bucket, tmp_path):
    outputs = outputs_file(tmp_path / "clusters.json", "another-bucket")
    result = local_backup(consul, bucket, "--outputs", str(outputs))
    assert result.code == ExitCode.USAGE
    assert f"--bucket {bucket} differs from the stack outputs' another-bucket" in one_line(result)
    assert consul.snapshot_requests() == []


# --- anything else ---------------------------------------------------------------


def test_an_unexpected_error_is_one_line_and_never_exit_1(aws_endpoint, bucket, monkeypatch):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr("snapshot_backup.store.SnapshotStore.list", broken)
    result = cli("list", "--bucket", bucket)
    assert result.code == ExitCode.INTERNAL
    line = one_line(result)
    assert "RuntimeError: boom" in line and f"{DEBUG_VARIABLE}=1" in line
    debug = cli("list", "--bucket", bucket, env={DEBUG_VARIABLE: "1"})
    assert debug.code == ExitCode.INTERNAL
    assert "Traceback (most recent call last)" in debug.err and "RuntimeError: boom" in debug.err


def client_error(code: str, status: int = 400, **error: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "m", **error},
         "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ArchiveError("bad"), ExitCode.DEFECTIVE),
        (StricterThanConsulError("odd"), ExitCode.DEFECTIVE),
        (SnapshotNotFoundError("none"), ExitCode.NOT_FOUND),
        (ConsulError("refused", 403), ExitCode.REMOTE),
        (TokenError("no secret"), ExitCode.REMOTE),
        (SettingsError("bad setting"), ExitCode.USAGE),
        (ClusterNameError("bad name"), ExitCode.USAGE),
        (OutputsError("bad outputs"), ExitCode.USAGE),
        (UsageError("bad flag"), ExitCode.USAGE),
        (botocore.exceptions.NoCredentialsError(), ExitCode.USAGE),
        (botocore.exceptions.NoRegionError(), ExitCode.USAGE),
        (botocore.exceptions.ProfileNotFound(profile="p"), ExitCode.USAGE),
        (client_error("AccessDenied", 403), ExitCode.REMOTE),
        (client_error("NoSuchBucket", 404, BucketName="b"), ExitCode.USAGE),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="u"), ExitCode.REMOTE),
        (NotConfirmedError("no"), ExitCode.NOT_CONFIRMED),
        (SnapshotArchivedError("glacier"), ExitCode.ARCHIVED),
        (LocalFileError("write", "f", OSError(28, "No space left on device")), ExitCode.LOCAL_FILE),
        (FileNotFoundError(2, "No such file or directory", "f"), ExitCode.LOCAL_FILE),
        (ssl.SSLError(1, "bad"), ExitCode.REMOTE),
        (ConnectionResetError(104, "reset"), ExitCode.REMOTE),
        (TimeoutError("slow"), ExitCode.REMOTE),
        (OutputClosedError("gone"), ExitCode.BROKEN_PIPE),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
        (KeyError("x"), ExitCode.INTERNAL),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_every_failure_has_its_documented_exit_code(exc, code):
    failure, line = failure_of(exc)
    assert failure.code == code
    assert "\n" not in line and (line or failure.silent)


def test_a_token_secret_unreadable_for_want_of_credentials_says_credentials():
    try:
        try:
            raise botocore.exceptions.NoCredentialsError()
        except botocore.exceptions.NoCredentialsError as missing:
            raise TokenError("cannot read the Consul token") from missing
    except TokenError as wrapped:
        failure, line = failure_of(wrapped)
    assert failure.code == ExitCode.USAGE and "aws sso login" in line


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def test_the_cli_names_environment_variables_only_through_envvar():
    """One home for each name: ``EnvVar``; a literal copy would drift from the function's."""
    names = re.compile(r"\b(" + "|".join(variable.value for variable in EnvVar) + r")\b")
    copies = []
    for module in sorted(Path(consul_backup.__file__).parent.glob("*.py")):
        tree = ast.parse(module.read_text())
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and names.search(node.value)
            ):
                copies.append(f"{module.name}:{node.lineno}: {node.value!r}")
    assert copies == []


def test_every_exit_code_is_documented_in_the_help():
    epilog = build_parser(os.environ).epilog or ""
    for code in ExitCode:
        assert f"{code.value} {code.meaning}" in epilog
