"""One CloudWatch dashboard per stack: every cluster's backups, verifications and replication.

People would rather look than read: per cluster, a row of graphs, from the
metrics the function writes (``snapshot_backup.telemetry``) and S3 Replication's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from snapshot_backup.telemetry import (
    BYTES_METRIC,
    CLUSTER_DIMENSION,
    DURATION_METRIC,
    FAILURE_METRIC,
    NAMESPACE,
    SUCCESS_METRIC,
    VERIFIED_AGE_METRIC,
    VERIFY_FAILURE_METRIC,
    VERIFY_SUCCESS_METRIC,
)

WIDTH, HEIGHT = 6, 6


@dataclass(frozen=True)
class DashboardCluster:
    name: str
    # (source bucket, destination bucket, replication rule id) when replicated
    replication: tuple[str, str, str] | None = None


def dashboard_body(clusters: list[DashboardCluster], region: str) -> dict[str, Any]:
    widgets: list[dict[str, Any]] = []
    for row, cluster in enumerate(clusters):
        graphs = [
            ("backups", [(SUCCESS_METRIC, "Sum"), (FAILURE_METRIC, "Sum")]),
            ("verifications", [(VERIFY_SUCCESS_METRIC, "Sum"), (VERIFY_FAILURE_METRIC, "Sum")]),
            ("newest verified snapshot, age (s)", [(VERIFIED_AGE_METRIC, "Maximum")]),
            (
                "snapshot size and backup duration",
                [(BYTES_METRIC, "Maximum"), (DURATION_METRIC, "Maximum")],
            ),
        ]
        for column, (title, metrics) in enumerate(graphs):
            lines = [
                [NAMESPACE, metric, CLUSTER_DIMENSION, cluster.name, {"stat": stat}]
                for metric, stat in metrics
            ]
            widgets.append(_graph(f"{cluster.name}: {title}", lines, region, column, row))
        if cluster.replication is not None:
            source, destination, rule = cluster.replication
            line = [
                "AWS/S3",
                "ReplicationLatency",
                "SourceBucket",
                source,
                "DestinationBucket",
                destination,
                "RuleId",
                rule,
                {"stat": "Maximum"},
            ]
            widgets.append(
                _graph(f"{cluster.name}: replication latency (s)", [line], region, 4, row)
            )
    return {"widgets": widgets}


def _graph(
    title: str, metrics: list[list[Any]], region: str, column: int, row: int
) -> dict[str, Any]:
    return {
        "type": "metric",
        "x": column * WIDTH,
        "y": row * HEIGHT,
        "width": WIDTH,
        "height": HEIGHT,
        "properties": {
            "title": title,
            "metrics": metrics,
            "region": region,
            "period": 3600,
            "view": "timeSeries",
        },
    }


def dashboard_url(region: str, name: str) -> str:
    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#dashboards:name={name}"
    )
