"""IAM and bucket policy documents, as plain functions of plain values.

Kept apart from the resources so that tests can read the exact documents and
so that least privilege is visible in one place.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from snapshot_backup.keys import ObjectKind
from snapshot_backup.retention import KEPT_TAG_VALUE, RETIRED_TAG_KEY, RETIRED_TAG_VALUE

Document = dict[str, Any]
# Secrets Manager appends a hyphen and six random characters to every secret's ARN.
_FULL_SECRET_ARN = re.compile(r".*:secret:.+-[A-Za-z0-9]{6}")


def secret_resource(secret_arn: str) -> str:
    """The secret as an IAM policy must name it.

    A full ARN names exactly that secret; a partial one (the name without the
    six-character suffix) names nothing in IAM, so it gets ``-??????``, the
    form AWS recommends. A name may not hold ``*`` or ``?``: nothing else matches.
    """
    return secret_arn if _FULL_SECRET_ARN.fullmatch(secret_arn) else f"{secret_arn}-??????"


@dataclass(frozen=True)
class VpcAccess:
    """Where the function's network interfaces live."""

    ec2_arn_base: str  # arn:<partition>:ec2:<region>:<account>
    subnet_ids: Sequence[str]
    security_group_ids: Sequence[str]


def write_own_logs(log_group_arn: str) -> Document:
    """A function's own log group, and nothing else of CloudWatch Logs."""
    return {
        "Sid": "WriteOwnLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": f"{log_group_arn}:*",
    }


def assume_role_policy(service: str) -> Document:
    """A role only ``service`` (``lambda``, ``s3``) may assume."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": f"{service}.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def backup_function_policy(
    *,
    bucket_arn: str,
    cluster_prefix: str,
    secret_arn: str,
    log_group_arn: str,
    kms_key_arns: Sequence[str] = (),
    vpc: VpcAccess | None = None,
) -> Document:
    """What the backup function may do, and nothing more."""
    statements = [
        *snapshot_rights(bucket_arn, cluster_prefix),
        {
            "Sid": "ReadThisClustersConsulToken",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": secret_resource(secret_arn),
        },
        write_own_logs(log_group_arn),
    ]
    if kms_key_arns:
        statements.append(
            {
                "Sid": "UseTheKeysInUse",
                "Effect": "Allow",
                # GenerateDataKey to write SSE-KMS objects, Decrypt for multipart
                # uploads, for the manifests it reads and for a token secret
                # encrypted with the key.
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": sorted(set(kms_key_arns)),
            }
        )
    if vpc is not None:
        statements += network_interface_rights(vpc)
    return {"Version": "2012-10-17", "Statement": statements}


def snapshot_rights(bucket_arn: str, cluster_prefix: str) -> list[Document]:
    """The backup function's rights on its cluster's objects: write new ones, never read a snapshot.

    Under ``<bucket>/<cluster prefix>`` only: write (the bucket's policy makes
    every write a write-once), list, read the manifests (to compare a snapshot's
    content with the one before), tag retired or kept, and delete a
    ``.retired`` marker (when a snapshot comes back under the floor).
    """
    objects = f"{bucket_arn}/{cluster_prefix}*"
    return [
        {
            "Sid": "WriteSnapshotsUnderThisClustersPrefix",
            "Effect": "Allow",
            # PutObject covers CreateMultipartUpload, UploadPart and
            # CompleteMultipartUpload; Abort is needed to leave nothing behind.
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
            "Resource": objects,
        },
        {
            # To find the snapshots that fall out of the newest keepLatest.
            "Sid": "ListThisClustersSnapshots",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": [f"{cluster_prefix}*"]}},
        },
        {
            # The manifests, never an archive: a stolen role reads no Consul state.
            "Sid": "ReadThisClustersManifests",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"{objects}{ObjectKind.MANIFEST.value}",
        },
        {
            # Only the one tag that lets lifecycle expire a snapshot, set or
            # cleared; PutObject with a Tagging header (a .retired marker born
            # retired) is authorised by this too. A stolen role can shorten the
            # floor with it, never the age or a lock.
            "Sid": "RetireSnapshotsBeyondTheFloor",
            "Effect": "Allow",
            "Action": "s3:PutObjectTagging",
            "Resource": objects,
            "Condition": {
                "ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": [RETIRED_TAG_KEY]},
                "StringEquals": {
                    f"s3:RequestObjectTag/{RETIRED_TAG_KEY}": [RETIRED_TAG_VALUE, KEPT_TAG_VALUE]
                },
            },
        },
        {
            # Versioning keeps what it deletes, as a noncurrent version.
            "Sid": "ClearRetiredMarkers",
            "Effect": "Allow",
            "Action": "s3:DeleteObject",
            "Resource": f"{objects}{ObjectKind.RETIRED.value}",
        },
    ]


def network_interface_rights(vpc: VpcAccess) -> list[Document]:
    """What Lambda needs of EC2 to run the function in the given subnets, and no more."""
    ec2_base = vpc.ec2_arn_base
    return [
        {
            "Sid": "CreateNetworkInterfacesInTheGivenSubnets",
            "Effect": "Allow",
            "Action": "ec2:CreateNetworkInterface",
            "Resource": [
                f"{ec2_base}:network-interface/*",
                *(f"{ec2_base}:subnet/{s}" for s in vpc.subnet_ids),
                *(f"{ec2_base}:security-group/{g}" for g in vpc.security_group_ids),
            ],
        },
        {
            "Sid": "ManageTheFunctionsNetworkInterfaces",
            "Effect": "Allow",
            # Lambda removes and re-addresses the interfaces it created
            # for this function with the function's own role.
            "Action": [
                "ec2:DeleteNetworkInterface",
                "ec2:AssignPrivateIpAddresses",
                "ec2:UnassignPrivateIpAddresses",
            ],
            "Resource": f"{ec2_base}:network-interface/*",
        },
        {
            "Sid": "DescribeNetworkInterfaces",
            "Effect": "Allow",
            "Action": "ec2:DescribeNetworkInterfaces",
            # EC2 Describe* actions support no resource-level permissions:
            # AWS accepts nothing narrower than "*" here.
            "Resource": "*",
        },
    ]


def snapshot_bucket_policy(bucket_arn: str) -> Document:
    """Every snapshot bucket's own policy: TLS only, and every object written once, by anyone.

    The write-once statement is AWS's "Enforce conditional writes on Amazon S3
    buckets" (S3 User Guide, conditional-writes-enforce.html, the deny of its
    example 3, for ``If-None-Match`` alone): ``s3:PutObject`` (which also
    authorises CompleteMultipartUpload and CopyObject) is denied unless the
    request carries ``If-None-Match``; ``s3:ObjectCreationOperation`` is false
    for CreateMultipartUpload, UploadPart and UploadPartCopy, which take no
    conditional header, so they are left to the identity policies. A bucket
    policy binds every principal of the account, administrators included: no
    one overwrites a stored object, whatever their role allows (S3 Replication
    writes replicas with ``s3:ReplicateObject``, which this does not touch).
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyPlainHttp",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                "Sid": "DenyWritesThatMayOverwrite",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"{bucket_arn}/*",
                "Condition": {
                    "Null": {"s3:if-none-match": "true"},
                    "Bool": {"s3:ObjectCreationOperation": "true"},
                },
            },
        ],
    }


def replication_policy(
    *,
    source_bucket_arn: str,
    destination_bucket_arn: str,
    source_kms_key_arns: Sequence[str] = (),
    destination_kms_key_arn: str | None = None,
    owner_override: bool = False,
) -> Document:
    """What S3 Replication may do: copy new versions and their tags, never delete."""
    replicate = ["s3:ReplicateObject", "s3:ReplicateTags"]
    if owner_override:  # replicas owned by the vault account, not by this one
        replicate.append("s3:ObjectOwnerOverrideToBucketOwner")
    statements: list[Document] = [
        {
            "Sid": "ReadTheReplicationConfiguration",
            "Effect": "Allow",
            "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"],
            "Resource": source_bucket_arn,
        },
        {
            "Sid": "ReadVersionsToReplicate",
            "Effect": "Allow",
            # S3 replicates a version under Object Lock only with its retention
            # and legal hold, which it reads with the role: "Using Object Lock
            # with S3 Replication" (S3 User Guide, object-lock-managing.html)
            # asks for s3:GetObjectRetention and s3:GetObjectLegalHold on the
            # source. Granted with or without a lock: the lock is a resource
            # of its own that may be turned on later, and reading lock
            # metadata changes nothing.
            "Action": [
                "s3:GetObjectVersionForReplication",
                "s3:GetObjectVersionAcl",
                "s3:GetObjectVersionTagging",
                "s3:GetObjectRetention",
                "s3:GetObjectLegalHold",
            ],
            "Resource": f"{source_bucket_arn}/*",
        },
        {
            # No s3:ReplicateDelete: a delete in the source never reaches the replica.
            "Sid": "WriteReplicas",
            "Effect": "Allow",
            "Action": replicate,
            "Resource": f"{destination_bucket_arn}/*",
        },
    ]
    statements += replication_key_rights(source_kms_key_arns, destination_kms_key_arn)
    return {"Version": "2012-10-17", "Statement": statements}


def replication_key_rights(
    source_kms_key_arns: Sequence[str], destination_kms_key_arn: str | None
) -> list[Document]:
    """Decrypt what the source holds under a key, encrypt the replicas under the replica's."""
    statements: list[Document] = []
    if source_kms_key_arns:
        statements.append(
            {
                "Sid": "DecryptSourceVersions",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": sorted(set(source_kms_key_arns)),
            }
        )
    if destination_kms_key_arn:
        statements.append(
            {
                "Sid": "EncryptReplicas",
                "Effect": "Allow",
                "Action": ["kms:Encrypt", "kms:GenerateDataKey"],
                "Resource": destination_kms_key_arn,
            }
        )
    return statements


def verify_function_policy(
    *,
    readable: Sequence[tuple[str, str]],
    log_group_arn: str,
    kms_key_arns: Sequence[str] = (),
) -> Document:
    """What the re-verification may do: list and read one cluster's snapshots; nothing else.

    ``readable`` holds (bucket ARN, cluster prefix) pairs: the bucket, and the replica.
    """
    statements: list[Document] = [
        {
            "Sid": "ReadThisClustersSnapshots",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": [f"{bucket}/{prefix}*" for bucket, prefix in readable],
        },
        {
            "Sid": "ListThisClustersSnapshots",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": [bucket for bucket, _ in readable],
            "Condition": {"StringLike": {"s3:prefix": sorted({f"{p}*" for _, p in readable})}},
        },
        write_own_logs(log_group_arn),
    ]
    if kms_key_arns:
        statements.append(
            {
                "Sid": "DecryptSnapshots",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": sorted(set(kms_key_arns)),
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}
