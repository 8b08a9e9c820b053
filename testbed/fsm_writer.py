"""Consul's ``state.bin``, written as its FSM's ``Persist`` writes it, as a stream.

The facts it stands on, from Consul's source:

- ``agent/consul/fsm/snapshot.go`` (``Persist``): the header ``SnapshotHeader{LastIndex}``
  as one msgpack value; then, per record, one raw byte (the message type) and one
  msgpack value; the chunking state (type 29) last.
- ``agent/consul/fsm/snapshot_ce.go`` (``persistCE``, ``persistNodes``, ...): the order.
  Each node is a ``RegisterRequest`` (``Node.ToRegisterRequest``), followed by the same
  request once per service of that node with ``Service`` set, then once per check with
  ``Service`` back to nil and ``Check`` set; then sessions, ACL tokens, ACL policies,
  KV entries (in key order: memdb iterates the ``kvs`` table by key), tombstones (as
  ``DirEntry`` values carrying only ``Key`` and ``ModifyIndex``), index entries (in
  table-name order).
- The encoder is hashicorp's go-msgpack 0.5.5 with Consul's ``MsgpackHandle``
  (``RawToString``, no ``WriteExt``): a struct is a map of its exported fields sorted by
  name, with embedded structs (``RaftIndex``, ``WriteRequest``, CE's field-less
  ``EnterpriseMeta``) inlined; strings and ``[]byte`` are the old spec's raw family
  (fixraw, raw 16, raw 32: never str 8, never bin, so a 32..255-byte string is a raw 16);
  integers take the shortest form for their value, non-negative signed ones as unsigned;
  a nil pointer, slice or map is nil; ``time.Time`` is its 15-byte ``MarshalBinary``;
  ``time.Duration`` an integer of nanoseconds.

The record shapes (field names and value kinds per message type) are those of
``tests/fixtures/state-bin/``, two streams written by that codec with Consul's handle.

This module encodes by hand and imports no msgpack library: it is the independent
writer that tests read back with ``msgpack`` and that the product's reader is held to.
``ConsulState`` describes a cluster; its ``length`` is computed from the description
alone, before a byte is generated (an archive's ``meta.json`` and tar header carry the
size of ``state.bin`` ahead of its data), and ``chunks()`` streams it in flat memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import struct
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

# Pieces handed to the consumer: small records are gathered up to this size, larger
# values are cut into pieces of this size.
CHUNK = 1 << 20

# The message type byte before each record (agent/structs/structs.go), with the names
# `consul snapshot inspect` prints. New types are only ever appended; 64 and above are
# Consul Enterprise's.
_TYPE_NAMES = (
    "Register", "Deregister", "KVS", "Session", "ACL", "Tombstone", "CoordinateBatchUpdate",
    "PreparedQuery", "Txn", "Autopilot", "Area", "ACLBootstrap", "Intention", "ConnectCA",
    "ConnectCAProviderState", "ConnectCAConfig", "Index", "ACLToken", "ACLTokenDelete",
    "ACLPolicy", "ACLPolicyDelete", "ConnectCALeaf", "ConfigEntry", "ACLRole", "ACLRoleDelete",
    "ACLBindingRule", "ACLBindingRuleDelete", "ACLAuthMethod", "ACLAuthMethodDelete",
    "ChunkingState", "FederationState", "SystemMetadata", "ServiceVirtualIP", "FreeVirtualIP",
    "KindServiceName", "Peering", "PeeringDelete", "PeeringTerminateByID", "PeeringTrustBundle",
    "PeeringTrustBundleDelete", "PeeringSecret", "RaftLogVerifierCheckpoint", "Resource",
    "UpdateVirtualIP",
)  # fmt: skip
MESSAGE_TYPE_NAMES: dict[int, str] = dict(enumerate(_TYPE_NAMES))
REGISTER = 0
KVS = 2
SESSION = 3
TOMBSTONE = 5
INDEX = 16
ACL_TOKEN = 17
ACL_POLICY = 19
CHUNKING_STATE = 29


# --- go-msgpack 0.5.5, Consul's handle ------------------------------------------

NIL = b"\xc0"
FALSE = b"\xc2"
TRUE = b"\xc3"


def raw_header(length: int) -> bytes:
    """The header of a raw (string or ``[]byte``) value: fixraw, raw 16 or raw 32."""
    if length < 32:
        return bytes((0xA0 | length,))
    if length < 1 << 16:
        return b"\xda" + length.to_bytes(2, "big")
    if length < 1 << 32:
        return b"\xdb" + length.to_bytes(4, "big")
    raise ValueError(f"a raw value of {length} bytes does not fit msgpack")


_FIXRAW = [bytes((0xA0 | length,)) for length in range(32)]
_FIXINT = [bytes((value,)) for value in range(0x80)]


def raw(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    length = len(data)
    return (_FIXRAW[length] if length < 32 else raw_header(length)) + data


def uint(value: int) -> bytes:
    """An unsigned integer in the shortest form its value allows."""
    if 0 <= value < 0x80:
        return _FIXINT[value]
    if value < 0:
        raise ValueError(f"{value} is not unsigned")
    if value < 0x100:
        return b"\xcc" + bytes((value,))
    if value < 0x10000:
        return b"\xcd" + value.to_bytes(2, "big")
    if value < 1 << 32:
        return b"\xce" + value.to_bytes(4, "big")
    if value < 1 << 64:
        return b"\xcf" + value.to_bytes(8, "big")
    raise ValueError(f"{value} does not fit 64 bits")


def sint(value: int) -> bytes:
    """A signed Go integer: as unsigned when not negative, else the shortest signed form."""
    if value >= 0:
        return uint(value)
    if value >= -32:
        return (value & 0xFF).to_bytes(1, "big")
    for marker, width in ((b"\xd0", 1), (b"\xd1", 2), (b"\xd2", 4), (b"\xd3", 8)):
        if value >= -(1 << (8 * width - 1)):
            return marker + value.to_bytes(width, "big", signed=True)
    raise ValueError(f"{value} does not fit 64 bits")


def map_header(count: int) -> bytes:
    if count < 16:
        return bytes((0x80 | count,))
    if count < 1 << 16:
        return b"\xde" + count.to_bytes(2, "big")
    return b"\xdf" + count.to_bytes(4, "big")


def array_header(count: int) -> bytes:
    if count < 16:
        return bytes((0x90 | count,))
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


# The zero of Go's time.Time: seconds in MarshalBinary count from January 1 of year 1.
_GO_TIME_ZERO = datetime(1, 1, 1, tzinfo=UTC)


def go_time_binary(moment: datetime) -> bytes:
    """``time.Time.MarshalBinary`` (version 1) of a UTC time: 15 bytes.

    Version byte, seconds since year 1 (int64), nanoseconds (int32), and the zone
    offset in minutes (int16), -1 meaning UTC (Go's src/time/time.go).
    """
    delta = moment.astimezone(UTC) - _GO_TIME_ZERO
    seconds = delta.days * 86_400 + delta.seconds
    return struct.pack(">bqih", 1, seconds, delta.microseconds * 1000, -1)


# Encoders of Go kinds: each takes a Python value and returns its msgpack bytes.
Encoder = Callable[[Any], bytes]


def go_string(value: str | bytes) -> bytes:
    return raw(value)


def go_bytes(value: bytes | None) -> bytes:
    """``[]byte``: raw like a string (RawToString), nil when the slice is nil."""
    return NIL if value is None else raw(value)


def go_uint(value: int) -> bytes:
    return uint(value)


def go_int(value: int) -> bytes:
    return sint(value)


def go_bool(value: bool) -> bytes:
    return TRUE if value else FALSE


def go_time(value: datetime) -> bytes:
    return raw(go_time_binary(value))


def go_duration(value: timedelta) -> bytes:
    nanoseconds = (value.days * 86_400 + value.seconds) * 1_000_000_000
    return sint(nanoseconds + value.microseconds * 1000)


def slice_of(element: Encoder) -> Encoder:
    def encode(value: list[Any] | None) -> bytes:
        if value is None:
            return NIL
        return array_header(len(value)) + b"".join(element(item) for item in value)

    return encode


def map_of(element: Encoder, key: Encoder = go_string) -> Encoder:
    """A Go map, keys sorted so that the same map always gives the same bytes."""

    def encode(value: Mapping[Any, Any] | None) -> bytes:
        if value is None:
            return NIL
        items = sorted(value.items())
        return map_header(len(items)) + b"".join(key(k) + element(v) for k, v in items)

    return encode


class GoStruct:
    """A Go struct as go-msgpack writes it: a map of its fields sorted by name.

    ``of`` inlines embedded structs' fields into the outer map, as Go's field
    promotion and the codec do.
    """

    def __init__(self, name: str, fields: Mapping[str, Encoder]) -> None:
        self.name = name
        self.fields = dict(sorted(fields.items()))
        self._header = map_header(len(self.fields))
        self._keys = {field: raw(field) for field in self.fields}
        self._plan = [(self._keys[field], field, encoder) for field, encoder in self.fields.items()]

    @classmethod
    def of(cls, name: str, fields: Mapping[str, Encoder], *embedded: GoStruct) -> GoStruct:
        merged = dict(fields)
        for inner in embedded:
            if clash := merged.keys() & inner.fields.keys():
                raise ValueError(f"{name}: {inner.name} repeats {sorted(clash)}")
            merged.update(inner.fields)
        return cls(name, merged)

    def encode(self, values: Mapping[str, Any]) -> bytes:
        # As many values as fields, and every field looked up: the same names.
        if len(values) != len(self._plan):
            raise ValueError(f"{self.name}: fields {sorted(values)} are not {list(self.fields)}")
        return self._header + b"".join(
            [key + encoder(values[field]) for key, field, encoder in self._plan]
        )

    def partial(self, fixed: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], bytes]:
        """An encoder with ``fixed`` fields encoded once; it takes the other fields.

        Every service and check record of a node repeats the node's fields.
        """
        if unknown := fixed.keys() - self.fields.keys():
            raise ValueError(f"{self.name} has no fields {sorted(unknown)}")
        steps: list[tuple[bytes, str, Encoder]] = []  # (bytes before, free field, its encoder)
        before = self._header
        for key, field, encoder in self._plan:
            if field in fixed:
                before += key + encoder(fixed[field])
            else:
                steps.append((before + key, field, encoder))
                before = b""
        after, free = before, len(self._plan) - len(fixed)

        def encode(values: Mapping[str, Any]) -> bytes:
            if len(values) != free:
                raise ValueError(f"{self.name}: {sorted(values)} are not its free fields")
            return (
                b"".join([head + encoder(values[field]) for head, field, encoder in steps]) + after
            )

        return encode


class Encoded(bytes):
    """A struct value already in msgpack form (from a ``partial`` encoder), passed through."""


def pointer_to(target: GoStruct) -> Encoder:
    def encode(value: Mapping[str, Any] | Encoded | None) -> bytes:
        if value is None:
            return NIL
        return value if isinstance(value, Encoded) else target.encode(value)

    return encode


def struct_value(target: GoStruct) -> Encoder:
    def encode(value: Mapping[str, Any] | Encoded) -> bytes:
        return value if isinstance(value, Encoded) else target.encode(value)

    return encode


# --- Consul's structs, field for field as the fixtures hold them ------------------------

RAFT_INDEX = GoStruct("RaftIndex", {"CreateIndex": go_uint, "ModifyIndex": go_uint})
# Consul CE's acl.EnterpriseMeta has no fields: inlined, it adds nothing to the map.
ENTERPRISE_META = GoStruct("EnterpriseMeta", {})
WRITE_REQUEST = GoStruct("WriteRequest", {"Token": go_string})
NODE_SERVICE = GoStruct.of(
    "NodeService",
    {
        "Address": go_string,
        "EnableTagOverride": go_bool,
        "ID": go_string,
        "Kind": go_string,
        "Meta": map_of(go_string),
        "Port": go_int,
        "Service": go_string,
        "Tags": slice_of(go_string),
    },
    RAFT_INDEX,
    ENTERPRISE_META,
)
HEALTH_CHECK = GoStruct.of(
    "HealthCheck",
    {
        "CheckID": go_string,
        "Name": go_string,
        "Node": go_string,
        "Notes": go_string,
        "Output": go_string,
        "ServiceID": go_string,
        "ServiceName": go_string,
        "ServiceTags": slice_of(go_string),
        "Status": go_string,
        "Type": go_string,
    },
    RAFT_INDEX,
    ENTERPRISE_META,
)
REGISTER_REQUEST = GoStruct.of(
    "RegisterRequest",
    {
        "Address": go_string,
        "Check": pointer_to(HEALTH_CHECK),
        "Checks": slice_of(pointer_to(HEALTH_CHECK)),
        "Datacenter": go_string,
        "ID": go_string,
        "Node": go_string,
        "NodeMeta": map_of(go_string),
        "Service": pointer_to(NODE_SERVICE),
        "SkipNodeUpdate": go_bool,
        "TaggedAddresses": map_of(go_string),
    },
    WRITE_REQUEST,
    ENTERPRISE_META,
)
SESSION_STRUCT = GoStruct.of(
    "Session",
    {
        "Behavior": go_string,
        "ID": go_string,
        "LockDelay": go_duration,
        "Name": go_string,
        "Node": go_string,
        "TTL": go_string,
    },
    RAFT_INDEX,
    ENTERPRISE_META,
)
ACL_TOKEN_POLICY_LINK = GoStruct("ACLTokenPolicyLink", {"ID": go_string, "Name": go_string})
ACL_TOKEN_STRUCT = GoStruct.of(
    "ACLToken",
    {
        "AccessorID": go_string,
        "CreateTime": go_time,
        "Description": go_string,
        "Hash": go_bytes,
        "Local": go_bool,
        "Policies": slice_of(struct_value(ACL_TOKEN_POLICY_LINK)),
        "SecretID": go_string,
    },
    RAFT_INDEX,
    ENTERPRISE_META,
)
ACL_POLICY_STRUCT = GoStruct.of(
    "ACLPolicy",
    {
        "Datacenters": slice_of(go_string),
        "Description": go_string,
        "Hash": go_bytes,
        "ID": go_string,
        "Name": go_string,
        "Rules": go_string,
    },
    RAFT_INDEX,
    ENTERPRISE_META,
)
DIR_ENTRY = GoStruct.of(
    "DirEntry",
    {
        "Flags": go_uint,
        "Key": go_string,
        "LockIndex": go_uint,
        "Session": go_string,
        "Value": go_bytes,
    },
    RAFT_INDEX,
    ENTERPRISE_META,
)
INDEX_ENTRY = GoStruct("IndexEntry", {"Key": go_string, "Value": go_uint})
# go-raftchunking: State.ChunkMap is a map[uint64][]*ChunkInfo, empty between chunked applies.
CHUNK_INFO = GoStruct(
    "ChunkInfo",
    {
        "Data": go_bytes,
        "NumChunks": go_uint,
        "OpNum": go_uint,
        "SequenceNum": go_uint,
        "Term": go_uint,
    },
)
CHUNKING_STATE_STRUCT = GoStruct(
    "State", {"ChunkMap": map_of(slice_of(pointer_to(CHUNK_INFO)), key=go_uint)}
)
SNAPSHOT_HEADER = GoStruct("SnapshotHeader", {"LastIndex": go_uint})
_EMPTY_CHUNKING_STATE = CHUNKING_STATE_STRUCT.encode({"ChunkMap": {}})

# The built-in policy every token of these states links to (agent/structs/acl.go).
GLOBAL_MANAGEMENT_ID = "00000000-0000-0000-0000-000000000001"
GLOBAL_MANAGEMENT_RULES = "\n".join(
    [f'{rule} = "write"' for rule in ("acl", "keyring", "operator")]
    + [
        f'{resource}_prefix "" {{\n\tpolicy = "write"\n}}'
        for resource in ("agent", "event", "key", "node", "query", "service", "session")
    ]
)
_TOKEN_CREATED = datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
_LOCK_DELAY = timedelta(seconds=15)  # Consul's default session lock-delay
_ID_NAMESPACE = uuid.UUID("6f1c3f5e-8a77-4b53-9d0e-2c4a7e1b9f30")
# Octets of node addresses are three digits wide (100..199), so every address has the
# same length and the plan's length stays arithmetic: 10.1xx.1xx.1xx, a million nodes.
MAX_NODES = 1_000_000
# Service ports are 8000 + the service's number: all three-byte uint16s below this.
MAX_SERVICES_PER_NODE = (1 << 16) - 8000
# Flags of KV entries cycle below 128, one byte each.
_KV_FLAG_CYCLE = 3


def _width(count: int) -> int:
    """Digits of the largest of ``count`` numbers from 0: names of one kind keep one length."""
    return len(str(max(count - 1, 0)))


def _stable_id(*parts: object) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "/".join(map(str, parts))))


class StateTooSmallError(ValueError):
    """No Consul state has that few bytes: the header and chunking state alone take more."""


class _Indexes:
    """Which Raft index wrote each record, and the bytes those indexes take.

    Records are numbered k = 0..count-1 in the order they were written; record k
    carries index max(1, (k + 1) * last // count): one index each when ``last``
    equals the count, several records per index (a transaction) when it is smaller,
    spread out when it is larger. The last record has index ``last``.
    """

    # (largest value of a width, bytes added beyond it) for uint's forms.
    _STEPS = ((0x7F, 1), (0xFF, 1), (0xFFFF, 2), ((1 << 32) - 1, 4))

    def __init__(self, count: int, last: int) -> None:
        self.count = count
        self.last = last

    def of(self, k: int) -> int:
        return max(1, (k + 1) * self.last // self.count)

    def encoded_bytes(self, first: int, count: int, stride: int = 1) -> int:
        """Bytes that uint() takes for the indexes of records first, first+stride, ..."""
        if count <= 0:
            return 0
        total = count
        for largest, extra in self._STEPS:
            # of(k) > largest  <=>  (k + 1) * last >= (largest + 1) * count
            k_above = -(-(largest + 1) * self.count // self.last) - 1
            i_above = max(0, -((first - k_above) // stride))
            total += extra * max(0, count - i_above)
        return total


@dataclass(frozen=True)
class _Run:
    """``count`` records of one shape, written as record i of ``build(i, index)``.

    Record i has Raft position k = first_k + i * stride and carries its index in
    ``index_fields`` fields; every other field has the same encoded length across the
    run (names of one kind are zero-padded to one width), so the run's length is
    arithmetic: one sample record, plus what the indexes add.
    """

    msg_type: int
    count: int
    first_k: int
    stride: int
    index_fields: int
    build: Callable[[int, int], bytes]
    payload: int = 0  # bytes streamed after each record (a KV value)
    payload_seed: str = ""

    def length(self, indexes: _Indexes) -> int:
        if self.count == 0:
            return 0
        sample = 1 + len(self.build(0, 1)) + self.payload  # index 1: one byte per field
        extra = indexes.encoded_bytes(self.first_k, self.count, self.stride) - self.count
        return self.count * sample + self.index_fields * extra


@dataclass(frozen=True)
class ConsulState:
    """A Consul cluster's FSM state, described by counts and streamed as ``state.bin``.

    Catalog: ``nodes`` nodes, each with ``services_per_node`` services and
    ``checks_per_node`` checks (a Serf health check, then checks of its services).
    KV: ``kv_entries`` keys spread evenly over ``<prefix>/app-<n>/key-<number>`` for
    every prefix of ``kv_prefixes`` and ``kv_apps`` apps, each with a value of
    ``kv_value_bytes`` random bytes from ``seed``; ``kv_deleted_prefixes`` are gone (as
    after ``consul kv delete -recurse``: other keys keep their values and indexes).
    ``last_index`` is the header's LastIndex; by default one index per record.
    ``filler_value_bytes`` adds one last key of that size, and key numbers have at least
    ``kv_key_digits`` digits (``sized`` uses both to hit a byte count exactly).
    """

    nodes: int = 4
    services_per_node: int = 3
    checks_per_node: int = 2
    kv_entries: int = 112
    kv_value_bytes: int = 200
    kv_prefixes: tuple[str, ...] = ("config", "locks", "service", "vault")
    kv_apps: int = 7
    kv_deleted_prefixes: tuple[str, ...] = ()
    tombstones: int = 3
    sessions: int = 2
    acl_tokens: int = 3
    seed: int = 0
    last_index: int | None = None
    datacenter: str = "dc1"
    filler_value_bytes: int | None = None
    kv_key_digits: int = 6

    def __post_init__(self) -> None:
        counts = (
            *(self.nodes, self.services_per_node, self.checks_per_node, self.kv_entries),
            *(self.kv_value_bytes, self.tombstones, self.sessions, self.acl_tokens),
        )
        if min(counts) < 0 or self.kv_apps < 1 or (self.filler_value_bytes or 0) < 0:
            raise ValueError(f"counts and sizes cannot be negative: {self}")
        if self.nodes > MAX_NODES or self.services_per_node > MAX_SERVICES_PER_NODE:
            raise ValueError(f"at most {MAX_NODES} nodes of {MAX_SERVICES_PER_NODE} services")
        prefixes = self.kv_prefixes
        if not prefixes or len(set(prefixes)) != len(prefixes) or any("/" in p for p in prefixes):
            raise ValueError(f"KV prefixes must be distinct single segments: {prefixes}")
        if unknown := set(self.kv_deleted_prefixes) - set(prefixes):
            raise ValueError(f"cannot delete prefixes the state does not have: {unknown}")
        if self.sessions and not self.nodes:
            raise ValueError("a session belongs to a node: sessions need nodes")
        if self._positions and self.header_last_index < 1:
            raise ValueError("records were written at index 1 or later: last_index must be >= 1")

    # --- constructors ---------------------------------------------------------

    @classmethod
    def sized(
        cls,
        total_bytes: int,
        seed: int = 0,
        value_bytes: int = 512 << 10,
        last_index: int | None = None,
    ) -> ConsulState:
        """A state of exactly ``total_bytes``: mostly KV entries of ``value_bytes``.

        A small catalog (one node, its service and check) and one ACL token come with
        it when they fit; the last key's value is sized to make up the remainder.
        """
        shapes = (
            cls(nodes=1, services_per_node=1, checks_per_node=1, acl_tokens=1),
            cls(nodes=0, services_per_node=0, checks_per_node=0, sessions=0, acl_tokens=0),
        )
        for shape in shapes:
            base = dataclasses.replace(
                shape,
                kv_entries=0,
                kv_value_bytes=value_bytes,
                tombstones=0,
                sessions=0,
                seed=seed,
                last_index=last_index,
                filler_value_bytes=0,
            )
            if base.length <= total_bytes:
                return base._filled_to(total_bytes)
        raise StateTooSmallError(
            f"no Consul state is {total_bytes} bytes: the smallest is {base.length}"
        )

    def _filled_to(self, total_bytes: int) -> ConsulState:
        """This state with as many full KV entries as fit, and a filler for the rest.

        Where the filler alone cannot make up the rest (a raw header grows by two
        bytes at 32 and 65,536), key numbers one or two digits wider do.
        """

        def layout(entries: int, digits: int = 6) -> ConsulState:
            return self.replace(kv_entries=entries, filler_value_bytes=0, kv_key_digits=digits)

        low, high = 0, max(1, total_bytes // max(1, self.kv_value_bytes))
        while layout(high).length <= total_bytes:
            low, high = high, high * 2
        while high - low > 1:  # the most entries that still fit with an empty filler
            middle = (low + high) // 2
            low, high = (middle, high) if layout(middle).length <= total_bytes else (low, middle)
        for entries in range(low, -1, -1):
            for digits in (6, 7, 8):
                candidate = layout(entries, digits)
                value = _raw_length_adding(total_bytes - candidate.length)
                if value is not None:
                    return candidate.replace(filler_value_bytes=value)
        raise ValueError(f"no KV layout makes exactly {total_bytes} bytes")

    @classmethod
    def many_records(cls, records: int, seed: int = 0, kv_value_bytes: int = 64) -> ConsulState:
        """A big catalog: ``records`` records in all, about half catalog, half small KV.

        Nodes of 1 + 5 services + 4 checks (ten Register records) make up half the
        records; small KV entries (about 150 bytes each) most of the rest.
        """
        shape = cls(
            nodes=records // 20,
            services_per_node=5,
            checks_per_node=4,
            kv_entries=0,
            kv_value_bytes=kv_value_bytes,
            tombstones=min(100, records // 100),
            sessions=min(100, records // 100),
            acl_tokens=min(10, records // 1000),
            seed=seed,
        )
        if shape.nodes == 0:
            shape = dataclasses.replace(shape, sessions=0)
        kv_entries = records - shape.record_count - 1  # with KV comes the "kvs" index entry
        if kv_entries < 0:
            raise ValueError(f"{records} records are too few for a catalog")
        return dataclasses.replace(shape, kv_entries=kv_entries)

    def replace(self, **changes: Any) -> ConsulState:
        return dataclasses.replace(self, **changes)

    def without_prefix(self, prefix: str) -> ConsulState:
        """The same cluster after ``consul kv delete -recurse <prefix>``."""
        name = prefix.strip("/")
        if name not in self.kv_prefixes:
            raise ValueError(f"{prefix!r} is not one of the state's KV prefixes {self.kv_prefixes}")
        if name in self.kv_deleted_prefixes:
            return self
        return self.replace(kv_deleted_prefixes=(*self.kv_deleted_prefixes, name))

    # --- what the stream holds --------------------------------------------------

    @property
    def header_last_index(self) -> int:
        return self.last_index if self.last_index is not None else max(1, self._positions)

    @cached_property
    def length(self) -> int:
        """The byte length of ``state.bin``, from the description alone."""
        indexes = self._indexes
        total = len(self._header_bytes) + len(self._index_records_bytes)
        total += sum(run.length(indexes) for run in self._catalog_runs)
        total += sum(run.length(indexes) for run in self._runs_after_catalog)
        return total + 1 + len(_EMPTY_CHUNKING_STATE)

    @cached_property
    def expected(self) -> dict[str, Any]:
        """What the stream holds, in the shape of the fixtures' expected.json."""
        catalog = {
            "checks": self.nodes * self.checks_per_node,
            "nodes": self.nodes,
            "services": self.nodes * self.services_per_node,
        }
        kv_by_prefix: dict[str, int] = {}
        for group in self._kv_groups:
            if not group.deleted and group.total:
                kv_by_prefix[group.depth2] = group.total
        records = {
            "ACLPolicy": 1 if self.acl_tokens else 0,
            "ACLToken": self.acl_tokens,
            "ChunkingState": 1,
            "Index": len(self._index_table),
            "KVS": sum(kv_by_prefix.values()),
            "Register": self.nodes + catalog["services"] + catalog["checks"],
            "Session": self.sessions,
            "Tombstone": self.tombstones,
        }
        return {
            "catalog": catalog,
            "kv_by_prefix_depth2": kv_by_prefix,
            "last_index": self.header_last_index,
            "records": {name: count for name, count in sorted(records.items()) if count},
        }

    @property
    def record_count(self) -> int:
        return sum(self.expected["records"].values())

    def chunks(self) -> Iterator[bytes]:
        """``state.bin`` in pieces of about ``CHUNK`` bytes, generated as it goes."""
        out = _Gather()
        written = 0
        for piece in self._pieces(out):
            written += len(piece)
            yield piece
        if written != self.length:
            raise AssertionError(f"wrote {written} bytes of a state planned at {self.length}")

    def read(self) -> bytes:
        """The whole stream in memory: for small states in tests."""
        return b"".join(self.chunks())

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()

    # --- the plan ------------------------------------------------------------------

    def _pieces(self, out: _Gather) -> Iterator[bytes]:
        indexes = self._indexes
        out.add(self._header_bytes)
        yield from self._catalog_pieces(out, indexes)
        for run in self._runs_after_catalog:
            yield from _run_pieces(run, out, indexes)
        out.add(self._index_records_bytes)
        out.add(bytes((CHUNKING_STATE,)) + _EMPTY_CHUNKING_STATE)
        if (piece := out.flush()) is not None:
            yield piece

    @cached_property
    def _layout(self) -> dict[str, tuple[int, int]]:
        """Each table's (first k, count) in the order the records were written."""
        tables = {
            "catalog": self.nodes * (1 + self.services_per_node + self.checks_per_node),
            "sessions": self.sessions,
            "acl-tokens": self.acl_tokens,
            "acl-policies": 1 if self.acl_tokens else 0,
            "kvs": self.kv_entries + (1 if self.filler_value_bytes is not None else 0),
            "tombstones": self.tombstones,
        }
        layout, k = {}, 0
        for table, count in tables.items():
            layout[table] = (k, count)
            k += count
        return layout

    @property
    def _positions(self) -> int:
        first, count = self._layout["tombstones"]
        return first + count

    @cached_property
    def _indexes(self) -> _Indexes:
        return _Indexes(max(1, self._positions), self.header_last_index)

    @cached_property
    def _header_bytes(self) -> bytes:
        return SNAPSHOT_HEADER.encode({"LastIndex": self.header_last_index})

    @cached_property
    def _index_table(self) -> dict[str, int]:
        """Index entries: each table holding records, and the index it was last written at."""
        last_k: dict[str, int] = {}
        for table in ("acl-policies", "acl-tokens", "kvs", "sessions", "tombstones"):
            first, count = self._layout[table]
            if count:
                last_k[table] = first + count - 1
        first, count = self._layout["catalog"]
        stride = 1 + self.services_per_node + self.checks_per_node
        if self.nodes:
            last_node = first + (self.nodes - 1) * stride
            last_k["nodes"] = first + count - 1
            if self.services_per_node:
                last_k["services"] = last_node + self.services_per_node
            if self.checks_per_node:
                last_k["checks"] = last_node + self.services_per_node + self.checks_per_node
        return {table: self._indexes.of(k) for table, k in sorted(last_k.items())}

    @cached_property
    def _index_records_bytes(self) -> bytes:
        return b"".join(
            bytes((INDEX,)) + INDEX_ENTRY.encode({"Key": table, "Value": value})
            for table, value in self._index_table.items()
        )

    @cached_property
    def _kv_groups(self) -> list[_KvGroup]:
        """The KV entries grouped by <prefix>/app-<n>, in key order."""
        names = [(p, a) for p in sorted(self.kv_prefixes) for a in range(self.kv_apps)]
        share, rest = divmod(self.kv_entries, len(names))
        has_filler = self.filler_value_bytes is not None
        key_width = max(self.kv_key_digits, _width(self.kv_entries + has_filler))
        groups, number = [], 0
        k = self._layout["kvs"][0]
        for position, (prefix, app) in enumerate(names):
            count = share + (position < rest)
            filler = has_filler and position == len(names) - 1
            depth2 = f"{prefix}/app-{app:0{_width(self.kv_apps)}d}"
            deleted = prefix in self.kv_deleted_prefixes
            groups.append(_KvGroup(depth2, count, filler, number, k, key_width, deleted))
            number += count + filler
            k += count + filler
        return groups

    @cached_property
    def _runs_after_catalog(self) -> list[_Run]:
        runs = [
            self._simple_run(SESSION, "sessions", self._session_record, 2),
            self._simple_run(ACL_TOKEN, "acl-tokens", self._token_record, 2),
            self._simple_run(ACL_POLICY, "acl-policies", self._policy_record, 2),
        ]
        for group in self._kv_groups:
            if not group.deleted:
                runs.extend(group.runs(self))
        runs.append(self._simple_run(TOMBSTONE, "tombstones", self._tombstone_record, 1))
        return runs

    def _simple_run(
        self, msg_type: int, table: str, build: Callable[[int, int], bytes], index_fields: int
    ) -> _Run:
        first, count = self._layout[table]
        return _Run(msg_type, count, first, 1, index_fields, build)

    # --- the catalog: node by node, each followed by its services and checks ----

    @cached_property
    def _catalog_runs(self) -> list[_Run]:
        """The catalog as runs by role, for its length (it streams node by node)."""
        first, _ = self._layout["catalog"]
        stride = 1 + self.services_per_node + self.checks_per_node
        runs = [_Run(REGISTER, self.nodes, first, stride, 0, self._node_record)]
        for j in range(self.services_per_node):
            build = _role(self._service_record, j)
            runs.append(_Run(REGISTER, self.nodes, first + 1 + j, stride, 2, build))
        for j in range(self.checks_per_node):
            build = _role(self._check_record, j)
            runs.append(
                _Run(REGISTER, self.nodes, first + 1 + self.services_per_node + j, stride, 2, build)
            )
        return runs

    def _catalog_pieces(self, out: _Gather, indexes: _Indexes) -> Iterator[bytes]:
        first, _ = self._layout["catalog"]
        stride = 1 + self.services_per_node + self.checks_per_node
        register = bytes((REGISTER,))
        for n in range(self.nodes):
            k = first + n * stride
            node = self._node_register(n)
            records = [register + self._node_record(n, 0, node)]
            for j in range(self.services_per_node):
                index = indexes.of(k + 1 + j)
                records.append(register + self._service_record(n, index, node, j))
            for j in range(self.checks_per_node):
                index = indexes.of(k + 1 + self.services_per_node + j)
                records.append(register + self._check_record(n, index, node, j))
            if (piece := out.add(b"".join(records))) is not None:
                yield piece

    def _node_register(self, n: int) -> Callable[[Mapping[str, Any]], bytes]:
        """Node ``n``'s RegisterRequest with the node's fields encoded once.

        It takes ``Service`` and ``Check``: every record of a node repeats the rest.
        """
        address = f"10.{100 + n // 10_000}.{100 + n // 100 % 100}.{100 + n % 100}"
        return REGISTER_REQUEST.partial(
            {
                "Address": address,
                "Checks": None,
                "Datacenter": self.datacenter,
                "ID": _stable_id(self.seed, "node", n),
                "Node": self._node_name(n),
                "NodeMeta": {"consul-network-segment": ""},
                "SkipNodeUpdate": False,
                "TaggedAddresses": {"lan": address},
                "Token": "",
            }
        )

    @cached_property
    def _names(self) -> dict[str, str]:
        """Formats of numbered names, zero-padded so that names of one kind have one length."""
        nodes, services = _width(self.nodes), _width(self.services_per_node)
        return {
            "node": f"node-{{:0{nodes}d}}",
            "service_id": f"web-{{:0{nodes}d}}-{{:0{services}d}}",
            "service": f"web-{{:0{services}d}}",
        }

    def _node_name(self, n: int) -> str:
        return self._names["node"].format(n)

    def _node_record(
        self, n: int, _index: int, node: Callable[[Mapping[str, Any]], bytes] | None = None
    ) -> bytes:
        """The node itself: a RegisterRequest without Service or Check (and no index)."""
        node = node or self._node_register(n)
        return node({"Service": None, "Check": None})

    def _service_id(self, n: int, j: int) -> str:
        return self._names["service_id"].format(n, j)

    def _service_name(self, j: int) -> str:
        return self._names["service"].format(j)

    def _service_record(
        self, n: int, index: int, node: Callable[[Mapping[str, Any]], bytes] | None, j: int
    ) -> bytes:
        service = self._service_templates[j](
            {"CreateIndex": index, "ID": self._service_id(n, j), "ModifyIndex": index}
        )
        node = node or self._node_register(n)
        return node({"Service": Encoded(service), "Check": None})

    @cached_property
    def _service_templates(self) -> list[Callable[[Mapping[str, Any]], bytes]]:
        """Per service number, a NodeService encoder with the fields all nodes share."""
        return [
            NODE_SERVICE.partial(
                {
                    "Address": "",
                    "EnableTagOverride": False,
                    "Kind": "",
                    "Meta": {},
                    "Port": 8000 + j,
                    "Service": self._service_name(j),
                    "Tags": ["v1"],
                }
            )
            for j in range(self.services_per_node)
        ]

    def _check_record(
        self, n: int, index: int, node: Callable[[Mapping[str, Any]], bytes] | None, j: int
    ) -> bytes:
        """Check 0 is the node's Serf health check; the others check its services in turn."""
        check = {"CreateIndex": index, "ModifyIndex": index, "Node": self._node_name(n)}
        if j > 0 and self.services_per_node:
            service_id = self._service_id(n, (j - 1) % self.services_per_node)
            check["ServiceID"] = service_id
            check["CheckID"] = f"service:{service_id}:{j:0{_width(self.checks_per_node)}d}"
        node = node or self._node_register(n)
        return node({"Service": None, "Check": Encoded(self._check_templates[j](check))})

    @cached_property
    def _check_templates(self) -> list[Callable[[Mapping[str, Any]], bytes]]:
        """Per check number, a HealthCheck encoder with the fields all nodes share."""
        templates = []
        for j in range(self.checks_per_node):
            shared = {
                "CheckID": "serfHealth",
                "Name": "Serf Health Status",
                "Notes": "",
                "Output": "Agent alive and reachable",
                "ServiceID": "",
                "ServiceName": "",
                "ServiceTags": None,
                "Status": "passing",
                "Type": "",
            }
            if j > 0 and self.services_per_node:
                name = self._service_name((j - 1) % self.services_per_node)
                del shared["CheckID"], shared["ServiceID"]  # they name the node's service
                shared.update(ServiceName=name, Name=f"Service '{name}' check", Type="http")
                shared["Output"] = "HTTP GET http://localhost/health: 200 OK Output: ok"
            elif j > 0:
                shared.update(CheckID=f"disk-{j:0{_width(self.checks_per_node)}d}", Name="Disk")
                shared.update(Type="script", Output="disk usage 42%")
            templates.append(HEALTH_CHECK.partial(shared))
        return templates

    # --- sessions, ACLs, KV, tombstones ----------------------------------------

    def _session_record(self, i: int, index: int) -> bytes:
        return SESSION_STRUCT.encode(
            {
                "Behavior": "release",
                "CreateIndex": index,
                "ID": _stable_id(self.seed, "session", i),
                "LockDelay": _LOCK_DELAY,
                "ModifyIndex": index,
                "Name": f"lock-{i:0{_width(self.sessions)}d}",
                "Node": self._node_name(i % self.nodes),
                "TTL": "",
            }
        )

    def _token_record(self, i: int, index: int) -> bytes:
        description = f"token {i:0{_width(self.acl_tokens)}d}"
        return ACL_TOKEN_STRUCT.encode(
            {
                "AccessorID": _stable_id(self.seed, "token-accessor", i),
                "CreateIndex": index,
                "CreateTime": _TOKEN_CREATED + timedelta(seconds=i),
                "Description": description,
                "Hash": hashlib.blake2b(
                    f"{description}global{GLOBAL_MANAGEMENT_ID}".encode(), digest_size=32
                ).digest(),
                "Local": False,
                "ModifyIndex": index,
                "Policies": [{"ID": GLOBAL_MANAGEMENT_ID, "Name": "global-management"}],
                "SecretID": _stable_id(self.seed, "token-secret", i),
            }
        )

    def _policy_record(self, _: int, index: int) -> bytes:
        return ACL_POLICY_STRUCT.encode(
            {
                "CreateIndex": index,
                "Datacenters": None,
                "Description": "Builtin Policy that grants unlimited access",
                "Hash": hashlib.blake2b(GLOBAL_MANAGEMENT_RULES.encode(), digest_size=32).digest(),
                "ID": GLOBAL_MANAGEMENT_ID,
                "ModifyIndex": index,
                "Name": "global-management",
                "Rules": GLOBAL_MANAGEMENT_RULES,
            }
        )

    def _tombstone_record(self, i: int, index: int) -> bytes:
        return DIR_ENTRY.encode(
            {
                "CreateIndex": 0,
                "Flags": 0,
                "Key": f"deleted/key-{i:0{_width(self.tombstones)}d}",
                "LockIndex": 0,
                "ModifyIndex": index,
                "Session": "",
                "Value": None,
            }
        )


@dataclass(frozen=True)
class _KvGroup:
    """The keys under one <prefix>/app-<n>, numbered from ``first_number`` in key order."""

    depth2: str
    count: int
    filler: bool
    first_number: int
    first_k: int
    key_width: int
    deleted: bool

    @property
    def total(self) -> int:
        return self.count + self.filler

    def runs(self, state: ConsulState) -> list[_Run]:
        seed = f"consul-state/{state.seed}/{self.depth2}"
        build = self._builder(0, state.kv_value_bytes)
        runs = [_Run(KVS, self.count, self.first_k, 1, 2, build, state.kv_value_bytes, seed)]
        if self.filler:
            value_bytes = state.filler_value_bytes or 0
            build = self._builder(self.count, value_bytes)
            runs.append(
                _Run(KVS, 1, self.first_k + self.count, 1, 2, build, value_bytes, seed + "/filler")
            )
        return runs

    def _builder(self, offset: int, value_bytes: int) -> Callable[[int, int], bytes]:
        """Record i of the group (after ``offset``), open for its value of ``value_bytes``."""
        value_header = raw_header(value_bytes)
        key_format = f"{self.depth2}/key-{{:0{self.key_width}d}}"
        first = self.first_number + offset

        def build(i: int, index: int) -> bytes:
            number = first + i
            values = {
                "CreateIndex": index,
                "Flags": number % _KV_FLAG_CYCLE,
                "Key": key_format.format(number),
                "ModifyIndex": index,
                "Value": b"",
            }
            return _KV_ENTRY(values)[:-1] + value_header  # Value, the last field, streams after

        return build


# A DirEntry with the fields every stored key of these states shares.
_KV_ENTRY = DIR_ENTRY.partial({"LockIndex": 0, "Session": ""})
assert next(reversed(DIR_ENTRY.fields)) == "Value", "a KV value streams after its record"


def _role(build: Callable[[int, int, Any, int], bytes], j: int) -> Callable[[int, int], bytes]:
    """Record builder of service or check ``j`` of node n, as a run samples it."""
    return lambda n, index: build(n, index, None, j)


def _raw_length_adding(extra: int) -> int | None:
    """The length of a raw value that takes ``extra`` bytes more than an empty one.

    None where no length does: a raw header grows by two bytes at 32 and at 65,536.
    """
    for header_growth, smallest, largest in ((0, 0, 31), (2, 32, 0xFFFF), (4, 1 << 16, 1 << 32)):
        length = extra - header_growth
        if smallest <= length <= largest:
            return length
    return None


class _Gather:
    """Gathers small records into pieces of about CHUNK bytes; large values pass through."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, data: bytes) -> bytes | None:
        """``data`` kept; a gathered piece once there is enough of it."""
        self._parts.append(data)
        self._size += len(data)
        return self.flush() if self._size >= CHUNK else None

    def flush(self) -> bytes | None:
        if not self._parts:
            return None
        piece = b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        return piece


def _run_pieces(run: _Run, out: _Gather, indexes: _Indexes) -> Iterator[bytes]:
    """The run's records; values of CHUNK bytes or more go out in pieces of their own."""
    type_byte = bytes((run.msg_type,))
    rng = random.Random(run.payload_seed)
    small = run.payload < CHUNK
    for i in range(run.count):
        index = indexes.of(run.first_k + i * run.stride)
        record = type_byte + run.build(i, index)
        if small:
            if run.payload:
                record += rng.randbytes(run.payload)
            if (piece := out.add(record)) is not None:
                yield piece
            continue
        out.add(record)
        if (piece := out.flush()) is not None:
            yield piece
        for start in range(0, run.payload, CHUNK):
            yield rng.randbytes(min(CHUNK, run.payload - start))
