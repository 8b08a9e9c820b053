"""Write Consul snapshot archives, in Consul's format, of any size, as a stream.

Used by the Consul double to serve snapshots and by the benchmark to prepare one.
Knobs produce the defective archives a backup tool must refuse.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

STANDARD_ORDER = ("meta.json", "state.bin", "SHA256SUMS")
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
    """``meta.json`` shaped like the real one in shared/fixtures/consul-meta.json."""
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


class _ChunkReader(io.RawIOBase):
    """A file object over an iterator of chunks, hashing what it hands out."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self.digest.update(self._pending[:n])
        self._pending = self._pending[n:]
        return n


@dataclass(frozen=True)
class ArchiveDefects:
    """Ways to make an archive that Consul itself would refuse."""

    wrong_hash_for: str | None = None  # a SHA256SUMS line that does not match
    omit_member: str | None = None  # member left out (its hash line stays)
    omit_hash_for: str | None = None  # member present, hash line missing
    extra_member: str | None = None  # a member Consul does not know
    order: Sequence[str] = STANDARD_ORDER


def _tarinfo(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(mtime)
    return info


def write_archive(
    out: IO[bytes],
    state: RaftState,
    defects: ArchiveDefects | None = None,
    compresslevel: int = 1,
) -> None:
    """Write the gzip'd tar of ``state`` to ``out`` without buffering ``state``."""
    defects = defects or ArchiveDefects()
    meta = meta_json(state)
    now = time.time()
    hashes = {"meta.json": hashlib.sha256(meta).hexdigest()}
    sums_first = defects.order.index("SHA256SUMS") < defects.order.index("state.bin")
    if sums_first:  # the hash must be known before state.bin streams
        hashes["state.bin"] = state.sha256()
    with (
        gzip.GzipFile(fileobj=out, mode="wb", compresslevel=compresslevel, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in defects.order:
            if name == defects.omit_member:
                if name == "state.bin" and "state.bin" not in hashes:
                    hashes["state.bin"] = state.sha256()
                continue
            if name == "meta.json":
                tar.addfile(_tarinfo(name, len(meta), now), io.BytesIO(meta))
            elif name == "state.bin":
                reader = _ChunkReader(state.chunks())
                tar.addfile(_tarinfo(name, state.length, now), reader)
                hashes["state.bin"] = reader.digest.hexdigest()
            elif name == "SHA256SUMS":
                sums = _sums(hashes, defects)
                tar.addfile(_tarinfo(name, len(sums), now), io.BytesIO(sums))
        if defects.extra_member:
            extra = b"not part of a snapshot\n"
            tar.addfile(_tarinfo(defects.extra_member, len(extra), now), io.BytesIO(extra))


def _sums(hashes: dict[str, str], defects: ArchiveDefects) -> bytes:
    lines = []
    for name in ("meta.json", "state.bin"):
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
