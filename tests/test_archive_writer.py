"""The archive writer behind the Consul double lays archives out as Consul's writer does.

Checked without the project's verifier: the byte count of the decompressed tar,
the zero blocks at its end, and Python's own tar reader for the headers.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import tracemalloc
import zlib

import pytest
import requests

from snapshot_backup.archive_format import member_header
from testbed.archive_writer import RaftState, archive_bytes, write_archive


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


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 70_000])
def test_three_ustar_headers_padded_data_two_zero_blocks_and_nothing_after(size):
    members = assert_consul_layout(gzip.decompress(archive_bytes(RaftState(size=size, seed=1))))
    assert members[1].size == size


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
