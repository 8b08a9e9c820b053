"""The tar reader's framing rules, one at a time, where they differ from Python's tarfile."""

from __future__ import annotations

import io
import tarfile

import pytest

from snapshot_backup.tar_reader import TarFormatError, TarReader
from tests.archives import BLOCK, END, entry, header, with_checksum


def members(raw: bytes) -> list[tuple[str, str, bytes]]:
    reader = TarReader(io.BytesIO(raw))
    found = []
    while (member := reader.next()) is not None:
        data = bytearray()
        while chunk := reader.read(7):
            data += chunk
        found.append((member.name, member.typeflag, bytes(data)))
    return found


def test_reads_members_and_their_data():
    raw = entry("a", b"hello") + entry("b", b"x" * 600) + END
    assert members(raw) == [("a", "0", b"hello"), ("b", "0", b"x" * 600)]


def test_stops_at_the_end_marker_and_leaves_the_rest_unread():
    source = io.BytesIO(entry("a", b"hello") + END + b"after")
    reader = TarReader(source)
    assert reader.next() is not None
    assert reader.next() is None
    assert source.read() == b"after"


def test_a_size_in_base_256_is_read():
    block = bytearray(header("big", 0))
    block[124:136] = b"\x80" + (700).to_bytes(11, "big")
    raw = with_checksum(bytes(block)) + b"y" * 700 + bytes(-700 % BLOCK) + END
    assert members(raw) == [("big", "0", b"y" * 700)]


def test_a_checksum_summed_over_signed_bytes_is_accepted():
    block = bytearray(header("caf\xe9", 0))  # a byte >= 0x80 in the name
    block[0:5] = b"caf\xe9\x00"
    block[148:156] = b" " * 8
    signed = sum(b - 256 if b >= 0x80 else b for b in block)
    block[148:156] = b"%06o\x00 " % signed
    assert [m[0] for m in members(bytes(block) + END)] == ["caf\udce9"]


def test_old_style_regular_type_and_gnu_long_names_are_applied():
    long_name = "d/" * 60 + "state.bin"
    gnu = entry("././@LongLink", long_name.encode() + b"\x00", tarfile.GNUTYPE_LONGNAME)
    old = bytearray(header("short", 3))
    old[156] = 0
    raw = gnu + with_checksum(bytes(old)) + b"abc" + bytes(BLOCK - 3) + END
    assert members(raw) == [(long_name, "0", b"abc")]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (entry("a", b"x" * 1000)[:600], "unexpected EOF"),  # data cut short
        (entry("a", b"x")[:100], "unexpected EOF"),  # a header block cut short
        (header("a", 0)[:148] + b"9999999\x00" + header("a", 0)[156:], "invalid tar header"),
    ],
)
def test_broken_framing_is_refused_with_gos_words(raw, message):
    with pytest.raises(TarFormatError, match=message):
        members(raw)


def test_a_pax_record_that_does_not_parse_is_an_invalid_header():
    records = b"10 size=x\n"
    raw = entry("PaxHeaders.0/a", records, tarfile.XHDTYPE) + entry("a", b"") + END
    with pytest.raises(TarFormatError, match="invalid tar header"):
        members(raw)
