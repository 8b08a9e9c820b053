"""Stack configuration: parsed and checked when the program starts.

Every mistake is reported at ``pulumi preview`` with the cluster (its name, or
its index when it has none) and the field, e.g.
``clusters[1] (beta): schedule "every day" is not an EventBridge rate() or
cron() expression``, never as an AWS error halfway through ``pulumi up``. All
mistakes are reported at once, so one preview shows everything to fix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .schedule import DAILY_MINUTES, ScheduleError, schedule_interval_minutes

# Lowercase, digits and hyphens; 32 characters keeps every derived AWS name
# (bucket names of 63, role and function names of 64) within its limit.
CLUSTER_NAME = re.compile(r"[a-z]([a-z0-9-]{0,30}[a-z0-9])?")
MAX_CLUSTER_NAME = 32
SECRET_ARN = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+"
)
KMS_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+")
SNS_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}")
SUBNET_ID = re.compile(r"subnet-[0-9a-f]{8,17}")
SECURITY_GROUP_ID = re.compile(r"sg-[0-9a-f]{8,17}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
DATACENTER = re.compile(r"[A-Za-z0-9_-]{1,64}")
KEY_PREFIX = re.compile(r"[A-Za-z0-9!_.*'()/-]{0,200}")
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
DEFAULT_SCHEDULE = "rate(1 hour)"
DEFAULT_PREFIX = "consul-snapshots/"
# CloudWatch alarms evaluate at most seven days of data.
MAX_ALARM_WINDOW_MINUTES = 7 * 1440

CLUSTER_KEYS = {
    "name", "consulAddress", "tokenSecretArn", "datacenter", "stale", "schedule",
    "retentionDays", "noncurrentVersionDays", "coldStorage", "caCertificate", "vpc",
    "kmsKeyArn", "memorySize", "timeout", "alarmEmail", "alarmTopicArn",
    "logRetentionDays", "missedBackupWindowMinutes",
}  # fmt: skip
COLD_STORAGE_KEYS = {"storageClass", "afterDays"}
VPC_KEYS = {"subnetIds", "securityGroupIds"}
SHARED_BUCKET_KEYS = {"kmsKeyArn", "prefix"}


class ConfigError(ValueError):
    """One or more settings are wrong; the message lists every one of them."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            "invalid consul-backup configuration:\n" + "\n".join(f"  - {p}" for p in problems)
        )


@dataclass(frozen=True)
class ColdStorage:
    storage_class: str
    after_days: int


@dataclass(frozen=True)
class VpcSettings:
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]


@dataclass(frozen=True)
class ClusterSettings:
    """One cluster's validated settings: plain values that decide the resources."""

    name: str
    consul_address: str
    token_secret_arn: str | None = None
    datacenter: str | None = None
    stale: bool = False
    schedule: str = DEFAULT_SCHEDULE
    retention_days: int = 30
    noncurrent_version_days: int = 7
    cold_storage: ColdStorage | None = None
    ca_certificate: str | None = None
    vpc: VpcSettings | None = None
    kms_key_arn: str | None = None
    memory_size: int = 256
    timeout: int = 600
    alarm_email: str | None = None
    alarm_topic_arn: str | None = None
    log_retention_days: int = 30
    missed_backup_window_minutes: int = 2 * 60


@dataclass(frozen=True)
class SharedBucketSettings:
    kms_key_arn: str | None = None


@dataclass(frozen=True)
class StackSettings:
    clusters: tuple[ClusterSettings, ...]
    tokens: Mapping[str, str] = field(default_factory=dict)
    shared_bucket: SharedBucketSettings | None = None
    prefix: str = DEFAULT_PREFIX

    def __repr__(self) -> str:  # never print the tokens
        return f"StackSettings(clusters={[c.name for c in self.clusters]})"


T = TypeVar("T")


class _Reader:
    """Reads one object's fields, collecting problems under one label."""

    def __init__(self, raw: Mapping[str, Any], label: str, problems: list[str]) -> None:
        self.raw = raw
        self.label = label
        self.problems = problems

    def problem(self, field_name: str, message: str) -> None:
        self.problems.append(f"{self.label}: {field_name} {message}")

    def unknown_keys(self, allowed: set[str], where: str = "") -> None:
        for key in sorted(set(self.raw) - allowed):
            hint = _closest(key, allowed)
            suffix = f" (did you mean {hint!r}?)" if hint else ""
            self.problems.append(f"{self.label}: unknown key {where}{key!r}{suffix}")

    def string(
        self,
        key: str,
        pattern: re.Pattern[str] | None = None,
        describe: str = "",
        required: bool = False,
    ) -> str | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                self.problem(key, "is required")
            return None
        if not isinstance(value, str):
            self.problem(key, f"must be a string, not {_type_name(value)}")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.problem(key, f"{value!r} is not {describe}")
            return None
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, not {_type_name(value)} {value!r}")
            return default
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.raw.get(key, default)
        # YAML numbers may come as floats (1.0); booleans are ints in Python.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, f"must be a whole number, not {_type_name(value)} {value!r}")
            return default
        if not low <= value <= high:
            self.problem(key, f"{value} is out of range ({low} to {high})")
            return default
        return value

    def mapping(self, key: str) -> Mapping[str, Any] | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.problem(key, f"must be an object, not {_type_name(value)}")
            return None
        return value

    def id_list(self, key: str, pattern: re.Pattern[str], describe: str) -> tuple[str, ...]:
        value = self.raw.get(key)
        if value is None or (isinstance(value, list) and not value):
            self.problem(key, "needs at least one entry")
            return ()
        if not isinstance(value, list):
            self.problem(key, f"must be a list, not {_type_name(value)}")
            return ()
        good = []
        for item in value:
            if isinstance(item, str) and pattern.fullmatch(item):
                good.append(item)
            else:
                self.problem(key, f"entry {item!r} is not {describe}")
        if len(set(good)) != len(good):
            self.problem(key, "lists an entry twice")
        return tuple(good)


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), "a list" if isinstance(value, list) else "an object"
    )


def _closest(key: str, allowed: set[str]) -> str | None:
    matches = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.7)
    return matches[0] if matches else None


def _consul_address(reader: _Reader) -> str | None:
    value = reader.string("consulAddress", required=True)
    if value is None:
        return None
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        reader.problem("consulAddress", f"{value!r} has an invalid port")
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        reader.problem("consulAddress", f"{value!r} is not an http:// or https:// URL")
        return None
    return value.rstrip("/")


def _ca_certificate(reader: _Reader) -> str | None:
    value = reader.string("caCertificate")
    if value is not None and (
        "-----BEGIN CERTIFICATE-----" not in value or "-----END CERTIFICATE-----" not in value
    ):
        reader.problem("caCertificate", "is not a PEM certificate (BEGIN/END CERTIFICATE)")
        return None
    return value


def _cold_storage(reader: _Reader, retention_days: int) -> ColdStorage | None:
    raw = reader.mapping("coldStorage")
    if raw is None:
        return None
    sub = _Reader(raw, reader.label, reader.problems)
    sub.unknown_keys(COLD_STORAGE_KEYS, "coldStorage.")
    storage_class = sub.string("storageClass", required=True)
    if storage_class is not None and storage_class not in COLD_STORAGE_MIN_DAYS:
        reader.problem(
            "coldStorage.storageClass",
            f"{storage_class!r} is not one of {', '.join(COLD_STORAGE_MIN_DAYS)}",
        )
        storage_class = None
    if "afterDays" not in raw:
        reader.problem("coldStorage.afterDays", "is required")
        return None
    after_days = sub.integer("afterDays", 0, 0, 36500)
    if storage_class is None:
        return None
    minimum = COLD_STORAGE_MIN_DAYS[storage_class]
    if after_days < minimum:
        reader.problem(
            "coldStorage.afterDays",
            f"{after_days} is below S3's {minimum} days for {storage_class}",
        )
        return None
    if after_days >= retention_days:
        reader.problem(
            "coldStorage.afterDays",
            f"{after_days} must be less than retentionDays ({retention_days}), "
            "or snapshots expire before they move",
        )
        return None
    return ColdStorage(storage_class, after_days)


def _vpc(reader: _Reader) -> VpcSettings | None:
    raw = reader.mapping("vpc")
    if raw is None:
        return None
    sub = _Reader(raw, reader.label, reader.problems)
    sub.unknown_keys(VPC_KEYS, "vpc.")
    subnets = sub.id_list("subnetIds", SUBNET_ID, "a subnet ID (subnet-...)")
    groups = sub.id_list("securityGroupIds", SECURITY_GROUP_ID, "a security group ID (sg-...)")
    return VpcSettings(subnets, groups) if subnets and groups else None


def _schedule(reader: _Reader) -> tuple[str, int | None]:
    schedule = reader.string("schedule") or DEFAULT_SCHEDULE
    try:
        return schedule, schedule_interval_minutes(schedule)
    except ScheduleError as exc:
        reader.problem("schedule", f'"{schedule}": {exc}')
        return DEFAULT_SCHEDULE, 60


def _alarm_window(reader: _Reader, interval: int | None) -> int:
    # A miss is one run that did not succeed: alarm when two intervals pass
    # without a success (a daily cron gets two days), unless set explicitly.
    default = 2 * (interval if interval is not None else DAILY_MINUTES)
    default = max(10, min(default, MAX_ALARM_WINDOW_MINUTES))
    window = reader.integer("missedBackupWindowMinutes", default, 10, MAX_ALARM_WINDOW_MINUTES)
    if interval is not None and window < interval and "missedBackupWindowMinutes" in reader.raw:
        reader.problem(
            "missedBackupWindowMinutes",
            f"{window} is shorter than the schedule's interval ({interval} minutes): "
            "the alarm would fire between two healthy runs",
        )
    return window


def parse_cluster(raw: Any, index: int, problems: list[str]) -> ClusterSettings | None:
    name_value = raw.get("name") if isinstance(raw, Mapping) else None
    label = f"clusters[{index}]" + (f" ({name_value})" if isinstance(name_value, str) else "")
    if not isinstance(raw, Mapping):
        problems.append(f"{label}: must be an object, not {_type_name(raw)}")
        return None
    before = len(problems)
    reader = _Reader(raw, label, problems)
    reader.unknown_keys(CLUSTER_KEYS)
    name = reader.string(
        "name",
        CLUSTER_NAME,
        f"a valid cluster name (lowercase letters, digits and hyphens, starting with a "
        f"letter, not ending in a hyphen, at most {MAX_CLUSTER_NAME} characters)",
        required=True,
    )
    address = _consul_address(reader)
    retention = reader.integer("retentionDays", 30, 1, 36500)
    noncurrent = reader.integer("noncurrentVersionDays", 7, 1, 36500)
    schedule, interval = _schedule(reader)
    alarm_email = reader.string("alarmEmail", EMAIL, "an e-mail address")
    alarm_topic = reader.string("alarmTopicArn", SNS_TOPIC_ARN, "an SNS topic ARN")
    if alarm_email and alarm_topic:
        reader.problem("alarmEmail", "and alarmTopicArn are exclusive: give one of them")
    settings = ClusterSettings(
        name=name or "",
        consul_address=address or "",
        token_secret_arn=reader.string(
            "tokenSecretArn", SECRET_ARN, "a Secrets Manager secret ARN"
        ),
        datacenter=reader.string("datacenter", DATACENTER, "a datacenter name"),
        stale=reader.boolean("stale", False),
        schedule=schedule,
        retention_days=retention,
        noncurrent_version_days=noncurrent,
        cold_storage=_cold_storage(reader, retention),
        ca_certificate=_ca_certificate(reader),
        vpc=_vpc(reader),
        kms_key_arn=reader.string(
            "kmsKeyArn", KMS_KEY_ARN, "a KMS key ARN (arn:aws:kms:...:key/...)"
        ),
        memory_size=reader.integer("memorySize", 256, 128, 10240),
        # The whole snapshot must stream within one invocation: at least 30 s.
        timeout=reader.integer("timeout", 600, 30, 900),
        alarm_email=alarm_email,
        alarm_topic_arn=alarm_topic,
        log_retention_days=_log_retention(reader),
        missed_backup_window_minutes=_alarm_window(reader, interval),
    )
    return settings if len(problems) == before else None


def _log_retention(reader: _Reader) -> int:
    value = reader.integer("logRetentionDays", 30, 1, 3653)
    if value not in LOG_RETENTION_DAYS:
        allowed = ", ".join(map(str, LOG_RETENTION_DAYS))
        reader.problem(
            "logRetentionDays", f"{value} is not a CloudWatch Logs retention ({allowed})"
        )
        return 30
    return value


def _shared_bucket(raw: Any, problems: list[str]) -> tuple[SharedBucketSettings | None, str]:
    if raw is None:
        return None, DEFAULT_PREFIX
    if not isinstance(raw, Mapping):
        problems.append(f"sharedBucket: must be an object, not {_type_name(raw)}")
        return None, DEFAULT_PREFIX
    reader = _Reader(raw, "sharedBucket", problems)
    reader.unknown_keys(SHARED_BUCKET_KEYS)
    kms = reader.string("kmsKeyArn", KMS_KEY_ARN, "a KMS key ARN (arn:aws:kms:...:key/...)")
    prefix = reader.string("prefix", KEY_PREFIX, "an S3 key prefix") or DEFAULT_PREFIX
    return SharedBucketSettings(kms_key_arn=kms), prefix


def parse_stack(clusters: Any, tokens: Any = None, shared_bucket: Any = None) -> StackSettings:
    """Validate the whole stack config; raises ``ConfigError`` listing every problem."""
    problems: list[str] = []
    if not isinstance(clusters, list) or not clusters:
        raise ConfigError(["clusters: needs a list with at least one cluster"])
    shared, prefix = _shared_bucket(shared_bucket, problems)
    parsed = [parse_cluster(raw, index, problems) for index, raw in enumerate(clusters)]

    seen: dict[str, int] = {}
    for index, raw in enumerate(clusters):
        name = raw.get("name") if isinstance(raw, Mapping) else None
        if isinstance(name, str):
            if name in seen:
                problems.append(
                    f"clusters[{index}] ({name}): name is already used by clusters[{seen[name]}]"
                )
            seen.setdefault(name, index)

    token_map = _tokens(tokens, problems)
    for index, raw in enumerate(clusters):
        if not isinstance(raw, Mapping):
            continue
        name = raw.get("name")
        label = f"clusters[{index}]" + (f" ({name})" if isinstance(name, str) else "")
        has_arn = "tokenSecretArn" in raw
        has_config = isinstance(name, str) and name in token_map
        if has_arn and has_config:
            problems.append(
                f"{label}: token is given twice: tokenSecretArn and tokens.{name}; keep one"
            )
        elif not has_arn and not has_config:
            problems.append(
                f"{label}: token is missing: set tokenSecretArn, or "
                f"`pulumi config set --secret --path 'tokens.{name or '<name>'}' <token>`"
            )
        if shared is not None and "kmsKeyArn" in raw:
            problems.append(
                f"{label}: kmsKeyArn is the shared bucket's here: set sharedBucket.kmsKeyArn"
            )
    for token_name in sorted(token_map):
        if token_name not in seen:
            problems.append(f"tokens.{token_name}: there is no cluster named {token_name!r}")

    if problems:
        raise ConfigError(problems)
    return StackSettings(
        clusters=tuple(_require(c) for c in parsed),
        tokens=token_map,
        shared_bucket=shared,
        prefix=prefix,
    )


def _require(value: T | None) -> T:
    assert value is not None  # parse_cluster returns None only with a problem filed
    return value


def _tokens(tokens: Any, problems: list[str]) -> dict[str, str]:
    if tokens is None:
        return {}
    if not isinstance(tokens, Mapping):
        problems.append("tokens: must be an object of cluster name to token")
        return {}
    good: dict[str, str] = {}
    for name, token in tokens.items():
        if not isinstance(token, str) or not token.strip():
            # Never echo the value: it is a secret.
            problems.append(f"tokens.{name}: must be a non-empty string")
        else:
            good[str(name)] = token.strip()
    return good
