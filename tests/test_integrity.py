"""Nothing forged, nothing mixed up: every snapshot anchored from backup to restore.

A hostile reviewer's scenarios, each through the real handler, the CLI and the
re-verification against moto and the Consul double: an administrator replaces
a stored multipart snapshot with another self-consistent archive; Consul's
index header goes missing or lies; a lagging server's older state arrives last;
a restore aims at the wrong cluster or datacenter.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from dataclasses import replace
from typing import Any

import pytest

from consul_backup.cli import run
from handler import verify_handler
from snapshot_backup.keys import parse_key
from snapshot_backup.manifest import Manifest
from snapshot_backup.reverify import VerificationError
from snapshot_backup.s3_upload import MIN_PART_BYTES
from snapshot_backup.store import SnapshotStore
from testbed.archive_writer import RaftState, archive_bytes
from testbed.consul_double import ConsulDouble
from tests.conftest import PREFIX, back_up, cli, run_record

TOKEN = {"CONSUL_HTTP_TOKEN": "root-token"}
# Multipart: a snapshot S3 checks part by part, whose SHA-256 only the manifest holds.
BIG = RaftState(index=4242, term=9, size=MIN_PART_BYTES + 700_000, seed=11)


def manifest_of(s3: Any, bucket: str, key: str) -> Manifest:
    body = s3.get_object(Bucket=bucket, Key=key.removesuffix(".snap") + ".manifest.json")["Body"]
    return Manifest.from_json(body.read())


def forge(s3: Any, bucket: str, key: str) -> bytes:
    """What an administrator would put there: another whole archive, same index, same size."""
    genuine_size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    for seed in range(100, 200):
        forged = archive_bytes(
            RaftState(index=BIG.index, term=BIG.term, size=BIG.length, seed=seed)
        )
        if len(forged) == genuine_size:  # the listing's size cannot tell them apart
            break
    s3.put_object(Bucket=bucket, Key=key, Body=forged)
    return forged


def test_an_overwritten_multipart_snapshot_is_caught_by_every_reader(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    with ConsulDouble(state=BIG) as source:
        summary = back_up(source, bucket)
    assert summary["parts"] == 2
    manifest = manifest_of(s3, bucket, summary["key"])
    assert (manifest.sha256, manifest.size) == (summary["sha256"], summary["bytes"])
    forge(s3, bucket, summary["key"])
    caught = f"not the archive its manifest records (SHA-256 {summary['sha256']})"

    verify = cli("verify", "--bucket", bucket, "--cluster", "prod", "latest")
    assert verify.code == 1 and caught in verify.err
    assert f"--version-id {manifest.version_id}" in verify.err

    with ConsulDouble() as target:
        restore = cli("restore", "--bucket", bucket, "--cluster", "prod", "latest",
                      "--consul-addr", target.address, "--yes", env=TOKEN)  # fmt: skip
        assert restore.code == 1 and caught in restore.err
        # The forgery streamed, all but its tail: Consul never had a whole archive.
        assert target.restores == 0
        assert all(not received.complete for received in target.received)

    with pytest.raises(VerificationError, match=r"bucket s3://.*" + re.escape(caught)):
        verify_handler({}, None, env={"BACKUP_BUCKET": bucket, "CLUSTER_NAME": "prod"})

    # The genuine version is still there: the manifest names it, and it restores.
    with ConsulDouble() as target:
        genuine = cli("restore", "--bucket", bucket, "--cluster", "prod", "latest",
                      "--version-id", manifest.version_id or "", "--consul-addr", target.address,
                      "--yes", "--json", env=TOKEN)  # fmt: skip
        assert genuine.code == 0, genuine.err
        assert json.loads(genuine.out)["sha256"] == summary["sha256"]
        assert target.restores == 1 and target.state.index == BIG.index


def test_an_overwritten_replica_is_caught_by_the_re_verification(s3, bucket):
    with ConsulDouble(state=BIG) as source:
        summary = back_up(source, bucket)
    replica = f"{bucket}-replica"
    s3.create_bucket(Bucket=replica)
    for key in (summary["key"], summary["key"].removesuffix(".snap") + ".manifest.json"):
        s3.copy_object(Bucket=replica, Key=key, CopySource={"Bucket": bucket, "Key": key})
    env = {"BACKUP_BUCKET": bucket, "CLUSTER_NAME": "prod", "REPLICA_BUCKET": replica}
    assert verify_handler({}, None, env=env)["verified"]["replica"]["sha256_checked"]

    forge(s3, replica, summary["key"])
    with pytest.raises(VerificationError, match=f"replica s3://{replica}: .*{summary['sha256']}"):
        verify_handler({}, None, env=env)
    replica_verify = cli("verify", "--bucket", replica, "--cluster", "prod", "latest")
    assert replica_verify.code == 1 and summary["sha256"] in replica_verify.err


@pytest.mark.parametrize(
    ("header", "note"),
    [
        (None, "no X-Consul-Index header; meta.json says 777"),
        ("-5", "X-Consul-Index '-5', meta.json says 777"),
        ("soon", "X-Consul-Index 'soon', meta.json says 777"),
        ("999999", "X-Consul-Index '999999', meta.json says 777"),
    ],
    ids=["missing", "negative", "not a number", "disagreeing"],
)
def test_the_snapshot_is_named_by_meta_json_whatever_the_header_says(
    s3, bucket, capsys, header, note
):
    with ConsulDouble(state=RaftState(index=777, term=3), index_header=header) as consul:
        summary = back_up(consul, bucket)
    parsed = parse_key(summary["key"], PREFIX)
    assert parsed is not None and parsed[0].raft_index == 777
    record = run_record(capsys.readouterr().out)
    assert record["BackupSuccess"] == 1 and note in record["notes"]
    # Listed, found by latest, and proven against its manifest.
    latest = SnapshotStore(s3, bucket, PREFIX).latest("prod")
    assert latest is not None and latest.key == summary["key"]
    assert cli("verify", "--bucket", bucket, "--cluster", "prod", "latest").code == 0


def test_a_lagging_servers_older_state_never_becomes_latest(s3, bucket):
    with ConsulDouble(state=RaftState(index=1000, term=4, seed=1)) as leader:
        fresh = back_up(leader, bucket, KEEP_LATEST="1")
    time.sleep(1.1)  # keys are to the second: the stale one is taken later
    # A stale read from a follower behind by 600 entries.
    with ConsulDouble(state=RaftState(index=400, term=4, seed=2)) as follower:
        stale = back_up(follower, bucket, KEEP_LATEST="1", CONSUL_STALE="true")
    store = SnapshotStore(s3, bucket, PREFIX)
    latest = store.latest("prod")
    assert latest is not None and latest.key == fresh["key"]
    # The floor keeps both: the newest by index and the newest by time.
    assert {s.key for s in store.list("prod") if not s.retired} == {fresh["key"], stale["key"]}
    with ConsulDouble() as target:
        restored = cli("restore", "--bucket", bucket, "--cluster", "prod", "latest",
                       "--consul-addr", target.address, "--yes", env=TOKEN)  # fmt: skip
        assert restored.code == 0, restored.err
        assert target.state.index == 1000
        assert f"{stale['key']} was taken later with a lower index (400)" in restored.err


def test_restore_refuses_another_clusters_snapshot_unless_told(consul, s3, bucket):
    alpha = back_up(consul, bucket, cluster="alpha")
    # Alpha's snapshot put under beta's prefix, with a manifest for that key that
    # still says where it came from (copied by hand): its cluster is alpha's.
    beta_key = alpha["key"].replace("/alpha/", "/beta/").replace("alpha-", "beta-")
    s3.copy_object(Bucket=bucket, Key=beta_key, CopySource={"Bucket": bucket, "Key": alpha["key"]})
    recorded = replace(manifest_of(s3, bucket, alpha["key"]), key=beta_key)
    manifest_key = beta_key.removesuffix(".snap") + ".manifest.json"
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=recorded.to_json())
    with ConsulDouble() as target:
        args = ("restore", "--bucket", bucket, "--cluster", "beta", beta_key,
                "--consul-addr", target.address, "--yes")  # fmt: skip
        refused = cli(*args, env=TOKEN)
        assert refused.code == 9, refused.err
        assert "taken from cluster 'alpha', not 'beta'" in refused.err
        assert [r for r in target.requests if r.method == "PUT"] == []
        assert cli(*args, "--into-other-cluster", env=TOKEN).code == 0
        assert target.restores == 1


def test_restore_refuses_another_datacenter_unless_told(consul, s3, bucket):
    summary = back_up(consul, bucket)  # taken in dc1
    with ConsulDouble(datacenters=("dc2",)) as target:
        args = ("restore", "--bucket", bucket, "--cluster", "prod", "latest",
                "--consul-addr", target.address, "--yes")  # fmt: skip
        refused = cli(*args, env=TOKEN)
        assert refused.code == 9
        assert "taken in datacenter 'dc1'; the target Consul is in 'dc2'" in refused.err
        assert "--into-other-cluster" in refused.err
        assert [r for r in target.requests if r.method == "PUT"] == []
        on_purpose = cli(*args, "--into-other-cluster", env=TOKEN)
        assert on_purpose.code == 0, on_purpose.err
        assert "restoring into another cluster on purpose" in on_purpose.err
        assert target.restores == 1
    assert summary["datacenter"] == "dc1"


def test_restore_shows_what_it_is_about_to_restore(consul, s3, bucket):
    summary = back_up(consul, bucket)
    state = summary["state"]
    with ConsulDouble() as target:
        shown = cli("restore", "--bucket", bucket, "--cluster", "prod", "latest",
                    "--consul-addr", target.address, env=TOKEN, answer="no")  # fmt: skip
    assert shown.code == 5
    assert f"cluster prod, datacenter dc1, raft term {consul.state.term}" in shown.out
    assert f"raft index {consul.state.index}" in shown.out
    assert f"holds {state['kv_entries']} KV entries, {state['service_instances']}" in shown.out


def test_list_versions_shows_every_version_and_the_recorded_one(s3, bucket, consul):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    summary = back_up(consul, bucket)
    s3.put_object(Bucket=bucket, Key=summary["key"], Body=b"an overwrite")
    listed = cli("list", "--bucket", bucket, "--cluster", "prod", "--versions", "--json")
    rows = [json.loads(line) for line in listed.out.splitlines()]
    assert [(r["latest"], r["recorded_in_manifest"]) for r in rows] == [
        (True, False),
        (False, True),
    ]
    assert rows[1]["version_id"] == summary["version_id"]


def test_a_snapshot_replaced_while_the_operator_confirms_is_refused_before_any_byte(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    with ConsulDouble(state=BIG) as source:
        summary = back_up(source, bucket)
    forged = archive_bytes(RaftState(index=BIG.index, term=BIG.term, size=BIG.length, seed=7))

    def confirm_while_it_is_swapped(prompt: str) -> str:
        # Listed, shown and checked already; replaced while the operator reads it.
        s3.put_object(Bucket=bucket, Key=summary["key"], Body=forged + bytes(300 << 10))
        return "restore"

    out, err = io.StringIO(), io.StringIO()
    with ConsulDouble() as target:
        args = ["restore", "--bucket", bucket, "--cluster", "prod", "latest",
                "--consul-addr", target.address]  # fmt: skip
        code = run(args, env={**os.environ, **TOKEN}, out=out, err=err,
                   ask=confirm_while_it_is_swapped)  # fmt: skip
        assert code == 1, err.getvalue()
        assert f"(SHA-256 {summary['sha256']}): S3 serves another version" in err.getvalue()
        assert [r for r in target.requests if r.method == "PUT"] == []
        assert target.restores == 0


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        (b"not json", "is not JSON"),
        (b"x" * (5 << 20), "is larger than"),
        (None, "content_drop"),
    ],
    ids=["not json", "oversized", "a content drop of another shape"],
)
def test_a_damaged_manifest_is_named_by_every_command_never_a_crash(
    consul, s3, bucket, manifest, problem
):
    summary = back_up(consul, bucket)
    key = summary["key"].removesuffix(".snap") + ".manifest.json"
    if manifest is None:  # the right shape, but for one field
        document = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        document["content_drop"] = {"dropped": ["kv_entries"]}
        manifest = json.dumps(document).encode()
    s3.put_object(Bucket=bucket, Key=key, Body=manifest)
    listed = cli("list", "--bucket", bucket, "--json")
    assert listed.code == 0, listed.err
    row = json.loads(listed.out)
    assert "bad-manifest" in row["marks"] and problem in row["manifest_problem"]
    status = cli("status", "--bucket", bucket, "--cluster", "prod")
    assert status.code == 0 and "its manifest cannot be read" in status.out
    for command in (("verify",), ("inspect",), ("restore", "--consul-addr", consul.address)):
        done = cli(command[0], "--bucket", bucket, "--cluster", "prod", "latest", *command[1:],
                   "--yes" if command[0] == "restore" else "--json", env=TOKEN)  # fmt: skip
        assert done.code == 1 and problem in done.err, (command, done.err)
