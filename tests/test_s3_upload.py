"""The streaming S3 upload, on its own, against moto: one object, whole or nothing."""

from __future__ import annotations

import base64
import hashlib
import os
import weakref
import zlib

import botocore.exceptions
import pytest

from snapshot_backup import s3_upload
from snapshot_backup.s3_upload import (
    MAX_PARTS,
    MIN_PART_BYTES,
    AlreadyStoredError,
    MetadataTooLateError,
    StreamingUpload,
    crc32_combine,
    part_bytes_for,
)
from tests.conftest import assert_nothing_stored


def write_in_pieces(upload: StreamingUpload, data: bytes, piece: int = 100_003) -> None:
    for start in range(0, len(data), piece):
        upload.write(data[start : start + piece])


def test_a_small_object_is_one_put_with_its_sha256_checked_and_recorded(s3, bucket):
    data = os.urandom(300_000)
    upload = StreamingUpload(s3, bucket, "a.snap", metadata={"cluster": "prod"})
    write_in_pieces(upload, data)
    stored = upload.commit()
    digest = hashlib.sha256(data)
    assert (stored.parts, stored.size, stored.sha256) == (1, len(data), digest.hexdigest())
    head = s3.head_object(Bucket=bucket, Key="a.snap", ChecksumMode="ENABLED")
    assert head["Metadata"] == {"cluster": "prod", "sha256": digest.hexdigest()}
    assert head["ChecksumSHA256"] == base64.b64encode(digest.digest()).decode()


def test_a_large_object_goes_in_parts_of_exactly_the_part_size(s3, bucket):
    data = os.urandom(2 * MIN_PART_BYTES + 12345)
    upload = StreamingUpload(s3, bucket, "b.snap")
    write_in_pieces(upload, data, piece=1 << 20)
    stored = upload.commit()
    assert stored.parts == 3 and stored.sha256 == hashlib.sha256(data).hexdigest()
    assert s3.get_object(Bucket=bucket, Key="b.snap")["Body"].read() == data
    head = s3.head_object(Bucket=bucket, Key="b.snap")
    assert head["ETag"].strip('"').endswith("-3")
    sizes = [
        s3.head_object(Bucket=bucket, Key="b.snap", PartNumber=n)["ContentLength"]
        for n in (1, 2, 3)
    ]
    assert sizes == [MIN_PART_BYTES, MIN_PART_BYTES, 12345]


@pytest.mark.parametrize("size", [1000, MIN_PART_BYTES + 1])
def test_abort_leaves_nothing_behind(s3, bucket, size):
    upload = StreamingUpload(s3, bucket, "c.snap")
    write_in_pieces(upload, os.urandom(size), piece=1 << 20)
    upload.abort()
    upload.abort()  # twice is harmless
    assert_nothing_stored(s3, bucket)


def test_metadata_may_be_added_until_s3_fixes_it(s3, bucket):
    upload = StreamingUpload(s3, bucket, "d.snap", metadata={"cluster": "prod"})
    upload.add_metadata({"raft-index": "7"})
    upload.write(os.urandom(MIN_PART_BYTES + 1))  # the multipart upload starts here
    with pytest.raises(MetadataTooLateError, match=r"\['raft-term'\]"):
        upload.add_metadata({"raft-term": "2"})
    upload.commit()
    head = s3.head_object(Bucket=bucket, Key="d.snap")
    assert head["Metadata"] == {"cluster": "prod", "raft-index": "7"}


def test_an_existing_object_is_never_replaced(s3, bucket):
    s3.put_object(Bucket=bucket, Key="e.snap", Body=b"earlier")
    upload = StreamingUpload(s3, bucket, "e.snap")
    upload.write(b"later")
    with pytest.raises(AlreadyStoredError):
        upload.commit()
    assert s3.get_object(Bucket=bucket, Key="e.snap")["Body"].read() == b"earlier"


def test_an_existing_object_is_reported_as_already_stored(s3, bucket):
    s3.put_object(Bucket=bucket, Key="f.snap", Body=b"earlier")
    with StreamingUpload(s3, bucket, "f.snap") as upload:
        upload.write(os.urandom(MIN_PART_BYTES + 10))
        with pytest.raises(AlreadyStoredError, match=r"f\.snap exists already"):
            upload.commit()
    assert s3.get_object(Bucket=bucket, Key="f.snap")["Body"].read() == b"earlier"
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_s3_is_given_the_whole_objects_crc32_to_check(s3, bucket):
    sent: list[dict] = []
    s3.meta.events.register(
        "before-parameter-build.s3.CompleteMultipartUpload",
        lambda params, **_: sent.append(dict(params)),
    )
    data = os.urandom(2 * MIN_PART_BYTES + 777)
    upload = StreamingUpload(s3, bucket, "g.snap")
    write_in_pieces(upload, data, piece=1 << 20)
    stored = upload.commit()
    whole = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert (sent[0]["ChecksumType"], sent[0]["ChecksumCRC32"]) == ("FULL_OBJECT", whole)
    assert sent[0]["MpuObjectSize"] == len(data) and stored.crc32 == whole
    head = s3.head_object(Bucket=bucket, Key="g.snap", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == whole


def test_crc32_combines_as_if_computed_over_the_whole():
    pieces = [os.urandom(n) for n in (0, 1, 4095, 70_000, MIN_PART_BYTES)]
    combined = 0
    for piece in pieces:
        combined = crc32_combine(combined, zlib.crc32(piece), len(piece))
    assert combined == zlib.crc32(b"".join(pieces))


def test_the_object_may_be_named_until_its_first_part_is_sent(s3, bucket):
    upload = StreamingUpload(s3, bucket)
    upload.write(os.urandom(1000))
    upload.set_key("h.snap")
    upload.commit()
    assert s3.head_object(Bucket=bucket, Key="h.snap")["ContentLength"] == 1000

    unnamed = StreamingUpload(s3, bucket)
    with unnamed, pytest.raises(MetadataTooLateError, match="before the object was named"):
        unnamed.write(os.urandom(MIN_PART_BYTES + 1))
    named_late = StreamingUpload(s3, bucket, "i.snap")
    with named_late:
        named_late.write(os.urandom(MIN_PART_BYTES + 1))
        with pytest.raises(MetadataTooLateError):
            named_late.set_key("j.snap")
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


@pytest.mark.parametrize(
    ("hint", "part"),
    [
        (None, MIN_PART_BYTES),
        (1 << 30, MIN_PART_BYTES),
        (200 << 30, 21 << 20),
        (5 << 40, 525 << 20),
    ],
)
def test_one_part_size_fits_the_whole_object_in_10000_parts(hint, part):
    assert part_bytes_for(hint) == part
    if hint:
        assert -(-hint // part) <= MAX_PARTS


def test_a_size_hint_after_the_first_bytes_keeps_them(s3, bucket):
    data = os.urandom(MIN_PART_BYTES + 5000)
    upload = StreamingUpload(s3, bucket, "k.snap", part_bytes=5 << 20)
    upload.write(data[:3000])
    upload.plan_for(1 << 30)  # 8 MiB parts, as meta.json says
    upload.write(data[3000:])
    assert upload.commit().parts == 2
    assert s3.get_object(Bucket=bucket, Key="k.snap")["Body"].read() == data


class CountingS3:
    """Just enough of an S3 client to push thousands of tiny parts through the upload.

    At every part it notes how many bytes of part buffers are alive.
    """

    class exceptions:  # noqa: N801 - botocore's shape
        ClientError = botocore.exceptions.ClientError

    def __init__(self, alive: list[weakref.ref[bytearray]]) -> None:
        self.part_sizes: list[int] = []
        self.alive = alive
        self.peak_buffer_bytes = 0

    def create_multipart_upload(self, **_: object) -> dict:
        return {"UploadId": "u"}

    def upload_part(self, Body: bytearray, PartNumber: int, **_: object) -> dict:  # noqa: N803
        self.part_sizes.append(len(Body))
        alive = sum(len(buffer) for ref in self.alive if (buffer := ref()) is not None)
        self.peak_buffer_bytes = max(self.peak_buffer_bytes, alive)
        return {"ETag": f'"{PartNumber}"'}

    def complete_multipart_upload(self, **_: object) -> dict:
        return {"VersionId": "v"}


def test_buffers_stay_within_the_budget_whatever_the_part_count(monkeypatch):
    # Scaled down: 1 KiB parts, a 4 KiB budget. The part size doubles every 1,000
    # parts (1, 2, 4, 8 KiB); the buffers alive at once must never pass the
    # budget, or two parts once a part is larger than half of it.
    alive: list[weakref.ref[bytearray]] = []

    class TrackedBuffer(bytearray):
        def __init__(self, size: int) -> None:
            super().__init__(size)
            alive.append(weakref.ref(self))

    monkeypatch.setattr(s3_upload, "bytearray", TrackedBuffer, raising=False)
    s3 = CountingS3(alive)
    upload = StreamingUpload(s3, "bucket", "key", part_bytes=1024, budget_bytes=4096)
    piece = os.urandom(1000)
    for _ in range(12_000):
        upload.write(piece)
    stored = upload.commit()
    largest = max(s3.part_sizes)
    assert largest == 8192 and stored.parts == len(s3.part_sizes) < MAX_PARTS
    assert sum(s3.part_sizes) == 12_000_000
    assert 0 < s3.peak_buffer_bytes <= max(4096, 2 * largest)


def test_an_older_botocore_gets_part_checksums_and_the_manifests_sha256_only(
    s3, bucket, monkeypatch
):
    # The Lambda runtime's boto3 is the region's: without full-object checksums
    # (botocore before 1.36) the upload still stores, with per-part CRC-32s.
    monkeypatch.setattr(s3_upload, "accepts", lambda *_: False)
    sent: list[dict] = []
    s3.meta.events.register(
        "before-parameter-build.s3.CompleteMultipartUpload",
        lambda params, **_: sent.append(dict(params)),
    )
    data = os.urandom(MIN_PART_BYTES + 99)
    stored = StreamingUpload(s3, bucket, "old.snap")
    write_in_pieces(stored, data, piece=1 << 20)
    result = stored.commit()
    assert "ChecksumType" not in sent[0] and sent[0]["IfNoneMatch"] == "*"
    assert result.crc32 == base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert s3.get_object(Bucket=bucket, Key="old.snap")["Body"].read() == data


def test_the_client_says_which_parameters_it_knows(s3):
    assert s3_upload.accepts(s3, "CompleteMultipartUpload", "IfNoneMatch")
    assert not s3_upload.accepts(s3, "CompleteMultipartUpload", "NoSuchParameter")
