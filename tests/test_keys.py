"""The key layout, the one rule for cluster names, and reading keys back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from snapshot_backup.keys import (
    CLUSTER_NAME,
    DEFAULT_PREFIX,
    ObjectKind,
    SnapshotKey,
    cluster_prefix,
    normalize_prefix,
    parse_key,
)

WHEN = datetime(2026, 11, 29, 4, 5, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    ("prefix", "normalized"),
    [(None, DEFAULT_PREFIX), ("backups", "backups/"), ("/a/b/", "a/b/"), ("", ""), ("  x  ", "x/")],
)
def test_a_prefix_is_empty_or_ends_in_one_slash(prefix, normalized):
    assert normalize_prefix(prefix) == normalized
    assert cluster_prefix(prefix, "prod") == f"{normalized}prod/"


def test_keys_sort_by_time_within_a_cluster_and_read_back():
    key = SnapshotKey.of("consul-snapshots/", "prod", WHEN, 4711).key
    assert key == "consul-snapshots/prod/2026/11/29/prod-20261129T040506Z-4711.snap"
    later = SnapshotKey.of("consul-snapshots/", "prod", WHEN + timedelta(seconds=1), 1).key
    assert later > key
    parsed = parse_key(key, "consul-snapshots")
    assert parsed is not None and parsed[1] is ObjectKind.SNAPSHOT
    assert (parsed[0].cluster, parsed[0].taken_at, parsed[0].raft_index) == ("prod", WHEN, 4711)


def test_times_are_written_in_utc():
    local = WHEN.astimezone(timezone(timedelta(hours=5)))
    assert SnapshotKey.of("", "prod", local, 1).key == SnapshotKey.of("", "prod", WHEN, 1).key


@pytest.mark.parametrize(
    "key",
    [
        "other/prod/2026/11/29/prod-20261129T040506Z-1.snap",  # another prefix
        "consul-snapshots/prod/2026/11/29/stage-20261129T040506Z-1.snap",  # another cluster
        "consul-snapshots/prod/2026/11/29/notes.txt",
    ],
)
def test_keys_this_tool_did_not_write_are_not_snapshots(key):
    assert parse_key(key, "consul-snapshots/") is None


@pytest.mark.parametrize("name", ["a", "prod", "eu-west-1", "a" * 32])
def test_cluster_names_that_fit_every_derived_aws_name(name):
    assert CLUSTER_NAME.fullmatch(name)


@pytest.mark.parametrize("name", ["", "Prod", "1prod", "prod-", "pro_d", "a" * 33])
def test_cluster_names_refused(name):
    assert not CLUSTER_NAME.fullmatch(name)
