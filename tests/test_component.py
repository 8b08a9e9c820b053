"""The stack program and ConsulSnapshotBackup under Pulumi mocks.

Each test runs the program afresh. Preview runs keep computed outputs unknown,
as a real preview does; assertions about absence check first that the value
they search is known, so that none passes on an unknown.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pulumi
import pytest

from components import ConfigError, ConsulSnapshotBackup, ConsulSnapshotBackupArgs
from components.function_code import FUNCTION_ROOT, FUNCTION_SOURCES
from components.outputs import ClusterOutputs
from components.policies import snapshot_bucket_policy
from testbed.pulumi_mocks import (
    ACCOUNT,
    INVOKES,
    REGION,
    SECRET_KIND,
    SECRET_SIG,
    ProgramRun,
    contains_unknown,
    is_unknown,
    run_program,
)

TOKEN = "b3ta-t0ken-7c1e0d9a"
ALPHA_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:consul/alpha-AbCdEf"
KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
STACK: dict[str, Any] = {
    "clusters": [
        {
            "name": "alpha",
            "consulAddress": "https://consul.alpha.internal:8501",
            "tokenSecretArn": ALPHA_SECRET,
            "datacenter": "dc1",
            "stale": True,
            "schedule": "rate(30 minutes)",
            "retentionDays": 90,
            "coldStorage": {"storageClass": "GLACIER_IR", "afterDays": 30},
            "caCertificate": CA_PEM,
            "vpc": {
                "subnetIds": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
                "securityGroupIds": ["sg-0123456789abcdef0"],
            },
            "kmsKeyArn": KMS_KEY,
            "memorySize": 512,
            "timeout": 300,
            "alarmEmail": "oncall@example.com",
        },
        {"name": "beta", "consulAddress": "http://consul.beta.internal:8500"},
        {
            "name": "gamma",
            "consulAddress": "http://10.1.2.3:8500",
            "tokenSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gamma-XyZ123",
            "schedule": "cron(0 3 * * ? *)",
            "alarmTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:ops-alerts",
        },
    ],
    "tokens": {"beta": TOKEN},
}
PER_CLUSTER = {
    "aws:s3/bucket:Bucket": "{c}-snapshots-bucket",
    "aws:s3/bucketVersioning:BucketVersioning": "{c}-snapshots-versioning",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        "{c}-snapshots-encryption"
    ),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": "{c}-snapshots-public-access-block",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": "{c}-snapshots-ownership",
    "aws:s3/bucketPolicy:BucketPolicy": "{c}-snapshots-deny-plain-http",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": "{c}-snapshots-lifecycle",
    "aws:iam/role:Role": "{c}-role",
    "aws:iam/rolePolicy:RolePolicy": "{c}-policy",
    "aws:cloudwatch/logGroup:LogGroup": "{c}-logs",
    "aws:lambda/function:Function": "{c}-function",
    "aws:cloudwatch/eventRule:EventRule": "{c}-schedule",
    "aws:cloudwatch/eventTarget:EventTarget": "{c}-target",
    "aws:lambda/permission:Permission": "{c}-invoke",
    "aws:cloudwatch/metricAlarm:MetricAlarm": "{c}-errors",
}


@pytest.fixture(scope="module")
def up() -> ProgramRun:
    return run_program(STACK)


@pytest.fixture(scope="module")
def preview() -> ProgramRun:
    return run_program(STACK, preview=True)


def policy_of(run: ProgramRun, cluster: str) -> dict[str, Any]:
    raw = run.one("aws:iam/rolePolicy:RolePolicy", f"{cluster}-policy").inputs["policy"]
    assert isinstance(raw, str), "the policy must be known after up"
    return json.loads(raw)


def statements_by_sid(policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in policy["Statement"]}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("mode", ["up", "preview"])
def test_every_cluster_gets_its_resources_and_preview_matches_up(mode, up, preview):
    run = up if mode == "up" else preview
    for cluster in ("alpha", "beta", "gamma"):
        for typ, pattern in PER_CLUSTER.items():
            run.one(typ, pattern.format(c=cluster))
        run.one("consul-backup:index:ConsulSnapshotBackup", cluster)
        run.one("aws:cloudwatch/metricAlarm:MetricAlarm", f"{cluster}-missed-backup")
    assert {(r.type, r.name) for r in preview.resources} == {(r.type, r.name) for r in up.resources}


def test_token_secret_only_where_the_token_came_from_config(up):
    secrets = up.of_type("aws:secretsmanager/secret:Secret")
    assert [s.name for s in secrets] == ["beta-consul-token"]
    version = up.one("aws:secretsmanager/secretVersion:SecretVersion", "beta-consul-token-version")
    # Marked secret: Pulumi encrypts it in state and masks it in the preview.
    assert version.inputs["secretString"] == {SECRET_SIG: SECRET_KIND, "value": TOKEN}


@pytest.mark.parametrize("mode", ["up", "preview"])
def test_the_token_appears_nowhere_else(mode, up, preview):
    run = up if mode == "up" else preview
    beta_function = run.one("aws:lambda/function:Function", "beta-function")
    env = beta_function.inputs["environment"]["variables"]
    # Known where it matters, or the search below would prove nothing.
    assert not contains_unknown(
        {k: v for k, v in env.items() if k != "CONSUL_TOKEN_SECRET_ARN" and k != "BACKUP_BUCKET"}
    )
    assert "CONSUL_HTTP_TOKEN" not in env
    for resource in run.resources:
        if resource.name == "beta-consul-token-version":
            continue
        assert TOKEN not in json.dumps(resource.inputs, default=str), resource.name
    if mode == "up":
        assert not contains_unknown(run.exports)
    assert TOKEN not in json.dumps(run.exports, default=str)


def test_stack_exports_per_cluster(up, preview):
    assert set(up.exports) == {"clusters", "dashboardUrl"}
    assert set(up.exports["clusters"]) == {"alpha", "beta", "gamma"}
    alpha = up.exports["clusters"]["alpha"]
    assert alpha == {
        "bucket": "alpha-snapshots-bucket-0a1b2c3",
        "prefix": "consul-snapshots/",
        "keyPrefix": "consul-snapshots/alpha/",
        "region": REGION,
        "functionName": "alpha-function-0a1b2c3",
        "verifyFunctionName": "alpha-verify-0a1b2c3",
        "ruleName": "alpha-schedule-0a1b2c3",
        "alarmTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:alpha-alarms",
        "replicaBucket": "",
        "replicaBucketArn": "",
        "replicaRegion": "",
        # What `consul-backup status` reads: the window of two 30-minute intervals.
        "backupWindowMinutes": 60,
        "alarmNames": [
            "alpha-errors-0a1b2c3",
            "alpha-missed-backup-0a1b2c3",
            "alpha-retire-failed-0a1b2c3",
            "alpha-content-drop-0a1b2c3",
            "alpha-verify-failed-0a1b2c3",
            "alpha-verify-missed-0a1b2c3",
        ],
        "keepLatest": 7,
        "contentDropPercent": 50,
    }
    # Exactly the keys of the contract the CLI reads.
    assert set(alpha) == set(ClusterOutputs.keys().values())
    assert (
        up.exports["clusters"]["gamma"]["alarmTopicArn"]
        == f"arn:aws:sns:{REGION}:{ACCOUNT}:ops-alerts"
    )
    # At preview the generated names are not known yet, and nothing pretends they are.
    assert is_unknown(preview.exports["clusters"]["alpha"]["bucket"])
    assert preview.exports["clusters"]["alpha"]["keyPrefix"] == "consul-snapshots/alpha/"


def test_the_component_registers_what_the_program_exports():
    captured: dict[str, Any] = {}

    def program() -> dict[str, Any]:
        backup = ConsulSnapshotBackup(
            "alpha",
            ConsulSnapshotBackupArgs(
                consul_address="http://consul:8500", token_secret_arn=ALPHA_SECRET
            ),
        )
        captured["outputs"] = backup.outputs
        return {"alpha": pulumi.Output.all(**backup.outputs)}

    run = run_program({}, program=program)
    assert set(captured["outputs"]) == set(ClusterOutputs.keys().values())
    assert ClusterOutputs.from_dict("alpha", run.exports["alpha"]).function_name == (
        "alpha-function-0a1b2c3"
    )


def test_bucket_is_private_encrypted_versioned(up):
    for cluster in ("alpha", "beta"):
        pab = up.one(
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            f"{cluster}-snapshots-public-access-block",
        )
        assert all(
            pab.inputs[k] is True
            for k in (
                "blockPublicAcls",
                "blockPublicPolicy",
                "ignorePublicAcls",
                "restrictPublicBuckets",
            )
        )
        ownership = up.one(
            "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
            f"{cluster}-snapshots-ownership",
        )
        assert ownership.inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
        versioning = up.one(
            "aws:s3/bucketVersioning:BucketVersioning", f"{cluster}-snapshots-versioning"
        )
        assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
        policy = json.loads(
            up.one(
                "aws:s3/bucketPolicy:BucketPolicy", f"{cluster}-snapshots-deny-plain-http"
            ).inputs["policy"]
        )
        deny = policy["Statement"][0]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {
            "Bool": {"aws:SecureTransport": "false"}
        }
        assert f"arn:aws:s3:::{cluster}-snapshots-bucket-0a1b2c3/*" in deny["Resource"]
    kms = up.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "alpha-snapshots-encryption",
    )
    assert kms.inputs["rules"][0]["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms",
        "kmsMasterKeyId": KMS_KEY,
    }
    aes = up.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "beta-snapshots-encryption",
    )
    assert aes.inputs["rules"][0]["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "AES256"
    }


def test_lifecycle_rules(up):
    alpha = up.one(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "alpha-snapshots-lifecycle",
    )
    retired, housekeeping = alpha.inputs["rules"]
    # Only snapshots the function retired (beyond the newest keepLatest) expire.
    assert retired["status"] == "Enabled"
    assert retired["filter"] == {
        "and": {"prefix": "consul-snapshots/alpha/", "tags": {"consul-backup-retired": "true"}}
    }
    assert retired["expiration"] == {"days": 90}
    assert set(retired) == {"id", "status", "filter", "expiration"}
    assert housekeeping["filter"] == {"prefix": "consul-snapshots/alpha/"}
    assert housekeeping["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 1}
    assert housekeeping["expiration"] == {"expiredObjectDeleteMarker": True}
    assert housekeeping["noncurrentVersionExpiration"] == {"noncurrentDays": 7}
    assert housekeeping["transitions"] == [{"days": 30, "storageClass": "GLACIER_IR"}]
    beta_retired, beta_housekeeping = up.one(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "beta-snapshots-lifecycle",
    ).inputs["rules"]
    assert beta_retired["expiration"] == {"days": 30} and "transitions" not in beta_housekeeping


def test_role_can_only_be_assumed_by_lambda(up):
    for cluster in ("alpha", "beta", "gamma"):
        doc = json.loads(up.one("aws:iam/role:Role", f"{cluster}-role").inputs["assumeRolePolicy"])
        [statement] = doc["Statement"]
        assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
        assert statement["Action"] == "sts:AssumeRole"


def test_policy_is_least_privilege(up):
    for cluster in ("alpha", "beta", "gamma"):
        policy = policy_of(up, cluster)
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            for action in as_list(statement["Action"]):
                assert "*" not in action, f"wildcard action {action}"
                assert "Delete" not in action or action in (
                    "ec2:DeleteNetworkInterface",
                    "s3:DeleteObject",  # of the cluster's .retired markers only
                )
            if statement["Resource"] == "*":
                assert statement["Action"] == "ec2:DescribeNetworkInterfaces"
        by_sid = statements_by_sid(policy)
        s3 = by_sid["WriteSnapshotsUnderThisClustersPrefix"]
        assert sorted(s3["Action"]) == ["s3:AbortMultipartUpload", "s3:PutObject"]
        own = f"arn:aws:s3:::{cluster}-snapshots-bucket-0a1b2c3/consul-snapshots/{cluster}/*"
        assert s3["Resource"] == own
        assert by_sid["ReadThisClustersManifests"]["Resource"] == f"{own}.manifest.json"
        assert by_sid["ClearRetiredMarkers"]["Resource"] == f"{own}.retired"
        logs = by_sid["WriteOwnLogs"]
        assert (
            logs["Resource"]
            == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{cluster}-logs-0a1b2c3:*"
        )
    assert (
        statements_by_sid(policy_of(up, "alpha"))["ReadThisClustersConsulToken"]["Resource"]
        == ALPHA_SECRET
    )
    assert statements_by_sid(policy_of(up, "beta"))["ReadThisClustersConsulToken"]["Resource"] == (
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:beta-consul-token-AbCdEf"
    )


def test_kms_and_vpc_rights_only_when_used(up):
    alpha = statements_by_sid(policy_of(up, "alpha"))
    assert alpha["UseTheKeysInUse"]["Resource"] == [KMS_KEY]
    create = alpha["CreateNetworkInterfacesInTheGivenSubnets"]["Resource"]
    base = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
    assert create == [
        f"{base}:network-interface/*",
        f"{base}:subnet/subnet-0123456789abcdef0",
        f"{base}:subnet/subnet-0fedcba9876543210",
        f"{base}:security-group/sg-0123456789abcdef0",
    ]
    beta = statements_by_sid(policy_of(up, "beta"))
    assert not any(
        sid.startswith(("UseTheKeys", "CreateNetwork", "Describe", "Manage")) for sid in beta
    )
    assert all(
        not a.startswith(("kms:", "ec2:")) for s in beta.values() for a in as_list(s["Action"])
    )


def test_the_policy_is_unknown_at_preview_not_silently_empty(preview):
    policy = preview.one("aws:iam/rolePolicy:RolePolicy", "alpha-policy").inputs["policy"]
    assert is_unknown(policy)


def test_function_settings_and_environment(up):
    alpha = up.one("aws:lambda/function:Function", "alpha-function").inputs
    assert alpha["runtime"] == "python3.13"
    assert alpha["architectures"] == ["arm64"]
    assert alpha["handler"] == "handler.handler"
    assert alpha["memorySize"] == 512 and alpha["timeout"] == 300
    assert alpha["role"] == f"arn:aws:iam:{REGION}:{ACCOUNT}:alpha-role"
    assert alpha["vpcConfig"] == {
        "subnetIds": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
        "securityGroupIds": ["sg-0123456789abcdef0"],
    }
    assert alpha["loggingConfig"]["logGroup"] == "alpha-logs-0a1b2c3"
    assert alpha["environment"]["variables"] == {
        "CONSUL_HTTP_ADDR": "https://consul.alpha.internal:8501",
        "CONSUL_TOKEN_SECRET_ARN": ALPHA_SECRET,
        "CONSUL_DATACENTER": "dc1",
        "CONSUL_STALE": "true",
        "CONSUL_CACERT": "/var/task/ca-bundle.pem",
        "BACKUP_BUCKET": "alpha-snapshots-bucket-0a1b2c3",
        "BACKUP_PREFIX": "consul-snapshots/",
        "CLUSTER_NAME": "alpha",
        "KEEP_LATEST": "7",
        "CONTENT_DROP_PERCENT": "50",
    }
    beta = up.one("aws:lambda/function:Function", "beta-function").inputs
    assert beta["memorySize"] == 256 and beta["timeout"] == 600
    assert "vpcConfig" not in beta or not beta["vpcConfig"]
    log_group = up.one("aws:cloudwatch/logGroup:LogGroup", "beta-logs").inputs
    assert log_group["retentionInDays"] == 30


def test_a_ca_chain_travels_in_the_code_archive_not_the_4kb_environment():
    # A root and two intermediates of RSA-4096 are about 2 KB of PEM each.
    certificate = "-----BEGIN CERTIFICATE-----\n" + "A" * 2000 + "\n-----END CERTIFICATE-----\n"
    chain = certificate * 3
    stack = copy.deepcopy(STACK)
    stack["clusters"][0]["caCertificate"] = chain
    run = run_program(stack)
    function = run.one("aws:lambda/function:Function", "alpha-function").inputs
    variables = function["environment"]["variables"]
    assert variables["CONSUL_CACERT"] == "/var/task/ca-bundle.pem"
    assert sum(len(k) + len(v) for k, v in variables.items()) < 4096
    bundle = function["code"].assets["ca-bundle.pem"]
    assert bundle.text == chain
    # Clusters without a CA get the sources alone.
    beta = run.one("aws:lambda/function:Function", "beta-function").inputs
    assert "ca-bundle.pem" not in beta["code"].assets


def test_an_environment_lambda_would_refuse_is_refused_at_preview():
    stack = copy.deepcopy(STACK)
    stack["clusters"][1]["consulAddress"] = "https://consul.example.com/" + "p" * 4000
    with pytest.raises(ConfigError, match=r"beta: the function's environment would take about"):
        run_program(stack, preview=True)


def test_function_archive_holds_exactly_the_sources(up):
    archive = up.one("aws:lambda/function:Function", "beta-function").inputs["code"]
    names = sorted(archive.assets)
    assert names == sorted(FUNCTION_SOURCES)
    on_disk = sorted(
        str(p.relative_to(FUNCTION_ROOT))
        for p in FUNCTION_ROOT.rglob("*.py")
        if "__pycache__" not in p.parts
    )
    assert names == on_disk, "a new function module must be listed in FUNCTION_SOURCES"


def test_schedule_target_and_permission(up):
    rules = {
        c: up.one("aws:cloudwatch/eventRule:EventRule", f"{c}-schedule").inputs
        for c in ("alpha", "beta", "gamma")
    }
    assert rules["alpha"]["scheduleExpression"] == "rate(30 minutes)"
    assert rules["beta"]["scheduleExpression"] == "rate(1 hour)"
    assert rules["gamma"]["scheduleExpression"] == "cron(0 3 * * ? *)"
    target = up.one("aws:cloudwatch/eventTarget:EventTarget", "alpha-target").inputs
    assert target["rule"] == "alpha-schedule-0a1b2c3"
    assert target["arn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:alpha-function-0a1b2c3"
    assert target["retryPolicy"]["maximumRetryAttempts"] == 2
    permission = up.one("aws:lambda/permission:Permission", "alpha-invoke").inputs
    assert permission["principal"] == "events.amazonaws.com"
    assert permission["action"] == "lambda:InvokeFunction"
    assert (
        permission["sourceArn"] == f"arn:aws:events:{REGION}:{ACCOUNT}:rule/alpha-schedule-0a1b2c3"
    )
    assert permission["function"] == "alpha-function-0a1b2c3"


def test_alarms(up):
    errors = up.one("aws:cloudwatch/metricAlarm:MetricAlarm", "alpha-errors").inputs
    assert (errors["namespace"], errors["metricName"]) == ("AWS/Lambda", "Errors")
    assert errors["dimensions"] == {"FunctionName": "alpha-function-0a1b2c3"}
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:alpha-alarms"
    assert errors["alarmActions"] == [topic]
    missed = up.one("aws:cloudwatch/metricAlarm:MetricAlarm", "alpha-missed-backup").inputs
    assert (missed["namespace"], missed["metricName"]) == ("ConsulBackup", "BackupSuccess")
    assert missed["dimensions"] == {"Cluster": "alpha"}
    assert missed["treatMissingData"] == "breaching"
    assert missed["comparisonOperator"] == "LessThanThreshold" and missed["threshold"] == 1
    # Two 30-minute intervals without a success.
    assert missed["period"] * missed["evaluationPeriods"] == 3600
    gamma = up.one("aws:cloudwatch/metricAlarm:MetricAlarm", "gamma-missed-backup").inputs
    assert gamma["period"] * gamma["evaluationPeriods"] == 2 * 86400
    assert gamma["alarmActions"] == [f"arn:aws:sns:{REGION}:{ACCOUNT}:ops-alerts"]
    subscription = up.one("aws:sns/topicSubscription:TopicSubscription", "alpha-alarm-email").inputs
    assert subscription == {"topic": topic, "protocol": "email", "endpoint": "oncall@example.com"}
    assert sorted(t.name for t in up.of_type("aws:sns/topic:Topic")) == [
        "alpha-alarms",
        "beta-alarms",
    ]


def test_invokes_are_all_answered(up):
    assert set(up.invokes) == {
        "aws:index/getRegion:getRegion",
        "aws:index/getCallerIdentity:getCallerIdentity",
        "aws:index/getPartition:getPartition",
    }


def test_shared_bucket_confines_each_cluster_to_its_prefix():
    stack = {
        "clusters": [
            {
                "name": "one",
                "consulAddress": "http://a:8500",
                "tokenSecretArn": ALPHA_SECRET,
                "retentionDays": 10,
            },
            {"name": "two", "consulAddress": "http://b:8500", "retentionDays": 20},
        ],
        "tokens": {"two": TOKEN},
        "sharedBucket": {"kmsKeyArn": KMS_KEY, "prefix": "backups/consul"},
    }
    run = run_program(stack)
    [bucket] = run.of_type("aws:s3/bucket:Bucket")
    assert bucket.name == "consul-backup-shared-bucket"
    [lifecycle] = run.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    expiring = [r for r in lifecycle.inputs["rules"] if "days" in r["expiration"]]
    assert [(r["filter"]["and"]["prefix"], r["expiration"]["days"]) for r in expiring] == [
        ("backups/consul/one/", 10),
        ("backups/consul/two/", 20),
    ]
    for cluster in ("one", "two"):
        s3 = statements_by_sid(policy_of(run, cluster))["WriteSnapshotsUnderThisClustersPrefix"]
        assert (
            s3["Resource"]
            == f"arn:aws:s3:::consul-backup-shared-bucket-0a1b2c3/backups/consul/{cluster}/*"
        )
        env = run.one("aws:lambda/function:Function", f"{cluster}-function").inputs["environment"][
            "variables"
        ]
        assert env["BACKUP_PREFIX"] == "backups/consul"
        assert env["BACKUP_BUCKET"] == "consul-backup-shared-bucket-0a1b2c3"
    # The shared bucket is write-once and TLS-only like any snapshot bucket.
    [bucket_policy] = run.of_type("aws:s3/bucketPolicy:BucketPolicy")
    assert json.loads(bucket_policy.inputs["policy"]) == snapshot_bucket_policy(
        "arn:aws:s3:::consul-backup-shared-bucket-0a1b2c3"
    )
    # The token secret is encrypted with the stack's key.
    assert (
        run.one("aws:secretsmanager/secret:Secret", "two-consul-token").inputs["kmsKeyId"]
        == KMS_KEY
    )


def test_an_unmocked_invoke_fails_the_run(monkeypatch):
    # The harness's own guard: without it a missing answer would be None, silently.
    monkeypatch.delitem(INVOKES, "aws:index/getRegion:getRegion")
    with pytest.raises(Exception, match="unmocked invoke aws:index/getRegion:getRegion"):
        run_program(STACK)


def test_the_re_verification_may_only_list_and_read_its_clusters_snapshots(up):
    verify = up.one("aws:lambda/function:Function", "alpha-verify").inputs
    assert verify["handler"] == "handler.verify_handler"
    assert verify["role"] == f"arn:aws:iam:{REGION}:{ACCOUNT}:alpha-verify-role"
    assert verify["environment"]["variables"] == {
        "BACKUP_BUCKET": "alpha-snapshots-bucket-0a1b2c3",
        "BACKUP_PREFIX": "consul-snapshots/",
        "CLUSTER_NAME": "alpha",
    }
    raw = up.one("aws:iam/rolePolicy:RolePolicy", "alpha-verify-policy").inputs["policy"]
    statements = statements_by_sid(json.loads(raw))
    actions = {a for s in statements.values() for a in as_list(s["Action"])}
    assert actions == {
        "s3:GetObject",
        "s3:ListBucket",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "kms:Decrypt",
    }
    assert statements["ReadThisClustersSnapshots"]["Resource"] == [
        "arn:aws:s3:::alpha-snapshots-bucket-0a1b2c3/consul-snapshots/alpha/*"
    ]
    rule = up.one("aws:cloudwatch/eventRule:EventRule", "alpha-verify-schedule").inputs
    assert rule["scheduleExpression"] == "rate(1 day)"


def test_a_failed_or_missing_verification_alarms(up):
    alarms = {a.name: a.inputs for a in up.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    failed, missed = alarms["alpha-verify-failed"], alarms["alpha-verify-missed"]
    assert (failed["namespace"], failed["metricName"]) == ("ConsulBackup", "VerifyFailure")
    assert missed["metricName"] == "VerifySuccess" and missed["treatMissingData"] == "breaching"
    # Two daily intervals: two periods of a day, both without a success.
    assert (missed["period"], missed["evaluationPeriods"]) == (86400, 2)
    assert missed["dimensions"] == {"Cluster": "alpha"}


def test_one_dashboard_for_the_stack_with_every_cluster_and_its_url(up):
    [dashboard] = up.of_type("aws:cloudwatch/dashboard:Dashboard")
    assert dashboard.inputs["dashboardName"] == "consul-backup-dev"
    widgets = json.loads(dashboard.inputs["dashboardBody"])["widgets"]
    titles = {w["properties"]["title"] for w in widgets}
    for cluster in ("alpha", "beta", "gamma"):
        assert {f"{cluster}: backups", f"{cluster}: verifications"} <= titles
    assert all(w["properties"]["region"] == REGION for w in widgets)
    assert up.exports["dashboardUrl"] == (
        f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}"
        "#dashboards:name=consul-backup-dev"
    )


def test_the_dashboard_shows_each_clusters_content_as_trends(up):
    [dashboard] = up.of_type("aws:cloudwatch/dashboard:Dashboard")
    widgets = json.loads(dashboard.inputs["dashboardBody"])["widgets"]
    lines = {
        (w["properties"]["title"].split(":")[0], line[1], line[-1]["stat"])
        for w in widgets
        for line in w["properties"]["metrics"]
        if line[0] == "ConsulBackup"
    }
    for cluster in ("alpha", "beta", "gamma"):
        for metric in ("KVEntries", "ServiceInstances", "Nodes", "ACLTokens", "StateBytes"):
            assert (cluster, metric, "Maximum") in lines
        assert (cluster, "ContentDrop", "Sum") in lines
    # On CloudWatch's grid of 24 columns, no two widgets on the same cells.
    cells = [(w["x"], w["y"]) for w in widgets]
    assert len(cells) == len(set(cells))
    assert all(w["x"] >= 0 and w["x"] + w["width"] <= 24 for w in widgets)


def test_a_steep_content_drop_alarms_like_a_failed_retirement(up):
    alarms = {a.name: a.inputs for a in up.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    drop, retire = alarms["alpha-content-drop"], alarms["alpha-retire-failed"]
    assert (drop["namespace"], drop["metricName"]) == ("ConsulBackup", "ContentDrop")
    assert drop["dimensions"] == {"Cluster": "alpha"}
    same = ("statistic", "period", "evaluationPeriods", "threshold", "comparisonOperator")
    assert {k: drop[k] for k in same} == {
        "statistic": "Sum",
        "period": 300,
        "evaluationPeriods": 1,
        "threshold": 1,
        "comparisonOperator": "GreaterThanOrEqualToThreshold",
    }
    assert {k: retire[k] for k in same} == {k: drop[k] for k in same}
    assert drop["alarmActions"] == [f"arn:aws:sns:{REGION}:{ACCOUNT}:alpha-alarms"]
    assert drop["treatMissingData"] == "notBreaching"


def test_backup_and_re_verification_are_made_one_way(up):
    """Both functions are ScheduledFunctions: the same retry age, key, runtime and checks."""
    for cluster, function, target in [
        ("alpha", "alpha-function", "alpha-target"),
        ("alpha", "alpha-verify", "alpha-verify-target"),
    ]:
        inputs = up.one("aws:lambda/function:Function", function).inputs
        assert inputs["kmsKeyArn"] == KMS_KEY, function  # the environment under the key
        assert (inputs["runtime"], inputs["architectures"]) == ("python3.13", ["arm64"])
        retry = up.one("aws:cloudwatch/eventTarget:EventTarget", target).inputs["retryPolicy"]
        # alpha's timeout is 300 s: a retry within two runs' time.
        assert retry == {"maximumRetryAttempts": 2, "maximumEventAgeInSeconds": 600}, cluster
    components = {r.name: r for r in up.of_type("consul-backup:index:ScheduledFunction")}
    assert sorted(components) == sorted(
        f"{c}{suffix}" for c in ("alpha", "beta", "gamma") for suffix in ("", "-verify")
    )
    role = up.one("aws:iam/role:Role", "alpha-verify-role")
    assert role.parent == components["alpha-verify"].urn


def test_an_environment_too_large_is_refused_for_the_re_verification_too():
    from components.scheduled_function import check_environment_size

    with pytest.raises(ConfigError, match=r"beta-verify: the function's environment"):
        check_environment_size("beta-verify", {"BACKUP_BUCKET": "b" * 5000})


def test_every_snapshot_bucket_is_write_once_and_tls_only(up):
    for cluster in ("alpha", "beta", "gamma"):
        raw = up.one("aws:s3/bucketPolicy:BucketPolicy", f"{cluster}-snapshots-deny-plain-http")
        statements = {s["Sid"]: s for s in json.loads(raw.inputs["policy"])["Statement"]}
        assert set(statements) == {"DenyPlainHttp", "DenyWritesThatMayOverwrite"}
        assert statements["DenyWritesThatMayOverwrite"]["Condition"] == {
            "Null": {"s3:if-none-match": "true"},
            "Bool": {"s3:ObjectCreationOperation": "true"},
        }
