"""The streaming S3 upload, on its own, against moto: one object, whole or nothing."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from snapshot_backup.s3_upload import MIN_PART_BYTES, MetadataTooLateError, StreamingUpload
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
    with pytest.raises(Exception, match="PreconditionFailed"):
        upload.commit()
    assert s3.get_object(Bucket=bucket, Key="e.snap")["Body"].read() == b"earlier"
