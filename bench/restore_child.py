"""Runs one restore and prints its time and peak RSS: the CLI's, or the plain stream's.

``python -m bench.restore_child cli <consul-backup restore arguments...>`` runs
``consul-backup restore`` in this process; ``python -m bench.restore_child
plain BUCKET KEY CONSUL`` is what an operator would type without the tool: the
S3 GET piped into ``PUT /v1/snapshot``, nothing checked. A child process of its
own, so that its peak RSS is the restore's alone.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import boto3
import urllib3

from consul_backup.cli import run

CHUNK_BYTES = 256 << 10


def plain_stream(bucket: str, key: str, consul: str) -> None:
    response = boto3.client("s3").get_object(Bucket=bucket, Key=key)
    body = response["Body"]
    reply = urllib3.PoolManager().urlopen(
        "PUT",
        f"{consul}/v1/snapshot",
        body=iter(lambda: body.read(CHUNK_BYTES), b""),
        headers={"Content-Length": str(response["ContentLength"])},
        chunked=False,
        preload_content=True,
    )
    if reply.status != 200:
        raise SystemExit(f"Consul refused the plain restore ({reply.status}): {reply.data!r}")


def main() -> None:
    mode, *arguments = sys.argv[1:]
    started = time.perf_counter()
    if mode == "plain":
        plain_stream(*arguments)
    else:
        code = run(arguments)
        if code != 0:
            raise SystemExit(f"consul-backup restore exited {code}")
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_kib / 1024}))


if __name__ == "__main__":
    main()
