"""ScheduledFunction: a Lambda function run on a schedule, with its own role, log and alarms.

One code path for both of a cluster's functions, the backup and the daily
re-verification: a role only Lambda may assume and its inline policy, a log
group, the function (arm64, the runtime of ``function_code``), an EventBridge
rule with its invoke permission and target, an alarm on a failure and an alarm
on a run that did not succeed in time. The caller says what differs: the
handler, the policy, the environment, the schedule and what the alarms watch.

Before this component existed, these resources were children of the cluster's
``ConsulSnapshotBackup``; ``moved_from`` names it, and each child answers to
its old URN through an alias, so that ``pulumi up`` moves them and replaces
nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .alarms import Metric, failure_alarm, silence_alarm
from .args import Vpc
from .function_code import RUNTIME
from .policies import assume_role_policy
from .validation import ConfigError

# Lambda's limit for all environment variables of a function together, and room
# for the values only known after `pulumi up` (a bucket name, a secret's ARN).
LAMBDA_ENVIRONMENT_BYTES = 4096
UNKNOWN_VALUE_BYTES = 256
ARCHITECTURES = ["arm64"]
RETRY_ATTEMPTS = 2
# The role's inline policy, given the function's own log group's ARN.
RolePolicy = Callable[[pulumi.Output[str]], pulumi.Input[str]]


@dataclass(frozen=True)
class FailureAlarm:
    """An alarm on one failure: ``<name>-<suffix>``; without ``metric``, the function's Errors."""

    suffix: str
    description: str
    metric: Metric | None = None


@dataclass(frozen=True)
class MissedRunAlarm:
    """An alarm when ``metric`` counted no success for ``window_minutes``."""

    suffix: str
    description: str
    metric: Metric
    window_minutes: int


@dataclass(frozen=True)
class ScheduledFunctionArgs:
    """What one scheduled function is: its code and rights, when it runs, what is watched."""

    description: str
    role_description: str
    schedule_description: str
    handler: str
    code: pulumi.Archive
    role_policy: RolePolicy
    environment: Mapping[str, pulumi.Input[str]]
    schedule: str
    memory_size: int
    timeout: int
    log_retention_days: int
    alarm_topic_arn: pulumi.Input[str]
    failure_alarm: FailureAlarm
    missed_run_alarm: MissedRunAlarm
    kms_key_arn: str | None = None
    vpc: Vpc | None = None
    # The function's own name is `<name>-<function_suffix>`, or `<name>` without one
    # (the re-verification's function has always been named so).
    function_suffix: str | None = "function"


def check_environment_size(name: str, environment: Mapping[str, pulumi.Input[str]]) -> None:
    """Refuse at preview an environment Lambda would refuse at `pulumi up`."""
    size = sum(
        len(key) + (len(value.encode()) if isinstance(value, str) else UNKNOWN_VALUE_BYTES)
        for key, value in environment.items()
    )
    if size > LAMBDA_ENVIRONMENT_BYTES:
        raise ConfigError(
            [
                f"{name}: the function's environment would take about {size} bytes; "
                f"Lambda allows {LAMBDA_ENVIRONMENT_BYTES} (shorten consulAddress or datacenter)"
            ]
        )


def retry_max_event_age(timeout: int) -> int:
    """How long EventBridge may retry a failed invocation: twice a run, within an hour.

    A retry later than this would overlap the next scheduled run.
    """
    return max(60, min(timeout * 2, 3600))


class ScheduledFunction(pulumi.ComponentResource):
    """A Lambda function on a schedule, least privilege, logged and alarmed."""

    log_group: aws.cloudwatch.LogGroup
    role: aws.iam.Role
    role_policy: aws.iam.RolePolicy
    function: aws.lambda_.Function
    rule: aws.cloudwatch.EventRule
    permission: aws.lambda_.Permission
    target: aws.cloudwatch.EventTarget
    failure_alarm: aws.cloudwatch.MetricAlarm
    missed_run_alarm: aws.cloudwatch.MetricAlarm
    function_name: pulumi.Output[str]
    rule_name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: ScheduledFunctionArgs,
        opts: pulumi.ResourceOptions | None = None,
        moved_from: pulumi.Resource | None = None,
    ) -> None:
        check_environment_size(name, args.environment)
        super().__init__("consul-backup:index:ScheduledFunction", name, None, opts)
        self._name = name
        self._args = args
        aliases = [pulumi.Alias(parent=moved_from)] if moved_from is not None else []
        self._child = pulumi.ResourceOptions(parent=self, aliases=aliases)

        self.log_group = self._create_log_group()
        self.role, self.role_policy = self._create_role(self.log_group)
        self.function = self._create_function(self.role, self.role_policy, self.log_group)
        self.rule, self.permission, self.target = self._create_schedule(self.function)
        self.failure_alarm = self._create_failure_alarm(self.function)
        self.missed_run_alarm = self._create_missed_run_alarm()

        self.function_name = self.function.name
        self.rule_name = self.rule.name
        self.register_outputs(
            {
                "functionName": self.function_name,
                "ruleName": self.rule_name,
                "alarmNames": [self.failure_alarm.name, self.missed_run_alarm.name],
            }
        )

    def _options(self, *depends_on: pulumi.Resource) -> pulumi.ResourceOptions:
        return self._child.merge(pulumi.ResourceOptions(depends_on=list(depends_on)))

    def _create_log_group(self) -> aws.cloudwatch.LogGroup:
        return aws.cloudwatch.LogGroup(
            f"{self._name}-logs",
            retention_in_days=self._args.log_retention_days,
            opts=self._child,
        )

    def _create_role(
        self, log_group: aws.cloudwatch.LogGroup
    ) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        role = aws.iam.Role(
            f"{self._name}-role",
            description=self._args.role_description,
            assume_role_policy=json.dumps(assume_role_policy("lambda")),
            opts=self._child,
        )
        policy = aws.iam.RolePolicy(
            f"{self._name}-policy",
            role=role.id,
            policy=self._args.role_policy(log_group.arn),
            opts=self._child,
        )
        return role, policy

    def _create_function(
        self,
        role: aws.iam.Role,
        role_policy: aws.iam.RolePolicy,
        log_group: aws.cloudwatch.LogGroup,
    ) -> aws.lambda_.Function:
        args = self._args
        suffix = args.function_suffix
        vpc = args.vpc
        return aws.lambda_.Function(
            f"{self._name}-{suffix}" if suffix else self._name,
            description=args.description,
            runtime=RUNTIME,
            architectures=ARCHITECTURES,
            handler=args.handler,
            code=args.code,
            role=role.arn,
            memory_size=args.memory_size,
            timeout=args.timeout,
            environment={"variables": dict(args.environment)},
            logging_config={"log_format": "Text", "log_group": log_group.name},
            vpc_config={
                "subnet_ids": list(vpc.subnet_ids),
                "security_group_ids": list(vpc.security_group_ids),
            }
            if vpc is not None
            else None,
            kms_key_arn=args.kms_key_arn,
            # The role must carry its policy before the first scheduled run.
            opts=self._options(role_policy),
        )

    def _create_schedule(
        self, function: aws.lambda_.Function
    ) -> tuple[aws.cloudwatch.EventRule, aws.lambda_.Permission, aws.cloudwatch.EventTarget]:
        rule = aws.cloudwatch.EventRule(
            f"{self._name}-schedule",
            description=self._args.schedule_description,
            schedule_expression=self._args.schedule,
            opts=self._child,
        )
        permission = aws.lambda_.Permission(
            f"{self._name}-invoke",
            action="lambda:InvokeFunction",
            function=function.name,
            principal="events.amazonaws.com",
            source_arn=rule.arn,
            opts=self._child,
        )
        target = aws.cloudwatch.EventTarget(
            f"{self._name}-target",
            rule=rule.name,
            arn=function.arn,
            retry_policy={
                "maximum_retry_attempts": RETRY_ATTEMPTS,
                "maximum_event_age_in_seconds": retry_max_event_age(self._args.timeout),
            },
            opts=self._options(permission),
        )
        return rule, permission, target

    def _create_failure_alarm(self, function: aws.lambda_.Function) -> aws.cloudwatch.MetricAlarm:
        watched = self._args.failure_alarm
        metric = watched.metric or Metric("AWS/Lambda", "Errors", {"FunctionName": function.name})
        return failure_alarm(
            f"{self._name}-{watched.suffix}",
            watched.description,
            metric,
            self._args.alarm_topic_arn,
            self._child,
        )

    def _create_missed_run_alarm(self) -> aws.cloudwatch.MetricAlarm:
        watched = self._args.missed_run_alarm
        return silence_alarm(
            f"{self._name}-{watched.suffix}",
            watched.description,
            watched.metric,
            watched.window_minutes,
            self._args.alarm_topic_arn,
            self._child,
        )
