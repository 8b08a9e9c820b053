"""ConsulSnapshotBackupArgs: the component's typed interface, and the one schema of its settings.

Every setting is declared once, as a field here: name, type, default, bounds and
one line of doc. A Python program passes them as keyword arguments; stack config
(``config``) maps its camelCase keys onto them; the README's configuration
reference is made from them (``reference``). A wrong value raises ``ConfigError``
naming the field as the caller wrote it: ``retention_days`` from Python,
``clusters[1] (beta): retentionDays`` from stack config.
"""

from __future__ import annotations

import difflib
import functools
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from types import NoneType, UnionType
from typing import Any
from urllib.parse import urlsplit

import pulumi

from snapshot_backup.keys import DEFAULT_PREFIX
from snapshot_backup.retention import DEFAULT_KEEP_LATEST, MAX_KEEP_LATEST

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

SECRET_ARN = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+"
)
KMS_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+")
SNS_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}")
SUBNET_ID = re.compile(r"subnet-[0-9a-f]{8,17}")
SECURITY_GROUP_ID = re.compile(r"sg-[0-9a-f]{8,17}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
DATACENTER = re.compile(r"[A-Za-z0-9_-]{1,64}")
KEY_PREFIX = re.compile(r"[A-Za-z0-9!_.'()/-]{0,200}")
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
REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d")
BUCKET_ARN = re.compile(r"arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
ACCOUNT_ID = re.compile(r"\d{12}")
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")

Path = tuple[str, ...]
Spelling = Callable[[Path], str]


def snake_spelling(path: Path) -> str:
    """How a Python caller names a field: ``cold_storage.after_days``."""
    return ".".join(path)


def camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def camel_spelling(path: Path) -> str:
    """How stack config names a field: ``coldStorage.afterDays``."""
    return ".".join(camel_case(part) for part in path)


class InvalidValueError(ValueError):
    """A check's verdict on one value; the message follows the field's name."""


@dataclass(frozen=True)
class Problem:
    """One mistake: a message that names fields, spelled when it is shown.

    ``template`` holds ``{0}``, ``{1}``... for the names of ``paths``; any other
    brace in it was doubled when the message was made.
    """

    template: str
    paths: tuple[Path, ...]

    def render(self, spell: Spelling, label: str = "") -> str:
        text = self.template.format(*(spell(path) for path in self.paths))
        return f"{label}: {text}" if label else text


def problem(path: Path, message: str) -> Problem:
    """``<field> <message>``, with the message taken literally."""
    return Problem("{0} " + _literal(message), (path,))


def _literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


class ConfigError(ValueError):
    """One or more settings are wrong; the message lists every one of them."""

    def __init__(self, problems: Sequence[str], found: Sequence[Problem] = ()) -> None:
        self.problems = list(problems)
        self.found = list(found)  # the same mistakes, to be spelled another way
        super().__init__(
            "invalid consul-backup configuration:\n" + "\n".join(f"  - {p}" for p in problems)
        )

    @classmethod
    def of(cls, found: Sequence[Problem], spell: Spelling = snake_spelling) -> ConfigError:
        return cls([p.render(spell) for p in found], found)


# --- checks of one value ------------------------------------------------------

Check = Callable[[Any], Any]


@dataclass(frozen=True)
class InRange:
    low: int
    high: int

    def __call__(self, value: int) -> int:
        if not self.low <= value <= self.high:
            raise InvalidValueError(f"{value} is out of range ({self.low} to {self.high})")
        return value


@dataclass(frozen=True)
class Matching:
    pattern: re.Pattern[str]
    describe: str

    def __call__(self, value: str) -> str:
        if not self.pattern.fullmatch(value):
            raise InvalidValueError(f"{value!r} is not {self.describe}")
        return value


@dataclass(frozen=True)
class OneOf:
    values: tuple[Any, ...]
    describe: str

    def __call__(self, value: Any) -> Any:
        if value not in self.values:
            listed = ", ".join(map(str, self.values))
            raise InvalidValueError(f"{value!r} is not {self.describe} ({listed})")
        return value


@dataclass(frozen=True)
class EachMatching:
    pattern: re.Pattern[str]
    describe: str

    def __call__(self, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise InvalidValueError("needs at least one entry")
        for item in value:
            if not self.pattern.fullmatch(item):
                raise InvalidValueError(f"entry {item!r} is not {self.describe}")
        if len(set(value)) != len(value):
            raise InvalidValueError("lists an entry twice")
        return value


def consul_address(value: str) -> str:
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
        raise InvalidValueError("must be a non-empty string or a pulumi.Output")  # never echo it
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
        check=Matching(KMS_KEY_ARN, "a KMS key ARN (arn:aws:kms:...:key/...)"),
        default_doc="AES256",
    )


class SelfChecking:
    """Arguments that check themselves: ``ConfigError`` when made, ``problems`` without raising.

    A subclass says how in ``checked``: its values normalized, and what is wrong.
    """

    @classmethod
    def checked(cls, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
        raise NotImplementedError

    @classmethod
    def problems(cls, values: Mapping[str, Any]) -> list[Problem]:
        """What is wrong with these values; ``[]`` when nothing."""
        return cls.checked(values)[1]

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        normalized, found = self.checked(values)
        if found:
            raise ConfigError.of(found)
        for name, value in normalized.items():
            object.__setattr__(self, name, value)


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
    object_lock: ObjectLock | None = setting(
        None, doc="lock every snapshot version (S3 Object Lock)", default_doc="none"
    )
    replica: Replica | None = setting(
        None, doc="replicate every snapshot to another region or account", default_doc="none"
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
        check=Matching(KMS_KEY_ARN, "a KMS key ARN (arn:aws:kms:...:key/...)"),
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
        check=Matching(KEY_PREFIX, "an S3 key prefix (no * or ?, which IAM reads as wildcards)"),
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


@dataclass(frozen=True)
class SharedBucketArgs(SelfChecking):
    """One bucket for every cluster of the stack, each confined to its own prefix."""

    kms_key_arn: str | None = setting(
        None,
        doc="KMS key for the shared bucket",
        check=Matching(KMS_KEY_ARN, "a KMS key ARN (arn:aws:kms:...:key/...)"),
        default_doc="AES256",
    )
    prefix: str = setting(
        DEFAULT_PREFIX,
        doc="key prefix; each cluster writes under `<prefix><cluster>/` and nowhere else",
        check=Matching(KEY_PREFIX, "an S3 key prefix (no * or ?, which IAM reads as wildcards)"),
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
            found = _replica_checks(normalized["replica"])
        return normalized, found


# --- the engine ----------------------------------------------------------------


@functools.cache
def field_types(schema: type) -> dict[str, Any]:
    """The schema's field types, resolved once."""
    return typing.get_type_hints(schema)


def validate(schema: type, values: Mapping[str, Any], at: Path = ()) -> tuple[dict, list]:
    """Check ``values`` against ``schema``'s fields: (normalized values, problems)."""
    hints = field_types(schema)
    normalized: dict[str, Any] = {}
    found: list[Problem] = []
    for spec in fields(schema):
        path = (*at, spec.name)
        value = values.get(spec.name, MISSING)
        if value is MISSING or (value is None and spec.default is MISSING):
            if spec.default is MISSING:
                found.append(problem(path, "is required"))
            normalized[spec.name] = None if spec.default is MISSING else spec.default
            continue
        value, type_problems = _typed(value, hints[spec.name], path)
        if type_problems:
            found += type_problems
            normalized[spec.name] = spec.default if spec.default is not MISSING else None
            continue
        check = spec.metadata.get("check")
        if check is not None and value is not None:
            try:
                value = check(value)
            except InvalidValueError as exc:
                found.append(problem(path, str(exc)))
                value = spec.default if spec.default is not MISSING else None
        normalized[spec.name] = value
    return normalized, found


def _typed(value: Any, hint: Any, path: Path) -> tuple[Any, list[Problem]]:
    """``value`` as the type ``hint`` names (integral floats become ints), or problems."""
    options = typing.get_args(hint) if isinstance(hint, UnionType) else (hint,)
    if value is None and NoneType in options:
        return None, []
    kinds = [option for option in options if option is not NoneType]
    kind = kinds[0] if len(kinds) == 1 else None
    if kind is str:
        return (value, []) if isinstance(value, str) else _wrong(value, path, "a string")
    if kind is bool:
        if isinstance(value, bool):
            return value, []
        return None, [problem(path, f"must be true or false, not {_type_name(value)} {value!r}")]
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # numbers from YAML and from Pulumi's engine may be floats
        if isinstance(value, int) and not isinstance(value, bool):
            return value, []
        return None, [problem(path, f"must be a whole number, not {_type_name(value)} {value!r}")]
    if typing.get_origin(kind) is tuple:
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value), []
        if not isinstance(value, list | tuple):
            return _wrong(value, path, "a list")
        return None, [problem(path, "entries must be strings")]
    if isinstance(kind, type) and is_dataclass(kind):
        return _nested(value, kind, path)
    return value, []  # Pulumi inputs and resources: Pulumi checks them


def nested_schema(hint: Any) -> type | None:
    """The dataclass a field's type names (``ColdStorage | None``), if it names one."""
    options = typing.get_args(hint) if isinstance(hint, UnionType) else (hint,)
    for option in options:
        if option is not NoneType and isinstance(option, type) and is_dataclass(option):
            return option
    return None


def _nested(value: Any, schema: type, path: Path) -> tuple[Any, list[Problem]]:
    if isinstance(value, schema):
        raw = {f.name: getattr(value, f.name) for f in fields(schema)}
    elif isinstance(value, Mapping):
        names = {f.name for f in fields(schema)}
        unknown = [key for key in value if key not in names]
        if unknown:
            return None, [unknown_key((*path, str(key)), names) for key in unknown]
        raw = dict(value)
    else:
        return _wrong(value, path, "an object")
    normalized, found = validate(schema, raw, path)
    return (None if found else schema(**normalized)), found


def unknown_key(path: Path, known: set[str]) -> Problem:
    """``unknown key 'x'``, with the closest known name when one is close."""
    matches = difflib.get_close_matches(path[-1], sorted(known), n=1, cutoff=0.7)
    if not matches:
        return Problem("unknown key '{0}'", (path,))
    return Problem("unknown key '{0}' (did you mean '{1}'?)", (path, (*path[:-1], matches[0])))


def _wrong(value: Any, path: Path, wanted: str) -> tuple[None, list[Problem]]:
    return None, [problem(path, f"must be {wanted}, not {_type_name(value)}")]


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), "a list" if isinstance(value, list | tuple) else "an object"
    )


def _cross_checks(values: Mapping[str, Any]) -> list[Problem]:
    """Rules between settings: each names every field it involves."""
    found: list[Problem] = []
    if (values["token"] is None) == (values["token_secret_arn"] is None):
        found.append(Problem("{0} and {1}: give exactly one", (("token",), ("token_secret_arn",))))
    if values["alarm_email"] and values["alarm_topic_arn"]:
        found.append(
            Problem(
                "{0} and {1} are exclusive: give one of them",
                (("alarm_email",), ("alarm_topic_arn",)),
            )
        )
    if values["shared_bucket"] is not None:
        for name in ("kms_key_arn", "object_lock", "replica"):
            if values[name]:
                found.append(
                    problem((name,), "is the shared bucket's: give it to the shared bucket")
                )
    found += _replica_checks(values["replica"])
    cold: ColdStorage | None = values["cold_storage"]
    if cold is not None:
        minimum = COLD_STORAGE_MIN_DAYS[cold.storage_class]
        after = ("cold_storage", "after_days")
        if cold.after_days < minimum:
            found.append(
                problem(
                    after,
                    f"{cold.after_days} is below S3's {minimum} days for {cold.storage_class}",
                )
            )
        elif cold.after_days >= values["retention_days"]:
            found.append(
                Problem(
                    "{0} "
                    + f"{cold.after_days} must be less than "
                    + "{1} "
                    + f"({values['retention_days']}), or snapshots expire before they move",
                    (after, ("retention_days",)),
                )
            )
    window = values["missed_backup_window_minutes"]
    interval = interval_or_none(values["schedule"])
    if interval is not None and interval > MAX_ALARM_WINDOW_MINUTES:
        found.append(
            problem(
                ("schedule",),
                f"runs every {interval} minutes: the missed-backup alarm watches at most "
                f"{MAX_ALARM_WINDOW_MINUTES} minutes (7 days), so back up at least weekly",
            )
        )
    elif window is not None and interval is not None and window < interval:
        found.append(
            problem(
                ("missed_backup_window_minutes",),
                f"{window} is shorter than the schedule's interval ({interval} minutes): "
                "the alarm would fire between two healthy runs",
            )
        )
    return found


def _replica_checks(replica: Replica | None) -> list[Problem]:
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
