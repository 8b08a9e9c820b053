"""The commands on stored snapshots: list, verify, download, thaw, restore, release.

Each is a pair: ``<name>_arguments(parser, env)`` declares its flags,
``<name>(context, args)`` runs it and returns an ``ExitCode``; ``commands``
lists them. Nothing is trusted before the verifier has read it and compared it
with the snapshot's manifest: a download gets its name, and a restore's last
bytes reach Consul, only then.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from snapshot_backup.manifest import Manifest, ManifestError, unrecorded
from snapshot_backup.retention import WATCHED_COUNTS, describe_counts
from snapshot_backup.reverify import Proven, prove_stored
from snapshot_backup.store import SnapshotStore, StoredSnapshot, by_time

from .context import Context
from .errors import NotConfirmedError, SnapshotArchivedError, UsageError
from .exit_codes import ExitCode
from .files import written_when_whole
from .identity import check_identity, describe_identity
from .options import consul_options, snapshot_argument, store_options
from .progress import Progress, human_bytes
from .restore import restore_in_one_pass

# Manifests are small: read a listing's worth of them at once.
MANIFEST_READERS = 16

# --- list ---------------------------------------------------------------------


def list_arguments(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    store_options(command, env, cluster_required=False)
    command.add_argument("--json", action="store_true", help="one JSON object per line")
    command.add_argument(
        "--versions",
        action="store_true",
        help="every stored version of each snapshot (needs --cluster); --version-id reads one",
    )


def list_snapshots(ctx: Context, args: argparse.Namespace) -> int:
    store = ctx.store(args)
    if args.versions:
        return _list_versions(ctx, store, args)
    snapshots = store.list(args.cluster)
    with ThreadPoolExecutor(MANIFEST_READERS) as pool:
        read = dict(
            zip((s.key for s in snapshots), pool.map(_manifest_of(store), snapshots), strict=True)
        )
    states = {s.key: store.state_of(s).describe() for s in snapshots}
    rows = [_listed(s, *read[s.key], states[s.key]) for s in snapshots]
    if args.json:
        for row in rows:
            ctx.say(json.dumps(row, default=str))
        return ExitCode.OK
    if not rows:
        ctx.say("no snapshots")
        return ExitCode.OK
    ctx.say(
        f"{'TAKEN (UTC)':<20} {'CLUSTER':<16} {'RAFT INDEX':>12} {'SIZE':>10} {'KV':>8} "
        f"{'SERVICES':>8}  {'CLASS':<12} {'STATE':<10} {'MARKS':<16} KEY"
    )
    for row in rows:
        ctx.say(
            f"{row['taken_at'][:19].replace('T', ' '):<20} {row['cluster']:<16} "
            f"{row['raft_index']:>12} {human_bytes(row['bytes']):>10} "
            f"{_count(row.get('kv_entries')):>8} {_count(row.get('service_instances')):>8}  "
            f"{row['storage_class']:<12} {row['state']:<10} {','.join(row['marks']) or '-':<16} "
            f"{row['key']}"
        )
    return ExitCode.OK


def _count(value: Any) -> str:
    return "?" if value is None else str(value)


def _manifest_of(
    store: SnapshotStore,
) -> Callable[[StoredSnapshot], tuple[Manifest | None, str | None]]:
    """Reads a snapshot's manifest for ``list``: one that cannot be read is a mark, not a stop."""

    def read(snapshot: StoredSnapshot) -> tuple[Manifest | None, str | None]:
        if not snapshot.has_manifest:
            return None, None
        try:
            return store.read_manifest(snapshot), None
        except ManifestError as exc:
            return None, str(exc)

    return read


def _listed(
    snapshot: StoredSnapshot, manifest: Manifest | None, problem: str | None, state: str
) -> dict[str, Any]:
    """A snapshot as ``list`` shows it; from its manifest where it has one."""
    marks = [
        mark
        for mark, on in (
            ("held", snapshot.held),
            ("content-drop", bool(manifest and manifest.content_drop)),
            ("retired", snapshot.retired),
            ("bad-manifest", problem is not None),
            ("unrecorded", manifest is None and problem is None),
        )
        if on
    ]
    row: dict[str, Any] = {
        "key": snapshot.key,
        "cluster": snapshot.cluster,
        "taken_at": snapshot.taken_at.isoformat(),
        "raft_index": snapshot.raft_index,
        "bytes": snapshot.size,
        "storage_class": snapshot.storage_class,
        "state": state,
        "marks": marks,
        "held": snapshot.held,
        "retired": snapshot.retired,
        "recorded": manifest is not None,
    }
    if problem is not None:
        row["manifest_problem"] = problem
    if manifest is not None:
        row.update(
            sha256=manifest.sha256,
            version_id=manifest.version_id,
            datacenter=manifest.datacenter,
            raft_term=manifest.raft_term,
            content_drop=manifest.content_drop,
        )
        for count in WATCHED_COUNTS:
            row[count] = (manifest.state or {}).get(count)
    return row


def _list_versions(ctx: Context, store: SnapshotStore, args: argparse.Namespace) -> int:
    if not args.cluster:
        raise UsageError("list --versions needs --cluster")
    recorded = {
        s.key: m.version_id
        for s in store.list(args.cluster)
        if s.has_manifest and (m := store.read_manifest(s)) is not None
    }
    for version in store.versions(args.cluster):
        row = {
            "key": version.key,
            "version_id": version.version_id,
            "last_modified": version.last_modified.isoformat(),
            "bytes": version.size,
            "latest": version.latest,
            "delete_marker": version.delete_marker,
            "recorded_in_manifest": recorded.get(version.key) == version.version_id,
        }
        if args.json:
            ctx.say(json.dumps(row))
            continue
        marks = [m for m, on in (("latest", version.latest), ("deleted", version.delete_marker),
                                 ("recorded", row["recorded_in_manifest"])) if on]  # fmt: skip
        ctx.say(
            f"{version.last_modified:%Y-%m-%d %H:%M:%S} {version.version_id:<34} "
            f"{human_bytes(version.size):>10}  {','.join(marks) or '-':<24} {version.key}"
        )
    return ExitCode.OK


# --- reading one snapshot -------------------------------------------------------


def read_arguments(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """What every command that reads one snapshot takes."""
    store_options(command, env, cluster_required=True)
    snapshot_argument(command)
    command.add_argument("--version-id", help="read this version of it (list --versions)")
    command.add_argument(
        "--allow-unrecorded",
        action="store_true",
        help="accept a snapshot without a manifest (stored before manifests existed): "
        "it is then checked only against itself",
    )


def readable_snapshot(store: SnapshotStore, args: argparse.Namespace) -> StoredSnapshot:
    """``args.snapshot`` found; stops at once, saying what to do, when S3 would not serve it."""
    snapshot = store.find(args.cluster, args.snapshot)
    state = store.state_of(snapshot)
    if state.readable:
        return snapshot
    doing = (
        "a thaw is under way; wait for it"
        if state.restoring
        else f"thaw it first: consul-backup thaw --bucket {store.bucket} "
        f"--cluster {args.cluster} {snapshot.key} --wait"
    )
    raise SnapshotArchivedError(
        f"s3://{store.bucket}/{snapshot.key} is in {state.storage_class}: S3 serves it only "
        f"after a restore from the archive (minutes to hours by tier); {doing}"
    )


def _prove(
    ctx: Context,
    store: SnapshotStore,
    snapshot: StoredSnapshot,
    args: argparse.Namespace,
    sink: Callable[[bytes], None] | None = None,
) -> Proven:
    """Stream the snapshot through the verifier (``sink`` sees every byte), manifest checked."""
    progress = Progress("verifying", snapshot.size, ctx.err)

    def observe(data: bytes) -> None:
        progress(data)
        if sink is not None:
            sink(data)

    try:
        return prove_stored(
            store,
            snapshot,
            version_id=args.version_id,
            allow_unrecorded=args.allow_unrecorded,
            observe=observe,
        )
    finally:
        progress.finish()


def _proven_record(proven: Proven) -> dict[str, Any]:
    meta, state = proven.report.meta, proven.report.state
    record: dict[str, Any] = {
        "key": proven.snapshot.key,
        "version_id": proven.version_id,
        "raft_index": meta.index,
        "raft_term": meta.term,
        "bytes": proven.size,
        "state_bytes": proven.report.state_bytes,
        "sha256": proven.sha256,
        "sha256_checked": proven.sha256_checked,
    }
    if proven.manifest is not None:
        record["datacenter"] = proven.manifest.datacenter
        record["cluster"] = proven.manifest.cluster
    if state is not None:
        for count in WATCHED_COUNTS:
            record[count] = getattr(state, count)
        record["compatibility_notes"] = list(state.compatibility_notes)
    return record


def _checked_against(proven: Proven) -> str:
    if proven.manifest is None:
        return "no manifest: checked only against itself (--allow-unrecorded)"
    return "the same SHA-256 as its manifest records"


def verify_arguments(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    read_arguments(command, env)
    command.add_argument("--json", action="store_true", help="one JSON object")


def verify(ctx: Context, args: argparse.Namespace) -> int:
    store = ctx.store(args)
    proven = _prove(ctx, store, readable_snapshot(store, args), args)
    if args.json:
        ctx.say(json.dumps(_proven_record(proven)))
        return ExitCode.OK
    ctx.say(f"OK {proven.snapshot.key}\n{describe_identity(proven.snapshot, proven.manifest)}")
    ctx.say(
        f"  decoded as Consul's restore decodes it: {_state_line(proven)}\n"
        f"  sha256 {proven.sha256}: {_checked_against(proven)}"
    )
    return ExitCode.OK


def _state_line(proven: Proven) -> str:
    state = proven.report.state
    if state is None:
        return f"state {human_bytes(proven.report.state_bytes)}"
    notes = "".join(f"; {note}" for note in state.compatibility_notes)
    counts = describe_counts(state.to_dict())
    return f"{counts}, state {human_bytes(state.state_bytes)}{notes}"


def download_arguments(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    read_arguments(command, env)
    command.add_argument(
        "-o", "--output", required=True, type=Path, help="file to write (mode 0600)"
    )
    command.add_argument(
        "--force", action="store_true", help="replace an existing file (once verified)"
    )


def download(ctx: Context, args: argparse.Namespace) -> int:
    target: Path = args.output
    # The file first: a wrong -o fails before anything is read from S3.
    with written_when_whole(target, replace_existing=args.force) as write:
        store = ctx.store(args)
        proven = _prove(ctx, store, readable_snapshot(store, args), args, write)
    ctx.say(
        f"Saved and verified {proven.snapshot.key} to {target} (raft index "
        f"{proven.report.meta.index}, sha256 {proven.sha256}: {_checked_against(proven)})"
    )
    return ExitCode.OK


# --- thaw -----------------------------------------------------------------------


def thaw_arguments(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    store_options(command, env, cluster_required=True)
    snapshot_argument(command)
    command.add_argument(
        "--tier",
        choices=("Expedited", "Standard", "Bulk"),
        default="Standard",
        help="how fast (and dear): minutes, hours (3-5; 12 for DEEP_ARCHIVE), or up to 48 hours",
    )
    command.add_argument("--days", type=int, default=3, help="days the thawed copy stays readable")
    command.add_argument("--wait", action="store_true", help="show progress until it reads")
    command.add_argument("--poll-seconds", type=float, default=60.0, help=argparse.SUPPRESS)


def thaw(ctx: Context, args: argparse.Namespace) -> int:
    store = ctx.store(args)
    key = store.find(args.cluster, args.snapshot).key
    state = store.archive_state(key)
    if not state.archived:
        ctx.say(f"{key} is in {state.storage_class}: it reads at once, nothing to thaw")
        return ExitCode.OK
    if not state.restoring and state.restored_until is None:
        store.s3.restore_object(
            Bucket=store.bucket,
            Key=key,
            RestoreRequest={"Days": args.days, "GlacierJobParameters": {"Tier": args.tier}},
        )
        ctx.say(f"Thawing {key} from {state.storage_class} ({args.tier}, kept {args.days} days)")
    while args.wait:
        state = store.archive_state(key)
        if state.restored_until is not None:
            break
        print(f"  {key}: {state.describe()}", file=ctx.err, flush=True)
        time.sleep(args.poll_seconds)
    ctx.say(f"{key}: {store.archive_state(key).describe()}")
    return ExitCode.OK


# --- restore --------------------------------------------------------------------


def restore_arguments(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    read_arguments(command, env)
    consul_options(command, env)
    command.add_argument(
        "--into-other-cluster",
        action="store_true",
        help="restore although the snapshot was taken from another cluster or datacenter "
        "than --cluster and the target's (on purpose: a migration, a copy)",
    )
    command.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    command.add_argument("--json", action="store_true", help="one JSON object once restored")


def restore(ctx: Context, args: argparse.Namespace) -> int:
    consul = ctx.consul(args)  # address, token and CA bundle checked before S3 is asked
    store = ctx.store(args)
    snapshot = readable_snapshot(store, args)
    manifest = store.read_manifest(snapshot) if snapshot.has_manifest else None
    if manifest is None and not args.allow_unrecorded:
        raise unrecorded(store.bucket, snapshot.name)
    target_datacenter = consul.agent_datacenter()
    shown = f"Snapshot {snapshot.key}\n{describe_identity(snapshot, manifest)}"
    if args.json:  # the output is one JSON object; what is shown goes beside it
        ctx.note(shown)
    else:
        ctx.say(shown)
    newer = _newer_by_time(store, snapshot) if args.snapshot == "latest" else None
    if newer is not None:
        ctx.note(
            f"latest is the highest Raft index; {newer.key} was taken later with a lower index "
            f"({newer.raft_index}): a lagging server, or a cluster rebuilt from an older "
            "snapshot. Name it to restore that one."
        )
    for warning in check_identity(
        manifest, args.cluster, target_datacenter, args.into_other_cluster
    ):
        ctx.note(warning)
    if not args.yes:
        prompt = (
            f"Restore it into Consul at {consul.base_url} (datacenter {target_datacenter})? "
            "This replaces the cluster's whole state. Type 'restore' to go on: "
        )
        if ctx.ask(prompt).strip() != "restore":
            raise NotConfirmedError("restore not confirmed; nothing was sent to Consul")
    progress = Progress("restoring", manifest.size if manifest else snapshot.size, ctx.err)
    try:
        proven = restore_in_one_pass(
            store,
            snapshot,
            consul,
            version_id=args.version_id,
            allow_unrecorded=args.allow_unrecorded,
            progress=progress,
        )
    finally:
        progress.finish()
    if args.json:
        ctx.say(json.dumps({**_proven_record(proven), "restored_into": consul.base_url}))
    else:
        ctx.say(
            f"Restored {snapshot.key} (raft index {proven.report.meta.index}) into "
            f"{consul.base_url}, datacenter {target_datacenter}; {_checked_against(proven)}"
        )
    return ExitCode.OK


def _newer_by_time(store: SnapshotStore, chosen: StoredSnapshot) -> StoredSnapshot | None:
    newest = max(store.list(chosen.cluster), key=by_time)
    return newest if newest.taken_at > chosen.taken_at else None


# --- hold and release -------------------------------------------------------------


def hold_arguments(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    store_options(command, env, cluster_required=True)
    command.add_argument("snapshot", metavar="latest|KEY", help="the snapshot to keep")
    command.add_argument("--why", default="held by hand", help="said beside it (list, status)")


def hold(ctx: Context, args: argparse.Namespace) -> int:
    """Keep a snapshot however far it falls beyond keepLatest, until it is released."""
    store = ctx.store(args)
    snapshot = store.find(args.cluster, args.snapshot)
    if snapshot.held:
        ctx.say(f"{snapshot.key} is held already")
        return ExitCode.OK
    body = json.dumps({"held_because": "an operator", "why": args.why}).encode() + b"\n"
    store.s3.put_object(Bucket=store.bucket, Key=snapshot.name.hold_key, Body=body, IfNoneMatch="*")
    ctx.say(f"Held {snapshot.key}: the floor keeps it until `consul-backup release` ends the hold")
    return ExitCode.OK


def release_arguments(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    store_options(command, env, cluster_required=True)
    command.add_argument("snapshot", metavar="KEY", help="the held snapshot's key (list shows it)")


def release(ctx: Context, args: argparse.Namespace) -> int:
    """End a hold: the floor may retire the snapshot again, once it falls beyond keepLatest."""
    store = ctx.store(args)
    snapshot = store.find(args.cluster, args.snapshot)
    if not snapshot.held:
        ctx.say(f"{snapshot.key} is not held: nothing to release")
        return ExitCode.OK
    # A delete marker: the hold's record stays as a noncurrent version, as S3 keeps any.
    store.s3.delete_object(Bucket=store.bucket, Key=snapshot.name.hold_key)
    ctx.say(
        f"Released {snapshot.key}: the next backup's floor retires it if it is beyond "
        f"keepLatest ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)"
    )
    return ExitCode.OK
