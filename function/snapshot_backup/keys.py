"""Where snapshots live in the bucket.

``<prefix><cluster>/<yyyy>/<mm>/<dd>/<cluster>-<yyyymmddThhmmssZ>-<raft index>.snap``:
keys sort by time within a cluster, and a listing of one day is one prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

DEFAULT_PREFIX = "consul-snapshots/"
SNAPSHOT_SUFFIX = ".snap"
# A cluster's name is part of every key (and of the AWS names the component
# derives from it): lowercase letters, digits and hyphens, starting with a
# letter; 32 characters keep bucket names (63) and role and function names (64)
# within AWS's limits.
MAX_CLUSTER_NAME = 32
CLUSTER_NAME = re.compile(rf"[a-z]([a-z0-9-]{{0,{MAX_CLUSTER_NAME - 2}}}[a-z0-9])?")
CLUSTER_NAME_RULE = (
    "lowercase letters, digits and hyphens, starting with a letter, not ending in a "
    f"hyphen, at most {MAX_CLUSTER_NAME} characters"
)
_KEY_PATTERN = re.compile(
    r"(?P<cluster>[^/]+)/\d{4}/\d{2}/\d{2}/(?P=cluster)-(?P<stamp>\d{8}T\d{6}Z)-(?P<index>\d+)\.snap$"
)


def normalize_prefix(prefix: str | None) -> str:
    """A key prefix is empty or ends in exactly one ``/`` and never starts with one."""
    prefix = (DEFAULT_PREFIX if prefix is None else prefix).strip().strip("/")
    return f"{prefix}/" if prefix else ""


def cluster_prefix(prefix: str | None, cluster: str) -> str:
    """Where one cluster's snapshots live: the function writes there and nowhere else."""
    return f"{normalize_prefix(prefix)}{cluster}/"


def snapshot_key(prefix: str, cluster: str, taken_at: datetime, raft_index: int) -> str:
    taken_at = taken_at.astimezone(UTC)
    return (
        f"{cluster_prefix(prefix, cluster)}{taken_at:%Y/%m/%d}/"
        f"{cluster}-{taken_at:%Y%m%dT%H%M%SZ}-{raft_index}{SNAPSHOT_SUFFIX}"
    )


@dataclass(frozen=True)
class SnapshotKey:
    key: str
    cluster: str
    taken_at: datetime
    raft_index: int


def parse_snapshot_key(key: str, prefix: str) -> SnapshotKey | None:
    """The parts of a key this tool wrote, or None for any other object."""
    prefix = normalize_prefix(prefix)
    if not key.startswith(prefix):
        return None
    match = _KEY_PATTERN.fullmatch(key[len(prefix) :])
    if match is None:
        return None
    taken_at = datetime.strptime(match["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return SnapshotKey(key, match["cluster"], taken_at, int(match["index"]))
