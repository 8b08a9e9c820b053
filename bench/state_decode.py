"""Decoding speed of state.bin while the summary is built (a script, not a test).

Builds states in memory with the msgpack package, encoded as Consul's
go-msgpack 0.5.5 writes them (structs as maps with every field, in sorted name
order; strings and ``[]byte`` as raw strings: ``use_bin_type=False``), feeds
each to ``StateDecoder`` in the verifier's 256 KiB blocks, calls ``finish()``,
and prints records/s and MiB/s with the summary's counts. Times are medians of
``--repeat`` runs, in CPU seconds of this process (the machine's cores are
shared; wall time is printed beside it).

- catalog: ``--records`` records laid out as ``persistNodes`` then
  ``persistKVs`` write them: per node one ``Register`` for the node, three for
  its services and two for its checks (a quarter of the records), then ``KVS``
  entries in key order with values of 20 to 150 bytes. Target: at least
  300,000 records/s.
- large values: a state of ``--large-mib`` MiB of 512 KiB KV values, which the
  decoder skips by length. Target: almost nothing added to the verifier.
- ``--details``: the catalog again in details mode (``consul-backup diff``).

Usage: python -m bench.state_decode [--records 1000000] [--large-mib 256] [--repeat 3] [--details]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Iterator
from typing import Any

import msgpack

from snapshot_backup.state_bin import StateDecoder, StateSummary
from snapshot_backup.verify import CHUNK_BYTES

REGISTER, KVS = b"\x00", b"\x02"
SERVICES_PER_NODE, CHECKS_PER_NODE = 3, 2
LARGE_VALUE_BYTES = 512 << 10


def pack(value: dict[str, Any]) -> bytes:
    return msgpack.packb(value, use_bin_type=False)


def register(node: int, service: int | None = None, check: int | None = None) -> dict[str, Any]:
    """structs.RegisterRequest as Consul CE persists it (every field, sorted)."""
    name, index = f"node-{node}", 100 + node
    return {
        "Address": f"10.{node >> 16 & 255}.{node >> 8 & 255}.{node & 255}",
        "Check": None if check is None else health_check(name, check, index),
        "Checks": None,
        "CreateIndex": index,
        "Datacenter": "dc1",
        "ID": f"{node:08x}-282c-35d9-ad8b-51bf6a35a933",
        "Locality": None,
        "ModifyIndex": index,
        "Node": name,
        "NodeMeta": {"consul-network-segment": ""},
        "PeerName": "",
        "Service": None if service is None else node_service(node, service, index),
        "SkipNodeUpdate": False,
        "TaggedAddresses": {"lan": "10.0.0.1"},
        "Token": "",
    }


def node_service(node: int, service: int, index: int) -> dict[str, Any]:
    return {
        "Address": "",
        "CreateIndex": index,
        "EnableTagOverride": False,
        "ID": f"web-{node}-{service}",
        "Kind": "",
        "Meta": {},
        "ModifyIndex": index,
        "Port": 8000 + service,
        "Service": f"web-{service}",
        "Tags": ["v1"],
    }


def health_check(node: str, check: int, index: int) -> dict[str, Any]:
    return {
        "CheckID": f"check-{check}",
        "CreateIndex": index,
        "ModifyIndex": index,
        "Name": "Serf Health Status",
        "Node": node,
        "Notes": "",
        "Output": "Agent alive and reachable",
        "ServiceID": "",
        "ServiceName": "",
        "ServiceTags": None,
        "Status": "passing",
        "Type": "",
    }


def dir_entry(key: str, value: bytes, index: int) -> dict[str, Any]:
    """structs.DirEntry as Consul CE persists it."""
    return {
        "CreateIndex": index,
        "Flags": 0,
        "Key": key,
        "LockIndex": 0,
        "ModifyIndex": index,
        "Session": "",
        "Value": value,
    }


def catalog_state(records: int) -> bytes:
    rng = random.Random(1)
    parts = [pack({"LastIndex": records + 100})]
    per_node = 1 + SERVICES_PER_NODE + CHECKS_PER_NODE
    nodes = records // 4 // per_node
    for node in range(nodes):
        parts.append(REGISTER + pack(register(node)))
        parts.extend(REGISTER + pack(register(node, service=s)) for s in range(SERVICES_PER_NODE))
        parts.extend(REGISTER + pack(register(node, check=c)) for c in range(CHECKS_PER_NODE))
    for n in range(records - nodes * per_node):
        key = f"config/app-{n // 1000:04d}/key-{n:07d}"  # persistKVs writes keys in order
        parts.append(KVS + pack(dir_entry(key, rng.randbytes(rng.randint(20, 150)), n)))
    return b"".join(parts)


def large_value_state(mib: int) -> bytes:
    rng = random.Random(2)
    parts = [pack({"LastIndex": 7})]
    for n in range((mib << 20) // LARGE_VALUE_BYTES):
        value = rng.randbytes(LARGE_VALUE_BYTES)
        parts.append(KVS + pack(dir_entry(f"blobs/{n:05d}", value, n)))
    return b"".join(parts)


def blocks(state: bytes) -> Iterator[bytes]:
    for at in range(0, len(state), CHUNK_BYTES):
        yield state[at : at + CHUNK_BYTES]


def decode_once(chunks: list[bytes], details: bool) -> tuple[float, float, StateSummary]:
    decoder = StateDecoder(details=details)
    wall, cpu = time.perf_counter(), time.process_time()
    for chunk in chunks:
        decoder.feed(chunk)
    summary = decoder.finish()
    return time.process_time() - cpu, time.perf_counter() - wall, summary


def report(shape: str, state: bytes, repeat: int, details: bool = False) -> None:
    chunks = list(blocks(state))
    runs = [decode_once(chunks, details) for _ in range(repeat)]
    cpu = statistics.median(r[0] for r in runs)
    wall = statistics.median(r[1] for r in runs)
    summary = runs[-1][2]
    records = sum(usage.count for usage in summary.records.values())
    print(
        f"{shape}: {records:,} records, {len(state) / 2**20:.1f} MiB: "
        f"{records / cpu:,.0f} records/s, {len(state) / 2**20 / cpu:.1f} MiB/s "
        f"(CPU {cpu:.2f} s; wall {wall:.2f} s, {records / wall:,.0f} records/s)"
    )
    print(
        f"  nodes {summary.nodes:,}, service instances {summary.service_instances:,}, "
        f"checks {summary.checks:,}, KV entries {summary.kv_entries:,} "
        f"({summary.kv_bytes / 2**20:.1f} MiB of values), "
        f"KV prefixes {len(summary.kv_prefixes):,}"
        + (" (truncated)" if summary.kv_prefixes_truncated else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--large-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--details", action="store_true", help="also time details mode")
    args = parser.parse_args()
    catalog = catalog_state(args.records)
    report("catalog", catalog, args.repeat)
    if args.details:
        report("catalog, details mode", catalog, args.repeat, details=True)
    del catalog
    report("large values", large_value_state(args.large_mib), args.repeat)


if __name__ == "__main__":
    main()
