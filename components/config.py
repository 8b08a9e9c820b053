"""Stack configuration: a thin mapping of ``consul-backup:*`` onto the component's arguments.

Each cluster entry's camelCase keys map onto ``ConsulSnapshotBackupArgs``
(``retentionDays`` is ``retention_days``), the cluster's token from
``tokens.<name>`` onto ``token``, the shared bucket onto ``shared_bucket`` and
``key_prefix``; the arguments judge every value and every rule between values
(``args``). Here only what is the stack's: the list itself, names and their
uniqueness, which token goes with which cluster, and that tokens were set with
``--secret``. Every mistake is reported at once when the program starts, with
the cluster (its name, or its index when it has none) and the field, e.g.
``clusters[1] (beta): schedule "every day": ...``, so that ``pulumi preview``
shows everything to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from snapshot_backup.keys import ClusterNameError, check_cluster_name

from .args import ConsulSnapshotBackupArgs, SharedBucketArgs
from .validation import (
    ConfigError,
    Path,
    Spelling,
    camel_case,
    camel_spelling,
    field_types,
    nested_schema,
    type_name,
    unknown_key,
)

PROJECT = "consul-backup"
TOKENS = "tokens"

__all__ = ["PROJECT", "ClusterConfig", "ConfigError", "StackSettings", "parse_stack"]


@dataclass(frozen=True)
class ClusterConfig:
    """One entry of ``consul-backup:clusters``: the cluster's name and its arguments."""

    name: str
    args: ConsulSnapshotBackupArgs


@dataclass(frozen=True)
class StackSettings:
    clusters: tuple[ClusterConfig, ...]
    shared_bucket: SharedBucketArgs | None = None


def secret_command(cluster: str) -> str:
    """How to put a cluster's token into stack config, encrypted."""
    return f"`pulumi config set --secret --path '{TOKENS}.{cluster}' <token>`"


def parse_stack(
    clusters: Any, tokens: Any = None, shared_bucket: Any = None, tokens_secret: bool = True
) -> StackSettings:
    """Validate the whole stack config; raises ``ConfigError`` listing every problem.

    ``tokens_secret`` says whether ``consul-backup:tokens`` was set with
    ``--secret``: a token in plain text in the stack file is refused.
    """
    if not isinstance(clusters, list) or not clusters:
        raise ConfigError(["clusters: needs a list with at least one cluster"])
    problems: list[str] = []
    shared = _shared_bucket(shared_bucket, problems)
    token_map = _tokens(tokens, tokens_secret, problems)
    names: dict[str, int] = {}
    parsed: list[ClusterConfig] = []
    for index, raw in enumerate(clusters):
        entry = _cluster(raw, index, names, token_map, shared, problems)
        if entry is not None:
            parsed.append(entry)
    for token_name in sorted(token_map):
        if token_name not in names:
            problems.append(f"{TOKENS}.{token_name}: there is no cluster named {token_name!r}")
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
    tokens: Mapping[str, Any],
    shared: SharedBucketArgs | None,
    problems: list[str],
) -> ClusterConfig | None:
    label = _label(raw, index)
    if not isinstance(raw, Mapping):
        problems.append(f"{label}: must be an object, not {type_name(raw)}")
        return None
    before = len(problems)
    name = _name(raw.get("name"), label, problems)
    if name is not None:
        if name in names:
            problems.append(f"{label}: name is already used by clusters[{names[name]}]")
        names.setdefault(name, index)
    values = _arguments(raw, ConsulSnapshotBackupArgs, (), label, problems)
    if name is not None and name in tokens:
        values["token"] = tokens[name]
    if shared is not None:
        values["key_prefix"] = shared.prefix
    # The shared bucket is made once the stack is read: its settings stand in for
    # it here, so that the arguments judge what a shared bucket excludes.
    judged = values if shared is None else {**values, "shared_bucket": shared}
    spell = _spelling(name)
    problems += [p.render(spell, label) for p in ConsulSnapshotBackupArgs.problems(judged)]
    if len(problems) > before or name is None:
        return None
    return ClusterConfig(name, ConsulSnapshotBackupArgs(**values))


def _spelling(cluster: str | None) -> Spelling:
    """Stack config's names of fields; the token is ``tokens.<cluster>``."""

    def spell(path: Path) -> str:
        if path == ("token",):
            return f"{TOKENS}.{cluster or '<name>'}"
        return camel_spelling(path)

    return spell


def _name(value: Any, label: str, problems: list[str]) -> str | None:
    if value is None:
        problems.append(f"{label}: name is required")
        return None
    try:
        return check_cluster_name(value)
    except ClusterNameError as exc:
        problems.append(f"{label}: name {exc}")
        return None


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
        problems.append(f"{label}: must be an object, not {type_name(raw)}")
        return None
    before = len(problems)
    values = _arguments(raw, SharedBucketArgs, (), label, problems)
    problems.extend(p.render(camel_spelling, label) for p in SharedBucketArgs.problems(values))
    return SharedBucketArgs(**values) if len(problems) == before else None


def _tokens(tokens: Any, secret: bool, problems: list[str]) -> dict[str, Any]:
    """Cluster name -> token, as given (the arguments judge each); refused unless secret."""
    if tokens is None:
        return {}
    if not isinstance(tokens, Mapping):
        problems.append(f"{TOKENS}: must be an object of cluster name to token")
        return {}
    if not secret:
        # Never echo a value: it is a secret, even when stored as none.
        problems += [
            f"{TOKENS}.{name}: is stored in plain text in the stack's config (not set with "
            f"--secret): set it again with {secret_command(str(name))}"
            for name in tokens
        ]
    return {str(name): token for name, token in tokens.items()}
