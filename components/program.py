"""The stack program: stack config in, one ConsulSnapshotBackup per cluster out.

``__main__.py`` calls ``run()``; tests and the demo call it too, under mocks.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pulumi
import pulumi_aws as aws

from snapshot_backup.keys import DEFAULT_PREFIX, cluster_prefix

from .config import PROJECT, StackSettings, parse_stack
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
        tokens=config.get_object("tokens"),
        shared_bucket=config.get_object("sharedBucket"),
    )


def build(settings: StackSettings) -> dict[str, ConsulSnapshotBackup]:
    shared = None
    prefix = DEFAULT_PREFIX
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
            cluster.name, replace(cluster.args, shared_bucket=shared, key_prefix=prefix)
        )
        for cluster in settings.clusters
    }


def create_dashboard(backups: dict[str, ConsulSnapshotBackup]) -> pulumi.Output[str]:
    """The stack's dashboard; its URL."""
    name = f"{PROJECT}-{pulumi.get_stack()}"
    region = aws.get_region_output().region
    replication = {
        cluster: pulumi.Output.all(
            backup.bucket_name,
            backup.replica_bucket_arn.apply(lambda arn: arn.split(":::", 1)[-1]),
        )
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
    """Per cluster: where its snapshots go and what to look at when it fails."""
    return {
        name: pulumi.Output.all(
            bucket=backup.bucket_name,
            keyPrefix=backup.key_prefix,
            functionName=backup.function_name,
            ruleName=backup.rule_name,
            alarmTopicArn=backup.alarm_topic_arn,
            replicaBucketArn=backup.replica_bucket_arn,
            replicaRegion=backup.replica_region,
            backupWindowMinutes=backup.backup_window_minutes,
            alarmNames=backup.alarm_names,
        )
        for name, backup in backups.items()
    }


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
