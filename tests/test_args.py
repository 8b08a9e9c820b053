"""The component's typed arguments: the same resources as stack config, the same errors."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components import ColdStorage, ConfigError, ConsulSnapshotBackup, ConsulSnapshotBackupArgs
from components.args import DEFAULT_SCHEDULE, ObjectLock, SharedBucketArgs
from snapshot_backup.retention import DEFAULT_CONTENT_DROP_PERCENT
from testbed.pulumi_mocks import Resource, is_unknown, run_program

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:consul/token-AbCdEf"
CONFIG_ENTRY = {
    "name": "alpha",
    "consulAddress": "https://consul.alpha:8501/",
    "tokenSecretArn": ARN,
    "schedule": "rate(30 minutes)",
    "retentionDays": 14,
    "coldStorage": {"storageClass": "GLACIER_IR", "afterDays": 3},
    "vpc": {
        "subnetIds": ["subnet-0123456789abcdef0"],
        "securityGroupIds": ["sg-0123456789abcdef0"],
    },
    "memorySize": 512,
    "alarmEmail": "oncall@example.com",
}


def typed_args(**changes: Any) -> ConsulSnapshotBackupArgs:
    values: dict[str, Any] = {
        "consul_address": "https://consul.alpha:8501/",
        "token_secret_arn": ARN,
        "schedule": "rate(30 minutes)",
        "retention_days": 14,
        "cold_storage": ColdStorage(storage_class="GLACIER_IR", after_days=3),
        "vpc": {
            "subnet_ids": ["subnet-0123456789abcdef0"],
            "security_group_ids": ["sg-0123456789abcdef0"],
        },
        "memory_size": 512,
        "alarm_email": "oncall@example.com",
    }
    return ConsulSnapshotBackupArgs(**(values | changes))


def comparable(resources: list[Resource]) -> list[tuple[str, str, str]]:
    def plain(value: Any) -> Any:
        if is_unknown(value):
            return "<unknown>"
        if isinstance(value, pulumi.AssetArchive):
            return sorted(value.assets)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return sorted((r.type, r.name, repr(plain(r.inputs))) for r in resources)


def test_typed_arguments_build_what_stack_config_builds():
    from_config = run_program({"clusters": [CONFIG_ENTRY]})

    def program() -> dict[str, Any]:
        backup = ConsulSnapshotBackup("alpha", typed_args())
        return {"alpha": backup.function_name}

    from_python = run_program({}, program=program)
    # The stack program adds the stack's own dashboard; the component is the same.
    stack_level = [
        r for r in from_config.resources if r.type != "aws:cloudwatch/dashboard:Dashboard"
    ]
    assert comparable(from_python.resources) == comparable(stack_level)
    assert len(from_python.resources) > 10


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"retention_days": 0}, "retention_days 0 is out of range (1 to 36500)"),
        ({"retention_days": "30"}, "retention_days must be a whole number, not a string '30'"),
        ({"schedule": "daily"}, "schedule \"daily\": 'daily' is not an EventBridge"),
        ({"stale": "yes"}, "stale must be true or false, not a string 'yes'"),
        (
            {"cold_storage": {"storage_class": "GLACIER", "after_days": 20}},
            "cold_storage.after_days 20 must be less than retention_days (14)",
        ),
        ({"vpc": {"subnet_ids": []}}, "vpc.subnet_ids needs at least one entry"),
        (
            {"vpc": {"subnet_id": ["x"]}},
            "unknown key 'vpc.subnet_id' (did you mean 'vpc.subnet_ids'?)",
        ),
        ({"token": "t"}, "token and token_secret_arn: give exactly one"),
        ({"token_secret_arn": None}, "token and token_secret_arn: give exactly one"),
        ({"consul_address": "consul:8500"}, "consul_address 'consul:8500' is not an http://"),
        (
            {"consul_address": "https://user:pw@consul:8501"},
            "consul_address carries a user or password",
        ),
        (
            {"consul_address": "https://consul:8501/\r\nX-Header: 1"},
            "consul_address contains whitespace or a control character",
        ),
        ({"missed_backup_window_minutes": 20}, "missed_backup_window_minutes 20 is shorter"),
        ({"content_drop_percent": 0}, "content_drop_percent 0 is out of range (1 to 100)"),
        ({"content_drop_percent": 101}, "content_drop_percent 101 is out of range (1 to 100)"),
        (
            {"replica_provider": object()},
            "replica_provider is the provider of a new replica bucket: give replica.region too",
        ),
    ],
)
def test_a_bad_argument_raises_config_error_naming_it(changes, message):
    with pytest.raises(ConfigError) as raised:
        typed_args(**changes)
    assert any(problem.startswith(message) for problem in raised.value.problems), raised.value


def test_a_bad_cluster_name_is_refused_by_the_component():
    def program() -> dict[str, Any]:
        ConsulSnapshotBackup("Alpha_1", typed_args())
        return {}

    with pytest.raises(ConfigError, match="name 'Alpha_1' is not a valid cluster name"):
        run_program({}, program=program)


def test_defaults_are_the_documented_ones_and_values_are_normalized():
    # Numbers from YAML or Pulumi's engine may arrive as floats.
    args = ConsulSnapshotBackupArgs(
        consul_address="http://consul:8500/",
        token="t",
        timeout=60.0,  # type: ignore[arg-type]
    )
    assert args.schedule == DEFAULT_SCHEDULE and args.retention_days == 30
    assert args.content_drop_percent == DEFAULT_CONTENT_DROP_PERCENT
    assert args.consul_address == "http://consul:8500"
    assert args.timeout == 60 and isinstance(args.timeout, int)
    assert args.alarm_window_minutes == 120  # two intervals of the hourly default
    assert isinstance(typed_args().vpc.subnet_ids, tuple)  # type: ignore[union-attr]


def test_the_token_never_shows_in_a_repr():
    args = ConsulSnapshotBackupArgs(consul_address="http://consul:8500", token="s3cr3t-token")
    assert "s3cr3t-token" not in repr(args)
    assert args.token == "s3cr3t-token"  # kept, only never shown


def test_shared_bucket_arguments_check_themselves_too():
    with pytest.raises(ConfigError, match=r"prefix 'backups/\*' is not an S3 key prefix"):
        SharedBucketArgs(prefix="backups/*")
    # A mapping for a nested setting is accepted, as from stack config, and normalized.
    lock: Any = {"mode": "GOVERNANCE", "days": 1}
    assert SharedBucketArgs(object_lock=lock).object_lock == ObjectLock(mode="GOVERNANCE", days=1)
