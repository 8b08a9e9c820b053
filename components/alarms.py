"""CloudWatch alarms of a cluster: a failure counted, a success missing, replication behind.

Every alarm goes to the cluster's topic, both when it fires and when it clears.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .snapshot_bucket import REPLICATION_MINUTES

ALARM_PERIOD_CAP_SECONDS = 86400
FAILURE_PERIOD_SECONDS = 300


@dataclass(frozen=True)
class Metric:
    """A CloudWatch metric: namespace, name and the dimensions that select one series."""

    namespace: str
    name: str
    dimensions: Mapping[str, pulumi.Input[str]]


def alarm_period(window_minutes: int) -> tuple[int, int]:
    """(period seconds, evaluation periods) covering the window; periods cap at a day."""
    window = window_minutes * 60
    if window <= ALARM_PERIOD_CAP_SECONDS:
        return window, 1
    periods = -(-window // ALARM_PERIOD_CAP_SECONDS)
    return ALARM_PERIOD_CAP_SECONDS, periods


def failure_alarm(
    name: str,
    description: str,
    metric: Metric,
    topic_arn: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> aws.cloudwatch.MetricAlarm:
    """An alarm as soon as ``metric`` counts one failure in five minutes."""
    return aws.cloudwatch.MetricAlarm(
        name,
        alarm_description=description,
        namespace=metric.namespace,
        metric_name=metric.name,
        dimensions=dict(metric.dimensions),
        statistic="Sum",
        period=FAILURE_PERIOD_SECONDS,
        evaluation_periods=1,
        threshold=1,
        comparison_operator="GreaterThanOrEqualToThreshold",
        treat_missing_data="notBreaching",
        alarm_actions=[topic_arn],
        ok_actions=[topic_arn],
        opts=opts,
    )


def silence_alarm(
    name: str,
    description: str,
    metric: Metric,
    window_minutes: int,
    topic_arn: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> aws.cloudwatch.MetricAlarm:
    """An alarm for ``window_minutes`` without one success counted by ``metric``."""
    period, periods = alarm_period(window_minutes)
    return aws.cloudwatch.MetricAlarm(
        name,
        alarm_description=f"{description} in {window_minutes} minutes",
        namespace=metric.namespace,
        metric_name=metric.name,
        dimensions=dict(metric.dimensions),
        statistic="Sum",
        period=period,
        evaluation_periods=periods,
        datapoints_to_alarm=periods,
        threshold=1,
        comparison_operator="LessThanThreshold",
        # No data is exactly what a run that never happened looks like.
        treat_missing_data="breaching",
        alarm_actions=[topic_arn],
        ok_actions=[topic_arn],
        opts=opts,
    )


def replication_alarms(
    cluster: str,
    dimensions: Mapping[str, pulumi.Input[str]],
    topic_arn: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> list[aws.cloudwatch.MetricAlarm]:
    """Replication later than Replication Time Control promises, or failing.

    ``dimensions`` select S3 Replication's own metrics: source bucket,
    destination bucket and rule.
    """
    watched = [
        ("replication-late", "ReplicationLatency", "Maximum", REPLICATION_MINUTES * 60, "late"),
        ("replication-failed", "OperationsFailedReplication", "Sum", 0, "failing"),
    ]
    return [
        aws.cloudwatch.MetricAlarm(
            f"{cluster}-{suffix}",
            alarm_description=f"consul-backup for {cluster}: replication is {what}",
            namespace="AWS/S3",
            metric_name=metric,
            dimensions=dict(dimensions),
            statistic=statistic,
            period=FAILURE_PERIOD_SECONDS,
            evaluation_periods=1,
            threshold=threshold,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=[topic_arn],
            ok_actions=[topic_arn],
            opts=opts,
        )
        for suffix, metric, statistic, threshold, what in watched
    ]
