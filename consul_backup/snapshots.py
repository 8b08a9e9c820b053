"""Finding and reading stored snapshots in S3."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from snapshot_backup.keys import cluster_prefix, normalize_prefix, parse_snapshot_key


class SnapshotNotFoundError(LookupError):
    pass


@dataclass(frozen=True)
class StoredSnapshot:
    key: str
    cluster: str
    taken_at: datetime
    raft_index: int
    size: int


@dataclass
class SnapshotStore:
    s3: Any
    bucket: str
    prefix: str

    def list(self, cluster: str | None = None) -> list[StoredSnapshot]:
        """Every snapshot this tool wrote under the prefix, newest first."""
        prefix = cluster_prefix(self.prefix, cluster) if cluster else normalize_prefix(self.prefix)
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
                    )
                )
        found.sort(key=lambda s: (s.taken_at, s.raft_index, s.key), reverse=True)
        return found

    def resolve(self, cluster: str, reference: str) -> str:
        """``latest`` or a key, checked to exist and to belong to ``cluster``."""
        if reference == "latest":
            snapshots = self.list(cluster)
            if not snapshots:
                raise SnapshotNotFoundError(
                    f"no snapshot of cluster {cluster!r} in s3://{self.bucket}/"
                    f"{cluster_prefix(self.prefix, cluster)}"
                )
            return snapshots[0].key
        if not reference.startswith(cluster_prefix(self.prefix, cluster)):
            raise SnapshotNotFoundError(
                f"{reference} is not under cluster {cluster!r}'s prefix "
                f"{cluster_prefix(self.prefix, cluster)}"
            )
        return reference

    def open(self, key: str, version_id: str | None = None) -> dict[str, Any]:
        """GetObject, streaming; the body is read as it arrives."""
        extra = {"VersionId": version_id} if version_id else {}
        try:
            response: dict[str, Any] = self.s3.get_object(Bucket=self.bucket, Key=key, **extra)
        except self.s3.exceptions.NoSuchKey as exc:
            raise SnapshotNotFoundError(f"s3://{self.bucket}/{key} does not exist") from exc
        return response
