"""IAM and bucket policy documents, as plain functions of plain values.

Kept apart from the resources so that tests can read the exact documents and
so that least privilege is visible in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Document = dict[str, Any]


@dataclass(frozen=True)
class VpcAccess:
    """Where the function's network interfaces live."""

    ec2_arn_base: str  # arn:<partition>:ec2:<region>:<account>
    subnet_ids: Sequence[str]
    security_group_ids: Sequence[str]


def lambda_assume_role_policy() -> Document:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
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
    statements: list[Document] = [
        {
            "Sid": "WriteSnapshotsUnderThisClustersPrefix",
            "Effect": "Allow",
            # PutObject covers CreateMultipartUpload, UploadPart and
            # CompleteMultipartUpload; Abort is needed to leave nothing behind.
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
            "Resource": f"{bucket_arn}/{cluster_prefix}*",
        },
        {
            "Sid": "ReadThisClustersConsulToken",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": secret_arn,
        },
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"{log_group_arn}:*",
        },
    ]
    if kms_key_arns:
        statements.append(
            {
                "Sid": "UseTheKeysInUse",
                "Effect": "Allow",
                # GenerateDataKey to write SSE-KMS objects, Decrypt for multipart
                # uploads and for a token secret encrypted with the key.
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": sorted(set(kms_key_arns)),
            }
        )
    if vpc is not None:
        ec2_base = vpc.ec2_arn_base
        statements.extend(
            [
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
        )
    return {"Version": "2012-10-17", "Statement": statements}


def deny_insecure_transport_policy(bucket_arn: str) -> Document:
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
            }
        ],
    }
