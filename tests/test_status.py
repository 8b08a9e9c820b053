"""``consul-backup status``: on time in both places and no alarm, or a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import boto3

from consul_backup.exit_codes import ExitCode
from tests.conftest import back_up, cli


def alarms(names_and_states: dict[str, str]) -> list[str]:
    cloudwatch = boto3.client("cloudwatch")
    for name, state in names_and_states.items():
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            MetricName="BackupSuccess",
            Namespace="ConsulBackup",
            Statistic="Sum",
            Period=300,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="LessThanThreshold",
        )
        cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")
    return list(names_and_states)


def outputs_file(tmp_path: Path, bucket: str, replica: str, names: list[str], window: int) -> str:
    path = tmp_path / "clusters.json"
    path.write_text(
        json.dumps(
            {
                "prod": {
                    "bucket": bucket,
                    "keyPrefix": "consul-snapshots/prod/",
                    "replicaBucketArn": f"arn:aws:s3:::{replica}",
                    "replicaRegion": "eu-central-1",
                    "backupWindowMinutes": window,
                    "alarmNames": names,
                }
            }
        )
    )
    return str(path)


def replica_bucket(name: str) -> str:
    boto3.client("s3", region_name="eu-central-1").create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    return name


def test_a_cluster_on_time_in_both_places_with_quiet_alarms_is_ok(consul, s3, bucket, tmp_path):
    replica = replica_bucket("status-replica-ok")
    newest = back_up(consul, bucket)
    back_up(consul, replica)
    names = alarms({"prod-errors-ok": "OK", "prod-missed-backup-ok": "OK"})
    result = cli(
        "status", "--outputs", outputs_file(tmp_path, bucket, replica, names, 120), "--json"
    )
    assert result.code == ExitCode.OK, result.out + result.err
    status = json.loads(result.out)
    assert status["healthy"] and status["places"]["bucket"]["key"] == newest["key"]
    assert status["places"]["replica"]["raft_index"] == newest["raft_index"]
    assert status["places"]["bucket"]["storage_class"] == "STANDARD"
    assert status["alarms"] == {"prod-errors-ok": "OK", "prod-missed-backup-ok": "OK"}


def test_a_firing_alarm_or_an_empty_replica_is_a_non_zero_exit(consul, s3, bucket, tmp_path):
    replica = replica_bucket("status-replica-empty")
    back_up(consul, bucket)
    names = alarms({"prod-errors-firing": "ALARM"})
    result = cli("status", "--outputs", outputs_file(tmp_path, bucket, replica, names, 120))
    assert result.code == ExitCode.UNHEALTHY
    assert "prod: BEHIND OR ALARMING" in result.out
    assert "replica  s3://status-replica-empty: no snapshot" in result.out
    assert "ALARM" in result.out and "prod-errors-firing" in result.out


def test_a_snapshot_older_than_the_window_is_behind(consul, s3, bucket):
    back_up(consul, bucket)
    result = cli("status", "--bucket", bucket, "--cluster", "prod", "--window-minutes", "0")
    assert result.code == ExitCode.UNHEALTHY and "(BEHIND)" in result.out
    fine = cli("status", "--bucket", bucket, "--cluster", "prod", "--window-minutes", "60")
    assert fine.code == ExitCode.OK, fine.out
