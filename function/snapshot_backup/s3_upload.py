"""Stream bytes into one S3 object that only exists once the caller commits it.

Bytes are cut into parts as they arrive and uploaded by a small pool of threads
while the caller keeps reading, so the transfer costs one pass and a fixed
amount of memory (``BUFFER_BUDGET_BYTES`` of part buffers, whatever the size).
Nothing is visible in the bucket until ``commit()``: a snapshot smaller than one
part is a single PutObject made at commit, a larger one a multipart upload
completed at commit. Used as a context manager, an upload that is left without
a commit (an exception, a return) is aborted: neither an object nor an open
multipart upload stays behind.

What S3 checks: a single PutObject carries the body's SHA-256; a multipart
upload carries a CRC-32 per part and, at completion, the CRC-32 of the whole
object (``ChecksumType=FULL_OBJECT``: S3 combines the parts' and compares), so
S3 proves the assembled object is the byte stream we read. The SHA-256 of
everything written is computed on a thread of its own, one whole part at a
time, so that the caller's thread (which also reads and verifies the snapshot)
does not pay for it: hashlib lets go of the GIL while it hashes.
"""

from __future__ import annotations

import base64
import hashlib
import queue
import zlib
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from types import TracebackType
from typing import Any

MIN_PART_BYTES = 8 << 20
# All part buffers together (the one being filled and those in flight). Four
# parts of 8 MiB: three uploading while the fourth fills.
BUFFER_BUDGET_BYTES = 32 << 20
MAX_PARTS = 10_000
# Without a size hint, the part size doubles every this many parts, so any
# object stays below S3's 10,000 parts; fewer buffers of the larger size are
# kept, so memory stays at the budget (two parts at least, one filling while one
# uploads, once a part is larger than half the budget).
PARTS_PER_SIZE_STEP = 1000
MIN_BUFFERS = 2
_MIB = 1 << 20

# The archive's SHA-256, recorded on objects stored in one PutObject.
SHA256_METADATA = "sha256"


class UploadError(Exception):
    """S3 did not accept the snapshot."""


class MetadataTooLateError(UploadError):
    """Metadata or a key given after S3 fixed it: the multipart upload has started."""


class AlreadyStoredError(UploadError):
    """An object exists at the key already; S3 refused to replace it (If-None-Match)."""


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _crc32_text(crc: int) -> str:
    return _b64(crc.to_bytes(4, "big"))


# --- CRC-32 of two pieces from the CRCs of each --------------------------------
# Appending ``n`` bytes to a message multiplies its CRC by x^(8n) modulo the
# CRC-32 polynomial (GF(2), bit-reflected); the parts' CRCs, which S3 checks
# one by one, combine into the whole object's without reading a byte again.
_CRC32_POLY = 0xEDB88320


def _multiply_mod_poly(a: int, b: int) -> int:
    """a * b modulo the CRC-32 polynomial, both in reflected bit order."""
    product = 0
    mask = 1 << 31
    while mask:
        if a & mask:
            product ^= b
        mask >>= 1
        b = (b >> 1) ^ _CRC32_POLY if b & 1 else b >> 1
    return product


def _powers_of_x() -> list[int]:
    """x^(2^k) modulo the polynomial, k = 0..63: the squares that build any x^n."""
    powers = [1 << 30]  # x^1, reflected
    for _ in range(63):
        powers.append(_multiply_mod_poly(powers[-1], powers[-1]))
    return powers


_X_TO_2K = _powers_of_x()


def crc32_combine(first: int, second: int, second_length: int) -> int:
    """The CRC-32 of A + B from crc32(A), crc32(B) and len(B)."""
    shift = 1 << 31  # x^0
    bits, k = second_length * 8, 0
    while bits:
        if bits & 1:
            shift = _multiply_mod_poly(_X_TO_2K[k], shift)
        bits >>= 1
        k += 1
    return _multiply_mod_poly(shift, first) ^ second


def accepts(s3: Any, operation: str, member: str) -> bool:
    """Whether this client's botocore knows ``member`` of ``operation`` (a fake: yes)."""
    model = getattr(getattr(s3, "meta", None), "service_model", None)
    if model is None:
        return True
    return member in model.operation_model(operation).input_shape.members


def part_bytes_for(size_hint: int | None) -> int:
    """The part size for an object of at most ``size_hint`` bytes: 8 MiB, or what 10,000 need."""
    if not size_hint:
        return MIN_PART_BYTES
    needed = -(-size_hint // MAX_PARTS)
    return max(MIN_PART_BYTES, -(-needed // _MIB) * _MIB)


@dataclass
class StoredObject:
    bucket: str
    key: str
    size: int
    version_id: str | None
    parts: int
    sha256: str
    crc32: str  # of the whole object, base64, as S3 reports it


@dataclass(frozen=True)
class _Part:
    number: int
    etag: str
    crc32: int
    size: int

    def listed(self) -> dict[str, Any]:
        return {
            "PartNumber": self.number,
            "ETag": self.etag,
            "ChecksumCRC32": _crc32_text(self.crc32),
        }


class StreamingUpload:
    """One S3 object written by ``write()`` calls and published by ``commit()``.

    The key and metadata may be given late, with ``set_key`` and
    ``add_metadata``, until the first part is sent (multipart) or until
    ``commit()`` (single PutObject): S3 fixes both when the upload starts, and a
    later change raises ``MetadataTooLateError`` rather than vanish. The backup
    names the object after ``meta.json``, which Consul writes first.

    ``plan_for(size_hint)`` (an upper bound of the object's size, known from
    ``meta.json`` before the first part) picks one part size for the whole
    object; without it the size doubles every 1,000 parts. Either way at most
    ``BUFFER_BUDGET_BYTES`` of buffers exist (two parts at least): the reader
    fills one while the others upload, and waits for a free one when all are
    in flight, so the reader slows to S3's pace instead of growing.
    """

    def __init__(
        self,
        s3: Any,
        bucket: str,
        key: str | None = None,
        metadata: dict[str, str] | None = None,
        part_bytes: int = MIN_PART_BYTES,
        budget_bytes: int = BUFFER_BUDGET_BYTES,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self._metadata = dict(metadata or {})
        self.part_bytes = part_bytes
        self.budget_bytes = budget_bytes
        self._grows = True
        self.size = 0
        self._buffer: bytearray | None = None
        self._filled = 0
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._buffers = 0  # of the current part size, allocated so far
        self._upload_id: str | None = None
        self._parts: list[Future[_Part]] = []
        self._checked = 0  # parts before this one finished and succeeded
        self._pool: ThreadPoolExecutor | None = None
        self._digest = hashlib.sha256()
        # One thread, so parts are hashed in the order they were written.
        self._hasher: ThreadPoolExecutor | None = None
        self._closed = False
        self._committed = False
        self._full_object = False

    # --- naming it before S3 does --------------------------------------------

    @property
    def started(self) -> bool:
        """Whether S3 has fixed the key and metadata (the multipart upload began)."""
        return self._upload_id is not None or self._closed

    def _refuse_if_started(self, what: str) -> None:
        if self.started:
            raise MetadataTooLateError(f"{what} came after the upload started; S3 fixed it then")

    def set_key(self, key: str) -> None:
        self._refuse_if_started(f"the key {key!r}")
        self.key = key

    def add_metadata(self, items: dict[str, str]) -> None:
        """Add to the object's metadata while S3 can still take it."""
        self._refuse_if_started(f"metadata {sorted(items)}")
        self._metadata.update(items)

    def plan_for(self, size_hint: int) -> None:
        """One part size for an object of at most ``size_hint`` bytes (before the first part)."""
        self._refuse_if_started("a size hint")
        part_bytes = max(part_bytes_for(size_hint), self._filled + 1)
        self.part_bytes, self._grows = part_bytes, False
        if self._buffer is not None and len(self._buffer) != part_bytes:
            # The first bytes are in a buffer of the old size: move them over once.
            resized = bytearray(part_bytes)
            resized[: self._filled] = memoryview(self._buffer)[: self._filled]
            self._buffer = resized

    # --- writing ------------------------------------------------------------

    def _max_buffers(self, part_bytes: int) -> int:
        return max(MIN_BUFFERS, self.budget_bytes // part_bytes)

    def _current_part_bytes(self) -> int:
        if not self._grows:
            return self.part_bytes
        return self.part_bytes << (len(self._parts) // PARTS_PER_SIZE_STEP)

    def write(self, data: bytes) -> None:
        if self._closed:
            raise UploadError("write after the upload was closed")
        self.size += len(data)
        view = memoryview(data)
        while view:
            if self._buffer is None:
                self._buffer = self._next_buffer()
            room = len(self._buffer) - self._filled
            taken = view[:room]
            self._buffer[self._filled : self._filled + len(taken)] = taken
            self._filled += len(taken)
            view = view[len(taken) :]
            # Parts of exactly the part size, so that anyone who knows it can
            # recompute the part checksums.
            if self._filled == len(self._buffer):
                self._send_part(self._buffer)
                self._buffer, self._filled = None, 0

    def _next_buffer(self) -> bytearray:
        wanted = self._current_part_bytes()
        while True:
            if self._buffers < self._max_buffers(wanted):
                self._buffers += 1
                return bytearray(wanted)
            # Every buffer is in flight: wait for a part to finish. Memory
            # stays at the budget and the reader slows to S3's pace.
            buffer = self._free.get()
            if len(buffer) == wanted:
                return buffer
            self._buffers -= 1  # of a smaller part size: let it go

    def _send_part(self, body: bytearray) -> None:
        if self._upload_id is None:
            self._start_multipart()
        assert self._pool is not None and self._hasher is not None
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
        hashed = self._hasher.submit(self._digest.update, body)
        self._parts.append(self._pool.submit(self._upload_part, number, body, hashed))

    def _start_multipart(self) -> None:
        if self.key is None:
            raise MetadataTooLateError(
                f"the first {self._current_part_bytes()} bytes came before the object was named"
            )
        # The Lambda runtime's boto3 is the one the region ships: full-object
        # checksums (botocore 1.36) are asked for where it knows them; the SHA-256
        # in the manifest is the end-to-end check either way.
        self._full_object = accepts(self.s3, "CompleteMultipartUpload", "MpuObjectSize")
        full = {"ChecksumType": "FULL_OBJECT"} if self._full_object else {}
        response = self.s3.create_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            Metadata=self._metadata,
            ContentType="application/gzip",
            ChecksumAlgorithm="CRC32",
            **full,
        )
        self._upload_id = response["UploadId"]
        in_flight = self._max_buffers(self._current_part_bytes()) - 1
        self._pool = ThreadPoolExecutor(max_workers=max(1, in_flight), thread_name_prefix="s3-part")
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-digest")

    def _upload_part(self, number: int, body: bytearray, hashed: Future[None]) -> _Part:
        try:
            crc = zlib.crc32(body)
            response = self.s3.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
                ChecksumAlgorithm="CRC32",
                ChecksumCRC32=_crc32_text(crc),
            )
        finally:
            # Reused only once both S3 and the digest are done with it.
            wait([hashed])
            self._free.put(body)
        hashed.result()  # a part whose bytes missed the digest fails the upload
        return _Part(number, response["ETag"], crc, len(body))

    # --- publishing, or leaving nothing -------------------------------------

    def commit(self) -> StoredObject:
        """Publish the object, with the SHA-256 of every byte written.

        Both paths refuse to replace an existing object (If-None-Match), so a
        run can never overwrite a stored snapshot: S3 answers 412, raised as
        ``AlreadyStoredError``.
        """
        if self.key is None:
            raise UploadError("the object was never named: no key to store it under")
        try:
            stored = self._put_whole() if self._upload_id is None else self._complete()
        except self.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                raise AlreadyStoredError(f"s3://{self.bucket}/{self.key} exists already") from exc
            raise
        self._committed = True
        return stored

    def _put_whole(self) -> StoredObject:
        self._closed = True
        assert self.key is not None
        body = bytes(memoryview(self._buffer or b"")[: self._filled])
        self._buffer = None
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
        crc = _crc32_text(zlib.crc32(body))
        return StoredObject(
            self.bucket, self.key, self.size, response.get("VersionId"), 1, sha256.hex(), crc
        )

    def _complete(self) -> StoredObject:
        self._closed = True
        assert self.key is not None
        if self._filled:
            assert self._buffer is not None
            self._send_part(self._buffer[: self._filled])
        self._buffer = None
        parts = [future.result() for future in self._parts]
        self._shutdown()
        whole = 0
        for part in parts:
            whole = crc32_combine(whole, part.crc32, part.size)
        full: dict[str, Any] = {}
        if self._full_object:
            full = {
                "ChecksumCRC32": _crc32_text(whole),
                "ChecksumType": "FULL_OBJECT",
                "MpuObjectSize": self.size,
            }
        response = self.s3.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": [part.listed() for part in parts]},
            IfNoneMatch="*",
            **full,
        )
        self._upload_id = None
        return StoredObject(
            self.bucket,
            self.key,
            self.size,
            response.get("VersionId"),
            len(parts),
            self._digest.hexdigest(),
            _crc32_text(whole),
        )

    def abort(self) -> None:
        """Drop everything written so far; safe to call at any point, and twice."""
        self._closed = True
        self._buffer = None
        self._filled = 0
        if self._pool is not None:
            for future in self._parts:
                future.cancel()
        self._shutdown()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)

    def __enter__(self) -> StreamingUpload:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        failure: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Whatever left the block without a commit leaves nothing in the bucket."""
        if self._committed:
            return
        try:
            self.abort()
        except Exception as cleanup:
            if failure is None:
                raise
            failure.add_note(
                f"aborting the upload failed too ({cleanup}); "
                "the bucket's lifecycle rule removes incomplete uploads after a day"
            )

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._hasher is not None:
            self._hasher.shutdown(wait=True)
            self._hasher = None
