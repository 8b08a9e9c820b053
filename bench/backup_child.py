"""Runs one backup through the real handler and prints its time and peak RSS.

A child process of its own, so that its peak RSS is the backup's alone (not
moto's, not the Consul double's, not the benchmark driver's).
"""

from __future__ import annotations

import json
import os
import resource
import time

from snapshot_backup.aws_clients import aws_client
from snapshot_backup.backup import handler


def main() -> None:
    # A warm container: its S3 client exists already, as the direct upload's does.
    aws_client("s3")
    started = time.perf_counter()
    summary = handler({}, None, env=os.environ)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_kib / 1024, **summary}))


if __name__ == "__main__":
    main()
