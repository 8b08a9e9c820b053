"""Restore in one pass: S3 into ``PUT /v1/snapshot`` while the verifier reads the same bytes.

The archive is read from S3 once. Every byte goes to the verifier (Consul's
rules, ``state.bin`` decoded, the SHA-256 compared with the manifest's) and,
on another thread, into the body of ``PUT /v1/snapshot`` — except the last
``HOLD_BACK_BYTES``, which wait for the verdict. Consul reads the whole archive
(to its gzip trailer, which is in that tail) before it restores anything: a
body without its tail never completes, so Consul restores nothing. Only when
the archive is proven, and proven to be the one its manifest records, is the
tail sent. A verdict against it cuts the request instead.

Memory: a few chunks in flight between the two threads, whatever the size.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from snapshot_backup.consul import ConsulClient, ConsulError
from snapshot_backup.reverify import Proven, prove_stored
from snapshot_backup.store import SnapshotStore, StoredSnapshot

# More than the gzip trailer (8 bytes) and the tar's end marker: the last
# block Consul needs to finish reading stays here until the verdict.
HOLD_BACK_BYTES = 64 << 10
# Chunks queued between the verifier and the request: backpressure, not storage.
QUEUED_CHUNKS = 16
# How long the verifier waits on a stalled request before looking again.
_POLL_SECONDS = 0.5


class RestoreCutError(Exception):
    """Raised inside the request body: the verdict was against the archive."""


class RequestEndedError(ConsulError):
    """The request ended (Consul answered or the connection broke) before the body was sent."""


class HeldBackBody:
    """The body of ``PUT /v1/snapshot``: all but its tail, until ``release()``.

    The verifier's thread calls ``feed`` with each chunk it reads; the request's
    thread iterates over the body. ``release()`` sends the held tail and ends
    the body; ``cut()`` ends it with an error instead, so the connection closes
    short of Content-Length and the server never sees a whole archive.
    """

    def __init__(self, hold_back: int = HOLD_BACK_BYTES, queued: int = QUEUED_CHUNKS) -> None:
        self._hold_back = hold_back
        self._tail = bytearray()
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(queued)
        self._request_ended = threading.Event()
        self.sent = 0

    def feed(self, data: bytes) -> None:
        self._tail += data
        if len(self._tail) > 2 * self._hold_back:
            cut = len(self._tail) - self._hold_back
            self._put(bytes(self._tail[:cut]))
            del self._tail[:cut]

    def release(self) -> None:
        if self._tail:
            self._put(bytes(self._tail))
            self._tail.clear()
        self._put(None)

    def cut(self, why: str) -> None:
        self._tail.clear()
        self._put(RestoreCutError(why), wait=False)

    def request_ended(self) -> None:
        """Called by the request's thread when it is done, one way or another."""
        self._request_ended.set()

    def _put(self, item: bytes | BaseException | None, wait: bool = True) -> None:
        while True:
            if self._request_ended.is_set():
                if wait:
                    raise RequestEndedError("Consul stopped reading the restore before it was sent")
                return
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                if not wait:
                    self._drain_one()

    def _drain_one(self) -> None:
        with contextlib.suppress(queue.Empty):
            self._queue.get_nowait()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            self.sent += len(item)
            yield item


@dataclass
class _Request:
    """``PUT /v1/snapshot`` on a thread of its own, fed by a ``HeldBackBody``."""

    consul: ConsulClient
    size: int = 0
    failure: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self, body: HeldBackBody) -> None:
        self.thread = threading.Thread(
            target=self._run, args=(body,), name="consul-restore", daemon=True
        )
        self.thread.start()

    def end(self) -> None:
        """Wait for the request to finish; raise what it failed with."""
        if self.thread is not None:
            self.thread.join()
        if self.failure is not None:
            raise self.failure

    def _run(self, body: HeldBackBody) -> None:
        try:
            self.consul.restore_snapshot(body, size=self.size)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self.failure = exc
        finally:
            body.request_ended()


def restore_in_one_pass(
    store: SnapshotStore,
    snapshot: StoredSnapshot,
    consul: ConsulClient,
    *,
    version_id: str | None = None,
    allow_unrecorded: bool = False,
    progress: Callable[[bytes], None] | None = None,
) -> Proven:
    """Stream ``snapshot`` into Consul while proving it; Consul gets its tail only if proven.

    The request starts once S3 has answered and its answer was checked against
    the manifest (version, length): a snapshot refused before that (no
    manifest, replaced, another length) sends nothing, and the body's length is
    the length S3 serves, so nothing beyond it is ever sent.
    """
    request = _Request(consul)
    body = HeldBackBody()

    def start(size: int) -> None:
        request.size = size
        request.start(body)

    def forward(data: bytes) -> None:
        body.feed(data)
        if progress is not None:
            progress(data)

    try:
        proven = prove_stored(
            store,
            snapshot,
            version_id=version_id,
            allow_unrecorded=allow_unrecorded,
            observe=forward,
            on_open=start,
        )
    except RequestEndedError:
        request.end()  # Consul's own answer (a refusal, a broken connection) says why
        raise
    except BaseException as failure:
        if request.thread is not None:
            body.cut(str(failure))
            with contextlib.suppress(Exception):  # the verdict is the error that counts
                request.end()
        raise
    body.release()
    request.end()
    return proven
