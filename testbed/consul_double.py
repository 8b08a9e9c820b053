"""A Consul agent's snapshot endpoint that behaves as a real agent's does.

Real HTTP on 127.0.0.1: exact path, ``dc``/``stale``/token handling, ACL errors
with Consul's bodies, streamed chunked bodies without Content-Length, the
agent's gzip handler (double gzip when asked), and the ways a snapshot breaks:
a 200 whose stream is cut and followed by error text, a reset connection, and
archives with bad hashes or the wrong members. Its ``state.bin`` is real: records
as Consul's FSM writes them (``fsm_writer``).

``PUT /v1/snapshot`` restores as Consul does, streaming: the body is inflated,
walked as Go's tar reader walks it, hashed and checked against ``SHA256SUMS``,
``state.bin`` written to a scratch file and decoded as the FSM's ``Restore``
decodes it; only a whole body that passes every check replaces the state, so a
restore round trip can be checked against the state it replaced.
``GET /v1/agent/self`` answers with the agent's datacenter, name and version.

Run ``python -m testbed.consul_double --port 8500`` to serve one by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgpack

from snapshot_backup.archive_format import (
    BLOCK_BYTES,
    HASHED_MEMBERS,
    META_MEMBER,
    STATE_MEMBER,
    SUMS_MEMBER,
    ZERO_BLOCK,
    padding_bytes,
)
from snapshot_backup.gunzip import GZIP_WBITS

from .archive_writer import ArchiveDefects, RaftState, write_archive
from .fsm_writer import CHUNK

SNAPSHOT_PATH = "/v1/snapshot"
AGENT_SELF_PATH = "/v1/agent/self"
ANONYMOUS_DENIED = (
    "Permission denied: anonymous token lacks permission 'acl:write'. The anonymous token "
    "is used implicitly when a request does not specify a token."
)
# The version the double reports as its Consul's (GET /v1/agent/self).
CONSUL_VERSION = "1.21.4"

# What Consul CE's FSM restores (agent/consul/fsm/snapshot_ce.go registers a restorer
# for each; fsm.go's Restore handles ChunkingState (29) and Resource (42) itself).
# Every one is below 0x80, a msgpack positive fixint: the type byte also reads as an int.
RESTORED_TYPES = frozenset(
    {0, 2, 3, 5, 6, 7, 9, 12, 13, 14, 15, 16, 17, 19, 22, 23, 25, 27, 29, 30, 31, 32, 33, 35,
     38, 40, 42}
)  # fmt: skip
ENTERPRISE_TYPES_FROM = 64
# The snapshot versions Raft restores (hashicorp/raft SnapshotVersionMin..Max).
RAFT_SNAPSHOT_VERSIONS = range(2)
# Record types whose value is not a struct: a coordinate batch is a list, a resource bytes.
_LIST_RECORDS = frozenset({6})
_BYTES_RECORDS = frozenset({42})
# The largest single record the FSM decoder buffers (a KV value is at most 512 KiB by
# default; a transaction or config entry can be larger).
MAX_RECORD_BYTES = 256 << 20
# A restored state.bin up to this size is kept in memory (tests compare it by value);
# larger ones stay in the double's scratch directory, as Consul keeps them on disk.
RESTORED_IN_MEMORY_LIMIT = 16 << 20


@dataclass
class MidStreamFault:
    """Break the body after ``after_bytes`` bytes of it were sent."""

    after_bytes: int
    # "truncate": Consul's own failure, 200 + cut gzip + error text, well terminated.
    # "reset": the TCP connection is reset, the chunked body never ends.
    # "stall": nothing more is sent, the connection stays open until the client
    # goes away (a server stuck mid-snapshot).
    kind: str = "truncate"
    message: str = "failed to stream snapshot: read tcp 127.0.0.1:8300: i/o timeout"


RECORD_LIMIT = 64 << 20
# A stalled stream ends by itself after this long, should its client never leave.
STALL_LIMIT_SECONDS = 120.0


@dataclass
class ServedArchive:
    sha256: str
    size: int
    body: bytes | None


@dataclass
class ReceivedArchive:
    """What one ``PUT /v1/snapshot`` delivered, and what became of it.

    ``complete``: the whole body arrived (Content-Length reached, or the chunked
    body's last chunk). ``restored``: it replaced the double's state. ``error``: the
    refusal, in Consul's words. ``body``: the bytes, while under RECORD_LIMIT and
    ``record_received`` is on.
    """

    sha256: str
    size: int
    body: bytes | None
    complete: bool
    restored: bool = False
    error: str | None = None


class _RecordingWriter(io.RawIOBase):
    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.digest = hashlib.sha256()
        self.size = 0
        self.body: bytearray | None = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        self.digest.update(data)
        self.size += len(data)
        if self.body is not None:
            self.body += data
            if len(self.body) > RECORD_LIMIT:
                self.body = None
        return int(self._inner.write(data))

    def served(self) -> ServedArchive:
        body = bytes(self.body) if self.body is not None else None
        return ServedArchive(self.digest.hexdigest(), self.size, body)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class ConsulDouble:
    """One Consul agent. Change its attributes between requests to script a test."""

    state: RaftState = field(default_factory=RaftState)
    acl_enabled: bool = True
    # secret -> whether the token has acl:write (a "management" token does)
    tokens: dict[str, bool] = field(default_factory=lambda: {"root-token": True})
    # secrets of tokens that may only read the agent (agent:read), such as a monitor's
    agent_readers: set[str] = field(default_factory=set)
    # The first is the agent's own (GET /v1/agent/self); `dc` may name any of them.
    datacenters: tuple[str, ...] = ("dc1",)
    node_name: str = "consul-server-1"
    version: str = CONSUL_VERSION
    # What X-Consul-Index says: "" the state's index, as Consul sends it; None no
    # header at all (a proxy dropped it); any other text is sent as it is.
    index_header: str | None = ""
    has_leader: bool = True
    ready_for_consistent_reads: bool = True
    defects: ArchiveDefects | None = None
    fault: MidStreamFault | None = None
    not_gzip: bool = False
    # A slow server or network: the body trickles out at this rate.
    bytes_per_second: int | None = None
    # Served instead of a generated archive: a prepared archive file (benchmarks),
    # or these exact bytes (archives broken one rule at a time, from the tests).
    # A successful restore clears both: the cluster then holds the restored state.
    archive_file: Path | None = None
    archive_body: bytes | None = None
    # Answers for the next GETs: (status, body), one used per request.
    scripted_errors: list[tuple[int, str]] = field(default_factory=list)
    tls: ssl.SSLContext | None = None
    # A proxy in front of the agent that gzips whatever the client asked for.
    gzip_regardless: bool = False
    requests: list[RecordedRequest] = field(default_factory=list)
    # What each GET streamed (before any transfer gzip): sha256, size, and the
    # bytes themselves while they stay under RECORD_LIMIT.
    served: list[ServedArchive] = field(default_factory=list)
    record_served: bool = True
    restores: int = 0
    # Every body a PUT delivered, restored or refused; its bytes kept while
    # `record_received` is on and they stay under RECORD_LIMIT.
    received: list[ReceivedArchive] = field(default_factory=list)
    record_received: bool = True
    _accessors: dict[str, str] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _scratch: Path | None = None

    @property
    def address(self) -> str:
        assert self._server is not None, "start() the double first"
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def start(self, port: int = 0) -> ConsulDouble:
        handler = type("Handler", (_SnapshotHandler,), {"double": self})
        server = _QuietServer(("127.0.0.1", port), handler)
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="consul-double")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and remove the scratch files of restores (a restored state
        kept on disk goes with them; one kept in memory stays readable)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            scratch, self._scratch = self._scratch, None
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    def __enter__(self) -> ConsulDouble:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def accessor_id(self, secret: str) -> str:
        with self._lock:
            return self._accessors.setdefault(secret, str(uuid.uuid5(uuid.NAMESPACE_OID, secret)))

    def snapshot_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == SNAPSHOT_PATH]

    def scratch_dir(self) -> Path:
        """Where restores write ``state.bin`` (Consul copies it into a temp file too)."""
        with self._lock:
            if self._scratch is None:
                self._scratch = Path(tempfile.mkdtemp(prefix="consul-double-"))
            return self._scratch

    def agent_self(self) -> dict[str, Any]:
        """``GET /v1/agent/self``'s body: the fields of Consul's ``Self`` a client reads."""
        datacenter = self.datacenters[0]
        node_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, self.node_name))
        tags = {"acls": "1" if self.acl_enabled else "0", "build": f"{self.version}:double"}
        tags.update(dc=datacenter, id=node_id, port="8300", role="consul", segment="")
        tags.update(vsn="2", vsn_max="3", vsn_min="2")
        return {
            "Config": {
                "Datacenter": datacenter,
                "PrimaryDatacenter": datacenter,
                "NodeName": self.node_name,
                "NodeID": node_id,
                "Revision": "double",
                "Server": True,
                "Version": self.version,
                "BuildDate": "2025-01-01T00:00:00Z",
            },
            "DebugConfig": {"Datacenter": datacenter, "NodeName": self.node_name},
            "Coord": {"Vec": [0.0] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-05},
            "Member": {
                "Name": self.node_name,
                "Addr": "127.0.0.1",
                "Port": 8301,
                "Tags": tags,
                "Status": 1,
                "ProtocolMin": 1,
                "ProtocolMax": 5,
                "ProtocolCur": 2,
                "DelegateMin": 2,
                "DelegateMax": 5,
                "DelegateCur": 4,
            },
            "Stats": {"consul": {"leader": str(self.has_leader).lower(), "server": "true"}},
            "Meta": {"consul-network-segment": ""},
        }

    def _commit_restore(self, restored: _Restored) -> None:
        """Make a restored snapshot the double's state, as a successful restore does."""
        if restored.size <= RESTORED_IN_MEMORY_LIMIT:
            state = RaftState(restored.index, restored.term, data=restored.path.read_bytes())
            restored.path.unlink()
        else:
            state = RaftState(restored.index, restored.term, file=restored.path)
        with self._lock:
            replaced, self.state = self.state, state
            self.archive_file = self.archive_body = None
            self.restores += 1
        if replaced.file is not None and replaced.file.parent == self._scratch:
            replaced.file.unlink(missing_ok=True)  # a GET still reading it keeps its handle


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a reset connection is a scripted fault, not a server error


class _ChunkedWriter(io.RawIOBase):
    """HTTP/1.1 chunked framing over the socket, as Go's net/http sends it."""

    def __init__(self, wfile: Any, sock: socket.socket) -> None:
        self._wfile = wfile  # unbuffered: writes reach the socket in order
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = len(data)
        if size:  # three writes rather than one copy of the chunk
            self._wfile.write(b"%x\r\n" % size)
            self._wfile.write(data)
            self._wfile.write(b"\r\n")
        return size

    def send_file(self, file: Any, block: int = 1 << 20) -> None:
        """The rest of ``file`` as chunks sent with sendfile(2).

        The bytes never pass through Python: a double that streams a large
        archive leaves the CPU to the client it is measured against.
        """
        end = os.fstat(file.fileno()).st_size
        for offset in range(file.tell(), end, block):
            count = min(block, end - offset)
            self._wfile.write(b"%x\r\n" % count)
            self._sock.sendfile(file, offset, count)
            self._wfile.write(b"\r\n")

    def finish(self) -> None:
        self._wfile.write(b"0\r\n\r\n")
        self._wfile.flush()


class _ThrottledWriter(io.RawIOBase):
    """Writes in small slices, sleeping so the rate stays at ``bytes_per_second``."""

    def __init__(self, inner: Any, bytes_per_second: int) -> None:
        self._inner = inner
        self._rate = bytes_per_second
        self._started = time.monotonic()
        self._sent = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(bytes(data))
        step = max(1024, self._rate // 20)
        for start in range(0, len(view), step):
            piece = view[start : start + step]
            self._inner.write(piece)
            self._sent += len(piece)
            ahead = self._sent / self._rate - (time.monotonic() - self._started)
            if ahead > 0:
                time.sleep(ahead)
        return len(view)


class _CutError(Exception):
    pass


class _CuttingWriter(io.RawIOBase):
    """Passes bytes on until ``limit`` bytes went through, then stops the writer.

    The cut is raised once; whatever is written after it (a GzipFile flushing
    as the error unwinds through it) is dropped, so that writer closes cleanly.
    """

    def __init__(self, inner: Any, limit: int) -> None:
        self._inner = inner
        self._left = limit
        self._cut = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._cut:
            return len(data)
        data = bytes(data)
        if len(data) >= self._left:
            self._cut = True
            self._inner.write(data[: self._left])
            self._left = 0
            raise _CutError()
        self._left -= len(data)
        self._inner.write(data)
        return len(data)


# --- PUT /v1/snapshot: Consul's restore, streamed ------------------------------------


class RestoreRefusedError(Exception):
    """Consul refused to restore the archive; the message is what it answers."""


class _GzipError(Exception):
    """The gzip stream is broken; the message is Go's error."""


class _TarError(Exception):
    """The archive breaks a rule of Consul's reader; the message is read()'s error."""


class _FsmError(Exception):
    """The FSM cannot load state.bin; the message is its error."""


class _RequestBody:
    """The request body in blocks as it arrives: its digest, size, and whether all came.

    Content-Length bodies end at that length; chunked ones at their last (zero) chunk.
    A body whose connection ends first, or whose chunk framing breaks, is incomplete.
    """

    def __init__(self, rfile: Any, headers: Any, keep: bool) -> None:
        self._rfile = rfile
        self._chunked = headers.get("Transfer-Encoding", "").lower() == "chunked"
        self._length = headers.get("Content-Length") or "0"
        self.digest = hashlib.sha256()
        self.size = 0
        self.complete = False
        self._kept: bytearray | None = bytearray() if keep else None

    def blocks(self) -> Iterator[bytes]:
        try:
            if self._chunked:
                yield from self._chunks()
            else:
                self.complete = yield from self._exactly(int(self._length))
        except (OSError, ValueError):
            self.complete = False  # a reset connection, or chunk framing that is not

    @property
    def kept(self) -> bytes | None:
        return bytes(self._kept) if self._kept is not None else None

    def _chunks(self) -> Iterator[bytes]:
        while True:
            line = self._rfile.readline(1 << 16)
            if not line.endswith(b"\n"):
                return  # the connection ended inside the framing
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while (trailer := self._rfile.readline(1 << 16)) not in (b"\r\n", b"\n"):
                    if not trailer.endswith(b"\n"):
                        return
                self.complete = True
                return
            if not (yield from self._exactly(size)):
                return
            if self._rfile.readline(1 << 16) not in (b"\r\n", b"\n"):
                return

    def _exactly(self, length: int) -> Generator[bytes, None, bool]:
        """``length`` bytes in blocks; returns whether they all came."""
        while length > 0:
            block = self._rfile.read(min(CHUNK, length))
            if not block:
                return False
            length -= len(block)
            self.digest.update(block)
            self.size += len(block)
            if self._kept is not None:
                self._kept += block
                if len(self._kept) > RECORD_LIMIT:
                    self._kept = None
            yield block
        return True


class _Gunzip:
    """Go's ``gzip.Reader`` (multistream) fed the body: members follow one another,
    and the stream may end only between two of them. zlib checks each member's
    header, and its CRC-32 and length trailer."""

    def __init__(self) -> None:
        self._member: Any = None
        self._member_output = 0
        self._start = b""  # the body's first bytes: is its first header whole?
        self.members = 0
        self.output = 0

    @property
    def opened(self) -> bool:
        """Go's gzip.NewReader read the first member's fixed header: ten bytes, the magic."""
        return len(self._start) >= 10 and self._start.startswith(b"\x1f\x8b\x08")

    def feed(self, data: bytes) -> Iterator[bytes]:
        if len(self._start) < 10:
            self._start += data[: 10 - len(self._start)]
        while data:
            if self._member is None:
                self._member = zlib.decompressobj(GZIP_WBITS)
                self._member_output = 0
            pending = data
            while True:
                try:
                    out = self._member.decompress(pending, CHUNK)
                except zlib.error as exc:
                    raise _GzipError(self._words(str(exc))) from exc
                if out:
                    self._member_output += len(out)
                    self.output += len(out)
                    yield out
                if self._member.eof:
                    data, self._member = self._member.unused_data, None
                    self.members += 1
                    break
                pending = self._member.unconsumed_tail
                if not pending and len(out) < CHUNK:
                    data = b""
                    break

    def ending(self) -> str | None:
        """What Go's reader says at the end of the body: nothing if it ended between members."""
        if self._member is not None:
            return "unexpected EOF"
        return "EOF" if self.members == 0 else None

    def _words(self, message: str) -> str:
        if "incorrect data check" in message or "incorrect length check" in message:
            return "gzip: invalid checksum"
        if self._member_output == 0 and ("header" in message or "method" in message):
            return "gzip: invalid header"
        return f"flate: corrupt input ({message})"


class _Member:
    """Where a member's data goes as the tar is read: its hash, then a handler."""

    def __init__(
        self, digest: Any, take: Callable[[Any], object], close: Callable[[], None] | None = None
    ) -> None:
        self._digest = digest
        self._take = take
        self.close = close or (lambda: None)

    def write(self, piece: Any) -> None:
        if self._digest is not None:
            self._digest.update(piece)
        self._take(piece)


_INVALID_HEADER = "failed reading snapshot: archive/tar: invalid tar header"
_HEADER, _DATA, _PADDING, _AFTER_ZERO, _END = range(5)
# Typeflags Go's reader gives no data (links, devices, directories, FIFOs).
_HEADER_ONLY_TYPES = frozenset(b"123456")
# Typeflags whose data describes the next header (PAX, GNU long names), or a PAX
# global header, which Go returns as a member of its own.
_EXTENDED_TYPES = frozenset(b"xgLK")
_MAX_EXTENDED_BYTES = 1 << 20  # Go's maxSpecialFileSize
# What Consul says when a member's data ends early, by member (snapshot/archive.go).
_MEMBER_READ_ERRORS = {
    META_MEMBER: "failed to decode snapshot metadata: ",
    STATE_MEMBER: "failed to read or write snapshot data: ",
    SUMS_MEMBER: "failed to read snapshot hashes: ",
}


class _TarReader:
    """Go's ``archive/tar`` Reader as Consul's snapshot ``read()`` drives it, fed the
    tar in pieces of any size.

    Go's rules (``archive/tar/reader.go``): every header block has a valid checksum
    (unsigned or signed sum) and numeric fields; a zero block must be followed by
    another zero block (the end) or by the end of input; the end of input is fine
    only where a header would start or inside a member's padding; a cut header or
    member is ``unexpected EOF``. Consul then reads on to the end of the stream:
    ``trailing`` counts what came after the end marker.
    """

    def __init__(self, open_member: Callable[[str], _Member]) -> None:
        self._open_member = open_member
        self._state = _HEADER
        self._block = bytearray()
        self._remaining = 0
        self._pad = 0
        self._member: _Member | None = None
        self._member_name: str | None = None
        self._extended: bytearray | None = None
        self._extended_header = (b"", "")
        self._overrides: dict[str, str] = {}
        self.trailing = 0

    @property
    def ended(self) -> bool:
        """Two zero blocks were read: Go's reader reads no further."""
        return self._state == _END

    def feed(self, data: bytes) -> None:
        view, position = memoryview(data), 0
        while position < len(view):
            left = len(view) - position
            if self._state == _DATA:
                take = min(self._remaining, left)
                self._write(view[position : position + take])
                self._remaining -= take
                if self._remaining == 0:
                    self._data_done()
            elif self._state == _PADDING:
                take = min(self._pad, left)
                self._pad -= take
                if self._pad == 0:
                    self._state = _HEADER
            elif self._state == _END:
                take = left
                self.trailing += take
            else:
                take = min(BLOCK_BYTES - len(self._block), left)
                self._block += view[position : position + take]
                if len(self._block) == BLOCK_BYTES:
                    block = bytes(self._block)
                    self._block.clear()
                    self._on_block(block)
            position += take

    def finish(self) -> None:
        """The tar's input ended (the gzip stream closed cleanly)."""
        if self._state == _DATA:
            raise _TarError(self.context("unexpected EOF"))
        if self._state in (_HEADER, _AFTER_ZERO) and self._block:
            raise _TarError("failed reading snapshot: unexpected EOF")

    def context(self, message: str) -> str:
        """``message`` (an error of the stream beneath) as Consul reports it here."""
        if self._state == _DATA and self._member_name is not None:
            return _MEMBER_READ_ERRORS[self._member_name] + message
        return f"failed reading snapshot: {message}"

    def _write(self, piece: memoryview) -> None:
        if self._extended is not None:
            self._extended += piece
        elif self._member is not None:
            self._member.write(piece)

    def _on_block(self, block: bytes) -> None:
        if self._state == _AFTER_ZERO:
            if block != ZERO_BLOCK:
                raise _TarError(_INVALID_HEADER)
            self._state = _END
            return
        if block == ZERO_BLOCK:
            self._state = _AFTER_ZERO
            return
        name, size, typeflag = _parse_header(block)
        if typeflag in _EXTENDED_TYPES:
            if size > _MAX_EXTENDED_BYTES:
                raise _TarError("failed reading snapshot: archive/tar: header field too long")
            self._extended, self._extended_header = bytearray(), (bytes((typeflag,)), name)
            self._begin_data(size)
            return
        name = self._overrides.pop("path", name)
        if "size" in self._overrides:
            size = _pax_size(self._overrides.pop("size"))
        self._overrides.clear()
        if typeflag in _HEADER_ONLY_TYPES:
            size = 0
        self._member, self._member_name = self._open_member(name), name
        self._begin_data(size)

    def _begin_data(self, size: int) -> None:
        self._remaining, self._pad = size, padding_bytes(size)
        self._state = _DATA
        if size == 0:
            self._data_done()

    def _data_done(self) -> None:
        self._state = _PADDING if self._pad else _HEADER
        if self._extended is not None:
            data, self._extended = bytes(self._extended), None
            self._apply_extended(data)
        elif self._member is not None:
            member, self._member, self._member_name = self._member, None, None
            member.close()

    def _apply_extended(self, data: bytes) -> None:
        kind, name = self._extended_header
        if kind == b"x":
            self._overrides.update(_pax_records(data))
        elif kind == b"L":
            self._overrides["path"] = data.split(b"\0")[0].decode("utf-8", "surrogateescape")
        elif kind == b"g":  # Go hands a global header to its caller as a member
            self._open_member(name).close()


def _parse_header(block: bytes) -> tuple[str, int, int]:
    """Name, size and typeflag of a header block, or Go's ``invalid tar header``."""
    stored = _numeric(block[148:156], octal_only=True)
    unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
    signed = unsigned - 256 * sum(1 for byte in block[:148] + block[156:] if byte >= 0x80)
    if stored not in (unsigned, signed):
        raise _TarError(_INVALID_HEADER)
    for start, end in ((100, 108), (108, 116), (116, 124), (136, 148)):  # mode, uid, gid, mtime
        _numeric(block[start:end])
    size = _numeric(block[124:136])
    if size < 0:
        raise _TarError(_INVALID_HEADER)
    name = _c_string(block[0:100])
    magic = block[257:263]
    if magic in (b"ustar\x00", b"ustar "):  # USTAR, PAX or GNU: device numbers are parsed too
        _numeric(block[329:337])
        _numeric(block[337:345])
        if magic == b"ustar\x00" and (prefix := _c_string(block[345:500])):
            name = f"{prefix}/{name}"
    typeflag = block[156] or ord("0")
    return name, size, typeflag


def _c_string(field: bytes) -> str:
    return field.split(b"\0")[0].decode("utf-8", "surrogateescape")


def _numeric(field: bytes, octal_only: bool = False) -> int:
    """Go's parseNumeric: base-256 when the high bit is set, else octal padded by spaces/NULs."""
    if field and field[0] & 0x80 and not octal_only:
        negative = bool(field[0] & 0x40)
        value = int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
        if negative:
            value -= 1 << (8 * len(field) - 1)
        return value
    digits = field.strip(b" \x00").split(b"\x00")[0]
    if not digits:
        return 0
    if any(digit not in b"01234567" for digit in digits) or len(digits) > 22:
        raise _TarError(_INVALID_HEADER)
    return int(digits, 8)


def _pax_records(data: bytes) -> dict[str, str]:
    """``"<length> <key>=<value>\\n"`` records, as Go's parsePAX reads them."""
    records: dict[str, str] = {}
    while data:
        length_text, space, _ = data.partition(b" ")
        if not space or not length_text.isdigit() or int(length_text) > len(data):
            raise _TarError(_INVALID_HEADER)
        record, data = data[: int(length_text)], data[int(length_text) :]
        key, equals, value = record[len(length_text) + 1 : -1].partition(b"=")
        if not record.endswith(b"\n") or not equals:
            raise _TarError(_INVALID_HEADER)
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return records


def _pax_size(text: str) -> int:
    if not text.isdigit():
        raise _TarError(_INVALID_HEADER)
    return int(text)


# raft.SnapshotMeta's fields as meta.json names them, with their Go types.
_META_FIELDS = {
    "Version": "int",
    "ID": "string",
    "Index": "uint64",
    "Term": "uint64",
    "Peers": "[]uint8",
    "Configuration": "raft.Configuration",
    "ConfigurationIndex": "uint64",
    "Size": "int64",
}
_META_ERROR = "failed to decode snapshot metadata: "


class _JsonNumber(str):
    """A JSON number as written: Go parses it by the type of the field it goes into."""


def _refuse_constant(name: str) -> None:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def _decode_meta(raw: bytes) -> dict[str, Any]:
    """meta.json decoded into Raft's typed ``SnapshotMeta`` as Go's encoding/json does."""
    text = raw.decode("utf-8", "replace")
    try:
        doc = json.loads(
            text, parse_int=_JsonNumber, parse_float=_JsonNumber, parse_constant=_refuse_constant
        )
    except json.JSONDecodeError as exc:
        found = text[exc.pos : exc.pos + 1] or "EOF"
        raise _TarError(f"{_META_ERROR}invalid character {found!r} ({exc.msg})") from exc
    except ValueError as exc:
        raise _TarError(f"{_META_ERROR}{exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise _TarError(
            f"{_META_ERROR}json: cannot unmarshal {_json_kind(doc)} "
            "into Go value of type raft.SnapshotMeta"
        )
    fields: dict[str, Any] = {}
    by_folded = {name.lower(): name for name in _META_FIELDS}
    for key, value in doc.items():  # encoding/json matches field names case-insensitively
        name = key if key in _META_FIELDS else by_folded.get(key.lower())
        if name is not None and value is not None:
            fields[name] = _meta_field(name, value)
    return fields


def _meta_field(name: str, value: Any) -> Any:
    """``value`` as Go stores it in SnapshotMeta's field ``name``, or Go's refusal."""
    go_type = _META_FIELDS[name]

    def refuse(what: str, into: str = go_type) -> _TarError:
        return _TarError(
            f"{_META_ERROR}json: cannot unmarshal {what} into Go struct field "
            f"SnapshotMeta.{name} of type {into}"
        )

    kind = _json_kind(value)
    if go_type in ("int", "int64", "uint64"):
        if kind != "number":
            raise refuse(kind)
        if (number := _go_integer(value, go_type)) is None:
            raise refuse(f"number {value}")
        return number
    if go_type == "[]uint8" and kind == "string":
        bad = [i for i, c in enumerate(value) if c not in _BASE64_ALPHABET]
        if bad or len(value) % 4:  # StdEncoding: padded groups of four
            position = bad[0] if bad else len(value) // 4 * 4
            raise _TarError(f"{_META_ERROR}illegal base64 data at input byte {position}")
        return value
    if go_type == "[]uint8" and kind == "array":  # Go also takes an array of byte values
        for item in value:
            if item is not None and _json_kind(item) != "number":
                raise refuse(_json_kind(item), "uint8")
            if item is not None and _go_integer(item, "uint8") is None:
                raise refuse(f"number {item}", "uint8")
        return value
    expected = {"string": "string", "raft.Configuration": "object"}.get(go_type)
    if kind != expected:
        raise refuse(kind)
    return value


def _json_kind(value: Any) -> str:
    kinds = {bool: "bool", _JsonNumber: "number", str: "string", list: "array", dict: "object"}
    return kinds.get(type(value), "number")


def _go_integer(text: str, go_type: str) -> int | None:
    """``text`` as Go's strconv parses it for a field of ``go_type``; None where it cannot.

    ParseInt and ParseUint take digits only: no fraction, no exponent; ParseUint no
    sign at all, not even ``-0``.
    """
    signed = go_type in ("int", "int64")
    if not text.removeprefix("-" if signed else "").isdigit():
        return None
    bits = 8 if go_type == "uint8" else 64
    value = int(text)
    low, high = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    return value if low <= value < high else None


_BASE64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _go_quote(name: str) -> str:
    """Go's %q for the names of members."""
    return json.dumps(name, ensure_ascii=False)


def _verify_sums(sums: bytes, hashes: dict[str, Any]) -> None:
    """SHA256SUMS as Consul's DecodeAndVerify reads it: line by line, every line checked."""
    prefix = "failed checking integrity of snapshot: "
    lines = sums.split(b"\n")
    if lines[-1] == b"":  # bufio.ScanLines drops the empty text after a final newline
        lines.pop()
    seen = set()
    for line in lines:
        words = line.removesuffix(b"\r").split()  # Sscanf("%x  %s"): hex, spaces, a word
        if len(words) < 2 or len(words[0]) % 2:
            raise _TarError(prefix + ("unexpected EOF" if not words else "bad hash line"))
        try:
            digest = bytes.fromhex(words[0].decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise _TarError(prefix + "bad hash line") from None
        name = words[1].decode("utf-8", "surrogateescape")
        if name not in hashes:
            raise _TarError(f"{prefix}list missing hash for {_go_quote(name)}")
        if digest != hashes[name].digest():
            raise _TarError(f"{prefix}hash check failed for {_go_quote(name)}")
        seen.add(name)
    for name in HASHED_MEMBERS:
        if name not in seen:
            raise _TarError(f"{prefix}file missing for {_go_quote(name)}")


class _FsmRestore:
    """Consul's FSM ``Restore`` (fsm.go ``ReadSnapshot`` and its handler), fed
    ``state.bin`` as it is read.

    One msgpack value, the header, decoded into ``SnapshotHeader`` (an unsigned
    LastIndex); then until the end, one type byte and one msgpack value per record.
    A type Consul CE does not restore ends it in Consul's words. Decoding happens
    while state.bin streams, one pass over the data; its verdict counts only once
    the archive passed.

    Go's words for an end inside a value: go-msgpack reads a value in units (a
    descriptor byte, a length or number, a payload) with ``io.ReadAtLeast`` from
    Raft's snapshot reader, so input that ends between two units is ``EOF`` and
    input that ends inside one ``unexpected EOF``. The bytes of the value being read
    are kept to tell which.
    """

    def __init__(self) -> None:
        self._unpacker = msgpack.Unpacker(
            raw=True, strict_map_key=False, max_buffer_size=MAX_RECORD_BYTES
        )
        self._header_read = False
        self._pending_type: int | None = None
        self._value_start = 0  # stream offset of the value being read
        self._tail = bytearray()  # the bytes from _tail_start on
        self._tail_start = 0
        self._fed = 0
        self.records = 0
        self.last_index = 0
        self.error: str | None = None

    def feed(self, data: Any) -> None:
        if self.error is not None:
            return
        self._fed += len(data)
        self._tail += data
        try:
            self._unpacker.feed(data)
            self._drain()
        except msgpack.OutOfData:
            pass  # the value goes on in the next piece
        except _FsmError as exc:
            self.error = str(exc)
        except (ValueError, msgpack.UnpackException) as exc:
            self.error = _format_error(exc, self._first_byte())
        reading = not self._header_read or self._pending_type is not None
        keep_from = self._value_start if reading else self._unpacker.tell()
        del self._tail[: keep_from - self._tail_start]
        self._tail_start = keep_from

    def refusal(self) -> str | None:
        """Why the FSM cannot load what it was fed, or None."""
        if self.error is not None:
            return self.error
        if self._header_read and self._pending_type is None:
            return None
        cut = bytes(self._tail[self._value_start - self._tail_start :])
        return "EOF" if _ends_between_units(cut) else "unexpected EOF"

    def _first_byte(self) -> int | None:
        position = self._value_start - self._tail_start
        return self._tail[position] if 0 <= position < len(self._tail) else None

    def _drain(self) -> None:
        unpacker = self._unpacker
        if not self._header_read:
            self.last_index = _last_index(unpacker.unpack(), self._first_byte())
            self._header_read = True
        while True:
            if self._pending_type is None:
                type_byte = unpacker.read_bytes(1)
                if not type_byte:
                    return
                self._pending_type = _restored_type(type_byte[0])
                self._value_start = unpacker.tell()
            record = unpacker.unpack()
            _check_record(self._pending_type, record, self._first_byte())
            self._pending_type = None
            self.records += 1


def _value_type(descriptor: int | None) -> int:
    """go-msgpack's valueType of a descriptor byte (its helper.go numbering)."""
    kinds = [
        (lambda b: b == 0xC0, 1),  # nil
        (lambda b: b <= 0x7F or b >= 0xE0 or 0xD0 <= b <= 0xD3, 2),  # int
        (lambda b: 0xCC <= b <= 0xCF, 3),  # uint
        (lambda b: b in (0xCA, 0xCB), 4),  # float
        (lambda b: b in (0xC2, 0xC3), 5),  # bool
        (lambda b: 0xA0 <= b <= 0xBF or 0xD9 <= b <= 0xDB, 6),  # string (RawToString)
        (lambda b: 0xC4 <= b <= 0xC6, 8),  # bytes
        (lambda b: 0x80 <= b <= 0x8F or b in (0xDE, 0xDF), 9),  # map
        (lambda b: 0x90 <= b <= 0x9F or b in (0xDC, 0xDD), 10),  # array
    ]
    if descriptor is None:
        return 0
    return next((number for test, number in kinds if test(descriptor)), 12)  # ext


def _not_decodable(into: str, descriptor: int | None) -> _FsmError:
    """go-msgpack's words (decode.go) for a value that is not a map or array."""
    return _FsmError(
        f"codec.decoder: Only encoded map or array can be decoded into a {into}. "
        f"(valueType: {_value_type(descriptor):x})"
    )


def _format_error(exc: Exception, descriptor: int | None) -> str:
    if descriptor == 0xC1:  # msgpack's one reserved byte, as go-msgpack reports it
        return "codec.decoder: currentEncodedType: Undeciphered descriptor: " + (
            "Unrecognized descriptor byte: hex: c1, dec: 193"
        )
    return f"codec.decoder: {exc or type(exc).__name__}"


def _last_index(header: Any, descriptor: int | None) -> int:
    """The header's LastIndex, as go-msgpack decodes it into ``SnapshotHeader``."""
    if isinstance(header, list):  # go-msgpack also decodes an array into a struct
        value = header[0] if header else None
    elif isinstance(header, dict):
        value = header.get(b"LastIndex")
    elif header is None:  # nil decodes into the zero header
        value = None
    else:
        raise _not_decodable("struct", descriptor)
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise _FsmError(
                f"codec.decoder: Assigning negative signed value: {value}, to unsigned type"
            )
        return value
    raise _FsmError(f"codec.decoder: cannot decode a {type(value).__name__} into LastIndex uint64")


def _restored_type(msg_type: int) -> int:
    if msg_type in RESTORED_TYPES:
        return msg_type
    if msg_type >= ENTERPRISE_TYPES_FROM:
        return _refuse_type(
            f"msg type <{msg_type}> is a Consul Enterprise log entry. Consul CE cannot restore it"
        )
    return _refuse_type(f"Unrecognized msg type {msg_type}")


def _refuse_type(message: str) -> int:
    raise _FsmError(message)


def _check_record(msg_type: int, record: Any, descriptor: int | None) -> None:
    """The value decodes into what the type's restorer takes: a struct, or a slice."""
    if msg_type in _LIST_RECORDS or msg_type in _BYTES_RECORDS:
        if record is not None and not isinstance(record, (list, bytes)):
            raise _not_decodable("slice", descriptor)
    elif record is not None and not isinstance(record, (dict, list)):
        raise _not_decodable("struct", descriptor)


# How go-msgpack reads a value after its descriptor: bytes of a length field, and what
# the length (or a count the descriptor carries) counts.
_FIXED_PAYLOADS = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2}
_FIXED_PAYLOADS |= {0xD2: 4, 0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17}
_LENGTH_FIELDS = {0xC4: (1, "bytes"), 0xC5: (2, "bytes"), 0xC6: (4, "bytes")}
_LENGTH_FIELDS |= {0xC7: (1, "ext"), 0xC8: (2, "ext"), 0xC9: (4, "ext")}
_LENGTH_FIELDS |= {0xD9: (1, "bytes"), 0xDA: (2, "bytes"), 0xDB: (4, "bytes")}
_LENGTH_FIELDS |= {0xDC: (2, "items"), 0xDD: (4, "items"), 0xDE: (2, "pairs"), 0xDF: (4, "pairs")}


def _layout(descriptor: int) -> tuple[int, str, int]:
    """(length field bytes, what is counted, the count the descriptor itself carries)."""
    if 0x80 <= descriptor <= 0x8F:
        return 0, "pairs", descriptor & 0x0F
    if 0x90 <= descriptor <= 0x9F:
        return 0, "items", descriptor & 0x0F
    if 0xA0 <= descriptor <= 0xBF:
        return 0, "bytes", descriptor & 0x1F
    if descriptor in _LENGTH_FIELDS:
        width, counted = _LENGTH_FIELDS[descriptor]
        return width, counted, 0
    return 0, "bytes", _FIXED_PAYLOADS.get(descriptor, 0)


def _ends_between_units(data: bytes) -> bool:
    """Whether a value cut short ends between two of go-msgpack's reads (then Go
    says ``EOF``) rather than inside one (``unexpected EOF``)."""
    position, values = 0, 1
    while values:
        if position == len(data):
            return True  # the next descriptor never came
        width, counted, count = _layout(data[position])
        position, values = position + 1, values - 1
        if width:
            if position == len(data):
                return True
            if position + width > len(data):
                return False
            count = int.from_bytes(data[position : position + width], "big")
            position += width
        if counted in ("items", "pairs"):
            values += count * (2 if counted == "pairs" else 1)
            continue
        size = count + (1 if counted == "ext" else 0)
        if size and position == len(data):
            return True
        if position + size > len(data):
            return False
        position += size
    return True


@dataclass(frozen=True)
class _Restored:
    """A snapshot that passed every check: its state.bin in the scratch directory."""

    path: Path
    size: int
    index: int
    term: int


class _SnapshotRestore:
    """One ``PUT /v1/snapshot`` body through Consul's restore, block by block.

    Consul's order (snapshot/snapshot.go ``WriteToTempFile`` and archive.go ``read``,
    then Raft's ``Restore`` and the FSM's): gunzip; tar members into their hashes,
    meta.json decoded, state.bin into a scratch file; SHA256SUMS checked; the rest
    of the gzip stream read to its end (trailer, nothing after the tar); Raft copies
    state.bin and checks meta.json's Size; the FSM decodes every record. A real
    leader panics when the FSM fails (``failed to restore snapshot: ...``); the
    double answers 500 with those words.
    """

    def __init__(self, scratch: Path) -> None:
        self._gunzip = _Gunzip()
        self._tar = _TarReader(self._open_member)
        self._hashes = {name: hashlib.sha256() for name in HASHED_MEMBERS}
        handle, name = tempfile.mkstemp(prefix="state-", suffix=".bin", dir=scratch)
        self._state_path = Path(name)
        self._state_file = os.fdopen(handle, "wb")
        self._state_bytes = 0
        self._fsm = _FsmRestore()
        self._meta: dict[str, Any] = {}
        self._meta_raw = bytearray()
        self._sums = bytearray()
        self._error: str | None = None

    def feed(self, block: bytes) -> None:
        if self._error is not None:
            return  # Consul stopped reading; the double only drains the body
        try:
            for piece in self._gunzip.feed(block):
                self._tar.feed(piece)
        except _GzipError as exc:
            self._error = self._gzip_refusal(str(exc))
        except _TarError as exc:
            self._error = f"failed to read snapshot file: {exc}"

    def finish(self, body_complete: bool) -> _Restored:
        """The restored snapshot; or RestoreRefusedError in Consul's words, nothing kept."""
        self._state_file.close()
        error = self._error or self._archive_refusal(body_complete)
        version, size = self._meta.get("Version", 0), self._meta.get("Size", 0)
        if error is None and version not in RAFT_SNAPSHOT_VERSIONS:
            error = f"Raft error when restoring snapshot: unsupported snapshot version {version}"
        if error is None and self._state_bytes != size:
            error = (
                "Raft error when restoring snapshot: failed to write snapshot, "
                f"size didn't match ({self._state_bytes} != {size})"
            )
        if error is None and (fsm_error := self._fsm.refusal()) is not None:
            error = f"failed to restore snapshot: {fsm_error}"
        if error is not None:
            self._state_path.unlink(missing_ok=True)
            raise RestoreRefusedError(error)
        index, term = self._meta.get("Index", 0), self._meta.get("Term", 0)
        return _Restored(self._state_path, self._state_bytes, index, term)

    def _archive_refusal(self, body_complete: bool) -> str | None:
        ending = self._gunzip.ending() or (None if body_complete else "unexpected EOF")
        if ending is not None and not self._tar.ended:
            return self._gzip_refusal(ending)  # the tar reader reads into the broken end
        try:
            self._tar.finish()
            _verify_sums(bytes(self._sums), self._hashes)
        except _TarError as exc:
            return f"failed to read snapshot file: {exc}"
        if ending is not None:  # concludeGzipRead reads the stream to its end
            return ending
        if self._tar.trailing:
            return f"{self._tar.trailing} unread uncompressed bytes remain"
        return None

    def _gzip_refusal(self, message: str) -> str:
        if not self._gunzip.opened:
            return f"failed to decompress snapshot: {message}"
        if self._tar.ended:
            return message
        return f"failed to read snapshot file: {self._tar.context(message)}"

    def _open_member(self, name: str) -> _Member:
        if name == META_MEMBER:
            self._meta_raw = bytearray()
            return _Member(self._hashes[META_MEMBER], self._meta_raw.extend, self._meta_done)
        if name == STATE_MEMBER:
            return _Member(self._hashes[STATE_MEMBER], self._state_data)
        if name == SUMS_MEMBER:
            return _Member(None, self._sums.extend)
        raise _TarError(f"unexpected file {_go_quote(name)} in snapshot")

    def _meta_done(self) -> None:
        self._meta.update(_decode_meta(bytes(self._meta_raw)))

    def _state_data(self, piece: Any) -> None:
        self._state_file.write(piece)
        self._state_bytes += len(piece)
        self._fsm.feed(piece)


def _anonymous_denied(permission: str, resource: str = "") -> str:
    """Consul's words (acl/errors.go) when the anonymous token lacks ``permission``."""
    on = f' on "{resource}"' if resource else ""
    return (
        f"Permission denied: anonymous token lacks permission '{permission}'{on}. The anonymous "
        "token is used implicitly when a request does not specify a token."
    )


# The methods Consul's HTTP mux allows per path (a 405 names them in Allow).
_ALLOWED_METHODS = {SNAPSHOT_PATH: "OPTIONS,GET,PUT", AGENT_SELF_PATH: "OPTIONS,GET"}


class _SnapshotHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Consul-double"
    double: ConsulDouble

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass  # quiet: tests assert on recorded requests instead

    # --- request plumbing -------------------------------------------------

    def _record(self) -> tuple[str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        self.double.requests.append(
            RecordedRequest(self.command, parts.path, query, dict(self.headers.items()))
        )
        return parts.path, query

    def _plain(self, status: int, body: str, extra: dict[str, str] | None = None) -> None:
        self._send(status, body.encode(), "text/plain; charset=utf-8", extra)

    def _send(
        self, status: int, payload: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _token(self, query: dict[str, list[str]]) -> str | None:
        if query.get("token"):
            return query["token"][0]
        if self.headers.get("X-Consul-Token"):
            return self.headers["X-Consul-Token"]
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[len("Bearer ") :].strip()
        return None

    def _denied(
        self, query: dict[str, list[str]], permission: str, resource: str = ""
    ) -> str | None:
        """Consul's ACL check: management tokens may do anything, agent readers read the
        agent. The 403 body when the request's token lacks ``permission``, else None."""
        double = self.double
        if not double.acl_enabled:
            return None
        token = self._token(query)
        if token is None:
            return _anonymous_denied(permission, resource)
        if token not in double.tokens and token not in double.agent_readers:
            return "ACL not found"
        if double.tokens.get(token, False) or (
            permission == "agent:read" and token in double.agent_readers
        ):
            return None
        on = f' on "{resource}"' if resource else ""
        accessor = double.accessor_id(token)
        return (
            f"Permission denied: token with AccessorID '{accessor}' "
            f"lacks permission '{permission}'{on}"
        )

    def _refusal(self, path: str, query: dict[str, list[str]]) -> tuple[int, str] | None:
        """The answer Consul gives a snapshot request before it does anything, or None."""
        if path != SNAPSHOT_PATH:
            return 404, "404 page not found"
        if (denied := self._denied(query, "acl:write")) is not None:
            return 403, denied
        dc = query.get("dc", [""])[0]
        if dc and dc not in self.double.datacenters:
            return 500, "No path to datacenter"
        return None

    def _not_allowed(self) -> None:
        path, _query = self._record()
        if path not in _ALLOWED_METHODS:
            self._plain(404, "404 page not found")
            return
        allow = {"Allow": _ALLOWED_METHODS[path]}
        self._plain(405, f"method {self.command} not allowed", allow)

    do_POST = do_DELETE = do_PATCH = do_HEAD = _not_allowed  # noqa: N815 - http.server's naming

    # --- GET /v1/agent/self ---------------------------------------------------

    def _agent_self(self, query: dict[str, list[str]]) -> None:
        if (denied := self._denied(query, "agent:read", self.double.node_name)) is not None:
            self._plain(403, denied)
            return
        self._send(200, json.dumps(self.double.agent_self()).encode(), "application/json")

    # --- GET: save ---------------------------------------------------------

    def do_GET(self) -> None:
        path, query = self._record()
        if path == AGENT_SELF_PATH:
            self._agent_self(query)
            return
        if (refusal := self._refusal(path, query)) is not None:
            self._plain(*refusal)
            return
        stale = "stale" in query
        double = self.double
        if double.scripted_errors:
            status, body = double.scripted_errors.pop(0)
            self._plain(status, body)
            return
        if not stale and not double.has_leader:
            self._plain(500, "No cluster leader")
            return
        if not stale and not double.ready_for_consistent_reads:
            self._plain(500, "Not ready to serve consistent reads")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        index = (
            double.index_header if double.index_header != "" else str(max(double.state.index, 1))
        )
        if index is not None:
            self.send_header("X-Consul-Index", index)
        self.send_header("X-Consul-KnownLeader", "true" if double.has_leader else "false")
        self.send_header("X-Consul-LastContact", "0" if double.has_leader else "2315")
        double_gzip = double.gzip_regardless or "gzip" in self.headers.get("Accept-Encoding", "")
        if double_gzip:
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Vary", "Accept-Encoding")
        self.end_headers()
        self._stream_body(double_gzip)

    def _stream_body(self, double_gzip: bool) -> None:
        double = self.double
        chunked = _ChunkedWriter(self.wfile, self.connection)
        target: Any = chunked
        if double.bytes_per_second:
            target = _ThrottledWriter(target, double.bytes_per_second)
        if double.fault is not None:
            target = _CuttingWriter(target, double.fault.after_bytes)
        outer = gzip.GzipFile(fileobj=target, mode="wb", compresslevel=1) if double_gzip else None
        inner = outer if outer is not None else target
        recorder = _RecordingWriter(inner) if double.record_served else None
        try:
            self._write_archive(recorder or inner)
            if outer is not None:
                outer.close()
        except _CutError:
            assert double.fault is not None
            if double.fault.kind == "reset":
                self._reset_connection()
                return
            if double.fault.kind == "stall":
                self._stall_until_the_client_leaves()
                return
            # Consul appends the error to the body it already started as a 200.
            chunked.write(double.fault.message.encode())
        finally:
            if recorder is not None:
                double.served.append(recorder.served())
        chunked.finish()

    def _write_archive(self, sink: Any) -> None:
        double = self.double
        if double.not_gzip:
            sink.write(b"this is not a snapshot archive\n" * 4)
        elif double.archive_body is not None:
            sink.write(double.archive_body)
        elif double.archive_file is not None:
            with open(double.archive_file, "rb") as archive:
                if isinstance(sink, _ChunkedWriter):  # no fault, throttle or record
                    sink.send_file(archive)
                    return
                while chunk := archive.read(1 << 20):
                    sink.write(chunk)
        else:
            write_archive(sink, double.state, double.defects)

    def _stall_until_the_client_leaves(self) -> None:
        self.wfile.flush()
        self.close_connection = True
        self.connection.settimeout(STALL_LIMIT_SECONDS)
        with contextlib.suppress(OSError):
            while self.connection.recv(1 << 16):
                pass

    def _reset_connection(self) -> None:
        self.wfile.flush()
        sock = self.connection
        # SO_LINGER with a zero timeout turns close() into a TCP reset.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        sock.close()

    # --- PUT: restore -----------------------------------------------------

    def do_PUT(self) -> None:
        path, query = self._record()
        double = self.double
        if path == AGENT_SELF_PATH:
            refusal: tuple[int, str] | None = (405, "method PUT not allowed")
        elif (refusal := self._refusal(path, query)) is None:
            if "stale" in query:
                refusal = 500, "stale not allowed for restore"
            elif not double.has_leader:
                refusal = 500, "No cluster leader"
        restore = _SnapshotRestore(double.scratch_dir()) if refusal is None else None
        # The body is read to its end either way: answering before it was read, then
        # closing, would reset the connection under a client still sending it.
        body = _RequestBody(self.rfile, self.headers, keep=double.record_received)
        for block in body.blocks():
            if restore is not None:
                restore.feed(block)
        status, answer = refusal or (200, "")
        if restore is not None:
            try:
                double._commit_restore(restore.finish(body.complete))
            except RestoreRefusedError as exc:
                status, answer = 500, str(exc)
        if path == SNAPSHOT_PATH:
            error = answer if status != 200 else None
            digest, restored = body.digest.hexdigest(), status == 200
            double.received.append(
                ReceivedArchive(digest, body.size, body.kept, body.complete, restored, error)
            )
        if not body.complete:
            self.close_connection = True  # the client is gone, or its framing is broken
        allow = {"Allow": _ALLOWED_METHODS[path]} if status == 405 else None
        with contextlib.suppress(OSError):
            self._plain(status, answer, allow)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--token", default="root-token", help="management token ('' disables ACLs)")
    parser.add_argument("--datacenter", default="dc1", help="the agent's datacenter")
    parser.add_argument(
        "--state-bytes", type=int, default=0, help="size of a generated state (large KV values)"
    )
    parser.add_argument("--archive-file", type=Path, help="serve this prepared archive instead")
    args = parser.parse_args()
    double = ConsulDouble(
        acl_enabled=bool(args.token), tokens={args.token: True}, datacenters=(args.datacenter,)
    )
    if args.state_bytes:
        double.state = RaftState(size=args.state_bytes, seed=1)
    double.archive_file = args.archive_file
    double.record_served = False  # nobody reads the record; spare the CPU
    double.record_received = False
    double.start(args.port)
    print(f"Consul double listening on {double.address}", flush=True)

    def leave(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (a benchmark ending it) cleans up like Ctrl-C

    signal.signal(signal.SIGTERM, leave)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        double.stop()


if __name__ == "__main__":
    main()
