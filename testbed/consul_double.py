"""A Consul agent's snapshot endpoint that behaves as a real agent's does.

Real HTTP on 127.0.0.1: exact path, ``dc``/``stale``/token handling, ACL errors
with Consul's bodies, streamed chunked bodies without Content-Length, the
agent's gzip handler (double gzip when asked), and the ways a snapshot breaks:
a 200 whose stream is cut and followed by error text, a reset connection, and
archives with bad hashes or the wrong members. ``PUT /v1/snapshot`` verifies and
restores, so a restore round trip can be checked against the state it replaced.

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
import socket
import ssl
import struct
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .archive_writer import ArchiveDefects, RaftState, write_archive

SNAPSHOT_PATH = "/v1/snapshot"
ANONYMOUS_DENIED = (
    "Permission denied: anonymous token lacks permission 'acl:write'. The anonymous token "
    "is used implicitly when a request does not specify a token."
)


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

    state: RaftState = field(default_factory=lambda: RaftState(data=b"\x81\xa3key\xa5value" * 300))
    acl_enabled: bool = True
    # secret -> whether the token has acl:write (a "management" token does)
    tokens: dict[str, bool] = field(default_factory=lambda: {"root-token": True})
    datacenters: tuple[str, ...] = ("dc1",)
    has_leader: bool = True
    ready_for_consistent_reads: bool = True
    defects: ArchiveDefects | None = None
    fault: MidStreamFault | None = None
    not_gzip: bool = False
    # A slow server or network: the body trickles out at this rate.
    bytes_per_second: int | None = None
    # Served instead of a generated archive: a prepared archive file (benchmarks),
    # or these exact bytes (archives broken one rule at a time, from the tests).
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
    # Every archive a PUT delivered, restored or refused.
    received: list[ServedArchive] = field(default_factory=list)
    _accessors: dict[str, str] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

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
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ConsulDouble:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def accessor_id(self, secret: str) -> str:
        with self._lock:
            return self._accessors.setdefault(secret, str(uuid.uuid5(uuid.NAMESPACE_OID, secret)))

    def snapshot_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == SNAPSHOT_PATH]


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
        payload = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
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

    def _authorize(self, query: dict[str, list[str]]) -> bool:
        double = self.double
        if not double.acl_enabled:
            return True
        token = self._token(query)
        if token is None:
            self._plain(403, ANONYMOUS_DENIED)
            return False
        if token not in double.tokens:
            self._plain(403, "ACL not found")
            return False
        if not double.tokens[token]:
            accessor = double.accessor_id(token)
            self._plain(
                403,
                f"Permission denied: token with AccessorID '{accessor}' "
                "lacks permission 'acl:write'",
            )
            return False
        return True

    def _route(self) -> tuple[dict[str, list[str]], bool] | None:
        path, query = self._record()
        if path != SNAPSHOT_PATH:
            self._plain(404, "404 page not found")
            return None
        if not self._authorize(query):
            return None
        dc = query.get("dc", [""])[0]
        if dc and dc not in self.double.datacenters:
            self._plain(500, "No path to datacenter")
            return None
        return query, "stale" in query

    def _not_allowed(self) -> None:
        self._record()
        self._plain(405, f"method {self.command} not allowed", {"Allow": "OPTIONS,GET,PUT"})

    do_POST = do_DELETE = do_PATCH = do_HEAD = _not_allowed  # noqa: N815 - http.server's naming

    # --- GET: save ---------------------------------------------------------

    def do_GET(self) -> None:
        routed = self._route()
        if routed is None:
            return
        _query, stale = routed
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
        self.send_header("X-Consul-Index", str(max(double.state.index, 1)))
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
        routed = self._route()
        if routed is None:
            return
        _query, stale = routed
        body = self._read_body()
        self.double.received.append(
            ServedArchive(hashlib.sha256(body).hexdigest(), len(body), body)
        )
        if stale:
            self._plain(500, "stale not allowed for restore")
            return
        if not self.double.has_leader:
            self._plain(500, "No cluster leader")
            return
        try:
            restored = _read_archive(body)
        except ValueError as exc:
            self._plain(500, str(exc))
            return
        self.double.state = restored
        self.double.restores += 1
        self._plain(200, "")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))


def _read_archive(body: bytes) -> RaftState:
    """Consul's restore-side checks, written independently of the project's verifier."""
    try:
        raw = gzip.decompress(body)
    except (OSError, EOFError) as exc:
        raise ValueError("gzip: invalid header") from exc
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                extracted = tar.extractfile(member)
                if member.name not in ("meta.json", "state.bin", "SHA256SUMS") or not extracted:
                    raise ValueError(f'unexpected file "{member.name}" in snapshot')
                members[member.name] = extracted.read()
            # tarfile stops at the end marker; Consul reads on and refuses what follows.
            after_members = raw[tar.offset :]
    except tarfile.TarError as exc:
        raise ValueError(f"failed to read snapshot file: {exc}") from exc
    problem = _after_the_last_member(after_members)
    if problem is not None:
        raise ValueError(problem)
    sums = {}
    for line in members.get("SHA256SUMS", b"").decode().splitlines():
        digest, _, name = line.partition("  ")
        sums[name] = digest
    for name in ("meta.json", "state.bin"):
        if name not in members:
            raise ValueError(f'file missing for "{name}"')
        if sums.get(name) != hashlib.sha256(members[name]).hexdigest():
            raise ValueError(f'hash check failed for "{name}"')
    meta = json.loads(members["meta.json"])
    return RaftState(index=int(meta["Index"]), term=int(meta["Term"]), data=members["state.bin"])


def _after_the_last_member(after: bytes) -> str | None:
    """What Consul's reader says of the bytes after the last member, if anything.

    The end of input, one zero block, or two zero blocks end the archive; not one
    byte may follow two zero blocks; anything else is a bad or cut header.
    """
    end = bytes(1024)
    if after in (b"", end[:512]):
        return None
    if after.startswith(end):
        return f"{len(after) - len(end)} unread uncompressed bytes remain" if after != end else None
    if len(after) < len(end) and not after.strip(b"\0"):
        return "failed reading snapshot: unexpected EOF"
    return "failed reading snapshot: archive/tar: invalid tar header"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--token", default="root-token", help="management token ('' disables ACLs)")
    parser.add_argument("--state-bytes", type=int, default=0, help="size of a generated state")
    parser.add_argument("--archive-file", type=Path, help="serve this prepared archive instead")
    args = parser.parse_args()
    double = ConsulDouble(acl_enabled=bool(args.token), tokens={args.token: True})
    if args.state_bytes:
        double.state = RaftState(size=args.state_bytes, seed=1)
    double.archive_file = args.archive_file
    double.record_served = False  # nobody reads the record; spare the CPU
    double.start(args.port)
    print(f"Consul double listening on {double.address}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        double.stop()


if __name__ == "__main__":
    main()
