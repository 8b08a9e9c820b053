"""What every command runs with: the environment, the output streams, and the clients.

A command is a function of a ``Context`` and its parsed arguments; the
context turns flags and environment into an S3 store or a Consul client, and
turns what AWS or the filesystem says into the CLI's own errors (``errors``).
"""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import boto3
import botocore.exceptions

from snapshot_backup.consul import ConsulClient, ConsulSettings
from snapshot_backup.environment import EnvVar
from snapshot_backup.settings import load_consul_settings
from snapshot_backup.store import SnapshotStore

from .errors import (
    LocalFileError,
    NoSuchBucketError,
    NotConfirmedError,
    OutputClosedError,
    UsageError,
)

# The Consul flags and the variables of the function's contract they stand for.
CONSUL_FLAGS = (
    ("consul_addr", EnvVar.CONSUL_HTTP_ADDR),
    ("token_secret_arn", EnvVar.CONSUL_TOKEN_SECRET_ARN),
    ("ca_cert", EnvVar.CONSUL_CACERT),
    ("datacenter", EnvVar.CONSUL_DATACENTER),
)


def ask_on_terminal(prompt: str) -> str:
    """The operator's answer; refused where nobody can type one."""
    if not sys.stdin.isatty():
        raise NotConfirmedError("restore needs confirmation: pass --yes when not on a terminal")
    try:
        return input(prompt)
    except EOFError:
        return ""


@dataclass
class Context:
    env: Mapping[str, str]
    out: TextIO
    err: TextIO
    ask: Callable[[str], str] = ask_on_terminal

    def say(self, text: str) -> None:
        """A line of the command's output; its reader leaving ends the command quietly."""
        try:
            print(text, file=self.out, flush=True)
        except BrokenPipeError as exc:
            raise OutputClosedError("standard output was closed") from exc

    def note(self, text: str) -> None:
        """A remark beside the output (on standard error), so that pipes carry data only."""
        print(f"consul-backup: {text}", file=self.err, flush=True)

    # --- S3 -------------------------------------------------------------------

    def store(self, args: argparse.Namespace) -> SnapshotStore:
        """The bucket of ``--bucket``/``--prefix``, read through a client in its own region."""
        if not args.bucket:
            raise UsageError(f"no bucket: pass --bucket or set {EnvVar.BACKUP_BUCKET}")
        region = args.region or self.bucket_region(args.bucket)
        return SnapshotStore(self.client("s3", region), args.bucket, args.prefix)

    def client(self, service: str, region: str | None = None) -> Any:
        return boto3.client(service, region_name=region) if region else boto3.client(service)

    def bucket_region(self, bucket: str) -> str | None:
        """Where ``bucket`` lives, so that a replica in another region reads as the primary does.

        HeadBucket answers with the bucket's region (``x-amz-bucket-region``)
        from any region's endpoint, even in a 301 or 403; a 404 means there is
        no such bucket. In an outage of the configured region, pass ``--region``.
        """
        try:
            head = boto3.client("s3").head_bucket(Bucket=bucket)
        except botocore.exceptions.ClientError as exc:
            headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            region = headers.get("x-amz-bucket-region")
            if region is None:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status in (403, 404):
                    raise NoSuchBucketError(bucket) from exc
                raise
        else:
            region = head.get("BucketRegion") or head["ResponseMetadata"]["HTTPHeaders"].get(
                "x-amz-bucket-region"
            )
        configured = boto3.session.Session().region_name
        if region and region != configured:
            self.note(f"s3://{bucket} is in {region}")
        return str(region) if region else None

    # --- Consul -----------------------------------------------------------------

    def consul_env(self, args: argparse.Namespace) -> dict[str, str]:
        """The environment with the Consul flags laid over it, for the function's own loader."""
        env = dict(self.env)
        for flag, variable in CONSUL_FLAGS:
            value = getattr(args, flag, None)
            if value:
                env[variable] = value
        return env

    def consul(self, args: argparse.Namespace) -> ConsulClient:
        """A client for ``--consul-addr``, its token read and its CA bundle loaded: checked now,
        before anything is read from S3 or sent to Consul."""
        env = self.consul_env(args)
        if not env.get(EnvVar.CONSUL_HTTP_ADDR):
            raise UsageError(
                f"no Consul address: pass --consul-addr or set {EnvVar.CONSUL_HTTP_ADDR}"
            )
        settings = load_consul_settings(env, lambda: boto3.client("secretsmanager"))
        try:
            return ConsulClient(settings)
        except ssl.SSLError as exc:
            raise UsageError(
                f"{_ca_source(settings)} is not a PEM CA bundle: {exc.reason or exc}"
            ) from exc
        except OSError as exc:
            raise LocalFileError(
                "read the CA bundle (--ca-cert)", settings.ca_cert_file or "", exc
            ) from exc


def _ca_source(settings: ConsulSettings) -> str:
    if settings.ca_cert_file:
        return f"the CA bundle {settings.ca_cert_file} (--ca-cert or {EnvVar.CONSUL_CACERT})"
    return f"the CA bundle in {EnvVar.CONSUL_CACERT_PEM}"
