"""Pulumi components of consul-backup."""

from .config import ClusterSettings, ConfigError, StackSettings, parse_stack
from .consul_snapshot_backup import ConsulSnapshotBackup, ConsulSnapshotBackupArgs
from .snapshot_bucket import RetentionRule, SnapshotBucket

__all__ = [
    "ClusterSettings",
    "ConfigError",
    "ConsulSnapshotBackup",
    "ConsulSnapshotBackupArgs",
    "RetentionRule",
    "SnapshotBucket",
    "StackSettings",
    "parse_stack",
]
