"""Pulumi components of consul-backup.

Names are imported on first use (PEP 562), so that pulumi-free modules of this
package (``components.schedule``, ``components.outputs``) can be imported by the
operator CLI without loading Pulumi and its providers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .args import ColdStorage, ConsulSnapshotBackupArgs, ObjectLock, Replica, Vpc
    from .config import ClusterConfig, StackSettings, parse_stack
    from .consul_snapshot_backup import ConsulSnapshotBackup
    from .scheduled_function import ScheduledFunction, ScheduledFunctionArgs
    from .snapshot_bucket import RetentionRule, SnapshotBucket
    from .validation import ConfigError

_HOMES = {
    "ColdStorage": "args",
    "ConfigError": "validation",
    "ConsulSnapshotBackupArgs": "args",
    "ObjectLock": "args",
    "Replica": "args",
    "Vpc": "args",
    "ClusterConfig": "config",
    "StackSettings": "config",
    "parse_stack": "config",
    "ConsulSnapshotBackup": "consul_snapshot_backup",
    "RetentionRule": "snapshot_bucket",
    "ScheduledFunction": "scheduled_function",
    "ScheduledFunctionArgs": "scheduled_function",
    "SnapshotBucket": "snapshot_bucket",
}

__all__ = [
    "ClusterConfig",
    "ColdStorage",
    "ConfigError",
    "ConsulSnapshotBackup",
    "ConsulSnapshotBackupArgs",
    "ObjectLock",
    "Replica",
    "RetentionRule",
    "ScheduledFunction",
    "ScheduledFunctionArgs",
    "SnapshotBucket",
    "StackSettings",
    "Vpc",
    "parse_stack",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)
