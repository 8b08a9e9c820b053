"""Write Consul snapshot archives, laid out byte for byte as Consul's writer does, as a stream.

Used by the Consul double to serve snapshots and by the benchmark to prepare one.
The layout comes from ``snapshot_backup.archive_format``, the one definition the
verifier reads with too; ``state.bin`` comes from ``fsm_writer``, records as Consul's
FSM writes them. Knobs produce the defective archives a backup tool must refuse.
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
from functools import cached_property
from pathlib import Path
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

from .fsm_writer import CHUNK, ConsulState, StateTooSmallError

STANDARD_ORDER = MEMBERS


@dataclass(frozen=True)
class RaftState:
    """A Raft snapshot's state-machine data (``state.bin``) at ``index`` and ``term``.

    One of:
    - ``state``: a ``ConsulState``, records as Consul's FSM writes them, streamed;
    - ``size`` (+ ``seed``): ``ConsulState.sized(size, seed)``, a real state of exactly
      ``size`` bytes, made of large KV values (gigabytes stream in flat memory);
    - ``data``: these literal bytes (tests build deliberately broken states with it);
    - ``file``: the bytes of this file (the Consul double keeps large restored states so);
    - nothing: the small default ``ConsulState``.

    A generated state's LastIndex is at most ``index``: Consul's snapshot metadata
    carries the Raft index of the snapshot, never below the FSM's last write.
    ``size`` below ``ConsulState.sized``'s smallest state (about 130 bytes) cannot be a
    Consul state: those few bytes are seeded filler, as before states were real, for
    archive-framing tests that ask for 0- or 1-byte states.
    """

    index: int = 13
    term: int = 2
    data: bytes | None = None
    size: int | None = None
    seed: int = 0
    state: ConsulState | None = None
    file: Path | None = None

    def __post_init__(self) -> None:
        given = [
            name for name in ("data", "size", "state", "file") if getattr(self, name) is not None
        ]
        if len(given) > 1:
            raise ValueError(f"a RaftState is one of data, size, state or file, not {given}")
        consul = self.consul_state
        if consul is not None and consul.header_last_index > self.index:
            raise ValueError(
                f"the state's LastIndex {consul.header_last_index} is past the snapshot's "
                f"index {self.index}: Consul's metadata index is never below it"
            )

    @cached_property
    def consul_state(self) -> ConsulState | None:
        """The Consul state this streams, or None for literal, file or filler bytes."""
        if self.state is not None:
            return self.state
        if self.data is not None or self.file is not None:
            return None
        if self.size is None:
            return ConsulState(seed=self.seed, last_index=self.index)
        try:
            return ConsulState.sized(self.size, self.seed, last_index=self.index)
        except StateTooSmallError:
            return None

    @property
    def length(self) -> int:
        if self.data is not None:
            return len(self.data)
        if self.file is not None:
            return self.file.stat().st_size
        consul = self.consul_state
        return consul.length if consul is not None else self.size or 0

    def chunks(self) -> Iterator[bytes]:
        if self.data is not None:
            yield self.data
        elif self.file is not None:
            with self.file.open("rb") as source:
                while chunk := source.read(CHUNK):
                    yield chunk
        elif (consul := self.consul_state) is not None:
            yield from consul.chunks()
        else:
            yield random.Random(self.seed).randbytes(self.size or 0)

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
