"""What S3 lifecycle would remove, evaluated from a bucket's real rules and versions.

moto stores lifecycle configurations but never runs them, so the tests apply
S3's documented semantics here, to the objects and rules that are really in
moto, at a simulated "now". Only what the project's rules use is modelled:

- A rule applies when its ``Status`` is ``Enabled`` and its ``Filter`` matches:
  a ``Prefix``, a ``Tag``, or an ``And`` of a prefix and tags, all of which must
  match the version's own tags; an empty filter matches everything.
  (Lifecycle configuration elements:
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/intro-lifecycle-filters.html)
- ``Expiration.Days`` counts from the object's creation; S3 adds the days to the
  creation time and rounds up to the next midnight UTC. In a versioned bucket,
  expiring the current version adds a delete marker: the version becomes
  noncurrent, it is not removed.
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-expire-general-considerations.html)
- ``NoncurrentVersionExpiration.NoncurrentDays`` counts from the moment a
  version became noncurrent, rounded up to midnight UTC the same way; then the
  version is permanently removed.
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/intro-lifecycle-rules.html)
- ``Expiration.ExpiredObjectDeleteMarker`` removes a delete marker once no
  version is left behind it.
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-configuration-examples.html)
- A version under an Object Lock retention date or a legal hold is never
  removed while the lock lasts; lifecycle removes it at its first run after
  the lock ends, if a rule still says so.
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any


@dataclass(frozen=True)
class StoredVersion:
    key: str
    version_id: str
    created: datetime
    delete_marker: bool
    tags: dict[str, str] = field(default_factory=dict)
    locked_until: datetime | None = None
    legal_hold: bool = False


def read_versions(s3: Any, bucket: str) -> list[StoredVersion]:
    """Every version and delete marker in ``bucket``, with its tags and lock."""
    listing = s3.list_object_versions(Bucket=bucket)
    found = []
    for item in listing.get("Versions", []):
        key, version = item["Key"], item["VersionId"]
        tagging = s3.get_object_tagging(Bucket=bucket, Key=key, VersionId=version)
        tags = {t["Key"]: t["Value"] for t in tagging.get("TagSet", [])}
        until, hold = _lock(s3, bucket, key, version)
        found.append(StoredVersion(key, version, item["LastModified"], False, tags, until, hold))
    for item in listing.get("DeleteMarkers", []):
        found.append(StoredVersion(item["Key"], item["VersionId"], item["LastModified"], True))
    return found


def _lock(s3: Any, bucket: str, key: str, version: str) -> tuple[datetime | None, bool]:
    head = s3.head_object(Bucket=bucket, Key=key, VersionId=version)
    return head.get("ObjectLockRetainUntilDate"), head.get("ObjectLockLegalHoldStatus") == "ON"


def surviving(rules: list[dict[str, Any]], versions: list[StoredVersion], now: datetime) -> dict:
    """``{key: [versions left, oldest first]}`` once lifecycle has run up to ``now``."""
    by_key: dict[str, list[StoredVersion]] = {}
    for version in sorted(versions, key=lambda v: v.created):
        by_key.setdefault(version.key, []).append(version)
    return {key: _survivors(rules, history, now) for key, history in by_key.items()}


def is_current_object(history: list[StoredVersion]) -> bool:
    return bool(history) and not history[-1].delete_marker


def _survivors(
    rules: list[dict[str, Any]], history: list[StoredVersion], now: datetime
) -> list[StoredVersion]:
    # When each version became noncurrent: when the next one arrived.
    noncurrent_since: dict[str, datetime] = {
        older.version_id: newer.created for older, newer in pairwise(history)
    }
    current = history[-1]
    if not current.delete_marker:
        expire_at = _earliest(
            _midnight_after(current.created + timedelta(days=rule["Expiration"]["Days"]))
            for rule in _matching(rules, current)
            if "Days" in rule.get("Expiration", {})
        )
        if expire_at is not None and expire_at <= now:
            marker = StoredVersion(current.key, "lifecycle-delete-marker", expire_at, True)
            noncurrent_since[current.version_id] = expire_at
            history = [*history, marker]
    left = []
    for version in history:
        since = noncurrent_since.get(version.version_id)
        if since is not None and not version.delete_marker and _removed(rules, version, since, now):
            continue
        left.append(version)
    # A delete marker with nothing left behind it goes too, where a rule says so.
    if all(v.delete_marker for v in left) and any(
        rule.get("Expiration", {}).get("ExpiredObjectDeleteMarker")
        for rule in _matching(rules, history[-1])
    ):
        return []
    return left


def _removed(
    rules: list[dict[str, Any]], version: StoredVersion, since: datetime, now: datetime
) -> bool:
    remove_at = _earliest(
        _midnight_after(
            since + timedelta(days=rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
        )
        for rule in _matching(rules, version)
        if "NoncurrentVersionExpiration" in rule
    )
    if remove_at is None or version.legal_hold:
        return False
    if version.locked_until is not None:
        remove_at = max(remove_at, version.locked_until)
    return remove_at <= now


def _matching(rules: list[dict[str, Any]], version: StoredVersion) -> list[dict[str, Any]]:
    return [r for r in rules if r.get("Status") == "Enabled" and _matches(r, version)]


def _matches(rule: dict[str, Any], version: StoredVersion) -> bool:
    spec = rule.get("Filter", {})
    if "And" in spec:
        spec = {"Prefix": spec["And"].get("Prefix", ""), "Tags": spec["And"].get("Tags", [])}
    elif "Tag" in spec:
        spec = {"Tags": [spec["Tag"]]}
    prefix_ok = version.key.startswith(spec.get("Prefix", rule.get("Prefix", "")))
    tags_ok = all(version.tags.get(t["Key"]) == t["Value"] for t in spec.get("Tags", []))
    return prefix_ok and tags_ok


def _midnight_after(moment: datetime) -> datetime:
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight if midnight == moment else midnight + timedelta(days=1)


def _earliest(moments: Any) -> datetime | None:
    found = list(moments)
    return min(found) if found else None


def s3_rules(pulumi_rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lifecycle rules as the component registers them (Pulumi inputs) in S3's API shape."""
    converted = []
    for rule in pulumi_rules:
        out: dict[str, Any] = {"ID": rule["id"], "Status": rule["status"]}
        spec = rule["filter"]
        if "and" in spec:
            tags = [{"Key": k, "Value": v} for k, v in spec["and"].get("tags", {}).items()]
            out["Filter"] = {"And": {"Prefix": spec["and"]["prefix"], "Tags": tags}}
        else:
            out["Filter"] = {"Prefix": spec["prefix"]}
        expiration = rule.get("expiration", {})
        if "days" in expiration:
            out["Expiration"] = {"Days": int(expiration["days"])}
        if expiration.get("expiredObjectDeleteMarker"):
            out["Expiration"] = {"ExpiredObjectDeleteMarker": True}
        if "noncurrentVersionExpiration" in rule:
            days = int(rule["noncurrentVersionExpiration"]["noncurrentDays"])
            out["NoncurrentVersionExpiration"] = {"NoncurrentDays": days}
        if "abortIncompleteMultipartUpload" in rule:
            days = int(rule["abortIncompleteMultipartUpload"]["daysAfterInitiation"])
            out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
        if rule.get("transitions"):
            out["Transitions"] = [
                {"Days": int(t["days"]), "StorageClass": t["storageClass"]}
                for t in rule["transitions"]
            ]
        converted.append(out)
    return converted
