"""Lambda entry point (handler string ``handler.handler``); see snapshot_backup.backup."""

from snapshot_backup.backup import handler

__all__ = ["handler"]
