"""Pulumi components of consul-backup."""

from .args import ColdStorage, ConfigError, ConsulSnapshotBackupArgs, Vpc
from .config import ClusterConfig, StackSettings, parse_stack
from .consul_snapshot_backup import ConsulSnapshotBackup
from .snapshot_bucket import RetentionRule, SnapshotBucket

__all__ = [
    "ClusterConfig",
    "ColdStorage",
    "ConfigError",
    "ConsulSnapshotBackup",
    "ConsulSnapshotBackupArgs",
    "RetentionRule",
    "SnapshotBucket",
    "StackSettings",
    "Vpc",
    "parse_stack",
]
