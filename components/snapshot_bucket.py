"""The S3 bucket that holds snapshots: private, encrypted, versioned, expiring, kept.

One per cluster by default; with ``sharedBucket`` one for the whole stack, its
lifecycle rules keyed by each cluster's prefix. Optionally every version is
locked (Object Lock) and replicated to a bucket in another region or account.

Pulumi never deletes a bucket that holds snapshots, nor the settings that
protect it: every resource here is ``retain_on_delete``, so removing a
cluster, ``pulumi destroy`` or a replacement leaves the bucket, its snapshots,
its public access block and its lock in place (the README says how to remove
them on purpose).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import pulumi
import pulumi_aws as aws

from snapshot_backup.retention import RETIRED_TAG_KEY, RETIRED_TAG_VALUE

from .policies import assume_role_policy, replication_policy, snapshot_bucket_policy
from .providers import provider_in_region
from .validation import ConfigError

EncryptionByDefault = (
    aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs
)
REPLICATION_RULE_ID = "snapshots"
# S3 Replication Time Control: 99.99% of objects within 15 minutes.
REPLICATION_MINUTES = 15


class LockSettings(Protocol):
    """A bucket's default retention (``args.ObjectLock``)."""

    @property
    def mode(self) -> str: ...
    @property
    def days(self) -> int: ...


class ReplicaSettings(Protocol):
    """Where a bucket replicates to (``args.Replica``): a new bucket in a region, or a vault's."""

    @property
    def region(self) -> str | None: ...
    @property
    def bucket_arn(self) -> str | None: ...
    @property
    def account_id(self) -> str | None: ...
    @property
    def kms_key_arn(self) -> str | None: ...


def bucket_name(bucket_arn: str) -> str:
    """``arn:aws:s3:::name`` -> ``name``: the one place a bucket ARN is taken apart."""
    return bucket_arn.split(":::", 1)[-1]


@dataclass(frozen=True)
class RetentionRule:
    """How long the snapshots under one prefix are kept, and where they move."""

    prefix: str
    expire_days: int
    noncurrent_days: int
    transition_days: int | None = None
    transition_class: str | None = None


@dataclass(frozen=True)
class ReplicaTarget:
    """Where replicas go: a bucket this component made, or a vault account's."""

    bucket_arn: pulumi.Input[str]
    region: pulumi.Input[str]
    kms_key_arn: str | None
    account_id: str | None  # set for a vault account: replicas become its objects

    @property
    def bucket_name(self) -> pulumi.Output[str]:
        return pulumi.Output.from_input(self.bucket_arn).apply(bucket_name)


@dataclass(frozen=True)
class Protections:
    """What keeps a bucket private, owned, encrypted and reachable over TLS only."""

    ownership: aws.s3.BucketOwnershipControls
    public_access_block: aws.s3.BucketPublicAccessBlock
    encryption: aws.s3.BucketServerSideEncryptionConfiguration
    policy: aws.s3.BucketPolicy


@dataclass(frozen=True)
class Replication:
    """Replication to the replica: the role S3 assumes, its policy, the configuration."""

    target: ReplicaTarget
    role: aws.iam.Role
    role_policy: aws.iam.RolePolicy
    configuration: aws.s3.BucketReplicationConfig


class SnapshotBucket(pulumi.ComponentResource):
    """A bucket for snapshots; with ``replica``, a second one and the replication between.

    The replica bucket's provider is ``replica_provider``; without one, the
    stack's default provider's settings in ``replica.region``
    (``providers.provider_in_region``). A bucket given an explicit AWS provider
    (``opts.providers``) must be given the replica's too: the default
    provider's settings are not the ones it deploys with.
    """

    bucket: aws.s3.Bucket
    arn: pulumi.Output[str]
    name: pulumi.Output[str]
    region: pulumi.Output[str]
    kms_key_arn: str | None
    object_lock: LockSettings | None
    protections: Protections
    versioning: aws.s3.BucketVersioning
    lock_configuration: aws.s3.BucketObjectLockConfiguration | None
    lifecycle: aws.s3.BucketLifecycleConfiguration
    replica_bucket: SnapshotBucket | None
    replication: Replication | None
    replica: ReplicaTarget | None

    def __init__(
        self,
        name: str,
        retention: Sequence[RetentionRule],
        kms_key_arn: str | None = None,
        object_lock: LockSettings | None = None,
        replica: ReplicaSettings | None = None,
        opts: pulumi.ResourceOptions | None = None,
        replica_provider: pulumi.ProviderResource | None = None,
    ) -> None:
        super().__init__("consul-backup:index:SnapshotBucket", name, None, opts)
        self._name = name
        self._kept = pulumi.ResourceOptions(parent=self, retain_on_delete=True)
        self.kms_key_arn = kms_key_arn
        self.object_lock = object_lock

        self.bucket = aws.s3.Bucket(f"{name}-bucket", opts=self._kept)
        self.region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        self.protections = self._create_protections(self.bucket)
        self.versioning = self._create_versioning(self.bucket)
        self.lock_configuration = self._create_object_lock(self.bucket, self.versioning)
        self.lifecycle = self._create_lifecycle(self.bucket, self.versioning, retention)
        self.replica_bucket = self._create_replica_bucket(replica, retention, replica_provider)
        self.replication = self._create_replication(replica, self.replica_bucket, self.region)

        self.arn = self.bucket.arn
        self.name = self.bucket.bucket
        self.replica = self.replication.target if self.replication else None
        self.register_outputs({"bucket": self.name, "arn": self.arn, "region": self.region})

    def _options(self, *depends_on: pulumi.Resource) -> pulumi.ResourceOptions:
        return self._kept.merge(pulumi.ResourceOptions(depends_on=list(depends_on)))

    def _create_protections(self, bucket: aws.s3.Bucket) -> Protections:
        name = self._name
        ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=self._kept,
        )
        public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=self._kept,
        )
        encryption_default = EncryptionByDefault(
            sse_algorithm="aws:kms" if self.kms_key_arn else "AES256",
            kms_master_key_id=self.kms_key_arn,
        )
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=encryption_default,
                    # One KMS data key per bucket, not per object: fewer KMS calls.
                    bucket_key_enabled=bool(self.kms_key_arn),
                )
            ],
            opts=self._kept,
        )
        # Named for its first statement; the name is the policy's identity in the stack.
        policy = aws.s3.BucketPolicy(
            f"{name}-deny-plain-http",
            bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: json.dumps(snapshot_bucket_policy(arn))),
            # S3 refuses a policy while the public access block is being set.
            opts=self._options(public_access_block),
        )
        return Protections(ownership, public_access_block, encryption, policy)

    def _create_versioning(self, bucket: aws.s3.Bucket) -> aws.s3.BucketVersioning:
        return aws.s3.BucketVersioning(
            f"{self._name}-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=self._kept,
        )

    def _create_object_lock(
        self, bucket: aws.s3.Bucket, versioning: aws.s3.BucketVersioning
    ) -> aws.s3.BucketObjectLockConfiguration | None:
        lock = self.object_lock
        if lock is None:
            return None
        # A resource of its own, not the bucket's object_lock_enabled (which
        # replaces the bucket): S3 enables Object Lock on an existing versioned
        # bucket, so turning it on later leaves the bucket and its snapshots.
        return aws.s3.BucketObjectLockConfiguration(
            f"{self._name}-object-lock",
            bucket=bucket.id,
            object_lock_enabled="Enabled",
            rule=aws.s3.BucketObjectLockConfigurationRuleArgs(
                default_retention=aws.s3.BucketObjectLockConfigurationRuleDefaultRetentionArgs(
                    mode=lock.mode, days=lock.days
                )
            ),
            opts=self._options(versioning),
        )

    def _create_lifecycle(
        self,
        bucket: aws.s3.Bucket,
        versioning: aws.s3.BucketVersioning,
        retention: Sequence[RetentionRule],
    ) -> aws.s3.BucketLifecycleConfiguration:
        return aws.s3.BucketLifecycleConfiguration(
            f"{self._name}-lifecycle",
            bucket=bucket.id,
            rules=[rule for r in retention for rule in lifecycle_rules(r)],
            # Lifecycle rules on noncurrent versions need versioning first.
            opts=self._options(versioning),
        )

    def _create_replica_bucket(
        self,
        replica: ReplicaSettings | None,
        retention: Sequence[RetentionRule],
        provider: pulumi.ProviderResource | None,
    ) -> SnapshotBucket | None:
        """A new bucket in the replica's region, protected like this one; none for a vault's."""
        if replica is None or replica.region is None:
            return None
        return SnapshotBucket(
            f"{self._name}-replica",
            retention=retention,
            kms_key_arn=replica.kms_key_arn,
            object_lock=self.object_lock,
            opts=pulumi.ResourceOptions(
                parent=self,
                providers={"aws": provider or self._replica_provider(replica.region)},
            ),
        )

    def _replica_provider(self, region: str) -> aws.Provider:
        """The default provider's settings in the replica's region, unless one is explicit."""
        if self.get_provider("aws:s3/bucket:Bucket") is not None:
            raise ConfigError(
                [
                    f"{self._name}: the bucket has an explicit aws provider: give the replica's "
                    "too (replica_provider), or the replica would deploy with the stack's "
                    "default provider settings"
                ]
            )
        return provider_in_region(
            f"{self._name}-replica-region", region, pulumi.ResourceOptions(parent=self)
        )

    @staticmethod
    def _replica_target(
        replica: ReplicaSettings, replica_bucket: SnapshotBucket | None, region: pulumi.Output[str]
    ) -> ReplicaTarget:
        if replica_bucket is not None:
            assert replica.region is not None  # a replica bucket is made in its region
            return ReplicaTarget(replica_bucket.arn, replica.region, replica.kms_key_arn, None)
        # The vault account's bucket (the arguments demand one of the two), in
        # this bucket's region: its own stack keeps and protects it.
        assert replica.bucket_arn is not None
        return ReplicaTarget(replica.bucket_arn, region, replica.kms_key_arn, replica.account_id)

    def _create_replication(
        self,
        replica: ReplicaSettings | None,
        replica_bucket: SnapshotBucket | None,
        region: pulumi.Output[str],
    ) -> Replication | None:
        if replica is None:
            return None
        target = self._replica_target(replica, replica_bucket, region)
        name = self._name
        role = aws.iam.Role(
            f"{name}-replication-role",
            description=f"S3 Replication of consul-backup snapshots from {name}",
            assume_role_policy=json.dumps(assume_role_policy("s3")),
            opts=pulumi.ResourceOptions(parent=self),
        )
        source_keys = [self.kms_key_arn] if self.kms_key_arn else []
        role_policy = aws.iam.RolePolicy(
            f"{name}-replication-policy",
            role=role.id,
            policy=pulumi.Output.all(self.bucket.arn, target.bucket_arn).apply(
                lambda arns: json.dumps(
                    replication_policy(
                        source_bucket_arn=arns[0],
                        destination_bucket_arn=arns[1],
                        source_kms_key_arns=source_keys,
                        destination_kms_key_arn=target.kms_key_arn,
                        owner_override=target.account_id is not None,
                    ),
                    sort_keys=True,
                )
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        depends: list[pulumi.Resource] = [self.versioning, role_policy]
        if replica_bucket is not None:
            depends.append(replica_bucket.versioning)
        configuration = aws.s3.BucketReplicationConfig(
            f"{name}-replication",
            bucket=self.bucket.id,
            role=role.arn,
            rules=[replication_rule(target)],
            opts=self._options(*depends),
        )
        return Replication(target, role, role_policy, configuration)


def lifecycle_rules(rule: RetentionRule) -> list[aws.s3.BucketLifecycleConfigurationRuleArgs]:
    """Two rules per prefix: expiry for retired snapshots only, housekeeping for all.

    A snapshot expires ``expire_days`` after its creation once the function has
    tagged it retired (it fell out of the newest ``keepLatest``); untagged, the
    floor, it stays however old it grows. Everything under the prefix moves to
    cold storage on time, loses noncurrent versions after ``noncurrent_days``
    (a locked version only once its lock has ended), and sheds incomplete uploads.
    """
    name = rule.prefix.rstrip("/").replace("/", "-") or "all"
    transitions = None
    if rule.transition_days is not None and rule.transition_class:
        transitions = [
            aws.s3.BucketLifecycleConfigurationRuleTransitionArgs(
                days=rule.transition_days, storage_class=rule.transition_class
            )
        ]
    retired = aws.s3.BucketLifecycleConfigurationRuleArgs(
        id=f"expire-retired-{name}",
        status="Enabled",
        filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(
            and_=aws.s3.BucketLifecycleConfigurationRuleFilterAndArgs(
                prefix=rule.prefix, tags={RETIRED_TAG_KEY: RETIRED_TAG_VALUE}
            )
        ),
        expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=rule.expire_days),
    )
    housekeeping = aws.s3.BucketLifecycleConfigurationRuleArgs(
        id=f"snapshots-{name}",
        status="Enabled",
        filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=rule.prefix),
        # A run that died mid-upload leaves parts that cost money: drop them.
        abort_incomplete_multipart_upload=(
            aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                days_after_initiation=1
            )
        ),
        # Delete markers with nothing left behind them.
        expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(
            expired_object_delete_marker=True
        ),
        noncurrent_version_expiration=(
            aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                noncurrent_days=rule.noncurrent_days
            )
        ),
        transitions=transitions,
    )
    return [retired, housekeeping]


def replication_rule(target: ReplicaTarget) -> aws.s3.BucketReplicationConfigRuleArgs:
    """Every new version, its tags, KMS-encrypted or not, within 15 minutes; no deletes."""
    minutes = aws.s3.BucketReplicationConfigRuleDestinationReplicationTimeTimeArgs(
        minutes=REPLICATION_MINUTES
    )
    threshold = aws.s3.BucketReplicationConfigRuleDestinationMetricsEventThresholdArgs(
        minutes=REPLICATION_MINUTES
    )
    destination = aws.s3.BucketReplicationConfigRuleDestinationArgs(
        bucket=target.bucket_arn,
        account=target.account_id,
        access_control_translation=(
            aws.s3.BucketReplicationConfigRuleDestinationAccessControlTranslationArgs(
                owner="Destination"
            )
            if target.account_id
            else None
        ),
        encryption_configuration=(
            aws.s3.BucketReplicationConfigRuleDestinationEncryptionConfigurationArgs(
                replica_kms_key_id=target.kms_key_arn
            )
            if target.kms_key_arn
            else None
        ),
        replication_time=aws.s3.BucketReplicationConfigRuleDestinationReplicationTimeArgs(
            status="Enabled", time=minutes
        ),
        metrics=aws.s3.BucketReplicationConfigRuleDestinationMetricsArgs(
            status="Enabled", event_threshold=threshold
        ),
    )
    return aws.s3.BucketReplicationConfigRuleArgs(
        id=REPLICATION_RULE_ID,
        status="Enabled",
        priority=1,
        filter=aws.s3.BucketReplicationConfigRuleFilterArgs(prefix=""),
        delete_marker_replication=(
            aws.s3.BucketReplicationConfigRuleDeleteMarkerReplicationArgs(status="Disabled")
        ),
        source_selection_criteria=aws.s3.BucketReplicationConfigRuleSourceSelectionCriteriaArgs(
            sse_kms_encrypted_objects=(
                aws.s3.BucketReplicationConfigRuleSourceSelectionCriteriaSseKmsEncryptedObjectsArgs(
                    status="Enabled"
                )
            )
        ),
        destination=destination,
    )
