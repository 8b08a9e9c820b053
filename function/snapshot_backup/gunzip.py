"""Decompress a gzip stream as it is read, checking what Consul's reader checks.

zlib's own gzip decoder parses each member's header and, at the member's end,
checks its CRC-32 and length trailer; this module only feeds it and handles
what comes after a member. Like Go's ``gzip.Reader`` (which ``consul snapshot``
uses), it reads concatenated members as one stream and rejects anything after
the last member that is not another gzip header (``gzip: invalid header``).

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
_HEADER_ERRORS = ("incorrect header check", "unknown compression method", "invalid window size")


class GzipFormatError(Exception):
    """The bytes are not a whole, intact gzip stream."""


class GunzipReader(io.RawIOBase):
    """A read-only file object over the decompressed bytes of ``source``.

    ``read(n)`` returns at most ``n`` bytes and ``b""`` only at the true end of
    the stream, after the last member's trailer was checked. A stream that ends
    early raises ``EOFError``; a corrupt one raises ``GzipFormatError``.
    """

    def __init__(self, source: IO[bytes] | Any, read_bytes: int = DEFAULT_READ_BYTES) -> None:
        super().__init__()
        self._source = source
        self._read_bytes = read_bytes
        self._member = zlib.decompressobj(GZIP_WBITS)
        self._input = b""  # compressed bytes read but not yet given to zlib
        self._finished = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    # Overridden, not inherited from readinto(): it hands zlib's output over
    # as it is, without a copy into a caller's buffer.
    def read(self, size: int | None = -1, /) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(self._read_bytes), b""))
        while not self._finished and size:
            if self._member.eof and not self._next_member():
                break
            data = self._input or self._source.read(self._read_bytes)
            if not data:
                raise EOFError("compressed stream ended before the end-of-stream marker")
            try:
                out = self._member.decompress(data, size)
            except zlib.error as exc:
                raise _format_error(exc) from exc
            self._input = self._member.unconsumed_tail
            if out:
                return out
        return b""

    def _next_member(self) -> bool:
        """After a member's trailer: start the next member, or find the end."""
        rest = self._member.unused_data or self._source.read(self._read_bytes)
        if not rest:
            self._finished = True
            return False
        self._member = zlib.decompressobj(GZIP_WBITS)
        self._input = rest
        return True


def _format_error(exc: zlib.error) -> GzipFormatError:
    text = str(exc)
    if any(marker in text for marker in _HEADER_ERRORS):
        return GzipFormatError(f"gzip: invalid header ({text})")
    return GzipFormatError(f"gzip: corrupt stream ({text})")
