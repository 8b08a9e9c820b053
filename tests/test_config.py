"""Stack config validation: every mistake named by cluster and field, at preview."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from components.config import ConfigError, parse_stack
from testbed.pulumi_mocks import run_program
from testbed.stack_file import EXAMPLE_PASSPHRASE, StackConfigError, load_stack_config

REPO = Path(__file__).resolve().parent.parent
ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:consul/token-AbCdEf"
GOOD: dict[str, Any] = {
    "clusters": [
        {"name": "alpha", "consulAddress": "https://consul.alpha:8501", "tokenSecretArn": ARN},
        {"name": "beta", "consulAddress": "http://consul.beta:8500"},
    ],
    "tokens": {"beta": "secret-token"},
}


def problems_for(mutate) -> list[str]:
    stack = copy.deepcopy(GOOD)
    mutate(stack)
    with pytest.raises(ConfigError) as raised:
        parse_stack(stack["clusters"], stack.get("tokens"), stack.get("sharedBucket"))
    return raised.value.problems


def beta(**fields):
    def mutate(stack):
        stack["clusters"][1].update(fields)
        for key in [k for k, v in fields.items() if v is None]:
            del stack["clusters"][1][key]

    return mutate


CASES = {
    # missing and malformed fields
    "missing name": (
        lambda s: s["clusters"][1].pop("name") and s["tokens"].clear(),
        "clusters[1]: name is required",
    ),
    "missing address": (beta(consulAddress=None), "clusters[1] (beta): consulAddress is required"),
    "address without scheme": (
        beta(consulAddress="consul.beta:8500"),
        "clusters[1] (beta): consulAddress 'consul.beta:8500' is not an http:// or https:// URL",
    ),
    "address with bad port": (
        beta(consulAddress="http://consul:85x0"),
        "clusters[1] (beta): consulAddress 'http://consul:85x0' has an invalid port",
    ),
    "not a PEM": (beta(caCertificate="hello"), "clusters[1] (beta): caCertificate is not a PEM"),
    "bad email": (beta(alarmEmail="oncall"), "alarmEmail 'oncall' is not an e-mail address"),
    "bad KMS ARN": (beta(kmsKeyArn="alias/mine"), "kmsKeyArn 'alias/mine' is not a KMS key ARN"),
    "bad secret ARN": (
        lambda s: s["clusters"][0].update(tokenSecretArn="consul-token"),
        "clusters[0] (alpha): tokenSecretArn 'consul-token' is not a Secrets Manager secret ARN",
    ),
    # names AWS would reject, and duplicates
    "uppercase name": (
        lambda s: s["clusters"][0].update(name="Alpha"),
        "clusters[0] (Alpha): name 'Alpha' is not a valid cluster name",
    ),
    "name too long": (
        lambda s: s["clusters"][0].update(name="a" * 33),
        f"name '{'a' * 33}' is not a valid cluster name",
    ),
    "name ending in hyphen": (
        lambda s: s["clusters"][0].update(name="alpha-"),
        "clusters[0] (alpha-): name 'alpha-' is not a valid cluster name",
    ),
    "duplicate name": (
        lambda s: (
            s["clusters"][0].update(name="beta", tokenSecretArn=None)
            or s["clusters"][0].pop("tokenSecretArn")
        ),
        "clusters[1] (beta): name is already used by clusters[0]",
    ),
    # schedules only AWS would reject
    "schedule prose": (
        beta(schedule="every day"),
        "clusters[1] (beta): schedule \"every day\": 'every day' is not an EventBridge "
        "rate() or cron() expression",
    ),
    "rate 1 hours": (beta(schedule="rate(1 hours)"), "AWS wants rate(1 hour), not rate(1 hours)"),
    "rate 5 minute": (
        beta(schedule="rate(5 minute)"),
        "AWS wants rate(5 minutes), not rate(5 minute)",
    ),
    "rate zero": (beta(schedule="rate(0 minutes)"), "a rate must be at least 1"),
    "cron five fields": (beta(schedule="cron(0 3 * * *)"), "has 6 fields"),
    "cron both day fields": (
        beta(schedule="cron(0 3 * * * *)"),
        "needs '?' in exactly one of day-of-month and day-of-week",
    ),
    "cron hour 24": (beta(schedule="cron(0 24 * * ? *)"), "cron hours value 24 is outside 0-23"),
    # out-of-range numbers
    "retention zero": (
        beta(retentionDays=0),
        "clusters[1] (beta): retentionDays 0 is out of range",
    ),
    "memory too small": (beta(memorySize=64), "memorySize 64 is out of range (128 to 10240)"),
    "timeout too long": (beta(timeout=901), "timeout 901 is out of range (30 to 900)"),
    "log retention not allowed": (
        beta(logRetentionDays=31),
        "logRetentionDays 31 is not a CloudWatch Logs retention",
    ),
    "cold storage after expiry": (
        beta(retentionDays=30, coldStorage={"storageClass": "GLACIER", "afterDays": 30}),
        "coldStorage.afterDays 30 must be less than retentionDays (30)",
    ),
    "IA before 30 days": (
        beta(retentionDays=90, coldStorage={"storageClass": "STANDARD_IA", "afterDays": 7}),
        "coldStorage.afterDays 7 is below S3's 30 days for STANDARD_IA",
    ),
    "unknown storage class": (
        beta(coldStorage={"storageClass": "TAPE", "afterDays": 40}, retentionDays=90),
        "coldStorage.storageClass 'TAPE' is not one of",
    ),
    "alarm window shorter than interval": (
        beta(schedule="rate(6 hours)", missedBackupWindowMinutes=60),
        "missedBackupWindowMinutes 60 is shorter than the schedule's interval (360 minutes)",
    ),
    # wrong types
    "stale as string": (
        beta(stale="yes"),
        "clusters[1] (beta): stale must be true or false, not a string 'yes'",
    ),
    "retention as string": (
        beta(retentionDays="30"),
        "retentionDays must be a whole number, not a string '30'",
    ),
    "retention fractional": (
        beta(retentionDays=7.5),
        "retentionDays must be a whole number, not a number 7.5",
    ),
    "memory as bool": (
        beta(memorySize=True),
        "memorySize must be a whole number, not a boolean True",
    ),
    "vpc as list": (
        beta(vpc=["subnet-0123456789abcdef0"]),
        "clusters[1] (beta): vpc must be an object, not a list",
    ),
    "cluster not an object": (
        lambda s: s["clusters"].append("gamma"),
        "clusters[2]: must be an object, not a string",
    ),
    "name as number": (
        lambda s: s["clusters"][0].update(name=7),
        "clusters[0]: name 7 is not a valid cluster name",
    ),
    # unknown keys
    "typo": (
        beta(retentionDay=30),
        "clusters[1] (beta): unknown key 'retentionDay' (did you mean 'retentionDays'?)",
    ),
    "unknown nested key": (
        beta(
            vpc={
                "subnetIds": ["subnet-0123456789abcdef0"],
                "securityGroupIds": ["sg-0123456789abcdef0"],
                "vpcId": "vpc-1",
            }
        ),
        "clusters[1] (beta): unknown key 'vpc.vpcId'",
    ),
    # the token: neither, both, or for a cluster that does not exist (the arguments
    # judge the first two, naming the token by its stack config key)
    "no token": (
        lambda s: s["tokens"].clear(),
        "clusters[1] (beta): tokens.beta and tokenSecretArn: give exactly one",
    ),
    "two tokens": (
        lambda s: s["tokens"].update(alpha="another"),
        "clusters[0] (alpha): tokens.alpha and tokenSecretArn: give exactly one",
    ),
    "token for nobody": (
        lambda s: s["tokens"].update(gamma="x"),
        "tokens.gamma: there is no cluster named 'gamma'",
    ),
    "empty token": (
        lambda s: s["tokens"].update(beta=""),
        "clusters[1] (beta): tokens.beta must be a non-empty string",
    ),
    # addresses that would carry a secret, or hide what they are
    "address with user and password": (
        beta(consulAddress="https://backup:hunter2@consul.beta:8501"),
        "clusters[1] (beta): consulAddress carries a user or password (user:password@...)",
    ),
    "address with a space": (
        beta(consulAddress="http://consul.beta :8500"),
        "clusters[1] (beta): consulAddress contains whitespace or a control character",
    ),
    "address with a newline": (
        beta(consulAddress="http://consul.beta:8500\n"),
        "clusters[1] (beta): consulAddress contains whitespace or a control character",
    ),
    "address with a control character": (
        beta(consulAddress="http://consul\x00.beta:8500"),
        "clusters[1] (beta): consulAddress contains whitespace or a control character",
    ),
    # the content-drop threshold
    "content drop zero": (
        beta(contentDropPercent=0),
        "clusters[1] (beta): contentDropPercent 0 is out of range (1 to 100)",
    ),
    "content drop over 100": (
        beta(contentDropPercent=101),
        "clusters[1] (beta): contentDropPercent 101 is out of range (1 to 100)",
    ),
    # incomplete VPC settings
    "vpc without security groups": (
        beta(vpc={"subnetIds": ["subnet-0123456789abcdef0"]}),
        "clusters[1] (beta): vpc.securityGroupIds is required",
    ),
    "vpc with empty subnets": (
        beta(vpc={"subnetIds": [], "securityGroupIds": ["sg-0123456789abcdef0"]}),
        "clusters[1] (beta): vpc.subnetIds needs at least one entry",
    ),
    "vpc with a bad subnet": (
        beta(vpc={"subnetIds": ["vpc-123"], "securityGroupIds": ["sg-0123456789abcdef0"]}),
        "vpc.subnetIds entry 'vpc-123' is not a subnet ID",
    ),
    # shared bucket
    "kms per cluster with a shared bucket": (
        lambda s: (
            s.update(sharedBucket={})
            or s["clusters"][1].update(kmsKeyArn="arn:aws:kms:eu-west-1:123456789012:key/abcd-1234")
        ),
        "clusters[1] (beta): kmsKeyArn is the shared bucket's here: set sharedBucket.kmsKeyArn",
    ),
    "replica per cluster with a shared bucket": (
        lambda s: (
            s.update(sharedBucket={}) or s["clusters"][1].update(replica={"region": "eu-central-1"})
        ),
        "clusters[1] (beta): replica is the shared bucket's here: set sharedBucket.replica",
    ),
    # the floor, the lock and the replica
    "keep none": (
        beta(keepLatest=0),
        "clusters[1] (beta): keepLatest 0 is out of range (1 to 1000)",
    ),
    "keep too many": (beta(keepLatest=1001), "keepLatest 1001 is out of range (1 to 1000)"),
    "lock mode": (
        beta(objectLock={"mode": "FOREVER", "days": 30}),
        "clusters[1] (beta): objectLock.mode 'FOREVER' is not a lock mode",
    ),
    "lock without days": (
        beta(objectLock={"mode": "GOVERNANCE"}),
        "clusters[1] (beta): objectLock.days is required",
    ),
    "replica both ways": (
        beta(replica={"region": "eu-central-1", "bucketArn": "arn:aws:s3:::vault-bucket"}),
        "clusters[1] (beta): replica needs one of replica.region (a new bucket) and "
        "replica.bucketArn (an existing one)",
    ),
    "replica vault without account": (
        beta(replica={"bucketArn": "arn:aws:s3:::vault-bucket"}),
        "replica.bucketArn and replica.accountId go together",
    ),
    "replica bad region": (
        beta(replica={"region": "Frankfurt"}),
        "replica.region 'Frankfurt' is not an AWS region",
    ),
    "replica key elsewhere": (
        beta(
            replica={
                "region": "eu-central-1",
                "kmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/abcd-1234",
            }
        ),
        "replica.kmsKeyArn is in us-east-1, not in the replica's region eu-central-1",
    ),
    "wildcard in the shared prefix": (
        lambda s: s.update(sharedBucket={"prefix": "backups/*"}),
        "sharedBucket: prefix 'backups/*' is not an S3 key prefix (no * or ?",
    ),
    "lock per cluster with a shared bucket": (
        lambda s: (
            s.update(sharedBucket={})
            or s["clusters"][1].update(objectLock={"mode": "GOVERNANCE", "days": 1})
        ),
        "clusters[1] (beta): objectLock is the shared bucket's here: set sharedBucket.objectLock",
    ),
    "alarm email and topic": (
        beta(alarmEmail="a@b.co", alarmTopicArn="arn:aws:sns:eu-west-1:123456789012:ops"),
        "alarmEmail and alarmTopicArn are exclusive",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_each_mistake_is_named(case):
    mutate, message = CASES[case]
    problems = problems_for(mutate)
    assert any(message in problem for problem in problems), problems


def test_all_mistakes_are_reported_at_once():
    def many(stack):
        stack["clusters"][0].update(schedule="daily", retentionDays=-1)
        stack["clusters"][1].update(stale="no")

    problems = problems_for(many)
    assert len(problems) == 3
    assert [p.split(":")[0] for p in problems] == ["clusters[0] (alpha)"] * 2 + [
        "clusters[1] (beta)"
    ]


def test_a_token_value_is_never_echoed():
    def wrong(stack):
        stack["tokens"]["beta"] = 12345

    problems = problems_for(wrong)
    assert problems == ["clusters[1] (beta): tokens.beta must be a non-empty string"]


def test_a_password_in_the_address_is_never_echoed():
    problems = problems_for(beta(consulAddress="https://backup:hunter2@consul.beta:8501"))
    assert problems and all("hunter2" not in p and "backup:" not in p for p in problems)
    # Even where the URL is no URL at all (no scheme: the user reads as one).
    problems = problems_for(beta(consulAddress="backup:hunter2@consul.beta:8501"))
    assert problems and all("hunter2" not in p for p in problems)


def test_a_token_not_set_with_secret_is_refused_at_preview_naming_the_command():
    # The stack file holds the token in plain text: `pulumi config set` without --secret.
    with pytest.raises(ConfigError) as raised:
        run_program(GOOD, preview=True, secret_keys=[])
    assert raised.value.problems == [
        "tokens.beta: is stored in plain text in the stack's config (not set with --secret): "
        "set it again with `pulumi config set --secret --path 'tokens.beta' <token>`"
    ]
    assert "secret-token" not in str(raised.value)
    # The same stack with the key set as a secret deploys.
    run_program(GOOD, preview=True, secret_keys=["consul-backup:tokens"])


def test_a_stack_without_tokens_needs_no_secret():
    stack = {"clusters": [GOOD["clusters"][0]]}
    run = run_program(stack, preview=True, secret_keys=[])
    assert run.one("consul-backup:index:ConsulSnapshotBackup", "alpha")


def test_the_program_refuses_bad_config_when_it_starts():
    stack = copy.deepcopy(GOOD)
    stack["clusters"][1]["schedule"] = "every day"
    with pytest.raises(ConfigError, match=r"clusters\[1\] \(beta\): schedule \"every day\""):
        run_program(stack, preview=True)


def test_no_clusters_at_all():
    with pytest.raises(ConfigError, match="clusters: needs a list with at least one cluster"):
        parse_stack(None)


def test_the_example_stack_is_valid_and_its_secret_decrypts():
    values, secret_keys = load_stack_config(REPO / "Pulumi.dev.yaml", EXAMPLE_PASSPHRASE)
    assert secret_keys == {"consul-backup:tokens"}
    settings = parse_stack(values["consul-backup:clusters"], values["consul-backup:tokens"], None)
    assert [c.name for c in settings.clusters] == ["prod", "staging"]
    prod, staging = (cluster.args for cluster in settings.clusters)
    assert prod.token_secret_arn and prod.token is None
    assert staging.token and staging.token_secret_arn is None
    run = run_program(values, secret_keys=sorted(secret_keys))
    assert {r.name for r in run.of_type("aws:lambda/function:Function")} == {
        "prod-function",
        "prod-verify",
        "staging-function",
        "staging-verify",
    }


def test_the_example_stack_refuses_a_wrong_passphrase():
    with pytest.raises(StackConfigError, match="incorrect passphrase"):
        load_stack_config(REPO / "Pulumi.dev.yaml", "not-the-passphrase")
