"""Stream bytes into one S3 object that only exists once the caller commits it.

Bytes are cut into parts as they arrive and uploaded by a small pool of threads
while the caller keeps reading, so the transfer costs one pass and a bounded
amount of memory (a few parts). Nothing is visible in the bucket until
``commit()``: a snapshot smaller than one part is a single PutObject made at
commit, a larger one a multipart upload completed at commit. ``abort()`` leaves
neither an object nor an open multipart upload behind.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

MIN_PART_BYTES = 8 << 20
# S3 allows 10,000 parts; growing the part size every 1,000 parts keeps any
# snapshot below that limit without making small snapshots use big buffers.
PARTS_PER_SIZE_STEP = 1000
MAX_PARTS = 10_000
DEFAULT_PARTS_IN_FLIGHT = 2


class UploadError(Exception):
    """S3 did not accept the snapshot."""


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


@dataclass
class StoredObject:
    bucket: str
    key: str
    size: int
    version_id: str | None
    parts: int


@dataclass
class StreamingUpload:
    """One S3 object written by ``write()`` calls and published by ``commit()``.

    ``metadata`` may be filled in until the first part is sent (multipart) or
    until ``commit()`` (single PutObject): S3 fixes it when the upload starts.
    """

    s3: Any
    bucket: str
    key: str
    part_bytes: int = MIN_PART_BYTES
    parts_in_flight: int = DEFAULT_PARTS_IN_FLIGHT
    metadata: dict[str, str] = field(default_factory=dict)
    size: int = 0
    _buffer: bytearray = field(default_factory=bytearray)
    _upload_id: str | None = None
    _parts: list[Future[dict[str, Any]]] = field(default_factory=list)
    _pool: ThreadPoolExecutor | None = None
    _slots: threading.BoundedSemaphore | None = None
    _closed: bool = False

    def _current_part_bytes(self) -> int:
        return self.part_bytes << (len(self._parts) // PARTS_PER_SIZE_STEP)

    def write(self, data: bytes) -> None:
        if self._closed:
            raise UploadError("write after the upload was closed")
        self._buffer += data
        self.size += len(data)
        # Parts of exactly the part size, so the composite checksum can be
        # recomputed by anyone who knows it.
        while len(self._buffer) >= (part_bytes := self._current_part_bytes()):
            self._send_part(bytes(self._buffer[:part_bytes]))
            del self._buffer[:part_bytes]

    def _send_part(self, body: bytes) -> None:
        if self._upload_id is None:
            self._start_multipart()
        assert self._pool is not None and self._slots is not None
        if len(self._parts) >= MAX_PARTS:
            raise UploadError(f"snapshot needs more than {MAX_PARTS} parts")
        for done in self._parts:  # surface a failed part now, not at commit
            if done.done() and done.exception() is not None:
                raise UploadError(f"uploading a part failed: {done.exception()}")
        # Blocks the reader while enough parts are in flight: memory stays bounded.
        self._slots.acquire()
        number = len(self._parts) + 1
        future = self._pool.submit(self._upload_part, number, body)
        future.add_done_callback(lambda _f: self._slots.release() if self._slots else None)
        self._parts.append(future)

    def _start_multipart(self) -> None:
        response = self.s3.create_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            Metadata=self.metadata,
            ContentType="application/gzip",
            ChecksumAlgorithm="SHA256",
        )
        self._upload_id = response["UploadId"]
        self._pool = ThreadPoolExecutor(
            max_workers=self.parts_in_flight, thread_name_prefix="s3-part"
        )
        self._slots = threading.BoundedSemaphore(self.parts_in_flight)

    def _upload_part(self, number: int, body: bytes) -> dict[str, Any]:
        checksum = _b64(hashlib.sha256(body).digest())
        response = self.s3.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
        )
        return {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum}

    def commit(self, sha256: bytes) -> StoredObject:
        """Publish the object; ``sha256`` is the digest of every byte written.

        Both paths refuse to replace an existing object (If-None-Match), so a
        second run can never overwrite a stored snapshot.
        """
        self._closed = True
        if self._upload_id is None:
            body = bytes(self._buffer)
            self._buffer = bytearray()
            # S3 checks the whole body against the archive digest we computed.
            response = self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=body,
                Metadata=self.metadata,
                ContentType="application/gzip",
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=_b64(sha256),
                IfNoneMatch="*",
            )
            return StoredObject(self.bucket, self.key, self.size, response.get("VersionId"), 1)
        if self._buffer:
            self._send_part(bytes(self._buffer))
            self._buffer = bytearray()
        parts = [future.result() for future in self._parts]
        self._shutdown()
        response = self.s3.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": parts},
            IfNoneMatch="*",
        )
        self._upload_id = None
        return StoredObject(self.bucket, self.key, self.size, response.get("VersionId"), len(parts))

    def abort(self) -> None:
        """Drop everything written so far; safe to call at any point, and twice."""
        self._closed = True
        self._buffer = bytearray()
        if self._pool is not None:
            for future in self._parts:
                future.cancel()
            self._shutdown()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
