"""The archive writer behind the Consul double lays archives out as Consul's writer does.

Checked without the project's verifier: the byte count of the decompressed tar,
the zero blocks at its end, and Python's own tar reader for the headers. Its
``state.bin`` is a real Consul state, read back here with msgpack.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import tracemalloc
import zlib

import msgpack
import pytest
import requests

from snapshot_backup.archive_format import member_header
from testbed.archive_writer import RaftState, archive_bytes, write_archive
from testbed.fsm_writer import MESSAGE_TYPE_NAMES, ConsulState


def padded(size: int) -> int:
    return size + (-size % 512)


def assert_consul_layout(raw: bytes) -> list[tarfile.TarInfo]:
    """Three USTAR regular files, data padded to 512 bytes, two zero blocks, nothing after."""
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["meta.json", "state.bin", "SHA256SUMS"]
    assert all(m.type == tarfile.REGTYPE and m.mode == 0o600 for m in members)
    data_bytes = sum(padded(m.size) for m in members)
    assert len(raw) == 3 * 512 + data_bytes + 1024
    assert raw[-1024:] == bytes(1024)
    for m in members:  # USTAR: magic "ustar\0", version "00"; no PAX or GNU headers
        assert raw[m.offset + 257 : m.offset + 265] == b"ustar\x0000"
    return members


def state_bin_of(archive: bytes) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive)), mode="r:") as tar:
        member = tar.extractfile("state.bin")
        assert member is not None
        return member.read()


def record_counts(data: bytes) -> tuple[int, dict[str, int]]:
    """The header's LastIndex and the records per type, read as Consul's restore reads them."""
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
    unpacker.feed(data)
    last_index = unpacker.unpack()[b"LastIndex"]
    counts: dict[str, int] = {}
    while type_byte := unpacker.read_bytes(1):
        unpacker.unpack()
        name = MESSAGE_TYPE_NAMES[type_byte[0]]
        counts[name] = counts.get(name, 0) + 1
    return last_index, dict(sorted(counts.items()))


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 70_000])
def test_three_ustar_headers_padded_data_two_zero_blocks_and_nothing_after(size):
    archive = archive_bytes(RaftState(size=size, seed=1))
    members = assert_consul_layout(gzip.decompress(archive))
    assert members[1].size == size
    if size >= 511:  # from the smallest Consul state on, state.bin is one
        assert state_bin_of(archive).startswith(b"\x81\xa9LastIndex")


def test_one_gzip_member_and_nothing_after_it():
    archive = archive_bytes(RaftState(size=5000, seed=2))
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    inflate.decompress(archive)
    assert inflate.eof and inflate.unused_data == b""


def test_a_state_of_8_gib_or_more_gets_a_pax_size_record_as_go_writes_it():
    size = 9 << 30
    headers = member_header("state.bin", size, 1_700_000_000)
    assert len(headers) == 3 * 512  # the PAX header, its record, the USTAR header
    with tarfile.open(fileobj=io.BytesIO(headers + bytes(1024)), mode="r:") as tar:
        info = tar.next()
        assert info is not None and (info.name, info.size) == ("state.bin", size)
    assert headers[156:157] == b"x" and headers[:22] == b"PaxHeaders.0/state.bin"


def test_the_double_serves_archives_in_consuls_layout(consul):
    consul.state = RaftState(index=9, term=2, size=20_000, seed=4)
    body = requests.get(
        f"{consul.address}/v1/snapshot",
        headers={"X-Consul-Token": "root-token", "Accept-Encoding": "identity"},
        timeout=30,
    ).content
    assert assert_consul_layout(gzip.decompress(body))[1].size == 20_000


class _Counting:
    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


def test_a_large_state_streams_through_in_flat_memory():
    state = RaftState(size=48 << 20, seed=9)
    sink = _Counting()
    tracemalloc.start()
    try:
        write_archive(sink, state)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.size > 48 << 20  # random state does not compress
    assert peak < 8 << 20, f"peak {peak} bytes: the state was held in memory"


def test_a_sized_state_is_a_consul_state_of_exactly_that_size():
    state = RaftState(index=4711, term=5, size=300_000, seed=7)
    data = state_bin_of(archive_bytes(state))
    assert len(data) == state.length == 300_000
    assert state.consul_state is not None
    last_index, counts = record_counts(data)
    assert last_index == 4711  # at most the snapshot's index: here, the index itself
    assert counts == state.consul_state.expected["records"]
    assert counts["KVS"] >= 1 and counts["ChunkingState"] == 1


def test_the_default_state_is_a_small_consul_state():
    state = RaftState()
    last_index, counts = record_counts(b"".join(state.chunks()))
    assert last_index == state.index == 13
    assert counts == ConsulState().expected["records"]
    assert {"Register", "Session", "ACLToken", "KVS", "Tombstone", "Index"} <= counts.keys()


def test_a_consul_state_streams_as_its_own_bytes_with_meta_index_and_term():
    consul = ConsulState(seed=4, last_index=90).without_prefix("vault/")
    state = RaftState(index=100, term=8, state=consul)
    archive = archive_bytes(state)
    assert state_bin_of(archive) == consul.read()
    assert state.length == consul.length and state.sha256() == consul.sha256()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive)), mode="r:") as tar:
        meta = tar.extractfile("meta.json")
        assert meta is not None
        assert b'"Index":100,"Term":8' in meta.read()


def test_literal_and_file_states_are_their_bytes(tmp_path):
    data = b"\x00not a consul state"
    assert state_bin_of(archive_bytes(RaftState(data=data))) == data
    stored = tmp_path / "state.bin"
    stored.write_bytes(ConsulState().read())
    from_file = RaftState(index=200, term=2, file=stored)
    assert from_file.length == stored.stat().st_size and from_file.consul_state is None
    assert state_bin_of(archive_bytes(from_file)) == stored.read_bytes()


def test_a_size_below_any_consul_state_is_seeded_filler():
    tiny = RaftState(size=100, seed=3)
    assert tiny.consul_state is None and tiny.length == 100
    assert b"".join(tiny.chunks()) == b"".join(RaftState(size=100, seed=3).chunks())


def test_a_state_in_two_forms_or_past_its_index_is_refused():
    with pytest.raises(ValueError, match="one of data, size, state or file"):
        RaftState(data=b"x", size=3)
    with pytest.raises(ValueError, match="past the snapshot's index 5"):
        RaftState(index=5, state=ConsulState())
