"""Proven restorable, every day: re-read the newest snapshot and prove it again.

A snapshot verified once at upload can still fail on the day it is needed: its
key disabled, the object gone or replaced, the replica stale. The
re-verification function (same code archive, handler ``verify_handler``) reads
the newest snapshot of its cluster (by Raft index) from the bucket, and from the
replica when there is one, streams it through the same verifier (one pass, flat
memory, ``state.bin`` decoded) and checks it against its manifest: the
archive's SHA-256, size and Raft index (``prove_stored``, which the CLI's
``verify``, ``download`` and ``restore`` use too). A snapshot in an archived
storage class is passed over for the newest one S3 serves at once. Its role may
only list and read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .aws_clients import aws_client, regional_client
from .deadline import Deadline
from .entry import run_entry
from .manifest import Manifest, ManifestMismatchError, check_against, mismatch, unrecorded
from .settings import StoreSettings, load_store_settings
from .state_bin import StateDecoder
from .store import SnapshotStore, StoredSnapshot, by_time
from .telemetry import verify_record
from .verify import ArchiveError, ArchiveReport, TeeReader, verify_archive

# How many of the newest snapshots to look through for one not archived.
SCAN_DEPTH = 50


class VerificationError(Exception):
    """A stored snapshot is not what was stored, or none can be read at once."""


@dataclass(frozen=True)
class Proven:
    """A stored snapshot read back whole: what the verifier found, what it was checked against."""

    snapshot: StoredSnapshot
    report: ArchiveReport
    sha256: str
    size: int
    version_id: str | None
    manifest: Manifest | None

    @property
    def sha256_checked(self) -> bool:
        """Whether the archive was compared with the SHA-256 recorded in its manifest."""
        return self.manifest is not None


def prove_stored(
    store: SnapshotStore,
    snapshot: StoredSnapshot,
    *,
    version_id: str | None = None,
    allow_unrecorded: bool = False,
    observe: Callable[[bytes], None] | None = None,
    state: StateDecoder | None = None,
    on_open: Callable[[int], None] | None = None,
) -> Proven:
    """Read ``snapshot`` once through the verifier and check it against its manifest.

    ``observe`` sees every byte as it passes (progress, a file, a restore's body);
    ``on_open`` is told the length about to be read, once S3's answer (the
    version, its length) was checked against the manifest: a replaced object is
    refused before a byte is read or passed on. Raises ``ArchiveError`` for an
    archive Consul would refuse, ``ManifestMismatchError`` for one that is not
    what its manifest records (naming its SHA-256), ``UnrecordedSnapshotError``
    for a snapshot without a manifest unless ``allow_unrecorded``.
    """
    manifest = store.read_manifest(snapshot) if snapshot.has_manifest else None
    if manifest is None and not allow_unrecorded:
        raise unrecorded(store.bucket, snapshot.name)
    where = f"s3://{store.bucket}/{snapshot.key}"
    response = store.open(snapshot.key, version_id)
    digest = hashlib.sha256()
    size = 0

    def tee(data: bytes) -> None:
        nonlocal size
        digest.update(data)
        size += len(data)
        if observe is not None:
            observe(data)

    try:
        read_version = _version_of(response)
        if manifest is not None:
            _check_answer(manifest, where, response, read_version)
        if on_open is not None:
            on_open(int(response["ContentLength"]))
        report = verify_archive(TeeReader(response["Body"], tee), state=state)
    finally:
        response["Body"].close()
    if manifest is not None:
        check_against(
            manifest,
            where=where,
            sha256=digest.hexdigest(),
            size=size,
            raft_index=report.meta.index,
            version_id=read_version,
        )
    elif report.meta.index != snapshot.raft_index:
        raise ManifestMismatchError(
            f"{where}: the key says raft index "
            f"{snapshot.raft_index}, the archive {report.meta.index}"
        )
    return Proven(snapshot, report, digest.hexdigest(), size, read_version, manifest)


def _version_of(response: dict[str, Any]) -> str | None:
    version = response.get("VersionId")
    return None if version in (None, "null") else str(version)


def _check_answer(
    manifest: Manifest, where: str, response: dict[str, Any], read_version: str | None
) -> None:
    """Before reading: S3's answer must be the version and the length the manifest records.

    S3 Replication keeps version ids, so a replica answers with the recorded one
    too; a bucket without versioning answers with none, and the SHA-256 decides.
    """
    length = int(response["ContentLength"])
    if read_version and manifest.version_id and read_version != manifest.version_id:
        raise mismatch(where, manifest, f"S3 serves another version ({length} bytes)", read_version)
    if length != manifest.size:
        raise mismatch(
            where, manifest, f"it has {length} bytes, the manifest recorded {manifest.size}"
        )


def verify_newest(store: SnapshotStore, cluster: str, now: datetime) -> dict[str, Any]:
    """Prove the newest snapshot taken that S3 serves at once; what was proven, or an error.

    The newest by time, not by Raft index: after a cluster was rebuilt from an
    older snapshot, its new snapshots carry lower indexes, and they are the ones
    whose restorability is news.
    """
    candidates = sorted(store.list(cluster), key=by_time, reverse=True)[:SCAN_DEPTH]
    if not candidates:
        raise VerificationError(f"no snapshot of {cluster} in s3://{store.bucket}/{store.prefix}")
    readable = [s for s in candidates if store.state_of(s).readable]
    if not readable:
        raise VerificationError(
            f"the newest {len(candidates)} snapshots of {cluster} in s3://{store.bucket} are "
            "all archived: none can be read without a restore"
        )
    proven = prove_stored(store, readable[0])
    return {
        "key": proven.snapshot.key,
        "raft_index": proven.report.meta.index,
        "bytes": proven.size,
        "sha256": proven.sha256,
        "sha256_checked": proven.sha256_checked,
        "age_s": round((now - proven.snapshot.taken_at).total_seconds()),
        "passed_over_archived": candidates.index(proven.snapshot),
    }


def run_verification(
    settings: StoreSettings, s3_for: Callable[[str | None], Any], now: datetime | None = None
) -> dict[str, Any]:
    """Verify the bucket, then the replica; raises on the first that fails, naming it."""
    now = now or datetime.now(UTC)
    places: list[tuple[str, str, str | None]] = [("bucket", settings.bucket, None)]
    if settings.replica is not None:
        places.append(("replica", settings.replica.bucket, settings.replica.region))
    results = {}
    for place, bucket, region in places:
        store = SnapshotStore(s3_for(region), bucket, settings.prefix)
        try:
            results[place] = verify_newest(store, settings.cluster_name, now)
        except (ArchiveError, VerificationError) as exc:
            raise VerificationError(f"{place} s3://{bucket}: {exc}") from exc
    return {
        "cluster": settings.cluster_name,
        "verified": results,
        "bytes": sum(r["bytes"] for r in results.values()),
        "newest_verified_age_s": max(r["age_s"] for r in results.values()),
    }


def _verify(env: Mapping[str, str], deadline: Deadline) -> dict[str, Any]:
    settings = load_store_settings(env)

    def s3_for(region: str | None) -> Any:
        return regional_client("s3", region) if region else aws_client("s3")

    return run_verification(settings, s3_for)


def verify_handler(
    event: Any, context: Any, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Lambda entry point of the daily re-verification: one JSON line (``entry``)."""
    return run_entry(env, context, _verify, verify_record)
