"""The streaming gzip reader: what it accepts and refuses, as Go's gzip reader does."""

from __future__ import annotations

import gzip
import io
import os
import zlib

import pytest

from snapshot_backup.gunzip import GunzipReader, GzipFormatError, GzipReservedFlagsError

PAYLOAD = os.urandom(200_000) + b"consul " * 50_000


class Dribble:
    """A source that hands out at most ``step`` bytes per read, as a socket may."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = io.BytesIO(data)
        self._step = step

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(self._step, size if size >= 0 else self._step))


def read_all(source, size: int = 64 << 10) -> bytes:
    reader = GunzipReader(source, read_bytes=32 << 10)
    out = bytearray()
    while chunk := reader.read(size):
        assert len(chunk) <= size
        out += chunk
    return bytes(out)


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_decompresses_what_gzip_writes(level):
    assert read_all(io.BytesIO(gzip.compress(PAYLOAD, compresslevel=level))) == PAYLOAD


def test_reads_a_header_with_a_file_name_and_time():
    packed = io.BytesIO()
    with gzip.GzipFile(filename="state.tar", mode="wb", fileobj=packed, mtime=1_700_000_000) as gz:
        gz.write(PAYLOAD)
    assert read_all(io.BytesIO(packed.getvalue())) == PAYLOAD


def test_a_source_that_returns_a_few_bytes_at_a_time():
    assert read_all(Dribble(gzip.compress(PAYLOAD), step=7), size=1000) == PAYLOAD


def test_concatenated_members_read_as_one_stream():
    data = gzip.compress(PAYLOAD[:1000]) + gzip.compress(PAYLOAD[1000:])
    assert read_all(io.BytesIO(data)) == PAYLOAD


def test_read_without_a_size_returns_everything():
    reader = GunzipReader(io.BytesIO(gzip.compress(PAYLOAD)))
    assert reader.read() == PAYLOAD
    assert reader.read(10) == b""


def test_readinto_fills_a_caller_buffer():
    reader = GunzipReader(io.BytesIO(gzip.compress(PAYLOAD)))
    buffer = bytearray(1000)
    assert reader.readinto(buffer) == 1000
    assert bytes(buffer) == PAYLOAD[:1000]


def test_refuses_a_body_that_is_not_gzip():
    with pytest.raises(GzipFormatError, match="gzip: invalid header"):
        read_all(io.BytesIO(b"ACL not found" * 5))


def test_refuses_text_after_the_last_member():
    with pytest.raises(GzipFormatError, match="gzip: invalid header"):
        read_all(io.BytesIO(gzip.compress(PAYLOAD) + b"failed to stream snapshot: EOF"))


def test_refuses_zero_padding_after_the_last_member_as_go_does():
    # Python's gzip module skips trailing zeros; Consul (Go) refuses them.
    with pytest.raises(GzipFormatError, match="gzip: invalid header"):
        read_all(io.BytesIO(gzip.compress(PAYLOAD) + bytes(16)))


def test_refuses_a_wrong_crc_in_the_trailer():
    data = bytearray(gzip.compress(PAYLOAD))
    data[-8] ^= 0xFF  # first byte of the CRC-32
    with pytest.raises(GzipFormatError, match="incorrect data check"):
        read_all(io.BytesIO(bytes(data)))


def test_refuses_a_wrong_length_in_the_trailer():
    data = bytearray(gzip.compress(PAYLOAD))
    data[-4] ^= 0x01  # lowest byte of the length
    with pytest.raises(GzipFormatError, match="incorrect length check"):
        read_all(io.BytesIO(bytes(data)))


def test_refuses_corrupt_compressed_data():
    data = bytearray(gzip.compress(PAYLOAD, compresslevel=9))
    data[len(data) // 2] ^= 0x55
    with pytest.raises(GzipFormatError, match=r"flate: corrupt input|gzip: invalid checksum"):
        read_all(io.BytesIO(bytes(data)))


@pytest.mark.parametrize("cut", [1, 9, 500, -8, -1])
def test_a_stream_cut_short_is_an_unexpected_eof(cut):
    data = gzip.compress(PAYLOAD)
    with pytest.raises(GzipFormatError, match=r"^unexpected EOF$"):
        read_all(io.BytesIO(data[:cut]))


def test_an_empty_body_is_not_an_empty_archive():
    # Go's gzip.NewReader says "EOF" for a body with no bytes at all.
    with pytest.raises(GzipFormatError, match=r"^EOF$"):
        read_all(io.BytesIO(b""))


def test_start_checks_the_first_header_before_any_read():
    with pytest.raises(GzipFormatError, match="gzip: invalid header"):
        GunzipReader(io.BytesIO(b"No cluster leader")).start()
    GunzipReader(io.BytesIO(gzip.compress(PAYLOAD))).start()  # a gzip header: no error


@pytest.mark.parametrize("tail", [b"\x1f", bytes(9), b"\x1f\x8b\x08\x00"])
def test_fewer_than_ten_bytes_after_a_member_are_an_unexpected_eof(tail):
    # Go reads a whole fixed header before it judges the next member.
    with pytest.raises(GzipFormatError, match=r"^unexpected EOF$"):
        read_all(io.BytesIO(gzip.compress(PAYLOAD) + tail))


def test_an_empty_member_after_the_last_adds_nothing():
    assert read_all(io.BytesIO(gzip.compress(PAYLOAD) + gzip.compress(b""))) == PAYLOAD


def test_reserved_header_flags_are_told_apart_from_corruption():
    # Go ignores the reserved FLG bits; zlib refuses them. Not a format error
    # in Consul's sense, so the verifier can say it is stricter than Consul.
    data = bytearray(gzip.compress(PAYLOAD))
    data[3] |= 0x20
    with pytest.raises(GzipReservedFlagsError):
        read_all(io.BytesIO(bytes(data)))


def test_zlib_is_asked_for_a_gzip_wrapper_only():
    # A raw zlib stream (no gzip header) must not pass as gzip.
    with pytest.raises(GzipFormatError, match="gzip: invalid header"):
        read_all(io.BytesIO(zlib.compress(PAYLOAD)))
