"""Stream bytes into one S3 object that only exists once the caller commits it.

Bytes are cut into parts as they arrive and uploaded by a small pool of threads
while the caller keeps reading, so the transfer costs one pass and a bounded
amount of memory (a few parts). Nothing is visible in the bucket until
``commit()``: a snapshot smaller than one part is a single PutObject made at
commit, a larger one a multipart upload completed at commit. ``abort()`` leaves
neither an object nor an open multipart upload behind.

The SHA-256 of everything written is computed on a thread of its own, one whole
part at a time, so that the caller's thread (which also reads and verifies the
snapshot) does not pay for it: hashlib lets go of the GIL while it hashes.
"""

from __future__ import annotations

import base64
import hashlib
import queue
import zlib
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

MIN_PART_BYTES = 8 << 20
# S3 allows 10,000 parts; growing the part size every 1,000 parts keeps any
# snapshot below that limit without making small snapshots use big buffers.
PARTS_PER_SIZE_STEP = 1000
MAX_PARTS = 10_000
DEFAULT_PARTS_IN_FLIGHT = 3


# The archive's SHA-256, recorded on objects stored in one PutObject; whoever reads
# a snapshot back checks against it.
SHA256_METADATA = "sha256"


class UploadError(Exception):
    """S3 did not accept the snapshot."""


class MetadataTooLateError(UploadError):
    """Metadata given after S3 fixed it: the multipart upload has started."""


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _crc32(body: bytes | bytearray) -> str:
    # S3 checks every part against it. CRC-32 rather than SHA-256: it guards
    # against corruption in transit just as well, at less than half the CPU
    # (the archive's own SHA-256 is computed once, over the whole object).
    return _b64(zlib.crc32(body).to_bytes(4, "big"))


@dataclass
class StoredObject:
    bucket: str
    key: str
    size: int
    version_id: str | None
    parts: int
    sha256: str


class StreamingUpload:
    """One S3 object written by ``write()`` calls and published by ``commit()``.

    Metadata is given at construction and may be added with ``add_metadata``
    until the first part is sent (multipart) or until ``commit()`` (single
    PutObject): S3 fixes it when the upload starts, and a later addition raises
    ``MetadataTooLateError`` rather than vanish.
    A single PutObject also records the body's SHA-256 as metadata ``sha256``;
    a multipart upload cannot, as its digest is known only after the last part.

    Parts are cut into a few reusable buffers: the reader fills one while the
    others are being uploaded, and waits for a free one when all are in flight,
    so memory stays at ``(parts_in_flight + 1) * part_bytes`` whatever the size.
    """

    def __init__(
        self,
        s3: Any,
        bucket: str,
        key: str,
        metadata: dict[str, str] | None = None,
        part_bytes: int = MIN_PART_BYTES,
        parts_in_flight: int = DEFAULT_PARTS_IN_FLIGHT,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self._metadata = dict(metadata or {})
        self.part_bytes = part_bytes
        self.parts_in_flight = parts_in_flight
        self.size = 0
        self._buffer = bytearray(part_bytes)
        self._filled = 0
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._upload_id: str | None = None
        self._parts: list[Future[dict[str, Any]]] = []
        self._checked = 0  # parts before this one finished and succeeded
        self._pool: ThreadPoolExecutor | None = None
        self._digest = hashlib.sha256()
        # One thread, so parts are hashed in the order they were written.
        self._hasher: ThreadPoolExecutor | None = None
        self._closed = False

    @property
    def metadata(self) -> dict[str, str]:
        """The object's metadata as it stands (a copy)."""
        return dict(self._metadata)

    def add_metadata(self, items: dict[str, str]) -> None:
        """Add to the object's metadata while S3 can still take it."""
        if self._upload_id is not None or self._closed:
            raise MetadataTooLateError(
                f"metadata {sorted(items)} came after the upload started; S3 fixed it then"
            )
        self._metadata.update(items)

    def _current_part_bytes(self) -> int:
        return self.part_bytes << (len(self._parts) // PARTS_PER_SIZE_STEP)

    def write(self, data: bytes) -> None:
        if self._closed:
            raise UploadError("write after the upload was closed")
        self.size += len(data)
        view = memoryview(data)
        while view:
            room = len(self._buffer) - self._filled
            taken = view[:room]
            self._buffer[self._filled : self._filled + len(taken)] = taken
            self._filled += len(taken)
            view = view[len(taken) :]
            # Parts of exactly the part size, so that anyone who knows it can
            # recompute the composite checksum.
            if self._filled == len(self._buffer):
                self._send_part(self._buffer)
                self._buffer = self._next_buffer()
                self._filled = 0

    def _next_buffer(self) -> bytearray:
        wanted = self._current_part_bytes()
        # Once every buffer is in flight, wait for a part to finish: memory
        # stays bounded and the reader slows to S3's pace.
        in_flight = len(self._parts) > self.parts_in_flight
        buffer = self._free.get() if in_flight else bytearray(wanted)
        return buffer if len(buffer) == wanted else bytearray(wanted)

    def _send_part(self, body: bytearray) -> None:
        if self._upload_id is None:
            self._start_multipart()
        assert self._pool is not None
        if len(self._parts) >= MAX_PARTS:
            raise UploadError(f"snapshot needs more than {MAX_PARTS} parts")
        # Surface a failed part now, not at commit; each finished part is looked
        # at once, so this stays cheap at thousands of parts.
        while self._checked < len(self._parts) and self._parts[self._checked].done():
            failure = self._parts[self._checked].exception()
            if failure is not None:
                raise UploadError(f"uploading part {self._checked + 1} failed: {failure}")
            self._checked += 1
        number = len(self._parts) + 1
        assert self._hasher is not None
        hashed = self._hasher.submit(self._digest.update, body)
        self._parts.append(self._pool.submit(self._upload_part, number, body, hashed))

    def _start_multipart(self) -> None:
        response = self.s3.create_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            Metadata=self._metadata,
            ContentType="application/gzip",
            ChecksumAlgorithm="CRC32",
        )
        self._upload_id = response["UploadId"]
        self._pool = ThreadPoolExecutor(
            max_workers=self.parts_in_flight, thread_name_prefix="s3-part"
        )
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-digest")

    def _upload_part(self, number: int, body: bytearray, hashed: Future[None]) -> dict[str, Any]:
        try:
            checksum = _crc32(body)
            response = self.s3.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
                ChecksumAlgorithm="CRC32",
                ChecksumCRC32=checksum,
            )
        finally:
            # Reused only once both S3 and the digest are done with it.
            wait([hashed])
            self._free.put(body)
        hashed.result()  # a part whose bytes missed the digest fails the upload
        return {"PartNumber": number, "ETag": response["ETag"], "ChecksumCRC32": checksum}

    def commit(self) -> StoredObject:
        """Publish the object, with the SHA-256 of every byte written.

        Both paths refuse to replace an existing object (If-None-Match), so a
        second run can never overwrite a stored snapshot.
        """
        self._closed = True
        if self._upload_id is None:
            body = bytes(memoryview(self._buffer)[: self._filled])
            self._buffer = bytearray()
            self._digest.update(body)
            sha256 = self._digest.digest()
            # S3 checks the whole body against the digest.
            response = self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=body,
                Metadata={**self._metadata, SHA256_METADATA: sha256.hex()},
                ContentType="application/gzip",
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=_b64(sha256),
                IfNoneMatch="*",
            )
            return StoredObject(
                self.bucket, self.key, self.size, response.get("VersionId"), 1, sha256.hex()
            )
        if self._filled:
            self._send_part(self._buffer[: self._filled])
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
        return StoredObject(
            self.bucket,
            self.key,
            self.size,
            response.get("VersionId"),
            len(parts),
            self._digest.hexdigest(),
        )

    def abort(self) -> None:
        """Drop everything written so far; safe to call at any point, and twice."""
        self._closed = True
        self._buffer = bytearray()
        self._filled = 0
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
        if self._hasher is not None:
            self._hasher.shutdown(wait=True)
            self._hasher = None
