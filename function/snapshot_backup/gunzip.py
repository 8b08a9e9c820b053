"""Decompress a gzip stream as it is read, checking what Consul's reader checks.

zlib's own gzip decoder parses each member's header and, at the member's end,
checks its CRC-32 and length trailer; this module feeds it, checks every
member's whole header first as Go's ``gzip.Reader`` does, and handles what comes
after a member. Like Go's reader (which Consul uses), it reads concatenated
members as one stream; after a member, end of input ends the stream, fewer than
ten bytes are ``unexpected EOF`` and anything else that is not a gzip header is
``gzip: invalid header``. Errors carry Go's words.

Go's header rules (``compress/gzip/gunzip.go``, ``Reader.readHeader`` and
``readString``), which zlib does not share in full: the file name and the
comment are each read into a 512-byte buffer, so 511 characters and the NUL
at most, else ``gzip: invalid header`` (zlib takes any length); a header cut
anywhere after its first ten bytes is ``unexpected EOF``; the extra field is
skipped whatever it holds; the header CRC-16 is the low half of the CRC-32 of
every header byte before it (as zlib computes it), else ``invalid header``;
the reserved flag bits are ignored (zlib refuses them: see
``GzipReservedFlagsError``).

It does the work of ``gzip.GzipFile`` in far fewer calls: one zlib call per
block of input rather than Python-level bookkeeping per 8 KiB (Python 3.11) or
128 KiB (3.12+), which on 3.11 cost more CPU than hashing the archive did.
"""

from __future__ import annotations

import io
import zlib
from typing import IO, Any

# zlib expects a gzip header and trailer, and no raw deflate or zlib stream.
GZIP_WBITS = 16 + zlib.MAX_WBITS
DEFAULT_READ_BYTES = 256 << 10
# RFC 1952: ID1, ID2, CM (8 = deflate) open every member; FLG follows.
MEMBER_MAGIC = b"\x1f\x8b\x08"
FIXED_HEADER_BYTES = 10
# FLG bits (RFC 1952, 2.3.1).
FHCRC, FEXTRA, FNAME, FCOMMENT = 0x02, 0x04, 0x08, 0x10
RESERVED_FLAGS = 0xE0
# Go's reader holds FNAME and FCOMMENT, NUL included, in a buffer of this size.
MAX_HEADER_STRING_BYTES = 512

UNEXPECTED_EOF = "unexpected EOF"
INVALID_HEADER = "gzip: invalid header"
INVALID_CHECKSUM = "gzip: invalid checksum"
_TRAILER_ERRORS = ("incorrect data check", "incorrect length check")


class GzipFormatError(Exception):
    """The bytes are not a whole, intact gzip stream (message in Go's words)."""


class GzipReservedFlagsError(Exception):
    """A member header sets flag bits RFC 1952 reserves: Go ignores them, zlib refuses.

    Not a ``GzipFormatError``: Consul would read such a stream, so callers that
    judge archives by Consul's rules tell the two apart.
    """


class GunzipReader(io.RawIOBase):
    """A read-only file object over the decompressed bytes of ``source``.

    ``read(n)`` returns at most ``n`` bytes and ``b""`` only at the true end of
    the stream, after the last member's trailer was checked. Anything short of
    that raises ``GzipFormatError``.
    """

    def __init__(self, source: IO[bytes] | Any, read_bytes: int = DEFAULT_READ_BYTES) -> None:
        super().__init__()
        self._source = source
        self._read_bytes = read_bytes
        self._member: Any = None  # zlib's decoder for the member being read
        self._input = b""  # compressed bytes read but not yet given to zlib
        self._members = 0
        self._finished = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    @property
    def members(self) -> int:
        """How many gzip members were started so far."""
        return self._members

    def start(self) -> None:
        """Check the first member's header, as Go's ``gzip.NewReader`` does before any read."""
        if self._members == 0:
            self._start_member()

    # Overridden, not inherited from readinto(): it hands zlib's output over
    # as it is, without a copy into a caller's buffer.
    def read(self, size: int | None = -1, /) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(self._read_bytes), b""))
        while not self._finished and size:
            if self._member is None and not self._start_member():
                break
            data = self._input or self._source.read(self._read_bytes)
            if not data:
                raise GzipFormatError(UNEXPECTED_EOF)
            try:
                out = self._member.decompress(data, size)
            except zlib.error as exc:
                raise _format_error(exc) from exc
            if self._member.eof:
                self._input = self._member.unused_data
                self._member = None
            else:
                self._input = self._member.unconsumed_tail
            if out:
                return out
        return b""

    def _start_member(self) -> bool:
        """Before a member: check its header as Go does and start it, or find the stream's end."""
        if not self._fill(1):
            if self._members == 0:  # an empty body is no gzip stream at all
                raise GzipFormatError("EOF")
            self._finished = True
            return False
        self._check_header()
        self._member = zlib.decompressobj(GZIP_WBITS)  # it reads the header again, then the data
        self._members += 1
        return True

    def _check_header(self) -> None:
        """The member header at the start of the input, held to Go's rules (module docstring)."""
        end = self._need(FIXED_HEADER_BYTES)
        if not self._input.startswith(MEMBER_MAGIC):
            raise GzipFormatError(INVALID_HEADER)
        flags = self._input[3]
        if flags & FEXTRA:
            end = self._need(end + 2)
            end = self._need(end + int.from_bytes(self._input[end - 2 : end], "little"))
        for flag in (FNAME, FCOMMENT):
            if flags & flag:
                end = self._string_end(end)
        if flags & FHCRC:
            end = self._need(end + 2)
            stored = int.from_bytes(self._input[end - 2 : end], "little")
            if stored != zlib.crc32(self._input[: end - 2]) & 0xFFFF:
                raise GzipFormatError(INVALID_HEADER)
        if flags & RESERVED_FLAGS:
            raise GzipReservedFlagsError(
                f"gzip member {self._members + 1} sets reserved header flags "
                f"(0x{flags & RESERVED_FLAGS:02x}); no gzip writer sets them"
            )

    def _string_end(self, start: int) -> int:
        """Where the NUL-terminated string at ``start`` ends, if Go's buffer holds it."""
        limit = start + MAX_HEADER_STRING_BYTES
        while (nul := self._input.find(b"\0", start, limit)) < 0:
            if len(self._input) >= limit:
                raise GzipFormatError(INVALID_HEADER)
            self._need(len(self._input) + 1)
        return nul + 1

    def _need(self, size: int) -> int:
        """``size``, once the input holds that many bytes; ``unexpected EOF`` if it never will."""
        if not self._fill(size):
            raise GzipFormatError(UNEXPECTED_EOF)
        return size

    def _fill(self, size: int) -> bool:
        """Read until the input holds ``size`` bytes; False if the source ends first."""
        while len(self._input) < size:
            more = self._source.read(self._read_bytes)
            if not more:
                return False
            self._input += more
        return True


def _format_error(exc: zlib.error) -> GzipFormatError:
    text = str(exc)
    if any(marker in text for marker in _TRAILER_ERRORS):
        return GzipFormatError(f"{INVALID_CHECKSUM} (zlib: {text})")
    if "header" in text:
        return GzipFormatError(f"{INVALID_HEADER} (zlib: {text})")
    return GzipFormatError(f"flate: corrupt input (zlib: {text})")
