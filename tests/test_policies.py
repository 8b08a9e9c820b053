"""The policy documents, as plain functions: what each role may do, judged by IAM's rules."""

from __future__ import annotations

import pytest

from components.policies import (
    VpcAccess,
    assume_role_policy,
    backup_function_policy,
    replication_policy,
    secret_resource,
    snapshot_bucket_policy,
    verify_function_policy,
)
from snapshot_backup.keys import ObjectKind
from snapshot_backup.retention import KEPT_TAG_VALUE, RETIRED_TAG_KEY, RETIRED_TAG_VALUE
from tests.iam import ACCOUNT, Request, decide

BUCKET = "arn:aws:s3:::backups"
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:token-AbCdEf"
LOGS = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/prod"
KEY = "arn:aws:kms:eu-west-1:123456789012:key/abcd-1234"
STEM = f"{BUCKET}/consul-snapshots/prod/2026/11/29/prod-20261129T120000Z-42"
OWN = STEM + ObjectKind.SNAPSHOT.value
OWN_MANIFEST = STEM + ObjectKind.MANIFEST.value
OWN_HOLD = STEM + ObjectKind.HOLD.value
OWN_RETIRED = STEM + ObjectKind.RETIRED.value
OTHER = "arn:aws:s3:::backups/consul-snapshots/stage/2026/11/29/stage-20261129T120000Z-7.snap"
OTHER_MANIFEST = OTHER.removesuffix(".snap") + ObjectKind.MANIFEST.value
OTHER_RETIRED = OTHER.removesuffix(".snap") + ObjectKind.RETIRED.value
REPLICA = "arn:aws:s3:::replica"
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}
FUNCTION_ROLE = f"arn:aws:iam::{ACCOUNT}:role/prod-role"
ADMIN_ROLE = f"arn:aws:iam::{ACCOUNT}:role/administrator"
REPLICATION_ROLE = f"arn:aws:iam::{ACCOUNT}:role/prod-snapshots-replication-role"


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


def tagging(**tags: str) -> dict[str, str | list[str]]:
    """The request context of a PutObjectTagging (or a PutObject with a Tagging header)."""
    context: dict[str, str | list[str]] = {"s3:RequestObjectTagKeys": list(tags)}
    context.update({f"s3:RequestObjectTag/{key}": value for key, value in tags.items()})
    return context


RETIRED = tagging(**{RETIRED_TAG_KEY: RETIRED_TAG_VALUE})
KEPT = tagging(**{RETIRED_TAG_KEY: KEPT_TAG_VALUE})


def test_the_function_writes_lists_reads_manifests_tags_and_clears_markers_and_nothing_else():
    granted = actions(policy())
    own = "arn:aws:s3:::backups/consul-snapshots/prod/*"
    assert granted == {
        "WriteSnapshotsUnderThisClustersPrefix": (
            ["s3:PutObject", "s3:AbortMultipartUpload"],
            own,
        ),
        "ListThisClustersSnapshots": (["s3:ListBucket"], BUCKET),
        "ReadThisClustersManifests": (["s3:GetObject"], f"{own}.manifest.json"),
        "RetireSnapshotsBeyondTheFloor": (["s3:PutObjectTagging"], own),
        "ClearRetiredMarkers": (["s3:DeleteObject"], f"{own}.retired"),
        "ReadThisClustersConsulToken": (["secretsmanager:GetSecretValue"], SECRET),
        "WriteOwnLogs": (["logs:CreateLogStream", "logs:PutLogEvents"], f"{LOGS}:*"),
    }
    every_action = [a for names, _ in granted.values() for a in names]
    assert not any("*" in a or "Bypass" in a or "Version" in a for a in every_action)
    assert not any(a.startswith("s3:PutBucket") for a in every_action)
    statements = {s["Sid"]: s for s in policy()["Statement"]}
    # Listing only under its own prefix; tagging only with the one tag, set or cleared.
    assert statements["ListThisClustersSnapshots"]["Condition"] == {
        "StringLike": {"s3:prefix": ["consul-snapshots/prod/*"]}
    }
    assert statements["RetireSnapshotsBeyondTheFloor"]["Condition"] == {
        "ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["consul-backup-retired"]},
        "StringEquals": {"s3:RequestObjectTag/consul-backup-retired": ["true", "false"]},
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


def test_the_bucket_policy_is_tls_only_and_write_once():
    tls, write_once = snapshot_bucket_policy(BUCKET)["Statement"]
    assert tls["Effect"] == "Deny" and tls["Action"] == "s3:*"
    assert tls["Resource"] == [BUCKET, f"{BUCKET}/*"]
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert write_once == {
        "Sid": "DenyWritesThatMayOverwrite",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:PutObject",
        "Resource": f"{BUCKET}/*",
        "Condition": {
            "Null": {"s3:if-none-match": "true"},
            "Bool": {"s3:ObjectCreationOperation": "true"},
        },
    }


# --- the same documents, judged by a full IAM policy engine ---------------------


def test_the_function_policy_as_iam_evaluates_it():
    allowed = [
        Request("s3:PutObject", OWN),
        Request("s3:PutObject", OWN_MANIFEST),
        Request("s3:AbortMultipartUpload", OWN),
        Request("s3:ListBucket", BUCKET, {"s3:prefix": "consul-snapshots/prod/2026/"}),
        Request("s3:GetObject", OWN_MANIFEST),
        Request("s3:PutObjectTagging", OWN, RETIRED),
        Request("s3:PutObjectTagging", OWN_MANIFEST, RETIRED),
        # A snapshot back under the floor: its tag says so.
        Request("s3:PutObjectTagging", OWN, KEPT),
        # A .retired marker is written born retired: PutObject with a Tagging header
        # is authorised as PutObject and as PutObjectTagging with the request's tags.
        Request("s3:PutObject", OWN_RETIRED, RETIRED),
        Request("s3:PutObjectTagging", OWN_RETIRED, RETIRED),
        Request("s3:DeleteObject", OWN_RETIRED),
    ]
    denied = [
        Request("s3:PutObject", OTHER),
        Request("s3:ListBucket", BUCKET, {"s3:prefix": "consul-snapshots/stage/"}),
        Request("s3:ListBucket", BUCKET, {"s3:prefix": ""}),
        # Never an archive: a stolen role reads no Consul state, here or elsewhere.
        Request("s3:GetObject", OWN),
        Request("s3:GetObject", OWN_HOLD),
        Request("s3:GetObject", OWN_RETIRED),
        Request("s3:GetObject", OTHER_MANIFEST),
        Request("s3:GetObjectVersion", OWN_MANIFEST),
        # Tags: only the one key, only its two values, only under its prefix.
        Request("s3:PutObjectTagging", OWN, tagging(owner="me")),
        Request("s3:PutObjectTagging", OWN, tagging(**{RETIRED_TAG_KEY: "maybe"})),
        Request(
            "s3:PutObjectTagging",
            OWN,
            tagging(**{RETIRED_TAG_KEY: RETIRED_TAG_VALUE, "owner": "me"}),
        ),
        Request("s3:PutObjectTagging", OTHER, RETIRED),
        Request("s3:DeleteObjectTagging", OWN),
        # Deletes: a .retired marker of its own cluster, nothing else.
        Request("s3:DeleteObject", OWN),
        Request("s3:DeleteObject", OWN_MANIFEST),
        Request("s3:DeleteObject", OWN_HOLD),
        Request("s3:DeleteObject", OTHER_RETIRED),
        Request("s3:DeleteObjectVersion", OWN_RETIRED),
        Request("s3:DeleteObjectVersion", OWN),
        Request("s3:BypassGovernanceRetention", OWN),
        Request("s3:PutObjectRetention", OWN),
        Request("s3:PutObjectLegalHold", OWN),
        Request("s3:PutLifecycleConfiguration", BUCKET),
        Request("s3:PutBucketPolicy", BUCKET),
    ]
    decisions = decide(policy(), allowed + denied)
    assert decisions == ["Allowed"] * len(allowed) + ["ImplicitlyDenied"] * len(denied)


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
    decisions = decide(
        ADMIN_POLICY,
        [
            # Request context values are strings, as AWS fills them in.
            Request("s3:GetObject", OWN, {"aws:SecureTransport": "false"}),
            Request("s3:GetObject", OWN, {"aws:SecureTransport": "true"}),
        ],
        resource_policy=snapshot_bucket_policy(BUCKET),
        principal=ADMIN_ROLE,
    )
    assert decisions == ["ExplicitlyDenied", "Allowed"]


# --- write once: the bucket policy binds every principal ---------------------------

TLS = {"aws:SecureTransport": "true"}
# How S3 authorises each write as s3:PutObject (conditional-writes-enforce.html):
# PutObject, CompleteMultipartUpload and CopyObject create the object and may carry
# If-None-Match; CreateMultipartUpload and UploadPart (and UploadPartCopy) take no
# conditional header and are not the object's creation.
UNCONDITIONAL_PUT = {**TLS, "s3:ObjectCreationOperation": "true"}
CONDITIONAL_PUT = {**UNCONDITIONAL_PUT, "s3:if-none-match": "*"}
MULTIPART_STEP = {**TLS, "s3:ObjectCreationOperation": "false"}
WRITES = [
    ("PutObject or CompleteMultipartUpload without If-None-Match", UNCONDITIONAL_PUT),
    ("PutObject or CompleteMultipartUpload with If-None-Match: *", CONDITIONAL_PUT),
    ("CreateMultipartUpload or UploadPart", MULTIPART_STEP),
]


def replication_role_policy():
    return replication_policy(source_bucket_arn=REPLICA, destination_bucket_arn=BUCKET)


@pytest.mark.parametrize(
    ("principal", "identity", "expected"),
    [
        # The function's own role, writing under its prefix.
        (FUNCTION_ROLE, policy(), ["ExplicitlyDenied", "Allowed", "Allowed"]),
        # An administrator: s3:* on everything, and still no overwrite.
        (ADMIN_ROLE, ADMIN_POLICY, ["ExplicitlyDenied", "Allowed", "Allowed"]),
        # S3 Replication's role: no PutObject of its own; the deny still comes first.
        (
            REPLICATION_ROLE,
            replication_role_policy(),
            ["ExplicitlyDenied", "ImplicitlyDenied", "ImplicitlyDenied"],
        ),
    ],
    ids=["function role", "administrator", "replication role"],
)
def test_every_write_to_a_snapshot_bucket_is_a_write_once(principal, identity, expected):
    decisions = decide(
        identity,
        [Request("s3:PutObject", OWN, context) for _, context in WRITES],
        resource_policy=snapshot_bucket_policy(BUCKET),
        principal=principal,
    )
    assert decisions == expected


def test_replication_still_writes_replicas_into_a_write_once_bucket():
    # The replica bucket carries the same policy; S3 writes replicas with
    # s3:ReplicateObject, which the write-once statement leaves alone.
    replica_object = f"{REPLICA}/consul-snapshots/prod/x.snap"
    document = replication_policy(source_bucket_arn=BUCKET, destination_bucket_arn=REPLICA)
    decisions = decide(
        document,
        [
            Request("s3:ReplicateObject", replica_object, TLS),
            Request("s3:ReplicateTags", replica_object, TLS),
        ],
        resource_policy=snapshot_bucket_policy(REPLICA),
        principal=REPLICATION_ROLE,
    )
    assert decisions == ["Allowed", "Allowed"]


def test_the_re_verification_reads_and_lists_its_own_snapshots_only():
    document = verify_function_policy(
        readable=[(BUCKET, "consul-snapshots/prod/"), (REPLICA, "consul-snapshots/prod/")],
        log_group_arn=LOGS,
    )
    decisions = decide(
        document,
        [
            Request("s3:GetObject", OWN),
            Request("s3:GetObject", OWN_MANIFEST),
            Request("s3:GetObject", f"{REPLICA}/consul-snapshots/prod/x.snap"),
            Request("s3:ListBucket", REPLICA, {"s3:prefix": "consul-snapshots/prod/"}),
            Request("s3:GetObject", OTHER),
            Request("s3:PutObject", OWN),
            Request("s3:DeleteObject", OWN_RETIRED),
            Request("s3:PutObjectTagging", OWN, RETIRED),
        ],
    )
    assert decisions == ["Allowed"] * 4 + ["ImplicitlyDenied"] * 4


def test_replication_reads_versions_and_their_locks_copies_them_and_never_deletes():
    document = replication_policy(source_bucket_arn=BUCKET, destination_bucket_arn=REPLICA)
    replica_object = f"{REPLICA}/consul-snapshots/prod/x.snap"
    decisions = decide(
        document,
        [
            Request("s3:GetObjectVersionForReplication", OWN),
            # S3 replicates a locked version only with its retention and legal hold,
            # read with these two (AWS: "Using Object Lock with S3 Replication").
            Request("s3:GetObjectRetention", OWN),
            Request("s3:GetObjectLegalHold", OWN),
            Request("s3:ReplicateObject", replica_object),
            Request("s3:ReplicateTags", replica_object),
            Request("s3:GetObjectRetention", f"{REPLICA}/x.snap"),
            Request("s3:PutObjectRetention", OWN),
            Request("s3:PutObjectLegalHold", OWN),
            Request("s3:ReplicateDelete", replica_object),
            Request("s3:DeleteObjectVersion", replica_object),
            Request("s3:ObjectOwnerOverrideToBucketOwner", replica_object),
        ],
    )
    assert decisions == ["Allowed"] * 5 + ["ImplicitlyDenied"] * 6
