"""Read a tar stream as Go's ``archive/tar`` reader does (Consul reads snapshots with it).

Python's ``tarfile`` is looser: it ends an archive at the first block it cannot
parse, absorbs PAX global headers, and never looks at what follows the
end-of-archive marker. A verifier built on it accepts archives that Consul
refuses on restore. This reader applies Go's rules instead:

- a header block must carry a valid checksum (unsigned or signed sum) and
  numeric fields that parse (octal, or base-256); otherwise
  ``archive/tar: invalid tar header``;
- the archive ends at end of input before a header, at one zero block followed
  by end of input, or at two zero blocks; a zero block followed by anything
  else is an invalid header, and a block cut short is ``unexpected EOF``;
- member data cut short is ``unexpected EOF``; padding cut short ends the archive;
- PAX extended headers (``x``) and GNU long names (``L``, ``K``) change the
  next header; a PAX global header (``g``) is returned as a member of its own.

It stops at the end marker and does not read further: the caller decides what
the rest of the stream may hold. Data is passed through in the caller's read
sizes, without copies beyond what the source hands out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import IO, Any

from .archive_format import BLOCK_BYTES, ZERO_BLOCK, padding_bytes

INVALID_HEADER = "archive/tar: invalid tar header"
FIELD_TOO_LONG = "archive/tar: header field too long"
UNEXPECTED_EOF = "unexpected EOF"
# Go's limit for the data of PAX and GNU long-name headers.
MAX_SPECIAL_FILE_BYTES = 1 << 20

TYPE_REGULAR = "0"
TYPE_REGULAR_OLD = "\x00"
TYPE_PAX = "x"
TYPE_PAX_GLOBAL = "g"
TYPE_GNU_LONG_NAME = "L"
TYPE_GNU_LONG_LINK = "K"
TYPE_DIRECTORY = "5"
# Types whose size field says nothing about data that follows.
HEADER_ONLY_TYPES = frozenset("123456")

_FORMAT_V7, _FORMAT_USTAR, _FORMAT_GNU, _FORMAT_STAR = "v7", "ustar", "gnu", "star"
_DECIMAL = re.compile(r"[+-]?[0-9]+\Z")
_INT64 = (-(1 << 63), (1 << 63) - 1)


class TarFormatError(Exception):
    """The tar stream is malformed; the message is Go's error text."""


@dataclass(frozen=True)
class TarMember:
    """One member's header, after PAX and GNU extensions were applied."""

    name: str
    typeflag: str
    size: int
    pax_records: dict[str, str] = field(default_factory=dict)

    @property
    def is_regular_file(self) -> bool:
        return self.typeflag == TYPE_REGULAR

    @property
    def is_sparse(self) -> bool:
        return self.typeflag == "S" or any(k.startswith("GNU.sparse.") for k in self.pax_records)


class TarReader:
    """Members of the tar stream in ``source``, one at a time, as Go reads them.

    ``source.read(n)`` must return at most ``n`` bytes, and ``b""`` only at the
    end of the stream; exceptions it raises pass through unchanged.
    """

    def __init__(self, source: IO[bytes] | Any) -> None:
        self._source = source
        self._remaining = 0  # data bytes of the current member not yet read
        self._pad = 0  # padding after the current member's data
        self._ended = False

    def next(self) -> TarMember | None:
        """The next member's header, or ``None`` at the end of the archive."""
        if self._ended:
            return None
        pax: dict[str, str] = {}
        long_name = ""
        while True:
            self._skip(self._remaining)
            if not self._try_read_full(self._pad):
                self._ended = True  # Go: input that ends inside padding ends the archive
                return None
            self._pad = 0
            raw = self._read_header()
            if raw is None:
                self._ended = True
                return None
            name, typeflag, size = raw
            self._start_data(typeflag, size)
            if typeflag in (TYPE_PAX, TYPE_PAX_GLOBAL):
                pax = _parse_pax(self._read_special())
                if typeflag == TYPE_PAX_GLOBAL:
                    name = pax.get("path") or name
                    return TarMember(name, typeflag, 0, pax)
                continue
            if typeflag in (TYPE_GNU_LONG_NAME, TYPE_GNU_LONG_LINK):
                data = self._read_special()
                if typeflag == TYPE_GNU_LONG_NAME:
                    long_name = _c_string(data)
                continue
            name, size = _merge_pax(name, size, pax)
            if long_name:
                name = long_name
            if typeflag == TYPE_REGULAR_OLD:
                typeflag = TYPE_DIRECTORY if name.endswith("/") else TYPE_REGULAR
            self._start_data(typeflag, size)
            return TarMember(name, typeflag, self._remaining, pax)

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the current member's data; ``b""`` at its end."""
        size = min(size, self._remaining)
        if size <= 0:
            return b""
        data: bytes = self._source.read(size)
        if not data:
            raise TarFormatError(UNEXPECTED_EOF)
        self._remaining -= len(data)
        return data

    # --- framing ----------------------------------------------------------

    def _start_data(self, typeflag: str, size: int) -> None:
        length = 0 if typeflag in HEADER_ONLY_TYPES else size
        if length < 0:
            raise TarFormatError(INVALID_HEADER)
        self._remaining = length
        self._pad = padding_bytes(length)

    def _read_special(self) -> bytes:
        if self._remaining > MAX_SPECIAL_FILE_BYTES:
            raise TarFormatError(FIELD_TOO_LONG)
        data = bytearray()
        while chunk := self.read(self._remaining):
            data += chunk
        return bytes(data)

    def _skip(self, count: int) -> None:
        while count > 0:
            data = self._source.read(min(count, 256 << 10))
            if not data:
                raise TarFormatError(UNEXPECTED_EOF)
            count -= len(data)
        self._remaining = 0

    def _try_read_full(self, count: int) -> bool:
        """Read ``count`` bytes; False if the stream ended first."""
        while count > 0:
            data = self._source.read(count)
            if not data:
                return False
            count -= len(data)
        return True

    def _read_block(self) -> bytes | None:
        """One whole block; ``None`` at end of input before it; a part is an error."""
        block = b""
        while len(block) < BLOCK_BYTES:
            data = self._source.read(BLOCK_BYTES - len(block))
            if not data:
                if block:
                    raise TarFormatError(UNEXPECTED_EOF)
                return None
            block += data
        return block

    def _read_header(self) -> tuple[str, str, int] | None:
        block = self._read_block()
        if block is None:
            return None
        if block == ZERO_BLOCK:
            second = self._read_block()
            if second is None or second == ZERO_BLOCK:
                return None
            raise TarFormatError(INVALID_HEADER)  # a zero block, then a non-zero one
        return _parse_header(block)


# --- header blocks ---------------------------------------------------------


def _parse_header(block: bytes) -> tuple[str, str, int]:
    """Name, type and size from a header block, or the error Go's reader gives."""
    fmt = _header_format(block)
    fields = _Fields(block)
    typeflag = chr(block[156])
    name = _c_string(block[0:100])
    size = fields.numeric(124, 136)
    for start, end in ((100, 108), (108, 116), (116, 124), (136, 148)):  # mode uid gid mtime
        fields.numeric(start, end)
    if fmt != _FORMAT_V7:
        fields.numeric(329, 337)  # devmajor
        fields.numeric(337, 345)  # devminor
        prefix = ""
        if fmt == _FORMAT_USTAR:
            prefix = _c_string(block[345:500])
        elif fmt == _FORMAT_STAR:
            prefix = _c_string(block[345:476])
            fields.numeric(476, 488)  # atime
            fields.numeric(488, 500)  # ctime
        elif fmt == _FORMAT_GNU:
            # Go parses GNU atime/ctime sceptically: where they do not parse,
            # older Go writers put a USTAR prefix there, and Go reads it as one.
            times = _Fields(block)
            for start, end in ((345, 357), (357, 369)):
                if block[start]:
                    times.numeric(start, end)
            if times.failed:
                candidate = _c_string(block[345:500])
                if candidate.isascii():
                    prefix = candidate
        if prefix:
            name = f"{prefix}/{name}"
    if fields.failed:
        raise TarFormatError(INVALID_HEADER)
    return name, typeflag, size


def _header_format(block: bytes) -> str:
    fields = _Fields(block)
    recorded = fields.octal(block[148:156])
    unsigned = sum(block) - sum(block[148:156]) + 8 * 0x20
    signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b >= 0x80)
    if fields.failed or recorded not in (unsigned, signed):
        raise TarFormatError(INVALID_HEADER)
    magic, version, trailer = block[257:263], block[263:265], block[508:512]
    if magic == b"ustar\x00":
        return _FORMAT_STAR if trailer == b"tar\x00" else _FORMAT_USTAR
    if magic == b"ustar " and version == b" \x00":
        return _FORMAT_GNU
    return _FORMAT_V7


class _Fields:
    """Numeric header fields as Go parses them; any failure marks the header invalid."""

    def __init__(self, block: bytes) -> None:
        self._block = block
        self.failed = False

    def numeric(self, start: int, end: int) -> int:
        raw = self._block[start:end]
        if raw and raw[0] & 0x80:  # base-256, two's complement, big-endian
            invert = 0xFF if raw[0] & 0x40 else 0
            value = 0
            for i, byte in enumerate(raw):
                byte ^= invert
                if i == 0:
                    byte &= 0x7F
                if value >> 56:
                    self.failed = True
                    return 0
                value = value << 8 | byte
            if value >> 63:
                self.failed = True
                return 0
            return ~value if invert else value
        return self.octal(raw)

    def octal(self, raw: bytes) -> int:
        trimmed = raw.strip(b" \x00")
        if not trimmed:
            return 0
        text = trimmed.split(b"\x00", 1)[0]
        if text.translate(None, b"01234567"):
            self.failed = True
            return 0
        value = int(text, 8)
        if value >> 64:
            self.failed = True
            return 0
        return value - (1 << 64) if value >> 63 else value  # Go keeps it as an int64


def _c_string(raw: bytes) -> str:
    """Bytes up to the first NUL; undecodable bytes survive as surrogates."""
    return raw.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


# --- PAX records -----------------------------------------------------------


def _parse_pax(data: bytes) -> dict[str, str]:
    """``"%d %s=%s\\n"`` records, validated as Go validates them."""
    records: dict[str, str] = {}
    rest = data
    while rest:
        length_text, space, _ = rest.partition(b" ")
        if not space or not _DECIMAL.match(length_text.decode("latin-1")):
            raise TarFormatError(INVALID_HEADER)
        length = int(length_text)
        body_start = len(length_text) + 1
        if length < 5 or length > len(rest) or length <= body_start:
            raise TarFormatError(INVALID_HEADER)
        record, rest = rest[body_start : length - 1], rest[length - 1 :]
        if rest[:1] != b"\n":
            raise TarFormatError(INVALID_HEADER)
        rest = rest[1:]
        key_raw, equals, value_raw = record.partition(b"=")
        key = key_raw.decode("utf-8", "surrogateescape")
        value = value_raw.decode("utf-8", "surrogateescape")
        if not equals or not key or _has_nul_where_go_refuses(key, value):
            raise TarFormatError(INVALID_HEADER)
        records[key] = value
    return records


def _has_nul_where_go_refuses(key: str, value: str) -> bool:
    if key in ("path", "linkpath", "uname", "gname"):
        return "\x00" in value
    return "\x00" in key


def _merge_pax(name: str, size: int, pax: dict[str, str]) -> tuple[str, int]:
    """Apply PAX records to a header as Go does; a record that does not parse is invalid."""
    for key, value in pax.items():
        if not value:
            continue  # an empty record keeps the header's own value
        if key == "path":
            name = value
        elif key in ("uid", "gid", "size"):
            number = _go_int64(value)
            if key == "size":
                size = number
        elif key in ("atime", "mtime", "ctime"):
            seconds, _, fraction = value.partition(".")
            _go_int64(seconds)
            if fraction.strip("0123456789"):
                raise TarFormatError(INVALID_HEADER)
    return name, size


def _go_int64(text: str) -> int:
    """``strconv.ParseInt(text, 10, 64)``: an optional sign and decimal digits only."""
    if not _DECIMAL.match(text):
        raise TarFormatError(INVALID_HEADER)
    value = int(text)
    if not _INT64[0] <= value <= _INT64[1]:
        raise TarFormatError(INVALID_HEADER)
    return value
