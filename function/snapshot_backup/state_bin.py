"""Decode Consul's ``state.bin`` while it streams past, as Consul's restore decodes it.

Consul's archive reader takes any bytes as ``state.bin``; the decoding happens
later, in Raft's restore (``agent/consul/fsm/fsm.go``: ``Restore`` and
``ReadSnapshot``), where an empty or garbage state fails, and on a user restore
the leader panics (hashicorp/raft ``raft.go``: ``failed to restore snapshot``).
``StateDecoder`` applies those rules in the same single pass as the archive's
checks, fed the chunks of ``state.bin`` as the tar reader hands them over, and
builds what ``consul snapshot inspect`` prints, and a little more.

Layout (``agent/consul/fsm/snapshot.go`` ``Persist``, ``fsm.go`` ``ReadSnapshot``):
one msgpack value, the header ``{"LastIndex": <uint>}``; then records until the
end, each one raw byte (the message type) and exactly one msgpack value. A
clean end is the end of the bytes exactly where a type byte would start.

Encoding: hashicorp's go-msgpack 0.5.5 (``consul-net-rpc/go-msgpack``, the same
code) with Consul's handle (``agent/structs``: ``RawToString``, maps as
``map[string]interface{}``, no ``WriteExt``): Go structs are maps keyed by field
name, strings and ``[]byte`` are raw strings (fixstr, str16, str32; never str8
or bin), often not UTF-8, so keys and values are handled as bytes.

What is refused (``StateError``), in Consul's words where Consul has words:

- no header, or a header that does not decode into ``SnapshotHeader``;
- the end of the bytes inside a header or a record. The codec reads in units (a
  descriptor byte, a length or number field, a string's payload) with
  ``io.ReadAtLeast``: a unit of which nothing arrived is ``EOF``, one cut inside
  is ``unexpected EOF`` (Raft's readers are not ``io.ByteReader``s, so this
  holds for single bytes too);
- bytes that are not a msgpack value: the reserved byte ``0xc1``;
- a message type no Consul restores from a snapshot (``Unrecognized msg type N``):
  the log-only operations 1, 8, 18, 20, 24, 26, 28, 36, 37, 39, and, by the same
  reading of Consul's source, 21 ``ConnectCALeaf`` (a leaf-signing index bump,
  ``applyConnectCALeafOperation`` only), 34 ``KindServiceName`` (the
  ``kind-service-names`` table is rebuilt from service registrations; no
  persister or restorer exists), 41 ``RaftLogVerifierCheckpoint`` ("Only used
  for log verifier, no-op on FSM") and 43 (``applyManualVirtualIPs`` only): none
  is registered with ``registerRestorer`` in ``snapshot_ce.go`` nor in the older
  ``snapshot_oss.go``, and no persister writes one;
- for the records this module interprets (``Register``, ``KVS``, ``Tombstone``)
  and the header, a value that does not decode into Consul's struct:
  ``RegisterRequest``, ``DirEntry``, ``SnapshotHeader`` (``codec.decoder: ...``).
  Their top-level fields are type-checked as Go's codec checks them.

Limits, stated: nested structures (a ``Service``'s fields, ``NodeMeta``'s
entries) and the records of other types are checked as well-formed msgpack,
not against their Go types, so a few values Consul cannot decode pass here (a
map keyed by an array, a string where a nested field wants a number). The text
for 0xc1 depends on the Go type it lands in; outside the interpreted fields
this module words it as for a struct (a record's value) or an ``interface{}``
(anything nested).

Types a newer Consul CE writes (44 to 63), Consul Enterprise's (64 and above)
and types older versions restored (4 legacy ``ACL``, 11 ``ACLBootstrap``; 10
``Area`` is Enterprise's) are counted, and named in ``compatibility_notes``:
such a state restores only into a Consul that knows them.

``StricterStateError`` marks what Consul would take but its writer never
writes; each rule says why where it is raised (see ``StricterStateError``).
msgpack ext values are among them: Consul's handle registers no extension.

Speed: records that lie whole in a chunk are walked by a fast path (table
dispatch, no per-token calls, no bounds checks: running past the chunk's end
raises ``IndexError`` or overshoots, and the record is handed on). The header,
the first record, records cut by a chunk boundary and anything unusual go to a
resumable reader that follows the rules above unit by unit; the fast path only
ever accepts what that reader accepts. Large strings are skipped by length and
never held: memory stays flat whatever the state's size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "DEFAULT_KV_DEPTH",
    "DEFAULT_MAX_KV_PREFIXES",
    "MAX_CAPTURED_STRING",
    "STATE_SUMMARY_FORMAT",
    "StateDecoder",
    "StateDetails",
    "StateError",
    "StateSummary",
    "StricterStateError",
    "Usage",
    "key_text",
    "message_type_name",
    "summarize_state",
]

DEFAULT_KV_DEPTH = 2  # consul snapshot inspect's -kvdepth default
DEFAULT_MAX_KV_PREFIXES = 1000
# Keys, node names and service IDs are held in memory; longer ones are refused
# (StricterStateError). Consul's HTTP API takes a key in the URL, which Go's
# server caps at 1 MB of request line and headers.
MAX_CAPTURED_STRING = 1 << 20
# A KV prefix as a summary keeps it, at most: longer ones are cut and tagged.
MAX_PREFIX_BYTES = 256
STATE_SUMMARY_FORMAT = 1
DIGEST_BYTES = 16  # blake2b-128 of each KV value, in details mode

# Message types and the names ``consul snapshot inspect`` prints
# (agent/structs/structs.go: requestTypeStrings; MessageType.String gives
# "Unknown(N)" for the rest, 37 included).
_TYPE_NAMES = {
    0: "Register",
    1: "Deregister",
    2: "KVS",
    3: "Session",
    4: "ACL",
    5: "Tombstone",
    6: "CoordinateBatchUpdate",
    7: "PreparedQuery",
    8: "Txn",
    9: "Autopilot",
    10: "Area",
    11: "ACLBootstrap",
    12: "Intention",
    13: "ConnectCA",
    14: "ConnectCAProviderState",
    15: "ConnectCAConfig",
    16: "Index",
    17: "ACLToken",
    18: "ACLTokenDelete",
    19: "ACLPolicy",
    20: "ACLPolicyDelete",
    21: "ConnectCALeaf",
    22: "ConfigEntry",
    23: "ACLRole",
    24: "ACLRoleDelete",
    25: "ACLBindingRule",
    26: "ACLBindingRuleDelete",
    27: "ACLAuthMethod",
    28: "ACLAuthMethodDelete",
    29: "ChunkingState",
    30: "FederationState",
    31: "SystemMetadata",
    32: "ServiceVirtualIP",
    33: "FreeVirtualIP",
    34: "KindServiceName",
    35: "Peering",
    36: "PeeringDelete",
    38: "PeeringTrustBundle",
    39: "PeeringTrustBundleDelete",
    40: "PeeringSecret",
    41: "RaftLogVerifierCheckpoint",
    42: "Resource",
    43: "UpdateManualVirtualIPRequestType",
}
REGISTER, KVS, TOMBSTONE = 0, 2, 5
# Restored by Consul CE today (snapshot_ce.go registerRestorer; 29 and 42 in fsm.go Restore).
# fmt: off
_RESTORED = frozenset({
    0, 2, 3, 5, 6, 7, 9, 12, 13, 14, 15, 16, 17, 19, 22, 23, 25, 27, 29, 30, 31, 32, 33, 35, 38,
    40, 42,
})
# fmt: on
_REFUSED = frozenset({1, 8, 18, 20, 21, 24, 26, 28, 34, 36, 37, 39, 41, 43})
_OLDER_CONSUL = {
    4: "the legacy ACL system's tokens, restored by Consul versions before its removal",
    11: "the legacy ACL bootstrap marker, restored by Consul versions before its removal",
    10: "network areas, restored by Consul Enterprise",
}
FIRST_NEWER_CE_TYPE, FIRST_ENTERPRISE_TYPE = 44, 64
# Summary counts read off the record counts.
_COUNTED_TYPES = {
    "tombstones": 5,
    "sessions": 3,
    "prepared_queries": 7,
    "intentions": 12,
    "ca_roots": 13,
    "acl_tokens": 17,
    "acl_policies": 19,
    "config_entries": 22,
    "acl_roles": 23,
    "acl_binding_rules": 25,
    "acl_auth_methods": 27,
    "peerings": 35,
}

# What the decoder does with each type byte.
A_GENERIC, A_COMPAT, A_REFUSED, A_DIR_ENTRY, A_REGISTER = range(5)
_ACTION = [A_COMPAT] * 256
for _t in _RESTORED:
    _ACTION[_t] = A_GENERIC
for _t in _REFUSED:
    _ACTION[_t] = A_REFUSED
_ACTION[KVS] = _ACTION[TOMBSTONE] = A_DIR_ENTRY
_ACTION[REGISTER] = A_REGISTER


def message_type_name(msg_type: int) -> str:
    """The name ``consul snapshot inspect`` prints for a message type."""
    return _TYPE_NAMES.get(msg_type, f"Unknown({msg_type})")


# --- msgpack tokens -------------------------------------------------------------------------

# Total bytes of every token whose size its first byte tells (fixints, nil, bools,
# fixed-width numbers, fixstr, empty fixmap/fixarray); 0 for the others.
_SIZES = bytearray(256)
for _b in (*range(0x00, 0x80), *range(0xE0, 0x100), 0xC0, 0xC2, 0xC3, 0x80, 0x90):
    _SIZES[_b] = 1
for _b, _size in ((0xCC, 2), (0xCD, 3), (0xCE, 5), (0xCF, 9), (0xD0, 2), (0xD1, 3)):
    _SIZES[_b] = _size
for _b, _size in ((0xD2, 5), (0xD3, 9), (0xCA, 5), (0xCB, 9)):
    _SIZES[_b] = _size
for _b in range(0xA0, 0xC0):
    _SIZES[_b] = 1 + _b - 0xA0
_TOKEN_SIZE = bytes(_SIZES)
_STR_FAMILY = frozenset((*range(0xA0, 0xC0), 0xD9, 0xDA, 0xDB))
_BIN_FAMILY = frozenset((0xC4, 0xC5, 0xC6))
_MAPS = frozenset((*range(0x80, 0x90), 0xDE, 0xDF))
_ARRAYS = frozenset((*range(0x90, 0xA0), 0xDC, 0xDD))
_EXTS = frozenset((0xC7, 0xC8, 0xC9, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8))
_RESERVED = 0xC1
_NIL = 0xC0
# Length field widths of str8/16/32, bin8/16/32, array16/32, map16/32.
_LENGTH_BYTES = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4, 0xDC: 2, 0xDD: 4}
_LENGTH_BYTES.update({0xDE: 2, 0xDF: 4})


def _value_type(b: int) -> int:
    """go-msgpack's ``currentEncodedType`` of a descriptor (helper.go valueType numbers)."""
    if b == _NIL:
        return 1
    if b < 0x80 or b >= 0xE0 or 0xD0 <= b <= 0xD3:
        return 2  # int
    if 0xCC <= b <= 0xCF:
        return 3  # uint
    if b in (0xCA, 0xCB):
        return 4  # float
    if b in (0xC2, 0xC3):
        return 5  # bool
    if b in _STR_FAMILY:
        return 6  # string (RawToString)
    if b in _BIN_FAMILY:
        return 8
    if b in _MAPS:
        return 9
    if b in _ARRAYS:
        return 10
    return 12  # ext


# go-msgpack 0.5.5's decode errors (decode.go, msgpack.go), as Decode returns them.
_BAD = "Unrecognized descriptor byte"


def _undeciphered(b: int) -> str:
    return (
        f"codec.decoder: currentEncodedType: Undeciphered descriptor: {_BAD}: hex: {b:x}, dec: {b}"
    )


def _naked(b: int) -> str:
    return f"codec.decoder: Nil-Deciphered DecodeValue: {_BAD}: hex: {b:x}, dec: {b}"


def _not_struct(b: int) -> str:
    if b == _RESERVED:
        return _undeciphered(b)
    return (
        "codec.decoder: Only encoded map or array can be decoded into a struct. "
        f"(valueType: {_value_type(b):x})"
    )


def _not_slice(b: int) -> str:
    if b == _RESERVED:
        return _undeciphered(b)
    return (
        "codec.decoder: Only encoded map or array can be decoded into a slice. "
        f"(valueType: {_value_type(b):x})"
    )


def _container_len(b: int) -> str:
    return f"codec.decoder: readContainerLen: {_BAD}: hex: {b:x}, dec: {b}"


def _not_uint(b: int) -> str:
    return f"codec.decoder: Unhandled single-byte unsigned integer value: {_BAD}: {b:x}"


def _negative(value: int) -> str:
    return f"codec.decoder: Assigning negative signed value: {value}, to unsigned type"


def _not_bool(b: int) -> str:
    return f"codec.decoder: Invalid single-byte value for bool: {_BAD}: {b:x}"


# --- errors ---------------------------------------------------------------------------------


class StateError(Exception):
    """``state.bin`` is not a state Consul's restore loads.

    ``consul_words`` is the error Consul's FSM restore returns for it, exactly
    (Raft wraps it as ``failed to restore snapshot: ...``); ``str()`` adds where
    it happened. ``offset`` is the byte of ``state.bin`` the problem is at.
    """

    def __init__(self, consul_words: str | None, where: str, offset: int) -> None:
        self.consul_words = consul_words
        self.where = where
        self.offset = offset
        super().__init__(f"{consul_words} ({where})" if consul_words else where)


class StricterStateError(StateError):
    """Consul would restore this state (or misread it), but its writer never writes it.

    Refused so that a stored state is one a real Consul wrote:

    - a missing header ``LastIndex`` (or ``nil``), a ``nil`` header or record, a
      struct written as an array: Consul would load zero values, or fields by
      position; its encoder writes every struct as a map of all its fields;
    - a ``KVS``/``Tombstone`` record without a ``Key``: Consul would store the
      empty key;
    - a msgpack ext value anywhere: Consul's handle writes none, and its decoder
      takes one only where a field is ``interface{}``;
    - bytes Consul's codec would misread rather than refuse: a negative fixint
      where a string is expected (read as a string of 64 to 95 bytes), a
      non-map byte of 0x80 or above, or 0, where ``map[string]string`` is
      expected (read as a map of that many entries), an array or map where
      ``[]byte`` is expected (read as bytes one by one), a map where the
      ``Checks`` list is expected, a ``nil`` struct key or ``Checks`` entry
      (``nil`` checks are dereferenced when restored);
    - a key, node name or service ID longer than ``MAX_CAPTURED_STRING``: this
      decoder holds those in memory; Consul's API takes none that long.
    """

    def __init__(self, reason: str, where: str, offset: int) -> None:
        super().__init__(None, f"{reason}; {where}", offset)


# --- the summary ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """A number of records and the bytes they took."""

    count: int = 0
    bytes: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"count": self.count, "bytes": self.bytes}

    @classmethod
    def from_dict(cls, raw: Any) -> Usage:
        if not isinstance(raw, Mapping) or set(raw) != {"count", "bytes"}:
            raise ValueError(f"not a usage ({{'count', 'bytes'}}): {raw!r}")
        return cls(count=_count(raw["count"], "count"), bytes=_count(raw["bytes"], "bytes"))


def _count(value: Any, name: str) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
    return value


def key_text(raw: bytes) -> str:
    """A key (bytes, often UTF-8) as text that tells every key apart.

    UTF-8 decodes as such; any other byte becomes ``\\xNN`` and a literal
    backslash is doubled, so two different keys never share a text.
    """
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


_SUMMARY_COUNTS = (
    "last_index",
    "state_bytes",
    "header_bytes",
    "nodes",
    "service_instances",
    "checks",
    "kv_entries",
    "kv_bytes",
    *_COUNTED_TYPES,
)


@dataclass(frozen=True)
class StateSummary:
    """What a state holds: ``consul snapshot inspect``'s table and the catalog's counts.

    ``records`` maps each type name to its record count and bytes, counted as
    inspect counts them: a record's type byte and its value, and the first
    record also carries the header's bytes (inspect's counter starts before
    the header). ``kv_prefixes`` groups KV keys (``KVS`` records only) by their
    first ``kv_depth`` ``/``-separated segments as ``inspect -kvdetails`` does
    (a key with fewer segments is its own prefix), only keys starting with
    ``kv_filter``; its ``bytes`` are the records' bytes, as inspect's are, while
    ``kv_bytes`` sums the values alone. The first ``max_kv_prefixes`` distinct
    prefixes met are kept (Consul writes keys in order: the alphabetically
    first), the rest add up in ``kv_prefixes_other`` and ``kv_prefixes_truncated``
    is set. Prefixes and the filter are ``key_text``.
    """

    last_index: int
    state_bytes: int
    header_bytes: int
    records: dict[str, Usage]
    nodes: int
    service_instances: int
    checks: int
    kv_entries: int
    kv_bytes: int
    kv_depth: int
    kv_filter: str | None
    kv_prefixes: dict[str, Usage]
    kv_prefixes_other: Usage
    kv_prefixes_truncated: bool
    tombstones: int
    sessions: int
    prepared_queries: int
    intentions: int
    ca_roots: int
    acl_tokens: int
    acl_policies: int
    config_entries: int
    acl_roles: int
    acl_binding_rules: int
    acl_auth_methods: int
    peerings: int
    compatibility_notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, with stable keys (``format`` versions the shape)."""
        document: dict[str, Any] = {name: getattr(self, name) for name in _SUMMARY_COUNTS}
        document.update(
            format=STATE_SUMMARY_FORMAT,
            records={name: u.to_dict() for name, u in sorted(self.records.items())},
            kv_depth=self.kv_depth,
            kv_filter=self.kv_filter,
            kv_prefixes={name: u.to_dict() for name, u in sorted(self.kv_prefixes.items())},
            kv_prefixes_other=self.kv_prefixes_other.to_dict(),
            kv_prefixes_truncated=self.kv_prefixes_truncated,
            compatibility_notes=list(self.compatibility_notes),
        )
        return document

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> StateSummary:
        """The inverse of ``to_dict``; ``ValueError`` for anything it would not write."""
        expected = set(_SUMMARY_COUNTS) | {
            "format", "records", "kv_depth", "kv_filter", "kv_prefixes",
            "kv_prefixes_other", "kv_prefixes_truncated", "compatibility_notes",
        }  # fmt: skip
        if not isinstance(raw, Mapping) or set(raw) != expected:
            keys = sorted(raw) if isinstance(raw, Mapping) else raw
            raise ValueError(f"not a state summary: keys {keys!r}")
        if raw["format"] != STATE_SUMMARY_FORMAT:
            raise ValueError(
                f"state summary format {raw['format']!r} is not {STATE_SUMMARY_FORMAT}"
            )
        counts = {name: _count(raw[name], name) for name in _SUMMARY_COUNTS}
        kv_filter, notes = raw["kv_filter"], raw["compatibility_notes"]
        if kv_filter is not None and not isinstance(kv_filter, str):
            raise ValueError(f"kv_filter must be text or null, not {kv_filter!r}")
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise ValueError(f"compatibility_notes must be a list of text, not {notes!r}")
        if type(raw["kv_prefixes_truncated"]) is not bool:
            raise ValueError("kv_prefixes_truncated must be true or false")
        return cls(
            **counts,
            records=_usages(raw["records"], "records"),
            kv_depth=_count(raw["kv_depth"], "kv_depth"),
            kv_filter=kv_filter,
            kv_prefixes=_usages(raw["kv_prefixes"], "kv_prefixes"),
            kv_prefixes_other=Usage.from_dict(raw["kv_prefixes_other"]),
            kv_prefixes_truncated=raw["kv_prefixes_truncated"],
            compatibility_notes=tuple(notes),
        )


def _usages(raw: Any, name: str) -> dict[str, Usage]:
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) for k in raw):
        raise ValueError(f"{name} must map text to usages, not {raw!r}")
    return {key: Usage.from_dict(value) for key, value in raw.items()}


@dataclass
class StateDetails:
    """What ``consul-backup diff`` compares; never the values themselves (they hold secrets).

    ``kv``: each KV key (bytes) to the blake2b-128 digest of its value and the
    value's size; ``services``: (node, service ID) of every service instance;
    ``nodes``: every node name registered.
    """

    kv: dict[bytes, tuple[bytes, int]] = field(default_factory=dict)
    services: set[tuple[bytes, bytes]] = field(default_factory=set)
    nodes: set[bytes] = field(default_factory=set)


# --- the structs interpreted ----------------------------------------------------------------

# Field kinds, as go-msgpack decodes into the Go field's type.
K_ANY, K_UINT, K_STR, K_BOOL, K_MAP, K_STRUCT, K_CHECKS, K_BYTES, K_CAPTURE = range(9)
# Facts one record yields, by slot.
S_KEY, S_VALUE_LEN, S_VALUE_DIGEST, S_NODE, S_SERVICE, S_SERVICE_ID = range(6)
S_CHECK, S_CHECKS, S_LAST_INDEX, S_VALUE_POS, S_IGNORED = range(6, 11)
_NO_FACTS: list[Any] = [None, 0, None, None, 0, None, 0, 0, None, -1, None]


def _schema(fields: dict[str, tuple[int, int]]) -> dict[bytes, int]:
    """Field name (bytes) to ``kind | slot << 4``."""
    return {name.encode(): kind | slot << 4 for name, (kind, slot) in fields.items()}


_UINT = (K_UINT, S_IGNORED)
_STR = (K_STR, S_IGNORED)
# SnapshotHeader (fsm/snapshot.go).
_HEADER = _schema({"LastIndex": (K_CAPTURE, S_LAST_INDEX)})
# structs.DirEntry with CE's empty EnterpriseMeta and RaftIndex inlined.
_DIR_ENTRY = _schema(
    {
        "CreateIndex": _UINT,
        "Flags": _UINT,
        "Key": (K_CAPTURE, S_KEY),
        "LockIndex": _UINT,
        "ModifyIndex": _UINT,
        "Session": _STR,
        "Value": (K_BYTES, S_VALUE_LEN),
    }
)
# structs.RegisterRequest with EnterpriseMeta, WriteRequest and RaftIndex inlined.
_REGISTER = _schema(
    {
        "Address": _STR,
        "Check": (K_STRUCT, S_CHECK),
        "Checks": (K_CHECKS, S_CHECKS),
        "CreateIndex": _UINT,
        "Datacenter": _STR,
        "ID": _STR,
        "Locality": (K_STRUCT, S_IGNORED),
        "ModifyIndex": _UINT,
        "Node": (K_CAPTURE, S_NODE),
        "NodeMeta": (K_MAP, S_IGNORED),
        "PeerName": _STR,
        "Service": (K_STRUCT, S_SERVICE),
        "SkipNodeUpdate": (K_BOOL, S_IGNORED),
        "TaggedAddresses": (K_MAP, S_IGNORED),
        "Token": _STR,
    }
)
# The one field of structs.NodeService read, in details mode.
_NODE_SERVICE = _schema({"ID": (K_CAPTURE, S_SERVICE_ID)})
# Outside details mode the node's name is only checked to be a string.
_SCHEMAS = {
    True: {A_DIR_ENTRY: _DIR_ENTRY, A_REGISTER: _REGISTER},
    False: {A_DIR_ENTRY: _DIR_ENTRY, A_REGISTER: {**_REGISTER, b"Node": K_STR | S_IGNORED << 4}},
}


@dataclass(frozen=True)
class _FastSchema:
    """A schema as the fast path reads it: fields as fixstr tokens, in Consul's order.

    go-msgpack writes a struct's fields sorted by name; the fast path expects
    the next one in that order and confirms it with one ``startswith`` (the
    token carries its length, so a match is exact), and looks the name up only
    when the expectation fails. ``order[i]`` packs the i-th field's code and
    token length; the last entry matches nothing.
    """

    tokens: tuple[bytes, ...]
    order: tuple[int, ...]
    by_token: dict[bytes, tuple[int, int]]  # token -> (code, index of the next field)

    @classmethod
    def of(cls, schema: dict[bytes, int]) -> _FastSchema:
        names = sorted(schema)
        tokens = tuple(bytes([0xA0 | len(name)]) + name for name in names)
        return cls(
            tokens=(*tokens, b"\xc1"),
            order=(*(schema[n] | len(t) << 8 for n, t in zip(names, tokens, strict=True)), 0),
            by_token={
                t: (schema[n], i + 1) for i, (n, t) in enumerate(zip(names, tokens, strict=True))
            },
        )


_FAST_SCHEMAS = {
    details: {action: _FastSchema.of(schema) for action, schema in schemas.items()}
    for details, schemas in _SCHEMAS.items()
}
_FAST_NODE_SERVICE = _FastSchema.of(_NODE_SERVICE)
_LONGEST_FIELD = max(len(name) for s in (_HEADER, *_SCHEMAS[True].values()) for name in s)


def _table(*accepted: Iterable[int]) -> bytes:
    row = bytearray(256)
    for group in accepted:
        for b in group:
            row[b] = 1
    return bytes(row)


# Per field code, the descriptors the fast path takes whole by ``_TOKEN_SIZE``, with
# nothing to capture or record. nil is whole for every kind: the facts start at what
# nil means (no key, no service, no checks, an empty value), and the fast path takes
# each field once at most.
_FAST_WHOLE_BY_KIND = {
    K_UINT: _table(range(0x80), range(0xCC, 0xD0), (_NIL,)),
    K_STR: _table(range(0xA0, 0xC0), (_NIL,)),
    K_BOOL: _table((0xC2, 0xC3), (_NIL,)),
}
_FAST_WHOLE = [_FAST_WHOLE_BY_KIND.get(code & 15, _table((_NIL,))) for code in range(16 * 16)]
_STRINGY = (K_STR, K_CAPTURE, K_BYTES)


# --- the fast path: whole records in one chunk ----------------------------------------------


def _skip_value(buf: bytes, pos: int, pending: int = 1) -> int:
    """The end of the ``pending`` msgpack values at ``pos``; -1 for an ext or 0xc1.

    One counter of values still to read replaces a stack: each token uses one,
    a container adds its children. Past the end of ``buf`` it raises
    ``IndexError`` or returns a position beyond it. (The slow path judges what
    -1 stands for.)
    """
    size = _TOKEN_SIZE
    while pending:
        b = buf[pos]
        pending -= 1
        s = size[b]
        if s:
            pos += s
        elif b < 0x90:
            pending += (b - 0x80) << 1
            pos += 1
        elif b < 0xA0:
            pending += b - 0x90
            pos += 1
        elif b == 0xDA or b == 0xC5:
            pos += 3 + (buf[pos + 1] << 8 | buf[pos + 2])
        elif b == 0xDE:
            pending += (buf[pos + 1] << 8 | buf[pos + 2]) << 1
            pos += 3
        elif b == 0xDC:
            pending += buf[pos + 1] << 8 | buf[pos + 2]
            pos += 3
        elif b == 0xD9 or b == 0xC4:
            pos += 2 + buf[pos + 1]
        elif b == 0xDB or b == 0xC6:
            pos += 5 + int.from_bytes(buf[pos + 1 : pos + 5])
        elif b == 0xDD:
            pending += int.from_bytes(buf[pos + 1 : pos + 5])
            pos += 5
        elif b == 0xDF:
            pending += int.from_bytes(buf[pos + 1 : pos + 5]) << 1
            pos += 5
        else:
            return -1
    return pos


def _fast_struct(buf: bytes, pos: int, schema: _FastSchema, facts: list[Any]) -> int:
    """Walk a struct map with fixstr field names; -1 for anything the slow path must judge.

    The common cases are inline: a call per field would cost more than the field.
    """
    b = buf[pos]
    if b == 0xDE:
        entries, pos = buf[pos + 1] << 8 | buf[pos + 2], pos + 3
    elif 0x80 <= b <= 0x8F:
        entries, pos = b - 0x80, pos + 1
    else:
        return -1
    size, whole, tokens, order = _TOKEN_SIZE, _FAST_WHOLE, schema.tokens, schema.order
    expect = 0
    while entries:
        entries -= 1
        if buf.startswith(tokens[expect], pos):
            code = order[expect]
            pos += code >> 8
            code &= 255
            expect += 1
        else:
            pos, code, expect = _fast_unexpected(buf, pos, schema, expect)
            if pos < 0:
                return -1
        b = buf[pos]
        if whole[code][b]:
            pos += size[b]
            continue
        kind = code & 15
        if 0x81 <= b <= 0x8F and (
            kind == K_MAP or (kind == K_STRUCT and facts[S_SERVICE_ID] is None)
        ):
            # A small map: its self-sized tokens inline, a call only for what is left.
            if kind == K_STRUCT:
                facts[code >> 4] = 1  # not in details mode: nothing inside to read
            left = (b - 0x80) << 1
            pos += 1
            while left and (s := size[buf[pos]]):
                pos += s
                left -= 1
            if left:
                pos = _skip_value(buf, pos, left)
        elif kind == K_ANY:
            pos = _skip_value(buf, pos)
        elif kind in _STRINGY and (0xA0 <= b <= 0xBF or b == 0xDA):
            length, pos = (
                (b - 0xA0, pos + 1) if b != 0xDA else (buf[pos + 1] << 8 | buf[pos + 2], pos + 3)
            )
            if kind == K_BYTES:
                facts[S_VALUE_LEN], facts[S_VALUE_POS] = length, pos
            elif kind == K_CAPTURE:
                facts[code >> 4] = buf[pos : pos + length]
            pos += length
        else:
            pos = _fast_field(buf, pos, kind, code >> 4, facts)
        if pos < 0:
            return -1
    return pos


_UINT_WHOLE = _FAST_WHOLE[K_UINT | S_IGNORED << 4]
_STR_WHOLE = _FAST_WHOLE[K_STR | S_IGNORED << 4]


def _fast_dir_entry(buf: bytes, pos: int, facts: list[Any]) -> int:
    """``structs.DirEntry`` exactly as Consul CE writes it, in straight-line code.

    Seven fields in go-msgpack's order, small numbers, a fixstr or str16 key: the
    shape of nearly every KV record, read at twice the speed of the general
    walk. Anything else returns -2, and the general walk (``_fast_struct`` with
    ``_DIR_ENTRY``, which accepts all this does, with the same facts) takes over.
    """
    size, uint = _TOKEN_SIZE, _UINT_WHOLE
    if not buf.startswith(b"\x87\xabCreateIndex", pos) or not uint[b := buf[pos + 13]]:
        return -2
    pos += 13 + size[b]
    if not buf.startswith(b"\xa5Flags", pos) or not uint[b := buf[pos + 6]]:
        return -2
    pos += 6 + size[b]
    if not buf.startswith(b"\xa3Key", pos):
        return -2
    b = buf[pos + 4]
    if 0xA0 <= b <= 0xBF:
        length, pos = b - 0xA0, pos + 5
    elif b == 0xDA:
        length, pos = buf[pos + 5] << 8 | buf[pos + 6], pos + 7
    else:
        return -2
    key = buf[pos : pos + length]
    pos += length
    if not buf.startswith(b"\xa9LockIndex", pos) or not uint[b := buf[pos + 10]]:
        return -2
    pos += 10 + size[b]
    if not buf.startswith(b"\xabModifyIndex", pos) or not uint[b := buf[pos + 12]]:
        return -2
    pos += 12 + size[b]
    if not buf.startswith(b"\xa7Session", pos) or not _STR_WHOLE[b := buf[pos + 8]]:
        return -2
    pos += 8 + size[b]
    if not buf.startswith(b"\xa5Value", pos):
        return -2
    b = buf[pos + 6]
    facts[S_KEY] = key
    if b == _NIL:
        return pos + 7
    if 0xA0 <= b <= 0xBF:
        length, pos = b - 0xA0, pos + 7
    elif b == 0xDA:
        length, pos = buf[pos + 7] << 8 | buf[pos + 8], pos + 9
    else:
        facts[S_KEY] = None
        return -2
    facts[S_VALUE_LEN], facts[S_VALUE_POS] = length, pos
    return pos + length


def _fast_unexpected(
    buf: bytes, pos: int, schema: _FastSchema, expect: int
) -> tuple[int, int, int]:
    """A field name other than the one expected: (position after it, its code, next expected).

    Position -1 for a name that is not a fixstr, or one out of go-msgpack's
    order or repeated: the slow path decides those.
    """
    b = buf[pos]
    if b & 0xE0 != 0xA0:
        return -1, K_ANY, expect
    end = pos + b - 0x9F
    found = schema.by_token.get(buf[pos:end])
    if found is None:
        return end, K_ANY, expect
    code, after = found
    if after <= expect:
        return -1, K_ANY, expect
    return end, code, after


def _fast_field(buf: bytes, pos: int, kind: int, slot: int, facts: list[Any]) -> int:
    """The rarer cases of a typed field: str32, larger maps, a service's ID; -1 to hand on."""
    b = buf[pos]
    if kind in _STRINGY:
        if b != 0xDB:
            return -1
        start, length = pos + 5, int.from_bytes(buf[pos + 1 : pos + 5])
        if kind == K_BYTES:
            facts[S_VALUE_LEN], facts[S_VALUE_POS] = length, start
        elif kind == K_CAPTURE:
            if length > MAX_CAPTURED_STRING:
                return -1
            facts[slot] = buf[start : start + length]
        return start + length
    if kind == K_CHECKS:
        return _fast_checks(buf, pos, slot, facts)
    if b not in _MAPS or kind not in (K_MAP, K_STRUCT):
        return -1
    if kind == K_STRUCT:
        facts[slot] = 1
        if slot == S_SERVICE and facts[S_SERVICE_ID] is not None:  # details mode
            return _fast_struct(buf, pos, _FAST_NODE_SERVICE, facts)
    return _skip_value(buf, pos)


def _fast_checks(buf: bytes, pos: int, slot: int, facts: list[Any]) -> int:
    """``Checks``: a fixarray of maps, each a check."""
    b = buf[pos]
    if not 0x90 <= b <= 0x9F:
        return -1
    count = b - 0x90
    pos += 1
    for _ in range(count):
        if buf[pos] not in _MAPS:
            return -1
        pos = _skip_value(buf, pos)
        if pos < 0:
            return -1
    facts[slot] = count
    return pos


# --- the decoder ----------------------------------------------------------------------------

T = TypeVar("T")
_Gen = Generator[None, None, T]


class StateDecoder:
    """Decode ``state.bin`` fed in consecutive chunks of any size; ``finish`` returns the summary.

    ``kv_depth``, ``kv_filter``: as ``consul snapshot inspect -kvdepth -kvfilter``
    (the filter is a byte prefix of keys). ``max_kv_prefixes``: distinct prefixes
    kept, the rest summed apart. ``details``: also collect ``StateDetails``
    (slower; for the CLI). After an error every call raises it again.
    """

    def __init__(
        self,
        *,
        kv_depth: int = DEFAULT_KV_DEPTH,
        kv_filter: bytes | None = None,
        max_kv_prefixes: int = DEFAULT_MAX_KV_PREFIXES,
        details: bool = False,
    ) -> None:
        if kv_depth < 0 or max_kv_prefixes < 0:
            raise ValueError("kv_depth and max_kv_prefixes must not be negative")
        self._kv_depth, self._kv_filter = kv_depth, kv_filter
        self._max_prefixes = max_kv_prefixes
        self._details = StateDetails() if details else None
        self._counts, self._sizes = [0] * 256, [0] * 256
        self._prefixes: dict[bytes, list[int]] = {}
        self._other = [0, 0]
        self._catalog = [0, 0, 0]  # nodes, service instances, checks
        self._kv_value_bytes = 0
        # Consul writes KV records in key order: the prefix of the last key, and
        # what every key starting with ``_run`` shares with it (see ``_prefix``).
        self._run: bytes | None = None
        self._run_usage = self._other
        self._facts: list[Any] = list(_NO_FACTS)
        self._last_index = 0
        self._header_bytes = 0
        # The slow path's input: the current chunk, its offset in state.bin, the read position.
        self._chunk, self._base, self._pos = b"", 0, 0
        self._eof = False
        self._failure: StateError | None = None
        self._summary: StateSummary | None = None
        self._slow: _Gen[None] | None = self._read_header()

    @property
    def details(self) -> StateDetails | None:
        """The details collected (``details=True``), whole once ``finish`` returned."""
        return self._details

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next chunk of ``state.bin``; raises ``StateError`` as soon as it is refused.

        ``bytes`` are read in place; other buffers are copied first.
        """
        self._check_usable()
        if not data:
            return
        if type(data) is not bytes:
            data = bytes(data)
        self._base += len(self._chunk)
        self._chunk, self._pos = data, 0
        try:
            if self._slow is not None and not self._resume():
                return
            while (pos := self._fast(data, self._pos)) < len(data):
                self._pos = pos
                self._slow = self._read_record()
                if not self._resume():
                    return
        except StateError as exc:
            self._failure = exc
            raise

    def finish(self) -> StateSummary:
        """The end of ``state.bin``: the summary, or ``StateError`` if it ended inside a value."""
        if self._summary is not None:
            return self._summary
        self._check_usable()
        self._eof = True
        try:
            # A reader that never ran (no bytes came) first runs up to its first wait.
            for _ in range(2):
                if self._slow is None or self._resume():
                    break
            if self._slow is not None:
                raise AssertionError("the reader waited for bytes after the end")
        except StateError as exc:
            self._failure = exc
            raise
        self._summary = self._build_summary()
        return self._summary

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._summary is not None:
            raise ValueError("finish() was called: the decoder takes no more bytes")

    def _resume(self) -> bool:
        """Run the slow reader on until it needs more bytes (False) or its record is done."""
        assert self._slow is not None
        try:
            next(self._slow)
        except StopIteration:
            self._slow = None
            return True
        return False

    # --- the fast path --------------------------------------------------------------------

    def _fast(self, buf: bytes, pos: int) -> int:
        """Account every record lying whole in ``buf`` from ``pos``; where it stopped."""
        counts, sizes, action, facts = self._counts, self._sizes, _ACTION, self._facts
        details = self._details is not None
        schemas = _FAST_SCHEMAS[details]
        end = len(buf)
        start = pos
        try:
            while pos < end:
                start = pos
                msg_type = buf[pos]
                act = action[msg_type]
                if act <= A_COMPAT:
                    after = _skip_value(buf, pos + 1)
                    if after < 0 or after > end:
                        return start
                    counts[msg_type] += 1
                    sizes[msg_type] += after - start
                elif act == A_REFUSED:
                    return start
                else:
                    facts[:] = _NO_FACTS
                    if details and act == A_REGISTER:
                        facts[S_SERVICE_ID] = b""
                    after = _fast_dir_entry(buf, pos + 1, facts) if act == A_DIR_ENTRY else -2
                    if after == -2:
                        after = _fast_struct(buf, pos + 1, schemas[act], facts)
                    if after < 0 or after > end or (act == A_DIR_ENTRY and facts[S_KEY] is None):
                        return start
                    counts[msg_type] += 1
                    sizes[msg_type] += after - start
                    if msg_type == KVS:
                        if details and facts[S_VALUE_POS] >= 0:
                            value_at = facts[S_VALUE_POS]
                            value = memoryview(buf)[value_at : value_at + facts[S_VALUE_LEN]]
                            facts[S_VALUE_DIGEST] = _digest(value)
                        self._account_kv(facts, after - start)
                    elif msg_type == REGISTER:
                        self._account_register(facts)
                pos = after
        except IndexError:
            return start
        return pos

    # --- accounting (both paths) ----------------------------------------------------------

    def _account(self, msg_type: int, size: int, facts: list[Any]) -> None:
        """Count one whole, interpreted record (``Register``, ``KVS``, ``Tombstone``)."""
        self._counts[msg_type] += 1
        self._sizes[msg_type] += size
        if msg_type == KVS:
            self._account_kv(facts, size)
        elif msg_type == REGISTER:
            self._account_register(facts)

    def _account_kv(self, facts: list[Any], size: int) -> None:
        key: bytes = facts[S_KEY]
        self._kv_value_bytes += facts[S_VALUE_LEN]
        if self._details is not None:
            self._details.kv[key] = (facts[S_VALUE_DIGEST] or _EMPTY_DIGEST, facts[S_VALUE_LEN])
        if self._kv_filter is not None and not key.startswith(self._kv_filter):
            return
        run = self._run
        if run is not None and key.startswith(run):
            usage = self._run_usage
        else:
            prefix, self._run = _prefix(key, self._kv_depth)
            found = self._prefixes.get(prefix)
            if found is None:
                if len(self._prefixes) >= self._max_prefixes:
                    found = self._other
                else:
                    found = self._prefixes[prefix] = [0, 0]
            usage = self._run_usage = found
        usage[0] += 1
        usage[1] += size

    def _account_register(self, facts: list[Any]) -> None:
        catalog = self._catalog
        service, check = facts[S_SERVICE], facts[S_CHECK]
        if service:
            catalog[1] += 1
        if check:
            catalog[2] += 1
        if not service and not check:
            catalog[0] += 1
        catalog[2] += facts[S_CHECKS]
        if self._details is not None:
            node = facts[S_NODE] or b""
            self._details.nodes.add(node)
            if service:
                self._details.services.add((node, facts[S_SERVICE_ID] or b""))

    def _build_summary(self) -> StateSummary:
        counts, sizes = self._counts, self._sizes
        records = {
            message_type_name(t): Usage(counts[t], sizes[t]) for t in range(256) if counts[t]
        }
        filt = self._kv_filter
        return StateSummary(
            last_index=self._last_index,
            state_bytes=self._base + len(self._chunk),
            header_bytes=self._header_bytes,
            records=records,
            nodes=self._catalog[0],
            service_instances=self._catalog[1],
            checks=self._catalog[2],
            kv_entries=counts[KVS],
            kv_bytes=self._kv_value_bytes,
            kv_depth=self._kv_depth,
            kv_filter=None if filt is None else key_text(filt),
            kv_prefixes={key_text(p): Usage(c, b) for p, (c, b) in self._prefixes.items()},
            kv_prefixes_other=Usage(*self._other),
            kv_prefixes_truncated=self._other[0] > 0,
            **{name: counts[t] for name, t in _COUNTED_TYPES.items()},
            compatibility_notes=tuple(_compatibility_notes(counts)),
        )

    # --- the slow path: a resumable reader, one Go read unit at a time ---------------------

    def _offset(self) -> int:
        return self._base + self._pos

    def _where(self) -> str:
        return f"at byte {self._offset()} of state.bin, {self._context}"

    _context = "in the header"

    def _error(self, consul_words: str) -> StateError:
        return StateError(consul_words, self._where(), self._offset())

    def _stricter(self, reason: str) -> StricterStateError:
        return StricterStateError(reason, self._where(), self._offset())

    def _read(self, n: int) -> _Gen[bytes]:
        """One read of exactly ``n`` bytes, as ``io.ReadAtLeast`` does it for the codec."""
        chunk, pos = self._chunk, self._pos
        if len(chunk) - pos >= n:
            self._pos = pos + n
            return chunk[pos : pos + n]
        got = bytearray()
        while True:
            chunk, pos = self._chunk, self._pos
            take = min(n - len(got), len(chunk) - pos)
            got += chunk[pos : pos + take]
            self._pos = pos + take
            if len(got) == n:
                return bytes(got)
            yield
            if self._eof:
                raise self._error("unexpected EOF" if got else "EOF")

    def _byte(self) -> _Gen[int]:
        return (yield from self._read(1))[0]

    def _number(self, n: int) -> _Gen[int]:
        return int.from_bytes((yield from self._read(n)))

    def _payload(self, n: int, sink: Callable[[memoryview], Any] | None = None) -> _Gen[None]:
        """Skip (or hand to ``sink``) a string's ``n`` bytes without holding them: one read."""
        started = False
        while n > 0:
            chunk, pos = self._chunk, self._pos
            take = min(n, len(chunk) - pos)
            if take:
                if sink is not None:
                    sink(memoryview(chunk)[pos : pos + take])
                self._pos = pos + take
                n -= take
                started = True
                continue
            yield
            if self._eof:
                raise self._error("unexpected EOF" if started else "EOF")

    def _string_length(self, b: int) -> _Gen[int]:
        """The length of a str or bin token whose descriptor is ``b``."""
        if b <= 0xBF:
            return b - 0xA0
        return (yield from self._number(_LENGTH_BYTES[b]))

    def _capture(self, n: int) -> _Gen[bytes]:
        if n > MAX_CAPTURED_STRING:
            raise self._stricter(f"a string of {n} bytes, longer than this decoder holds")
        return (yield from self._read(n)) if n else b""

    def _read_header(self) -> _Gen[None]:
        """``SnapshotHeader``, then the first record (which inspect charges the header to)."""
        facts = list(_NO_FACTS)
        yield from self._struct(_HEADER, facts, "the header")
        if facts[S_LAST_INDEX] is None:
            raise self._stricter(
                "the header has no LastIndex: Consul would restore with LastIndex 0, "
                "its writer always writes one"
            )
        self._last_index = facts[S_LAST_INDEX]
        self._header_bytes = self._offset()
        yield from self._read_record(extra=self._header_bytes)

    def _read_record(self, extra: int = 0) -> _Gen[None]:
        """One record from its type byte; the end of the bytes there is the clean end."""
        start = self._offset()
        while self._pos >= len(self._chunk):
            yield
            if self._eof:
                return
        msg_type = self._chunk[self._pos]
        number = sum(self._counts) + 1
        self._context = f"in record {number} ({message_type_name(msg_type)}) from byte {start}"
        self._pos += 1
        act = _ACTION[msg_type]
        if act == A_REFUSED:
            raise self._error(f"Unrecognized msg type {msg_type}")
        facts = self._facts
        facts[:] = _NO_FACTS
        if act in (A_GENERIC, A_COMPAT):
            yield from self._skip(first=_undeciphered)
            self._counts[msg_type] += 1
            self._sizes[msg_type] += self._offset() - start + extra
            return
        if self._details is not None and act == A_REGISTER:
            facts[S_SERVICE_ID] = b""
        schema = _SCHEMAS[self._details is not None][act]
        yield from self._struct(schema, facts, f"a {message_type_name(msg_type)} record")
        if act == A_DIR_ENTRY and facts[S_KEY] is None:
            raise self._stricter(f"a {message_type_name(msg_type)} record without a Key")
        self._account(msg_type, self._offset() - start + extra, facts)

    def _skip(self, pending: int = 1, first: Callable[[int], str] = _naked) -> _Gen[None]:
        """Read past ``pending`` whole values, checking they are msgpack, holding nothing.

        ``first`` words the refusal of 0xc1 as the first token: a record's value
        goes to a struct or slice (``currentEncodedType`` fails), an unknown
        field's to ``interface{}`` (``decodeNaked`` fails).
        """
        message = first
        while pending:
            pending -= 1
            b = yield from self._byte()
            size = _TOKEN_SIZE[b]
            if size:
                if size > 1:
                    yield from self._payload(size - 1)
            elif b in _MAPS or b in _ARRAYS:
                n = b & 15 if b < 0xA0 else (yield from self._number(_LENGTH_BYTES[b]))
                pending += n << 1 if b in _MAPS else n
            elif b in _LENGTH_BYTES:  # str8/16/32, bin8/16/32
                yield from self._payload((yield from self._number(_LENGTH_BYTES[b])))
            elif b in _EXTS:
                raise self._stricter(f"an ext value (0x{b:02x}): Consul's handle writes none")
            else:
                raise self._error(message(b))
            message = _naked

    def _struct(self, schema: dict[bytes, int], facts: list[Any], what: str) -> _Gen[None]:
        """A Go struct, as go-msgpack's ``kStruct`` decodes it, keeping the schema's facts."""
        b = yield from self._byte()
        if b == _NIL:
            raise self._stricter(f"{what} is nil: Consul would restore zero values")
        if b in _ARRAYS:
            raise self._stricter(f"{what} is an array: Consul would read its fields by position")
        if b not in _MAPS:
            raise self._error(_not_struct(b))
        entries = b - 0x80 if b < 0x90 else (yield from self._number(_LENGTH_BYTES[b]))
        for _ in range(entries):
            name = yield from self._field_name()
            code = schema.get(name, K_ANY) if name is not None else K_ANY
            if code & 15 == K_ANY:
                yield from self._skip()
            else:
                yield from self._field(code & 15, code >> 4, facts)

    def _field_name(self) -> _Gen[bytes | None]:
        """A struct key, read by ``decodeString``; None for a name longer than any field's."""
        b = yield from self._byte()
        if b in _STR_FAMILY:
            n = yield from self._string_length(b)
            if n <= _LONGEST_FIELD:
                return (yield from self._read(n)) if n else b""
            yield from self._payload(n)
            return None
        if b == _NIL:
            raise self._stricter("a nil field name: Consul would skip the value under it")
        if b >= 0xE0:
            raise self._stricter(
                f"a negative fixint (0x{b:02x}) as a field name: Consul misreads it"
            )
        raise self._error(_container_len(b))

    def _field(self, kind: int, slot: int, facts: list[Any]) -> _Gen[None]:
        """One typed field, with the rules of go-msgpack's decoder for its Go type."""
        if kind == K_UINT:
            yield from self._uint()
        elif kind == K_CAPTURE and slot == S_LAST_INDEX:
            facts[slot] = yield from self._uint()
        elif kind in (K_STR, K_CAPTURE):
            value = yield from self._string(capture=kind == K_CAPTURE)
            if kind == K_CAPTURE:
                facts[slot] = value
        elif kind == K_BOOL:
            b = yield from self._byte()
            if b not in (_NIL, 0xC2, 0xC3, 0x00, 0x01):
                raise self._error(_not_bool(b))
        elif kind == K_BYTES:
            yield from self._bytes_field(slot, facts)
        elif kind == K_MAP:
            yield from self._string_map()
        elif kind == K_STRUCT:
            yield from self._pointer_struct(slot, facts)
        else:
            yield from self._checks(slot, facts)

    def _uint(self) -> _Gen[int | None]:
        """``decodeUint(64)``; None for nil (Consul's zero value)."""
        b = yield from self._byte()
        if b < 0x80:
            return b
        if b == _NIL:
            return None
        if 0xCC <= b <= 0xCF:
            return (yield from self._number(_TOKEN_SIZE[b] - 1))
        if 0xD0 <= b <= 0xD3:
            width = _TOKEN_SIZE[b] - 1
            value = int.from_bytes((yield from self._read(width)), signed=True)
            if value < 0:
                raise self._error(_negative(value))
            return value
        if b >= 0xE0:
            raise self._error(_negative(b))  # go-msgpack prints the descriptor byte here
        raise self._error(_not_uint(b))

    def _string(self, capture: bool) -> _Gen[bytes | None]:
        """``decodeString``: the str family; None for nil (Consul's empty string)."""
        b = yield from self._byte()
        if b == _NIL:
            return None
        if b in _STR_FAMILY:
            n = yield from self._string_length(b)
            if capture:
                return (yield from self._capture(n))
            yield from self._payload(n)
            return None
        if b >= 0xE0:
            raise self._stricter(
                f"a negative fixint (0x{b:02x}) where a string belongs: "
                f"Consul would read it as a string of {b ^ 0xA0} bytes"
            )
        raise self._error(_container_len(b))

    def _bytes_field(self, slot: int, facts: list[Any]) -> _Gen[None]:
        """``[]byte`` (``Value``): str or bin family, or nil."""
        b = yield from self._byte()
        if b == _NIL:
            n = 0
        elif b in _STR_FAMILY or b in _BIN_FAMILY:
            n = yield from self._string_length(b)
        elif b in _ARRAYS or b in _MAPS:
            raise self._stricter(
                "an array or map where []byte belongs: Consul reads it byte by byte"
            )
        else:
            raise self._error(_not_slice(b))
        digest = hashlib.blake2b(digest_size=DIGEST_BYTES) if self._details is not None else None
        yield from self._payload(n, None if digest is None else digest.update)
        facts[slot] = n
        if digest is not None:
            facts[S_VALUE_DIGEST] = digest.digest()

    def _string_map(self) -> _Gen[None]:
        """``map[string]string``: go-msgpack's ``readMapLen`` without a type check first."""
        b = yield from self._byte()
        if b == _NIL:
            return
        if b in _MAPS:
            n = b - 0x80 if b < 0x90 else (yield from self._number(_LENGTH_BYTES[b]))
            yield from self._skip(n << 1)
            return
        if b >= 0x80 or b == 0x00:
            raise self._stricter(f"0x{b:02x} where a map belongs: Consul would misread it as a map")
        raise self._error(_container_len(b))

    def _pointer_struct(self, slot: int, facts: list[Any]) -> _Gen[None]:
        """A pointer to a struct (``Service``, ``Check``, ``Locality``): nil or a map."""
        b = yield from self._byte()
        if b == _NIL:
            facts[slot] = 0
            return
        if b in _ARRAYS:
            raise self._stricter(
                "a struct written as an array: Consul would read its fields by position"
            )
        if b not in _MAPS:
            raise self._error(_not_struct(b))
        facts[slot] = 1
        self._pos -= 1  # _struct and _skip read the descriptor again (it is in this chunk)
        if slot == S_SERVICE and facts[S_SERVICE_ID] is not None:
            facts[S_SERVICE_ID] = b""
            yield from self._struct(_NODE_SERVICE, facts, "a Service")
        else:
            yield from self._skip()

    def _checks(self, slot: int, facts: list[Any]) -> _Gen[None]:
        """``Checks`` (``HealthChecks``, a slice of pointers to ``HealthCheck``)."""
        b = yield from self._byte()
        if b == _NIL:
            facts[slot] = 0
            return
        if b in _MAPS:
            raise self._stricter("a map where the Checks list belongs: Consul reads it as pairs")
        if b not in _ARRAYS:
            raise self._error(_not_slice(b))
        count = b - 0x90 if b < 0xA0 else (yield from self._number(_LENGTH_BYTES[b]))
        for _ in range(count):
            b = yield from self._byte()
            if b == _NIL:
                raise self._stricter("a nil entry in Checks: Consul's restore dereferences it")
            if b in _ARRAYS:
                raise self._stricter(
                    "a check written as an array: Consul would read it by position"
                )
            if b not in _MAPS:
                raise self._error(_not_struct(b))
            self._pos -= 1
            yield from self._skip()
        facts[slot] = count


def _digest(value: bytes | memoryview) -> bytes:
    return hashlib.blake2b(value, digest_size=DIGEST_BYTES).digest()


_EMPTY_DIGEST = _digest(b"")


def _prefix(key: bytes, depth: int) -> tuple[bytes, bytes | None]:
    """The first ``depth`` "/"-separated segments, as inspect's ``strings.Split`` and ``Join``.

    A key with fewer segments is its own prefix. Also returns what any key with
    the same prefix starts with, where one such exists: the prefix and a "/"
    when the key was cut (all keys, for depth 0), else None. A prefix longer
    than ``MAX_PREFIX_BYTES`` is kept as its start and a digest of the whole
    (``_shortened``): anyone who can write a KV key must not be able to make a
    summary, or a manifest, of hundreds of megabytes.
    """
    if depth == 0:
        return b"", b""
    cut = -1
    for _ in range(depth):
        cut = key.find(b"/", cut + 1)
        if cut < 0:
            return _shortened(key), None
    return _shortened(key[:cut]), key[: cut + 1]


def _shortened(prefix: bytes) -> bytes:
    if len(prefix) <= MAX_PREFIX_BYTES:
        return prefix
    digest = hashlib.blake2b(prefix, digest_size=8).hexdigest().encode()
    return prefix[: MAX_PREFIX_BYTES - 24] + b"...#" + digest


def _compatibility_notes(counts: list[int]) -> list[str]:
    notes = []
    for msg_type, count in enumerate(counts):
        if not count or _ACTION[msg_type] != A_COMPAT:
            continue
        name = message_type_name(msg_type)
        if msg_type in _OLDER_CONSUL:
            what = _OLDER_CONSUL[msg_type]
        elif msg_type >= FIRST_ENTERPRISE_TYPE:
            what = "a Consul Enterprise type: Consul CE refuses it as an Enterprise log entry"
        else:
            what = "a type newer than this decoder knows, written by a newer Consul"
        notes.append(
            f"{count} {name} record(s) (type {msg_type}): {what}; "
            "this state restores only into a Consul that knows them"
        )
    return notes


def summarize_state(chunks: bytes | Iterable[bytes], **options: Any) -> StateSummary:
    """Decode a whole ``state.bin`` given as chunks, or as one ``bytes``."""
    decoder = StateDecoder(**options)
    for chunk in [chunks] if isinstance(chunks, bytes) else chunks:
        decoder.feed(chunk)
    return decoder.finish()
