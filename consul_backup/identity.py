"""Restore the right snapshot into the right cluster: what a snapshot is, and whether it fits.

Before any byte is sent, ``restore`` shows the snapshot's identity from its
manifest (cluster, datacenter, Raft index, age, size, what it holds) and
refuses when the snapshot was taken from another cluster than ``--cluster``,
or another datacenter than the target Consul's (``GET /v1/agent/self``):
Consul restores a snapshot into any cluster it is given, and a restore into
the wrong one replaces that cluster's whole state. ``--into-other-cluster``
says it is meant (a migration, a copy for tests).
"""

from __future__ import annotations

from datetime import UTC, datetime

from snapshot_backup.manifest import Manifest
from snapshot_backup.retention import describe_counts, describe_drop
from snapshot_backup.store import StoredSnapshot

from .errors import IdentityMismatchError
from .progress import human_bytes


def _age(taken_at: datetime) -> str:
    minutes = max(0, int((datetime.now(UTC) - taken_at).total_seconds() // 60))
    if minutes < 120:
        return f"{minutes} min ago"
    if minutes < 48 * 60:
        return f"{minutes // 60} h ago"
    return f"{minutes // 1440} days ago"


def describe_identity(snapshot: StoredSnapshot, manifest: Manifest | None) -> str:
    """A few indented lines: where the snapshot comes from, when, and what it holds."""
    lines = [
        f"  taken {snapshot.taken_at:%Y-%m-%d %H:%M:%S} UTC ({_age(snapshot.taken_at)}), "
        f"{human_bytes(snapshot.size)}, raft index {snapshot.raft_index}"
    ]
    if manifest is None:
        lines.append("  no manifest: cluster, datacenter and content were not recorded")
        return "\n".join(lines)
    lines.append(
        f"  cluster {manifest.cluster}, datacenter {manifest.datacenter or '(not recorded)'}, "
        f"raft term {manifest.raft_term}, sha256 {manifest.sha256}"
    )
    if manifest.state:
        lines.append(f"  holds {describe_counts(manifest.state)}")
    if manifest.content_drop:
        dropped = describe_drop(manifest.content_drop)
        lines.append(f"  FLAGGED: content dropped against the snapshot before it ({dropped})")
    return "\n".join(lines)


def check_identity(
    manifest: Manifest | None, cluster: str, target_datacenter: str, on_purpose: bool
) -> list[str]:
    """Refuse a snapshot of another cluster or datacenter unless ``on_purpose``; warnings."""
    if manifest is None:
        return ["the snapshot has no manifest: its cluster and datacenter cannot be checked"]
    problems = []
    if manifest.cluster != cluster:
        problems.append(f"it was taken from cluster {manifest.cluster!r}, not {cluster!r}")
    if manifest.datacenter is not None and manifest.datacenter != target_datacenter:
        problems.append(
            f"it was taken in datacenter {manifest.datacenter!r}; the target Consul is in "
            f"{target_datacenter!r}"
        )
    warnings = []
    if manifest.datacenter is None:
        warnings.append("the snapshot's datacenter was not recorded: it cannot be checked")
    if problems and not on_purpose:
        raise IdentityMismatchError(
            "refusing to restore: " + "; ".join(problems) + " (--into-other-cluster restores "
            "it there all the same)"
        )
    return warnings + [f"restoring into another cluster on purpose: {p}" for p in problems]
