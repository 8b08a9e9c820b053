"""Shared fixtures: moto in server mode and the Consul double, both on 127.0.0.1."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

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
