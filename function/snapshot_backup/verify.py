"""Verify a Consul snapshot archive while it streams past, exactly as Consul restores it.

Consul restores (and ``consul snapshot inspect`` verifies) an archive like this,
and so does ``verify_archive``, step for step, in Consul's order and words:

1. the body must open with a gzip header (``failed to decompress snapshot: ...``);
2. tar members are read with Go's rules (``tar_reader``) until the end marker;
   only ``meta.json``, ``state.bin`` and ``SHA256SUMS`` may appear, in any order;
   ``meta.json`` is decoded into Raft's typed fields (``snapshot_meta``);
3. ``SHA256SUMS`` is checked line by line against the members' hashes (``sha256sums``);
4. the decompressed stream is read to its end: gzip trailers are checked, and
   any byte left after the tar is fatal (``<N> unread uncompressed bytes remain``);
5. then Raft's restore: the snapshot version (0 or 1), ``state.bin``'s length
   against ``meta.json``'s ``Size``, and the FSM decoding ``state.bin``
   (``state_bin``, fed as the member streams past, its verdict held until here).

Then the rules where we are stricter than Consul, each raised as
``StricterThanConsulError`` (README, "Where we are stricter", says why): one
gzip member; every member present exactly once as a regular file; ``SHA256SUMS`` exactly as Consul
writes it; size caps on ``meta.json`` and ``SHA256SUMS``; no reserved gzip
header flags; ``state.bin`` records shaped as Consul's writer shapes them.

The verifier pulls from any file-like object and reads it exactly once, so it can
sit in the middle of a transfer (see ``TeeReader``) instead of needing a scratch
copy of the archive.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from .archive_format import (
    HASHED_MEMBERS,
    MEMBERS,
    META_MEMBER,
    STATE_MEMBER,
    SUMS_MEMBER,
)
from .gunzip import GunzipReader, GzipFormatError, GzipReservedFlagsError
from .sha256sums import SumsError, check_sums, go_quote, layout_problem
from .snapshot_meta import (
    MetaDecodeError,
    MetaTooDeepError,
    SnapshotMeta,
    decode_meta,
    unsupported_version,
)
from .state_bin import StateDecoder, StateError, StateSummary, StricterStateError
from .tar_reader import TarFormatError, TarMember, TarReader

# meta.json and SHA256SUMS are a few hundred bytes in practice; the caps stop a
# hostile or broken archive from making us buffer a large member in memory.
MAX_META_BYTES = 1 << 20
MAX_SUMS_BYTES = 64 << 10
# Every layer (socket, gunzip, tar) reads in blocks of this size. Small enough
# that glibc serves them from the heap it keeps, not from fresh mmap()ed pages:
# with 1 MiB blocks, page faults alone cost more CPU than the SHA-256 did.
CHUNK_BYTES = 256 << 10

__all__ = [
    "ArchiveError",
    "ArchiveReport",
    "SnapshotMeta",
    "StricterThanConsulError",
    "TeeReader",
    "verify_archive",
]


class ArchiveError(Exception):
    """The archive is not a whole, intact Consul snapshot; Consul would refuse it too."""


class StricterThanConsulError(ArchiveError):
    """Consul would restore this archive, but it is not what Consul writes: refused on purpose."""


@dataclass(frozen=True)
class ArchiveReport:
    """What a successful verification established about an archive."""

    meta: SnapshotMeta
    member_sha256: dict[str, str]
    state_bytes: int
    state: StateSummary | None = None  # what state.bin holds, decoded as Consul's restore does


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


MetaCallback = Callable[[SnapshotMeta], None]

_BUFFERED_CAPS = {META_MEMBER: MAX_META_BYTES, SUMS_MEMBER: MAX_SUMS_BYTES}

# Consul's words for a failure while reading each member's data.
_READ_CONTEXT = {
    META_MEMBER: "failed to read snapshot metadata",
    STATE_MEMBER: "failed to read or write snapshot data",
    SUMS_MEMBER: "failed to read snapshot hashes",
}


def verify_archive(
    stream: IO[bytes] | Any,
    on_meta: MetaCallback | None = None,
    state: StateDecoder | None = None,
) -> ArchiveReport:
    """Read ``stream`` to its very end and prove it is an archive Consul restores.

    ``on_meta`` is told the decoded ``meta.json`` as soon as it has streamed past
    (it comes first in Consul's archives), before the rest is verified.
    ``state`` decodes ``state.bin`` as it passes (a ``StateDecoder`` with the
    caller's options, ``inspect``'s say; by default the summary alone).
    Raises ``ArchiveError`` naming the defect in Consul's own words, in the
    order Consul's restore meets them, so operators can match it against
    ``consul snapshot inspect`` and ``restore``; ``StricterThanConsulError``
    for an archive Consul would take but Consul's writer never produces.
    """
    try:
        return _ArchiveCheck(stream, on_meta, state or StateDecoder()).run()
    except GzipReservedFlagsError as exc:
        raise StricterThanConsulError(str(exc)) from exc


class _ArchiveCheck:
    """One pass over one archive: Consul's reader, then our stricter rules."""

    def __init__(
        self, stream: IO[bytes] | Any, on_meta: MetaCallback | None, state: StateDecoder
    ) -> None:
        self._unzipped = GunzipReader(stream, CHUNK_BYTES)
        self._state = state
        self._state_error: StateError | None = None
        self._state_summary: StateSummary | None = None
        self._tar = TarReader(self._unzipped)
        self._on_meta = on_meta
        self._digests = {name: hashlib.sha256() for name in HASHED_MEMBERS}
        self._sums = bytearray()
        self._meta: SnapshotMeta | None = None
        self._state_bytes = 0
        self._members: Counter[str] = Counter()
        self._irregular: list[TarMember] = []

    def run(self) -> ArchiveReport:
        try:
            self._unzipped.start()
        except GzipFormatError as exc:
            raise ArchiveError(f"failed to decompress snapshot: {exc}") from exc
        while (member := self._next_member()) is not None:
            self._read_member(member)
        try:
            check_sums(bytes(self._sums), {n: d.digest() for n, d in self._digests.items()})
        except SumsError as exc:
            raise ArchiveError(f"failed checking integrity of snapshot: {exc}") from exc
        self._conclude_gzip()
        self._raft_restore()
        return self._stricter_rules()

    def _raft_restore(self) -> None:
        """What Raft's restore refuses, once Consul has read the whole archive, in its order.

        The version (absent meta.json: zero), then the length of ``state.bin``
        against ``meta.json``'s ``Size`` as it copies it, then the FSM's decoding.
        """
        meta = self._meta or SnapshotMeta()
        refusal = unsupported_version(meta)
        if refusal is not None:
            raise ArchiveError(f"Raft error when restoring snapshot: {refusal}")
        if meta.size != self._state_bytes:
            raise ArchiveError(
                "Raft error when restoring snapshot: failed to write snapshot, size didn't "
                f"match ({self._state_bytes} != {meta.size})"
            )
        if self._state_error is None:
            try:
                self._state_summary = self._state.finish()
            except StateError as exc:
                self._state_error = exc
        if isinstance(self._state_error, StricterStateError):
            raise StricterThanConsulError(f"state.bin: {self._state_error}")
        if self._state_error is not None:
            raise ArchiveError(f"failed to restore snapshot: {self._state_error}")

    def _next_member(self) -> TarMember | None:
        try:
            return self._tar.next()
        except (TarFormatError, GzipFormatError) as exc:
            raise ArchiveError(f"failed reading snapshot: {exc}") from exc

    def _read_member(self, member: TarMember) -> None:
        name = member.name
        if name not in MEMBERS:
            raise ArchiveError(f"unexpected file {go_quote(name)} in snapshot")
        if member.is_sparse:  # Go expands sparse data; Consul's writer never makes any
            raise StricterThanConsulError(f"{name} is stored as a sparse file")
        self._members[name] += 1
        if not member.is_regular_file:
            self._irregular.append(member)
        try:
            if name == META_MEMBER:
                raw = self._read_capped(name)
                self._digests[name].update(raw)
                self._decode_meta(raw)
            elif name == STATE_MEMBER:
                self._read_state()
            else:
                self._sums += self._read_capped(name, already=len(self._sums))
        except (TarFormatError, GzipFormatError) as exc:
            raise ArchiveError(f"{_READ_CONTEXT[name]}: {exc}") from exc

    def _read_state(self) -> None:
        """Hash ``state.bin`` and decode it as it passes; a decoding error waits its turn.

        Consul copies every ``state.bin`` member it meets into one file, and its
        FSM decodes that file: so does the decoder, across members, and it is
        finished once the whole archive is read. Consul refuses an archive whose
        hashes fail before Raft ever decodes the state: an error is kept, and
        raised where Consul would meet it.
        """
        digest = self._digests[STATE_MEMBER]
        while chunk := self._tar.read(CHUNK_BYTES):
            digest.update(chunk)
            self._state_bytes += len(chunk)
            if self._state_error is None:
                try:
                    self._state.feed(chunk)
                except StateError as exc:
                    self._state_error = exc

    def _read_capped(self, name: str, already: int = 0) -> bytes:
        cap = _BUFFERED_CAPS[name]
        data = bytearray()
        while chunk := self._tar.read(CHUNK_BYTES):
            data += chunk
            if already + len(data) > cap:
                raise StricterThanConsulError(
                    f"{name} is larger than {cap} bytes, more than this verifier buffers"
                )
        return bytes(data)

    def _decode_meta(self, raw: bytes) -> None:
        try:
            meta = decode_meta(raw)
        except MetaTooDeepError as exc:
            raise StricterThanConsulError(str(exc)) from exc
        except MetaDecodeError as exc:
            raise ArchiveError(f"failed to decode snapshot metadata: {exc}") from exc
        if self._meta is None and self._on_meta is not None:
            self._on_meta(meta)
        self._meta = meta

    def _conclude_gzip(self) -> None:
        """Consul's ``concludeGzipRead``: the stream must end where the tar did."""
        left = 0
        try:
            while chunk := self._unzipped.read(CHUNK_BYTES):
                left += len(chunk)
        except GzipFormatError as exc:
            raise ArchiveError(str(exc)) from exc
        if left:
            raise ArchiveError(f"{left} unread uncompressed bytes remain")

    def _stricter_rules(self) -> ArchiveReport:
        if self._unzipped.members > 1:
            # A restore holds back the archive's last bytes until the verdict: they
            # must hold the trailer that lets Consul finish reading.
            raise StricterThanConsulError(
                f"the archive is {self._unzipped.members} gzip members; Consul writes one"
            )
        for name in MEMBERS:
            if self._members[name] != 1:
                count = self._members[name]
                raise StricterThanConsulError(
                    f"{name} appears {count} times in the archive; Consul writes it once"
                    + (" (Consul would restore it as empty)" if count == 0 else "")
                )
        for member in self._irregular:
            raise StricterThanConsulError(
                f"{member.name} is not a regular file (tar type {member.typeflag!r})"
            )
        problem = layout_problem(bytes(self._sums))
        if problem is not None:
            raise StricterThanConsulError(problem)
        assert self._meta is not None  # meta.json appeared once, so it was decoded
        hashes = {name: digest.hexdigest() for name, digest in self._digests.items()}
        return ArchiveReport(
            meta=self._meta,
            member_sha256=hashes,
            state_bytes=self._state_bytes,
            state=self._state_summary,
        )
