"""Know what every snapshot holds, and hold the last good state when the cluster is damaged.

Through the real handler and CLI against moto and the Consul double, whose
state.bin is made of real records in Consul's encoding (``testbed.fsm_writer``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from snapshot_backup.retention import RETIRED_TAG_KEY
from snapshot_backup.store import SnapshotStore
from testbed.archive_writer import RaftState, write_archive
from testbed.consul_double import ConsulDouble
from testbed.fsm_writer import ConsulState
from tests.archives import Snapshot
from tests.conftest import PREFIX, back_up, cli, run_record, stored_archives
from tests.test_verify import REFUSED

HEALTHY = ConsulState(nodes=4, services_per_node=3, checks_per_node=2, kv_entries=112, seed=3)
# `consul kv delete -recurse` of most of the tree: 112 keys down to 10.
DAMAGED = HEALTHY.replace(kv_entries=10)


def tag_of(s3: Any, bucket: str, key: str) -> str | None:
    tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return next((t["Value"] for t in tags if t["Key"] == RETIRED_TAG_KEY), None)


def test_what_a_backup_stores_says_what_the_state_holds(s3, bucket, capsys):
    with ConsulDouble(state=RaftState(index=900, term=3, state=HEALTHY)) as consul:
        summary = back_up(consul, bucket)
    expected = HEALTHY.expected
    # The run's line keeps the counts; the manifest beside the snapshot has it all.
    manifest = SnapshotStore(s3, bucket, PREFIX).read_manifest(
        SnapshotStore(s3, bucket, PREFIX).find("prod", summary["key"])
    )
    assert manifest is not None and manifest.state is not None
    state = manifest.state
    assert summary["state"]["kv_entries"] == state["kv_entries"]
    catalog = expected["catalog"]
    assert (state["nodes"], state["service_instances"], state["checks"]) == (
        catalog["nodes"], catalog["services"], catalog["checks"],
    )  # fmt: skip
    assert {name: usage["count"] for name, usage in state["records"].items()} == (
        expected["records"]
    )
    assert {p: u["count"] for p, u in state["kv_prefixes"].items()} == (
        expected["kv_by_prefix_depth2"]
    )
    assert state["last_index"] == expected["last_index"]
    record = run_record(capsys.readouterr().out)
    assert (record["KVEntries"], record["ServiceInstances"], record["Nodes"]) == (
        112, catalog["services"], catalog["nodes"],
    )  # fmt: skip
    assert record["ACLTokens"] == state["acl_tokens"] and record["ContentDrop"] == 0
    assert record["StateBytes"] == HEALTHY.length


@pytest.mark.parametrize(
    "case",
    [
        "an empty state.bin",
        "a state.bin with a Deregister record",
        "a state.bin cut inside a record",
        "no state.bin, listed with the hash of nothing",
    ],
)
def test_a_state_consul_cannot_restore_is_never_stored(s3, bucket, capsys, case):
    data, message = REFUSED[case]
    with ConsulDouble(archive_body=data) as consul, pytest.raises(Exception, match=message):
        back_up(consul, bucket)
    assert stored_archives(s3, bucket) == []
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert message in run_record(capsys.readouterr().out)["error"]


def test_a_deleted_kv_tree_is_flagged_and_the_last_good_snapshot_held(s3, bucket, capsys):
    with ConsulDouble(state=RaftState(index=900, term=3, state=HEALTHY)) as consul:
        good = back_up(consul, bucket, KEEP_LATEST="1")
        consul.state = RaftState(index=950, term=3, state=DAMAGED)
        damaged = back_up(consul, bucket, KEEP_LATEST="1")
    assert damaged["content_drop"]["dropped"] == {"kv_entries": {"from": 112, "to": 10}}
    assert damaged["held"] == good["key"]
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records[-1]["ContentDrop"] == 1 and records[-1]["BackupSuccess"] == 1
    # With keepLatest 1 the good snapshot would be retired now; it is held instead.
    assert tag_of(s3, bucket, good["key"]) is None
    listed = cli("list", "--bucket", bucket, "--cluster", "prod", "--json")
    marks = {json.loads(line)["key"]: json.loads(line)["marks"] for line in listed.out.splitlines()}
    assert marks == {damaged["key"]: ["content-drop"], good["key"]: ["held"]}
    status = cli("status", "--bucket", bucket, "--cluster", "prod")
    assert "FLAGGED: content dropped (kv_entries 112 -> 10)" in status.out
    assert f"held: {good['key']}" in status.out

    # Once released, the floor lets it go at the next backup.
    assert cli("release", "--bucket", bucket, "--cluster", "prod", good["key"]).code == 0
    with ConsulDouble(state=RaftState(index=960, term=3, state=DAMAGED)) as consul:
        after = back_up(consul, bucket, KEEP_LATEST="1")
    assert "content_drop" not in after  # compared with the damaged one: nothing more lost
    assert tag_of(s3, bucket, good["key"]) == "true"
    assert not [s for s in SnapshotStore(s3, bucket, PREFIX).list("prod") if s.held]


def test_a_small_cluster_losing_a_few_keys_is_not_flagged(s3, bucket):
    small = ConsulState(kv_entries=15, seed=1)
    with ConsulDouble(state=RaftState(index=100, term=1, state=small)) as consul:
        back_up(consul, bucket)
        consul.state = RaftState(index=101, term=1, state=small.replace(kv_entries=0))
        assert "content_drop" not in back_up(consul, bucket)  # 15 keys: too few to judge


def inspect_json(bucket: str, *extra: str) -> dict[str, Any]:
    result = cli("inspect", "--bucket", bucket, "--cluster", "prod", "latest", "--json", *extra)
    assert result.code == 0, result.err
    found: dict[str, Any] = json.loads(result.out)
    return found


def test_inspect_reads_the_manifest_and_prints_consuls_table(consul, s3, bucket):
    consul.state = RaftState(index=900, term=3, state=HEALTHY)
    summary = back_up(consul, bucket)
    table = cli("inspect", "--bucket", bucket, "--cluster", "prod", "latest", "--kv-details")
    assert table.code == 0, table.err
    assert "(from its manifest)" in table.out
    assert f" {'KVS':<28} {112:>10}" in table.out
    assert "config/app-0" in table.out
    detailed = inspect_json(bucket, "--kv-details")
    assert detailed["records"]["KVS"]["count"] == 112
    assert detailed["records"]["Register"] == summary["state"]["records"]["Register"]
    prefixes = {p: u["count"] for p, u in detailed["kv_prefixes"].items()}
    assert prefixes == HEALTHY.expected["kv_by_prefix_depth2"]
    # Without --kv-details, no prefixes; another depth reads the archive itself.
    assert "kv_prefixes" not in inspect_json(bucket)
    deep = inspect_json(bucket, "--kv-details", "--kv-depth", "1")
    assert deep["source"] == "archive"
    assert set(deep["kv_prefixes"]) == {"config", "locks", "service", "vault"}


def test_inspect_reads_a_local_file_as_consul_snapshot_save_writes_it(tmp_path):
    path = tmp_path / "backup.snap"
    with path.open("wb") as out:
        write_archive(out, RaftState(index=900, term=3, state=HEALTHY))
    result = cli("inspect", "--file", str(path), "--json", "--kv-filter", "vault/")
    assert result.code == 0, result.err
    found = json.loads(result.out)
    assert found["source"] == "file" and found["raft_index"] == 900
    assert found["summary"]["kv_entries"] == 112
    broken = tmp_path / "broken.snap"
    broken.write_bytes(Snapshot(state=b"").archive())
    refused = cli("inspect", "--file", str(broken))
    assert refused.code == 1 and "failed to restore snapshot: EOF" in refused.err


def test_diff_names_keys_services_and_nodes_never_values(consul, s3, bucket):
    consul.state = RaftState(index=900, term=3, state=HEALTHY)
    before = back_up(consul, bucket)
    fewer = HEALTHY.without_prefix("config/").replace(nodes=3)
    consul.state = RaftState(index=950, term=3, state=fewer)
    after = back_up(consul, bucket)
    result = cli("diff", "--bucket", bucket, "--cluster", "prod", before["key"], after["key"],
                 "--json")  # fmt: skip
    assert result.code == 0, result.err
    report = json.loads(result.out)
    gone = sum(
        n for p, n in HEALTHY.expected["kv_by_prefix_depth2"].items() if p.startswith("config/")
    )
    assert report["records"]["KVS"] == {"a": 112, "b": 112 - gone, "change": -gone}
    removed = [entry["key"] for entry in report["kv"]["removed"]]
    assert len(removed) == gone and all(key.startswith("config/") for key in removed)
    assert not report["kv"]["added"] and not report["kv"]["changed"]
    assert report["nodes"]["removed"] and not report["nodes"]["added"]
    assert len(report["services"]["removed"]) == HEALTHY.services_per_node
    text = cli("diff", "--bucket", bucket, "--cluster", "prod", before["key"], after["key"])
    assert f"KV: 0 added, {gone} removed, 0 changed" in text.out
    # Values hold secrets: not one byte of one is printed.
    value = HEALTHY.read()[-300:-200]
    assert value.hex() not in text.out and value.decode("latin-1") not in text.out


def test_hold_by_hand_and_release(consul, s3, bucket):
    kept = back_up(consul, bucket, KEEP_LATEST="1")
    assert cli("hold", "--bucket", bucket, "--cluster", "prod", kept["key"]).code == 0
    consul.state = RaftState(index=consul.state.index + 1, term=2, seed=1)
    back_up(consul, bucket, KEEP_LATEST="1")
    assert tag_of(s3, bucket, kept["key"]) is None  # beyond keepLatest, and kept
    assert cli("release", "--bucket", bucket, "--cluster", "prod", kept["key"]).code == 0
    consul.state = RaftState(index=consul.state.index + 1, term=2, seed=2)
    back_up(consul, bucket, KEEP_LATEST="1")
    assert tag_of(s3, bucket, kept["key"]) == "true"


def test_diff_takes_local_files_in_the_place_they_are_named(consul, s3, bucket, tmp_path):
    consul.state = RaftState(index=900, term=3, state=HEALTHY)
    back_up(consul, bucket)
    older = tmp_path / "older.snap"
    with older.open("wb") as out:
        write_archive(out, RaftState(index=800, term=3, state=HEALTHY.replace(kv_entries=100)))
    result = cli("diff", "--bucket", bucket, "--cluster", "prod", "--older-file", str(older),
                 "latest", "--json")  # fmt: skip
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert (report["a"]["raft_index"], report["b"]["raft_index"]) == (800, 900)
    assert report["records"]["KVS"]["change"] == 12


@pytest.mark.parametrize(
    "argv",
    [
        ("inspect", "latest", "--kv-depth", "-3"),
        ("diff", "latest", "--limit", "-1"),
        ("diff", "latest"),
    ],
)
def test_wrong_inspect_and_diff_flags_are_usage_errors(consul, s3, bucket, argv):
    back_up(consul, bucket)
    result = cli(argv[0], "--bucket", bucket, "--cluster", "prod", *argv[1:])
    assert result.code == 2, result.err
