"""The stack outputs of one cluster: the contract between the program and the operator CLI.

The component registers them, the program exports them under ``clusters``
(``pulumi stack output clusters --json``), and ``consul-backup status`` and
``consul-backup backup --local`` read them back: all through ``ClusterOutputs``,
so the keys are written once. No Pulumi import here: the CLI reads this module
without loading Pulumi.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any


class OutputsError(ValueError):
    """The stack outputs given are not what the program exports."""


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


@dataclass(frozen=True)
class ClusterOutputs:
    """Where one cluster's snapshots, function and alarms are, and the floor it keeps."""

    cluster: str
    bucket: str
    prefix: str  # the key prefix, e.g. "consul-snapshots/"
    key_prefix: str  # the cluster's own: "<prefix><cluster>/"
    region: str
    function_name: str
    verify_function_name: str
    rule_name: str
    alarm_topic_arn: str
    replica_bucket: str  # "" without a replica
    replica_region: str  # "" without a replica
    backup_window_minutes: int
    alarm_names: tuple[str, ...]
    keep_latest: int
    content_drop_percent: int
    # The replica's ARN, as the README's runbook reads it; "" without a replica.
    # It says no more than replica_bucket: optional, for who builds outputs by hand.
    replica_bucket_arn: str = ""

    @classmethod
    def keys(cls) -> dict[str, str]:
        """Field name -> the stack output's key (camelCase), the cluster aside (it is the key)."""
        return {f.name: _camel(f.name) for f in fields(cls) if f.name != "cluster"}

    def to_dict(self) -> dict[str, Any]:
        out = {key: getattr(self, name) for name, key in self.keys().items()}
        out["alarmNames"] = list(self.alarm_names)
        return out

    @classmethod
    def from_dict(cls, cluster: str, values: Mapping[str, Any]) -> ClusterOutputs:
        """One cluster's entry of ``clusters``; ``OutputsError`` names what is missing or wrong."""
        if not isinstance(values, Mapping):
            raise OutputsError(f"cluster {cluster!r}: expected an object, not {values!r}")
        optional = {f.name for f in fields(cls) if f.default is not MISSING}
        missing = [
            key for name, key in cls.keys().items() if key not in values and name not in optional
        ]
        if missing:
            raise OutputsError(
                f"cluster {cluster!r} lacks {', '.join(missing)}: give the output of "
                "`pulumi stack output clusters --json` of a stack deployed with this version"
            )
        parsed: dict[str, Any] = {"cluster": cluster}
        for name, key in cls.keys().items():
            if key in values:
                parsed[name] = _typed(cluster, key, values[key], cls.__annotations__[name])
        return cls(**parsed)


def _typed(cluster: str, key: str, value: Any, annotation: str) -> Any:
    if annotation == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation == "str":
        if isinstance(value, str):
            return value
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise OutputsError(f"cluster {cluster!r}: {key} {value!r} is not a {annotation}")


def read_stack_outputs(text: str, source: str = "stack outputs") -> dict[str, ClusterOutputs]:
    """``pulumi stack output clusters --json`` (or ``pulumi stack output --json``), by cluster."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputsError(f"{source} is not JSON ({exc})") from exc
    if isinstance(document, dict) and isinstance(document.get("clusters"), dict):
        document = document["clusters"]  # the whole stack's outputs
    if not isinstance(document, dict) or not document:
        raise OutputsError(
            f"{source} holds no clusters: give `pulumi stack output clusters --json`"
        )
    return {
        str(name): ClusterOutputs.from_dict(str(name), entry) for name, entry in document.items()
    }
