"""Backups that outlive the disaster: the lock, the replica, and buckets Pulumi never deletes.

Under Pulumi mocks for what the component registers; against moto (with IAM
enforced) for what a lock and the function's own rights allow.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pulumi
import pulumi_aws as aws
import pytest
from botocore.exceptions import ClientError

from components import ConfigError, ConsulSnapshotBackup, ConsulSnapshotBackupArgs, Replica
from components.policies import backup_function_policy, snapshot_bucket_policy
from testbed.moto_server import aws_env, moto_server
from testbed.pulumi_mocks import ACCOUNT, REGION, SECRET_KIND, SECRET_SIG, ProgramRun, run_program
from tests.conftest import locked_bucket

ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:consul/prod-AbCdEf"
REPLICA_KEY = f"arn:aws:kms:eu-central-1:{ACCOUNT}:key/replica-1234"
VAULT = "arn:aws:s3:::consul-vault-backups"
LOCK = {"mode": "COMPLIANCE", "days": 30}
REPLICATION = "aws:s3/bucketReplicationConfig:BucketReplicationConfig"
REPLICA_PROVIDER = "prod-snapshots-replica-region"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def stack(**settings: Any) -> dict[str, Any]:
    entry = {"name": "prod", "consulAddress": "http://consul:8500", "tokenSecretArn": ARN}
    return {"clusters": [entry | settings]}


@pytest.fixture(scope="module")
def regional() -> ProgramRun:
    return run_program(
        stack(objectLock=LOCK, replica={"region": "eu-central-1", "kmsKeyArn": REPLICA_KEY})
    )


@pytest.fixture(scope="module")
def vault() -> ProgramRun:
    return run_program(stack(replica={"bucketArn": VAULT, "accountId": "210987654321"}))


def policy(run: ProgramRun, name: str) -> dict[str, Any]:
    return json.loads(run.one(ROLE_POLICY, name).inputs["policy"])


def granted_actions(document: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for statement in document["Statement"]:
        actions = statement["Action"]
        found.update([actions] if isinstance(actions, str) else actions)
    return found


# --- Object Lock ------------------------------------------------------------


def test_object_lock_is_its_own_resource_so_turning_it_on_keeps_the_bucket(regional):
    lock = regional.one(
        "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
        "prod-snapshots-object-lock",
    ).inputs
    assert lock["objectLockEnabled"] == "Enabled"
    assert lock["rule"] == {"defaultRetention": {"mode": "COMPLIANCE", "days": 30}}
    without = run_program(stack())
    # The bucket's own inputs are the same with and without a lock: no replacement.
    bucket = "aws:s3/bucket:Bucket"
    assert (
        regional.one(bucket, "prod-snapshots-bucket").inputs
        == without.one(bucket, "prod-snapshots-bucket").inputs
    )


def test_no_role_the_component_creates_can_delete_or_unlock_a_snapshot(regional, vault):
    dangerous = (
        "DeleteObjectVersion",
        "ReplicateDelete",
        "Bypass",
        "PutObjectRetention",
        "PutObjectLegalHold",
        "PutBucket",
        "PutLifecycle",
    )
    for run in (regional, vault):
        for resource in run.of_type(ROLE_POLICY):
            document = json.loads(resource.inputs["policy"])
            actions = granted_actions(document)
            assert not [a for a in actions if "*" in a or any(d in a for d in dangerous)], (
                resource.name
            )
            # The one delete there is: the backup function clears its .retired markers.
            for statement in document["Statement"]:
                if "s3:DeleteObject" in statement["Action"]:
                    assert statement["Action"] == "s3:DeleteObject"
                    assert statement["Resource"].endswith("/consul-snapshots/prod/*.retired")


@pytest.fixture(scope="module")
def iam_enforced() -> Iterator[str]:
    # Six unchecked calls set the scene (bucket, lock, a snapshot, a user with
    # the function's policy and its key); every call after is checked by IAM.
    with moto_server(unauthenticated_actions=6) as endpoint:
        yield endpoint


def test_the_functions_rights_cannot_delete_a_locked_snapshot_even_with_bypass(iam_enforced):
    admin = boto3.Session(**_session(aws_env(iam_enforced)))
    s3 = admin.client("s3", endpoint_url=iam_enforced)
    iam = admin.client("iam", endpoint_url=iam_enforced)
    bucket, key = "locked-snapshots", "consul-snapshots/prod/2026/01/01/prod-1.snap"
    locked_bucket(s3, bucket, "GOVERNANCE", 30)
    version = s3.put_object(Bucket=bucket, Key=key, Body=b"snapshot")["VersionId"]
    iam.create_user(UserName="backup-function")
    document = backup_function_policy(
        bucket_arn=f"arn:aws:s3:::{bucket}",
        cluster_prefix="consul-snapshots/prod/",
        secret_arn=ARN,
        log_group_arn=f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:prod",
    )
    iam.put_user_policy(
        UserName="backup-function", PolicyName="p", PolicyDocument=json.dumps(document)
    )
    keys = iam.create_access_key(UserName="backup-function")["AccessKey"]
    function = boto3.client(
        "s3",
        endpoint_url=iam_enforced,
        region_name="us-east-1",
        aws_access_key_id=keys["AccessKeyId"],
        aws_secret_access_key=keys["SecretAccessKey"],
    )
    # What the function may do, it can: write a new snapshot under its prefix.
    function.put_object(Bucket=bucket, Key=key.replace("prod-1", "prod-2"), Body=b"next")
    for attempt in (
        lambda: function.delete_object(Bucket=bucket, Key=key, VersionId=version),
        lambda: function.delete_object(
            Bucket=bucket, Key=key, VersionId=version, BypassGovernanceRetention=True
        ),
    ):
        with pytest.raises(ClientError, match="AccessDenied"):
            attempt()


def _session(env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": "us-east-1",
    }


# --- the replica ------------------------------------------------------------


def test_a_regional_replica_is_a_protected_bucket_of_its_own(regional):
    [provider] = regional.of_type("pulumi:providers:aws")
    assert provider.inputs["region"] == "eu-central-1"
    replica = "prod-snapshots-replica"
    for typ, suffix in [
        ("aws:s3/bucketVersioning:BucketVersioning", "versioning"),
        ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "public-access-block"),
        ("aws:s3/bucketOwnershipControls:BucketOwnershipControls", "ownership"),
        ("aws:s3/bucketPolicy:BucketPolicy", "deny-plain-http"),
        ("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "lifecycle"),
        ("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", "object-lock"),
    ]:
        regional.one(typ, f"{replica}-{suffix}")
    encryption = regional.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        f"{replica}-encryption",
    ).inputs["rules"][0]["applyServerSideEncryptionByDefault"]
    assert encryption == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": REPLICA_KEY}
    lifecycle = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
    assert (
        regional.one(lifecycle, f"{replica}-lifecycle").inputs["rules"]
        == regional.one(lifecycle, "prod-snapshots-lifecycle").inputs["rules"]
    )
    # Write once and TLS only, like the primary: the same policy, for the replica's ARN.
    policy = json.loads(
        regional.one("aws:s3/bucketPolicy:BucketPolicy", f"{replica}-deny-plain-http").inputs[
            "policy"
        ]
    )
    bucket_arn = "arn:aws:s3:::prod-snapshots-replica-bucket-0a1b2c3"
    assert policy == snapshot_bucket_policy(bucket_arn)


def test_replication_copies_new_versions_within_15_minutes_and_never_deletes(regional):
    [rule] = regional.one(REPLICATION, "prod-snapshots-replication").inputs["rules"]
    assert rule["deleteMarkerReplication"] == {"status": "Disabled"}
    assert rule["sourceSelectionCriteria"] == {"sseKmsEncryptedObjects": {"status": "Enabled"}}
    destination = rule["destination"]
    assert destination["replicationTime"] == {"status": "Enabled", "time": {"minutes": 15}}
    assert destination["metrics"] == {"status": "Enabled", "eventThreshold": {"minutes": 15}}
    assert destination["encryptionConfiguration"] == {"replicaKmsKeyId": REPLICA_KEY}
    actions = granted_actions(policy(regional, "prod-snapshots-replication-policy"))
    assert actions == {
        "s3:GetReplicationConfiguration",
        "s3:ListBucket",
        "s3:GetObjectVersionForReplication",
        "s3:GetObjectVersionAcl",
        "s3:GetObjectVersionTagging",
        # Without these S3 cannot replicate a locked version: its retention and hold.
        "s3:GetObjectRetention",
        "s3:GetObjectLegalHold",
        "s3:ReplicateObject",
        "s3:ReplicateTags",
        "kms:Encrypt",
        "kms:GenerateDataKey",
    }
    role = regional.one("aws:iam/role:Role", "prod-snapshots-replication-role").inputs
    [statement] = json.loads(role["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}


def test_replication_late_or_failing_alarms_the_clusters_topic(regional):
    alarms = {a.name: a.inputs for a in regional.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    late, failed = alarms["prod-replication-late"], alarms["prod-replication-failed"]
    assert (late["metricName"], late["threshold"]) == ("ReplicationLatency", 900)
    assert (failed["metricName"], failed["threshold"]) == ("OperationsFailedReplication", 0)
    for alarm in (late, failed):
        assert alarm["namespace"] == "AWS/S3" and alarm["dimensions"]["RuleId"] == "snapshots"
        assert alarm["alarmActions"] == alarms["prod-errors"]["alarmActions"]


def test_the_stack_outputs_name_the_replica(regional, vault):
    prod = regional.exports["clusters"]["prod"]
    assert prod["replicaRegion"] == "eu-central-1"
    assert prod["replicaBucket"] == "prod-snapshots-replica-bucket-0a1b2c3"
    assert prod["replicaBucketArn"] == "arn:aws:s3:::prod-snapshots-replica-bucket-0a1b2c3"
    assert vault.exports["clusters"]["prod"]["replicaBucketArn"] == VAULT
    assert vault.exports["clusters"]["prod"]["replicaBucket"] == "consul-vault-backups"


def test_a_vault_account_owns_its_replicas(vault):
    [rule] = vault.one(REPLICATION, "prod-snapshots-replication").inputs["rules"]
    assert rule["destination"]["bucket"] == VAULT
    assert rule["destination"]["account"] == "210987654321"
    assert rule["destination"]["accessControlTranslation"] == {"owner": "Destination"}
    assert "s3:ObjectOwnerOverrideToBucketOwner" in granted_actions(
        policy(vault, "prod-snapshots-replication-policy")
    )
    assert not vault.of_type("pulumi:providers:aws")  # the vault's own stack keeps that bucket


# --- Pulumi never deletes what holds snapshots ---------------------------------


def test_every_bucket_resource_is_retained_on_delete(regional):
    # What the engine is told: retainOnDelete on each registration.
    bucket_parts = [r for r in regional.resources if r.type.startswith("aws:s3/")]
    assert len(bucket_parts) >= 16  # the primary and the replica, each whole
    for resource in bucket_parts:
        assert resource.retain_on_delete, resource.name
    assert not regional.one("aws:iam/role:Role", "prod-role").retain_on_delete


# --- the replica's provider: the stack's own settings, in the replica's region --------

AWS_SETTINGS = {
    "aws:region": REGION,
    "aws:profile": "backup-admin",
    "aws:assumeRoles": [
        {"roleArn": f"arn:aws:iam::{ACCOUNT}:role/deployer", "sessionName": "pulumi"}
    ],
    "aws:sharedCredentialsFiles": ["/etc/aws/credentials"],
    "aws:skipCredentialsValidation": True,
    "aws:endpoints": [{"s3": "https://s3.internal.example"}],
    "aws:defaultTags": {"tags": {"team": "platform"}},
    "aws:maxRetries": 7,
    "aws:secretKey": "not-a-real-secret-key",
}


def test_the_replicas_provider_carries_the_default_providers_settings():
    run = run_program(
        {**stack(replica={"region": "eu-central-1"}), **AWS_SETTINGS},
        secret_keys=["aws:secretKey"],
    )
    provider = run.one("pulumi:providers:aws", "prod-snapshots-replica-region").inputs
    # Only the region is the replica's; the rest is the stack's, as the Provider encodes it.
    assert provider["region"] == "eu-central-1"
    assert provider["profile"] == "backup-admin"
    assert json.loads(provider["assumeRoles"]) == AWS_SETTINGS["aws:assumeRoles"]
    assert json.loads(provider["sharedCredentialsFiles"]) == ["/etc/aws/credentials"]
    assert json.loads(provider["skipCredentialsValidation"]) is True
    assert json.loads(provider["endpoints"]) == AWS_SETTINGS["aws:endpoints"]
    assert json.loads(provider["defaultTags"]) == {"tags": {"team": "platform"}}
    assert json.loads(provider["maxRetries"]) == 7
    # A secret setting stays a secret.
    assert provider["secretKey"] == {SECRET_SIG: SECRET_KIND, "value": "not-a-real-secret-key"}
    # And the replica bucket's resources are made through it.
    bucket = run.one("aws:s3/bucket:Bucket", "prod-snapshots-replica-bucket")
    assert bucket.provider.startswith(run.one("pulumi:providers:aws", REPLICA_PROVIDER).urn)


def test_without_aws_settings_the_replicas_provider_has_its_region_alone(regional):
    provider = regional.one("pulumi:providers:aws", REPLICA_PROVIDER).inputs
    assert {k: v for k, v in provider.items() if k not in PROVIDER_DEFAULTS} == {
        "region": "eu-central-1"
    }


# What aws.Provider sets of its own accord, whatever the stack says.
PROVIDER_DEFAULTS = {"skipCredentialsValidation", "skipRegionValidation", "version"}


def explicit_providers_program(replica_provider: bool) -> Any:
    def program() -> dict[str, Any]:
        primary = aws.Provider("primary", region="eu-west-1", profile="other-account")
        replica = aws.Provider("replica", region="eu-central-1", profile="other-account")
        args = ConsulSnapshotBackupArgs(
            consul_address="http://consul:8500",
            token_secret_arn=ARN,
            replica=Replica(region="eu-central-1"),
            replica_provider=replica if replica_provider else None,
        )
        backup = ConsulSnapshotBackup(
            "prod", args, pulumi.ResourceOptions(providers={"aws": primary})
        )
        return {"bucket": backup.bucket_name}

    return program


def test_explicit_providers_reach_the_primary_and_the_replica():
    run = run_program({}, program=explicit_providers_program(replica_provider=True))
    primary = run.one("pulumi:providers:aws", "primary").urn
    replica = run.one("pulumi:providers:aws", "replica").urn
    assert run.one("aws:s3/bucket:Bucket", "prod-snapshots-bucket").provider.startswith(primary)
    assert run.one("aws:lambda/function:Function", "prod-function").provider.startswith(primary)
    replica_bucket = run.one("aws:s3/bucket:Bucket", "prod-snapshots-replica-bucket")
    assert replica_bucket.provider.startswith(replica)
    # The component made no provider of its own.
    assert sorted(p.name for p in run.of_type("pulumi:providers:aws")) == ["primary", "replica"]


def test_an_explicit_primary_provider_without_the_replicas_is_refused():
    with pytest.raises(ConfigError, match=r"explicit aws provider: give the replica's too"):
        run_program({}, program=explicit_providers_program(replica_provider=False))
