"""The policy documents, as plain functions: exactly what the function may do."""

from __future__ import annotations

import pytest

from components.policies import (
    VpcAccess,
    assume_role_policy,
    backup_function_policy,
    deny_insecure_transport_policy,
    replication_policy,
    secret_resource,
    verify_function_policy,
)
from tests.iam import Request, decide

BUCKET = "arn:aws:s3:::backups"
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:token-AbCdEf"
LOGS = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/prod"
KEY = "arn:aws:kms:eu-west-1:123456789012:key/abcd-1234"


def policy(**extra):
    return backup_function_policy(
        bucket_arn=BUCKET,
        cluster_prefix="consul-snapshots/prod/",
        secret_arn=SECRET,
        log_group_arn=LOGS,
        **extra,
    )


def actions(document) -> dict[str, tuple[list[str], object]]:
    found = {}
    for statement in document["Statement"]:
        names = statement["Action"]
        found[statement["Sid"]] = (
            [names] if isinstance(names, str) else names,
            statement["Resource"],
        )
    return found


def test_write_under_the_clusters_prefix_list_it_retire_in_it_and_nothing_else():
    granted = actions(policy())
    assert granted == {
        "WriteSnapshotsUnderThisClustersPrefix": (
            ["s3:PutObject", "s3:AbortMultipartUpload"],
            "arn:aws:s3:::backups/consul-snapshots/prod/*",
        ),
        "ListThisClustersSnapshots": (["s3:ListBucket"], BUCKET),
        "RetireSnapshotsBeyondTheFloor": (
            ["s3:PutObjectTagging"],
            "arn:aws:s3:::backups/consul-snapshots/prod/*",
        ),
        "ReadThisClustersConsulToken": (["secretsmanager:GetSecretValue"], SECRET),
        "WriteOwnLogs": (["logs:CreateLogStream", "logs:PutLogEvents"], f"{LOGS}:*"),
    }
    every_action = [a for names, _ in granted.values() for a in names]
    assert not any("*" in a or "Delete" in a or "Bypass" in a for a in every_action)
    assert not any(a.startswith("s3:Get") or a.startswith("s3:PutBucket") for a in every_action)
    statements = {s["Sid"]: s for s in policy()["Statement"]}
    # Listing only under its own prefix; tagging only with the retired tag.
    assert statements["ListThisClustersSnapshots"]["Condition"] == {
        "StringLike": {"s3:prefix": ["consul-snapshots/prod/*"]}
    }
    assert statements["RetireSnapshotsBeyondTheFloor"]["Condition"] == {
        "ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["consul-backup-retired"]},
        "StringEquals": {"s3:RequestObjectTag/consul-backup-retired": "true"},
    }


@pytest.mark.parametrize(
    ("given", "granted"),
    [
        (SECRET, SECRET),  # a full ARN: exactly that secret
        (
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:consul/alpha",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:consul/alpha-??????",
        ),
    ],
)
def test_a_partial_secret_arn_is_granted_as_aws_recommends(given, granted):
    assert secret_resource(given) == granted


def test_kms_rights_only_for_the_keys_in_use():
    granted = actions(policy(kms_key_arns=[KEY, KEY]))
    assert granted["UseTheKeysInUse"] == (["kms:GenerateDataKey", "kms:Decrypt"], [KEY])


def test_vpc_rights_only_in_the_given_subnets_and_groups():
    base = "arn:aws:ec2:eu-west-1:123456789012"
    vpc = VpcAccess(base, ["subnet-1"], ["sg-1"])
    granted = actions(policy(vpc=vpc))
    assert granted["CreateNetworkInterfacesInTheGivenSubnets"][1] == [
        f"{base}:network-interface/*",
        f"{base}:subnet/subnet-1",
        f"{base}:security-group/sg-1",
    ]
    # The one "*" there is: EC2 offers nothing narrower for Describe actions.
    assert granted["DescribeNetworkInterfaces"] == (["ec2:DescribeNetworkInterfaces"], "*")
    assert "DescribeNetworkInterfaces" not in actions(policy())


def test_only_lambda_may_assume_the_role():
    (statement,) = assume_role_policy("lambda")["Statement"]
    assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"


def test_the_bucket_refuses_plain_http_for_the_bucket_and_every_object():
    (statement,) = deny_insecure_transport_policy(BUCKET)["Statement"]
    assert statement["Effect"] == "Deny" and statement["Action"] == "s3:*"
    assert statement["Resource"] == [BUCKET, f"{BUCKET}/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# --- the same documents, judged by a full IAM policy engine ---------------------

OWN = "arn:aws:s3:::backups/consul-snapshots/prod/2026/11/29/prod-1.snap"
OTHER = "arn:aws:s3:::backups/consul-snapshots/stage/2026/11/29/stage-1.snap"
RETIRED: dict[str, str | list[str]] = {
    "s3:RequestObjectTagKeys": ["consul-backup-retired"],
    "s3:RequestObjectTag/consul-backup-retired": "true",
}


def test_the_function_policy_as_iam_evaluates_it():
    decisions = decide(
        policy(),
        [
            Request("s3:PutObject", OWN),
            Request("s3:PutObject", OTHER),
            Request("s3:ListBucket", BUCKET, {"s3:prefix": "consul-snapshots/prod/2026/"}),
            Request("s3:ListBucket", BUCKET, {"s3:prefix": "consul-snapshots/stage/"}),
            Request("s3:ListBucket", BUCKET, {"s3:prefix": ""}),
            Request("s3:PutObjectTagging", OWN, RETIRED),
            Request(
                "s3:PutObjectTagging",
                OWN,
                {"s3:RequestObjectTagKeys": ["owner"], "s3:RequestObjectTag/owner": "me"},
            ),
            Request("s3:PutObjectTagging", OTHER, RETIRED),
            Request("s3:GetObject", OWN),
            Request("s3:DeleteObject", OWN),
            Request("s3:DeleteObjectVersion", OWN),
            Request("s3:BypassGovernanceRetention", OWN),
            Request("s3:PutObjectRetention", OWN),
            Request("s3:PutLifecycleConfiguration", BUCKET),
        ],
    )
    assert (
        decisions
        == ["Allowed", "ImplicitlyDenied", "Allowed"]
        + ["ImplicitlyDenied"] * 2
        + ["Allowed"]
        + ["ImplicitlyDenied"] * 8
    )


def test_a_partial_secret_arn_grants_the_secret_it_names_and_no_other():
    partial = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:consul/alpha"
    document = backup_function_policy(
        bucket_arn=BUCKET,
        cluster_prefix="consul-snapshots/prod/",
        secret_arn=partial,
        log_group_arn=LOGS,
    )
    assert decide(
        document,
        [
            Request("secretsmanager:GetSecretValue", f"{partial}-AbCdEf"),
            Request("secretsmanager:GetSecretValue", f"{partial}-other-AbCdEf"),
            Request("secretsmanager:GetSecretValue", f"{partial}2-AbCdEf"),
        ],
    ) == ["Allowed", "ImplicitlyDenied", "ImplicitlyDenied"]


def test_plain_http_is_refused_by_the_bucket_whoever_asks():
    admin = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    decisions = decide(
        admin,
        [
            # Request context values are strings, as AWS fills them in.
            Request("s3:GetObject", OWN, {"aws:SecureTransport": "false"}),
            Request("s3:GetObject", OWN, {"aws:SecureTransport": "true"}),
        ],
        resource_policy=deny_insecure_transport_policy(BUCKET),
    )
    assert decisions == ["ExplicitlyDenied", "Allowed"]


def test_the_re_verification_reads_and_lists_its_own_snapshots_only():
    document = verify_function_policy(
        readable=[
            (BUCKET, "consul-snapshots/prod/"),
            ("arn:aws:s3:::replica", "consul-snapshots/prod/"),
        ],
        log_group_arn=LOGS,
    )
    decisions = decide(
        document,
        [
            Request("s3:GetObject", OWN),
            Request("s3:GetObject", "arn:aws:s3:::replica/consul-snapshots/prod/x.snap"),
            Request("s3:GetObject", OTHER),
            Request(
                "s3:ListBucket", "arn:aws:s3:::replica", {"s3:prefix": "consul-snapshots/prod/"}
            ),
            Request("s3:PutObject", OWN),
            Request("s3:DeleteObject", OWN),
        ],
    )
    assert (
        decisions
        == ["Allowed", "Allowed", "ImplicitlyDenied", "Allowed"] + ["ImplicitlyDenied"] * 2
    )


def test_replication_copies_into_the_replica_and_never_deletes_there():
    document = replication_policy(
        source_bucket_arn=BUCKET, destination_bucket_arn="arn:aws:s3:::replica"
    )
    replica_object = "arn:aws:s3:::replica/consul-snapshots/prod/x.snap"
    decisions = decide(
        document,
        [
            Request("s3:ReplicateObject", replica_object),
            Request("s3:ReplicateTags", replica_object),
            Request("s3:ReplicateDelete", replica_object),
            Request("s3:DeleteObjectVersion", replica_object),
            Request("s3:ObjectOwnerOverrideToBucketOwner", replica_object),
        ],
    )
    assert decisions == ["Allowed", "Allowed"] + ["ImplicitlyDenied"] * 3
