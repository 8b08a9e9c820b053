"""Lambda entry points: ``handler.handler`` backs up, ``handler.verify_handler`` re-verifies."""

from snapshot_backup.backup import handler
from snapshot_backup.reverify import verify_handler

__all__ = ["handler", "verify_handler"]
