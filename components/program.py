"""The stack program: stack config in, one ConsulSnapshotBackup per cluster out.

``__main__.py`` calls ``run()``; tests and the demo call it too, under mocks.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pulumi

from snapshot_backup.keys import DEFAULT_PREFIX, cluster_prefix

from .config import PROJECT, StackSettings, parse_stack
from .consul_snapshot_backup import ConsulSnapshotBackup, retention_rule
from .snapshot_bucket import SnapshotBucket


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


def run() -> tuple[dict[str, ConsulSnapshotBackup], dict[str, pulumi.Output[Any]]]:
    backups = build(read_settings())
    outputs = stack_outputs(backups)
    pulumi.export("clusters", outputs)
    return backups, outputs
