"""One JSON line per run: the outcome for people, and metrics for CloudWatch.

The line is in CloudWatch's embedded metric format, so the same record that an
operator reads in the logs becomes the ``ConsulBackup`` metrics that the
component's alarms watch. Nothing secret is ever passed in here.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

NAMESPACE = "ConsulBackup"
CLUSTER_DIMENSION = "Cluster"
SUCCESS_METRIC = "BackupSuccess"
FAILURE_METRIC = "BackupFailure"
BYTES_METRIC = "SnapshotBytes"
DURATION_METRIC = "BackupDuration"


def run_record(
    cluster: str, succeeded: bool, duration_s: float, size: int, details: dict[str, Any]
) -> dict[str, Any]:
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [[CLUSTER_DIMENSION]],
                    "Metrics": [
                        {"Name": SUCCESS_METRIC, "Unit": "Count"},
                        {"Name": FAILURE_METRIC, "Unit": "Count"},
                        {"Name": BYTES_METRIC, "Unit": "Bytes"},
                        {"Name": DURATION_METRIC, "Unit": "Milliseconds"},
                    ],
                }
            ],
        },
        CLUSTER_DIMENSION: cluster,
        "outcome": "success" if succeeded else "failure",
        SUCCESS_METRIC: 1 if succeeded else 0,
        FAILURE_METRIC: 0 if succeeded else 1,
        BYTES_METRIC: size,
        DURATION_METRIC: round(duration_s * 1000, 1),
        **details,
    }


def emit(record: dict[str, Any], stream: TextIO | None = None) -> None:
    print(json.dumps(record, sort_keys=True, default=str), file=stream or sys.stdout, flush=True)
