"""The stack program: stack config in, one ConsulSnapshotBackup per cluster out.

``__main__.py`` calls ``run()``; tests and the demo call it too, under mocks.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pulumi
import pulumi_aws as aws

from snapshot_backup.keys import cluster_prefix

from .config import PROJECT, TOKENS, StackSettings, parse_stack
from .consul_snapshot_backup import ConsulSnapshotBackup, retention_rule
from .dashboard import DashboardCluster, dashboard_body, dashboard_url
from .snapshot_bucket import REPLICATION_RULE_ID, SnapshotBucket


def read_settings() -> StackSettings:
    """Read the stack config once; raises ConfigError naming every mistake."""
    config = pulumi.Config(PROJECT)
    # get_object, not get_secret_object: the keys must be checked now, at
    # preview. The component wraps every token back into a secret before use.
    return parse_stack(
        clusters=config.get_object("clusters"),
        tokens=config.get_object(TOKENS),
        shared_bucket=config.get_object("sharedBucket"),
        # What the Pulumi CLI says of the key: it was set with --secret (the
        # language host passes PULUMI_CONFIG_SECRET_KEYS to set_all_config).
        tokens_secret=pulumi.runtime.is_config_secret(config.full_key(TOKENS)),
    )


def build(settings: StackSettings) -> dict[str, ConsulSnapshotBackup]:
    """The shared bucket when there is one, and one component per cluster."""
    shared = None
    if settings.shared_bucket is not None:
        prefix = settings.shared_bucket.prefix
        shared = SnapshotBucket(
            f"{PROJECT}-shared",
            retention=[
                retention_rule(c.args, cluster_prefix(prefix, c.name)) for c in settings.clusters
            ],
            kms_key_arn=settings.shared_bucket.kms_key_arn,
            object_lock=settings.shared_bucket.object_lock,
            replica=settings.shared_bucket.replica,
        )
    return {
        cluster.name: ConsulSnapshotBackup(
            cluster.name,
            replace(cluster.args, shared_bucket=shared) if shared else cluster.args,
        )
        for cluster in settings.clusters
    }


def create_dashboard(backups: dict[str, ConsulSnapshotBackup]) -> pulumi.Output[str]:
    """The stack's dashboard; its URL."""
    name = f"{PROJECT}-{pulumi.get_stack()}"
    region = aws.get_region_output().region
    replication = {
        cluster: pulumi.Output.all(backup.bucket_name, backup.replica_bucket)
        for cluster, backup in backups.items()
        if backup.bucket.replica is not None
    }

    def body(values: list[Any]) -> str:
        found = dict(zip(replication, values[1:], strict=True))
        clusters = [
            DashboardCluster(
                cluster,
                (found[cluster][0], found[cluster][1], REPLICATION_RULE_ID)
                if cluster in found
                else None,
            )
            for cluster in backups
        ]
        return json.dumps(dashboard_body(clusters, values[0]), sort_keys=True)

    aws.cloudwatch.Dashboard(
        PROJECT,
        dashboard_name=name,
        dashboard_body=pulumi.Output.all(region, *replication.values()).apply(body),
    )
    return region.apply(lambda r: dashboard_url(r, name))


def stack_outputs(backups: dict[str, ConsulSnapshotBackup]) -> dict[str, pulumi.Output[Any]]:
    """Per cluster, ``ClusterOutputs``' keys: what ``consul-backup status`` and people read."""
    return {name: pulumi.Output.all(**backup.outputs) for name, backup in backups.items()}


def run() -> tuple[dict[str, ConsulSnapshotBackup], dict[str, Any]]:
    """Build the stack; returns the components and what the stack exports."""
    backups = build(read_settings())
    exports: dict[str, Any] = {
        "clusters": stack_outputs(backups),
        "dashboardUrl": create_dashboard(backups),
    }
    for name, value in exports.items():
        pulumi.export(name, value)
    return backups, exports
