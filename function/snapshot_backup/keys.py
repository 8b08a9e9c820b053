"""Where snapshots live in the bucket: the key layout, written and read in this one module.

``<prefix><cluster>/<yyyy>/<mm>/<dd>/<cluster>-<yyyymmddThhmmssZ>-<raft index><suffix>``:
a listing of one day is one prefix, and every object that belongs to a snapshot
sits beside it under the same stem, told apart by its suffix:

- ``.snap``: the archive itself;
- ``.manifest.json``: its manifest, written once after the archive (``manifest``);
- ``.hold``: the floor holds it (a later snapshot lost content; ``retention``);
- ``.retired``: the floor let it go: it and its manifest carry the tag lifecycle expires.

The raft index is ``meta.json``'s ``Index``: the archive's own identity, not
the ``X-Consul-Index`` header (which a proxy may drop and nothing checks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

DEFAULT_PREFIX = "consul-snapshots/"
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
_STAMP = "%Y%m%dT%H%M%SZ"
_DATE_FOLDERS = "%Y/%m/%d"


class ClusterNameError(ValueError):
    """A cluster name that keys, AWS names and metrics cannot carry."""


def check_cluster_name(name: object) -> str:
    """``name`` if it is a valid cluster name; otherwise ``ClusterNameError`` saying the rule.

    The one judge of cluster names: the component, the stack config, the
    function's settings, the re-verification and the CLI all ask it.
    """
    if not isinstance(name, str) or not CLUSTER_NAME.fullmatch(name):
        raise ClusterNameError(f"{name!r} is not a valid cluster name ({CLUSTER_NAME_RULE})")
    return name


class ObjectKind(StrEnum):
    """What an object beside a snapshot is, by its key's suffix."""

    SNAPSHOT = ".snap"
    MANIFEST = ".manifest.json"
    HOLD = ".hold"
    RETIRED = ".retired"


_KEY_PATTERN = re.compile(
    r"(?P<cluster>[^/]+)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/(?P=cluster)-"
    r"(?P<stamp>(?P=y)(?P=m)(?P=d)T\d{6}Z)-(?P<index>\d{1,20})"
    r"(?P<suffix>" + "|".join(re.escape(kind.value) for kind in ObjectKind) + r")"
)


def normalize_prefix(prefix: str | None) -> str:
    """A key prefix is empty or ends in exactly one ``/`` and never starts with one."""
    prefix = (DEFAULT_PREFIX if prefix is None else prefix).strip().strip("/")
    return f"{prefix}/" if prefix else ""


def cluster_prefix(prefix: str | None, cluster: str) -> str:
    """Where one cluster's snapshots live: the function writes there and nowhere else."""
    return f"{normalize_prefix(prefix)}{cluster}/"


@dataclass(frozen=True)
class SnapshotKey:
    """A snapshot's name in the bucket: prefix, cluster, when it was taken, its raft index."""

    prefix: str
    cluster: str
    taken_at: datetime
    raft_index: int

    @classmethod
    def of(
        cls, prefix: str | None, cluster: str, taken_at: datetime, raft_index: int
    ) -> SnapshotKey:
        """The name of a snapshot taken now (seconds: the key's resolution)."""
        taken_at = taken_at.astimezone(UTC).replace(microsecond=0)
        return cls(normalize_prefix(prefix), cluster, taken_at, raft_index)

    @property
    def stem(self) -> str:
        """The key without its suffix: what every object of this snapshot starts with."""
        return (
            f"{cluster_prefix(self.prefix, self.cluster)}{self.taken_at:{_DATE_FOLDERS}}/"
            f"{self.cluster}-{self.taken_at:{_STAMP}}-{self.raft_index}"
        )

    def key_of(self, kind: ObjectKind) -> str:
        return self.stem + kind.value

    @property
    def key(self) -> str:
        """The archive's key."""
        return self.key_of(ObjectKind.SNAPSHOT)

    @property
    def manifest_key(self) -> str:
        return self.key_of(ObjectKind.MANIFEST)

    @property
    def hold_key(self) -> str:
        return self.key_of(ObjectKind.HOLD)

    @property
    def retired_key(self) -> str:
        return self.key_of(ObjectKind.RETIRED)


def parse_key(key: str, prefix: str | None) -> tuple[SnapshotKey, ObjectKind] | None:
    """The snapshot an object belongs to, and what it is; None for any other object."""
    prefix = normalize_prefix(prefix)
    if not key.startswith(prefix):
        return None
    match = _KEY_PATTERN.fullmatch(key[len(prefix) :])
    if match is None:
        return None
    try:
        taken_at = datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=UTC)
    except ValueError:  # digits in place, but no such moment (month 13)
        return None
    name = SnapshotKey(prefix, match["cluster"], taken_at, int(match["index"]))
    return name, ObjectKind(match["suffix"])
