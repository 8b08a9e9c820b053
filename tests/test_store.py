"""Finding stored snapshots: `latest` walks the date folders, `list` sees them all."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from snapshot_backup.keys import snapshot_key
from snapshot_backup.store import SnapshotStore

PREFIX = "consul-snapshots/"


def put(s3: Any, bucket: str, key: str) -> str:
    s3.put_object(Bucket=bucket, Key=key, Body=b"archive")
    return key


def put_snapshot(s3: Any, bucket: str, cluster: str, when: datetime, index: int) -> str:
    return put(s3, bucket, snapshot_key(PREFIX, cluster, when, index))


def count_listings(s3: Any) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    s3.meta.events.register(
        "before-parameter-build.s3.ListObjectsV2", lambda params, **_: calls.append(dict(params))
    )
    return calls


def test_latest_walks_back_from_the_newest_date_folder(s3, bucket):
    # Two years of daily snapshots would be ~730 keys to list; the walk reads
    # one folder per level.
    for year in (2024, 2025):
        for month in (1, 6, 12):
            for day in (1, 15, 28):
                for hour in (0, 12):
                    when = datetime(year, month, day, hour, tzinfo=UTC)
                    put_snapshot(s3, bucket, "prod", when, year * 10_000 + month * 100 + day)
    newest = put_snapshot(s3, bucket, "prod", datetime(2025, 12, 28, 23, 59, tzinfo=UTC), 1)
    store = SnapshotStore(s3, bucket, PREFIX)
    listings = count_listings(s3)

    found = store.latest("prod")

    assert found is not None and found.key == newest
    assert len(listings) == 4  # years, months of 2025, days of 2025/12, 2025/12/28
    assert sum("Delimiter" not in call for call in listings) == 1  # only the one day in full


def test_latest_skips_folders_that_hold_no_snapshot(s3, bucket):
    older = put_snapshot(s3, bucket, "prod", datetime(2026, 3, 9, 8, tzinfo=UTC), 50)
    # Newer folders, but nothing in them this tool wrote.
    put(s3, bucket, f"{PREFIX}prod/2026/04/01/notes.txt")
    put(s3, bucket, f"{PREFIX}prod/2027/README")
    put(s3, bucket, f"{PREFIX}prod/archive/2099/01/01/prod-20990101T000000Z-1.snap")
    # Another cluster's newer snapshot, and a cluster whose name starts the same.
    put_snapshot(s3, bucket, "stage", datetime(2026, 5, 1, tzinfo=UTC), 70)
    put_snapshot(s3, bucket, "prod-eu", datetime(2026, 5, 1, tzinfo=UTC), 80)

    found = SnapshotStore(s3, bucket, PREFIX).latest("prod")

    assert found is not None and found.key == older
    assert (found.cluster, found.raft_index) == ("prod", 50)


def test_latest_breaks_a_tie_within_a_second_by_raft_index(s3, bucket):
    when = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)
    put_snapshot(s3, bucket, "prod", when, 99)
    higher = put_snapshot(s3, bucket, "prod", when, 100)
    found = SnapshotStore(s3, bucket, PREFIX).latest("prod")
    assert found is not None and found.key == higher


def test_latest_of_a_cluster_without_snapshots_is_none(s3, bucket):
    put(s3, bucket, f"{PREFIX}prod/2026/01/01/notes.txt")
    assert SnapshotStore(s3, bucket, PREFIX).latest("prod") is None
    assert SnapshotStore(s3, bucket, PREFIX).latest("nowhere") is None


def test_latest_agrees_with_the_full_listing(s3, bucket):
    for day, hour, index in [(1, 3, 10), (2, 1, 11), (2, 23, 12), (3, 0, 9)]:
        put_snapshot(s3, bucket, "prod", datetime(2026, 2, day, hour, tzinfo=UTC), index)
    store = SnapshotStore(s3, bucket, PREFIX)
    newest = store.latest("prod")
    assert newest is not None and newest == store.list("prod")[0]
