"""Finding stored snapshots: one listing shows each snapshot and what lies beside it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from snapshot_backup.keys import SnapshotKey
from snapshot_backup.manifest import (
    Manifest,
    ManifestError,
    ManifestMismatchError,
    check_against,
)
from snapshot_backup.state_bin import summarize_state
from snapshot_backup.store import SnapshotNotFoundError, SnapshotStore
from tests.archives import consul_state

PREFIX = "consul-snapshots/"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def put(s3: Any, bucket: str, key: str, body: bytes = b"archive") -> str:
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return key


def name(cluster: str, when: datetime, index: int) -> SnapshotKey:
    return SnapshotKey.of(PREFIX, cluster, when, index)


def put_snapshot(s3: Any, bucket: str, cluster: str, when: datetime, index: int) -> str:
    return put(s3, bucket, name(cluster, when, index).key)


def manifest_for(snapshot: SnapshotKey, **changes: Any) -> Manifest:
    values: dict[str, Any] = {
        "cluster": snapshot.cluster,
        "key": snapshot.key,
        "version_id": "v1",
        "size": 7,
        "sha256": "ab" * 32,
        "crc32": None,
        "raft_index": snapshot.raft_index,
        "raft_term": 2,
        "raft_id": f"2-{snapshot.raft_index}-1",
        "datacenter": "dc1",
        "consul_index": snapshot.raft_index,
        "known_leader": True,
        "last_contact_ms": 0,
        "taken_at": snapshot.taken_at,
        "duration_s": 1.5,
    }
    return Manifest(**(values | changes))


def test_snapshots_rank_by_raft_index_then_time(s3, bucket):
    # A stale read from a lagging server answered after a fresher one.
    fresh = put_snapshot(s3, bucket, "prod", T0, 1000)
    stale = put_snapshot(s3, bucket, "prod", T0 + timedelta(hours=1), 400)
    tie_older = put_snapshot(s3, bucket, "prod", T0 - timedelta(days=3), 1000)
    store = SnapshotStore(s3, bucket, PREFIX)
    assert [s.key for s in store.list("prod")] == [fresh, tie_older, stale]
    latest = store.latest("prod")
    assert latest is not None and latest.key == fresh


def test_one_listing_shows_manifests_holds_and_retired_markers(s3, bucket):
    held = name("prod", T0, 10)
    for suffix_key in (held.key, held.manifest_key, held.hold_key):
        put(s3, bucket, suffix_key)
    retired = name("prod", T0 - timedelta(days=1), 9)
    for suffix_key in (retired.key, retired.retired_key):
        put(s3, bucket, suffix_key)
    orphan_manifest = name("prod", T0 - timedelta(days=2), 8).manifest_key
    put(s3, bucket, orphan_manifest)  # its archive expired first: not a snapshot
    found = {s.raft_index: s for s in SnapshotStore(s3, bucket, PREFIX).list("prod")}
    assert set(found) == {10, 9}
    assert (found[10].has_manifest, found[10].held, found[10].retired) == (True, True, False)
    assert (found[9].has_manifest, found[9].held, found[9].retired) == (False, False, True)


def test_other_objects_and_clusters_are_not_snapshots(s3, bucket):
    mine = put_snapshot(s3, bucket, "prod", T0, 50)
    put(s3, bucket, f"{PREFIX}prod/2026/04/01/notes.txt")
    put(s3, bucket, f"{PREFIX}prod/archive/2099/01/01/prod-20990101T000000Z-1.snap")
    put(s3, bucket, f"{PREFIX}prod/2026/13/01/prod-20261301T000000Z-1.snap")  # no such month
    put_snapshot(s3, bucket, "prod-eu", T0 + timedelta(days=1), 80)
    store = SnapshotStore(s3, bucket, PREFIX)
    assert [s.key for s in store.list("prod")] == [mine]
    assert {s.cluster for s in store.list()} == {"prod", "prod-eu"}
    assert store.latest("nowhere") is None


def test_resolve_finds_latest_or_a_key_of_the_cluster_only(s3, bucket):
    older = put_snapshot(s3, bucket, "prod", T0, 5)
    newest = put_snapshot(s3, bucket, "prod", T0 + timedelta(hours=1), 6)
    other = put_snapshot(s3, bucket, "stage", T0, 7)
    store = SnapshotStore(s3, bucket, PREFIX)
    assert store.find("prod", "latest").key == newest
    assert store.find("prod", older).raft_index == 5
    with pytest.raises(SnapshotNotFoundError, match="not a snapshot key under cluster 'prod'"):
        store.find("prod", other)
    with pytest.raises(SnapshotNotFoundError, match="does not exist"):
        store.find("prod", name("prod", T0, 4).key)
    with pytest.raises(SnapshotNotFoundError, match="no snapshot of cluster 'qa'"):
        store.find("qa", "latest")


def test_a_manifest_is_written_once_and_read_back(s3, bucket):
    snapshot = name("prod", T0, 42)
    put(s3, bucket, snapshot.key)
    store = SnapshotStore(s3, bucket, PREFIX)
    assert store.read_manifest(snapshot) is None
    state = summarize_state(consul_state()).to_dict()
    manifest = manifest_for(snapshot, state=state, content_drop=None)
    store.write_manifest(snapshot, manifest)
    assert store.read_manifest(snapshot) == manifest
    with pytest.raises(Exception, match="PreconditionFailed"):
        store.write_manifest(snapshot, manifest_for(snapshot, sha256="cd" * 32))
    assert store.read_manifest(snapshot) == manifest


def test_a_manifest_copied_beside_another_snapshot_is_refused(s3, bucket):
    genuine, other = name("prod", T0, 42), name("prod", T0, 43)
    put(s3, bucket, other.key)
    put(s3, bucket, other.manifest_key, manifest_for(genuine).to_json())
    with pytest.raises(ManifestError, match=r"describes .*-42\.snap, not .*-43\.snap"):
        SnapshotStore(s3, bucket, PREFIX).read_manifest(other)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"not json", "is not JSON"),
        (b"[]", "is not a JSON object"),
        (b'{"format": 2}', "has format 2"),
        (b'{"format": 1}', "lacks 'cluster'"),
    ],
)
def test_a_manifest_this_tool_did_not_write_is_refused(raw, problem):
    with pytest.raises(ManifestError, match=problem):
        Manifest.from_json(raw)


def test_a_manifest_with_a_wrong_type_or_nan_is_refused():
    good = manifest_for(name("prod", T0, 1)).to_json()
    with pytest.raises(ManifestError, match="size '7' is not a int"):
        Manifest.from_json(good.replace(b'"size": 7', b'"size": "7"'))
    with pytest.raises(ManifestError, match="NaN"):
        Manifest.from_json(good.replace(b'"duration_s": 1.5', b'"duration_s": NaN'))
    with pytest.raises(ManifestError, match="known_leader 1 is not a bool"):
        Manifest.from_json(good.replace(b'"known_leader": true', b'"known_leader": 1'))


def test_the_archive_read_is_judged_by_the_manifests_sha256():
    snapshot = name("prod", T0, 42)
    manifest = manifest_for(snapshot)
    check_against(
        manifest, where="x", sha256=manifest.sha256, size=7, raft_index=42, version_id="v9"
    )  # the same bytes under another version id (a copy): fine
    with pytest.raises(ManifestMismatchError) as raised:
        check_against(manifest, where="x", sha256="ef" * 32, size=7, raft_index=42, version_id="v2")
    message = str(raised.value)
    assert f"not the archive its manifest records (SHA-256 {manifest.sha256})" in message
    assert f"its SHA-256 is {'ef' * 32}" in message
    assert "this is version v2, the manifest records version v1 (--version-id v1" in message


def test_versions_of_a_clusters_archives_newest_first(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    snapshot = name("prod", T0, 42)
    first = s3.put_object(Bucket=bucket, Key=snapshot.key, Body=b"one")["VersionId"]
    second = s3.put_object(Bucket=bucket, Key=snapshot.key, Body=b"two!")["VersionId"]
    put(s3, bucket, snapshot.manifest_key)  # not an archive: not listed
    versions = SnapshotStore(s3, bucket, PREFIX).versions("prod")
    assert [(v.version_id, v.latest, v.size) for v in versions] == [
        (second, True, 4),
        (first, False, 3),
    ]
