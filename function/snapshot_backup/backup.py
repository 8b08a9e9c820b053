"""One backup run: a Consul snapshot into S3, verified and decoded in one pass, then anchored.

The run, step by step (``run_backup``):

1. ``GET /v1/snapshot`` (``consul``): retried before the first byte, within the
   invocation's deadline; a rotated token is read again once.
2. Every byte goes, as it arrives, to the S3 upload and to the verifier, which
   reads the archive as Consul's restore does, ``state.bin`` decoded
   (``verify``). The object is named after ``meta.json`` (Consul writes it
   first): its Raft index orders snapshots, not the ``X-Consul-Index`` header.
3. Only a proven archive is published, never over an existing object
   (``s3_upload``): a run that meets a snapshot at its key records "already
   stored". Anything else aborts the upload: no object, no open upload.
4. Its manifest is written beside it, once (``manifest``): SHA-256, version,
   identity, content. A snapshot that lost content against the one before it
   is flagged, and the last good one held (``retention``).
5. The floor retires what fell out of it (``retention``), as time allows.

Failures are raised (Lambda counts an error and the alarms fire) after the
run's line was printed (``entry``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import urllib3

from .aws_clients import aws_client
from .consul import ConsulClient, ConsulError, SnapshotStream
from .deadline import STALLED, TOO_SLOW, Deadline, DeadlineError
from .entry import run_entry
from .keys import SnapshotKey
from .manifest import Manifest, ManifestError
from .retention import apply_floor, content_drops, describe_drop, hold_last_good
from .s3_upload import AlreadyStoredError, MetadataTooLateError, StoredObject, StreamingUpload
from .settings import BackupSettings, load_settings
from .store import SnapshotStore, StoredSnapshot, by_time
from .telemetry import run_record
from .token_source import reread_token
from .verify import ArchiveReport, SnapshotMeta, StricterThanConsulError, TeeReader, verify_archive

# Consul's answers to a token it does not accept (any more).
TOKEN_REFUSED = frozenset({401, 403})
# The floor's tagging goes on while at least this much of the deadline is left:
# what is not retired now, the next run retires.
FLOOR_SECONDS_LEFT = 5.0
# meta.json's Size is state.bin's length; the gzip archive around it is at most
# that, plus deflate's worst case (5 bytes per 16 KiB stored block) and headers.
ARCHIVE_OVERHEAD_BYTES = 1 << 20


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


@dataclass
class RunSummary:
    """What one run did: the run's line in the logs, and the handler's return value."""

    cluster: str
    bucket: str
    key: str
    result: str  # "stored", or "already stored" when a run met a snapshot at its key
    bytes: int = 0
    sha256: str | None = None
    crc32: str | None = None
    version_id: str | None = None
    parts: int = 0
    raft_index: int = 0
    raft_term: int = 0
    datacenter: str | None = None
    consul_index: int | None = None
    known_leader: bool = False
    state: dict[str, Any] | None = None
    content_drop: dict[str, Any] | None = None
    held: str | None = None
    floor: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_record(self) -> dict[str, Any]:
        record = asdict(self)
        record.update(record.pop("floor"))
        if self.state is not None:  # the log line keeps the counts; the manifest has it all
            record["state"] = {
                name: value for name, value in self.state.items() if not name.startswith("kv_")
            } | {"kv_entries": self.state.get("kv_entries"), "kv_bytes": self.state.get("kv_bytes")}
        if not record["notes"]:
            del record["notes"]
        return {name: value for name, value in record.items() if value is not None}


@dataclass
class _Taken:
    """A snapshot as it streams: when it was taken, and the name ``meta.json`` gives it."""

    settings: BackupSettings
    stream: SnapshotStream
    datacenter: str | None
    taken_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.monotonic)
    name: SnapshotKey | None = None

    def metadata(self) -> dict[str, str]:
        """The object's S3 metadata: what the console shows without reading the manifest."""
        metadata = {
            "cluster": self.settings.cluster_name,
            "known-leader": "true" if self.stream.known_leader else "false",
        }
        if self.stream.consul_index is not None:
            metadata["consul-index"] = str(self.stream.consul_index)
        if self.stream.last_contact_ms is not None:
            metadata["last-contact-ms"] = str(self.stream.last_contact_ms)
        if self.datacenter:
            metadata["datacenter"] = self.datacenter
        return metadata

    def named_by(self, upload: StreamingUpload) -> Callable[[SnapshotMeta], None]:
        """What to do when ``meta.json`` has streamed past: name the object, size its parts."""

        def name_it(meta: SnapshotMeta) -> None:
            settings = self.settings
            self.name = SnapshotKey.of(
                settings.prefix, settings.cluster_name, self.taken_at, meta.index
            )
            upload.set_key(self.name.key)
            upload.add_metadata({"raft-index": str(meta.index), "raft-term": str(meta.term)})
            upload.plan_for(max(meta.size, 0) + max(meta.size, 0) // 3000 + ARCHIVE_OVERHEAD_BYTES)

        return name_it

    def index_note(self, meta: SnapshotMeta) -> str | None:
        """Why the ``X-Consul-Index`` header is not the snapshot's Raft index, if it is not."""
        header = self.stream.consul_index_header
        if self.stream.consul_index == meta.index:
            return None
        if header is None:
            return f"no X-Consul-Index header; meta.json says {meta.index}"
        return f"X-Consul-Index {header!r}, meta.json says {meta.index}"


@contextmanager
def _closing(stream: SnapshotStream) -> Iterator[SnapshotStream]:
    try:
        yield stream
    finally:
        stream.close()


def _verified_stream(taken: _Taken, upload: StreamingUpload, deadline: Deadline) -> ArchiveReport:
    """Read the archive once, into the upload and through the verifier; its report."""

    def store(data: bytes) -> None:
        deadline.check(upload.size)
        upload.write(data)

    guard = deadline.guard(taken.stream)
    try:
        report = _read_archive(TeeReader(taken.stream.archive, store), taken.named_by(upload))
    except BaseException as failure:
        if guard.stop() and not isinstance(failure, DeadlineError):
            # The stream ended because the guard cut it: it had stalled.
            raise deadline.error(upload.size, STALLED) from failure
        raise
    if guard.stop():  # verified, but only just as the deadline passed
        raise deadline.error(upload.size, TOO_SLOW)
    return report


def _read_archive(source: TeeReader, on_meta: Callable[[SnapshotMeta], None]) -> ArchiveReport:
    try:
        return verify_archive(source, on_meta=on_meta)
    except urllib3.exceptions.HTTPError as exc:
        raise ConsulError(f"the snapshot stream from Consul broke off: {exc}") from exc
    except MetadataTooLateError as exc:
        raise StricterThanConsulError(
            "meta.json did not come within the first part of the archive: the snapshot is named "
            "after its Raft index before the upload starts, and Consul writes meta.json first"
        ) from exc


def _store_archive(
    settings: BackupSettings, taken: _Taken, s3: Any, deadline: Deadline
) -> tuple[StoredObject | None, ArchiveReport]:
    """The archive, verified and stored; None for the object when its key was taken already."""
    with (
        _closing(taken.stream),
        StreamingUpload(s3, settings.bucket, metadata=taken.metadata()) as upload,
    ):
        report = _verified_stream(taken, upload, deadline)
        try:
            return upload.commit(), report
        except AlreadyStoredError:
            return None, report


def _datacenter(settings: BackupSettings, consul: ConsulClient) -> tuple[str | None, str | None]:
    """The datacenter the snapshot comes from, for the manifest; and why it is unknown, if so."""
    if settings.consul.datacenter:  # dc=... asks that datacenter's servers
        return settings.consul.datacenter, None
    try:
        return consul.agent_datacenter(), None
    except ConsulError as exc:  # identity is recorded best-effort; the snapshot is what counts
        return None, f"datacenter unknown: {exc}"


def run_backup(
    settings: BackupSettings, consul: ConsulClient, s3: Any, deadline: Deadline | None = None
) -> RunSummary:
    """Take one snapshot, store it, anchor it; what was done."""
    deadline = deadline or Deadline(None)
    deadline.check(why="no time left in this invocation to take a snapshot")
    taken = _Taken(settings, open_snapshot(consul), settings.consul.datacenter)
    stored, report = _store_archive(settings, taken, s3, deadline)
    # Asked after the snapshot is safe: the snapshot's time is the scarce one.
    datacenter, dc_note = _datacenter(settings, consul)
    assert taken.name is not None  # meta.json was decoded, or the archive was refused
    summary = RunSummary(
        cluster=settings.cluster_name,
        bucket=settings.bucket,
        key=taken.name.key,
        result="stored" if stored is not None else "already stored",
        raft_index=report.meta.index,
        raft_term=report.meta.term,
        datacenter=datacenter,
        consul_index=taken.stream.consul_index,
        known_leader=taken.stream.known_leader,
        state=report.state.to_dict() if report.state is not None else None,
        notes=[note for note in (dc_note, taken.index_note(report.meta)) if note],
    )
    if stored is None:  # the run that stored it anchors it and moves the floor
        return summary
    summary.bytes, summary.sha256, summary.crc32 = stored.size, stored.sha256, stored.crc32
    summary.version_id, summary.parts = stored.version_id, stored.parts
    store = SnapshotStore(s3, settings.bucket, settings.prefix)
    _anchor(store, settings, taken, report, summary)
    summary.floor = _move_floor(store, settings, deadline)
    return summary


def _anchor(
    store: SnapshotStore,
    settings: BackupSettings,
    taken: _Taken,
    report: ArchiveReport,
    summary: RunSummary,
) -> None:
    """Judge the content against the snapshot before, write the manifest, hold if flagged."""
    assert taken.name is not None
    earlier = _taken_before(store, taken.name)
    previous = _previous_manifest(store, earlier, summary)
    if previous is not None and previous.state is not None and summary.state is not None:
        dropped = content_drops(previous.state, summary.state, settings.content_drop_percent)
        if dropped:
            summary.content_drop = {
                "previous": previous.key,
                "percent": settings.content_drop_percent,
                "dropped": dropped,
            }
    _write_manifest(store, taken, report, summary)
    if summary.content_drop:
        flagged = StoredSnapshot(taken.name, summary.bytes, has_manifest=True)
        summary.held = _hold(store, flagged, earlier, summary.content_drop, summary)


def _write_manifest(
    store: SnapshotStore, taken: _Taken, report: ArchiveReport, summary: RunSummary
) -> None:
    assert taken.name is not None
    manifest = Manifest(
        cluster=summary.cluster,
        key=taken.name.key,
        version_id=summary.version_id if summary.version_id not in (None, "null") else None,
        size=summary.bytes,
        sha256=summary.sha256 or "",
        crc32=summary.crc32,
        raft_index=report.meta.index,
        raft_term=report.meta.term,
        raft_id=report.meta.id,
        datacenter=summary.datacenter,
        consul_index=summary.consul_index,
        known_leader=summary.known_leader,
        last_contact_ms=taken.stream.last_contact_ms,
        taken_at=taken.taken_at,
        duration_s=round(time.monotonic() - taken.started, 3),
        state=report.state.to_dict() if report.state is not None else None,
        content_drop=summary.content_drop,
    )
    try:
        store.write_manifest(taken.name, manifest)
    except Exception as exc:
        exc.add_note(
            f"s3://{store.bucket}/{taken.name.key} is stored and verified, but its manifest "
            "is not: readers refuse it (consul-backup ... --allow-unrecorded reads it)"
        )
        raise


def _taken_before(store: SnapshotStore, name: SnapshotKey) -> list[StoredSnapshot]:
    """The cluster's other snapshots taken before this one, the newest first."""
    others = [s for s in store.list(name.cluster) if s.key != name.key]
    before = [s for s in others if s.taken_at <= name.taken_at]
    return sorted(before, key=by_time, reverse=True)


def _previous_manifest(
    store: SnapshotStore, earlier: list[StoredSnapshot], summary: RunSummary
) -> Manifest | None:
    """The manifest of the snapshot taken before this one; None where there is none to read.

    One that cannot be read (damaged, foreign) only costs the comparison: the
    snapshot just stored is anchored all the same, and the run says why.
    """
    if not earlier or not earlier[0].has_manifest:
        return None
    try:
        return store.read_manifest(earlier[0])
    except (ManifestError, ValueError, store.s3.exceptions.ClientError) as exc:
        summary.notes.append(f"no content comparison: {earlier[0].key}'s manifest: {exc}")
        return None


def _hold(
    store: SnapshotStore,
    flagged: StoredSnapshot,
    earlier: list[StoredSnapshot],
    content_drop: Mapping[str, Any],
    summary: RunSummary,
) -> str | None:
    """Hold the last good snapshot; a failure (after botocore's retries) is reported.

    The run is not failed for it: the snapshot is stored, and the content-drop
    alarm fires all the same; the operator holds by hand what must be kept.
    """
    try:
        return hold_last_good(
            store, flagged, earlier, f"content dropped: {describe_drop(content_drop)}"
        )
    except Exception as exc:  # noqa: BLE001 - the snapshot is stored; say what failed
        summary.notes.append(f"holding the last good snapshot failed: {type(exc).__name__}: {exc}")
        return None


def _move_floor(
    store: SnapshotStore, settings: BackupSettings, deadline: Deadline
) -> dict[str, Any]:
    """Retire what fell out of the floor; a failure only delays expiry, so it is reported."""

    def time_left() -> bool:
        left = deadline.remaining()
        return left is None or left > FLOOR_SECONDS_LEFT

    try:
        return apply_floor(
            store, settings.cluster_name, settings.keep_latest, time_left
        ).as_record()
    except Exception as exc:  # noqa: BLE001 - the backup itself succeeded
        return {"retire_error": f"{type(exc).__name__}: {exc}"}


def _backup(env: Mapping[str, str], deadline: Deadline) -> dict[str, Any]:
    settings = deadline.run_within(
        lambda: load_settings(env, lambda: aws_client("secretsmanager")),
        "reading the settings and the Consul token",
    )
    # Every attempt to reach Consul, and every wait between them, ends by the deadline.
    consul = ConsulClient(settings.consul, deadline=deadline)
    return run_backup(settings, consul, aws_client("s3"), deadline).as_record()


def handler(event: Any, context: Any, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Lambda's entry point: one backup, one JSON line (``entry``), no token in either."""
    return run_entry(env, context, _backup, run_record)
