"""The floor under expiry: the newest ``keepLatest`` snapshots of a cluster never expire.

S3 lifecycle cannot count objects, so the floor is a tag. A snapshot is stored
without it and lifecycle leaves it alone, however old it grows; after each
successful backup the function tags the snapshots that fell out of the newest
``keepLatest`` as retired, and only retired snapshots expire (at
``retentionDays`` from their creation). When backups fail, nothing is retired,
so the newest snapshots stay, current and under their own keys, for as long as
it takes.

The tag is the whole contract between the function (which sets it) and the
bucket's lifecycle rule and the function's IAM policy (which match it): both
sides import it from here.
"""

from __future__ import annotations

from typing import Any

from .store import SnapshotStore

RETIRED_TAG_KEY = "consul-backup-retired"
RETIRED_TAG_VALUE = "true"
# Set when a retired snapshot comes back under the floor (keepLatest raised, a
# hold): lifecycle's filter matches only RETIRED_TAG_VALUE.
KEPT_TAG_VALUE = "false"
DEFAULT_KEEP_LATEST = 7
MAX_KEEP_LATEST = 1000
# A snapshot is flagged when a count fell by more than this share of the count
# before it, and only where that count was at least CONTENT_DROP_MIN_COUNT (a
# handful of keys coming and going is no disaster).
DEFAULT_CONTENT_DROP_PERCENT = 50
CONTENT_DROP_MIN_COUNT = 20
# Each run retires the snapshots ranked keepLatest+1 to keepLatest+this: one
# falls out per successful run, and a run whose tagging failed is caught up by
# the next few.
RETIRE_WINDOW = 3


def retire_beyond_floor(store: SnapshotStore, cluster: str, keep_latest: int) -> list[str]:
    """Tag as retired the snapshots just beyond the newest ``keep_latest``; their keys."""
    newest = store.newest(cluster, keep_latest + RETIRE_WINDOW)
    retired = [snapshot.key for snapshot in newest[keep_latest:]]
    for key in retired:
        _tag_retired(store.s3, store.bucket, key)
    return retired


def _tag_retired(s3: Any, bucket: str, key: str) -> None:
    s3.put_object_tagging(
        Bucket=bucket,
        Key=key,
        Tagging={"TagSet": [{"Key": RETIRED_TAG_KEY, "Value": RETIRED_TAG_VALUE}]},
    )
