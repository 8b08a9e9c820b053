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
# A stored snapshot whose older neighbours could not be retired: expiry falls
# behind (storage grows), nothing is lost.
RETIRE_FAILURE_METRIC = "RetireFailure"
# A snapshot whose content fell steeply against the one before it: stored (it
# is the truth), flagged, and the last good one held by the floor.
CONTENT_DROP_METRIC = "ContentDrop"
# What each snapshot holds, as trends: from its decoded state.bin.
KV_ENTRIES_METRIC = "KVEntries"
SERVICE_INSTANCES_METRIC = "ServiceInstances"
NODES_METRIC = "Nodes"
ACL_TOKENS_METRIC = "ACLTokens"
STATE_BYTES_METRIC = "StateBytes"
VERIFY_SUCCESS_METRIC = "VerifySuccess"
VERIFY_FAILURE_METRIC = "VerifyFailure"
VERIFIED_AGE_METRIC = "NewestVerifiedAge"
VERIFIED_BYTES_METRIC = "VerifiedBytes"
VERIFY_DURATION_METRIC = "VerifyDuration"


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
                        {"Name": RETIRE_FAILURE_METRIC, "Unit": "Count"},
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
        RETIRE_FAILURE_METRIC: 1 if "retire_error" in details else 0,
        **details,
    }


def verify_record(
    cluster: str, succeeded: bool, duration_s: float, details: dict[str, Any]
) -> dict[str, Any]:
    """The re-verification's line: its outcome, and the age of the newest proven snapshot."""
    age = details.get("newest_verified_age_s")
    metrics = [
        {"Name": VERIFY_SUCCESS_METRIC, "Unit": "Count"},
        {"Name": VERIFY_FAILURE_METRIC, "Unit": "Count"},
        {"Name": VERIFIED_BYTES_METRIC, "Unit": "Bytes"},
        {"Name": VERIFY_DURATION_METRIC, "Unit": "Milliseconds"},
    ]
    record: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {"Namespace": NAMESPACE, "Dimensions": [[CLUSTER_DIMENSION]], "Metrics": metrics}
            ],
        },
        CLUSTER_DIMENSION: cluster,
        "outcome": "verified" if succeeded else "failure",
        VERIFY_SUCCESS_METRIC: 1 if succeeded else 0,
        VERIFY_FAILURE_METRIC: 0 if succeeded else 1,
        VERIFIED_BYTES_METRIC: details.get("bytes", 0),
        VERIFY_DURATION_METRIC: round(duration_s * 1000, 1),
        **details,
    }
    if age is not None:
        metrics.append({"Name": VERIFIED_AGE_METRIC, "Unit": "Seconds"})
        record[VERIFIED_AGE_METRIC] = age
    return record


def emit(record: dict[str, Any], stream: TextIO | None = None) -> None:
    print(json.dumps(record, sort_keys=True, default=str), file=stream or sys.stdout, flush=True)
