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


# What each run's summary holds about the state (``state_bin.StateSummary``),
# shown as trends: summary count -> metric.
STATE_METRICS = {
    "kv_entries": KV_ENTRIES_METRIC,
    "service_instances": SERVICE_INSTANCES_METRIC,
    "nodes": NODES_METRIC,
    "acl_tokens": ACL_TOKENS_METRIC,
    "state_bytes": STATE_BYTES_METRIC,
}
_UNITS = {STATE_BYTES_METRIC: "Bytes"}

Metrics = dict[str, tuple[float, str]]


def metric_record(
    cluster: str, outcome: str, metrics: Metrics, details: dict[str, Any]
) -> dict[str, Any]:
    """One line in CloudWatch's embedded metric format: ``details`` for people, ``metrics``."""
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [[CLUSTER_DIMENSION]],
                    "Metrics": [
                        {"Name": name, "Unit": unit} for name, (_, unit) in metrics.items()
                    ],
                }
            ],
        },
        CLUSTER_DIMENSION: cluster,
        **details,
        "outcome": outcome,
        **{name: value for name, (value, _) in metrics.items()},
    }


def run_record(
    cluster: str, succeeded: bool, duration_s: float, details: dict[str, Any]
) -> dict[str, Any]:
    """A backup's line: its outcome and, once stored, the size and content of the snapshot."""
    metrics: Metrics = {
        SUCCESS_METRIC: (1 if succeeded else 0, "Count"),
        FAILURE_METRIC: (0 if succeeded else 1, "Count"),
        BYTES_METRIC: (details.get("bytes", 0), "Bytes"),
        DURATION_METRIC: (round(duration_s * 1000, 1), "Milliseconds"),
        RETIRE_FAILURE_METRIC: (1 if details.get("retire_error") else 0, "Count"),
    }
    state = details.get("state")
    if succeeded and isinstance(state, dict):
        for count, metric in STATE_METRICS.items():
            if isinstance(state.get(count), int):
                metrics[metric] = (state[count], _UNITS.get(metric, "Count"))
        metrics[CONTENT_DROP_METRIC] = (1 if details.get("content_drop") else 0, "Count")
    return metric_record(cluster, "success" if succeeded else "failure", metrics, details)


def verify_record(
    cluster: str, succeeded: bool, duration_s: float, details: dict[str, Any]
) -> dict[str, Any]:
    """The re-verification's line: its outcome, and the age of the newest proven snapshot."""
    metrics: Metrics = {
        VERIFY_SUCCESS_METRIC: (1 if succeeded else 0, "Count"),
        VERIFY_FAILURE_METRIC: (0 if succeeded else 1, "Count"),
        VERIFIED_BYTES_METRIC: (details.get("bytes", 0), "Bytes"),
        VERIFY_DURATION_METRIC: (round(duration_s * 1000, 1), "Milliseconds"),
    }
    age = details.get("newest_verified_age_s")
    if age is not None:
        metrics[VERIFIED_AGE_METRIC] = (age, "Seconds")
    return metric_record(cluster, "verified" if succeeded else "failure", metrics, details)


def emit(record: dict[str, Any], stream: TextIO | None = None) -> None:
    print(json.dumps(record, sort_keys=True, default=str), file=stream or sys.stdout, flush=True)
