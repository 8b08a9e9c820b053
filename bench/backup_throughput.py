"""Backup and restore throughput and memory, measured in one run (a script, not a test).

Prints, against one moto server on 127.0.0.1, for each size:
- a backup of the snapshot through the real handler (Consul double -> verify,
  decode state.bin -> S3, manifest, floor) against a direct boto3 upload_file of
  the same archive with the same S3 checks (a full-object CRC-32), as a ratio of
  medians of alternating pairs (target: at most 1.25x),
  and the backup's peak RSS (target: at most 128 MiB at 1 GiB, flat);
- a restore through the operator CLI (`consul-backup restore`: S3 -> verify,
  decode, compare with the manifest -> PUT /v1/snapshot, in one pass) against
  the plain stream an operator would type without it (S3 GET piped into PUT
  /v1/snapshot), into the same Consul double, which inflates, hashes, writes
  and decodes the body as Consul does: ratio of medians of alternating pairs
  (target: at most 1.2x) and the restore's peak RSS (target: at most 128 MiB).

Usage: python -m bench.backup_throughput [--sizes-mib 256 1024] [--repeat 5]
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import boto3

from testbed.archive_writer import RaftState, write_archive
from testbed.fsm_writer import ConsulState
from testbed.moto_server import aws_env, free_port, moto_server, wait_until_serving

REPO = Path(__file__).resolve().parent.parent


def prepare_archive(folder: Path, name: str, state: RaftState) -> Path:
    path = folder / f"snapshot-{name.replace(' ', '-')}.snap"
    with path.open("wb") as out:
        write_archive(out, state, compresslevel=1)
    return path


def workloads(sizes_mib: list[int], catalog_records: int) -> list[tuple[str, RaftState]]:
    """States of real Consul records: large KV values at each size, and a big catalog."""
    found = [
        # Random values are incompressible: the archive is about as large as the state.
        (f"{mib} MiB", RaftState(index=1000 + mib, term=3, size=(mib << 20) - 65536, seed=mib))
        for mib in sizes_mib
    ]
    if catalog_records:
        catalog = ConsulState.many_records(catalog_records, seed=7)
        found.append((f"{catalog_records} records", RaftState(index=2_000_000, state=catalog)))
    return found


def empty(s3: Any, bucket: str) -> None:
    """Every run starts from the same (empty) bucket: moto keeps what it stores."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])


def start_consul_double(archive: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "testbed.consul_double"),
            *("--port", str(port), "--token", "", "--archive-file", str(archive)),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    address = f"http://127.0.0.1:{port}"
    return process, address


def backup_once(endpoint: str, consul: str, bucket: str) -> dict[str, Any]:
    env = {
        **os.environ,
        **aws_env(endpoint),
        "CONSUL_HTTP_ADDR": consul,
        "BACKUP_BUCKET": bucket,
        "CLUSTER_NAME": "bench",
        "CONSUL_RETRIES": "0",
    }
    output = subprocess.run(
        [sys.executable, "-m", "bench.backup_child"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    record: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return record


@functools.cache
def whole_crc32(archive: Path) -> str:
    """The archive's CRC-32, as S3 takes it: computed once, before any timing."""
    crc = 0
    with archive.open("rb") as source:
        while chunk := source.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def direct_upload_once(s3: Any, archive: Path, bucket: str, n: int) -> float:
    """boto3's upload_file, asking S3 for the same checks the backup asks for.

    A CRC-32 per part and of the whole object (``ChecksumType=FULL_OBJECT``),
    as the backup's upload does: what S3 (and moto, which copies the whole
    object to compute it) spends on it is the same on both sides.
    """
    key = f"direct/{archive.name}-{n}"
    checks = {"ChecksumCRC32": whole_crc32(archive)}
    started = time.perf_counter()
    s3.upload_file(str(archive), bucket, key, ExtraArgs=checks)
    seconds = time.perf_counter() - started
    s3.delete_object(Bucket=bucket, Key=key)
    return seconds


def measure_pair(
    s3: Any, endpoint: str, consul: str, archive: Path, bucket: str, n: int
) -> tuple[dict[str, float], float]:
    """One backup and one direct upload, in alternating order from pair to pair."""
    direct = direct_upload_once(s3, archive, bucket, n) if n % 2 else None
    record = backup_once(endpoint, consul, bucket)
    assert record["bytes"] == archive.stat().st_size, "the backup must store the whole archive"
    empty(s3, bucket)
    if direct is None:
        direct = direct_upload_once(s3, archive, bucket, n)
    return record, direct


def child(*arguments: str) -> dict[str, Any]:
    """One run of bench.restore_child; its time and peak RSS."""
    output = subprocess.run(
        [sys.executable, "-m", "bench.restore_child", *arguments],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def restore_pair(bucket: str, key: str, consul: str, n: int) -> tuple[dict[str, Any], float]:
    """`consul-backup restore` and the plain stream, in alternating order from pair to pair."""
    plain = ("plain", bucket, key, consul)
    tool = ("cli", "restore", "--bucket", bucket, "--cluster", "bench", key,
            "--consul-addr", consul, "--yes")  # fmt: skip
    first_plain = child(*plain)["seconds"] if n % 2 else None
    restored = child(*tool)
    plain_s = first_plain if first_plain is not None else child(*plain)["seconds"]
    return restored, plain_s


def measure_restores(bucket: str, key: str, consul: str, repeat: int) -> str:
    tools, plains, peaks = [], [], []
    for n in range(repeat):
        restored, plain = restore_pair(bucket, key, consul, n)
        tools.append(restored["seconds"])
        peaks.append(restored["peak_rss_mib"])
        plains.append(plain)
    tool_s, plain_s = statistics.median(tools), statistics.median(plains)
    pairs = sorted(t / p for t, p in zip(tools, plains, strict=True))
    return (
        f"restore through the CLI {tool_s:.2f} s, plain S3 GET -> PUT {plain_s:.2f} s, "
        f"ratio {tool_s / plain_s:.2f}x (target 1.2x; pairs {pairs[0]:.2f}x to "
        f"{pairs[-1]:.2f}x), restore peak RSS {max(peaks):.0f} MiB (target 128)"
    )


def measure(
    s3: Any, endpoint: str, archive: Path, bucket: str, args: argparse.Namespace
) -> tuple[list[float], list[float], list[float], str]:
    """Backup/direct pairs, then restore/plain pairs, against one double serving ``archive``."""
    consul, address = start_consul_double(archive)
    try:
        wait_until_serving(address, "/v1/status/leader")
        backups, directs, peaks = [], [], []
        for n in range(args.repeat):
            record, direct = measure_pair(s3, endpoint, address, archive, bucket, n)
            backups.append(record["seconds"])
            peaks.append(record["peak_rss_mib"])
            directs.append(direct)
        kept = backup_once(endpoint, address, bucket)  # the snapshot to restore
        restores = measure_restores(bucket, kept["key"], address, args.restore_repeat)
        empty(s3, bucket)
    finally:
        consul.terminate()
        consul.wait()
    return backups, directs, peaks, restores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mib", type=int, nargs="*", default=[256, 1024])
    parser.add_argument("--catalog-records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--restore-repeat", type=int, default=5)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="consul-backup-bench-") as folder,
        moto_server() as endpoint,
    ):
        os.environ.update(aws_env(endpoint))
        s3 = boto3.client("s3")
        bucket = "bench-snapshots"
        s3.create_bucket(Bucket=bucket)
        print(f"moto at {endpoint}; {os.cpu_count()} cores; median of {args.repeat} runs each")
        for name, state in workloads(args.sizes_mib, args.catalog_records):
            archive = prepare_archive(Path(folder), name, state)
            size = archive.stat().st_size
            backups, directs, peaks, restores = measure(s3, endpoint, archive, bucket, args)
            backup_s, direct_s = statistics.median(backups), statistics.median(directs)
            pair_ratios = sorted(b / d for b, d in zip(backups, directs, strict=True))
            print(
                f"{name:>15} ({size / 2**20:.0f} MiB archive): backup {backup_s:.2f} s, "
                f"direct boto3 upload {direct_s:.2f} s, ratio {backup_s / direct_s:.2f}x "
                f"(target 1.25x; pairs {pair_ratios[0]:.2f}x to {pair_ratios[-1]:.2f}x), "
                f"backup peak RSS {max(peaks):.0f} MiB (target 128)"
            )
            print(f"{name:>15} {restores}", flush=True)
            archive.unlink()


if __name__ == "__main__":
    main()
