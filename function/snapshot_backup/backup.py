"""One backup run: stream a Consul snapshot into S3, verified in one pass.

Wires the pieces in ``snapshot_backup``: the Consul client opens the snapshot,
every byte goes both to the S3 upload and to the archive verifier, and the
upload is published only once the verifier has proven the archive whole. Any
failure aborts the upload, is logged as a failed run, and is raised again so
that Lambda counts an error and the alarms fire.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import urllib3

from .aws_clients import aws_client
from .consul import ConsulClient, ConsulError, SnapshotStream
from .deadline import STALLED, TOO_SLOW, Deadline, DeadlineError
from .environment import EnvVar
from .keys import snapshot_key
from .retention import retire_beyond_floor
from .s3_upload import MetadataTooLateError, StreamingUpload
from .settings import BackupSettings, load_settings
from .store import SnapshotStore
from .telemetry import emit, run_record
from .token_source import reread_token, token_redactor
from .verify import SnapshotMeta, TeeReader, verify_archive


def consul_client_for(settings: BackupSettings, deadline: Deadline) -> ConsulClient:
    # Every attempt to reach Consul, and every wait between them, ends by the deadline.
    return ConsulClient(settings.consul, deadline=deadline)


# Consul's answers to a token it does not accept (any more).
TOKEN_REFUSED = frozenset({401, 403})


def open_snapshot(consul: ConsulClient) -> SnapshotStream:
    """``GET /v1/snapshot``; a token from Secrets Manager that Consul refuses is read again, once.

    A warm container keeps the token it read at its cold start: after a
    rotation, Consul refuses it until the secret is read again. Nothing was
    accepted yet, so the request can simply be made again with the new token.
    The client's deadline bounds it all, the read of the secret included.
    """
    try:
        return consul.open_snapshot()
    except ConsulError as refused:
        arn = consul.settings.token_secret_arn
        if refused.status not in TOKEN_REFUSED or arn is None:
            raise
        token = consul.deadline.run_within(
            lambda: reread_token(aws_client("secretsmanager"), arn),
            f"reading the Consul token again from Secrets Manager ({arn})",
        )
        if token == consul.settings.token:
            raise  # the secret has not changed: the token itself lacks the right
        consul.use_token(token)
        return consul.open_snapshot()


def _snapshot_metadata(settings: BackupSettings, snapshot: SnapshotStream) -> dict[str, str]:
    metadata = {
        "cluster": settings.cluster_name,
        "consul-index": str(snapshot.consul_index),
        "known-leader": "true" if snapshot.known_leader else "false",
        "last-contact-ms": str(snapshot.last_contact_ms),
    }
    if settings.consul.datacenter:
        metadata["datacenter"] = settings.consul.datacenter
    return metadata


def run_backup(
    settings: BackupSettings, consul: ConsulClient, s3: Any, deadline: Deadline | None = None
) -> dict[str, Any]:
    """Take one snapshot and store it; returns the summary of what was stored."""
    deadline = deadline or Deadline(None)
    deadline.check(why="no time left in this invocation to take a snapshot")
    snapshot = open_snapshot(consul)
    taken_at = datetime.now(UTC)
    key = snapshot_key(settings.prefix, settings.cluster_name, taken_at, snapshot.consul_index)
    upload = StreamingUpload(
        s3=s3, bucket=settings.bucket, key=key, metadata=_snapshot_metadata(settings, snapshot)
    )
    omitted: list[str] = []

    def store(data: bytes) -> None:
        deadline.check(upload.size)
        upload.write(data)

    def record_meta(meta: SnapshotMeta) -> None:
        raft = {"raft-index": str(meta.index), "raft-term": str(meta.term)}
        try:
            upload.add_metadata(raft)
        except MetadataTooLateError:
            # Only an archive whose meta.json comes after 8 MiB of state gets here;
            # Consul writes it first. The summary says what the object lacks.
            omitted.extend(raft)

    guard = deadline.guard(snapshot)
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
            raise deadline.error(upload.size, TOO_SLOW)
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
            raise deadline.error(upload.size, STALLED) from failure
        raise
    finally:
        snapshot.close()
    summary: dict[str, Any] = {
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
    if omitted:
        summary["metadata_omitted"] = omitted
    summary.update(_retire_beyond_floor(settings, s3))
    return summary


def _retire_beyond_floor(settings: BackupSettings, s3: Any) -> dict[str, Any]:
    """After a stored snapshot, let the ones beyond the newest ``keep_latest`` expire.

    The snapshot is stored whatever happens here; a failure only delays expiry
    (the next run retires what this one could not), so it is reported, not raised.
    """
    store = SnapshotStore(s3, settings.bucket, settings.prefix)
    try:
        return {"retired": retire_beyond_floor(store, settings.cluster_name, settings.keep_latest)}
    except Exception as exc:  # noqa: BLE001 - the backup itself succeeded
        return {"retire_error": f"{type(exc).__name__}: {exc}"}


def handler(event: Any, context: Any, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Lambda's entry point: one backup, one JSON line, and no token in either's text.

    Every record and error is put through the token redactor, so that whatever
    carries a token's bytes (a header error, an echo in a proxy's answer) is
    logged and raised without them. A failure is raised outside the ``except``
    block, so that a stand-in for an error that could not be cleaned does not
    carry the original as its context.
    """
    env = os.environ if env is None else env
    started = time.monotonic()
    cluster = env.get(EnvVar.CLUSTER_NAME, "") or "unknown"
    try:
        deadline = Deadline.from_context(context)
        settings = deadline.run_within(
            lambda: load_settings(env, lambda: aws_client("secretsmanager")),
            "reading the settings and the Consul token",
        )
        consul = consul_client_for(settings, deadline)
        summary = run_backup(settings, consul, aws_client("s3"), deadline)
    except Exception as exc:  # noqa: BLE001 - logged, then raised below
        redactor = token_redactor()
        failure = redactor.exception(exc)
        notes = "".join(f" ({note})" for note in getattr(failure, "__notes__", ()))
        details = {"error": redactor.text(f"{type(failure).__name__}: {failure}{notes}")}
        emit(run_record(cluster, False, time.monotonic() - started, 0, details))
    else:
        summary = token_redactor().record(summary)
        emit(run_record(cluster, True, time.monotonic() - started, summary["bytes"], summary))
        return summary
    raise failure
