"""The configuration reference, made from the schema in ``args``: the README shows this table."""

from __future__ import annotations

from dataclasses import MISSING, Field, fields
from typing import Any

from snapshot_backup.keys import CLUSTER_NAME_RULE

from .args import ConsulSnapshotBackupArgs, SharedBucketArgs
from .validation import InRange, camel_case, field_types, nested_schema


def configuration_table() -> str:
    """One row per setting: stack config key, Python argument, required, default, meaning."""
    rows = [
        "| stack config key | Python argument | required | default | meaning |",
        "|---|---|---|---|---|",
        f"| `name` | the component's name | yes | | {CLUSTER_NAME_RULE} |",
    ]
    rows += _rows(ConsulSnapshotBackupArgs, key_prefix="", argument_prefix="")
    return "\n".join(rows)


def shared_bucket_table() -> str:
    """``consul-backup:sharedBucket``: one row per setting of the shared bucket."""
    rows = [
        "| `sharedBucket` key | required | default | meaning |",
        "|---|---|---|---|",
    ]
    for row in _rows(SharedBucketArgs, key_prefix="", argument_prefix=""):
        key, _argument, required, default, meaning = row.strip("|").split(" | ")
        rows.append(f"|{key} | {required} | {default} | {meaning}|")
    return "\n".join(rows)


def _rows(schema: type, key_prefix: str, argument_prefix: str) -> list[str]:
    rows = []
    hints = field_types(schema)
    for spec in fields(schema):
        key = f"`{key_prefix}{camel_case(spec.name)}`"
        if not spec.metadata.get("in_config", True):
            key = spec.metadata.get("config_doc") or ""
        argument = f"`{argument_prefix}{spec.name}`"
        rows.append(
            f"| {key} | {argument} | {_required(spec)} | {_default(spec)} | {_meaning(spec)} |"
        )
        nested = nested_schema(hints[spec.name])
        if nested is not None:
            rows += _rows(nested, f"{key_prefix}{camel_case(spec.name)}.", f"{spec.name}.")
    return rows


def _required(spec: Field[Any]) -> str:
    if spec.metadata.get("required_doc"):
        return str(spec.metadata["required_doc"])
    return "yes" if spec.default is MISSING else ""


def _default(spec: Field[Any]) -> str:
    if spec.metadata.get("default_doc"):
        return str(spec.metadata["default_doc"])
    value = spec.default
    if value is MISSING or value is None:
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f"`{value}`"
    return str(value)


def _meaning(spec: Field[Any]) -> str:
    doc = str(spec.metadata["doc"])
    check = spec.metadata.get("check")
    if isinstance(check, InRange):
        doc += f"; {check.low} to {check.high}"
    return doc
