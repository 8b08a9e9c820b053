"""The state.bin decoder reads what Consul's restore reads, and refuses what it refuses.

The fixtures are two real streams written by hashicorp's go-msgpack 0.5.5 with
Consul's handle (copied from the shared fixtures, with the counts they hold).
Every state is fed in several chunkings: one chunk, tar-sized blocks, single
bytes and random cuts, so both the fast path (whole records) and the
resumable reader (records cut by a chunk boundary) must reach the same answer.
The msgpack package, decoding whole values, is the reference for every count
and size.
"""

from __future__ import annotations

import hashlib
import json
import random
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from snapshot_backup import state_bin
from snapshot_backup.state_bin import (
    StateDecoder,
    StateError,
    StateSummary,
    StricterStateError,
    Usage,
    key_text,
    message_type_name,
    summarize_state,
)

FIXTURES = Path(__file__).parent / "fixtures" / "state-bin"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())["states"]
FIXTURE_NAMES = sorted(EXPECTED)
TAR_BLOCK = 256 << 10  # the verifier hands state.bin over in reads of this size
REGISTER, KVS, SESSION, TOMBSTONE, INDEX, ACL_TOKEN, CHUNKING = 0, 2, 3, 5, 16, 17, 29


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.state.bin").read_bytes()


# --- chunkings --------------------------------------------------------------------------------


def whole(data: bytes) -> Iterator[bytes]:
    yield data


def tar_blocks(data: bytes) -> Iterator[bytes]:
    for at in range(0, len(data), TAR_BLOCK):
        yield data[at : at + TAR_BLOCK]


def single_bytes(data: bytes) -> Iterator[bytes]:
    for at in range(len(data)):
        yield data[at : at + 1]


def random_cuts(data: bytes, seed: int = 7) -> Iterator[bytes]:
    rng = random.Random(seed)
    at = 0
    while at < len(data):
        step = rng.choice((1, 2, 3, 5, 8, 13, 100, 1000, 4096, 70_000))
        yield data[at : at + step]
        at += step


CHUNKINGS: dict[str, Callable[[bytes], Iterator[bytes]]] = {
    "whole": whole,
    "256KiB": tar_blocks,
    "1-byte": single_bytes,
    "random": random_cuts,
}


def decode(data: bytes, chunks: Callable[[bytes], Iterator[bytes]] = whole, **options: Any):
    decoder = StateDecoder(**options)
    for chunk in chunks(data):
        decoder.feed(chunk)
    return decoder.finish()


def outcome(data: bytes, chunks: Callable[[bytes], Iterator[bytes]], **options: Any) -> Any:
    """The summary as a dict, or the error: what every chunking must agree on."""
    try:
        return decode(data, chunks, **options).to_dict()
    except StateError as exc:
        return (type(exc).__name__, exc.consul_words, str(exc), exc.offset)


# --- states as Consul writes them (go-msgpack: structs as maps, fields sorted) ---------------


def pack(value: Any, bin_type: bool = False) -> bytes:
    return msgpack.packb(value, use_bin_type=bin_type)


def header(last_index: int = 262) -> bytes:
    return pack({"LastIndex": last_index})


def record(msg_type: int, value: Any, bin_type: bool = False) -> bytes:
    return bytes([msg_type]) + pack(value, bin_type)


def dir_entry(key: bytes | str, value: bytes | None, index: int = 100, **fields: Any) -> dict:
    """structs.DirEntry as Consul CE's encoder writes it."""
    entry = {
        "CreateIndex": index,
        "Flags": 0,
        "Key": key,
        "LockIndex": 0,
        "ModifyIndex": index,
        "Session": "",
        "Value": value,
    }
    entry.update(fields)
    return entry


def register(node: str, service: dict | None = None, check: dict | None = None, **fields: Any):
    """structs.RegisterRequest as Consul CE's persistNodes writes it."""
    request = {
        "Address": "10.0.0.1",
        "Check": check,
        "Checks": None,
        "CreateIndex": 10,
        "Datacenter": "dc1",
        "ID": "68087cc0-282c-35d9-ad8b-51bf6a35a933",
        "Locality": None,
        "ModifyIndex": 10,
        "Node": node,
        "NodeMeta": {"consul-network-segment": ""},
        "PeerName": "",
        "Service": service,
        "SkipNodeUpdate": False,
        "TaggedAddresses": {"lan": "10.0.0.1"},
        "Token": "",
    }
    request.update(fields)
    return request


def node_service(service_id: str, name: str = "web") -> dict:
    return {
        "Address": "",
        "CreateIndex": 11,
        "EnableTagOverride": False,
        "ID": service_id,
        "Kind": "",
        "Meta": {},
        "ModifyIndex": 11,
        "Port": 8000,
        "Service": name,
        "Tags": ["v1"],
    }


def health_check(check_id: str, node: str = "node-0") -> dict:
    return {"CheckID": check_id, "Name": "Serf Health Status", "Node": node, "Status": "passing"}


KV_RECORD = record(KVS, dir_entry("config/app/key", b"\x00\xffvalue"))
SMALL_STATE = header() + record(REGISTER, register("node-0")) + KV_RECORD


# --- the reference: msgpack decodes whole values ---------------------------------------------


def reference(data: bytes, kv_depth: int = 2, kv_filter: bytes | None = None) -> dict[str, Any]:
    """What the summary must say, computed from msgpack's decoding of every record.

    Record bytes as ``consul snapshot inspect`` counts them: the type byte and
    the value, the header's bytes charged to the first record; KV prefixes as
    Go's ``strings.Split`` and ``strings.Join`` cut them.
    """
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False, max_buffer_size=0)
    unpacker.feed(data)
    last_index = unpacker.unpack()[b"LastIndex"]
    carried = unpacker.tell()
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    prefixes: dict[str, list[int]] = {}
    catalog: Counter[str] = Counter()
    kv_bytes = 0
    while type_byte := unpacker.read_bytes(1):
        start = unpacker.tell() - 1
        value = unpacker.unpack()
        name = message_type_name(type_byte[0])
        size = unpacker.tell() - start + carried
        carried = 0
        counts[name] += 1
        sizes[name] += size
        if type_byte[0] == KVS:
            key = value[b"Key"]
            kv_bytes += len(value.get(b"Value") or b"")
            if kv_filter is None or key.startswith(kv_filter):
                usage = prefixes.setdefault(key_text(b"/".join(key.split(b"/")[:kv_depth])), [0, 0])
                usage[0] += 1
                usage[1] += size
        elif type_byte[0] == REGISTER:
            service, check = value.get(b"Service"), value.get(b"Check")
            catalog["service_instances"] += service is not None
            catalog["checks"] += (check is not None) + len(value.get(b"Checks") or ())
            catalog["nodes"] += service is None and check is None
    return {
        "last_index": last_index,
        "records": {name: {"count": counts[name], "bytes": sizes[name]} for name in counts},
        "kv_prefixes": {p: {"count": c, "bytes": b} for p, (c, b) in prefixes.items()},
        "kv_entries": counts["KVS"],
        "kv_bytes": kv_bytes,
        "tombstones": counts["Tombstone"],
        "sessions": counts["Session"],
        "acl_tokens": counts["ACLToken"],
        **{name: catalog[name] for name in ("nodes", "service_instances", "checks")},
    }


def as_reference(summary: StateSummary) -> dict[str, Any]:
    document = summary.to_dict()
    return {key: document[key] for key in reference(header())}


# --- the fixtures ----------------------------------------------------------------------------


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_reads_back_exactly(name: str, chunking: str) -> None:
    data, expected = fixture(name), EXPECTED[name]
    summary = decode(data, CHUNKINGS[chunking])
    assert summary.last_index == expected["last_index"]
    assert {n: u.count for n, u in summary.records.items()} == expected["records"]
    assert (summary.nodes, summary.service_instances, summary.checks) == (
        expected["catalog"]["nodes"],
        expected["catalog"]["services"],
        expected["catalog"]["checks"],
    )
    assert {p: u.count for p, u in summary.kv_prefixes.items()} == expected["kv_by_prefix_depth2"]
    assert summary.state_bytes == len(data)
    # inspect's total: every byte of state.bin belongs to one record (the header to the first).
    assert sum(u.bytes for u in summary.records.values()) == len(data)
    assert summary.compatibility_notes == ()


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_matches_msgpack_reference(name: str) -> None:
    data = fixture(name)
    assert as_reference(decode(data, tar_blocks)) == reference(data)


def test_record_bytes_are_counted_as_inspect_counts_them() -> None:
    """Type byte plus value; inspect's counter starts before the header, so the first
    record carries the header's 14 bytes."""
    node = record(REGISTER, register("node-0"))
    summary = decode(header() + node + KV_RECORD + KV_RECORD)
    assert summary.header_bytes == len(header()) == 14
    assert summary.records["Register"] == Usage(1, 14 + len(node))
    assert summary.records["KVS"] == Usage(2, 2 * len(KV_RECORD))
    assert summary.kv_prefixes == {"config/app": Usage(2, 2 * len(KV_RECORD))}
    assert summary.kv_bytes == 2 * len(b"\x00\xffvalue")


# --- generated states, against the reference, in every chunking -------------------------------


def generated_state(seed: int, big: bool = True) -> bytes:
    """A state of every shape the decoder meets, in random order and encodings.

    ``big`` adds values of 70 KB and 300 KB (too many bytes to feed one by one).
    """
    rng = random.Random(seed)
    parts = [header(rng.randrange(1 << 40))]
    for n in range(rng.randrange(20, 60)):
        parts.append(random_record(rng, n, big))
    return b"".join(parts)


def random_key(rng: random.Random) -> bytes:
    segments = [rng.choice((b"", b"a", b"config", b"app-\xff", b"x" * 40)) for _ in range(4)]
    return b"/".join(segments[: rng.randrange(1, 5)])


def random_record(rng: random.Random, n: int, big: bool = False) -> bytes:
    bin_type = rng.random() < 0.3  # bin values and str8 strings: what other writers produce
    roll = rng.random()
    if roll < 0.35:
        size = rng.choice((0, 1, 31, 32, 255, 256, 3000, *((70_000, 300_000) if big else ())))
        value = None if rng.random() < 0.1 else rng.randbytes(size)
        key = random_key(rng)
        return record(
            KVS, dir_entry(key.decode(errors="replace") if bin_type else key, value), bin_type
        )
    if roll < 0.6:
        node = f"node-{rng.randrange(5)}"
        service = node_service(f"web-{n}") if rng.random() < 0.4 else None
        check = health_check(f"check-{n}", node) if service is None and rng.random() < 0.5 else None
        checks = [health_check(f"c{i}") for i in range(rng.randrange(3))] or None
        return record(REGISTER, register(node, service, check, Checks=checks), bin_type)
    if roll < 0.7:
        return record(TOMBSTONE, dir_entry(random_key(rng), None, ModifyIndex=n))
    other = rng.choice(
        [
            (SESSION, {"ID": "s", "LockDelay": 15_000_000_000, "TTL": ""}),
            (ACL_TOKEN, {"AccessorID": "a", "CreateTime": b"\x01" * 15, "Policies": [{"ID": "p"}]}),
            (INDEX, {"Key": "kvs", "Value": n}),
            (CHUNKING, {"ChunkMap": {7: [{"Data": b"x" * 40}]}}),
            (6, [{"Node": "n", "Coord": {"Vec": [0.5, -1.25e300], "Height": -3}}]),
            (50, {"Future": [None, True, -(1 << 63), (1 << 64) - 1]}),
        ]
    )
    return record(*other, bin_type)


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("seed", range(6))
def test_generated_states_match_msgpack_reference(seed: int, chunking: str) -> None:
    data = generated_state(seed, big=chunking != "1-byte")
    summary = decode(data, CHUNKINGS[chunking])
    assert as_reference(summary) == reference(data)
    assert sum(u.bytes for u in summary.records.values()) == len(data)


@pytest.mark.parametrize(
    ("depth", "kv_filter"), [(0, None), (1, None), (2, b"config/"), (3, None), (9, b"a")]
)
def test_kv_prefixes_follow_inspect_kvdepth_and_kvfilter(
    depth: int, kv_filter: bytes | None
) -> None:
    data = generated_state(11)
    summary = decode(data, random_cuts, kv_depth=depth, kv_filter=kv_filter)
    assert as_reference(summary) == reference(data, depth, kv_filter)
    assert summary.kv_depth == depth
    assert summary.kv_filter == (None if kv_filter is None else kv_filter.decode())


def test_keys_with_fewer_segments_are_their_own_prefix() -> None:
    keys = [b"top", b"a/", b"a//b", b"/lead/x", b"", b"config/app/key", b"config/app"]
    data = header() + b"".join(record(KVS, dir_entry(k, b"v")) for k in keys)
    prefixes = decode(data).kv_prefixes
    assert {p: u.count for p, u in prefixes.items()} == {
        "top": 1,
        "a/": 2,
        "/lead": 1,
        "": 1,
        "config/app": 2,
    }


def test_prefixes_beyond_the_cap_add_up_apart() -> None:
    keys = [f"p{n}/k".encode() for n in range(10)] + [b"p0/again"]
    data = header() + b"".join(record(KVS, dir_entry(k, b"")) for k in keys)
    summary = decode(data, max_kv_prefixes=4, kv_depth=1)
    assert sorted(summary.kv_prefixes) == ["p0", "p1", "p2", "p3"]
    assert summary.kv_prefixes["p0"].count == 2
    assert summary.kv_prefixes_other.count == 6
    assert summary.kv_prefixes_truncated
    assert not decode(data).kv_prefixes_truncated


def test_key_text_keeps_every_key_apart() -> None:
    assert key_text(b"caf\xc3\xa9/\xff") == "café/\\xff"
    assert key_text(b"\\xff") == "\\\\xff" != key_text(b"\xff")
    data = (
        header() + record(KVS, dir_entry(b"\xff/a", b"")) + record(KVS, dir_entry(b"\\xff/a", b""))
    )
    assert sorted(decode(data).kv_prefixes) == ["\\\\xff/a", "\\xff/a"]


# --- refused: Consul's restore fails on these --------------------------------------------------

GOOD = header()
KV = dir_entry("k", b"v")
CODEC = "codec.decoder: "

# (state, error class, Consul's words or, for StricterStateError, a part of the reason)
REFUSED: dict[str, tuple[bytes, type[StateError], str]] = {
    "empty state.bin": (b"", StateError, "EOF"),
    "header an integer": (pack(7), StateError,
        CODEC + "Only encoded map or array can be decoded into a struct. (valueType: 2)"),
    "header an unsigned integer": (pack(262), StateError,
        CODEC + "Only encoded map or array can be decoded into a struct. (valueType: 3)"),
    "header a string": (pack("LastIndex"), StateError,
        CODEC + "Only encoded map or array can be decoded into a struct. (valueType: 6)"),
    "header 0xc1": (b"\xc1", StateError, CODEC + "currentEncodedType: Undeciphered descriptor: "
        "Unrecognized descriptor byte: hex: c1, dec: 193"),
    "LastIndex negative fixint": (pack({"LastIndex": -1}), StateError,
        CODEC + "Assigning negative signed value: 255, to unsigned type"),
    "LastIndex negative int16": (pack({"LastIndex": -1000}), StateError,
        CODEC + "Assigning negative signed value: -1000, to unsigned type"),
    "LastIndex a string": (pack({"LastIndex": "262"}), StateError,
        CODEC + "Unhandled single-byte unsigned integer value: Unrecognized descriptor byte: a3"),
    "LastIndex a float": (pack({"LastIndex": 1.5}), StateError,
        CODEC + "Unhandled single-byte unsigned integer value: Unrecognized descriptor byte: cb"),
    "header key an integer": (b"\x81\x01\x02", StateError,
        CODEC + "readContainerLen: Unrecognized descriptor byte: hex: 1, dec: 1"),
    "header cut inside LastIndex": (GOOD[:-1], StateError, "unexpected EOF"),
    "header cut before LastIndex's value bytes": (GOOD[:-2], StateError, "EOF"),
    "header cut inside its key": (GOOD[:5], StateError, "unexpected EOF"),
    "EOF after a type byte": (GOOD + b"\x02", StateError, "EOF"),
    "EOF inside a value's payload": (GOOD + KV_RECORD[:-3], StateError, "unexpected EOF"),
    "EOF between a value's tokens": (GOOD + KV_RECORD[: KV_RECORD.index(b"\xa5Value")],
        StateError, "EOF"),
    "EOF inside a length field": (GOOD + record(SESSION, {"Name": "x" * 40})[:9],
        StateError, "unexpected EOF"),
    "trailing partial record": (SMALL_STATE + b"\x02\x87\xabCreate", StateError, "unexpected EOF"),
    "a container cut short": (GOOD + b"\x03\x82\xa1A\x01", StateError, "EOF"),
    "0xc1 as a record's value": (GOOD + b"\x03\xc1", StateError, CODEC + "currentEncodedType: "
        "Undeciphered descriptor: Unrecognized descriptor byte: hex: c1, dec: 193"),
    "0xc1 inside a value": (GOOD + b"\x03\x81\xa1A\xc1", StateError, CODEC + "Nil-Deciphered "
        "DecodeValue: Unrecognized descriptor byte: hex: c1, dec: 193"),
    "a Deregister record": (GOOD + record(1, {"Node": "n"}), StateError, "Unrecognized msg type 1"),
    "a Txn record": (GOOD + record(8, {"Ops": []}), StateError, "Unrecognized msg type 8"),
    "an ACLTokenDelete record": (SMALL_STATE + record(18, {}), StateError,
        "Unrecognized msg type 18"),
    "a PeeringTerminateByID record": (GOOD + b"\x25", StateError, "Unrecognized msg type 37"),
    "a ConnectCALeaf record": (GOOD + record(21, {}), StateError, "Unrecognized msg type 21"),
    "a KindServiceName record": (GOOD + record(34, {}), StateError, "Unrecognized msg type 34"),
    "a log verifier checkpoint": (GOOD + record(41, {}), StateError, "Unrecognized msg type 41"),
    "an UpdateVirtualIP record": (GOOD + record(43, {}), StateError, "Unrecognized msg type 43"),
    "KVS not a map": (GOOD + record(KVS, "config/app"), StateError,
        CODEC + "Only encoded map or array can be decoded into a struct. (valueType: 6)"),
    "KVS Key an integer": (GOOD + record(KVS, {**KV, "Key": 5}), StateError,
        CODEC + "readContainerLen: Unrecognized descriptor byte: hex: 5, dec: 5"),
    "KVS Key bin": (GOOD + record(KVS, {**KV, "Key": b"k"}, bin_type=True), StateError,
        CODEC + "readContainerLen: Unrecognized descriptor byte: hex: c4, dec: 196"),
    "KVS Value an integer": (GOOD + record(KVS, {**KV, "Value": 7}), StateError,
        CODEC + "Only encoded map or array can be decoded into a slice. (valueType: 2)"),
    "KVS Flags negative": (GOOD + record(KVS, {**KV, "Flags": -5}), StateError,
        CODEC + "Assigning negative signed value: 251, to unsigned type"),
    "KVS Session a map": (GOOD + record(KVS, {**KV, "Session": {}}), StateError,
        CODEC + "readContainerLen: Unrecognized descriptor byte: hex: 80, dec: 128"),
    "Tombstone field name an integer": (GOOD + record(TOMBSTONE, {1: 2}), StateError,
        CODEC + "readContainerLen: Unrecognized descriptor byte: hex: 1, dec: 1"),
    "Register Service a string": (GOOD + record(REGISTER, register("n", Service="web")),
        StateError,
        CODEC + "Only encoded map or array can be decoded into a struct. (valueType: 6)"),
    "Register Checks a string": (GOOD + record(REGISTER, register("n", Checks="c")),
        StateError,
        CODEC + "Only encoded map or array can be decoded into a slice. (valueType: 6)"),
    "Register SkipNodeUpdate a string": (GOOD + record(REGISTER, register("n", SkipNodeUpdate="y")),
        StateError, CODEC + "Invalid single-byte value for bool: Unrecognized descriptor byte: a1"),
    "Register NodeMeta an integer": (GOOD + record(REGISTER, register("n", NodeMeta=3)),
        StateError, CODEC + "readContainerLen: Unrecognized descriptor byte: hex: 3, dec: 3"),
}  # fmt: skip

STRICTER: dict[str, tuple[bytes, str]] = {
    "header nil": (b"\xc0", "the header is nil"),
    "header an array": (pack([262]), "the header is an array"),
    "LastIndex missing": (pack({"Other": 1}), "the header has no LastIndex"),
    "LastIndex nil": (pack({"LastIndex": None}), "the header has no LastIndex"),
    "KVS nil": (GOOD + record(KVS, None), "a KVS record is nil"),
    "KVS an array": (GOOD + record(KVS, [1, "k"]), "a KVS record is an array"),
    "KVS without Key": (GOOD + record(KVS, {"Value": b"v"}), "a KVS record without a Key"),
    "KVS Key nil": (GOOD + record(KVS, {**KV, "Key": None}), "a KVS record without a Key"),
    "Tombstone without Key": (GOOD + record(TOMBSTONE, {}), "a Tombstone record without a Key"),
    "KVS Value an array": (GOOD + record(KVS, {**KV, "Value": [1, 2]}), "where []byte belongs"),
    "KVS Key a negative fixint": (GOOD + record(KVS, {**KV, "Key": -3}), "where a string belongs"),
    "field name nil": (GOOD + record(KVS, {None: 1, **KV}), "a nil field name"),
    "field name a negative fixint": (GOOD + record(KVS, {-1: 1, **KV}), "as a field name"),
    "Register Service an array": (GOOD + record(REGISTER, register("n", Service=[])), "an array"),
    "Register Checks a map": (GOOD + record(REGISTER, register("n", Checks={})), "Checks list"),
    "Register Checks with nil": (
        GOOD + record(REGISTER, register("n", Checks=[None])),
        "nil entry",
    ),
    "Register NodeMeta an array": (GOOD + record(REGISTER, register("n", NodeMeta=[])), "as a map"),
    "an ext value": (GOOD + record(SESSION, {"ID": msgpack.ExtType(1, b"x")}), "an ext value"),
}


def assert_refused(data: bytes, kind: type[StateError], words: str) -> None:
    """Refused alike in every chunking: same class, words, message and offset."""
    outcomes = {name: outcome(data, chunks) for name, chunks in CHUNKINGS.items()}
    assert len({repr(o) for o in outcomes.values()}) == 1, outcomes
    with pytest.raises(StateError) as caught:
        decode(data, random_cuts)
    assert type(caught.value) is kind
    if kind is StricterStateError:
        assert caught.value.consul_words is None
        assert words in str(caught.value)
    else:
        assert caught.value.consul_words == words
        assert str(caught.value).startswith(f"{words} (at byte ")


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_refused_in_consuls_words(case: str) -> None:
    assert_refused(*REFUSED[case])


@pytest.mark.parametrize("case", list(STRICTER), ids=list(STRICTER))
def test_refused_although_consul_might_take_it(case: str) -> None:
    data, reason = STRICTER[case]
    assert_refused(data, StricterStateError, reason)


def test_errors_say_where() -> None:
    data = SMALL_STATE + record(8, {})
    with pytest.raises(StateError) as caught:
        decode(data)
    assert caught.value.offset == len(SMALL_STATE) + 1
    assert str(caught.value) == (
        f"Unrecognized msg type 8 (at byte {len(SMALL_STATE) + 1} of state.bin, "
        f"in record 3 (Txn) from byte {len(SMALL_STATE)})"
    )


def test_a_refused_decoder_stays_refused() -> None:
    decoder = StateDecoder()
    with pytest.raises(StateError) as first:
        decoder.feed(GOOD + b"\x01")
    for call in (lambda: decoder.feed(KV_RECORD), decoder.finish):
        with pytest.raises(StateError) as again:
            call()
        assert again.value is first.value


def test_no_bytes_after_finish() -> None:
    decoder = StateDecoder()
    decoder.feed(SMALL_STATE)
    summary = decoder.finish()
    assert decoder.finish() is summary
    with pytest.raises(ValueError, match="finish"):
        decoder.feed(KV_RECORD)


def test_a_key_longer_than_held_is_refused() -> None:
    longest = state_bin.MAX_CAPTURED_STRING
    assert longest > 0xFFFF  # the fast path takes str16 keys without measuring them
    for chunks in (whole, random_cuts):
        longest_key = record(KVS, dir_entry(b"k" * longest, b""))
        held = decode(header() + longest_key, chunks)
        # Held to decode; summarized as its start and a digest of the whole.
        [(prefix, usage)] = held.kv_prefixes.items()
        assert usage == Usage(1, len(header() + longest_key))
        assert prefix.startswith("k" * 200) and len(prefix) <= state_bin.MAX_PREFIX_BYTES
        with pytest.raises(StricterStateError, match=f"a string of {longest + 1} bytes"):
            decode(header() + record(KVS, dir_entry(b"k" * (longest + 1), b"")), chunks)
        # A node's name is held only for details.
        long_node = header() + KV_RECORD + record(REGISTER, register("n" * (longest + 1)))
        assert decode(long_node, chunks).nodes == 1
        with pytest.raises(StricterStateError, match=f"a string of {longest + 1} bytes"):
            decode(long_node, chunks, details=True)


@pytest.mark.parametrize("details", [False, True])
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_whole_records_never_reach_the_resumable_reader(
    name: str, details: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The speed rests on this: Consul-shaped records lying whole in a chunk take the
    fast path; only the header's reader (which reads the first record) runs."""
    started: list[int] = []
    read_record = StateDecoder._read_record

    def counted(self: StateDecoder, extra: int = 0) -> Any:
        started.append(extra)
        return read_record(self, extra)

    monkeypatch.setattr(StateDecoder, "_read_record", counted)
    decode(fixture(name), details=details)
    assert started == [14]


# --- accepted, with a note: restores only into a Consul that knows the type -------------------


@pytest.mark.parametrize(
    ("msg_type", "name", "note"),
    [
        (50, "Unknown(50)", "written by a newer Consul"),
        (64, "Unknown(64)", "a Consul Enterprise type"),
        (200, "Unknown(200)", "a Consul Enterprise type"),
        (4, "ACL", "legacy ACL system"),
        (11, "ACLBootstrap", "legacy ACL bootstrap"),
        (10, "Area", "Consul Enterprise"),
    ],
)
def test_types_other_consuls_restore_are_counted_with_a_note(msg_type: int, name: str, note: str):
    extra = record(msg_type, {"Anything": [1, {"x": b"y"}]})
    data = SMALL_STATE + extra + extra
    for chunks in CHUNKINGS.values():
        summary = decode(data, chunks)
        assert summary.records[name] == Usage(2, 2 * len(extra))
        (text,) = summary.compatibility_notes
        assert text.startswith(f"2 {name} record(s) (type {msg_type}): ")
        assert note in text
        assert text.endswith("restores only into a Consul that knows them")
    assert decode(SMALL_STATE).compatibility_notes == ()


def test_every_type_is_refused_counted_or_noted() -> None:
    refused = {1, 8, 18, 20, 21, 24, 26, 28, 34, 36, 37, 39, 41, 43}
    for msg_type in range(256):
        data = GOOD + record(msg_type, {"Key": "k", "Node": "n"})
        if msg_type in refused:
            assert_refused(data, StateError, f"Unrecognized msg type {msg_type}")
        elif msg_type not in (KVS, TOMBSTONE):
            summary = decode(data)
            noted = bool(summary.compatibility_notes)
            assert noted == (msg_type in (4, 10, 11) or msg_type >= 44), msg_type


# --- what the summary carries ----------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_summary_round_trips_through_json(name: str) -> None:
    summary = decode(fixture(name), kv_filter=b"config/")
    document = json.loads(json.dumps(summary.to_dict()))
    assert StateSummary.from_dict(document) == summary
    assert document["format"] == 1
    assert document["kv_filter"] == "config/"
    assert list(document["records"]) == sorted(document["records"])
    assert (
        document["kv_prefixes"]["config/app-0"]["count"]
        == EXPECTED[name]["kv_by_prefix_depth2"]["config/app-0"]
    )


def test_noted_summary_round_trips() -> None:
    summary = decode(SMALL_STATE + record(70, []) + record(KVS, dir_entry(b"\xff", b"")))
    assert StateSummary.from_dict(json.loads(json.dumps(summary.to_dict()))) == summary


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("nodes"),
        lambda d: d.update(extra=1),
        lambda d: d.update(nodes=True),
        lambda d: d.update(kv_bytes=-1),
        lambda d: d.update(format=2),
        lambda d: d.update(records={"KVS": {"count": 1}}),
        lambda d: d.update(kv_prefixes={"a": {"count": 1, "bytes": "2"}}),
        lambda d: d.update(compatibility_notes="text"),
        lambda d: d.update(kv_prefixes_truncated=0),
        lambda d: d.update(kv_filter=b"x"),
    ],
)
def test_from_dict_refuses_what_to_dict_never_writes(damage: Callable[[dict], Any]) -> None:
    document = decode(SMALL_STATE).to_dict()
    damage(document)
    with pytest.raises(ValueError):
        StateSummary.from_dict(document)


def test_counts_by_type() -> None:
    types = [SESSION, SESSION, ACL_TOKEN, 19, 23, 25, 27, 7, 12, 13, 22, 35, TOMBSTONE]
    data = header() + b"".join(
        record(t, dir_entry("gone", None) if t == TOMBSTONE else {"ID": "x"}) for t in types
    )
    document = decode(data).to_dict()
    assert {
        name: document[name]
        for name in (
            "sessions", "acl_tokens", "acl_policies", "acl_roles", "acl_binding_rules",
            "acl_auth_methods", "prepared_queries", "intentions", "ca_roots", "config_entries",
            "peerings", "tombstones",
        )
    } == {
        "sessions": 2, "acl_tokens": 1, "acl_policies": 1, "acl_roles": 1,
        "acl_binding_rules": 1, "acl_auth_methods": 1, "prepared_queries": 1, "intentions": 1,
        "ca_roots": 1, "config_entries": 1, "peerings": 1, "tombstones": 1,
    }  # fmt: skip


def test_catalog_counts_nodes_services_and_checks() -> None:
    data = header() + b"".join(
        record(REGISTER, request)
        for request in (
            register("n1"),
            register("n1", node_service("web-1")),
            register("n1", check=health_check("serf")),
            register("n2", Checks=[health_check("a"), health_check("b")]),
            register("n2", node_service("web-2"), Checks=[health_check("c")]),
        )
    )
    summary = decode(data, single_bytes)
    assert (summary.nodes, summary.service_instances, summary.checks) == (2, 2, 4)


# --- details, for diff -----------------------------------------------------------------------


def blake(value: bytes) -> bytes:
    return hashlib.blake2b(value, digest_size=16).digest()


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
def test_details_carry_digests_never_values(chunking: str) -> None:
    big = random.Random(3).randbytes(100_000)
    data = (
        header()
        + record(REGISTER, register("n1"))
        + record(REGISTER, register("n1", node_service("web-1")))
        + record(REGISTER, register("n2", node_service("web-2", "api")))
        + record(KVS, dir_entry(b"k/big", big))
        + record(KVS, dir_entry(b"k/none", None))
        + record(KVS, dir_entry(b"k/\xff", b"secret"))
        + record(TOMBSTONE, dir_entry(b"k/gone", None))
    )
    decoder = StateDecoder(details=True)
    for chunk in CHUNKINGS[chunking](data):
        decoder.feed(chunk)
    summary = decoder.finish()
    details = decoder.details
    assert details is not None
    assert details.kv == {
        b"k/big": (blake(big), len(big)),
        b"k/none": (blake(b""), 0),
        b"k/\xff": (blake(b"secret"), 6),
    }
    assert details.services == {(b"n1", b"web-1"), (b"n2", b"web-2")}
    assert details.nodes == {b"n1", b"n2"}
    assert summary.kv_bytes == len(big) + 6
    assert StateDecoder().details is None


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_details_match_the_fixture(name: str) -> None:
    data = fixture(name)
    decoder = StateDecoder(details=True)
    for chunk in random_cuts(data):
        decoder.feed(chunk)
    decoder.finish()
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
    unpacker.feed(data)
    unpacker.unpack()
    kv, services = {}, set()
    while type_byte := unpacker.read_bytes(1):
        value = unpacker.unpack()
        if type_byte[0] == KVS:
            kv[value[b"Key"]] = (blake(value[b"Value"] or b""), len(value[b"Value"] or b""))
        elif type_byte[0] == REGISTER and value[b"Service"] is not None:
            services.add((value[b"Node"], value[b"Service"][b"ID"]))
    assert decoder.details is not None
    assert decoder.details.kv == kv
    assert decoder.details.services == services


# --- memory stays flat; chunkings agree on anything --------------------------------------------


@pytest.mark.parametrize(("details", "step"), [(False, 4096), (True, 4096), (False, 997)])
def test_a_large_value_streams_past_in_flat_memory(details: bool, step: int) -> None:
    value = random.Random(5).randbytes(4 << 20)
    data = header() + record(KVS, dir_entry("big", value)) + KV_RECORD
    view = memoryview(data)
    decoder = StateDecoder(details=details)
    tracemalloc.start()
    try:
        for at in range(0, len(data), step):
            decoder.feed(view[at : at + step])
        summary = decoder.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.kv_bytes == len(value) + len(b"\x00\xffvalue")
    assert peak < 256 << 10, f"peak {peak} bytes for a value of {len(value)}"


def mutations(data: bytes, rng: random.Random) -> Iterator[bytes]:
    for _ in range(40):
        at = rng.randrange(len(data))
        choice = rng.random()
        if choice < 0.5:
            yield data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :]
        elif choice < 0.7:
            yield data[:at] + data[at + 1 :]
        elif choice < 0.85:
            yield data[:at] + bytes([rng.choice((0xC0, 0xC1, 0xDA, 0xDE, 0x90))]) + data[at:]
        else:
            yield data[:at]


@pytest.mark.parametrize("seed", range(8))
def test_every_chunking_agrees_on_damaged_states(seed: int) -> None:
    """Whole records take the fast path, cut ones the resumable reader: same answers."""
    rng = random.Random(seed)
    base = b"".join([header(), *(random_record(rng, n) for n in range(12))])
    base = base if len(base) < 4000 else base[:4000]
    for damaged in mutations(base, rng):
        answers = {name: outcome(damaged, chunks) for name, chunks in CHUNKINGS.items()}
        assert len({repr(a) for a in answers.values()}) == 1, answers


def test_summarize_state_takes_bytes_or_chunks() -> None:
    assert summarize_state(SMALL_STATE) == summarize_state(single_bytes(SMALL_STATE))
    assert summarize_state([SMALL_STATE], kv_depth=1).kv_prefixes == {
        "config": Usage(1, len(KV_RECORD))
    }


def test_options_are_checked() -> None:
    with pytest.raises(ValueError):
        StateDecoder(kv_depth=-1)
    with pytest.raises(ValueError):
        StateDecoder(max_kv_prefixes=-1)


def test_a_summary_keeps_long_prefixes_short_and_apart():
    # Whoever may write a KV key must not inflate the summary (and the manifest).
    state = msgpack.packb({"LastIndex": 1}, use_bin_type=False)
    for n in range(50):
        key = b"p" * 100_000 + str(n).encode() + b"/x"
        entry = {"CreateIndex": 1, "Flags": 0, "Key": key, "LockIndex": 0, "ModifyIndex": 1,
                 "Session": b"", "Value": b"v"}  # fmt: skip
        state += b"\x02" + msgpack.packb(entry, use_bin_type=False)
    summary = summarize_state(state, kv_depth=1)
    assert len(summary.kv_prefixes) == 50
    assert all(len(prefix.encode()) <= 256 for prefix in summary.kv_prefixes)
    assert len(json.dumps(summary.to_dict())) < 50_000
