"""The Lambda code archive, built from an explicit list of source files.

Listing the files (instead of archiving ``function/``) keeps ``__pycache__``
and other leftovers out, so the archive's hash, and with it ``pulumi preview``,
does not change because tests ran.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pulumi

FUNCTION_ROOT = Path(__file__).resolve().parent.parent / "function"
FUNCTION_SOURCES = (
    "handler.py",
    "snapshot_backup/__init__.py",
    "snapshot_backup/archive_format.py",
    "snapshot_backup/backup.py",
    "snapshot_backup/consul.py",
    "snapshot_backup/deadline.py",
    "snapshot_backup/environment.py",
    "snapshot_backup/gunzip.py",
    "snapshot_backup/keys.py",
    "snapshot_backup/retention.py",
    "snapshot_backup/s3_upload.py",
    "snapshot_backup/settings.py",
    "snapshot_backup/sha256sums.py",
    "snapshot_backup/snapshot_meta.py",
    "snapshot_backup/store.py",
    "snapshot_backup/tar_reader.py",
    "snapshot_backup/telemetry.py",
    "snapshot_backup/token_source.py",
    "snapshot_backup/verify.py",
)
HANDLER = "handler.handler"
RUNTIME = "python3.13"


def function_archive(root: Path = FUNCTION_ROOT) -> pulumi.AssetArchive:
    return pulumi.AssetArchive(
        {name: pulumi.FileAsset(str(root / name)) for name in FUNCTION_SOURCES}
    )


def function_code_sha256(root: Path = FUNCTION_ROOT) -> str:
    """A digest of exactly what the archive holds: names and contents, in order."""
    digest = hashlib.sha256()
    for name in FUNCTION_SOURCES:
        digest.update(name.encode() + b"\0")
        digest.update((root / name).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()
