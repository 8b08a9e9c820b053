"""A snapshot's manifest: what was stored, written once beside it, checked by every reader.

The backup writes it after the archive is stored, under the archive's stem
(``keys.ObjectKind.MANIFEST``), with ``If-None-Match`` (the bucket policy
refuses any write without it, to everyone), so it falls under the same lock
and is replicated with it. It anchors the snapshot's integrity and identity:

- integrity: the archive's SHA-256 and size, the stored version's id. S3 checks
  a multipart object only part by part and against a CRC; the SHA-256 here is
  what ``verify``, ``download``, ``restore`` and the daily re-verification
  compare the archive they read against, so an object rewritten with another,
  self-consistent archive is caught;
- identity: the cluster and datacenter it was taken from, ``meta.json``'s
  Raft index, term and ID, the ``X-Consul-Index`` seen, when, and how long it
  took: ``restore`` shows them and refuses the wrong cluster;
- content: the summary of its decoded ``state.bin`` (``state_bin``), and
  whether it lost content against the snapshot before it.

``list`` and ``inspect`` read manifests, not archives.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from .keys import SnapshotKey, check_cluster_name
from .state_bin import StateSummary
from .verify import ArchiveError

MANIFEST_FORMAT = 1
# A manifest is a few KB (the content summary caps its KV prefixes); anything
# much larger was not written by this tool.
MAX_MANIFEST_BYTES = 4 << 20


class ManifestError(Exception):
    """A manifest that is not one this tool wrote."""


@dataclass(frozen=True)
class Manifest:
    """Everything a reader checks a snapshot against, and shows before a restore."""

    cluster: str
    key: str
    version_id: str | None
    size: int
    sha256: str
    crc32: str | None
    raft_index: int
    raft_term: int
    raft_id: str
    datacenter: str | None
    consul_index: int | None
    known_leader: bool
    last_contact_ms: int | None
    taken_at: datetime
    duration_s: float
    state: dict[str, Any] | None = None
    content_drop: dict[str, Any] | None = None
    format: int = MANIFEST_FORMAT

    def to_json(self) -> bytes:
        document = asdict(self)
        document["taken_at"] = self.taken_at.isoformat()
        raw = json.dumps(document, sort_keys=True, indent=1, allow_nan=False).encode() + b"\n"
        if len(raw) > MAX_MANIFEST_BYTES:  # the readers' cap holds for the writer too
            raise ManifestError(f"a manifest of {len(raw)} bytes is over {MAX_MANIFEST_BYTES}")
        return raw

    @classmethod
    def from_json(cls, raw: bytes, where: str = "manifest") -> Manifest:
        """Parse and check a manifest; ``ManifestError`` names what is wrong with it."""
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{where} is larger than {MAX_MANIFEST_BYTES} bytes")
        try:
            document = json.loads(raw, parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{where} is not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise ManifestError(f"{where} is not a JSON object")
        if document.get("format") != MANIFEST_FORMAT:
            raise ManifestError(
                f"{where} has format {document.get('format')!r}; this version reads "
                f"{MANIFEST_FORMAT}: upgrade consul-backup"
            )
        values = {f.name: _field(document, f.name, f.type, where) for f in fields(cls)}
        try:
            values["taken_at"] = datetime.fromisoformat(values["taken_at"])
            check_cluster_name(values["cluster"])
            if values["state"] is not None:
                StateSummary.from_dict(values["state"])  # refused unless it is one
            _check_content_drop(values["content_drop"])
        except ValueError as exc:
            raise ManifestError(f"{where}: {exc}") from exc
        return cls(**values)

    def belongs_to(self, name: SnapshotKey) -> bool:
        """Whether this manifest describes the snapshot named ``name`` (not one copied aside).

        The cluster is not compared here: a restore refuses a snapshot recorded
        as another cluster's with a message of its own (``--into-other-cluster``).
        """
        return (self.key, self.raft_index) == (name.key, name.raft_index)


def _check_content_drop(drop: Any) -> None:
    """``{"previous": key, "percent": n, "dropped": {count: {"from": n, "to": n}}}`` or None."""
    if drop is None:
        return
    dropped = drop.get("dropped")
    shaped = (
        isinstance(drop.get("previous"), str)
        and type(drop.get("percent")) is int
        and isinstance(dropped, dict)
        and all(
            isinstance(change, dict)
            and set(change) == {"from", "to"}
            and all(type(n) is int for n in change.values())
            for change in dropped.values()
        )
    )
    if not shaped:
        raise ValueError(f"content_drop {drop!r} is not what a backup records")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


# What each field's annotation allows in the JSON document.
_KINDS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "str | None": (str, type(None)),
    "int": (int,),
    "int | None": (int, type(None)),
    "bool": (bool,),
    "float": (int, float),
    "datetime": (str,),
    "dict[str, Any] | None": (dict, type(None)),
}


def _field(document: Mapping[str, Any], name: str, annotation: Any, where: str) -> Any:
    if name not in document:
        raise ManifestError(f"{where} lacks {name!r}")
    value = document[name]
    kinds = _KINDS[str(annotation)]
    wrong_bool = isinstance(value, bool) and bool not in kinds
    if not isinstance(value, kinds) or wrong_bool:
        raise ManifestError(f"{where}: {name} {value!r} is not a {annotation}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ManifestError(f"{where}: {name} {value!r} is not a finite number")
    return value


class ManifestMismatchError(ArchiveError):
    """The archive read is not the one its manifest records: replaced, or never this one."""


class UnrecordedSnapshotError(ArchiveError):
    """A snapshot without a manifest: nothing anchors what it should be."""


def unrecorded(bucket: str, name: SnapshotKey) -> UnrecordedSnapshotError:
    return UnrecordedSnapshotError(
        f"s3://{bucket}/{name.key} has no manifest ({name.manifest_key}): it was stored before "
        "consul-backup wrote manifests, or its manifest was removed; nothing says what it should "
        "be (--allow-unrecorded reads it anyway, checked only against itself)"
    )


def check_against(
    manifest: Manifest,
    *,
    where: str,
    sha256: str,
    size: int,
    raft_index: int,
    version_id: str | None,
) -> None:
    """Raise ``ManifestMismatchError`` unless the archive read is the one recorded.

    The SHA-256 is the judge. The version id only explains a mismatch: a copy
    made by S3 Replication keeps the source's version id, so a differing one
    says the object was replaced after it was stored.
    """
    problems = []
    if sha256 != manifest.sha256:
        problems.append(f"its SHA-256 is {sha256}")
    if size != manifest.size:
        problems.append(f"it has {size} bytes, the manifest recorded {manifest.size}")
    if raft_index != manifest.raft_index:
        problems.append(
            f"its raft index is {raft_index}, the manifest recorded {manifest.raft_index}"
        )
    if not problems:
        return
    raise mismatch(where, manifest, "; ".join(problems), version_id)


def mismatch(
    where: str, manifest: Manifest, problems: str, read_version: str | None = None
) -> ManifestMismatchError:
    """The error every reader raises: it names the SHA-256 the manifest recorded.

    Where the object was replaced after it was stored (another version is
    read, or which one is not known), it says how to read the recorded one.
    """
    hint = ""
    if manifest.version_id and read_version != manifest.version_id:
        this = f"this is version {read_version}, " if read_version else ""
        hint = (
            f"; if the object was replaced after it was stored: {this}the manifest records "
            f"version {manifest.version_id} (--version-id {manifest.version_id} reads that one)"
        )
    return ManifestMismatchError(
        f"{where}: not the archive its manifest records (SHA-256 {manifest.sha256}): "
        f"{problems}{hint}"
    )
