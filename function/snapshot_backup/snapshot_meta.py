"""Decode ``meta.json`` exactly as Consul does: Go's ``encoding/json`` into Raft's ``SnapshotMeta``.

Python's ``json`` is looser than Go's decoder into typed fields, and an archive
whose metadata Consul cannot decode cannot be restored. Go's rules, as applied here:

- strict JSON: no ``NaN``/``Infinity``, no byte-order mark (``invalid character``);
- ``Index``, ``Term``, ``ConfigurationIndex`` are ``uint64``, ``Size`` is ``int64``,
  ``Version`` and each server's ``Suffrage`` are ``int``: a JSON number written
  without fraction or exponent and in range; ``13.0``, ``1.3e1``, ``"13"``,
  ``true``, ``-1`` for an unsigned field or ``2^64`` are refused. Go reads an
  unsigned field with ``strconv.ParseUint``, which takes no sign at all, so
  ``-0`` is refused there too; a signed one with ``ParseInt``, which reads
  ``-0`` as 0 (``encoding/json``, ``decodeState.literalStore``);
- ``ID`` and each server's ``ID`` and ``Address`` are strings; ``Peers`` is
  base64 text (or an array of bytes); ``Configuration`` is ``{"Servers": [...]}``;
- ``null`` leaves a field at its zero value, as does a missing field; unknown
  fields are ignored; field names match case-insensitively;
- a document of ``null`` leaves the whole metadata at zero (Consul decodes into
  a pointer); syntax errors win over type errors, and of type errors the first
  in the document is reported.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

META_STRUCT = "SnapshotMeta"
# encoding/json refuses arrays and objects nested deeper than this.
GO_MAX_DEPTH = 10_000
UINT64_MAX = (1 << 64) - 1
INT64_RANGE = (-(1 << 63), (1 << 63) - 1)
# The snapshot versions Raft restores (hashicorp/raft config.go, SnapshotVersionMin
# and SnapshotVersionMax); restoreUserSnapshot refuses any other before reading a byte.
SNAPSHOT_VERSION_MIN, SNAPSHOT_VERSION_MAX = 0, 1
_JSON_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)\Z")
_BASE64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


class MetaDecodeError(Exception):
    """``meta.json`` is not what Consul can decode; the message is Go's."""


class MetaTooDeepError(MetaDecodeError):
    """Nesting deeper than Python's parser goes (Go's limit is deeper still)."""


@dataclass(frozen=True)
class SnapshotMeta:
    """The Raft metadata recorded in ``meta.json``."""

    index: int = 0
    term: int = 0
    id: str = ""
    size: int = 0
    version: int = 0
    configuration_index: int = 0


@dataclass(frozen=True)
class _Number:
    """A JSON number as written, so that its spelling can be judged as Go judges it."""

    text: str


@dataclass(frozen=True)
class _Object:
    """A JSON object as its key/value pairs in document order (duplicates kept)."""

    pairs: list[tuple[str, Any]]


def decode_meta(raw: bytes) -> SnapshotMeta:
    """The metadata in ``raw``, or ``MetaDecodeError`` with the words Go's decoder uses."""
    text = raw.decode("utf-8", "replace")  # Go replaces invalid UTF-8 in strings too
    if text.startswith("\ufeff"):
        raise MetaDecodeError("invalid character 'ï' looking for beginning of value")
    try:
        doc = json.loads(
            text,
            parse_int=_Number,
            parse_float=_Number,
            parse_constant=_refuse_constant,
            object_pairs_hook=_Object,
        )
    except RecursionError as exc:
        if _nesting_depth(text) > GO_MAX_DEPTH:
            raise MetaDecodeError("invalid character '[' exceeded max depth") from exc
        raise MetaTooDeepError(
            f"meta.json nests deeper than this verifier reads (Go reads {GO_MAX_DEPTH} levels)"
        ) from exc
    except json.JSONDecodeError as exc:
        raise MetaDecodeError(f"invalid JSON: {exc}") from exc
    if doc is None:
        return SnapshotMeta()
    decoder = _Decoder()
    fields = decoder.struct(doc, _META_FIELDS, path="", type_name="raft.SnapshotMeta")
    if decoder.error is not None:
        raise MetaDecodeError(decoder.error)
    return SnapshotMeta(
        index=fields.get("Index", 0),
        term=fields.get("Term", 0),
        id=fields.get("ID", ""),
        size=fields.get("Size", 0),
        version=fields.get("Version", 0),
        configuration_index=fields.get("ConfigurationIndex", 0),
    )


def unsupported_version(meta: SnapshotMeta) -> str | None:
    """Raft's refusal of ``meta``'s version on restore, in Raft's words; None when supported.

    Not a decoding error: Go decodes any ``int``, and ``consul snapshot save``
    and ``inspect`` pass such an archive. Raft refuses it only on restore,
    after Consul has read and checked the whole archive (``restoreUserSnapshot``
    in hashicorp/raft raft.go; Consul adds ``Raft error when restoring snapshot:``).
    """
    if SNAPSHOT_VERSION_MIN <= meta.version <= SNAPSHOT_VERSION_MAX:
        return None
    return f"unsupported snapshot version {meta.version}"


def _nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in ``text``, strings skipped."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    # What Go's scanner says at the first character it cannot take.
    where = "in numeric literal" if name.startswith("-") else "looking for beginning of value"
    raise MetaDecodeError(f"invalid character {name.lstrip('-')[0]!r} {where}")


def _kind(value: Any) -> str:
    """The word Go's error uses for a JSON value of the wrong type."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, _Number):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _fold(name: str) -> str:
    """Go's case-insensitive field-name match."""
    return "".join(c.lower().upper() if len(c.lower().upper()) == 1 else c for c in name)


class _Decoder:
    """Walks a parsed document against Go types, keeping the first error as Go does."""

    def __init__(self) -> None:
        self.error: str | None = None

    def fail(self, value: str, path: str, type_name: str) -> None:
        if self.error is not None:
            return
        where = f"Go struct field {META_STRUCT}.{path}" if path else "Go value"
        self.error = f"json: cannot unmarshal {value} into {where} of type {type_name}"

    def fail_with(self, message: str) -> None:
        if self.error is None:
            self.error = message

    def struct(
        self, value: Any, fields: dict[str, _Field], path: str, type_name: str
    ) -> dict[str, Any]:
        decoded: dict[str, Any] = {}
        if value is None:
            return decoded
        if not isinstance(value, _Object):
            self.fail(_kind(value), path, type_name)
            return decoded
        folded = {_fold(name): name for name in fields}
        for key, item in value.pairs:
            name = key if key in fields else folded.get(_fold(key))
            if name is None:
                continue  # unknown fields are ignored
            field_path = f"{path}.{name}" if path else name
            result = fields[name].decode(self, item, field_path)
            if result is not _UNSET:
                decoded[name] = result
        return decoded

    def integer(self, value: Any, path: str, type_name: str, low: int, high: int) -> Any:
        if value is None:
            return _UNSET
        if not isinstance(value, _Number):
            self.fail(_kind(value), path, type_name)
            return _UNSET
        unsigned_with_sign = low >= 0 and value.text.startswith("-")  # ParseUint("-0") fails
        if (
            not _JSON_INTEGER.match(value.text)
            or unsigned_with_sign
            or not low <= int(value.text) <= high
        ):
            self.fail(f"number {value.text}", path, type_name)
            return _UNSET
        return int(value.text)

    def string(self, value: Any, path: str, type_name: str) -> Any:
        if value is None:
            return _UNSET
        if not isinstance(value, str):
            self.fail(_kind(value), path, type_name)
            return _UNSET
        return value

    def byte_slice(self, value: Any, path: str, type_name: str) -> Any:
        if value is None:
            return _UNSET
        if isinstance(value, str):
            problem = _base64_problem(value.encode("utf-8", "surrogatepass"))
            if problem is not None:
                self.fail_with(f"illegal base64 data at input byte {problem}")
            return _UNSET
        if isinstance(value, list):
            for item in value:
                self.integer(item, path, "uint8", 0, 255)
            return _UNSET
        self.fail(_kind(value), path, type_name)
        return _UNSET

    def servers(self, value: Any, path: str, type_name: str) -> Any:
        if value is None:
            return _UNSET
        if not isinstance(value, list):
            self.fail(_kind(value), path, type_name)
            return _UNSET
        for item in value:
            self.struct(item, _SERVER_FIELDS, path, "raft.Server")
        return _UNSET


_UNSET = object()


@dataclass(frozen=True)
class _Field:
    """One Go struct field: how to decode it, and the type Go's errors name."""

    type_name: str
    kind: str  # uint64, int64, string, bytes, configuration, servers

    def decode(self, decoder: _Decoder, value: Any, path: str) -> Any:
        match self.kind:
            case "uint64":
                return decoder.integer(value, path, self.type_name, 0, UINT64_MAX)
            case "int64":
                return decoder.integer(value, path, self.type_name, *INT64_RANGE)
            case "string":
                return decoder.string(value, path, self.type_name)
            case "bytes":
                return decoder.byte_slice(value, path, self.type_name)
            case "servers":
                return decoder.servers(value, path, self.type_name)
            case _:  # configuration
                decoder.struct(value, _CONFIGURATION_FIELDS, path, self.type_name)
                return _UNSET


# hashicorp/raft's SnapshotMeta, Configuration and Server, field by field.
_META_FIELDS = {
    "Version": _Field("raft.SnapshotVersion", "int64"),
    "ID": _Field("string", "string"),
    "Index": _Field("uint64", "uint64"),
    "Term": _Field("uint64", "uint64"),
    "Peers": _Field("[]uint8", "bytes"),
    "Configuration": _Field("raft.Configuration", "configuration"),
    "ConfigurationIndex": _Field("uint64", "uint64"),
    "Size": _Field("int64", "int64"),
}
_CONFIGURATION_FIELDS = {"Servers": _Field("[]raft.Server", "servers")}
_SERVER_FIELDS = {
    "Suffrage": _Field("raft.ServerSuffrage", "int64"),
    "ID": _Field("raft.ServerID", "string"),
    "Address": _Field("raft.ServerAddress", "string"),
}


def _base64_problem(data: bytes) -> int | None:
    """Where Go's ``base64.StdEncoding`` fails on ``data``, or ``None`` if it decodes.

    Go skips CR and LF anywhere; the rest must be whole four-character quanta
    of the standard alphabet, with ``=`` padding only at the very end.
    """
    positions = [i for i, byte in enumerate(data) if byte not in b"\r\n"]
    symbols = bytes(data[i] for i in positions)
    body = symbols.rstrip(b"=")
    for offset, byte in enumerate(body):
        if byte not in _BASE64_ALPHABET:
            return positions[offset]
    if len(symbols) - len(body) > 2 or len(symbols) % 4:
        return positions[-1]
    return None
