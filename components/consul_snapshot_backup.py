"""ConsulSnapshotBackup: everything one Consul cluster needs for verified backups.

Per cluster: the snapshot bucket (unless a shared one is passed in), the token
secret when the token comes from stack config, a least-privilege role, the log
group, the function, its EventBridge schedule, and the alarms. Every child is
parented to the component and named from its name, and no resource is created
inside an ``apply``: ``pulumi preview`` shows exactly what ``up`` will create.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .config import ClusterSettings
from .function_code import HANDLER, RUNTIME, function_archive
from .policies import VpcAccess, backup_function_policy, lambda_assume_role_policy
from .snapshot_bucket import RetentionRule, SnapshotBucket

METRIC_NAMESPACE = "ConsulBackup"  # what the function writes in EMF
SUCCESS_METRIC = "BackupSuccess"
ALARM_PERIOD_CAP_SECONDS = 86400


@dataclass
class ConsulSnapshotBackupArgs:
    """``settings`` decide the resources; the token is an Input kept secret."""

    settings: ClusterSettings
    # Exactly one of the two: the token itself (stored in a new secret) or
    # ``settings.token_secret_arn``.
    token: pulumi.Input[str] | None = None
    shared_bucket: SnapshotBucket | None = None
    key_prefix: str = "consul-snapshots/"


def retention_rule(settings: ClusterSettings, prefix: str) -> RetentionRule:
    cold = settings.cold_storage
    return RetentionRule(
        prefix=prefix,
        expire_days=settings.retention_days,
        noncurrent_days=settings.noncurrent_version_days,
        transition_days=cold.after_days if cold else None,
        transition_class=cold.storage_class if cold else None,
    )


def cluster_key_prefix(key_prefix: str, cluster: str) -> str:
    """Must agree with the function's own key layout (snapshot_backup.keys)."""
    base = key_prefix.strip().strip("/")
    return f"{base}/{cluster}/" if base else f"{cluster}/"


def alarm_period(window_minutes: int) -> tuple[int, int]:
    """(period seconds, evaluation periods) covering the window; periods cap at a day."""
    window = window_minutes * 60
    if window <= ALARM_PERIOD_CAP_SECONDS:
        return window, 1
    periods = -(-window // ALARM_PERIOD_CAP_SECONDS)
    return ALARM_PERIOD_CAP_SECONDS, periods


class ConsulSnapshotBackup(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    key_prefix: str
    function_name: pulumi.Output[str]
    rule_name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: ConsulSnapshotBackupArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("consul-backup:index:ConsulSnapshotBackup", name, None, opts)
        settings = args.settings
        if (args.token is None) == (settings.token_secret_arn is None):
            raise ValueError(
                f"cluster {settings.name}: give exactly one of token and token_secret_arn"
            )
        child = pulumi.ResourceOptions(parent=self)
        self.key_prefix = cluster_key_prefix(args.key_prefix, settings.name)

        if args.shared_bucket is None:
            bucket = SnapshotBucket(
                f"{name}-snapshots",
                retention=[retention_rule(settings, self.key_prefix)],
                kms_key_arn=settings.kms_key_arn,
                opts=child,
            )
        else:
            bucket = args.shared_bucket
        self.bucket = bucket
        kms_key_arn = bucket.kms_key_arn or settings.kms_key_arn

        if args.token is not None:
            self.secret: aws.secretsmanager.Secret | None = aws.secretsmanager.Secret(
                f"{name}-consul-token",
                description=f"Consul ACL token used by consul-backup for cluster {settings.name}",
                kms_key_id=kms_key_arn,
                opts=child,
            )
            self.secret_version: aws.secretsmanager.SecretVersion | None = (
                aws.secretsmanager.SecretVersion(
                    f"{name}-consul-token-version",
                    secret_id=self.secret.id,
                    secret_string=pulumi.Output.secret(args.token),
                    opts=child,
                )
            )
            secret_arn: pulumi.Input[str] = self.secret.arn
        else:
            self.secret = None
            self.secret_version = None
            assert settings.token_secret_arn is not None
            secret_arn = settings.token_secret_arn

        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            retention_in_days=settings.log_retention_days,
            opts=child,
        )

        self.role = aws.iam.Role(
            f"{name}-role",
            description=f"consul-backup function for Consul cluster {settings.name}",
            assume_role_policy=json.dumps(lambda_assume_role_policy()),
            opts=child,
        )
        vpc_base: pulumi.Input[str] | None = None
        if settings.vpc is not None:
            # Invokes: answered by the provider at preview, by Mocks.call in tests.
            region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self))
            identity = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
            partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self))
            vpc_base = pulumi.Output.format(
                "arn:{0}:ec2:{1}:{2}",
                partition.partition,
                region.region,
                identity.account_id,
            )
        vpc = settings.vpc
        key_prefix = self.key_prefix
        self.role_policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=self.role.id,
            policy=pulumi.Output.all(bucket.arn, secret_arn, self.log_group.arn, vpc_base).apply(
                lambda values: json.dumps(
                    backup_function_policy(
                        bucket_arn=values[0],
                        cluster_prefix=key_prefix,
                        secret_arn=values[1],
                        log_group_arn=values[2],
                        kms_key_arns=[kms_key_arn] if kms_key_arn else [],
                        vpc=VpcAccess(values[3], vpc.subnet_ids, vpc.security_group_ids)
                        if vpc is not None
                        else None,
                    ),
                    sort_keys=True,
                )
            ),
            opts=child,
        )

        environment: dict[str, pulumi.Input[str]] = {
            "CONSUL_HTTP_ADDR": settings.consul_address,
            "CONSUL_TOKEN_SECRET_ARN": secret_arn,
            "BACKUP_BUCKET": bucket.name,
            "BACKUP_PREFIX": args.key_prefix,
            "CLUSTER_NAME": settings.name,
            "CONSUL_STALE": "true" if settings.stale else "false",
        }
        if settings.datacenter:
            environment["CONSUL_DATACENTER"] = settings.datacenter
        if settings.ca_certificate:
            # A CA certificate is public: an environment variable is fine for it.
            environment["CONSUL_CACERT_PEM"] = settings.ca_certificate

        self.function = aws.lambda_.Function(
            f"{name}-function",
            description=f"Streams verified Consul snapshots of {settings.name} into S3",
            runtime=RUNTIME,
            architectures=["arm64"],
            handler=HANDLER,
            code=function_archive(),
            role=self.role.arn,
            memory_size=settings.memory_size,
            timeout=settings.timeout,
            environment={"variables": environment},
            logging_config={"log_format": "Text", "log_group": self.log_group.name},
            vpc_config={
                "subnet_ids": list(settings.vpc.subnet_ids),
                "security_group_ids": list(settings.vpc.security_group_ids),
            }
            if settings.vpc is not None
            else None,
            kms_key_arn=kms_key_arn,
            # The role must carry its policy before the first scheduled run.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.role_policy]),
        )

        self.rule = aws.cloudwatch.EventRule(
            f"{name}-schedule",
            description=f"consul-backup schedule for {settings.name}",
            schedule_expression=settings.schedule,
            opts=child,
        )
        self.permission = aws.lambda_.Permission(
            f"{name}-invoke",
            action="lambda:InvokeFunction",
            function=self.function.name,
            principal="events.amazonaws.com",
            source_arn=self.rule.arn,
            opts=child,
        )
        self.target = aws.cloudwatch.EventTarget(
            f"{name}-target",
            rule=self.rule.name,
            arn=self.function.arn,
            retry_policy={
                "maximum_retry_attempts": 2,
                # A retry later than this would overlap the next scheduled run.
                "maximum_event_age_in_seconds": max(60, min(settings.timeout * 2, 3600)),
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.permission]),
        )

        if settings.alarm_topic_arn:
            self.topic: aws.sns.Topic | None = None
            topic_arn: pulumi.Input[str] = settings.alarm_topic_arn
        else:
            # Not encrypted with alias/aws/sns: CloudWatch cannot publish to a
            # topic under an AWS-managed key, and alarms carry no secrets.
            self.topic = aws.sns.Topic(f"{name}-alarms", opts=child)
            topic_arn = self.topic.arn
        self.subscription: aws.sns.TopicSubscription | None = None
        if settings.alarm_email:
            self.subscription = aws.sns.TopicSubscription(
                f"{name}-alarm-email",
                topic=topic_arn,
                protocol="email",
                endpoint=settings.alarm_email,
                opts=child,
            )

        self.errors_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-errors",
            alarm_description=f"consul-backup for {settings.name}: the backup function failed",
            namespace="AWS/Lambda",
            metric_name="Errors",
            dimensions={"FunctionName": self.function.name},
            statistic="Sum",
            period=300,
            evaluation_periods=1,
            threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=[topic_arn],
            ok_actions=[topic_arn],
            opts=child,
        )
        period, periods = alarm_period(settings.missed_backup_window_minutes)
        self.missed_backup_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-missed-backup",
            alarm_description=(
                f"consul-backup for {settings.name}: no successful backup in "
                f"{settings.missed_backup_window_minutes} minutes"
            ),
            namespace=METRIC_NAMESPACE,
            metric_name=SUCCESS_METRIC,
            dimensions={"Cluster": settings.name},
            statistic="Sum",
            period=period,
            evaluation_periods=periods,
            datapoints_to_alarm=periods,
            threshold=1,
            comparison_operator="LessThanThreshold",
            # No data is exactly what a backup that never ran looks like.
            treat_missing_data="breaching",
            alarm_actions=[topic_arn],
            ok_actions=[topic_arn],
            opts=child,
        )

        self.bucket_name = bucket.name
        self.function_name = self.function.name
        self.rule_name = self.rule.name
        self.alarm_topic_arn = pulumi.Output.from_input(topic_arn)
        self.register_outputs(
            {
                "bucket": self.bucket_name,
                "keyPrefix": self.key_prefix,
                "functionName": self.function_name,
                "ruleName": self.rule_name,
                "alarmTopicArn": self.alarm_topic_arn,
            }
        )
