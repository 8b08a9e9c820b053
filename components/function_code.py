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
    "snapshot_backup/aws_clients.py",
    "snapshot_backup/backup.py",
    "snapshot_backup/consul.py",
    "snapshot_backup/deadline.py",
    "snapshot_backup/entry.py",
    "snapshot_backup/environment.py",
    "snapshot_backup/gunzip.py",
    "snapshot_backup/keys.py",
    "snapshot_backup/manifest.py",
    "snapshot_backup/retention.py",
    "snapshot_backup/reverify.py",
    "snapshot_backup/s3_upload.py",
    "snapshot_backup/settings.py",
    "snapshot_backup/sha256sums.py",
    "snapshot_backup/snapshot_meta.py",
    "snapshot_backup/state_bin.py",
    "snapshot_backup/store.py",
    "snapshot_backup/tar_reader.py",
    "snapshot_backup/telemetry.py",
    "snapshot_backup/token_source.py",
    "snapshot_backup/verify.py",
)
HANDLER = "handler.handler"
VERIFY_HANDLER = "handler.verify_handler"
RUNTIME = "python3.13"
# Where Lambda unpacks the code archive (LAMBDA_TASK_ROOT).
TASK_ROOT = "/var/task"
CA_BUNDLE_FILE = "ca-bundle.pem"


def function_archive(
    root: Path = FUNCTION_ROOT, ca_bundle: str | None = None
) -> pulumi.AssetArchive:
    """The function's sources; a CA bundle travels in the archive, where its size is free.

    Lambda caps a function's environment at 4 KB for all variables together: a
    root and two intermediates of RSA-4096 would not fit there.
    """
    assets: dict[str, pulumi.Asset | pulumi.Archive] = {
        name: pulumi.FileAsset(str(root / name)) for name in FUNCTION_SOURCES
    }
    if ca_bundle is not None:
        assets[CA_BUNDLE_FILE] = pulumi.StringAsset(ca_bundle)
    return pulumi.AssetArchive(assets)


def function_code_sha256(root: Path = FUNCTION_ROOT) -> str:
    """A digest of exactly what the archive holds: names and contents, in order."""
    digest = hashlib.sha256()
    for name in FUNCTION_SOURCES:
        digest.update(name.encode() + b"\0")
        digest.update((root / name).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()
