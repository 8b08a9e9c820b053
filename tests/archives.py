"""Snapshot archives built piece by piece, to break them one rule at a time.

Independent of the project's writer and reader: header blocks come from
Python's ``tarfile`` (USTAR, as Consul writes), and every other byte is laid
out here by hand, so a test can put exactly the defect it names into an
otherwise Consul-shaped archive.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path

import msgpack

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# The meta.json of a snapshot a real Consul server took (Consul's own test data).
CONSUL_META = (FIXTURES / "consul-meta.json").read_bytes()
BLOCK = 512
END = bytes(2 * BLOCK)
MTIME = 1_700_000_000


def header(name: str, size: int, typeflag: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, 0o600, MTIME, typeflag
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


def with_checksum(block: bytes) -> bytes:
    """``block`` with its header checksum recomputed, so only the intended defect remains."""
    raw = bytearray(block)
    raw[148:156] = b" " * 8
    raw[148:156] = b"%06o\x00 " % sum(raw)
    return bytes(raw)


def entry(name: str, data: bytes, typeflag: bytes = tarfile.REGTYPE) -> bytes:
    """A member as Consul writes it: header, data, zeros to the next block."""
    return header(name, len(data), typeflag) + data + bytes(-len(data) % BLOCK)


def consul_state(kv_entries: int = 3, last_index: int = 13) -> bytes:
    """A small ``state.bin`` as Consul's FSM writes it, packed by the msgpack package.

    The header map, a node's Register record, then KVS records: Go structs as
    maps with sorted field names, ``[]byte`` and strings in msgpack's str family
    (``use_bin_type=False``), as Consul's codec writes them.
    """

    def record(kind: int, value: dict[str, object]) -> bytes:
        return bytes([kind]) + msgpack.packb(dict(sorted(value.items())), use_bin_type=False)

    state = msgpack.packb({"LastIndex": last_index}, use_bin_type=False)
    state += record(
        0,  # Register: the node itself (no Service, no Check)
        {"Address": b"10.0.0.1", "Check": None, "Checks": None, "Datacenter": b"dc1",
         "ID": b"68087cc0-282c-35d9-ad8b-51bf6a35a933", "Node": b"node-0", "NodeMeta": {},
         "Service": None, "SkipNodeUpdate": False, "TaggedAddresses": {}, "Token": b""},
    )  # fmt: skip
    for n in range(kv_entries):
        state += record(
            2,  # KVS: a DirEntry
            {"CreateIndex": 10 + n, "Flags": 0, "Key": f"config/app/key-{n}".encode(),
             "LockIndex": 0, "ModifyIndex": 10 + n, "Session": b"", "Value": b"\xff\x00v%d" % n},
        )  # fmt: skip
    return state


def consul_state_of_length(length: int) -> bytes:
    """A valid ``state.bin`` of exactly ``length`` bytes: a header and one KV value to fit."""
    header = msgpack.packb({"LastIndex": 13}, use_bin_type=False)
    for value_bytes in range(max(0, length - 200), length + 1):
        entry = {"CreateIndex": 13, "Flags": 0, "Key": b"pad", "LockIndex": 0,
                 "ModifyIndex": 13, "Session": b"", "Value": b"v" * value_bytes}  # fmt: skip
        state = header + b"\x02" + msgpack.packb(entry, use_bin_type=False)
        if len(state) == length:
            return state
    raise ValueError(f"no state of exactly {length} bytes this way")


def meta_for(state: bytes, **fields: object) -> bytes:
    """The real meta.json's shape, sized for ``state``, with ``fields`` replaced."""
    doc = json.loads(CONSUL_META) | {"Size": len(state)} | fields
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def sums_line(data: bytes, name: str) -> bytes:
    return f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode()


@dataclass(frozen=True)
class Snapshot:
    """The three members of a snapshot, and how they are framed into an archive."""

    state: bytes = field(default_factory=consul_state)
    meta: bytes | None = None  # default: meta_for(state)
    sums: bytes | None = None  # default: the right two lines
    order: tuple[str, ...] = ("meta.json", "state.bin", "SHA256SUMS")
    before: bytes = b""  # raw entries before the three
    extra: list[bytes] = field(default_factory=list)  # raw entries after the three
    end: bytes = END  # what closes the tar
    after: bytes = b""  # raw bytes after that, inside the same gzip stream

    @property
    def meta_bytes(self) -> bytes:
        return self.meta if self.meta is not None else meta_for(self.state)

    @property
    def sums_bytes(self) -> bytes:
        if self.sums is not None:
            return self.sums
        return sums_line(self.meta_bytes, "meta.json") + sums_line(self.state, "state.bin")

    def member(self, name: str) -> bytes:
        return {"meta.json": self.meta_bytes, "state.bin": self.state}.get(name, self.sums_bytes)

    def tar(self) -> bytes:
        members = b"".join(entry(name, self.member(name)) for name in self.order)
        return self.before + members + b"".join(self.extra) + self.end + self.after

    def archive(self) -> bytes:
        return gzip.compress(self.tar(), mtime=0)

    def but(self, **changes: object) -> Snapshot:
        return replace(self, **changes)  # type: ignore[arg-type]


def gzip_members(raw: bytes, cuts: list[int]) -> bytes:
    """``raw`` compressed as several gzip members, split at ``cuts``."""
    bounds = [0, *cuts, len(raw)]
    return b"".join(gzip.compress(raw[a:b], mtime=0) for a, b in pairwise(bounds))
