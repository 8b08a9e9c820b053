"""The stack program: stack config in, one ConsulSnapshotBackup per cluster out.

``__main__.py`` calls ``run()``; tests and the demo call it too, under mocks.
"""

from __future__ import annotations

from typing import Any

import pulumi

from .config import StackSettings, parse_stack
from .consul_snapshot_backup import (
    ConsulSnapshotBackup,
    ConsulSnapshotBackupArgs,
    cluster_key_prefix,
    retention_rule,
)
from .snapshot_bucket import SnapshotBucket

PROJECT = "consul-backup"


def read_settings() -> StackSettings:
    """Read the stack config once; raises ConfigError naming every mistake."""
    config = pulumi.Config(PROJECT)
    # get_object, not get_secret_object: the keys must be checked now, at
    # preview. Every token is wrapped back into a secret before any use.
    return parse_stack(
        clusters=config.get_object("clusters"),
        tokens=config.get_object("tokens"),
        shared_bucket=config.get_object("sharedBucket"),
    )


def build(settings: StackSettings) -> dict[str, ConsulSnapshotBackup]:
    shared = None
    if settings.shared_bucket is not None:
        shared = SnapshotBucket(
            f"{PROJECT}-shared",
            retention=[
                retention_rule(c, cluster_key_prefix(settings.prefix, c.name))
                for c in settings.clusters
            ],
            kms_key_arn=settings.shared_bucket.kms_key_arn,
        )
    backups = {}
    for cluster in settings.clusters:
        token = settings.tokens.get(cluster.name)
        backups[cluster.name] = ConsulSnapshotBackup(
            cluster.name,
            ConsulSnapshotBackupArgs(
                settings=cluster,
                token=pulumi.Output.secret(token) if token is not None else None,
                shared_bucket=shared,
                key_prefix=settings.prefix,
            ),
        )
    return backups


def stack_outputs(backups: dict[str, ConsulSnapshotBackup]) -> dict[str, pulumi.Output[Any]]:
    """Per cluster: where its snapshots go and what to look at when it fails."""
    return {
        name: pulumi.Output.all(
            bucket=backup.bucket_name,
            keyPrefix=backup.key_prefix,
            functionName=backup.function_name,
            ruleName=backup.rule_name,
            alarmTopicArn=backup.alarm_topic_arn,
        )
        for name, backup in backups.items()
    }


def run() -> tuple[dict[str, ConsulSnapshotBackup], dict[str, pulumi.Output[Any]]]:
    backups = build(read_settings())
    outputs = stack_outputs(backups)
    pulumi.export("clusters", outputs)
    return backups, outputs
