"""The streaming gzip reader: what it accepts and refuses, as Go's gzip reader does."""

from __future__ import annotations

import gzip
import io
import os
import zlib

import pytest

from snapshot_backup.gunzip import (
    FCOMMENT,
    FEXTRA,
    FHCRC,
    FNAME,
    MAX_HEADER_STRING_BYTES,
    GunzipReader,
    GzipFormatError,
    GzipReservedFlagsError,
)

PAYLOAD = os.urandom(200_000) + b"consul " * 50_000


class Dribble:
    """A source that hands out at most ``step`` bytes per read, as a socket may."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = io.BytesIO(data)
        self._step = step

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(self._step, size if size >= 0 else self._step))


def gzip_member(
    data: bytes,
    *,
    extra: bytes | None = None,
    name: bytes | None = None,
    comment: bytes | None = None,
    header_crc: int | bool = False,
    flags: int = 0,
) -> bytes:
    """One gzip member of ``data`` with the optional header fields RFC 1952 allows.

    ``header_crc``: True for the right CRC-16 of the header, an int for that value.
    """
    plain = gzip.compress(data, mtime=0)  # a 10-byte header with no flags set
    optional = b""
    if extra is not None:
        flags |= FEXTRA
        optional += len(extra).to_bytes(2, "little") + extra
    for flag, text in ((FNAME, name), (FCOMMENT, comment)):
        if text is not None:
            flags |= flag
            optional += text + b"\0"
    if header_crc is not False:
        flags |= FHCRC
    header = plain[:3] + bytes([flags]) + plain[4:10] + optional
    if header_crc is not False:
        crc = zlib.crc32(header) & 0xFFFF if header_crc is True else header_crc
        header += crc.to_bytes(2, "little")
    return header + plain[10:]


def with_string(field: str, text: bytes, data: bytes = PAYLOAD) -> bytes:
    """A member of ``data`` whose header carries ``text`` as its name or its comment."""
    return gzip_member(data, name=text) if field == "name" else gzip_member(data, comment=text)


LONGEST_NAME = b"n" * (MAX_HEADER_STRING_BYTES - 1)  # and the NUL: Go's whole buffer
TOO_LONG_NAME = b"n" * MAX_HEADER_STRING_BYTES


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


# --- header fields, held to Go's rules (compress/gzip, Reader.readHeader) ------


@pytest.mark.parametrize("field", ["name", "comment"])
def test_a_name_or_comment_of_511_bytes_is_read(field):
    member = with_string(field, LONGEST_NAME)
    assert read_all(io.BytesIO(member)) == PAYLOAD
    assert read_all(Dribble(member, step=5), size=1000) == PAYLOAD


@pytest.mark.parametrize("field", ["name", "comment"])
@pytest.mark.parametrize("length", [MAX_HEADER_STRING_BYTES, 600, 70_000])
def test_a_name_or_comment_of_512_bytes_or_more_is_an_invalid_header(field, length):
    # Go reads each into a 512-byte buffer, its NUL included; zlib takes any length.
    member = with_string(field, b"n" * length)
    with pytest.raises(GzipFormatError, match=r"^gzip: invalid header$"):
        GunzipReader(io.BytesIO(member)).start()
    with pytest.raises(GzipFormatError, match=r"^gzip: invalid header$"):
        read_all(Dribble(member, step=7))


@pytest.mark.parametrize("field", ["name", "comment"])
def test_every_member_is_held_to_the_same_rules(field):
    long_header = with_string(field, TOO_LONG_NAME, PAYLOAD[1000:])
    data = gzip.compress(PAYLOAD[:1000]) + long_header
    with pytest.raises(GzipFormatError, match=r"^gzip: invalid header$"):
        read_all(io.BytesIO(data))
    empty_after = gzip.compress(PAYLOAD) + with_string(field, TOO_LONG_NAME, b"")
    with pytest.raises(GzipFormatError, match=r"^gzip: invalid header$"):
        read_all(io.BytesIO(empty_after))
    allowed = gzip.compress(PAYLOAD[:1000]) + with_string(field, LONGEST_NAME, PAYLOAD[1000:])
    assert read_all(io.BytesIO(allowed)) == PAYLOAD


def test_a_header_crc_over_the_whole_header_is_accepted_on_every_member():
    # Go (since 1.7) and zlib both take the CRC-32 of every header byte before it.
    first = gzip_member(PAYLOAD[:5000], extra=b"x" * 300, name=b"a.tar", header_crc=True)
    second = gzip_member(PAYLOAD[5000:], comment=b"c" * 100, header_crc=True)
    assert read_all(Dribble(first + second, step=3), size=4096) == PAYLOAD


@pytest.mark.parametrize("member", [0, 1])
def test_a_header_crc_that_does_not_match_is_an_invalid_header(member):
    # The CRC-16 of the fixed ten bytes alone, as Go before 1.7 computed it.
    fixed_only = zlib.crc32(gzip_member(b"", name=b"state.tar", header_crc=0)[:10]) & 0xFFFF
    wrong = gzip_member(PAYLOAD[:1000], name=b"state.tar", header_crc=fixed_only)
    assert wrong != gzip_member(PAYLOAD[:1000], name=b"state.tar", header_crc=True)
    data = [wrong + gzip.compress(PAYLOAD[1000:]), gzip.compress(PAYLOAD[:1000]) + wrong][member]
    reader = GunzipReader(io.BytesIO(data))
    with pytest.raises(GzipFormatError, match=r"^gzip: invalid header$"):
        reader.start()
        reader.read()


def test_an_extra_field_is_skipped_whatever_its_length():
    assert read_all(io.BytesIO(gzip_member(PAYLOAD, extra=os.urandom(65_535)))) == PAYLOAD


@pytest.mark.parametrize(
    "fields",
    [
        {"extra": b"e" * 100},
        {"name": b"state.tar"},
        {"comment": b"made by hand"},
        {"name": b"a", "header_crc": True},
    ],
    ids=["extra", "name", "comment", "header crc"],
)
def test_a_header_cut_after_its_first_ten_bytes_is_an_unexpected_eof(fields):
    member = gzip_member(PAYLOAD, **fields)
    header_length = len(member) - len(gzip.compress(PAYLOAD, mtime=0)) + 10
    for cut in (11, header_length - 1):
        with pytest.raises(GzipFormatError, match=r"^unexpected EOF$"):
            GunzipReader(io.BytesIO(member[:cut])).start()
        with pytest.raises(GzipFormatError, match=r"^unexpected EOF$"):
            read_all(io.BytesIO(gzip.compress(PAYLOAD) + member[:cut]))


def test_go_refuses_a_long_name_before_we_refuse_reserved_flags():
    # Consul's own refusal is the one to report when both apply.
    member = gzip_member(PAYLOAD, name=TOO_LONG_NAME, flags=0x20)
    with pytest.raises(GzipFormatError, match="gzip: invalid header"):
        GunzipReader(io.BytesIO(member)).start()
    with pytest.raises(GzipReservedFlagsError):
        GunzipReader(io.BytesIO(gzip_member(PAYLOAD, name=LONGEST_NAME, flags=0x20))).start()
