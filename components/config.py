"""Stack configuration: a thin mapping of ``consul-backup:*`` onto the component's arguments.

Each cluster entry's camelCase keys map onto ``ConsulSnapshotBackupArgs``
(``retentionDays`` is ``retention_days``); the arguments check their own values.
Here only what is the stack's: the list itself, names and their uniqueness,
which token goes with which cluster, and the shared bucket. Every mistake is
reported at once when the program starts, with the cluster (its name, or its
index when it has none) and the field, e.g. ``clusters[1] (beta): schedule
"every day": ...``, so that ``pulumi preview`` shows everything to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from snapshot_backup.keys import CLUSTER_NAME, CLUSTER_NAME_RULE

from .args import (
    ConfigError,
    ConsulSnapshotBackupArgs,
    SharedBucketArgs,
    camel_case,
    camel_spelling,
    field_types,
    nested_schema,
    unknown_key,
)

PROJECT = "consul-backup"
TOKEN_RULE = {("token",), ("token_secret_arn",)}


@dataclass(frozen=True)
class ClusterConfig:
    """One entry of ``consul-backup:clusters``: the cluster's name and its arguments."""

    name: str
    args: ConsulSnapshotBackupArgs


@dataclass(frozen=True)
class StackSettings:
    clusters: tuple[ClusterConfig, ...]
    shared_bucket: SharedBucketArgs | None = None


def parse_stack(clusters: Any, tokens: Any = None, shared_bucket: Any = None) -> StackSettings:
    """Validate the whole stack config; raises ``ConfigError`` listing every problem."""
    if not isinstance(clusters, list) or not clusters:
        raise ConfigError(["clusters: needs a list with at least one cluster"])
    problems: list[str] = []
    shared = _shared_bucket(shared_bucket, problems)
    token_map = _tokens(tokens, problems)
    names: dict[str, int] = {}
    parsed: list[ClusterConfig] = []
    for index, raw in enumerate(clusters):
        entry = _cluster(raw, index, names, token_map, shared, problems)
        if entry is not None:
            parsed.append(entry)
    for token_name in sorted(token_map):
        if token_name not in names:
            problems.append(f"tokens.{token_name}: there is no cluster named {token_name!r}")
    if problems:
        raise ConfigError(problems)
    return StackSettings(clusters=tuple(parsed), shared_bucket=shared)


def _label(raw: Any, index: int) -> str:
    name = raw.get("name") if isinstance(raw, Mapping) else None
    return f"clusters[{index}]" + (f" ({name})" if isinstance(name, str) else "")


def _cluster(
    raw: Any,
    index: int,
    names: dict[str, int],
    tokens: Mapping[str, str],
    shared: SharedBucketArgs | None,
    problems: list[str],
) -> ClusterConfig | None:
    label = _label(raw, index)
    if not isinstance(raw, Mapping):
        problems.append(f"{label}: must be an object, not {_type_name(raw)}")
        return None
    before = len(problems)
    name = _name(raw.get("name"), label, problems)
    if name is not None:
        if name in names:
            problems.append(f"{label}: name is already used by clusters[{names[name]}]")
        names.setdefault(name, index)
    values = _arguments(raw, ConsulSnapshotBackupArgs, (), label, problems)
    has_arn = "tokenSecretArn" in raw
    has_token = name is not None and name in tokens
    if has_arn and has_token:
        problems.append(
            f"{label}: token is given twice: tokenSecretArn and tokens.{name}; keep one"
        )
    elif not has_arn and not has_token:
        problems.append(
            f"{label}: token is missing: set tokenSecretArn, or "
            f"`pulumi config set --secret --path 'tokens.{name or '<name>'}' <token>`"
        )
    for key in ("kmsKeyArn", "objectLock", "replica"):
        if shared is not None and key in raw:
            problems.append(f"{label}: {key} is the shared bucket's here: set sharedBucket.{key}")
    if name is not None and has_token and not has_arn:
        values["token"] = tokens[name]
    for found in ConsulSnapshotBackupArgs.problems(values):
        if set(found.paths) != TOKEN_RULE:  # which token goes where is the stack's to say
            problems.append(found.render(camel_spelling, label))
    if len(problems) > before or name is None:
        return None
    return ClusterConfig(name, ConsulSnapshotBackupArgs(**values))


def _name(value: Any, label: str, problems: list[str]) -> str | None:
    if value is None:
        problems.append(f"{label}: name is required")
        return None
    if not isinstance(value, str):
        problems.append(f"{label}: name must be a string, not {_type_name(value)}")
        return None
    if not CLUSTER_NAME.fullmatch(value):
        problems.append(
            f"{label}: name {value!r} is not a valid cluster name ({CLUSTER_NAME_RULE})"
        )
        return None
    return value


def _arguments(
    raw: Mapping[str, Any], schema: type, at: tuple[str, ...], label: str, problems: list[str]
) -> dict[str, Any]:
    """camelCase keys to argument names, nested objects too; unknown keys reported."""
    known = {camel_case(f.name): f for f in fields(schema) if f.metadata.get("in_config", True)}
    hints = field_types(schema)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if schema is ConsulSnapshotBackupArgs and at == () and key == "name":
            continue
        spec = known.get(key)
        if spec is None:
            found = unknown_key((*at, key), set(known))
            problems.append(found.render(lambda path: ".".join(path), label))
            continue
        nested = nested_schema(hints[spec.name])
        if nested is not None and isinstance(value, Mapping):
            value = _arguments(value, nested, (*at, key), label, problems)
        values[spec.name] = value
    return values


def _shared_bucket(raw: Any, problems: list[str]) -> SharedBucketArgs | None:
    if raw is None:
        return None
    label = "sharedBucket"
    if not isinstance(raw, Mapping):
        problems.append(f"{label}: must be an object, not {_type_name(raw)}")
        return None
    before = len(problems)
    values = _arguments(raw, SharedBucketArgs, (), label, problems)
    problems.extend(p.render(camel_spelling, label) for p in SharedBucketArgs.problems(values))
    return SharedBucketArgs(**values) if len(problems) == before else None


def _tokens(tokens: Any, problems: list[str]) -> dict[str, str]:
    if tokens is None:
        return {}
    if not isinstance(tokens, Mapping):
        problems.append("tokens: must be an object of cluster name to token")
        return {}
    good: dict[str, str] = {}
    for name, token in tokens.items():
        if not isinstance(token, str) or not token.strip():
            # Never echo the value: it is a secret.
            problems.append(f"tokens.{name}: must be a non-empty string")
        else:
            good[str(name)] = token.strip()
    return good


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), "a list" if isinstance(value, list) else "an object"
    )
