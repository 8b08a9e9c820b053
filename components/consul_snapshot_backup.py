"""ConsulSnapshotBackup: everything one Consul cluster needs for verified backups.

Per cluster: the snapshot bucket (unless a shared one is passed in), the token
secret when the token is given, the alarm topic, the backup function and the
daily re-verification (each a ``ScheduledFunction``: role, log, function,
schedule, alarms), and the cluster's own alarms. Every child is parented to
the component and named from its name, and no resource is created inside an
``apply``: ``pulumi preview`` shows exactly what ``up`` will create. The
component's outputs are ``ClusterOutputs``' fields, registered and exported
under the same keys that ``consul-backup status`` reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from snapshot_backup.environment import EnvVar
from snapshot_backup.keys import (
    ClusterNameError,
    check_cluster_name,
    cluster_prefix,
    normalize_prefix,
)
from snapshot_backup.telemetry import (
    CLUSTER_DIMENSION,
    CONTENT_DROP_METRIC,
    NAMESPACE,
    RETIRE_FAILURE_METRIC,
    SUCCESS_METRIC,
    VERIFY_FAILURE_METRIC,
    VERIFY_SUCCESS_METRIC,
)

from .alarms import Metric, failure_alarm, replication_alarms
from .args import ConsulSnapshotBackupArgs
from .function_code import CA_BUNDLE_FILE, HANDLER, TASK_ROOT, VERIFY_HANDLER, function_archive
from .outputs import ClusterOutputs
from .policies import VpcAccess, backup_function_policy, verify_function_policy
from .scheduled_function import (
    FailureAlarm,
    MissedRunAlarm,
    RolePolicy,
    ScheduledFunction,
    ScheduledFunctionArgs,
)
from .snapshot_bucket import REPLICATION_RULE_ID, RetentionRule, SnapshotBucket
from .validation import ConfigError

__all__ = [
    "AlarmTopic",
    "ConsulSnapshotBackup",
    "ConsulSnapshotBackupArgs",
    "TokenSecret",
    "retention_rule",
]


def retention_rule(args: ConsulSnapshotBackupArgs, prefix: str) -> RetentionRule:
    """How long the snapshots under ``prefix`` live, and where they move first."""
    cold = args.cold_storage
    return RetentionRule(
        prefix=prefix,
        expire_days=args.retention_days,
        noncurrent_days=args.noncurrent_version_days,
        transition_days=cold.after_days if cold else None,
        transition_class=cold.storage_class if cold else None,
    )


@dataclass(frozen=True)
class TokenSecret:
    """Where the function reads the token: a secret made here (with its value), or a given ARN."""

    arn: pulumi.Input[str]
    secret: aws.secretsmanager.Secret | None = None
    version: aws.secretsmanager.SecretVersion | None = None


@dataclass(frozen=True)
class AlarmTopic:
    """Where the cluster's alarms go: a topic made here or a given one, and its subscription."""

    arn: pulumi.Output[str]
    topic: aws.sns.Topic | None = None
    subscription: aws.sns.TopicSubscription | None = None


class ConsulSnapshotBackup(pulumi.ComponentResource):
    """Scheduled, verified backups of the Consul cluster named ``name``."""

    bucket: SnapshotBucket
    token_secret: TokenSecret
    alarm_topic: AlarmTopic
    backup: ScheduledFunction
    verification: ScheduledFunction
    cluster_alarms: list[aws.cloudwatch.MetricAlarm]
    replication_alarms: list[aws.cloudwatch.MetricAlarm]
    prefix: str  # the key prefix, normalized: "consul-snapshots/"
    key_prefix: str  # the cluster's own: "consul-snapshots/<name>/"
    # What the component registers and the program exports: ClusterOutputs' keys.
    outputs: dict[str, pulumi.Input[Any]]

    def __init__(
        self,
        name: str,
        args: ConsulSnapshotBackupArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        try:
            check_cluster_name(name)
        except ClusterNameError as exc:
            raise ConfigError([f"name {exc}"]) from exc
        super().__init__("consul-backup:index:ConsulSnapshotBackup", name, None, opts)
        self._name = name
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        self.prefix = normalize_prefix(args.key_prefix)
        self.key_prefix = cluster_prefix(args.key_prefix, name)

        self.bucket = self._create_bucket()
        self.token_secret = self._create_token_secret(self.bucket)
        self.alarm_topic = self._create_alarm_topic()
        self.backup = self._create_backup_function(self.bucket, self.token_secret, self.alarm_topic)
        self.verification = self._create_verification(self.bucket, self.alarm_topic)
        self.cluster_alarms = self._create_cluster_alarms(self.alarm_topic)
        self.replication_alarms = self._create_replication_alarms(self.bucket, self.alarm_topic)

        self.outputs = self._stack_outputs()
        self.register_outputs(self.outputs)

    # --- steps ----------------------------------------------------------------

    def _create_bucket(self) -> SnapshotBucket:
        args = self._args
        if args.shared_bucket is not None:
            return args.shared_bucket
        return SnapshotBucket(
            f"{self._name}-snapshots",
            retention=[retention_rule(args, self.key_prefix)],
            kms_key_arn=args.kms_key_arn,
            object_lock=args.object_lock,
            replica=args.replica,
            replica_provider=args.replica_provider,
            opts=self._child,
        )

    def _create_token_secret(self, bucket: SnapshotBucket) -> TokenSecret:
        args = self._args
        if args.token is None:
            assert args.token_secret_arn is not None  # the arguments demand one
            return TokenSecret(args.token_secret_arn)
        secret = aws.secretsmanager.Secret(
            f"{self._name}-consul-token",
            description=f"Consul ACL token used by consul-backup for cluster {self._name}",
            # The bucket's key: a cluster's own, or the shared bucket's.
            kms_key_id=bucket.kms_key_arn,
            opts=self._child,
        )
        version = aws.secretsmanager.SecretVersion(
            f"{self._name}-consul-token-version",
            secret_id=secret.id,
            secret_string=pulumi.Output.secret(args.token),
            opts=self._child,
        )
        return TokenSecret(secret.arn, secret, version)

    def _create_alarm_topic(self) -> AlarmTopic:
        args = self._args
        topic = None
        if args.alarm_topic_arn:
            topic_arn: pulumi.Input[str] = args.alarm_topic_arn
        else:
            # Not encrypted with alias/aws/sns: CloudWatch cannot publish to a
            # topic under an AWS-managed key, and alarms carry no secrets.
            topic = aws.sns.Topic(f"{self._name}-alarms", opts=self._child)
            topic_arn = topic.arn
        subscription = None
        if args.alarm_email:
            subscription = aws.sns.TopicSubscription(
                f"{self._name}-alarm-email",
                topic=topic_arn,
                protocol="email",
                endpoint=args.alarm_email,
                opts=self._child,
            )
        return AlarmTopic(pulumi.Output.from_input(topic_arn), topic, subscription)

    def _create_backup_function(
        self, bucket: SnapshotBucket, token: TokenSecret, topic: AlarmTopic
    ) -> ScheduledFunction:
        name, args = self._name, self._args
        return ScheduledFunction(
            name,
            ScheduledFunctionArgs(
                description=f"Streams verified Consul snapshots of {name} into S3",
                role_description=f"consul-backup function for Consul cluster {name}",
                schedule_description=f"consul-backup schedule for {name}",
                handler=HANDLER,
                code=function_archive(ca_bundle=args.ca_certificate),
                role_policy=self._backup_policy(bucket, token),
                environment=self._backup_environment(bucket, token),
                schedule=args.schedule,
                memory_size=args.memory_size,
                timeout=args.timeout,
                log_retention_days=args.log_retention_days,
                alarm_topic_arn=topic.arn,
                failure_alarm=FailureAlarm("errors", self._describe("the backup function failed")),
                missed_run_alarm=MissedRunAlarm(
                    "missed-backup",
                    self._describe("no successful backup"),
                    self._cluster_metric(SUCCESS_METRIC),
                    args.alarm_window_minutes,
                ),
                kms_key_arn=bucket.kms_key_arn,
                vpc=args.vpc,
            ),
            opts=self._child,
            moved_from=self,
        )

    def _create_verification(self, bucket: SnapshotBucket, topic: AlarmTopic) -> ScheduledFunction:
        """The daily re-verification: list and read only, of the bucket and the replica."""
        name, args = self._name, self._args
        return ScheduledFunction(
            f"{name}-verify",
            ScheduledFunctionArgs(
                description=f"Re-reads and verifies the newest snapshot of {name}",
                role_description=f"consul-backup re-verification for Consul cluster {name}",
                schedule_description=f"consul-backup re-verification schedule for {name}",
                handler=VERIFY_HANDLER,
                code=function_archive(),
                role_policy=self._verify_policy(bucket),
                environment=self._verify_environment(bucket),
                schedule=args.verify_schedule,
                memory_size=args.memory_size,
                timeout=args.timeout,
                log_retention_days=args.log_retention_days,
                alarm_topic_arn=topic.arn,
                failure_alarm=FailureAlarm(
                    "failed",
                    self._describe("a stored snapshot failed verification"),
                    self._cluster_metric(VERIFY_FAILURE_METRIC),
                ),
                missed_run_alarm=MissedRunAlarm(
                    "missed",
                    self._describe("no verification succeeded"),
                    self._cluster_metric(VERIFY_SUCCESS_METRIC),
                    args.verify_window_minutes,
                ),
                kms_key_arn=bucket.kms_key_arn,
                function_suffix=None,
            ),
            opts=self._child,
            moved_from=self,
        )

    def _create_cluster_alarms(self, topic: AlarmTopic) -> list[aws.cloudwatch.MetricAlarm]:
        """What the backup function reports beyond its own failure, one alarm each."""
        watched = [
            (
                "retire-failed",
                "snapshots beyond keepLatest could not be retired (expiry falls behind)",
                RETIRE_FAILURE_METRIC,
            ),
            (
                "content-drop",
                "a snapshot holds far less than the one before it (the one before is held)",
                CONTENT_DROP_METRIC,
            ),
        ]
        return [
            failure_alarm(
                f"{self._name}-{suffix}",
                self._describe(what),
                self._cluster_metric(metric),
                topic.arn,
                self._child,
            )
            for suffix, what, metric in watched
        ]

    def _create_replication_alarms(
        self, bucket: SnapshotBucket, topic: AlarmTopic
    ) -> list[aws.cloudwatch.MetricAlarm]:
        """Replication late (over 15 minutes) or failing, to the cluster's alarm topic."""
        if bucket.replica is None:
            return []
        dimensions: dict[str, pulumi.Input[str]] = {
            "SourceBucket": bucket.name,
            "DestinationBucket": bucket.replica.bucket_name,
            "RuleId": REPLICATION_RULE_ID,
        }
        return replication_alarms(self._name, dimensions, topic.arn, self._child)

    # --- what the steps are made of ---------------------------------------------

    def _describe(self, what: str) -> str:
        return f"consul-backup for {self._name}: {what}"

    def _cluster_metric(self, name: str) -> Metric:
        return Metric(NAMESPACE, name, {CLUSTER_DIMENSION: self._name})

    def _backup_policy(self, bucket: SnapshotBucket, token: TokenSecret) -> RolePolicy:
        """The backup role's policy (``policies.backup_function_policy``), given its log group."""
        vpc, prefix = self._args.vpc, self.key_prefix
        kms_key_arns = [bucket.kms_key_arn] if bucket.kms_key_arn else []
        ec2_arn_base = self._ec2_arn_base()

        def policy(log_group_arn: pulumi.Output[str]) -> pulumi.Output[str]:
            return pulumi.Output.all(bucket.arn, token.arn, log_group_arn, ec2_arn_base).apply(
                lambda values: json.dumps(
                    backup_function_policy(
                        bucket_arn=values[0],
                        cluster_prefix=prefix,
                        secret_arn=values[1],
                        log_group_arn=values[2],
                        kms_key_arns=kms_key_arns,
                        vpc=VpcAccess(values[3], vpc.subnet_ids, vpc.security_group_ids)
                        if vpc is not None
                        else None,
                    ),
                    sort_keys=True,
                )
            )

        return policy

    def _verify_policy(self, bucket: SnapshotBucket) -> RolePolicy:
        """The re-verification role's policy: list and read the cluster's prefix, both places."""
        prefix, replica = self.key_prefix, bucket.replica
        buckets = [bucket.arn, *([replica.bucket_arn] if replica is not None else [])]
        keys = [k for k in (bucket.kms_key_arn, replica.kms_key_arn if replica else None) if k]

        def policy(log_group_arn: pulumi.Output[str]) -> pulumi.Output[str]:
            return pulumi.Output.all(log_group_arn, *buckets).apply(
                lambda values: json.dumps(
                    verify_function_policy(
                        readable=[(arn, prefix) for arn in values[1:]],
                        log_group_arn=values[0],
                        kms_key_arns=keys,
                    ),
                    sort_keys=True,
                )
            )

        return policy

    def _ec2_arn_base(self) -> pulumi.Output[str] | None:
        """``arn:<partition>:ec2:<region>:<account>``, for the VPC rights; None without a VPC."""
        if self._args.vpc is None:
            return None
        # Invokes: answered by the provider at preview, by Mocks.call in tests.
        invoke = pulumi.InvokeOutputOptions(parent=self)
        return pulumi.Output.format(
            "arn:{0}:ec2:{1}:{2}",
            aws.get_partition_output(opts=invoke).partition,
            aws.get_region_output(opts=invoke).region,
            aws.get_caller_identity_output(opts=invoke).account_id,
        )

    def _backup_environment(
        self, bucket: SnapshotBucket, token: TokenSecret
    ) -> dict[str, pulumi.Input[str]]:
        """The backup function's environment contract (``snapshot_backup.environment``)."""
        args = self._args
        environment: dict[str, pulumi.Input[str]] = {
            EnvVar.CONSUL_HTTP_ADDR: args.consul_address,
            EnvVar.CONSUL_TOKEN_SECRET_ARN: token.arn,
            EnvVar.BACKUP_BUCKET: bucket.name,
            EnvVar.BACKUP_PREFIX: args.key_prefix,
            EnvVar.CLUSTER_NAME: self._name,
            EnvVar.CONSUL_STALE: "true" if args.stale else "false",
            EnvVar.KEEP_LATEST: str(args.keep_latest),
            EnvVar.CONTENT_DROP_PERCENT: str(args.content_drop_percent),
        }
        if args.datacenter:
            environment[EnvVar.CONSUL_DATACENTER] = args.datacenter
        if args.ca_certificate:
            # In the code archive: the environment's 4 KB would not hold a chain.
            environment[EnvVar.CONSUL_CACERT] = f"{TASK_ROOT}/{CA_BUNDLE_FILE}"
        return environment

    def _verify_environment(self, bucket: SnapshotBucket) -> dict[str, pulumi.Input[str]]:
        """The re-verification's environment: where to read, here and in the replica."""
        environment: dict[str, pulumi.Input[str]] = {
            EnvVar.BACKUP_BUCKET: bucket.name,
            EnvVar.BACKUP_PREFIX: self._args.key_prefix,
            EnvVar.CLUSTER_NAME: self._name,
        }
        if bucket.replica is not None:
            environment[EnvVar.REPLICA_BUCKET] = bucket.replica.bucket_name
            environment[EnvVar.REPLICA_REGION] = bucket.replica.region
        return environment

    def _stack_outputs(self) -> dict[str, pulumi.Input[Any]]:
        """Every field of ``ClusterOutputs``, under its stack output key."""
        values: dict[str, pulumi.Input[Any]] = {
            "bucket": self.bucket_name,
            "prefix": self.prefix,
            "key_prefix": self.key_prefix,
            "region": self.region,
            "function_name": self.function_name,
            "verify_function_name": self.verify_function_name,
            "rule_name": self.rule_name,
            "alarm_topic_arn": self.alarm_topic_arn,
            "replica_bucket": self.replica_bucket,
            "replica_region": self.replica_region,
            "replica_bucket_arn": self.replica_bucket_arn,
            "backup_window_minutes": self.backup_window_minutes,
            "alarm_names": self.alarm_names,
            "keep_latest": self.keep_latest,
            "content_drop_percent": self.content_drop_percent,
        }
        keys = ClusterOutputs.keys()
        if set(values) != set(keys):  # a field added to the contract must be exported
            raise TypeError(
                f"stack outputs {sorted(values)} are not ClusterOutputs' {sorted(keys)}"
            )
        return {keys[field]: value for field, value in values.items()}

    # --- the stack outputs, as typed attributes ---------------------------------

    @property
    def bucket_name(self) -> pulumi.Output[str]:
        return self.bucket.name

    @property
    def region(self) -> pulumi.Output[str]:
        """The bucket's region."""
        return self.bucket.region

    @property
    def function_name(self) -> pulumi.Output[str]:
        return self.backup.function_name

    @property
    def verify_function_name(self) -> pulumi.Output[str]:
        return self.verification.function_name

    @property
    def rule_name(self) -> pulumi.Output[str]:
        return self.backup.rule_name

    @property
    def alarm_topic_arn(self) -> pulumi.Output[str]:
        return self.alarm_topic.arn

    @property
    def replica_bucket(self) -> pulumi.Output[str]:
        """The replica bucket's name; empty without a replica."""
        replica = self.bucket.replica
        return replica.bucket_name if replica else pulumi.Output.from_input("")

    @property
    def replica_bucket_arn(self) -> pulumi.Output[str]:
        replica = self.bucket.replica
        return pulumi.Output.from_input(replica.bucket_arn if replica else "")

    @property
    def replica_region(self) -> pulumi.Output[str]:
        replica = self.bucket.replica
        return pulumi.Output.from_input(replica.region if replica else "")

    @property
    def backup_window_minutes(self) -> int:
        """How long without a successful backup before the missed-backup alarm fires."""
        return self._args.alarm_window_minutes

    @property
    def alarm_names(self) -> pulumi.Output[list[str]]:
        alarms = [
            self.backup.failure_alarm,
            self.backup.missed_run_alarm,
            *self.cluster_alarms,
            *self.replication_alarms,
            self.verification.failure_alarm,
            self.verification.missed_run_alarm,
        ]
        return pulumi.Output.all(*(alarm.name for alarm in alarms))

    @property
    def keep_latest(self) -> int:
        return self._args.keep_latest

    @property
    def content_drop_percent(self) -> int:
        return self._args.content_drop_percent
