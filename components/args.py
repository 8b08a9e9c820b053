"""ConsulSnapshotBackupArgs: the component's typed interface, and the one schema of its settings.

Every setting is declared once, as a field here: name, type, default, bounds
and one line of doc. A Python program passes them as keyword arguments; stack
config (``config``) maps its camelCase keys onto them; the README's
configuration reference is made from them (``reference``). The schema is the
only judge of a value: a wrong one raises ``ConfigError`` naming the field as
the caller wrote it, ``retention_days`` from Python, ``clusters[1] (beta):
retentionDays`` from stack config. The engine that applies it is ``validation``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pulumi

from snapshot_backup.keys import DEFAULT_PREFIX
from snapshot_backup.retention import (
    CONTENT_DROP_MIN_COUNT,
    DEFAULT_CONTENT_DROP_PERCENT,
    DEFAULT_KEEP_LATEST,
    MAX_KEEP_LATEST,
)

from .schedule import (
    DEFAULT_SCHEDULE,
    DEFAULT_VERIFY_SCHEDULE,
    MAX_ALARM_WINDOW_MINUTES,
    MIN_ALARM_WINDOW_MINUTES,
    ScheduleError,
    default_alarm_window,
    interval_or_none,
    schedule_interval_minutes,
)
from .snapshot_bucket import SnapshotBucket
from .validation import (
    Check,
    ConfigError,
    EachMatching,
    InRange,
    InvalidValueError,
    Matching,
    OneOf,
    Problem,
    SelfChecking,
    problem,
    validate,
)

__all__ = [
    "ColdStorage",
    "ConfigError",
    "ConsulSnapshotBackupArgs",
    "ObjectLock",
    "Replica",
    "SharedBucketArgs",
    "Vpc",
]

SECRET_ARN = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+"
)
KMS_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+")
REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d")
BUCKET_ARN = re.compile(r"arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
ACCOUNT_ID = re.compile(r"\d{12}")
KEY_PREFIX = re.compile(r"[A-Za-z0-9!_.'()/-]{0,200}")
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
SNS_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}")
SUBNET_ID = re.compile(r"subnet-[0-9a-f]{8,17}")
SECURITY_GROUP_ID = re.compile(r"sg-[0-9a-f]{8,17}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
DATACENTER = re.compile(r"[A-Za-z0-9_-]{1,64}")
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
COLD_STORAGE_MIN_DAYS = {
    # S3 refuses transitions to the IA classes before 30 days.
    "STANDARD_IA": 30,
    "ONEZONE_IA": 30,
    "INTELLIGENT_TIERING": 0,
    "GLACIER_IR": 0,
    "GLACIER": 0,
    "DEEP_ARCHIVE": 0,
}
KMS_KEY = Matching(KMS_KEY_ARN, "a KMS key ARN (arn:aws:kms:...:key/...)")
PREFIX = Matching(KEY_PREFIX, "an S3 key prefix (no * or ?, which IAM reads as wildcards)")
# What a cluster's arguments may not set when its snapshots go to the shared bucket.
SHARED_BUCKET_SETTINGS = ("kms_key_arn", "object_lock", "replica")


# --- checks of one value ------------------------------------------------------


def consul_address(value: str) -> str:
    """An http(s) URL of Consul's API, and nothing that could carry a secret or hide a host.

    Neither check echoes the value: an address with ``user:password@`` holds a
    password, and whitespace or control characters show as nothing in a log.
    """
    if any(char.isspace() or not char.isprintable() for char in value):
        raise InvalidValueError("contains whitespace or a control character")
    if "@" in value:
        raise InvalidValueError(
            "carries a user or password (user:password@...): Consul takes the ACL token, "
            "which stays a secret; give the bare URL"
        )
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise InvalidValueError(f"{value!r} has an invalid port") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidValueError(f"{value!r} is not an http:// or https:// URL")
    return value.rstrip("/")


def pem_certificate(value: str) -> str:
    if "-----BEGIN CERTIFICATE-----" not in value or "-----END CERTIFICATE-----" not in value:
        raise InvalidValueError("is not a PEM certificate (BEGIN/END CERTIFICATE)")
    return value


def event_schedule(value: str) -> str:
    try:
        schedule_interval_minutes(value)
    except ScheduleError as exc:
        raise InvalidValueError(f'"{value}": {exc}') from exc
    return value


def secret_text(value: Any) -> Any:
    if isinstance(value, pulumi.Output):
        return value
    if not isinstance(value, str) or not value.strip():
        raise InvalidValueError("must be a non-empty string")  # never echo it
    return value.strip()


def setting(
    default: Any = MISSING,
    *,
    doc: str,
    check: Check | None = None,
    default_doc: str | None = None,
    required_doc: str | None = None,
    in_config: bool = True,
    config_doc: str | None = None,
    secret: bool = False,
) -> Any:
    """A field of the schema: its default, one line of doc, and the check of its value.

    ``in_config`` is false for what stack config gives elsewhere than in the
    cluster's own entry (``config_doc`` says where); a ``secret`` never shows
    in a repr.
    """
    metadata = {
        "doc": doc,
        "check": check,
        "default_doc": default_doc,
        "required_doc": required_doc,
        "in_config": in_config,
        "config_doc": config_doc,
    }
    return field(default=default, metadata=metadata, repr=not secret)


# --- the schema ---------------------------------------------------------------


@dataclass(frozen=True)
class ColdStorage:
    """Move snapshots to a cheaper storage class before they expire."""

    storage_class: str = setting(
        doc="the S3 storage class to move to",
        check=OneOf(tuple(COLD_STORAGE_MIN_DAYS), "one of"),
    )
    after_days: int = setting(doc="days after creation", check=InRange(0, 36500))


@dataclass(frozen=True)
class Vpc:
    """Run the function inside your VPC."""

    subnet_ids: tuple[str, ...] = setting(
        doc="subnets with a route to Consul and to AWS",
        check=EachMatching(SUBNET_ID, "a subnet ID (subnet-...)"),
    )
    security_group_ids: tuple[str, ...] = setting(
        doc="security groups that Consul admits",
        check=EachMatching(SECURITY_GROUP_ID, "a security group ID (sg-...)"),
    )


@dataclass(frozen=True)
class ObjectLock:
    """Every snapshot version locked for a while, by the bucket's default retention."""

    mode: str = setting(
        doc="`GOVERNANCE` (a user granted s3:BypassGovernanceRetention may shorten it) or "
        "`COMPLIANCE` (nobody, root included)",
        check=OneOf(LOCK_MODES, "a lock mode"),
    )
    days: int = setting(doc="days each version stays locked", check=InRange(1, 36500))


@dataclass(frozen=True)
class Replica:
    """A copy of every snapshot in another region, or in a vault account's bucket."""

    region: str | None = setting(
        None,
        doc="a new replica bucket in this region, protected like the primary",
        check=Matching(REGION, "an AWS region"),
    )
    bucket_arn: str | None = setting(
        None,
        doc="or an existing bucket, in a separate vault account",
        check=Matching(BUCKET_ARN, "an S3 bucket ARN (arn:aws:s3:::name)"),
    )
    account_id: str | None = setting(
        None,
        doc="the vault account that owns `bucketArn`; it owns the replicas too",
        check=Matching(ACCOUNT_ID, "a 12-digit account ID"),
    )
    kms_key_arn: str | None = setting(
        None,
        doc="KMS key in the replica's region for the replicas",
        check=KMS_KEY,
        default_doc="AES256",
    )


def replica_problems(replica: Replica | None) -> list[Problem]:
    """Rules between a replica's fields: one destination, an owner for a vault, a key in place."""
    if replica is None:
        return []
    path = ("replica",)
    if (replica.region is None) == (replica.bucket_arn is None):
        return [
            Problem(
                "{0} needs one of {1} (a new bucket) and {2} (an existing one)",
                (path, (*path, "region"), (*path, "bucket_arn")),
            )
        ]
    if (replica.bucket_arn is None) != (replica.account_id is None):
        return [
            Problem(
                "{0} and {1} go together: the vault account owns the replicas",
                ((*path, "bucket_arn"), (*path, "account_id")),
            )
        ]
    key_region = replica.kms_key_arn.split(":")[3] if replica.kms_key_arn else None
    if replica.region and key_region and key_region != replica.region:
        return [
            Problem(
                "{0} is in " + key_region + ", not in the replica's region " + replica.region,
                ((*path, "kms_key_arn"),),
            )
        ]
    return []


@dataclass(frozen=True)
class SharedBucketArgs(SelfChecking):
    """One bucket for every cluster of the stack, each confined to its own prefix."""

    kms_key_arn: str | None = setting(
        None, doc="KMS key for the shared bucket", check=KMS_KEY, default_doc="AES256"
    )
    prefix: str = setting(
        DEFAULT_PREFIX,
        doc="key prefix; each cluster writes under `<prefix><cluster>/` and nowhere else",
        check=PREFIX,
    )
    object_lock: ObjectLock | None = setting(
        None, doc="lock every snapshot version in the shared bucket", default_doc="none"
    )
    replica: Replica | None = setting(
        None, doc="replicate the shared bucket to another region or account", default_doc="none"
    )

    @classmethod
    def checked(cls, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
        normalized, found = validate(cls, values)
        if not found:
            found = replica_problems(normalized["replica"])
        return normalized, found


@dataclass(frozen=True)
class ConsulSnapshotBackupArgs(SelfChecking):
    """Everything one cluster's backups need; the cluster's name is the component's name."""

    consul_address: str = setting(
        doc="`http://` or `https://` URL of the Consul HTTP API", check=consul_address
    )
    token: str | pulumi.Output[str] | None = setting(
        None,
        check=secret_text,
        doc="the ACL token (`acl:write`), kept secret; stored in a new Secrets Manager secret",
        required_doc="one of the two",
        in_config=False,
        config_doc="`consul-backup:tokens.<name>` (secret)",
        secret=True,
    )
    token_secret_arn: str | None = setting(
        None,
        doc="existing Secrets Manager secret holding the token",
        check=Matching(SECRET_ARN, "a Secrets Manager secret ARN"),
        required_doc="one of the two",
    )
    datacenter: str | None = setting(
        None,
        doc="Consul datacenter (`dc`)",
        check=Matching(DATACENTER, "a datacenter name"),
        default_doc="agent's",
    )
    stale: bool = setting(False, doc="stale reads: backups keep working while there is no leader")
    schedule: str = setting(
        DEFAULT_SCHEDULE,
        doc="EventBridge `rate(...)` or `cron(...)`, checked as AWS would",
        check=event_schedule,
    )
    verify_schedule: str = setting(
        DEFAULT_VERIFY_SCHEDULE,
        doc="when the newest snapshot is read again and verified (bucket and replica)",
        check=event_schedule,
    )
    retention_days: int = setting(
        30, doc="snapshots expire after this many days", check=InRange(1, 36500)
    )
    noncurrent_version_days: int = setting(
        7,
        doc="overwritten or expired versions are removed after this many days",
        check=InRange(1, 36500),
    )
    keep_latest: int = setting(
        DEFAULT_KEEP_LATEST,
        doc="the newest N snapshots never expire, however long backups fail",
        check=InRange(1, MAX_KEEP_LATEST),
    )
    content_drop_percent: int = setting(
        DEFAULT_CONTENT_DROP_PERCENT,
        doc="a snapshot whose KV entries, service instances, nodes or ACL tokens fell by more "
        f"than this percentage against the one before (from at least {CONTENT_DROP_MIN_COUNT}) "
        "is flagged, and the last good one held",
        check=InRange(1, 100),
    )
    object_lock: ObjectLock | None = setting(
        None, doc="lock every snapshot version (S3 Object Lock)", default_doc="none"
    )
    replica: Replica | None = setting(
        None, doc="replicate every snapshot to another region or account", default_doc="none"
    )
    replica_provider: pulumi.ProviderResource | None = setting(
        None,
        doc="the AWS provider of the new replica bucket (`replica.region`)",
        default_doc="the default provider's settings in `replica.region`",
        in_config=False,
        config_doc="the stack's `aws:*` settings",
    )
    cold_storage: ColdStorage | None = setting(
        None,
        doc="move to `STANDARD_IA`, `ONEZONE_IA` (30 days at least), `INTELLIGENT_TIERING`, "
        "`GLACIER_IR`, `GLACIER` or `DEEP_ARCHIVE` before expiry",
        default_doc="none",
    )
    ca_certificate: str | None = setting(
        None, doc="PEM of the CA that signed Consul's certificate", check=pem_certificate
    )
    vpc: Vpc | None = setting(None, doc="run the function in these subnets")
    kms_key_arn: str | None = setting(
        None,
        doc="KMS key for the bucket, the token secret and the function's environment",
        check=KMS_KEY,
        default_doc="AES256",
    )
    memory_size: int = setting(
        256,
        doc="MB; memory stays flat, CPU comes with memory (1024 or more for large snapshots)",
        check=InRange(128, 10240),
    )
    # The whole snapshot must stream within one invocation: at least 30 s.
    timeout: int = setting(600, doc="seconds a run may take", check=InRange(30, 900))
    alarm_email: str | None = setting(
        None,
        doc="e-mail subscribed to the cluster's new SNS topic",
        check=Matching(EMAIL, "an e-mail address"),
    )
    alarm_topic_arn: str | None = setting(
        None,
        doc="an existing SNS topic for alarms instead",
        check=Matching(SNS_TOPIC_ARN, "an SNS topic ARN"),
        default_doc="new topic",
    )
    log_retention_days: int = setting(
        30,
        doc="days CloudWatch Logs keeps the function's log",
        check=OneOf(LOG_RETENTION_DAYS, "a CloudWatch Logs retention"),
    )
    missed_backup_window_minutes: int | None = setting(
        None,
        doc="alarm when no backup succeeded for this long",
        check=InRange(MIN_ALARM_WINDOW_MINUTES, MAX_ALARM_WINDOW_MINUTES),
        default_doc="2 x interval (cron: 2 days)",
    )
    shared_bucket: SnapshotBucket | None = setting(
        None,
        doc="a bucket shared with other clusters, instead of a new one",
        default_doc="new bucket",
        in_config=False,
        config_doc="`consul-backup:sharedBucket`",
    )
    key_prefix: str = setting(
        DEFAULT_PREFIX,
        doc="key prefix in the bucket; the cluster's snapshots go under `<prefix><cluster>/`",
        check=PREFIX,
        in_config=False,
        config_doc="`consul-backup:sharedBucket.prefix`",
    )

    @classmethod
    def checked(cls, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
        normalized, found = validate(cls, values)
        if not found:  # rules between fields need each field right first
            found = _cross_checks(normalized)
        return normalized, found

    @property
    def verify_window_minutes(self) -> int:
        """How long without a successful re-verification before its alarm fires."""
        return default_alarm_window(self.verify_schedule)

    @property
    def alarm_window_minutes(self) -> int:
        """How long without a successful backup before the alarm fires."""
        if self.missed_backup_window_minutes is not None:
            return self.missed_backup_window_minutes
        return default_alarm_window(self.schedule)


# --- rules between settings: each names every field it involves ------------------


def _cross_checks(values: Mapping[str, Any]) -> list[Problem]:
    return [
        *_token_problems(values),
        *_alarm_problems(values),
        *_bucket_problems(values),
        *_cold_storage_problems(values),
        *_schedule_problems(values),
    ]


def _token_problems(values: Mapping[str, Any]) -> list[Problem]:
    if (values["token"] is None) == (values["token_secret_arn"] is None):
        return [Problem("{0} and {1}: give exactly one", (("token",), ("token_secret_arn",)))]
    return []


def _alarm_problems(values: Mapping[str, Any]) -> list[Problem]:
    if values["alarm_email"] and values["alarm_topic_arn"]:
        return [
            Problem(
                "{0} and {1} are exclusive: give one of them",
                (("alarm_email",), ("alarm_topic_arn",)),
            )
        ]
    return []


def _bucket_problems(values: Mapping[str, Any]) -> list[Problem]:
    """The shared bucket owns its key, lock and replica; a replica provider needs a replica."""
    found: list[Problem] = []
    if values["shared_bucket"] is not None:
        found += [
            Problem("{0} is the shared bucket's here: set {1}", ((name,), ("shared_bucket", name)))
            for name in (*SHARED_BUCKET_SETTINGS, "replica_provider")
            if values[name]
        ]
    replica: Replica | None = values["replica"]
    if values["replica_provider"] is not None and (replica is None or replica.region is None):
        found.append(
            Problem(
                "{0} is the provider of a new replica bucket: give {1} too",
                (("replica_provider",), ("replica", "region")),
            )
        )
    return found + replica_problems(replica)


def _cold_storage_problems(values: Mapping[str, Any]) -> list[Problem]:
    cold: ColdStorage | None = values["cold_storage"]
    if cold is None:
        return []
    minimum = COLD_STORAGE_MIN_DAYS[cold.storage_class]
    after = ("cold_storage", "after_days")
    if cold.after_days < minimum:
        return [
            problem(
                after, f"{cold.after_days} is below S3's {minimum} days for {cold.storage_class}"
            )
        ]
    if cold.after_days >= values["retention_days"]:
        return [
            Problem(
                "{0} "
                + f"{cold.after_days} must be less than "
                + "{1} "
                + f"({values['retention_days']}), or snapshots expire before they move",
                (after, ("retention_days",)),
            )
        ]
    return []


def _schedule_problems(values: Mapping[str, Any]) -> list[Problem]:
    window = values["missed_backup_window_minutes"]
    interval = interval_or_none(values["schedule"])
    if interval is not None and interval > MAX_ALARM_WINDOW_MINUTES:
        return [
            problem(
                ("schedule",),
                f"runs every {interval} minutes: the missed-backup alarm watches at most "
                f"{MAX_ALARM_WINDOW_MINUTES} minutes (7 days), so back up at least weekly",
            )
        ]
    if window is not None and interval is not None and window < interval:
        return [
            problem(
                ("missed_backup_window_minutes",),
                f"{window} is shorter than the schedule's interval ({interval} minutes): "
                "the alarm would fire between two healthy runs",
            )
        ]
    return []
