"""The archive verifier judges as Consul's reader does: one table of archives, one rule a row.

Each refused row names the rule and carries Consul's own error text; each
stricter row is an archive Consul would restore but its writer never produces;
each accepted row is an archive laid out as Consul writes it, or framed in a
way Consul's reader also takes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import pytest

from snapshot_backup.snapshot_meta import SnapshotMeta
from snapshot_backup.verify import (
    ArchiveError,
    StricterThanConsulError,
    TeeReader,
    verify_archive,
)
from testbed.archive_writer import ArchiveDefects, RaftState, archive_bytes
from tests.archives import (
    BLOCK,
    CONSUL_META,
    END,
    Snapshot,
    consul_state_of_length,
    entry,
    gzip_members,
    header,
    meta_for,
    sums_line,
    with_checksum,
)
from tests.test_gunzip import LONGEST_NAME, TOO_LONG_NAME, gzip_member

STATE = RaftState(index=4711, term=5, size=300_000, seed=7)
S = Snapshot()
STATE_HEX = hashlib.sha256(S.state).hexdigest()


def verify_bytes(data: bytes):
    return verify_archive(io.BytesIO(data))


def meta_text(old: bytes, new: bytes) -> bytes:
    """The default meta.json with one spelling replaced, to write what json.dumps cannot."""
    meta = meta_for(S.state)
    assert old in meta
    return meta.replace(old, new, 1)


def with_meta(meta: bytes) -> bytes:
    return S.but(meta=meta).archive()


def sums_joined(separator: bytes) -> bytes:
    """The two right lines, joined and ended by ``separator`` instead of a newline."""
    lines = [sums_line(S.meta_bytes, "meta.json"), sums_line(S.state, "state.bin")]
    return b"".join(line.replace(b"\n", separator) for line in lines)


def stream_mode_tarfile() -> bytes:
    """The three members written by Python's tarfile in stream mode, as the old double did."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for name in S.order:
            data = S.member(name)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def bad_size_field() -> bytes:
    block = bytearray(header("notes.txt", 0))
    block[124:136] = b"0000000000x\x00"
    return with_checksum(bytes(block))


def bad_checksum() -> bytes:
    block = bytearray(header("notes.txt", 0))
    block[0] ^= 0x20
    return bytes(block)


def global_pax_header() -> bytes:
    return tarfile.TarInfo.create_pax_global_header({"comment": "made by a tool"})


def gzip_with_reserved_flag() -> bytes:
    data = bytearray(S.archive())
    data[3] |= 0x20
    return bytes(data)


def twice_hashed_state() -> bytes:
    # state.bin in two members; SHA256SUMS hashes what Consul hashes: both, concatenated.
    first, second = S.state[:100], S.state[100:]
    meta = meta_for(S.state)
    sums = sums_line(meta, "meta.json") + sums_line(S.state, "state.bin")
    raw = (
        entry("meta.json", meta)
        + entry("state.bin", first)
        + entry("state.bin", second)
        + entry("SHA256SUMS", sums)
        + END
    )
    return gzip.compress(raw)


def state_as(typeflag: bytes | None) -> bytes:
    """An archive whose state.bin is absent (None) or of another tar type, hashed as empty."""
    meta = meta_for(b"")
    sums = sums_line(meta, "meta.json") + sums_line(b"", "state.bin")
    state = b"" if typeflag is None else entry("state.bin", b"", typeflag)
    raw = entry("meta.json", meta) + state + entry("SHA256SUMS", sums) + END
    return gzip.compress(raw)


# --- what Consul refuses, in Consul's words ---------------------------------

INTEGRITY = "failed checking integrity of snapshot: "
META = "failed to decode snapshot metadata: "
TYPE = "json: cannot unmarshal "

RAFT = "Raft error when restoring snapshot: "
FSM = "failed to restore snapshot: "

REFUSED: dict[str, tuple[bytes, str]] = {
    # Raft copies state.bin as long as meta.json's Size says, and compares.
    "meta.json Size that disagrees with state.bin": (
        with_meta(meta_for(S.state, Size=len(S.state) + 1)),
        f"{RAFT}failed to write snapshot, size didn't match ({len(S.state)} != {len(S.state) + 1})",
    ),
    "Size -0, which Go's strconv.ParseInt reads as 0": (
        with_meta(meta_text(b'"Size":%d' % len(S.state), b'"Size":-0')),
        f"{RAFT}failed to write snapshot, size didn't match ({len(S.state)} != 0)",
    ),
    # Consul reads an absent state.bin, or a link named so, as empty: its FSM
    # then finds no header to decode.
    "no state.bin, listed with the hash of nothing": (state_as(None), f"{FSM}EOF"),
    "state.bin as a symbolic link": (state_as(tarfile.SYMTYPE), f"{FSM}EOF"),
    # What the FSM's decoding refuses (state_bin's own table has the rest).
    "an empty state.bin": (S.but(state=b"").archive(), f"{FSM}EOF"),
    "a state.bin that is not msgpack": (
        S.but(state=b"\xc1" * 40).archive(),
        f"{FSM}",
    ),
    "a state.bin with a Deregister record": (
        S.but(state=S.state + b"\x01\x80").archive(),
        f"{FSM}Unrecognized msg type 1",
    ),
    "a state.bin cut inside a record": (
        S.but(state=S.state[:-3]).archive(),
        f"{FSM}unexpected EOF",
    ),
    # Nothing may follow the tar's end marker: Consul reads the stream to its end.
    "tar record padding after the end marker (tarfile stream mode, GNU tar)": (
        gzip.compress(stream_mode_tarfile()),
        f"{len(stream_mode_tarfile()) - len(S.tar())} unread uncompressed bytes remain",
    ),
    "garbage after the end marker": (
        S.but(after=b"garbage").archive(),
        "7 unread uncompressed bytes remain",
    ),
    "one more zero block after the end marker": (
        S.but(after=bytes(BLOCK)).archive(),
        "512 unread uncompressed bytes remain",
    ),
    "a member after the end marker": (
        S.but(after=entry("evil.sh", b"echo owned\n")).archive(),
        "1024 unread uncompressed bytes remain",
    ),
    "a second gzip member with content": (
        S.archive() + gzip.compress(b"more"),
        "4 unread uncompressed bytes remain",
    ),
    # Every header block after the last member must be valid.
    "a header with a bad checksum after the last member": (
        S.but(end=bad_checksum() + END).archive(),
        "failed reading snapshot: archive/tar: invalid tar header",
    ),
    "a header with a non-octal size after the last member": (
        S.but(end=bad_size_field() + END).archive(),
        "failed reading snapshot: archive/tar: invalid tar header",
    ),
    "a zero block followed by a non-zero block": (
        S.but(end=bytes(BLOCK) + b"\x01" + bytes(BLOCK - 1)).archive(),
        "failed reading snapshot: archive/tar: invalid tar header",
    ),
    "an end marker cut inside its first block": (
        S.but(end=bytes(256)).archive(),
        "failed reading snapshot: unexpected EOF",
    ),
    "an end marker cut inside its second block": (
        S.but(end=bytes(BLOCK + 100)).archive(),
        "failed reading snapshot: unexpected EOF",
    ),
    # A PAX global header is a member to Consul.
    "a PAX global header": (
        S.but(before=global_pax_header()).archive(),
        'unexpected file "././@PaxHeader" in snapshot',
    ),
    # SHA256SUMS lines end at \n only; \r, \v, \f end the name, \x1c-\x1e do not.
    "SHA256SUMS with CR-only line ends": (
        S.but(sums=sums_joined(b"\r")).archive(),
        f'{INTEGRITY}file missing for "state.bin"',
    ),
    "SHA256SUMS split at a vertical tab": (
        S.but(sums=sums_joined(b"\v")).archive(),
        f'{INTEGRITY}file missing for "state.bin"',
    ),
    "SHA256SUMS split at a form feed": (
        S.but(sums=sums_joined(b"\f")).archive(),
        f'{INTEGRITY}file missing for "state.bin"',
    ),
    **{
        f"SHA256SUMS split at \\x{code:02x}": (
            S.but(sums=sums_joined(bytes([code]))).archive(),
            f'{INTEGRITY}list missing hash for "meta.json\\x{code:02x}{STATE_HEX}"',
        )
        for code in (0x1C, 0x1D, 0x1E)
    },
    "a name listed twice, the second hash wrong": (
        S.but(
            sums=sums_line(S.meta_bytes, "meta.json")
            + sums_line(b"forged", "meta.json")
            + sums_line(S.state, "state.bin")
        ).archive(),
        f'{INTEGRITY}hash check failed for "meta.json"',
    ),
    "a name listed twice, the first hash wrong": (
        S.but(
            sums=sums_line(b"forged", "state.bin")
            + sums_line(S.meta_bytes, "meta.json")
            + sums_line(S.state, "state.bin")
        ).archive(),
        f'{INTEGRITY}hash check failed for "state.bin"',
    ),
    # meta.json decoded into Raft's typed fields.
    'Index as a string "13"': (
        with_meta(meta_for(S.state, Index="13")),
        f"{META}{TYPE}string into Go struct field SnapshotMeta.Index of type uint64",
    ),
    "Index written 13.0": (
        with_meta(meta_text(b'"Index":13', b'"Index":13.0')),
        f"{META}{TYPE}number 13.0 into Go struct field SnapshotMeta.Index of type uint64",
    ),
    "Index written 1.3e1": (
        with_meta(meta_text(b'"Index":13', b'"Index":1.3e1')),
        f"{META}{TYPE}number 1.3e1 into Go struct field SnapshotMeta.Index of type uint64",
    ),
    "Index true": (
        with_meta(meta_for(S.state, Index=True)),
        f"{META}{TYPE}bool into Go struct field SnapshotMeta.Index of type uint64",
    ),
    "Term -1": (
        with_meta(meta_for(S.state, Term=-1)),
        f"{META}{TYPE}number -1 into Go struct field SnapshotMeta.Term of type uint64",
    ),
    "Index 2^64": (
        with_meta(meta_for(S.state, Index=1 << 64)),
        f"{META}{TYPE}number 18446744073709551616 into Go struct field "
        "SnapshotMeta.Index of type uint64",
    ),
    "Size as a string": (
        with_meta(meta_for(S.state, Size=str(len(S.state)))),
        f"{META}{TYPE}string into Go struct field SnapshotMeta.Size of type int64",
    ),
    "ID as a number": (
        with_meta(meta_for(S.state, ID=7)),
        f"{META}{TYPE}number into Go struct field SnapshotMeta.ID of type string",
    ),
    "Peers not base64": (
        with_meta(meta_for(S.state, Peers="not base64!")),
        f"{META}illegal base64 data at input byte 3",
    ),
    "Configuration a number": (
        with_meta(meta_for(S.state, Configuration=5)),
        f"{META}{TYPE}number into Go struct field SnapshotMeta.Configuration "
        "of type raft.Configuration",
    ),
    "a server's Suffrage as a string": (
        with_meta(meta_for(S.state, Configuration={"Servers": [{"Suffrage": "Voter"}]})),
        f"{META}{TYPE}string into Go struct field SnapshotMeta.Configuration.Servers.Suffrage "
        "of type raft.ServerSuffrage",
    ),
    "NaN": (
        with_meta(meta_text(b'"Index":13', b'"Index":NaN')),
        f"{META}invalid character 'N' looking for beginning of value",
    ),
    "Infinity": (
        with_meta(meta_text(b'"Index":13', b'"Index":Infinity')),
        f"{META}invalid character 'I' looking for beginning of value",
    ),
    "-Infinity": (
        with_meta(meta_text(b'"Index":13', b'"Index":-Infinity')),
        f"{META}invalid character 'I' in numeric literal",
    ),
    "a UTF-8 byte-order mark": (
        with_meta(b"\xef\xbb\xbf" + meta_for(S.state)),
        f"{META}invalid character 'ï' looking for beginning of value",
    ),
    "meta.json nested deeper than Go's 10,000 levels": (
        with_meta(b'{"Deep":' + b"[" * 10_000 + b"]" * 10_000 + b"}"),
        f"{META}invalid character '[' exceeded max depth",
    ),
    "meta.json that is an array": (
        with_meta(b"[]\n"),
        f"{META}{TYPE}array into Go value of type raft.SnapshotMeta",
    ),
    # An unsigned field is read with Go's strconv.ParseUint, which takes no sign, not even -0.
    "Index -0": (
        with_meta(meta_text(b'"Index":13', b'"Index":-0')),
        f"{META}{TYPE}number -0 into Go struct field SnapshotMeta.Index of type uint64",
    ),
    "Term -0": (
        with_meta(meta_text(b'"Term":2', b'"Term":-0')),
        f"{META}{TYPE}number -0 into Go struct field SnapshotMeta.Term of type uint64",
    ),
    "ConfigurationIndex -0": (
        with_meta(meta_text(b'"ConfigurationIndex":1', b'"ConfigurationIndex":-0')),
        f"{META}{TYPE}number -0 into Go struct field SnapshotMeta.ConfigurationIndex "
        "of type uint64",
    ),
    "a Peers byte written -0": (
        with_meta(meta_for(S.state, Peers=[1, 2]).replace(b"[1,2]", b"[1,-0]")),
        f"{META}{TYPE}number -0 into Go struct field SnapshotMeta.Peers of type uint8",
    ),
    # Raft restores snapshot versions 0 and 1 only, once Consul has read the whole archive.
    "Version 2": (
        with_meta(meta_for(S.state, Version=2)),
        "Raft error when restoring snapshot: unsupported snapshot version 2",
    ),
    "Version -1": (
        with_meta(meta_for(S.state, Version=-1)),
        "Raft error when restoring snapshot: unsupported snapshot version -1",
    ),
    # Every gzip member header is read as Go reads it: a file name or comment fits
    # in 512 bytes with its NUL, the header CRC covers the whole header.
    "a gzip file name of 512 bytes": (
        gzip_member(S.tar(), name=TOO_LONG_NAME),
        "failed to decompress snapshot: gzip: invalid header",
    ),
    "a gzip comment of 512 bytes": (
        gzip_member(S.tar(), comment=TOO_LONG_NAME),
        "failed to decompress snapshot: gzip: invalid header",
    ),
    "a gzip member after the tar with a file name of 512 bytes": (
        S.archive() + gzip_member(b"", name=TOO_LONG_NAME),
        "gzip: invalid header",
    ),
    "a gzip header CRC that does not match": (
        gzip_member(S.tar(), name=b"x", header_crc=0),  # the right one is 0xc3cb
        "failed to decompress snapshot: gzip: invalid header",
    ),
    "a gzip header cut inside its file name": (
        gzip_member(S.tar(), name=b"snapshot.tar")[:15],
        "failed to decompress snapshot: unexpected EOF",
    ),
    # Framing.
    "a body that is not gzip": (b"Permission denied" * 10, "failed to decompress snapshot: "),
    "an empty body": (b"", "failed to decompress snapshot: EOF"),
    "text appended after the gzip stream": (
        S.archive() + b"failed to stream snapshot: EOF",
        "gzip: invalid header",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_refuses_what_consul_refuses_in_consuls_words(case):
    data, message = REFUSED[case]
    with pytest.raises(ArchiveError) as raised:
        verify_bytes(data)
    assert str(raised.value).startswith(message)
    assert not isinstance(raised.value, StricterThanConsulError)


@pytest.mark.parametrize(
    ("defects", "message"),
    [
        (
            ArchiveDefects(wrong_hash_for="state.bin"),
            f'{INTEGRITY}hash check failed for "state.bin"',
        ),
        (
            ArchiveDefects(wrong_hash_for="meta.json"),
            f'{INTEGRITY}hash check failed for "meta.json"',
        ),
        # Consul hashes an absent member as empty, so its listed hash no longer matches.
        (ArchiveDefects(omit_member="state.bin"), f'{INTEGRITY}hash check failed for "state.bin"'),
        (ArchiveDefects(omit_member="meta.json"), f'{INTEGRITY}hash check failed for "meta.json"'),
        (ArchiveDefects(omit_member="SHA256SUMS"), f'{INTEGRITY}file missing for "meta.json"'),
        (ArchiveDefects(omit_hash_for="state.bin"), f'{INTEGRITY}file missing for "state.bin"'),
        (ArchiveDefects(extra_member="notes.txt"), 'unexpected file "notes.txt" in snapshot'),
    ],
)
def test_the_doubles_defect_options_make_archives_consul_refuses(defects, message):
    with pytest.raises(ArchiveError) as raised:
        verify_bytes(archive_bytes(STATE, defects))
    assert str(raised.value) == message


@pytest.mark.parametrize("keep", [10, 1000, 150_000, -9, -1])
def test_refuses_a_truncated_archive(keep):
    # -9 and -1 cut only into the gzip trailer: the tar inside is already whole,
    # which is the case older Consul versions let through.
    data = archive_bytes(STATE)
    with pytest.raises(ArchiveError, match="unexpected EOF"):
        verify_bytes(data[:keep])


def test_refuses_consuls_mid_stream_error_text_after_a_cut():
    data = archive_bytes(STATE)[:50_000] + b"failed to stream snapshot: i/o timeout"
    with pytest.raises(ArchiveError):
        verify_bytes(data)


def test_refuses_a_flipped_bit_in_the_middle():
    data = bytearray(archive_bytes(STATE))
    data[len(data) // 2] ^= 0x01
    with pytest.raises(ArchiveError):
        verify_bytes(bytes(data))


# --- what Consul would restore, but we refuse on purpose --------------------

STRICTER: dict[str, tuple[bytes, str]] = {
    "SHA256SUMS with one space": (
        S.but(sums=sums_joined(b"\n").replace(b"  ", b" ")).archive(),
        "is not '<64 lowercase hex>  <name>'",
    ),
    "SHA256SUMS in upper case": (
        S.but(
            sums=sums_joined(b"\n")
            .upper()
            .replace(b"META.JSON", b"meta.json")
            .replace(b"STATE.BIN", b"state.bin")
        ).archive(),
        "is not '<64 lowercase hex>  <name>'",
    ),
    "SHA256SUMS with CRLF line ends": (
        S.but(sums=sums_joined(b"\r\n")).archive(),
        "is not '<64 lowercase hex>  <name>'",
    ),
    "state.bin in two members, hashed together": (
        twice_hashed_state(),
        "state.bin appears 2 times in the archive",
    ),
    "a meta.json over 1 MiB": (
        with_meta(meta_for(S.state, Padding="x" * (1 << 20))),
        "meta.json is larger than 1048576 bytes",
    ),
    "meta.json nested 10,000 deep, Go's limit (Python's parser stops short of it)": (
        with_meta(b'{"Deep":' + b"[" * 9_999 + b"]" * 9_999 + b"}"),
        "meta.json nests deeper than this verifier reads",
    ),
    "reserved gzip header flags": (gzip_with_reserved_flag(), "sets reserved header flags"),
    # Consul reads concatenated gzip members as one stream; its writer writes one.
    # The restore holds back an archive's last 64 KiB until the verdict: with one
    # member, that tail holds the trailer Consul needs to finish reading.
    "the tar split across several gzip members": (
        gzip_members(S.tar(), [1, 511, 700, 2000]),
        "the archive is 5 gzip members; Consul writes one",
    ),
    "an empty gzip member after the last": (
        S.archive() + gzip.compress(b""),
        "the archive is 2 gzip members; Consul writes one",
    ),
    "an empty gzip member after the last, with a comment of 511 bytes": (
        S.archive() + gzip_member(b"", comment=LONGEST_NAME),
        "the archive is 2 gzip members; Consul writes one",
    ),
}


@pytest.mark.parametrize("case", list(STRICTER), ids=list(STRICTER))
def test_refuses_on_purpose_what_consul_would_restore_but_never_writes(case):
    data, message = STRICTER[case]
    with pytest.raises(StricterThanConsulError, match=None) as raised:
        verify_bytes(data)
    assert message in str(raised.value)


# --- what Consul writes, and framing Consul's reader takes ------------------


# state.bin sizes around the tar's block size, and beyond a gzip window; the
# smallest state Consul writes is a header and a few records (an empty one does
# not restore: see REFUSED).
@pytest.mark.parametrize("size", [200, 511, 512, 513, 300_000, 2_000_000])
def test_accepts_archives_as_consul_writes_them_at_any_size(size):
    state = RaftState(index=4711, term=5, size=size, seed=size)
    report = verify_bytes(archive_bytes(state))
    assert (report.meta.index, report.meta.term, report.meta.size) == (4711, 5, size)
    assert report.state_bytes == size
    assert report.member_sha256["state.bin"] == state.sha256()


@pytest.mark.parametrize(
    "order",
    [("SHA256SUMS", "meta.json", "state.bin"), ("state.bin", "SHA256SUMS", "meta.json")],
)
def test_members_may_come_in_any_order(order):
    assert verify_bytes(archive_bytes(STATE, ArchiveDefects(order=order))).meta.index == 4711


def pax_sized_state() -> bytes:
    """state.bin whose size comes from a PAX record, its USTAR size field zero."""
    record = b" size=%d\n" % len(S.state)
    record = b"%d%s" % (len(record) + 2, record)  # the length counts its own two digits
    assert int(record.split(b" ")[0]) == len(record)
    pax = header("PaxHeaders.0/state.bin", len(record), tarfile.XHDTYPE)
    data = S.state + bytes(-len(S.state) % BLOCK)
    return pax + record + bytes(-len(record) % BLOCK) + header("state.bin", 0) + data


ACCEPTED: dict[str, bytes] = {
    "no end marker at all": S.but(end=b"").archive(),
    "one zero block, then the end of the stream": S.but(end=bytes(BLOCK)).archive(),
    "the stream ends inside the last member's padding": gzip.compress(S.but(end=b"").tar()[:-50]),
    "a PAX record giving the size, as Go writes beyond 8 GiB": gzip.compress(
        entry("meta.json", S.meta_bytes)
        + pax_sized_state()
        + entry("SHA256SUMS", S.sums_bytes)
        + END
    ),
    "unknown meta.json fields, and null where a value may be": with_meta(
        meta_for(S.state, Unknown={"x": [1.5, "y"]}, ID=None, Peers=None, Configuration=None)
    ),
    "meta.json field names in another case": with_meta(meta_text(b'"Index":13', b'"index":13')),
    "Version -0, which Go's strconv.ParseInt reads as 0": with_meta(
        meta_text(b'"Version":1', b'"Version":-0')
    ),
    "Version 0, the oldest Raft restores": with_meta(meta_for(S.state, Version=0)),
    "a server's Suffrage -0": with_meta(meta_text(b'"Suffrage":0', b'"Suffrage":-0')),
    "a gzip file name of 511 bytes, the longest Go reads": gzip_member(S.tar(), name=LONGEST_NAME),
    "a gzip header with every optional field and a CRC over all of it": gzip_member(
        S.tar(), extra=b"x" * 64, name=b"snapshot.tar", comment=b"c", header_crc=True
    ),
}


@pytest.mark.parametrize("case", list(ACCEPTED), ids=list(ACCEPTED))
def test_accepts_framing_that_consuls_reader_takes(case):
    report = verify_bytes(ACCEPTED[case])
    assert report.state_bytes == len(S.state)
    assert report.member_sha256["state.bin"] == STATE_HEX


def test_the_real_meta_json_decodes_with_consuls_types():
    state = consul_state_of_length(json.loads(CONSUL_META)["Size"])
    report = verify_bytes(S.but(state=state, meta=CONSUL_META).archive())
    assert report.meta == SnapshotMeta(
        index=13, term=2, id="2-13-1602222343947", size=5141, version=1, configuration_index=1
    )


def test_a_meta_json_of_null_reads_as_zero_as_in_consul():
    # Consul decodes into a pointer: null leaves every field at zero. Size 0 then
    # matches an empty state.bin, so the archive reaches the FSM, which finds no
    # header in it: Consul's restore fails there, and so does the verifier.
    meta: list[SnapshotMeta] = []
    with pytest.raises(ArchiveError, match=f"^{FSM}EOF"):
        verify_archive(io.BytesIO(S.but(state=b"", meta=b"null\n").archive()), meta.append)
    assert meta == [SnapshotMeta()]


def test_on_meta_hears_the_metadata_before_the_state_streams():
    data = archive_bytes(STATE)
    read_so_far = 0

    def count(chunk: bytes) -> None:
        nonlocal read_so_far
        read_so_far += len(chunk)

    heard: list[tuple[SnapshotMeta, int]] = []
    source = TeeReader(io.BytesIO(data), count)
    verify_archive(source, on_meta=lambda meta: heard.append((meta, read_so_far)))
    assert len(heard) == 1
    meta, read_when_heard = heard[0]
    assert meta.index == 4711 and read_when_heard < len(data)


def test_tee_reader_hands_on_every_byte_it_reads():
    data = archive_bytes(STATE)
    seen = bytearray()
    verify_archive(TeeReader(io.BytesIO(data), seen.extend))
    assert bytes(seen) == data
