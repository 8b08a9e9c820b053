"""Decoding speed of state.bin while the summary is built (a script, not a test).

Builds states with the testbed's ``ConsulState`` (Consul's records as Consul CE's
go-msgpack encoder writes them: every field, in field order, strings and ``[]byte``
as raw strings), feeds each to ``StateDecoder`` in the verifier's 256 KiB blocks,
calls ``finish()``, and prints records/s and MiB/s with the summary's counts. Times
are medians of ``--repeat`` runs, in CPU seconds of this process (the machine's
cores are shared; wall time is printed beside it).

- catalog: ``--records`` records, as ``ConsulState.many_records`` lays them out:
  about half ``Register`` records (nodes of five services and four checks), most
  of the rest small ``KVS`` entries, plus sessions, tombstones, tokens and the
  index table. Target: at least 300,000 records/s.
- large values: a state of ``--large-mib`` MiB of 512 KiB KV values, which the
  decoder skips by length. Target: almost nothing added to the verifier.
- ``--details``: the catalog again in details mode (``consul-backup diff``).

Usage: python -m bench.state_decode [--records 1000000] [--large-mib 256] [--repeat 3] [--details]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator

from snapshot_backup.state_bin import StateDecoder, StateSummary
from snapshot_backup.verify import CHUNK_BYTES
from testbed.fsm_writer import ConsulState

LARGE_VALUE_BYTES = 512 << 10


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
    catalog = ConsulState.many_records(args.records, seed=1).read()
    report("catalog", catalog, args.repeat)
    if args.details:
        report("catalog, details mode", catalog, args.repeat, details=True)
    del catalog
    large = ConsulState.sized(args.large_mib << 20, seed=2, value_bytes=LARGE_VALUE_BYTES)
    report("large values", large.read(), args.repeat)


if __name__ == "__main__":
    main()
