"""The floor under expiry, and the hold on the last good state.

S3 lifecycle expires by age and cannot count, so the floor is a tag. A snapshot
is stored without it and lifecycle leaves it alone, however old it grows;
after each stored snapshot the function decides the floor (``plan_floor``) over
every snapshot of the cluster and tags the ones outside it as retired, and
only retired objects expire (at ``retentionDays`` from their creation). When
backups fail, nothing is retired, so the newest snapshots stay, current and
under their own keys, for as long as it takes.

The floor keeps the newest ``keepLatest`` by Raft index AND the newest
``keepLatest`` by time: the first survives a lagging server's older state
arriving later (stale reads); the second a cluster restored from an older
snapshot, whose new snapshots carry lower indexes than those taken before the
disaster. It also keeps every held snapshot. Everything else is retired,
however many there are and however ``keepLatest`` changed; a retired snapshot
that comes back inside the floor (``keepLatest`` raised, a hold) is tagged back.

A listing does not show tags, so each retirement leaves a ``.retired`` marker
beside the snapshot (born with the tag, so it expires with it): the next run
sees in one listing what is retired already and tags only what changed.

Holds: a snapshot whose content fell steeply against the one before it
(``content_drops``: a ``consul kv delete -recurse``, a deploy that deregistered
every service) is still stored, it is the truth, but flagged; the newest
unflagged snapshot before it is held (a ``.hold`` marker) and the floor never
retires it until an operator releases it (``consul-backup release``).

The tag is the contract between the function (which sets it), the bucket's
lifecycle rule and the function's IAM policy (which match it): both sides
import it from here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .store import SnapshotStore, StoredSnapshot, by_rank, by_time

RETIRED_TAG_KEY = "consul-backup-retired"
RETIRED_TAG_VALUE = "true"
# Set when a retired snapshot comes back under the floor (keepLatest raised, a
# hold): lifecycle's filter matches only RETIRED_TAG_VALUE.
KEPT_TAG_VALUE = "false"
DEFAULT_KEEP_LATEST = 7
MAX_KEEP_LATEST = 1000
# A snapshot is flagged when a count fell by more than this share of the count
# before it, and only where that count was at least CONTENT_DROP_MIN_COUNT (a
# handful of keys coming and going is no disaster).
DEFAULT_CONTENT_DROP_PERCENT = 50
CONTENT_DROP_MIN_COUNT = 20
# The counts of a state summary (``state_bin``) a drop is judged on.
WATCHED_COUNTS = ("kv_entries", "service_instances", "nodes", "acl_tokens")
# How far back the hold looks for a snapshot that was not itself flagged.
HOLD_SEARCH_DEPTH = 50
# Tagging runs on a few threads: lowering keepLatest can retire hundreds at once.
TAGGING_THREADS = 8
# Keys a run's line names, of those it retired or kept again; the rest are counted.
RECORDED_KEYS = 10


def content_drops(
    previous: Mapping[str, Any], current: Mapping[str, Any], percent: int
) -> dict[str, dict[str, int]]:
    """Each watched count that fell by more than ``percent`` %: ``{name: {"from", "to"}}``."""
    dropped = {}
    for name in WATCHED_COUNTS:
        before, now = previous.get(name), current.get(name)
        if not isinstance(before, int) or not isinstance(now, int):
            continue
        if before >= CONTENT_DROP_MIN_COUNT and (before - now) * 100 > before * percent:
            dropped[name] = {"from": before, "to": now}
    return dropped


# How a count reads, in lines for people.
COUNT_WORDS = {
    "kv_entries": "KV entries",
    "service_instances": "service instances",
    "nodes": "nodes",
    "acl_tokens": "ACL tokens",
}


def describe_counts(state: Mapping[str, Any]) -> str:
    """``112 KV entries, 12 service instances, 4 nodes, 3 ACL tokens``."""
    return ", ".join(f"{state.get(name)} {COUNT_WORDS[name]}" for name in WATCHED_COUNTS)


def describe_drop(content_drop: Mapping[str, Any]) -> str:
    """``kv_entries 112 -> 10, nodes 30 -> 3``: what a flagged snapshot lost."""
    dropped = content_drop.get("dropped")
    if not isinstance(dropped, Mapping):
        return "(not recorded)"
    return ", ".join(
        f"{name} {change.get('from')} -> {change.get('to')}"
        for name, change in dropped.items()
        if isinstance(change, Mapping)
    )


@dataclass(frozen=True)
class FloorPlan:
    """What one run changes: snapshots to retire, and retired ones back inside the floor."""

    retire: tuple[StoredSnapshot, ...]
    keep_again: tuple[StoredSnapshot, ...]


def plan_floor(snapshots: Iterable[StoredSnapshot], keep_latest: int) -> FloorPlan:
    """The floor over every snapshot of one cluster: the one place that decides it."""
    every = list(snapshots)
    newest_by_index = sorted(every, key=by_rank, reverse=True)[:keep_latest]
    newest_by_time = sorted(every, key=by_time, reverse=True)[:keep_latest]
    kept = {s.key for s in (*newest_by_index, *newest_by_time)} | {s.key for s in every if s.held}
    oldest_first = sorted(every, key=by_rank)
    # Inside the floor: a snapshot marked retired is tagged back; so is one stored
    # before manifests and markers existed, which older code may have tagged
    # without a marker (bounded by the floor's size, until such snapshots age out).
    return FloorPlan(
        retire=tuple(s for s in oldest_first if s.key not in kept and not s.retired),
        keep_again=tuple(
            s for s in oldest_first if s.key in kept and (s.retired or not s.has_manifest)
        ),
    )


@dataclass
class FloorResult:
    retired: list[str] = field(default_factory=list)
    kept_again: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    deferred: int = 0  # left for the next run: no time left in this one

    def as_record(self) -> dict[str, Any]:
        """For the run's line, which CloudWatch cuts at 256 KiB: counts, and a few keys."""
        record: dict[str, Any] = {
            "retired": self.retired[:RECORDED_KEYS],
            "retired_count": len(self.retired),
        }
        if self.kept_again:
            record["kept_again"] = self.kept_again[:RECORDED_KEYS]
            record["kept_again_count"] = len(self.kept_again)
        if self.deferred:
            record["retire_deferred"] = self.deferred
        if self.errors:
            record["retire_error"] = "; ".join(self.errors[:5]) + (
                f" (and {len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
            )
        return record


def apply_floor(
    store: SnapshotStore,
    cluster: str,
    keep_latest: int,
    time_left: Callable[[], bool] = lambda: True,
) -> FloorResult:
    """Retire what fell out of the floor, and tag back what came into it.

    ``time_left`` is asked before each change: what is not done now is done by
    the next run. Failures are collected, not raised: a snapshot that is stored
    stays stored whatever happens here, and expiry only falls behind.
    """
    plan = plan_floor(store.list(cluster), keep_latest)
    result = FloorResult()
    work: list[tuple[Callable[[StoredSnapshot], None], StoredSnapshot, list[str]]] = [
        (lambda s: _keep_again(store, s), s, result.kept_again) for s in plan.keep_again
    ] + [(lambda s: _retire(store, s), s, result.retired) for s in plan.retire]

    def run(job: tuple[Callable[[StoredSnapshot], None], StoredSnapshot, list[str]]) -> None:
        change, snapshot, done = job
        if not time_left():
            result.deferred += 1
            return
        try:
            change(snapshot)
        except Exception as exc:  # noqa: BLE001 - reported; the next run tries again
            result.errors.append(f"{snapshot.key}: {type(exc).__name__}: {exc}")
        else:
            done.append(snapshot.key)

    with ThreadPoolExecutor(TAGGING_THREADS, thread_name_prefix="floor") as pool:
        list(pool.map(run, work))
    result.retired.sort()
    result.kept_again.sort()
    return result


def _tagging(value: str) -> dict[str, Any]:
    return {"TagSet": [{"Key": RETIRED_TAG_KEY, "Value": value}]}


def _tag(store: SnapshotStore, snapshot: StoredSnapshot, value: str) -> None:
    keys = [snapshot.key] + ([snapshot.name.manifest_key] if snapshot.has_manifest else [])
    for key in keys:
        store.s3.put_object_tagging(Bucket=store.bucket, Key=key, Tagging=_tagging(value))


def _retire(store: SnapshotStore, snapshot: StoredSnapshot) -> None:
    """Tag the snapshot (and its manifest) retired, then leave the marker that says so."""
    _tag(store, snapshot, RETIRED_TAG_VALUE)
    try:
        store.s3.put_object(
            Bucket=store.bucket,
            Key=snapshot.name.retired_key,
            Body=b"",
            Tagging=f"{RETIRED_TAG_KEY}={RETIRED_TAG_VALUE}",
            IfNoneMatch="*",
        )
    except store.s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
            raise  # 412: another run left the same marker a moment ago


def _keep_again(store: SnapshotStore, snapshot: StoredSnapshot) -> None:
    """Back inside the floor: the tag lifecycle matches is taken off, then the marker.

    In this order: should the delete fail, the marker stays, and the next run
    (the snapshot still inside the floor) tags and deletes again.
    """
    _tag(store, snapshot, KEPT_TAG_VALUE)
    if snapshot.retired:  # deleting a missing key would leave a delete marker behind
        store.s3.delete_object(Bucket=store.bucket, Key=snapshot.name.retired_key)


def hold_last_good(
    store: SnapshotStore, flagged: StoredSnapshot, earlier: Sequence[StoredSnapshot], why: str
) -> str | None:
    """Hold the newest snapshot before ``flagged`` that was not flagged itself; its key.

    ``earlier`` is ranked newest first. A snapshot without a manifest (stored
    before manifests) counts as unflagged: nothing says it lost content.
    """
    for snapshot in earlier[:HOLD_SEARCH_DEPTH]:
        manifest = store.read_manifest(snapshot) if snapshot.has_manifest else None
        if manifest is not None and manifest.content_drop:
            continue
        body = {"held_because": flagged.key, "why": why}
        try:
            store.s3.put_object(
                Bucket=store.bucket,
                Key=snapshot.name.hold_key,
                Body=json.dumps(body, sort_keys=True).encode() + b"\n",
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except store.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
                raise  # 412: held already
        return snapshot.key
    return None
