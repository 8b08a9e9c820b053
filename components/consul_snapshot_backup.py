"""ConsulSnapshotBackup: everything one Consul cluster needs for verified backups.

Per cluster: the snapshot bucket (unless a shared one is passed in), the token
secret when the token is given, a least-privilege role, the log group, the
function, its EventBridge schedule, and the alarms. Every child is parented to
the component and named from its name, and no resource is created inside an
``apply``: ``pulumi preview`` shows exactly what ``up`` will create.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from snapshot_backup.environment import EnvVar
from snapshot_backup.keys import CLUSTER_NAME, CLUSTER_NAME_RULE, cluster_prefix
from snapshot_backup.telemetry import (
    CLUSTER_DIMENSION,
    NAMESPACE,
    RETIRE_FAILURE_METRIC,
    SUCCESS_METRIC,
    VERIFY_FAILURE_METRIC,
    VERIFY_SUCCESS_METRIC,
)

from .args import ConfigError, ConsulSnapshotBackupArgs
from .function_code import (
    CA_BUNDLE_FILE,
    HANDLER,
    RUNTIME,
    TASK_ROOT,
    VERIFY_HANDLER,
    function_archive,
)
from .policies import (
    VpcAccess,
    assume_role_policy,
    backup_function_policy,
    verify_function_policy,
)
from .snapshot_bucket import (
    REPLICATION_MINUTES,
    REPLICATION_RULE_ID,
    RetentionRule,
    SnapshotBucket,
)

ALARM_PERIOD_CAP_SECONDS = 86400
# Lambda's limit for all environment variables of a function together, and room
# for the values only known after `pulumi up` (a bucket name, a secret's ARN).
LAMBDA_ENVIRONMENT_BYTES = 4096
UNKNOWN_VALUE_BYTES = 256

__all__ = ["ConsulSnapshotBackup", "ConsulSnapshotBackupArgs", "alarm_period", "retention_rule"]


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


def _check_environment_size(cluster: str, environment: dict[str, pulumi.Input[str]]) -> None:
    """Refuse at preview an environment Lambda would refuse at `pulumi up`."""
    size = sum(
        len(name) + (len(value.encode()) if isinstance(value, str) else UNKNOWN_VALUE_BYTES)
        for name, value in environment.items()
    )
    if size > LAMBDA_ENVIRONMENT_BYTES:
        raise ConfigError(
            [
                f"{cluster}: the function's environment would take about {size} bytes; "
                f"Lambda allows {LAMBDA_ENVIRONMENT_BYTES} (shorten consulAddress or datacenter)"
            ]
        )


def alarm_period(window_minutes: int) -> tuple[int, int]:
    """(period seconds, evaluation periods) covering the window; periods cap at a day."""
    window = window_minutes * 60
    if window <= ALARM_PERIOD_CAP_SECONDS:
        return window, 1
    periods = -(-window // ALARM_PERIOD_CAP_SECONDS)
    return ALARM_PERIOD_CAP_SECONDS, periods


class ConsulSnapshotBackup(pulumi.ComponentResource):
    """Scheduled, verified backups of the Consul cluster named ``name``."""

    bucket: SnapshotBucket
    key_prefix: str
    bucket_name: pulumi.Output[str]
    function_name: pulumi.Output[str]
    rule_name: pulumi.Output[str]
    alarm_topic_arn: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: ConsulSnapshotBackupArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        if not CLUSTER_NAME.fullmatch(name):
            raise ConfigError([f"name {name!r} is not a valid cluster name ({CLUSTER_NAME_RULE})"])
        super().__init__("consul-backup:index:ConsulSnapshotBackup", name, None, opts)
        self._name = name
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        self.key_prefix = cluster_prefix(args.key_prefix, name)

        self.bucket = self._create_bucket()
        self.kms_key_arn = self.bucket.kms_key_arn or args.kms_key_arn
        self.secret_arn = self._create_token_secret()
        self.log_group = self._create_log_group()
        self.role, self.role_policy = self._create_role()
        self.function = self._create_function()
        self.rule = self._create_schedule()
        self.alarm_topic_arn = self._create_alarm_topic()
        self.errors_alarm, self.missed_backup_alarm = self._create_alarms()
        self.replication_alarms = self._create_replication_alarms()
        self.verify_function, self.verify_rule = self._create_verification()
        self.verify_alarms = self._create_verification_alarms()

        self.bucket_name = self.bucket.name
        self.function_name = self.function.name
        self.rule_name = self.rule.name
        replica = self.bucket.replica
        self.replica_bucket_arn = pulumi.Output.from_input(replica.bucket_arn if replica else "")
        self.replica_region = pulumi.Output.from_input(replica.region if replica else "")
        # What `consul-backup status` needs to judge the cluster from the stack outputs.
        self.backup_window_minutes = args.alarm_window_minutes
        alarms = [
            self.errors_alarm,
            self.missed_backup_alarm,
            self.retire_alarm,
            *self.replication_alarms,
            *self.verify_alarms,
        ]
        self.alarm_names = pulumi.Output.all(*(alarm.name for alarm in alarms))
        self.register_outputs(
            {
                "bucket": self.bucket_name,
                "keyPrefix": self.key_prefix,
                "functionName": self.function_name,
                "ruleName": self.rule_name,
                "alarmTopicArn": self.alarm_topic_arn,
                "replicaBucketArn": self.replica_bucket_arn,
                "replicaRegion": self.replica_region,
                "backupWindowMinutes": self.backup_window_minutes,
                "alarmNames": self.alarm_names,
            }
        )

    # --- steps ----------------------------------------------------------------

    def _create_bucket(self) -> SnapshotBucket:
        if self._args.shared_bucket is not None:
            return self._args.shared_bucket
        return SnapshotBucket(
            f"{self._name}-snapshots",
            retention=[retention_rule(self._args, self.key_prefix)],
            kms_key_arn=self._args.kms_key_arn,
            object_lock=self._args.object_lock,
            replica=self._args.replica,
            opts=self._child,
        )

    def _create_token_secret(self) -> pulumi.Input[str]:
        """The ARN of the secret the function reads the token from."""
        if self._args.token is None:
            assert self._args.token_secret_arn is not None  # the arguments demand one
            self.secret: aws.secretsmanager.Secret | None = None
            return self._args.token_secret_arn
        self.secret = aws.secretsmanager.Secret(
            f"{self._name}-consul-token",
            description=f"Consul ACL token used by consul-backup for cluster {self._name}",
            kms_key_id=self.kms_key_arn,
            opts=self._child,
        )
        self.secret_version = aws.secretsmanager.SecretVersion(
            f"{self._name}-consul-token-version",
            secret_id=self.secret.id,
            secret_string=pulumi.Output.secret(self._args.token),
            opts=self._child,
        )
        return self.secret.arn

    def _create_log_group(self) -> aws.cloudwatch.LogGroup:
        return aws.cloudwatch.LogGroup(
            f"{self._name}-logs",
            retention_in_days=self._args.log_retention_days,
            opts=self._child,
        )

    def _create_role(self) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        role = aws.iam.Role(
            f"{self._name}-role",
            description=f"consul-backup function for Consul cluster {self._name}",
            assume_role_policy=json.dumps(assume_role_policy("lambda")),
            opts=self._child,
        )
        vpc = self._args.vpc
        kms_key_arns = [self.kms_key_arn] if self.kms_key_arn else []
        prefix = self.key_prefix
        policy = aws.iam.RolePolicy(
            f"{self._name}-policy",
            role=role.id,
            policy=pulumi.Output.all(
                self.bucket.arn, self.secret_arn, self.log_group.arn, self._ec2_arn_base()
            ).apply(
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
            ),
            opts=self._child,
        )
        return role, policy

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

    def _environment(self) -> dict[str, pulumi.Input[str]]:
        """The function's environment contract (``snapshot_backup.environment``)."""
        args = self._args
        environment: dict[str, pulumi.Input[str]] = {
            EnvVar.CONSUL_HTTP_ADDR: args.consul_address,
            EnvVar.CONSUL_TOKEN_SECRET_ARN: self.secret_arn,
            EnvVar.BACKUP_BUCKET: self.bucket.name,
            EnvVar.BACKUP_PREFIX: args.key_prefix,
            EnvVar.CLUSTER_NAME: self._name,
            EnvVar.CONSUL_STALE: "true" if args.stale else "false",
            EnvVar.KEEP_LATEST: str(args.keep_latest),
        }
        if args.datacenter:
            environment[EnvVar.CONSUL_DATACENTER] = args.datacenter
        if args.ca_certificate:
            # In the code archive: the environment's 4 KB would not hold a chain.
            environment[EnvVar.CONSUL_CACERT] = f"{TASK_ROOT}/{CA_BUNDLE_FILE}"
        _check_environment_size(self._name, environment)
        return environment

    def _create_function(self) -> aws.lambda_.Function:
        args = self._args
        return aws.lambda_.Function(
            f"{self._name}-function",
            description=f"Streams verified Consul snapshots of {self._name} into S3",
            runtime=RUNTIME,
            architectures=["arm64"],
            handler=HANDLER,
            code=function_archive(ca_bundle=args.ca_certificate),
            role=self.role.arn,
            memory_size=args.memory_size,
            timeout=args.timeout,
            environment={"variables": self._environment()},
            logging_config={"log_format": "Text", "log_group": self.log_group.name},
            vpc_config={
                "subnet_ids": list(args.vpc.subnet_ids),
                "security_group_ids": list(args.vpc.security_group_ids),
            }
            if args.vpc is not None
            else None,
            kms_key_arn=self.kms_key_arn,
            # The role must carry its policy before the first scheduled run.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.role_policy]),
        )

    def _create_schedule(self) -> aws.cloudwatch.EventRule:
        rule = aws.cloudwatch.EventRule(
            f"{self._name}-schedule",
            description=f"consul-backup schedule for {self._name}",
            schedule_expression=self._args.schedule,
            opts=self._child,
        )
        self.permission = aws.lambda_.Permission(
            f"{self._name}-invoke",
            action="lambda:InvokeFunction",
            function=self.function.name,
            principal="events.amazonaws.com",
            source_arn=rule.arn,
            opts=self._child,
        )
        self.target = aws.cloudwatch.EventTarget(
            f"{self._name}-target",
            rule=rule.name,
            arn=self.function.arn,
            retry_policy={
                "maximum_retry_attempts": 2,
                # A retry later than this would overlap the next scheduled run.
                "maximum_event_age_in_seconds": max(60, min(self._args.timeout * 2, 3600)),
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.permission]),
        )
        return rule

    def _create_alarm_topic(self) -> pulumi.Output[str]:
        args = self._args
        self.topic: aws.sns.Topic | None = None
        if args.alarm_topic_arn:
            topic_arn: pulumi.Input[str] = args.alarm_topic_arn
        else:
            # Not encrypted with alias/aws/sns: CloudWatch cannot publish to a
            # topic under an AWS-managed key, and alarms carry no secrets.
            self.topic = aws.sns.Topic(f"{self._name}-alarms", opts=self._child)
            topic_arn = self.topic.arn
        self.subscription: aws.sns.TopicSubscription | None = None
        if args.alarm_email:
            self.subscription = aws.sns.TopicSubscription(
                f"{self._name}-alarm-email",
                topic=topic_arn,
                protocol="email",
                endpoint=args.alarm_email,
                opts=self._child,
            )
        return pulumi.Output.from_input(topic_arn)

    def _create_alarms(self) -> tuple[aws.cloudwatch.MetricAlarm, aws.cloudwatch.MetricAlarm]:
        window = self._args.alarm_window_minutes
        errors = self._failure_alarm(
            "errors",
            "the backup function failed",
            ("AWS/Lambda", "Errors"),
            {"FunctionName": self.function.name},
        )
        missed = self._silence_alarm(
            "missed-backup", "no successful backup", SUCCESS_METRIC, window
        )
        self.retire_alarm = self._failure_alarm(
            "retire-failed",
            "snapshots beyond keepLatest could not be retired (expiry falls behind)",
            (NAMESPACE, RETIRE_FAILURE_METRIC),
            {CLUSTER_DIMENSION: self._name},
        )
        return errors, missed

    def _create_replication_alarms(self) -> list[aws.cloudwatch.MetricAlarm]:
        """Replication late (over 15 minutes) or failing, to the cluster's alarm topic."""
        replica = self.bucket.replica
        if replica is None:
            return []
        dimensions: dict[str, pulumi.Input[str]] = {
            "SourceBucket": self.bucket.name,
            "DestinationBucket": pulumi.Output.from_input(replica.bucket_arn).apply(
                lambda arn: arn.split(":::", 1)[-1]
            ),
            "RuleId": REPLICATION_RULE_ID,
        }
        watched = [
            ("replication-late", "ReplicationLatency", "Maximum", REPLICATION_MINUTES * 60, "late"),
            ("replication-failed", "OperationsFailedReplication", "Sum", 0, "failing"),
        ]
        return [
            aws.cloudwatch.MetricAlarm(
                f"{self._name}-{suffix}",
                alarm_description=f"consul-backup for {self._name}: replication is {what}",
                namespace="AWS/S3",
                metric_name=metric,
                dimensions=dimensions,
                statistic=statistic,
                period=300,
                evaluation_periods=1,
                threshold=threshold,
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",
                alarm_actions=[self.alarm_topic_arn],
                ok_actions=[self.alarm_topic_arn],
                opts=self._child,
            )
            for suffix, metric, statistic, threshold, what in watched
        ]

    def _create_verification(self) -> tuple[aws.lambda_.Function, aws.cloudwatch.EventRule]:
        """The daily re-verification: its own role (list and read only), log, function, schedule."""
        name, args = self._name, self._args
        replica = self.bucket.replica
        readable = [pulumi.Output.all(self.bucket.arn, self.key_prefix)]
        if replica is not None:
            readable.append(pulumi.Output.all(replica.bucket_arn, self.key_prefix))
        kms = [k for k in (self.kms_key_arn, replica.kms_key_arn if replica else None) if k]
        self.verify_log_group = aws.cloudwatch.LogGroup(
            f"{name}-verify-logs", retention_in_days=args.log_retention_days, opts=self._child
        )
        self.verify_role = aws.iam.Role(
            f"{name}-verify-role",
            description=f"consul-backup re-verification for Consul cluster {name}",
            assume_role_policy=json.dumps(assume_role_policy("lambda")),
            opts=self._child,
        )
        self.verify_role_policy = aws.iam.RolePolicy(
            f"{name}-verify-policy",
            role=self.verify_role.id,
            policy=pulumi.Output.all(self.verify_log_group.arn, *readable).apply(
                lambda values: json.dumps(
                    verify_function_policy(
                        readable=[tuple(pair) for pair in values[1:]],
                        log_group_arn=values[0],
                        kms_key_arns=kms,
                    ),
                    sort_keys=True,
                )
            ),
            opts=self._child,
        )
        environment: dict[str, pulumi.Input[str]] = {
            EnvVar.BACKUP_BUCKET: self.bucket.name,
            EnvVar.BACKUP_PREFIX: args.key_prefix,
            EnvVar.CLUSTER_NAME: name,
        }
        if replica is not None:
            environment[EnvVar.REPLICA_BUCKET] = pulumi.Output.from_input(replica.bucket_arn).apply(
                lambda arn: arn.split(":::", 1)[-1]
            )
            environment[EnvVar.REPLICA_REGION] = replica.region
        function = aws.lambda_.Function(
            f"{name}-verify",
            description=f"Re-reads and verifies the newest snapshot of {name}",
            runtime=RUNTIME,
            architectures=["arm64"],
            handler=VERIFY_HANDLER,
            code=function_archive(),
            role=self.verify_role.arn,
            memory_size=args.memory_size,
            timeout=args.timeout,
            environment={"variables": environment},
            logging_config={"log_format": "Text", "log_group": self.verify_log_group.name},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.verify_role_policy]),
        )
        rule = aws.cloudwatch.EventRule(
            f"{name}-verify-schedule",
            description=f"consul-backup re-verification schedule for {name}",
            schedule_expression=args.verify_schedule,
            opts=self._child,
        )
        permission = aws.lambda_.Permission(
            f"{name}-verify-invoke",
            action="lambda:InvokeFunction",
            function=function.name,
            principal="events.amazonaws.com",
            source_arn=rule.arn,
            opts=self._child,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-verify-target",
            rule=rule.name,
            arn=function.arn,
            retry_policy={"maximum_retry_attempts": 2, "maximum_event_age_in_seconds": 3600},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[permission]),
        )
        return function, rule

    def _create_verification_alarms(self) -> list[aws.cloudwatch.MetricAlarm]:
        """A failed re-verification, and none succeeding within two verify intervals."""
        failed = self._failure_alarm(
            "verify-failed",
            "a stored snapshot failed verification",
            (NAMESPACE, VERIFY_FAILURE_METRIC),
            {CLUSTER_DIMENSION: self._name},
        )
        missed = self._silence_alarm(
            "verify-missed",
            "no verification succeeded",
            VERIFY_SUCCESS_METRIC,
            self._args.verify_window_minutes,
        )
        return [failed, missed]

    def _failure_alarm(
        self,
        suffix: str,
        what: str,
        metric: tuple[str, str],
        dimensions: dict[str, pulumi.Input[str]],
    ) -> aws.cloudwatch.MetricAlarm:
        """An alarm as soon as ``metric`` (namespace, name) counts one failure."""
        return aws.cloudwatch.MetricAlarm(
            f"{self._name}-{suffix}",
            alarm_description=f"consul-backup for {self._name}: {what}",
            namespace=metric[0],
            metric_name=metric[1],
            dimensions=dimensions,
            statistic="Sum",
            period=300,
            evaluation_periods=1,
            threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=[self.alarm_topic_arn],
            ok_actions=[self.alarm_topic_arn],
            opts=self._child,
        )

    def _silence_alarm(
        self, suffix: str, what: str, metric: str, window_minutes: int
    ) -> aws.cloudwatch.MetricAlarm:
        """An alarm for ``window_minutes`` without one success of ``metric``."""
        period, periods = alarm_period(window_minutes)
        return aws.cloudwatch.MetricAlarm(
            f"{self._name}-{suffix}",
            alarm_description=(
                f"consul-backup for {self._name}: {what} in {window_minutes} minutes"
            ),
            namespace=NAMESPACE,
            metric_name=metric,
            dimensions={CLUSTER_DIMENSION: self._name},
            statistic="Sum",
            period=period,
            evaluation_periods=periods,
            datapoints_to_alarm=periods,
            threshold=1,
            comparison_operator="LessThanThreshold",
            # No data is exactly what a run that never happened looks like.
            treat_missing_data="breaching",
            alarm_actions=[self.alarm_topic_arn],
            ok_actions=[self.alarm_topic_arn],
            opts=self._child,
        )
