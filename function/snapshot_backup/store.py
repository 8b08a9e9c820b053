"""Finding and reading stored snapshots in S3: the function, the CLI and the checks share it.

Only what a listing shows is needed (keys and sizes): the function lists to
find the snapshots that fall out of the newest ``keepLatest``; it reads none.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .keys import cluster_prefix, normalize_prefix, parse_snapshot_key


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


# Digits in each date folder of a key: <cluster>/<yyyy>/<mm>/<dd>/ (see keys.py).
_DATE_FOLDERS = (4, 2, 2)


# Storage classes S3 serves only after a restore request (GLACIER_IR serves at once).
ARCHIVED_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})


@dataclass(frozen=True)
class StoredSnapshot:
    key: str
    cluster: str
    taken_at: datetime
    raft_index: int
    size: int
    storage_class: str = "STANDARD"

    @property
    def archived(self) -> bool:
        """In a class S3 serves only after a restore (hours); INTELLIGENT_TIERING may be too."""
        return self.storage_class in ARCHIVED_CLASSES


def _newest_first(snapshot: StoredSnapshot) -> tuple[datetime, int, str]:
    return (snapshot.taken_at, snapshot.raft_index, snapshot.key)


@dataclass
class SnapshotStore:
    s3: Any
    bucket: str
    prefix: str

    def list(self, cluster: str | None = None) -> list[StoredSnapshot]:
        """Every snapshot this tool wrote under the prefix, newest first."""
        prefix = cluster_prefix(self.prefix, cluster) if cluster else normalize_prefix(self.prefix)
        found = self._snapshots_under(prefix, cluster)
        found.sort(key=_newest_first, reverse=True)
        return found

    def latest(self, cluster: str) -> StoredSnapshot | None:
        """The newest snapshot of ``cluster``."""
        newest = self.newest(cluster, 1)
        return newest[0] if newest else None

    def newest(self, cluster: str, count: int) -> builtins.list[StoredSnapshot]:
        """The ``count`` newest snapshots of ``cluster``, newest first.

        Walks the ``yyyy/mm/dd`` folders newest first instead of listing every
        key, so it takes a handful of small listings however long the bucket
        keeps snapshots; a folder with no snapshot in it sends the walk back to
        the next older one.
        """
        found: builtins.list[StoredSnapshot] = []
        self._collect(cluster_prefix(self.prefix, cluster), _DATE_FOLDERS, cluster, count, found)
        return found[:count]

    def _collect(
        self,
        prefix: str,
        folders: tuple[int, ...],
        cluster: str,
        count: int,
        found: builtins.list[StoredSnapshot],
    ) -> None:
        if not folders:
            found.extend(
                sorted(self._snapshots_under(prefix, cluster), key=_newest_first, reverse=True)
            )
            return
        width, deeper = folders[0], folders[1:]
        for folder in sorted(self._folders_under(prefix, width), reverse=True):
            if len(found) >= count:
                return
            self._collect(folder, deeper, cluster, count, found)

    # ``list`` is a method of this class: annotations name the builtin in full.
    def _folders_under(self, prefix: str, width: int) -> builtins.list[str]:
        """The ``width``-digit folders right under ``prefix``: years, months or days."""
        folders = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, Delimiter="/"
        ):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(prefix) : -1]
                if len(name) == width and name.isdigit():
                    folders.append(common["Prefix"])
        return folders

    def _snapshots_under(self, prefix: str, cluster: str | None) -> builtins.list[StoredSnapshot]:
        found = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            for item in page.get("Contents", []):
                parsed = parse_snapshot_key(item["Key"], self.prefix)
                if parsed is None or (cluster and parsed.cluster != cluster):
                    continue
                found.append(
                    StoredSnapshot(
                        item["Key"],
                        parsed.cluster,
                        parsed.taken_at,
                        parsed.raft_index,
                        item["Size"],
                        item.get("StorageClass", "STANDARD"),
                    )
                )
        return found

    def resolve(self, cluster: str, reference: str) -> str:
        """``latest`` or a key, checked to exist and to belong to ``cluster``."""
        if reference == "latest":
            newest = self.latest(cluster)
            if newest is None:
                raise SnapshotNotFoundError(
                    f"no snapshot of cluster {cluster!r} in s3://{self.bucket}/"
                    f"{cluster_prefix(self.prefix, cluster)}"
                )
            return newest.key
        if not reference.startswith(cluster_prefix(self.prefix, cluster)):
            raise SnapshotNotFoundError(
                f"{reference} is not under cluster {cluster!r}'s prefix "
                f"{cluster_prefix(self.prefix, cluster)}"
            )
        return reference

    def state_of(self, snapshot: StoredSnapshot) -> ArchiveState:
        """Whether ``snapshot`` reads now; a HeadObject only where its listed class cannot tell."""
        if not snapshot.archived and snapshot.storage_class != "INTELLIGENT_TIERING":
            return ArchiveState(snapshot.storage_class, archived=False)
        # A thaw, and Intelligent-Tiering's archive tiers, show only in HeadObject.
        return self.archive_state(snapshot.key)

    def archive_state(self, key: str) -> ArchiveState:
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=key)
        except self.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise SnapshotNotFoundError(f"s3://{self.bucket}/{key} does not exist") from exc
            raise
        return archive_state_of(head)

    def open(self, key: str, version_id: str | None = None) -> dict[str, Any]:
        """GetObject, streaming; the body is read as it arrives."""
        extra = {"VersionId": version_id} if version_id else {}
        try:
            response: dict[str, Any] = self.s3.get_object(Bucket=self.bucket, Key=key, **extra)
        except self.s3.exceptions.NoSuchKey as exc:
            raise SnapshotNotFoundError(f"s3://{self.bucket}/{key} does not exist") from exc
        return response
