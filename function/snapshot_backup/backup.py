"""One backup run: stream a Consul snapshot into S3, verified in one pass.

Wires the pieces in ``snapshot_backup``: the Consul client opens the snapshot,
every byte goes both to the S3 upload and to the archive verifier, and the
upload is published only once the verifier has proven the archive whole. Any
failure aborts the upload, is logged as a failed run, and is raised again so
that Lambda counts an error and the alarms fire.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import boto3
import urllib3
from botocore.config import Config

from .consul import ConsulClient, ConsulError, ConsulSettings, SnapshotStream, retry_delays
from .keys import snapshot_key
from .s3_upload import StreamingUpload
from .settings import BackupSettings, load_settings
from .telemetry import emit, run_record
from .token_source import resolve_token
from .verify import SnapshotMeta, TeeReader, verify_archive

# Stop this long before Lambda would kill the run, so that there is time to
# abort the upload and to log the failure: a killed run leaves an open upload
# (lifecycle removes it a day later) and no log line.
DEADLINE_MARGIN_SECONDS = 20.0

_AWS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=8)


@lru_cache(maxsize=8)
def _client(service: str, endpoint: str | None, region: str | None) -> Any:
    # Keyed by endpoint and region so a warm container (or a test run) that
    # changes them gets a matching client; boto3 reads both from the env anyway.
    return boto3.client(service, config=_AWS_CONFIG)


def aws_client(service: str) -> Any:
    return _client(
        service,
        os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
    )


class DeadlineError(TimeoutError):
    """The invocation is about to run out of time."""


class StallGuard:
    """At the deadline, unblocks a read still waiting on a stalled snapshot stream.

    Every byte that arrives is checked against the deadline, but a stream that
    stops sending would hold the read for the whole read timeout, past the
    deadline: Lambda would then kill the run before it aborts and logs.
    """

    def __init__(self, deadline: float | None, snapshot: SnapshotStream) -> None:
        self.fired = False
        self._timer: threading.Timer | None = None
        if deadline is not None:
            delay = max(0.0, deadline - time.monotonic())
            self._timer = threading.Timer(delay, self._fire, args=(snapshot,))
            self._timer.daemon = True
            self._timer.start()

    def _fire(self, snapshot: SnapshotStream) -> None:
        self.fired = True
        snapshot.interrupt()

    def stop(self) -> bool:
        """Stop the timer; True when it had already cut the stream.

        Should it fire while this runs, it cuts a stream that was read to its
        end already, which changes nothing: the answer given here stands.
        """
        if self._timer is not None:
            self._timer.cancel()
        return self.fired


def deadline_from(context: Any) -> float | None:
    """A monotonic deadline from the Lambda context, or None when run elsewhere."""
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if remaining_ms is None:
        return None
    return time.monotonic() + remaining_ms() / 1000 - DEADLINE_MARGIN_SECONDS


def consul_client_for(
    settings: BackupSettings, env: Mapping[str, str], deadline: float | None = None
) -> ConsulClient:
    token = resolve_token(env, settings.token_secret_arn, lambda: aws_client("secretsmanager"))
    read_timeout = settings.read_timeout
    if deadline is not None:
        # Waiting for the first byte must not outlast the invocation either.
        read_timeout = max(1.0, min(read_timeout, deadline - time.monotonic()))
    return ConsulClient(
        ConsulSettings(
            address=settings.consul_address,
            token=token,
            datacenter=settings.datacenter,
            stale=settings.stale,
            ca_cert_file=settings.ca_cert_file,
            ca_cert_pem=settings.ca_cert_pem,
            read_timeout=read_timeout,
            retry_delays=retry_delays(settings.retries),
        )
    )


def _snapshot_metadata(settings: BackupSettings, snapshot: SnapshotStream) -> dict[str, str]:
    metadata = {
        "cluster": settings.cluster_name,
        "consul-index": str(snapshot.consul_index),
        "known-leader": "true" if snapshot.known_leader else "false",
        "last-contact-ms": str(snapshot.last_contact_ms),
    }
    if settings.datacenter:
        metadata["datacenter"] = settings.datacenter
    return metadata


def _deadline_error(size: int, why: str) -> DeadlineError:
    return DeadlineError(f"the invocation is about to time out after {size} bytes: {why}")


_TOO_SLOW = "raise the function's timeout or memory"
_STALLED = "Consul stopped sending the snapshot"


def run_backup(
    settings: BackupSettings, consul: ConsulClient, s3: Any, deadline: float | None = None
) -> dict[str, Any]:
    """Take one snapshot and store it; returns the summary of what was stored."""
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlineError("no time left in this invocation to take a snapshot")
    snapshot = consul.open_snapshot()
    taken_at = datetime.now(UTC)
    key = snapshot_key(settings.prefix, settings.cluster_name, taken_at, snapshot.consul_index)
    upload = StreamingUpload(
        s3=s3, bucket=settings.bucket, key=key, metadata=_snapshot_metadata(settings, snapshot)
    )

    def store(data: bytes) -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise _deadline_error(upload.size, _TOO_SLOW)
        upload.write(data)

    def record_meta(meta: SnapshotMeta) -> None:
        upload.metadata.update({"raft-index": str(meta.index), "raft-term": str(meta.term)})

    guard = StallGuard(deadline, snapshot)
    cut_at_deadline = False
    try:
        try:
            report = verify_archive(TeeReader(snapshot.archive, store), on_meta=record_meta)
        except urllib3.exceptions.HTTPError as exc:
            raise ConsulError(f"the snapshot stream from Consul broke off: {exc}") from exc
        finally:
            # The stream is read (or failed); S3's calls have botocore's timeouts.
            cut_at_deadline = guard.stop()
        if cut_at_deadline:  # verified, but only just as the deadline passed
            raise _deadline_error(upload.size, _TOO_SLOW)
        stored = upload.commit()
    except BaseException as failure:
        try:
            upload.abort()
        except Exception as cleanup:  # noqa: BLE001 - the original error is the one raised
            failure.add_note(
                f"aborting the upload failed too ({cleanup}); "
                "the bucket's lifecycle rule removes incomplete uploads after a day"
            )
        if cut_at_deadline and not isinstance(failure, DeadlineError):
            raise _deadline_error(upload.size, _STALLED) from failure
        raise
    finally:
        snapshot.close()
    return {
        "cluster": settings.cluster_name,
        "bucket": stored.bucket,
        "key": stored.key,
        "version_id": stored.version_id,
        "bytes": stored.size,
        "sha256": stored.sha256,
        "raft_index": report.meta.index,
        "raft_term": report.meta.term,
        "consul_index": snapshot.consul_index,
        "known_leader": snapshot.known_leader,
        "parts": stored.parts,
    }


def handler(event: Any, context: Any, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if env is None else env
    started = time.monotonic()
    cluster = env.get("CLUSTER_NAME", "") or "unknown"
    try:
        settings = load_settings(env)
        deadline = deadline_from(context)
        consul = consul_client_for(settings, env, deadline)
        summary = run_backup(settings, consul, aws_client("s3"), deadline)
    except Exception as exc:
        notes = "".join(f" ({note})" for note in getattr(exc, "__notes__", ()))
        details = {"error": f"{type(exc).__name__}: {exc}{notes}"}
        emit(run_record(cluster, False, time.monotonic() - started, 0, details))
        raise
    emit(run_record(cluster, True, time.monotonic() - started, summary["bytes"], summary))
    return summary
