"""Proven restorable, every day: re-read the newest snapshot and verify it again.

A snapshot verified once at upload can still fail on the day it is needed: its
key disabled, the object gone, the replica stale. The re-verification function
(same code archive, handler ``verify_handler``) reads the newest snapshot of its
cluster from the bucket, and from the replica when there is one, streams it
through the same verifier (one pass, flat memory), and checks it against what
was stored: the archive's SHA-256 where the object records it, and the raft
index in its key. A snapshot in an archived storage class is passed over for
the newest one S3 serves at once. Its role may only list and read.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .aws_clients import aws_client, regional_client
from .environment import EnvVar
from .keys import CLUSTER_NAME, CLUSTER_NAME_RULE, normalize_prefix
from .manifest import Manifest, ManifestMismatchError, check_against, unrecorded
from .s3_upload import SHA256_METADATA
from .settings import SettingsError
from .store import SnapshotStore, StoredSnapshot
from .telemetry import emit, verify_record
from .verify import ArchiveError, ArchiveReport, TeeReader, verify_archive

# How many of the newest snapshots to look through for one not archived.
SCAN_DEPTH = 50


class VerificationError(Exception):
    """A stored snapshot is not what was stored, or none can be read at once."""


@dataclass(frozen=True)
class Location:
    """A bucket to verify in: the primary, or the replica (in its own region)."""

    name: str
    bucket: str
    region: str | None = None


@dataclass(frozen=True)
class VerifySettings:
    cluster_name: str
    prefix: str
    locations: tuple[Location, ...]


def load_verify_settings(env: Mapping[str, str]) -> VerifySettings:
    cluster = (env.get(EnvVar.CLUSTER_NAME) or "").strip()
    if not CLUSTER_NAME.fullmatch(cluster):
        raise SettingsError(f"{EnvVar.CLUSTER_NAME} {cluster!r} must be {CLUSTER_NAME_RULE}")
    bucket = (env.get(EnvVar.BACKUP_BUCKET) or "").strip()
    if not bucket:
        raise SettingsError(f"{EnvVar.BACKUP_BUCKET} is required")
    locations = [Location("bucket", bucket)]
    replica = (env.get(EnvVar.REPLICA_BUCKET) or "").strip()
    if replica:
        region = (env.get(EnvVar.REPLICA_REGION) or "").strip() or None
        locations.append(Location("replica", replica, region))
    return VerifySettings(
        cluster, normalize_prefix(env.get(EnvVar.BACKUP_PREFIX)), tuple(locations)
    )


def verify_newest(store: SnapshotStore, cluster: str, now: datetime) -> dict[str, Any]:
    """Verify the newest snapshot S3 serves at once; what was proven, or an error."""
    candidates = store.newest(cluster, SCAN_DEPTH)
    if not candidates:
        raise VerificationError(f"no snapshot of {cluster} in s3://{store.bucket}/{store.prefix}")
    readable = [s for s in candidates if store.state_of(s).readable]
    if not readable:
        raise VerificationError(
            f"the newest {len(candidates)} snapshots of {cluster} in s3://{store.bucket} are "
            "all archived: none can be read without a restore"
        )
    snapshot = readable[0]
    report, sha256 = verify_stored(store.open(snapshot.key), snapshot.key)
    if report.meta.index != snapshot.raft_index:
        raise VerificationError(
            f"{snapshot.key}: the key says raft index {snapshot.raft_index}, "
            f"the archive {report.meta.index}"
        )
    return {
        "key": snapshot.key,
        "raft_index": report.meta.index,
        "bytes": snapshot.size,
        "sha256": sha256,
        "age_s": round((now - snapshot.taken_at).total_seconds()),
        "passed_over_archived": candidates.index(snapshot),
    }


def verify_stored(
    response: dict[str, Any], key: str, observe: Callable[[bytes], None] | None = None
) -> tuple[ArchiveReport, str]:
    """Stream a GetObject ``response`` through the verifier; check the SHA-256 recorded at upload.

    ``observe`` sees every byte as it passes (progress, a file being written).
    Returns the report and the archive's SHA-256; closes the body.
    """
    digest = hashlib.sha256()

    def tee(data: bytes) -> None:
        digest.update(data)
        if observe is not None:
            observe(data)

    try:
        report = verify_archive(TeeReader(response["Body"], tee))
    finally:
        response["Body"].close()
    sha256 = digest.hexdigest()
    recorded = response.get("Metadata", {}).get(SHA256_METADATA)
    if recorded and recorded != sha256:
        raise ArchiveError(f"{key}: archive SHA-256 {sha256} differs from the recorded {recorded}")
    return report, sha256


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
) -> Proven:
    """Read ``snapshot`` once through the verifier and check it against its manifest.

    ``observe`` sees every byte as it passes (progress, a file being written,
    the body of a restore). Raises ``ArchiveError`` for an archive Consul would
    refuse, ``ManifestMismatchError`` for one that is not what its manifest
    records (naming the manifest's SHA-256), ``UnrecordedSnapshotError`` for a
    snapshot without a manifest unless ``allow_unrecorded``.
    """
    manifest = store.read_manifest(snapshot) if snapshot.has_manifest else None
    if manifest is None and not allow_unrecorded:
        raise unrecorded(store.bucket, snapshot.name)
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
        report = verify_archive(TeeReader(response["Body"], tee))
    finally:
        response["Body"].close()
    read_version = response.get("VersionId")
    read_version = None if read_version in (None, "null") else read_version
    if manifest is not None:
        check_against(
            manifest,
            where=f"s3://{store.bucket}/{snapshot.key}",
            sha256=digest.hexdigest(),
            size=size,
            raft_index=report.meta.index,
            version_id=read_version,
        )
    elif report.meta.index != snapshot.raft_index:
        raise ManifestMismatchError(
            f"s3://{store.bucket}/{snapshot.key}: the key says raft index "
            f"{snapshot.raft_index}, the archive {report.meta.index}"
        )
    return Proven(snapshot, report, digest.hexdigest(), size, read_version, manifest)


def run_verification(
    settings: VerifySettings, s3_for: Callable[[str | None], Any], now: datetime | None = None
) -> dict[str, Any]:
    """Verify every location; raises on the first that fails, naming it."""
    now = now or datetime.now(UTC)
    results = {}
    for location in settings.locations:
        store = SnapshotStore(s3_for(location.region), location.bucket, settings.prefix)
        try:
            results[location.name] = verify_newest(store, settings.cluster_name, now)
        except (ArchiveError, VerificationError) as exc:
            raise VerificationError(f"{location.name} s3://{location.bucket}: {exc}") from exc
    return {
        "cluster": settings.cluster_name,
        "verified": results,
        "bytes": sum(r["bytes"] for r in results.values()),
        "newest_verified_age_s": max(r["age_s"] for r in results.values()),
    }


def verify_handler(
    event: Any, context: Any, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Lambda entry point of the daily re-verification."""
    env = os.environ if env is None else env
    started = time.monotonic()
    cluster = env.get(EnvVar.CLUSTER_NAME, "") or "unknown"
    try:
        settings = load_verify_settings(env)

        def s3_for(region: str | None) -> Any:
            return regional_client("s3", region) if region else aws_client("s3")

        summary = run_verification(settings, s3_for)
    except Exception as exc:
        details = {"error": f"{type(exc).__name__}: {exc}"}
        emit(verify_record(cluster, False, time.monotonic() - started, details))
        raise
    emit(verify_record(cluster, True, time.monotonic() - started, summary))
    return summary
