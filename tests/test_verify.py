"""The archive verifier against real-format archives, good and defective."""

from __future__ import annotations

import gzip
import hashlib
import io
import json

import pytest

from devservers.archive_writer import ArchiveDefects, RaftState, archive_bytes
from snapshot_backup.verify import (
    ArchiveError,
    SnapshotMeta,
    TeeReader,
    parse_meta,
    verify_archive,
)
from tests.conftest import shared_dir

STATE = RaftState(index=4711, term=5, size=300_000, seed=7)


def verify_bytes(data: bytes):
    return verify_archive(io.BytesIO(data))


def test_accepts_a_whole_archive_and_reports_its_metadata():
    report = verify_bytes(archive_bytes(STATE))
    assert (report.meta.index, report.meta.term, report.meta.size) == (4711, 5, 300_000)
    assert report.state_bytes == 300_000
    assert report.member_sha256["state.bin"] == STATE.sha256()


@pytest.mark.parametrize(
    "order",
    [
        ("SHA256SUMS", "meta.json", "state.bin"),
        ("state.bin", "SHA256SUMS", "meta.json"),
    ],
)
def test_members_may_come_in_any_order(order):
    report = verify_bytes(archive_bytes(STATE, ArchiveDefects(order=order)))
    assert report.meta.index == 4711


def test_the_real_meta_json_fixture_parses():
    shared = shared_dir()
    if shared is None:
        pytest.skip("shared/fixtures is not beside this checkout")
    raw = (shared / "fixtures" / "consul-meta.json").read_bytes()
    doc = json.loads(raw)
    assert parse_meta(raw) == SnapshotMeta(
        index=doc["Index"], term=doc["Term"], id=doc["ID"], size=doc["Size"], version=1
    )


@pytest.mark.parametrize(
    ("defects", "message"),
    [
        (ArchiveDefects(wrong_hash_for="state.bin"), 'hash check failed for "state.bin"'),
        (ArchiveDefects(wrong_hash_for="meta.json"), 'hash check failed for "meta.json"'),
        (ArchiveDefects(omit_member="state.bin"), 'file missing for "state.bin"'),
        (ArchiveDefects(omit_member="meta.json"), 'file missing for "meta.json"'),
        (ArchiveDefects(omit_member="SHA256SUMS"), 'file missing for "SHA256SUMS"'),
        (ArchiveDefects(omit_hash_for="state.bin"), 'list missing hash for "state.bin"'),
        (ArchiveDefects(extra_member="notes.txt"), 'unexpected file "notes.txt" in snapshot'),
    ],
)
def test_refuses_what_consul_refuses(defects, message):
    with pytest.raises(ArchiveError) as raised:
        verify_bytes(archive_bytes(STATE, defects))
    assert message in str(raised.value)


@pytest.mark.parametrize("keep", [10, 1000, 150_000, -9, -1])
def test_refuses_a_truncated_archive(keep):
    # -9 and -1 cut only into the gzip trailer: the tar inside is already whole,
    # which is the case older Consul versions let through.
    data = archive_bytes(STATE)
    with pytest.raises(ArchiveError):
        verify_bytes(data[:keep])


def test_refuses_consuls_mid_stream_error_text_after_a_cut():
    data = archive_bytes(STATE)[:50_000] + b"failed to stream snapshot: i/o timeout"
    with pytest.raises(ArchiveError):
        verify_bytes(data)


def test_refuses_text_appended_to_a_whole_archive():
    data = archive_bytes(STATE) + b"failed to stream snapshot: EOF"
    with pytest.raises(ArchiveError, match="gzip"):
        verify_bytes(data)


def test_refuses_a_body_that_is_not_gzip():
    with pytest.raises(ArchiveError, match="gzip: invalid header"):
        verify_bytes(b"Permission denied" * 10)


def test_refuses_an_empty_body():
    with pytest.raises(ArchiveError):
        verify_bytes(b"")


def test_refuses_a_flipped_bit_in_the_middle():
    data = bytearray(archive_bytes(STATE))
    data[len(data) // 2] ^= 0x01
    with pytest.raises(ArchiveError):
        verify_bytes(bytes(data))


def test_refuses_meta_size_that_disagrees_with_state_bin():
    # A well-hashed archive whose meta.json lies about state.bin's length.
    good = gzip.decompress(archive_bytes(RaftState(index=3, term=1, data=b"abc")))
    meta_start = good.index(b'{"Version"')
    meta_end = good.index(b"\n", meta_start)
    doc = json.loads(good[meta_start:meta_end])
    doc["Size"] = 4
    forged = json.dumps(doc, separators=(",", ":")).encode()
    assert len(forged) == meta_end - meta_start  # same length keeps the tar valid
    tampered = good[:meta_start] + forged + good[meta_end:]
    sums_old = hashlib.sha256(good[meta_start : meta_end + 1]).hexdigest().encode()
    sums_new = hashlib.sha256(forged + b"\n").hexdigest().encode()
    tampered = tampered.replace(sums_old, sums_new)
    with pytest.raises(ArchiveError, match=r"meta\.json says state\.bin has 4 bytes but it has 3"):
        verify_bytes(gzip.compress(tampered))


def test_tee_reader_hands_on_every_byte_it_reads():
    data = archive_bytes(STATE)
    seen = bytearray()
    verify_archive(TeeReader(io.BytesIO(data), seen.extend))
    assert bytes(seen) == data
