"""The state.bin writer speaks Consul's encoding: read back with msgpack, held to the fixtures.

The fixtures in tests/fixtures/state-bin/ were written by hashicorp's go-msgpack 0.5.5
with Consul's handle; the writer here is hand-made. Every record type the writer
shares with them must have their key set and value kinds, and every count the
writer claims (``expected``) must be what a msgpack reader finds.
"""

from __future__ import annotations

import json
import tracemalloc
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
import pytest

from testbed.fsm_writer import (
    CHUNK,
    MESSAGE_TYPE_NAMES,
    ConsulState,
    StateTooSmallError,
    go_time_binary,
    raw,
    sint,
    uint,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "state-bin"
EXPECTED = json.loads((FIXTURES / "expected.json").read_bytes())["states"]
# Consul's persist order (agent/consul/fsm/snapshot_ce.go), by message type.
PERSIST_ORDER = ["Register", "Session", "ACLToken", "ACLPolicy", "KVS", "Tombstone", "Index"]


def read_state(data: bytes) -> tuple[Any, list[tuple[int, Any]]]:
    """The header and (type, record) pairs, read as Consul's ReadSnapshot reads them."""
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False, max_buffer_size=1 << 30)
    unpacker.feed(data)
    header = unpacker.unpack()
    records = []
    while type_byte := unpacker.read_bytes(1):
        records.append((type_byte[0], unpacker.unpack()))
    return header, records


def role(msg_type: int, record: Any) -> str:
    name = MESSAGE_TYPE_NAMES[msg_type]
    if name != "Register":
        return name
    if record[b"Service"] is not None:
        return "Register/service"
    return "Register/check" if record[b"Check"] is not None else "Register/node"


def counts_of(data: bytes) -> dict[str, Any]:
    """What a stream holds, in the shape of expected.json."""
    header, records = read_state(data)
    roles = Counter(role(t, r) for t, r in records)
    kv = Counter(
        "/".join(r[b"Key"].decode().split("/")[:2])
        for t, r in records
        if MESSAGE_TYPE_NAMES[t] == "KVS"
    )
    return {
        "catalog": {
            "checks": roles["Register/check"],
            "nodes": roles["Register/node"],
            "services": roles["Register/service"],
        },
        "kv_by_prefix_depth2": dict(sorted(kv.items())),
        "last_index": header[b"LastIndex"],
        "records": dict(sorted(Counter(MESSAGE_TYPE_NAMES[t] for t, _ in records).items())),
    }


def kind(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    return {int: "int", bytes: "raw", list: "array", dict: "map"}[type(value)]


def shapes(data: bytes) -> dict[str, dict[str, str]]:
    """Per record role, and for the structs nested in them: field -> value kind."""
    found: dict[str, dict[str, str]] = {}

    def note(name: str, struct: dict[bytes, Any]) -> None:
        found.setdefault(name, {k.decode(): kind(v) for k, v in struct.items()})

    for msg_type, record in read_state(data)[1]:
        name = role(msg_type, record)
        note(name, record)
        for field in (b"Service", b"Check"):
            if isinstance(record.get(field), dict):
                note(f"{name}.{field.decode()}", record[field])
        for link in record.get(b"Policies") or []:
            note(f"{name}.Policies[]", link)
    return found


def markers(data: bytes) -> Counter[tuple[int, int]]:
    """(marker byte, length) of every raw value, walking msgpack by hand.

    Independent of any library: a str 8 (0xd9) or bin (0xc4..0xc6) marker anywhere
    would show here, where a decoder hides it.
    """
    seen: Counter[tuple[int, int]] = Counter()
    position = 0

    def value() -> None:
        nonlocal position
        marker = data[position]
        position += 1
        if marker <= 0x7F or marker >= 0xE0 or marker in (0xC0, 0xC2, 0xC3):
            return
        sizes = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
        if marker in sizes:
            position += sizes[marker]
            return
        if 0x80 <= marker <= 0x8F or marker in (0xDE, 0xDF):
            for _ in range(2 * container(marker, 0x80, 0xDE)):
                value()
            return
        if 0x90 <= marker <= 0x9F or marker in (0xDC, 0xDD):
            for _ in range(container(marker, 0x90, 0xDC)):
                value()
            return
        length = raw_length(marker)
        seen[(marker, length)] += 1
        position += length

    def container(marker: int, fix: int, wide: int) -> int:
        nonlocal position
        if fix <= marker <= fix + 0x0F:
            return marker - fix
        width = 2 if marker == wide else 4
        position += width
        return int.from_bytes(data[position - width : position], "big")

    def raw_length(marker: int) -> int:
        nonlocal position
        if 0xA0 <= marker <= 0xBF:
            return marker - 0xA0
        width = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}[marker]
        position += width
        return int.from_bytes(data[position - width : position], "big")

    value()  # the header
    while position < len(data):
        position += 1  # the type byte
        value()
    return seen


SMALL_STATES = {
    "default": ConsulState(),
    "one index for many records": ConsulState(last_index=13),
    "indexes past 2**32": ConsulState(last_index=1 << 33, seed=3),
    "config/ deleted": ConsulState().without_prefix("config/"),
    "no services, disk checks": ConsulState(services_per_node=0, checks_per_node=3),
    "a bigger catalog": ConsulState(nodes=120, services_per_node=12, checks_per_node=5),
    "KV only": ConsulState(nodes=0, services_per_node=0, checks_per_node=0, sessions=0),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_reader_of_these_tests_counts_the_fixtures_as_expected_json_says(name):
    data = (FIXTURES / f"{name}.state.bin").read_bytes()
    assert counts_of(data) == EXPECTED[name]


@pytest.mark.parametrize("name", list(SMALL_STATES))
def test_a_msgpack_reader_finds_exactly_the_counts_the_writer_claims(name):
    state = SMALL_STATES[name]
    data = state.read()
    assert len(data) == state.length
    assert counts_of(data) == state.expected


def test_every_record_type_has_the_fixtures_fields_and_value_kinds():
    ours = shapes(ConsulState().read())
    theirs = shapes((FIXTURES / "catalog-and-kv.state.bin").read_bytes())
    shared = ours.keys() & theirs.keys()
    assert shared >= {
        *("Register/node", "Register/service", "Register/check"),
        *("Register/service.Service", "Register/check.Check", "ACLToken.Policies[]"),
        *("Session", "ACLToken", "KVS", "Tombstone", "Index", "ChunkingState"),
    }
    for name in sorted(shared):
        assert ours[name] == theirs[name], name
    # A type the fixtures lack (ACL policies) follows Consul's struct: RaftIndex inlined.
    assert ours["ACLPolicy"] == {
        **{"CreateIndex": "int", "Datacenters": "nil", "Description": "raw", "Hash": "raw"},
        **{"ID": "raw", "ModifyIndex": "int", "Name": "raw", "Rules": "raw"},
    }


def test_raw_values_are_the_old_specs_raw_family_never_str8_or_bin():
    found = markers(ConsulState(last_index=70_000).read())
    assert found, "the walk found raw values"
    used = {marker for marker, _ in found}
    assert not used & {0xD9, 0xC4, 0xC5, 0xC6}
    mid_sized = {(marker, length) for marker, length in found if 32 <= length <= 255}
    assert mid_sized and {marker for marker, _ in mid_sized} == {0xDA}  # IDs, hashes, values
    assert all(marker <= 0xBF for marker, length in found if length < 32)


@pytest.mark.parametrize(
    ("length", "header"),
    [(0, b"\xa0"), (31, b"\xbf"), (32, b"\xda\x00\x20"), (255, b"\xda\x00\xff"),
     (65_535, b"\xda\xff\xff"), (65_536, b"\xdb\x00\x01\x00\x00")],
)  # fmt: skip
def test_raw_headers_at_their_boundaries(length, header):
    encoded = raw(b"v" * length)
    assert encoded[: len(header)] == header and len(encoded) == len(header) + length
    assert msgpack.unpackb(encoded, raw=True) == b"v" * length


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, b"\x00"), (127, b"\x7f"), (128, b"\xcc\x80"), (255, b"\xcc\xff"),
     (256, b"\xcd\x01\x00"), (65_536, b"\xce\x00\x01\x00\x00"),
     (1 << 32, b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00")],
)  # fmt: skip
def test_unsigned_integers_take_the_shortest_form(value, encoded):
    assert uint(value) == encoded == sint(value)
    assert msgpack.unpackb(encoded) == value


@pytest.mark.parametrize(
    ("value", "marker"), [(-1, b"\xff"), (-32, b"\xe0"), (-33, b"\xd0"), (-129, b"\xd1"),
                          (-40_000, b"\xd2"), (-(1 << 40), b"\xd3")],
)  # fmt: skip
def test_negative_signed_integers_as_go_msgpack_writes_them(value, marker):
    assert sint(value)[:1] == marker
    assert msgpack.unpackb(sint(value)) == value


def test_a_time_is_its_15_byte_binary_form_as_in_the_fixtures():
    _, records = read_state((FIXTURES / "catalog-and-kv.state.bin").read_bytes())
    fixture = next(r[b"CreateTime"] for t, r in records if MESSAGE_TYPE_NAMES[t] == "ACLToken")
    ours = go_time_binary(datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC))
    assert len(ours) == len(fixture) == 15
    assert ours[:9] == fixture[:9] and ours[13:] == fixture[13:] == b"\xff\xff"  # seconds, UTC
    assert int.from_bytes(ours[9:13], "big") == 123_456_000


def test_records_come_in_consuls_persist_order_with_each_nodes_records_after_it():
    _, records = read_state(ConsulState().read())
    names = [MESSAGE_TYPE_NAMES[t] for t, _ in records]
    assert names[-1] == "ChunkingState" and names.count("ChunkingState") == 1
    ranks = [PERSIST_ORDER.index(name) for name in names[:-1]]
    assert ranks == sorted(ranks)
    catalog = [role(t, r) for t, r in records if MESSAGE_TYPE_NAMES[t] == "Register"]
    per_node = ["Register/node"] + ["Register/service"] * 3 + ["Register/check"] * 2
    assert catalog == per_node * 4
    nodes = [r[b"Node"] for t, r in records if MESSAGE_TYPE_NAMES[t] == "Register"]
    assert nodes == sorted(nodes)  # a node's services and checks follow the node itself
    keys = [r[b"Key"] for t, r in records if MESSAGE_TYPE_NAMES[t] == "KVS"]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)  # memdb's key order


def test_indexes_never_pass_the_headers_last_index():
    for last_index in (13, 262, 70_000):
        header, records = read_state(ConsulState(last_index=last_index).read())
        assert header == {b"LastIndex": last_index}
        indexes = [r[b"Value"] for t, r in records if MESSAGE_TYPE_NAMES[t] == "Index"]
        for _, record in records:
            for nested in (record, record.get(b"Service"), record.get(b"Check")):
                if isinstance(nested, dict) and b"ModifyIndex" in nested:
                    indexes.append(nested[b"ModifyIndex"])
        assert min(indexes) >= 1 and max(indexes) == last_index


def test_values_come_from_the_seed_and_a_deleted_prefix_leaves_the_rest_as_it_was():
    def kv(state: ConsulState) -> dict[bytes, tuple[bytes, int]]:
        return {
            r[b"Key"]: (r[b"Value"], r[b"ModifyIndex"])
            for t, r in read_state(state.read())[1]
            if MESSAGE_TYPE_NAMES[t] == "KVS"
        }

    state = ConsulState(seed=5)
    assert state.read() == ConsulState(seed=5).read()
    assert kv(state).values() != kv(ConsulState(seed=6)).values()
    after = state.without_prefix("config/")
    before = kv(state)
    assert kv(after) == {k: v for k, v in before.items() if not k.startswith(b"config/")}
    assert len(kv(after)) < len(before)
    assert "config/app-0" not in after.expected["kv_by_prefix_depth2"]
    assert after.expected["records"]["Register"] == state.expected["records"]["Register"]
    with pytest.raises(ValueError, match="not one of the state's KV prefixes"):
        state.without_prefix("nothing/")


@pytest.mark.parametrize(
    "total", [130, 511, 512, 513, 4096, 65_600, 65_610, 70_000, 300_000, 1_000_003]
)
def test_sized_states_have_exactly_the_bytes_asked_for(total):
    state = ConsulState.sized(total, seed=total, value_bytes=64 << 10)
    data = state.read()
    assert len(data) == state.length == total
    assert counts_of(data) == state.expected


def test_every_total_from_the_smallest_state_on_is_reachable():
    bare = ConsulState(nodes=0, services_per_node=0, checks_per_node=0, sessions=0)
    smallest = bare.replace(acl_tokens=0, tombstones=0, kv_entries=0, filler_value_bytes=0)
    with_catalog = ConsulState.sized(1 << 20).replace(kv_entries=0, filler_value_bytes=0)
    for first in (smallest.length, with_catalog.length):
        for total in range(first, first + 80):
            assert ConsulState.sized(total, value_bytes=1).length == total
    with pytest.raises(StateTooSmallError):
        ConsulState.sized(smallest.length - 1)


def test_a_benchmark_sized_state_is_mostly_large_kv_values():
    state = ConsulState.sized(64 << 20, seed=1)  # 512 KiB values by default
    assert state.length == 64 << 20
    assert 120 <= state.expected["records"]["KVS"] <= 129
    assert state.expected["catalog"] == {"checks": 1, "nodes": 1, "services": 1}


def test_a_million_records_are_counted_before_and_while_streaming():
    state = ConsulState.many_records(1_000_000)
    assert state.record_count == 1_000_000
    assert 100 * 1_000_000 < state.length < 300 * 1_000_000  # ~100-300 bytes a record
    assert sum(len(chunk) for chunk in state.chunks()) == state.length


@pytest.mark.parametrize(
    "state",
    [ConsulState.sized(96 << 20, seed=2), ConsulState.many_records(60_000)],
    ids=["large values", "many small records"],
)
def test_a_large_state_streams_in_flat_memory(state):
    tracemalloc.start()
    try:
        streamed = 0
        for chunk in state.chunks():
            assert len(chunk) <= 2 * CHUNK
            streamed += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert streamed == state.length
    assert peak < 8 << 20, f"peak {peak} bytes while streaming {streamed}"


def test_a_state_that_cannot_be_consuls_is_refused():
    with pytest.raises(ValueError, match="sessions need nodes"):
        ConsulState(nodes=0, services_per_node=0, checks_per_node=0)
    with pytest.raises(ValueError, match="last_index must be >= 1"):
        ConsulState(last_index=0)
    with pytest.raises(ValueError, match="cannot be negative"):
        ConsulState(kv_entries=-1)
