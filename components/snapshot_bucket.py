"""The S3 bucket that holds snapshots: private, encrypted, versioned, expiring.

One per cluster by default; with ``sharedBucket`` one for the whole stack, its
lifecycle rules keyed by each cluster's prefix.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .policies import deny_insecure_transport_policy

EncryptionByDefault = (
    aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs
)


@dataclass(frozen=True)
class RetentionRule:
    """How long the snapshots under one prefix are kept, and where they move."""

    prefix: str
    expire_days: int
    noncurrent_days: int
    transition_days: int | None = None
    transition_class: str | None = None


class SnapshotBucket(pulumi.ComponentResource):
    bucket: aws.s3.Bucket
    arn: pulumi.Output[str]
    name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        retention: Sequence[RetentionRule],
        kms_key_arn: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("consul-backup:index:SnapshotBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.kms_key_arn = kms_key_arn
        self.bucket = aws.s3.Bucket(f"{name}-bucket", opts=child)
        bucket_id = self.bucket.id
        self.ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket_id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=bucket_id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        self.versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket_id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        encryption_default = EncryptionByDefault(
            sse_algorithm="aws:kms" if kms_key_arn else "AES256",
            kms_master_key_id=kms_key_arn,
        )
        self.encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket_id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=encryption_default,
                    # One KMS data key per bucket, not per object: fewer KMS calls.
                    bucket_key_enabled=bool(kms_key_arn),
                )
            ],
            opts=child,
        )
        self.policy = aws.s3.BucketPolicy(
            f"{name}-deny-plain-http",
            bucket=bucket_id,
            policy=self.bucket.arn.apply(
                lambda arn: json.dumps(deny_insecure_transport_policy(arn))
            ),
            # S3 refuses a policy while the public access block is being set.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.public_access_block]),
        )
        self.lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket_id,
            rules=[_lifecycle_rule(rule) for rule in retention],
            # Lifecycle rules on noncurrent versions need versioning first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.versioning]),
        )
        self.arn = self.bucket.arn
        self.name = self.bucket.bucket
        self.register_outputs({"bucket": self.name, "arn": self.arn})


def _lifecycle_rule(rule: RetentionRule) -> aws.s3.BucketLifecycleConfigurationRuleArgs:
    transitions = None
    if rule.transition_days is not None and rule.transition_class:
        transitions = [
            aws.s3.BucketLifecycleConfigurationRuleTransitionArgs(
                days=rule.transition_days, storage_class=rule.transition_class
            )
        ]
    return aws.s3.BucketLifecycleConfigurationRuleArgs(
        id=f"snapshots-{rule.prefix.rstrip('/').replace('/', '-') or 'all'}",
        status="Enabled",
        filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=rule.prefix),
        # A run that died mid-upload leaves parts that cost money: drop them.
        abort_incomplete_multipart_upload=(
            aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                days_after_initiation=1
            )
        ),
        expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=rule.expire_days),
        noncurrent_version_expiration=(
            aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                noncurrent_days=rule.noncurrent_days
            )
        ),
        transitions=transitions,
    )
