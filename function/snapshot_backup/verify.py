"""Verify a Consul snapshot archive while it streams past, exactly as Consul does.

A snapshot is a gzip stream around a tar with three members: ``meta.json``,
``state.bin`` and ``SHA256SUMS``. Consul accepts them in any order, rejects any
other member, checks every hash, and reads the gzip stream to its end so that
its CRC and length trailer are checked (a truncated archive must fail).

The verifier pulls from any file-like object and reads it exactly once, so it can
sit in the middle of a transfer (see ``TeeReader``) instead of needing a scratch
copy of the archive.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from .gunzip import GunzipReader, GzipFormatError

META_MEMBER = "meta.json"
STATE_MEMBER = "state.bin"
SUMS_MEMBER = "SHA256SUMS"
HASHED_MEMBERS = (META_MEMBER, STATE_MEMBER)
KNOWN_MEMBERS = (*HASHED_MEMBERS, SUMS_MEMBER)

# meta.json and SHA256SUMS are a few hundred bytes in practice; the caps stop a
# hostile or broken archive from making us buffer a large member in memory.
MAX_META_BYTES = 1 << 20
MAX_SUMS_BYTES = 64 << 10
# Every layer (socket, gunzip, tar) reads in blocks of this size. Small enough
# that glibc serves them from the heap it keeps, not from fresh mmap()ed pages:
# with 1 MiB blocks, page faults alone cost more CPU than the SHA-256 did.
CHUNK_BYTES = 256 << 10


class ArchiveError(Exception):
    """The archive is not a whole, intact Consul snapshot."""


@dataclass(frozen=True)
class SnapshotMeta:
    """The Raft metadata recorded in ``meta.json``."""

    index: int
    term: int
    id: str
    size: int
    version: int


@dataclass(frozen=True)
class ArchiveReport:
    """What a successful verification established about an archive."""

    meta: SnapshotMeta
    member_sha256: dict[str, str]
    state_bytes: int


class TeeReader:
    """A read-only file object that hands every byte it reads to ``sink`` too.

    Where the source can return what has arrived so far (``read1``), it does:
    a slow stream then reaches the sink in small steps instead of stalling
    until a whole block has come, so the sink sees progress as it happens.
    """

    def __init__(self, source: IO[bytes] | Any, sink: Callable[[bytes], None]) -> None:
        self._source = source
        self._read = getattr(source, "read1", None) or source.read
        self._sink = sink

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._read(size)
        if data:
            self._sink(data)
        return data


def parse_meta(raw: bytes) -> SnapshotMeta:
    """Parse ``meta.json`` the way a restore would need it."""
    try:
        doc = json.loads(raw)
        return SnapshotMeta(
            index=int(doc["Index"]),
            term=int(doc["Term"]),
            id=str(doc["ID"]),
            size=int(doc["Size"]),
            version=int(doc["Version"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ArchiveError(f"failed to decode meta.json: {exc}") from exc


def parse_sums(raw: bytes) -> dict[str, str]:
    """Parse ``SHA256SUMS``: lines of ``<hex>  <name>``, as Consul writes them."""
    sums: dict[str, str] = {}
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ArchiveError("SHA256SUMS is not ASCII") from exc
    for line in text.splitlines():
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name:
            raise ArchiveError(f"malformed SHA256SUMS line {line!r}")
        try:
            bytes.fromhex(digest)
        except ValueError as exc:
            raise ArchiveError(f"malformed SHA256SUMS line {line!r}") from exc
        sums[name] = digest.lower()
    return sums


def _read_capped(member: IO[bytes], name: str, cap: int) -> bytes:
    data = member.read(cap + 1)
    if len(data) > cap:
        raise ArchiveError(f"{name} is larger than {cap} bytes")
    return data


MetaCallback = Callable[[SnapshotMeta], None]


def verify_archive(stream: IO[bytes] | Any, on_meta: MetaCallback | None = None) -> ArchiveReport:
    """Read ``stream`` to its very end and prove it is an intact Consul snapshot.

    ``on_meta`` is told the parsed ``meta.json`` as soon as it has streamed past
    (it comes first in Consul's archives), before the rest is verified.
    Raises ``ArchiveError`` naming the defect, using Consul's own wording where
    Consul has one, so operators can match it against ``consul snapshot inspect``.
    """
    try:
        return _verify(stream, on_meta)
    except ArchiveError:
        raise
    except GzipFormatError as exc:
        raise ArchiveError(str(exc)) from exc
    except EOFError as exc:
        raise ArchiveError(f"archive is truncated: {exc}") from exc
    except tarfile.TarError as exc:
        raise ArchiveError(f"tar: {exc}") from exc


def _verify(stream: IO[bytes] | Any, on_meta: MetaCallback | None) -> ArchiveReport:
    hashes: dict[str, str] = {}
    sums: dict[str, str] | None = None
    meta_raw: bytes | None = None
    state_bytes = 0
    # The gzip layer is ours, not tarfile's, so that we can drain it to its end.
    unzipped = GunzipReader(stream, CHUNK_BYTES)
    # tarfile's stream mode reads in 10 KiB records by default: far too
    # many calls for a gigabyte, so give it a larger read size.
    with tarfile.open(fileobj=unzipped, mode="r|", bufsize=CHUNK_BYTES) as tar:
        for member in tar:
            name = member.name
            if name not in KNOWN_MEMBERS or not member.isfile():
                raise ArchiveError(f'unexpected file "{name}" in snapshot')
            if name in hashes or (name == SUMS_MEMBER and sums is not None):
                raise ArchiveError(f'duplicate file "{name}" in snapshot')
            content = tar.extractfile(member)
            if content is None:  # pragma: no cover - isfile() guarantees content
                raise ArchiveError(f'unreadable file "{name}" in snapshot')
            if name == SUMS_MEMBER:
                sums = parse_sums(_read_capped(content, name, MAX_SUMS_BYTES))
                continue
            digest = hashlib.sha256()
            if name == META_MEMBER:
                meta_raw = _read_capped(content, name, MAX_META_BYTES)
                digest.update(meta_raw)
                if on_meta is not None:
                    on_meta(parse_meta(meta_raw))
            else:
                while chunk := content.read(CHUNK_BYTES):
                    digest.update(chunk)
                    state_bytes += len(chunk)
            hashes[name] = digest.hexdigest()
    # Reading to EOF makes zlib check the CRC-32 and length trailer, and fails
    # on anything appended after the stream (Consul's mid-stream error text).
    while unzipped.read(CHUNK_BYTES):
        pass

    if sums is None:
        raise ArchiveError(f'file missing for "{SUMS_MEMBER}"')
    for name in HASHED_MEMBERS:
        if name not in hashes:
            raise ArchiveError(f'file missing for "{name}"')
        if name not in sums:
            raise ArchiveError(f'list missing hash for "{name}"')
        if sums[name] != hashes[name]:
            raise ArchiveError(f'hash check failed for "{name}"')
    for name in sums:
        if name not in hashes:
            raise ArchiveError(f'file missing for "{name}"')
    assert meta_raw is not None  # hashes has META_MEMBER, so it was read
    meta = parse_meta(meta_raw)
    if meta.size != state_bytes:
        raise ArchiveError(
            f"meta.json says state.bin has {meta.size} bytes but it has {state_bytes}"
        )
    return ArchiveReport(meta=meta, member_sha256=hashes, state_bytes=state_bytes)
