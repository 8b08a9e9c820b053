"""Write Consul snapshot archives, laid out byte for byte as Consul's writer does, as a stream.

Used by the Consul double to serve snapshots and by the benchmark to prepare one.
The layout comes from ``snapshot_backup.archive_format``, the one definition the
verifier reads with too. Knobs produce the defective archives a backup tool must
refuse.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from snapshot_backup.archive_format import (
    END_OF_ARCHIVE,
    HASHED_MEMBERS,
    MEMBERS,
    META_MEMBER,
    STATE_MEMBER,
    SUMS_MEMBER,
    member_header,
    padding_bytes,
)
from snapshot_backup.gunzip import GZIP_WBITS

STANDARD_ORDER = MEMBERS
CHUNK = 1 << 20


@dataclass(frozen=True)
class RaftState:
    """A state-machine snapshot: literal bytes, or ``size`` bytes made from ``seed``.

    The seeded form makes gigabyte states without holding them in memory.
    """

    index: int = 13
    term: int = 2
    data: bytes | None = None
    size: int = 0
    seed: int = 0

    @property
    def length(self) -> int:
        return len(self.data) if self.data is not None else self.size

    def chunks(self) -> Iterator[bytes]:
        if self.data is not None:
            yield self.data
            return
        rng = random.Random(self.seed)
        remaining = self.size
        while remaining > 0:
            n = min(CHUNK, remaining)
            yield rng.randbytes(n)
            remaining -= n

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()


def meta_json(state: RaftState) -> bytes:
    """``meta.json`` shaped like the real one in tests/fixtures/consul-meta.json."""
    doc = {
        "Version": 1,
        "ID": f"{state.term}-{state.index}-{int(time.time() * 1000)}",
        "Index": state.index,
        "Term": state.term,
        "Peers": "ka4xMjcuMC4wLjE6ODMwMA==",
        "Configuration": {
            "Servers": [
                {
                    "Suffrage": 0,
                    "ID": "a577b288-b354-770e-e909-da0972eb20e8",
                    "Address": "127.0.0.1:8300",
                }
            ]
        },
        "ConfigurationIndex": 1,
        "Size": state.length,
    }
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True)
class ArchiveDefects:
    """Ways to make an archive that Consul itself would refuse."""

    wrong_hash_for: str | None = None  # a SHA256SUMS line that does not match
    omit_member: str | None = None  # member left out (its hash line stays)
    omit_hash_for: str | None = None  # member present, hash line missing
    extra_member: str | None = None  # a member Consul does not know
    order: Sequence[str] = STANDARD_ORDER


class _GzipSink:
    """Compresses what is written to it into ``out`` as one gzip member, as Consul does."""

    def __init__(self, out: IO[bytes] | Any, compresslevel: int) -> None:
        self._out = out
        self._deflate = zlib.compressobj(compresslevel, zlib.DEFLATED, GZIP_WBITS)

    def write(self, data: bytes) -> None:
        if packed := self._deflate.compress(data):
            self._out.write(packed)

    def close(self) -> None:
        self._out.write(self._deflate.flush())


def write_archive(
    out: IO[bytes] | Any,
    state: RaftState,
    defects: ArchiveDefects | None = None,
    compresslevel: int = 1,
) -> None:
    """Write the archive of ``state`` to ``out`` as Consul's writer lays it out.

    USTAR headers for regular files, each member's data padded to 512 bytes,
    two zero blocks, nothing after; ``state`` streams through without being
    held in memory. ``compresslevel`` trades size for speed: any level is an
    archive Consul reads (Consul itself uses Go's default).
    """
    defects = defects or ArchiveDefects()
    meta = meta_json(state)
    mtime = int(time.time())
    hashes = {META_MEMBER: hashlib.sha256(meta).hexdigest()}
    if defects.order.index(SUMS_MEMBER) < defects.order.index(STATE_MEMBER) or (
        defects.omit_member == STATE_MEMBER
    ):  # the hash must be known before state.bin streams, or without it
        hashes[STATE_MEMBER] = state.sha256()
    gz = _GzipSink(out, compresslevel)
    members = [name for name in defects.order if name != defects.omit_member]
    for name in members:
        if name == META_MEMBER:
            _write_member(gz, name, mtime, len(meta), [meta])
        elif name == STATE_MEMBER:
            digest = hashlib.sha256()
            _write_member(gz, name, mtime, state.length, _hashing(state.chunks(), digest))
            hashes[STATE_MEMBER] = digest.hexdigest()
        elif name == SUMS_MEMBER:
            sums = _sums(hashes, defects)
            _write_member(gz, name, mtime, len(sums), [sums])
    if defects.extra_member:
        extra = b"not part of a snapshot\n"
        _write_member(gz, defects.extra_member, mtime, len(extra), [extra])
    gz.write(END_OF_ARCHIVE)
    gz.close()


def _write_member(gz: _GzipSink, name: str, mtime: int, size: int, chunks: Iterable[bytes]) -> None:
    gz.write(member_header(name, size, mtime))
    written = 0
    for chunk in chunks:
        gz.write(chunk)
        written += len(chunk)
    assert written == size, f"{name}: wrote {written} bytes, the header says {size}"
    gz.write(bytes(padding_bytes(size)))


def _hashing(chunks: Iterator[bytes], digest: Any) -> Iterator[bytes]:
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _sums(hashes: dict[str, str], defects: ArchiveDefects) -> bytes:
    lines = []
    for name in HASHED_MEMBERS:
        if name == defects.omit_hash_for:
            continue
        digest = hashes[name]
        if name == defects.wrong_hash_for:
            digest = hashlib.sha256(digest.encode()).hexdigest()
        lines.append(f"{digest}  {name}\n")
    return "".join(lines).encode()


def archive_bytes(state: RaftState, defects: ArchiveDefects | None = None) -> bytes:
    """A whole archive in memory, for small test states."""
    buffer = io.BytesIO()
    write_archive(buffer, state, defects)
    return buffer.getvalue()
