"""Finding and reading stored snapshots in S3: the function, the CLI and the checks share it.

One listing of a cluster's prefix shows every snapshot and what lies beside it
(its manifest, a hold, a retired marker: ``keys.ObjectKind``), so ranking, the
floor and ``list`` need nothing more than listings. Snapshots rank by Raft
index, then by time: with stale reads a lagging server can answer after a
fresher one, and its older state must not become ``latest``.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .keys import ObjectKind, SnapshotKey, cluster_prefix, normalize_prefix, parse_key
from .manifest import MAX_MANIFEST_BYTES, Manifest, ManifestError


class SnapshotNotFoundError(LookupError):
    pass


@dataclass(frozen=True)
class ArchiveState:
    """Whether S3 serves a snapshot now, or only after a restore from its archive."""

    storage_class: str
    archived: bool  # in an archive class (or Intelligent-Tiering's archive tiers)
    restoring: bool = False
    restored_until: str | None = None

    @property
    def readable(self) -> bool:
        return not self.archived or self.restored_until is not None

    def describe(self) -> str:
        if not self.archived:
            return "ready"
        if self.restoring:
            return "thawing"
        if self.restored_until:
            return f"thawed until {self.restored_until}"
        return "archived"


def archive_state_of(head: dict[str, Any]) -> ArchiveState:
    """From a HeadObject answer: the class, and the ``Restore`` header S3 keeps during a thaw."""
    storage_class = head.get("StorageClass", "STANDARD")
    archived = storage_class in ARCHIVED_CLASSES or bool(head.get("ArchiveStatus"))
    restore = head.get("Restore") or ""
    restoring = 'ongoing-request="true"' in restore
    until = None
    if 'ongoing-request="false"' in restore and "expiry-date=" in restore:
        until = restore.split("expiry-date=", 1)[1].strip('" ')
    return ArchiveState(storage_class, archived, restoring, until)


# Storage classes S3 serves only after a restore request (GLACIER_IR serves at once).
ARCHIVED_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})


@dataclass(frozen=True)
class StoredSnapshot:
    """A snapshot as one listing shows it: its name, size, class, and what lies beside it."""

    name: SnapshotKey
    size: int
    storage_class: str = "STANDARD"
    has_manifest: bool = False
    held: bool = False
    retired: bool = False  # a ``.retired`` marker: the floor let it go

    @property
    def key(self) -> str:
        return self.name.key

    @property
    def cluster(self) -> str:
        return self.name.cluster

    @property
    def taken_at(self) -> datetime:
        return self.name.taken_at

    @property
    def raft_index(self) -> int:
        return self.name.raft_index

    @property
    def archived(self) -> bool:
        """In a class S3 serves only after a restore (hours); INTELLIGENT_TIERING may be too."""
        return self.storage_class in ARCHIVED_CLASSES


def by_rank(snapshot: StoredSnapshot) -> tuple[int, datetime, str]:
    """Newest first when sorted in reverse: Raft index, then time, then key."""
    return (snapshot.raft_index, snapshot.taken_at, snapshot.key)


def by_time(snapshot: StoredSnapshot) -> tuple[datetime, int, str]:
    return (snapshot.taken_at, snapshot.raft_index, snapshot.key)


def ranked(snapshots: Iterable[StoredSnapshot]) -> builtins.list[StoredSnapshot]:
    """Newest first, by Raft index then time, within each cluster.

    Raft indexes of two clusters say nothing about each other: several
    clusters come one after the other, the one with the newest snapshot first.
    """
    ordered = sorted(snapshots, key=by_rank, reverse=True)
    newest: dict[str, datetime] = {}
    for snapshot in ordered:
        newest[snapshot.cluster] = max(
            newest.get(snapshot.cluster, snapshot.taken_at), snapshot.taken_at
        )
    # Stable: each cluster keeps its own ranking.
    return sorted(ordered, key=lambda s: (newest[s.cluster], s.cluster), reverse=True)


@dataclass(frozen=True)
class StoredVersion:
    """One version of a snapshot's archive (``list --versions``)."""

    key: str
    version_id: str
    last_modified: datetime
    size: int
    latest: bool
    delete_marker: bool = False


@dataclass
class SnapshotStore:
    s3: Any
    bucket: str
    prefix: str

    def __post_init__(self) -> None:
        self.prefix = normalize_prefix(self.prefix)

    # --- listing --------------------------------------------------------------

    def list(self, cluster: str | None = None) -> builtins.list[StoredSnapshot]:
        """Every snapshot under the prefix (of ``cluster``), ranked newest first."""
        where = cluster_prefix(self.prefix, cluster) if cluster else self.prefix
        return ranked(self._snapshots_under(where, cluster))

    def latest(self, cluster: str) -> StoredSnapshot | None:
        """The snapshot of ``cluster`` with the highest Raft index (the newest, on a tie)."""
        found = self.list(cluster)
        return found[0] if found else None

    def _objects_under(self, prefix: str) -> Iterator[dict[str, Any]]:
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            yield from page.get("Contents", [])

    def _snapshots_under(self, prefix: str, cluster: str | None) -> builtins.list[StoredSnapshot]:
        archives: dict[SnapshotKey, dict[str, Any]] = {}
        beside: dict[SnapshotKey, set[ObjectKind]] = {}
        for item in self._objects_under(prefix):
            parsed = parse_key(item["Key"], self.prefix)
            if parsed is None or (cluster and parsed[0].cluster != cluster):
                continue
            name, kind = parsed
            if kind is ObjectKind.SNAPSHOT:
                archives[name] = item
            else:
                beside.setdefault(name, set()).add(kind)
        found = []
        for name, item in archives.items():
            kinds = beside.get(name, set())
            found.append(
                StoredSnapshot(
                    name,
                    item["Size"],
                    item.get("StorageClass", "STANDARD"),
                    has_manifest=ObjectKind.MANIFEST in kinds,
                    held=ObjectKind.HOLD in kinds,
                    retired=ObjectKind.RETIRED in kinds,
                )
            )
        return found

    def versions(self, cluster: str) -> builtins.list[StoredVersion]:
        """Every version of every archive of ``cluster`` (and delete markers), newest first."""
        found = []
        paginator = self.s3.get_paginator("list_object_versions")
        for page in paginator.paginate(
            Bucket=self.bucket, Prefix=cluster_prefix(self.prefix, cluster)
        ):
            entries = [(v, False) for v in page.get("Versions", [])]
            entries += [(m, True) for m in page.get("DeleteMarkers", [])]
            for entry, marker in entries:
                parsed = parse_key(entry["Key"], self.prefix)
                if parsed is None or parsed[1] is not ObjectKind.SNAPSHOT:
                    continue
                found.append(
                    StoredVersion(
                        entry["Key"],
                        entry["VersionId"],
                        entry["LastModified"],
                        entry.get("Size", 0),
                        entry.get("IsLatest", False),
                        marker,
                    )
                )
        return sorted(found, key=lambda v: (v.key, v.last_modified), reverse=True)

    # --- one snapshot -----------------------------------------------------------

    def find(self, cluster: str, reference: str) -> StoredSnapshot:
        """``latest`` or a key of ``cluster``'s, checked to exist; its listing entry."""
        if reference == "latest":
            newest = self.latest(cluster)
            if newest is None:
                raise SnapshotNotFoundError(
                    f"no snapshot of cluster {cluster!r} in s3://{self.bucket}/"
                    f"{cluster_prefix(self.prefix, cluster)}"
                )
            return newest
        name = self._name_of(cluster, reference)
        # The snapshot's own day, listed: its manifest and markers come with it.
        for snapshot in self._snapshots_under(name.stem, cluster):
            if snapshot.key == reference:
                return snapshot
        raise SnapshotNotFoundError(f"s3://{self.bucket}/{reference} does not exist")

    def _name_of(self, cluster: str, key: str) -> SnapshotKey:
        own = cluster_prefix(self.prefix, cluster)
        parsed = parse_key(key, self.prefix)
        if not key.startswith(own) or parsed is None or parsed[0].cluster != cluster:
            raise SnapshotNotFoundError(
                f"{key} is not a snapshot key under cluster {cluster!r}'s prefix {own}"
            )
        return parsed[0]

    def read_manifest(self, snapshot: StoredSnapshot | SnapshotKey) -> Manifest | None:
        """The snapshot's manifest; None when it has none."""
        name = snapshot.name if isinstance(snapshot, StoredSnapshot) else snapshot
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=name.manifest_key)
        except self.s3.exceptions.NoSuchKey:
            return None
        where = f"s3://{self.bucket}/{name.manifest_key}"
        with response["Body"] as body:  # no more than a manifest may hold, plus one byte
            manifest = Manifest.from_json(body.read(MAX_MANIFEST_BYTES + 1), where)
        if not manifest.belongs_to(name):
            raise ManifestError(f"{where} describes {manifest.key}, not {name.key}")
        return manifest

    def write_manifest(self, name: SnapshotKey, manifest: Manifest) -> None:
        """Store ``manifest`` beside the snapshot, once: S3 refuses to replace it."""
        self.s3.put_object(
            Bucket=self.bucket,
            Key=name.manifest_key,
            Body=manifest.to_json(),
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",
            IfNoneMatch="*",
        )

    def state_of(self, snapshot: StoredSnapshot) -> ArchiveState:
        """Whether ``snapshot`` reads now; a HeadObject only where its listed class cannot tell."""
        if not snapshot.archived and snapshot.storage_class != "INTELLIGENT_TIERING":
            return ArchiveState(snapshot.storage_class, archived=False)
        # A thaw, and Intelligent-Tiering's archive tiers, show only in HeadObject.
        return self.archive_state(snapshot.key)

    def archive_state(self, key: str) -> ArchiveState:
        return archive_state_of(self.head(key))

    def head(self, key: str, version_id: str | None = None) -> dict[str, Any]:
        """HeadObject; a missing object or version is ``SnapshotNotFoundError``."""
        extra = {"VersionId": version_id} if version_id else {}
        try:
            head: dict[str, Any] = self.s3.head_object(Bucket=self.bucket, Key=key, **extra)
        except self.s3.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey", "NotFound", "NoSuchVersion", "400"):
                which = f" version {version_id}" if version_id else ""
                raise SnapshotNotFoundError(
                    f"s3://{self.bucket}/{key}{which} does not exist"
                ) from exc
            raise
        return head

    def open(self, key: str, version_id: str | None = None) -> dict[str, Any]:
        """GetObject, streaming; the body is read as it arrives."""
        extra = {"VersionId": version_id} if version_id else {}
        try:
            response: dict[str, Any] = self.s3.get_object(Bucket=self.bucket, Key=key, **extra)
        except self.s3.exceptions.NoSuchKey as exc:
            raise SnapshotNotFoundError(f"s3://{self.bucket}/{key} does not exist") from exc
        except self.s3.exceptions.ClientError as exc:
            if version_id and exc.response.get("Error", {}).get("Code") in ("NoSuchVersion", "400"):
                raise SnapshotNotFoundError(
                    f"s3://{self.bucket}/{key} has no version {version_id}"
                ) from exc
            raise
        return response
