"""``consul-backup status``: on time in both places and no alarm, or a non-zero exit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import boto3

from components.outputs import ClusterOutputs, read_stack_outputs
from consul_backup.exit_codes import ExitCode
from consul_backup.status import ClusterTarget
from testbed.pulumi_mocks import ACCOUNT, REGION, run_program
from tests.conftest import back_up, cli, put_archive

ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:consul/prod-AbCdEf"
STACK = {
    "clusters": [
        {
            "name": "prod",
            "consulAddress": "https://consul.prod.internal:8501",
            "tokenSecretArn": ARN,
            "schedule": "rate(30 minutes)",
            "keepLatest": 24,
            "contentDropPercent": 30,
        },
        {"name": "stage", "consulAddress": "http://consul.stage:8500", "tokenSecretArn": ARN},
    ],
    "sharedBucket": {"prefix": "backups/consul", "replica": {"region": "eu-central-1"}},
}


@cache
def stack_outputs_json() -> str:
    """``pulumi stack output --json`` of a stack the program made under mocks."""
    return json.dumps(run_program(STACK).exports)


def test_the_programs_exports_are_what_status_reads():
    outputs = read_stack_outputs(stack_outputs_json())
    assert sorted(outputs) == ["prod", "stage"]
    prod = outputs["prod"]
    assert prod == ClusterOutputs(
        cluster="prod",
        bucket="consul-backup-shared-bucket-0a1b2c3",
        prefix="backups/consul/",
        key_prefix="backups/consul/prod/",
        region=REGION,
        function_name="prod-function-0a1b2c3",
        verify_function_name="prod-verify-0a1b2c3",
        rule_name="prod-schedule-0a1b2c3",
        alarm_topic_arn=f"arn:aws:sns:{REGION}:{ACCOUNT}:prod-alarms",
        replica_bucket="consul-backup-shared-replica-bucket-0a1b2c3",
        replica_region="eu-central-1",
        backup_window_minutes=60,
        alarm_names=tuple(
            f"prod-{alarm}-0a1b2c3"
            for alarm in (
                "errors",
                "missed-backup",
                "retire-failed",
                "content-drop",
                "replication-late",
                "replication-failed",
                "verify-failed",
                "verify-missed",
            )
        ),
        keep_latest=24,
        content_drop_percent=30,
        replica_bucket_arn="arn:aws:s3:::consul-backup-shared-replica-bucket-0a1b2c3",
    )
    # Every key the program exports is one ClusterOutputs reads, and the other way round.
    exported = json.loads(stack_outputs_json())["clusters"]["prod"]
    assert exported == prod.to_dict()


def test_status_judges_the_places_the_program_exports():
    outputs = read_stack_outputs(stack_outputs_json())
    targets = [ClusterTarget.from_outputs(outputs[name]) for name in sorted(outputs)]
    assert [t.cluster for t in targets] == ["prod", "stage"]
    prod, stage = targets
    assert prod == ClusterTarget(
        cluster="prod",
        bucket="consul-backup-shared-bucket-0a1b2c3",
        prefix="backups/consul/",
        window_minutes=60,
        replica_bucket="consul-backup-shared-replica-bucket-0a1b2c3",
        replica_region="eu-central-1",
        alarm_names=read_stack_outputs(stack_outputs_json())["prod"].alarm_names,
    )
    assert (stage.replica_bucket, stage.replica_region) == (
        "consul-backup-shared-replica-bucket-0a1b2c3",
        "eu-central-1",
    )
    assert stage.window_minutes == 120 and len(stage.alarm_names) == 8


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
    """The program's exports for prod, pointed at this test's buckets and alarms."""
    prod: dict[str, Any] = json.loads(stack_outputs_json())["clusters"]["prod"]
    prod.update(
        bucket=bucket,
        prefix="consul-snapshots/",
        keyPrefix="consul-snapshots/prod/",
        region=boto3.session.Session().region_name,
        replicaBucket=replica,
        replicaBucketArn=f"arn:aws:s3:::{replica}",
        backupWindowMinutes=window,
        alarmNames=names,
    )
    path = tmp_path / "clusters.json"
    path.write_text(json.dumps({"prod": prod}))
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


def test_a_snapshot_older_than_the_window_is_behind(s3, bucket):
    # The newest snapshot was taken two hours ago.
    put_archive(s3, bucket, "prod", datetime.now(UTC) - timedelta(hours=2), 7, b"snapshot")
    result = cli("status", "--bucket", bucket, "--cluster", "prod", "--window-minutes", "60")
    assert result.code == ExitCode.UNHEALTHY and "(BEHIND)" in result.out
    fine = cli("status", "--bucket", bucket, "--cluster", "prod", "--window-minutes", "180")
    assert fine.code == ExitCode.OK, fine.out
