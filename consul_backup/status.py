"""``consul-backup status``: is every cluster backed up on time, in both places, with no alarm?

Per cluster: the newest snapshot in the bucket and in the replica (its age
against the backup window, raft index, size, storage class, lock), and the
state of the cluster's alarms. Clusters come from the stack outputs
(``pulumi stack output clusters --json``), or one from flags.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from components.outputs import ClusterOutputs
from snapshot_backup.manifest import ManifestError
from snapshot_backup.store import SnapshotStore, by_time


@dataclass(frozen=True)
class ClusterTarget:
    """Where one cluster's snapshots and alarms are, and how old its newest may be."""

    cluster: str
    bucket: str
    prefix: str
    window_minutes: int
    replica_bucket: str | None = None
    replica_region: str | None = None
    alarm_names: tuple[str, ...] = ()

    @classmethod
    def from_outputs(cls, outputs: ClusterOutputs) -> ClusterTarget:
        """The cluster as the stack exports it (``ClusterOutputs``, the program's own keys)."""
        return cls(
            cluster=outputs.cluster,
            bucket=outputs.bucket,
            prefix=outputs.prefix,
            window_minutes=outputs.backup_window_minutes,
            replica_bucket=outputs.replica_bucket or None,
            replica_region=outputs.replica_region or None,
            alarm_names=outputs.alarm_names,
        )


@dataclass
class PlaceStatus:
    bucket: str
    key: str | None = None
    age_minutes: float | None = None
    raft_index: int | None = None
    bytes: int | None = None
    storage_class: str | None = None
    lock: str | None = None
    behind: bool = True
    # The newest snapshot lost content against the one before it (its manifest says).
    content_drop: dict[str, Any] | None = None
    # Snapshots the floor holds since a later one lost content: release when done.
    held: list[str] = field(default_factory=list)
    manifest_problem: str | None = None


@dataclass
class ClusterStatus:
    cluster: str
    window_minutes: int
    places: dict[str, PlaceStatus] = field(default_factory=dict)
    alarms: dict[str, str] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return not any(p.behind for p in self.places.values()) and all(
            state != "ALARM" for state in self.alarms.values()
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy}


def cluster_status(
    target: ClusterTarget,
    s3_for: Callable[[str | None], Any],
    cloudwatch: Any,
    now: datetime | None = None,
) -> ClusterStatus:
    now = now or datetime.now(UTC)
    status = ClusterStatus(target.cluster, target.window_minutes)
    places: list[tuple[str, str, str | None]] = [("bucket", target.bucket, None)]
    if target.replica_bucket:
        places.append(("replica", target.replica_bucket, target.replica_region))
    for name, bucket, region in places:
        status.places[name] = _place(
            SnapshotStore(s3_for(region), bucket, target.prefix), target, now
        )
    if target.alarm_names:
        found = cloudwatch.describe_alarms(AlarmNames=list(target.alarm_names))["MetricAlarms"]
        status.alarms = {alarm["AlarmName"]: alarm["StateValue"] for alarm in found}
    return status


def _place(store: SnapshotStore, target: ClusterTarget, now: datetime) -> PlaceStatus:
    place = PlaceStatus(store.bucket)
    snapshots = store.list(target.cluster)
    if not snapshots:
        return place
    newest = max(snapshots, key=by_time)  # age is about time: the newest taken, whatever its index
    try:
        manifest = store.read_manifest(newest) if newest.has_manifest else None
    except ManifestError as exc:
        manifest, place.manifest_problem = None, str(exc)
    head = store.s3.head_object(Bucket=store.bucket, Key=newest.key)
    age = (now - newest.taken_at).total_seconds() / 60
    lock = head.get("ObjectLockMode")
    return PlaceStatus(
        bucket=store.bucket,
        key=newest.key,
        age_minutes=round(age, 1),
        raft_index=newest.raft_index,
        bytes=newest.size,
        storage_class=head.get("StorageClass", "STANDARD"),
        lock=f"{lock} until {head['ObjectLockRetainUntilDate']:%Y-%m-%d}" if lock else None,
        behind=age > target.window_minutes,
        content_drop=manifest.content_drop if manifest is not None else None,
        held=[s.key for s in snapshots if s.held],
        manifest_problem=place.manifest_problem,
    )
