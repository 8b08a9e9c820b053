"""boto3 clients, one per service and region, reused across warm invocations."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

_AWS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=8)
# Secrets Manager answers in milliseconds; botocore's defaults (60 s to connect,
# 60 s to read, five attempts) could hold one call for ten minutes, past any
# function timeout. The run's deadline stops waiting for it anyway
# (Deadline.run_within); these keep an abandoned call from lingering.
_SECRETS_CONFIG = _AWS_CONFIG.merge(
    Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard", "max_attempts": 3})
)


@lru_cache(maxsize=8)
def _client(service: str, endpoint: str | None, region: str | None) -> Any:
    # Keyed by endpoint and region so a warm container (or a test run) that
    # changes them gets a matching client.
    config = _SECRETS_CONFIG if service == "secretsmanager" else _AWS_CONFIG
    return boto3.client(service, region_name=region, config=config)


def aws_client(service: str) -> Any:
    """A client in the function's own region."""
    return _client(
        service,
        os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
    )


def regional_client(service: str, region: str) -> Any:
    """A client in ``region`` (the replica's)."""
    return _client(service, os.environ.get("AWS_ENDPOINT_URL"), region)
