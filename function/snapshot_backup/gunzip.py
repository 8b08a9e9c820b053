"""Decompress a gzip stream as it is read, checking what Consul's reader checks.

zlib's own gzip decoder parses each member's header and, at the member's end,
checks its CRC-32 and length trailer; this module feeds it, checks each member's
fixed header first as Go's ``gzip.Reader`` does, and handles what comes after a
member. Like Go's reader (which Consul uses), it reads concatenated members as
one stream; after a member, end of input ends the stream, fewer than ten bytes
are ``unexpected EOF`` and anything else that is not a gzip header is
``gzip: invalid header``. Errors carry Go's words.

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
RESERVED_FLAGS = 0xE0

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
        """Before a member: start it, or find the end of the stream."""
        head = self._input
        while len(head) < FIXED_HEADER_BYTES:
            more = self._source.read(self._read_bytes)
            if not more:
                break
            head += more
        self._input = head
        if not head:
            if self._members == 0:  # an empty body is no gzip stream at all
                raise GzipFormatError("EOF")
            self._finished = True
            return False
        if len(head) < FIXED_HEADER_BYTES:
            raise GzipFormatError(UNEXPECTED_EOF)
        if not head.startswith(MEMBER_MAGIC):
            raise GzipFormatError(INVALID_HEADER)
        if head[3] & RESERVED_FLAGS:
            raise GzipReservedFlagsError(
                f"gzip member {self._members + 1} sets reserved header flags "
                f"(0x{head[3] & RESERVED_FLAGS:02x}); no gzip writer sets them"
            )
        self._member = zlib.decompressobj(GZIP_WBITS)
        self._members += 1
        return True


def _format_error(exc: zlib.error) -> GzipFormatError:
    text = str(exc)
    if any(marker in text for marker in _TRAILER_ERRORS):
        return GzipFormatError(f"{INVALID_CHECKSUM} (zlib: {text})")
    if "header" in text:
        return GzipFormatError(f"{INVALID_HEADER} (zlib: {text})")
    return GzipFormatError(f"flate: corrupt input (zlib: {text})")
