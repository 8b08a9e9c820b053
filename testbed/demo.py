"""`make demo`: the whole product, on this machine, with nothing but Python.

Starts moto (S3, Secrets Manager) and a Consul double per cluster on 127.0.0.1
(or uses the real Consul at CONSUL_HTTP_ADDR), shows what `pulumi up` would
create for Pulumi.dev.yaml (the program run under mocks), runs a backup per
cluster through the real handler with the environment the component gives the
function, lists and verifies with the CLI, restores the latest snapshot into
Consul after a simulated loss, and shows that what came back is what was backed
up. Every server it started is stopped before it exits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from snapshot_backup.backup import handler
from snapshot_backup.consul import ConsulClient, ConsulSettings
from snapshot_backup.reverify import verify_handler
from snapshot_backup.verify import verify_archive
from testbed.archive_writer import RaftState
from testbed.consul_double import ConsulDouble
from testbed.fsm_writer import ConsulState
from testbed.moto_server import aws_env, moto_server
from testbed.pulumi_mocks import ProgramRun, Resource, run_program
from testbed.stack_file import EXAMPLE_PASSPHRASE, load_stack_config

REPO = Path(__file__).resolve().parent.parent
STACK_FILE = REPO / "Pulumi.dev.yaml"
CLI = Path(sys.executable).parent / "consul-backup"


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def short_type(typ: str) -> str:
    return typ.split(":")[-1]


def describe(resource: Resource) -> str:
    inputs = resource.inputs
    details = {
        "Function": lambda: (
            f"{inputs.get('runtime')} {inputs.get('architectures')} "
            f"{inputs.get('memorySize'):.0f} MB, {inputs.get('timeout'):.0f} s"
        ),
        "EventRule": lambda: str(inputs.get("scheduleExpression")),
        "LogGroup": lambda: f"retention {inputs.get('retentionInDays'):.0f} days",
        "MetricAlarm": lambda: (
            f"{inputs.get('namespace')}/{inputs.get('metricName')} "
            f"{inputs.get('comparisonOperator')} {inputs.get('threshold')}"
        ),
        "BucketLifecycleConfiguration": lambda: "; ".join(
            f"{r['filter']['and']['prefix']} retired expire after {r['expiration']['days']:.0f} d"
            for r in inputs.get("rules", [])
            if "days" in r.get("expiration", {})
        ),
        "BucketServerSideEncryptionConfiguration": lambda: inputs["rules"][0][
            "applyServerSideEncryptionByDefault"
        ]["sseAlgorithm"],
        "SecretVersion": lambda: "secret string: [secret]",
        "Permission": lambda: f"{inputs.get('principal')} may invoke",
    }
    explain = details.get(short_type(resource.type))
    return explain() if explain else ""


def print_plan(run: ProgramRun) -> None:
    components = run.of_type("consul-backup:index:ConsulSnapshotBackup")
    for component in sorted(components, key=lambda r: r.name):
        children = sorted(
            (r for r in run.resources if r.name.startswith(f"{component.name}-")),
            key=lambda r: (short_type(r.type), r.name),
        )
        print(f"\n  cluster {component.name}: {len(children)} resources")
        for child in children:
            print(f"    + {short_type(child.type):<40} {child.name:<36} {describe(child)}")
    print(f"\n  {len(run.resources)} resources in all, including the components")


@dataclass
class Cluster:
    name: str
    env: dict[str, str]
    consul_address: str
    token: str
    double: ConsulDouble | None


def demo_state(seed: int) -> ConsulState:
    """A small cluster's state: nodes, services, checks, sessions, tokens, 600 KV entries."""
    return ConsulState(nodes=6, services_per_node=3, checks_per_node=2, kv_entries=600,
                       kv_value_bytes=4096, kv_prefixes=("config", "locks", "vault"),
                       seed=seed)  # fmt: skip


def prepare_cluster(
    name: str, function_env: dict[str, Any], tokens: dict[str, str], stack: ExitStack, index: int
) -> Cluster:
    s3 = boto3.client("s3")
    secrets = boto3.client("secretsmanager")
    bucket = function_env["BACKUP_BUCKET"]
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    real_address = os.environ.get("CONSUL_HTTP_ADDR")
    if real_address:
        token = os.environ.get("CONSUL_HTTP_TOKEN", "")
        double = None
        address = real_address
    else:
        # A token from stack config is the cluster's real one; for a cluster whose
        # token lives in an existing secret, the demo makes one up.
        token = tokens.get(name, f"demo-token-for-{name}")
        state = RaftState(index=1000 * (index + 1) + 7, term=3, state=demo_state(index))
        double = stack.enter_context(ConsulDouble(state=state, tokens={token: True}))
        address = double.address
    secret_arn = secrets.create_secret(Name=f"consul-backup/{name}", SecretString=token)["ARN"]
    env = {str(k): str(v) for k, v in function_env.items()}
    env.update(CONSUL_HTTP_ADDR=address, CONSUL_TOKEN_SECRET_ARN=secret_arn)
    env.pop("CONSUL_CACERT", None)  # the local double speaks plain HTTP
    return Cluster(name, env, address, token, double)


def consul_cli(*args: str, env: dict[str, str]) -> None:
    print(f"$ consul-backup {' '.join(args)}", flush=True)
    done = subprocess.run([str(CLI), *args], env={**os.environ, **env}, text=True)
    if done.returncode != 0:
        raise SystemExit(f"consul-backup {args[0]} failed with exit code {done.returncode}")


def current_state(cluster: Cluster) -> tuple[int, str]:
    """(raft index, state.bin SHA-256) of a fresh snapshot of the cluster now."""
    client = ConsulClient(ConsulSettings(address=cluster.consul_address, token=cluster.token))
    snapshot = client.open_snapshot()
    try:
        report = verify_archive(snapshot.archive)
    finally:
        snapshot.close()
    return report.meta.index, report.member_sha256["state.bin"]


def stored_state(bucket: str, key: str) -> tuple[int, str]:
    """(raft index, state.bin SHA-256) of the snapshot as it is stored in S3."""
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
    report = verify_archive(body)
    return report.meta.index, report.member_sha256["state.bin"]


def cli_env(cluster: Cluster) -> dict[str, str]:
    return {
        "BACKUP_BUCKET": cluster.env["BACKUP_BUCKET"],
        "BACKUP_PREFIX": cluster.env["BACKUP_PREFIX"],
        "CONSUL_HTTP_TOKEN": cluster.token,
    }


def start_moto(stack: ExitStack) -> None:
    step("Starting moto (S3, Secrets Manager) on 127.0.0.1")
    endpoint = stack.enter_context(moto_server())
    os.environ.update(aws_env(endpoint))
    print(f"  moto at {endpoint}")


def show_plan() -> tuple[ProgramRun, dict[str, Any]]:
    step(f"What `pulumi up` would create for {STACK_FILE.name} (the program under mocks)")
    passphrase = os.environ.get("PULUMI_CONFIG_PASSPHRASE", EXAMPLE_PASSPHRASE)
    values, _secret_keys = load_stack_config(STACK_FILE, passphrase)
    plan = run_program(values)
    print_plan(plan)
    return plan, values


def prepare_clusters(plan: ProgramRun, values: dict[str, Any], stack: ExitStack) -> list[Cluster]:
    step("Local stand-ins: a bucket and a token secret per cluster, and Consul")
    tokens = values.get("consul-backup:tokens") or {}
    components = sorted(
        plan.of_type("consul-backup:index:ConsulSnapshotBackup"), key=lambda r: r.name
    )
    clusters = []
    for index, component in enumerate(components):
        function = plan.one("aws:lambda/function:Function", f"{component.name}-function")
        variables = function.inputs["environment"]["variables"]
        cluster = prepare_cluster(component.name, variables, tokens, stack, index)
        clusters.append(cluster)
        where = "a Consul double" if cluster.double else "the real Consul"
        print(
            f"  {cluster.name}: {where} at {cluster.consul_address}, "
            f"bucket {cluster.env['BACKUP_BUCKET']}"
        )
    return clusters


def back_up_each(clusters: list[Cluster]) -> dict[str, tuple[int, str]]:
    step("A backup per cluster, through the real Lambda handler (state.bin decoded on the way)")
    backed_up = {}
    for cluster in clusters:
        print(f"  {cluster.name}: the function's log line (CloudWatch EMF):", flush=True)
        summary = handler({}, None, env=cluster.env)
        backed_up[cluster.name] = stored_state(summary["bucket"], summary["key"])
        state = summary["state"]
        print(
            f"  {cluster.name}: stored {summary['key']} ({summary['bytes']} bytes, raft index "
            f"{summary['raft_index']}): {state['kv_entries']} KV entries, "
            f"{state['service_instances']} service instances; manifest written beside it"
        )
    return backed_up


def re_verify_each(plan: ProgramRun, clusters: list[Cluster]) -> None:
    step("The daily re-verification, run once now through its Lambda handler")
    for cluster in clusters:
        function = plan.one("aws:lambda/function:Function", f"{cluster.name}-verify")
        env = {str(k): str(v) for k, v in function.inputs["environment"]["variables"].items()}
        if env.pop("REPLICA_BUCKET", None):
            env.pop("REPLICA_REGION", None)
            print(f"  {cluster.name}: (moto does not replicate: only the bucket is verified here)")
        proven = verify_handler({}, None, env=env)["verified"]["bucket"]
        checked = "its manifest's SHA-256" if proven["sha256_checked"] else "nothing recorded"
        print(f"  {cluster.name}: verified again {proven['key']} against {checked}")


def show_status(plan: ProgramRun, clusters: list[Cluster]) -> None:
    step("consul-backup status: on time, per cluster")
    for cluster in clusters:
        window = plan.exports["clusters"][cluster.name]["backupWindowMinutes"]
        consul_cli("status", "--cluster", cluster.name, "--window-minutes", str(int(window)),
                   env={"BACKUP_BUCKET": cluster.env["BACKUP_BUCKET"]})  # fmt: skip


def restore_after_loss(cluster: Cluster, snapshot: str, expected: tuple[int, str]) -> None:
    """Lose the cluster's state, restore ``snapshot`` with its identity check, compare."""
    if cluster.double is not None:
        print("  (simulating a disaster: the cluster's state is lost)")
        cluster.double.state = RaftState(index=1, term=1, state=ConsulState.sized(200, 0))
    consul_cli("restore", "--cluster", cluster.name, snapshot,
               "--consul-addr", cluster.consul_address, "--yes", env=cli_env(cluster))  # fmt: skip
    index, restored = current_state(cluster)
    expected_index, expected_sha = expected
    same = restored == expected_sha
    print(
        f"  state.bin after restore: sha256 {restored[:16]}…, backed up "
        f"{expected_sha[:16]}…: {'IDENTICAL' if same else 'DIFFERENT'} "
        f"(raft index {index}, backed up at {expected_index})"
    )
    if not same and cluster.double is not None:
        raise SystemExit(f"{cluster.name}: the restored state differs from the backup")


def operate(cluster: Cluster, expected: tuple[int, str]) -> None:
    step(f"Operator CLI for {cluster.name}: list, verify, inspect, restore")
    env = cli_env(cluster)
    consul_cli("list", "--cluster", cluster.name, env=env)
    consul_cli("verify", "--cluster", cluster.name, "latest", env=env)
    consul_cli("inspect", "--cluster", cluster.name, "latest", env=env)
    restore_after_loss(cluster, "latest", expected)


def damage_and_hold(cluster: Cluster) -> None:
    """Someone deletes most of the KV tree: the next backup is flagged, the last good one held."""
    if cluster.double is None:
        return  # a real Consul is not damaged on purpose
    step(f"{cluster.name}: `consul kv delete -recurse config/` and `vault/` by mistake")
    cluster.double.state = RaftState(index=1500, term=3, state=demo_state(0))
    good = handler({}, None, env=cluster.env)
    damaged = demo_state(0).without_prefix("config/").without_prefix("vault/")
    cluster.double.state = RaftState(index=good["raft_index"] + 50, term=3, state=damaged)
    flagged = handler({}, None, env=cluster.env)
    dropped = flagged["content_drop"]["dropped"]["kv_entries"]
    print(
        f"  the backup is stored (it is the truth) and flagged: KV entries {dropped['from']} -> "
        f"{dropped['to']}; held by the floor: {flagged['held']}"
    )
    env = cli_env(cluster)
    consul_cli("list", "--cluster", cluster.name, env=env)
    consul_cli("diff", "--cluster", cluster.name, good["key"], flagged["key"], env=env)
    restore_after_loss(cluster, good["key"], stored_state(good["bucket"], good["key"]))
    consul_cli("release", "--cluster", cluster.name, good["key"], env=env)


def main() -> None:
    with ExitStack() as stack:
        start_moto(stack)
        plan, values = show_plan()
        clusters = prepare_clusters(plan, values, stack)
        backed_up = back_up_each(clusters)
        re_verify_each(plan, clusters)
        show_status(plan, clusters)
        for cluster in clusters:
            operate(cluster, backed_up[cluster.name])
        damage_and_hold(clusters[0])
        step("Done: stopping every server this demo started")
    print(
        "Next: `make sandbox` keeps these stand-ins running for you to try consul-backup by "
        "hand; `make test` runs every test; README.md explains deploying for real."
    )


if __name__ == "__main__":
    main()
