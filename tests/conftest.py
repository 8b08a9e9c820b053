"""Shared fixtures and helpers: moto in server mode and the Consul double, both on
127.0.0.1; a backup run, the CLI run in process, and what they leave behind."""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
import pytest

from consul_backup.cli import run
from handler import handler
from snapshot_backup.keys import SnapshotKey
from snapshot_backup.token_source import forget_cached_tokens
from testbed.consul_double import ConsulDouble
from testbed.moto_server import aws_env, moto_server


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    saved = dict(os.environ)
    with moto_server() as endpoint:
        os.environ.update(aws_env(endpoint))
        try:
            yield endpoint
        finally:
            os.environ.clear()
            os.environ.update(saved)


@pytest.fixture
def s3(aws_endpoint: str) -> Any:
    return boto3.client("s3")


@pytest.fixture
def secrets(aws_endpoint: str) -> Any:
    return boto3.client("secretsmanager")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"backups-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def consul() -> Iterator[ConsulDouble]:
    with ConsulDouble() as double:
        yield double


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> None:
    forget_cached_tokens()


def assert_nothing_stored(s3: Any, bucket: str) -> None:
    """Not an object, not a version, not an open multipart upload."""
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    versions = s3.list_object_versions(Bucket=bucket)
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def stored_objects(s3: Any, bucket: str) -> list[dict[str, Any]]:
    return list(s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def stored_archives(s3: Any, bucket: str) -> list[str]:
    """The keys of the snapshot archives in ``bucket`` (manifests and markers aside)."""
    return [o["Key"] for o in stored_objects(s3, bucket) if o["Key"].endswith(".snap")]


PREFIX = "consul-snapshots/"


def backup_env(
    consul: ConsulDouble, bucket: str, cluster: str = "prod", **extra: str
) -> dict[str, str]:
    """The function's environment for a run against ``consul`` into ``bucket``."""
    return {
        **os.environ,
        "CONSUL_HTTP_ADDR": consul.address,
        "CONSUL_HTTP_TOKEN": "root-token",
        "BACKUP_BUCKET": bucket,
        "CLUSTER_NAME": cluster,
        "CONSUL_RETRIES": "0",
        **extra,
    }


def back_up(consul: ConsulDouble, bucket: str, cluster: str = "prod", **extra: str) -> dict:
    """One backup through the real handler; its summary."""
    return handler({}, None, env=backup_env(consul, bucket, cluster, **extra))


def run_record(captured: str) -> dict:
    """The one JSON line a run prints."""
    lines = [line for line in captured.splitlines() if line.startswith("{")]
    assert len(lines) == 1, "one JSON line per run"
    return json.loads(lines[0])


def put_archive(s3: Any, bucket: str, cluster: str, when: datetime, index: int, body: bytes) -> str:
    """An object under the key a backup of ``cluster`` at ``when`` would have."""
    key = SnapshotKey.of(PREFIX, cluster, when, index).key
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return key


@dataclass
class Result:
    code: int
    out: str
    err: str


def regions_of_s3_clients(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The region of every S3 client made from now on, in order."""
    regions: list[str | None] = []
    made = boto3.client

    def recording_client(service: str, *args: Any, **kwargs: Any) -> Any:
        if service == "s3":
            regions.append(kwargs.get("region_name"))
        return made(service, *args, **kwargs)

    monkeypatch.setattr(boto3, "client", recording_client)
    return regions


def cli(*argv: str, env: dict[str, str] | None = None, answer: str | None = None) -> Result:
    """``consul-backup`` run in this process; ``answer`` is typed at a confirmation prompt."""
    out, err = io.StringIO(), io.StringIO()

    def ask(prompt: str) -> str:
        if answer is None:
            raise AssertionError("the CLI asked for confirmation unexpectedly")
        return answer

    code = run(list(argv), env={**os.environ, **(env or {})}, out=out, err=err, ask=ask)
    return Result(code, out.getvalue(), err.getvalue())


def locked_bucket(s3: Any, name: str, mode: str, days: int) -> str:
    """A bucket whose every new version is locked by default retention."""
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket=name,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": mode, "Days": days}},
        },
    )
    return name
