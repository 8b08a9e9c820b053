"""One CloudWatch dashboard per stack: every cluster's backups, verifications and content.

People would rather look than read: per cluster, two rows of graphs from the
metrics the function writes (``snapshot_backup.telemetry``) and S3
Replication's own. The first row says whether backups happen and are proven;
the second what they hold, so that a cluster that lost half its keys shows as
a cliff in a trend, beside the content-drop count that alarms on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from snapshot_backup.telemetry import (
    ACL_TOKENS_METRIC,
    BYTES_METRIC,
    CLUSTER_DIMENSION,
    CONTENT_DROP_METRIC,
    DURATION_METRIC,
    FAILURE_METRIC,
    KV_ENTRIES_METRIC,
    NAMESPACE,
    NODES_METRIC,
    SERVICE_INSTANCES_METRIC,
    STATE_BYTES_METRIC,
    SUCCESS_METRIC,
    VERIFIED_AGE_METRIC,
    VERIFY_FAILURE_METRIC,
    VERIFY_SUCCESS_METRIC,
)

# CloudWatch lays widgets on a grid 24 columns wide: four graphs to a row.
WIDTH, HEIGHT = 6, 6
ROWS_PER_CLUSTER = 2
Graph = tuple[str, list[tuple[str, str]]]  # title, (metric, statistic) per line
HEALTH: list[Graph] = [
    ("backups", [(SUCCESS_METRIC, "Sum"), (FAILURE_METRIC, "Sum")]),
    ("verifications", [(VERIFY_SUCCESS_METRIC, "Sum"), (VERIFY_FAILURE_METRIC, "Sum")]),
    ("newest verified snapshot, age (s)", [(VERIFIED_AGE_METRIC, "Maximum")]),
    (
        "snapshot size and backup duration",
        [(BYTES_METRIC, "Maximum"), (DURATION_METRIC, "Maximum")],
    ),
]
CONTENT: list[Graph] = [
    (
        "content: KV entries, service instances, nodes, ACL tokens",
        [
            (KV_ENTRIES_METRIC, "Maximum"),
            (SERVICE_INSTANCES_METRIC, "Maximum"),
            (NODES_METRIC, "Maximum"),
            (ACL_TOKENS_METRIC, "Maximum"),
        ],
    ),
    ("state size (bytes)", [(STATE_BYTES_METRIC, "Maximum")]),
    ("content drops", [(CONTENT_DROP_METRIC, "Sum")]),
]


@dataclass(frozen=True)
class DashboardCluster:
    name: str
    # (source bucket, destination bucket, replication rule id) when replicated
    replication: tuple[str, str, str] | None = None


def dashboard_body(clusters: list[DashboardCluster], region: str) -> dict[str, Any]:
    widgets: list[dict[str, Any]] = []
    for index, cluster in enumerate(clusters):
        row = index * ROWS_PER_CLUSTER
        for offset, graphs in enumerate((HEALTH, CONTENT)):
            for column, (title, metrics) in enumerate(graphs):
                lines = [
                    [NAMESPACE, metric, CLUSTER_DIMENSION, cluster.name, {"stat": stat}]
                    for metric, stat in metrics
                ]
                widgets.append(
                    _graph(f"{cluster.name}: {title}", lines, region, column, row + offset)
                )
        if cluster.replication is not None:
            widgets.append(_replication_graph(cluster, region, len(CONTENT), row + 1))
    return {"widgets": widgets}


def _replication_graph(
    cluster: DashboardCluster, region: str, column: int, row: int
) -> dict[str, Any]:
    assert cluster.replication is not None
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
    return _graph(f"{cluster.name}: replication latency (s)", [line], region, column, row)


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
