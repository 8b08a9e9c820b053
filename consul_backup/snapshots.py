"""The commands on stored snapshots: list, verify, download, thaw, restore.

Each is a pair: ``<name>_arguments(parser, env)`` declares its flags,
``<name>(context, args)`` runs it and returns an ``ExitCode``; ``commands``
lists them. Nothing is trusted before the verifier has read it: a download
gets its name, and a restore reaches Consul, only after verification.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from snapshot_backup.reverify import verify_stored
from snapshot_backup.store import SnapshotStore
from snapshot_backup.verify import ArchiveError, ArchiveReport, TeeReader

from .context import Context
from .errors import NotConfirmedError, SnapshotArchivedError
from .exit_codes import ExitCode
from .files import written_when_whole
from .options import consul_options, snapshot_argument, store_options
from .progress import Progress, human_bytes

# --- list ---------------------------------------------------------------------


def list_arguments(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    store_options(command, env, cluster_required=False)
    command.add_argument("--json", action="store_true", help="one JSON object per line")


def list_snapshots(ctx: Context, args: argparse.Namespace) -> int:
    store = ctx.store(args)
    snapshots = store.list(args.cluster)
    states = {s.key: store.state_of(s).describe() for s in snapshots}
    if args.json:
        for s in snapshots:
            record = {
                "key": s.key,
                "cluster": s.cluster,
                "taken_at": s.taken_at.isoformat(),
                "raft_index": s.raft_index,
                "bytes": s.size,
                "storage_class": s.storage_class,
                "state": states[s.key],
            }
            ctx.say(json.dumps(record))
        return ExitCode.OK
    if not snapshots:
        ctx.say("no snapshots")
        return ExitCode.OK
    ctx.say(
        f"{'TAKEN (UTC)':<20} {'CLUSTER':<16} {'RAFT INDEX':>12} {'SIZE':>11}  "
        f"{'CLASS':<12} {'STATE':<10} KEY"
    )
    for s in snapshots:
        ctx.say(
            f"{s.taken_at:%Y-%m-%d %H:%M:%S} {s.cluster:<16} {s.raft_index:>12} "
            f"{human_bytes(s.size):>11}  {s.storage_class:<12} {states[s.key]:<10} {s.key}"
        )
    return ExitCode.OK


# --- reading one snapshot -------------------------------------------------------


def readable_key(store: SnapshotStore, args: argparse.Namespace) -> str:
    """``args.snapshot`` resolved; stops at once, saying what to do, when S3 would not serve it."""
    key = store.resolve(args.cluster, args.snapshot)
    state = store.archive_state(key)
    if state.readable:
        return key
    doing = (
        "a thaw is under way; wait for it"
        if state.restoring
        else f"thaw it first: consul-backup thaw --bucket {store.bucket} "
        f"--cluster {args.cluster} {key} --wait"
    )
    raise SnapshotArchivedError(
        f"s3://{store.bucket}/{key} is in {state.storage_class}: S3 serves it only after a "
        f"restore from the archive (minutes to hours by tier); {doing}"
    )


def verify_object(
    ctx: Context, store: SnapshotStore, key: str, sink: Callable[[bytes], None] | None = None
) -> tuple[ArchiveReport, str, dict[str, Any]]:
    """Stream ``key`` through the verifier (``sink`` sees every byte); report, SHA-256, GET."""
    response = store.open(key)
    progress = Progress("verifying", response.get("ContentLength"), ctx.err)

    def observe(data: bytes) -> None:
        progress(data)
        if sink is not None:
            sink(data)

    try:
        report, sha256 = verify_stored(response, key, observe)
    finally:
        progress.finish()
    return report, sha256, response


def verify_arguments(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    store_options(command, env, cluster_required=True)
    snapshot_argument(command)


def verify(ctx: Context, args: argparse.Namespace) -> int:
    store = ctx.store(args)
    key = readable_key(store, args)
    report, sha256, response = verify_object(ctx, store, key)
    ctx.say(
        f"OK {key}\n  raft index {report.meta.index}, term {report.meta.term}, "
        f"state {human_bytes(report.state_bytes)}, archive "
        f"{human_bytes(response.get('ContentLength', 0))}, sha256 {sha256}"
    )
    return ExitCode.OK


def download_arguments(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    store_options(command, env, cluster_required=True)
    snapshot_argument(command)
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
        key = readable_key(store, args)
        report, sha256, _ = verify_object(ctx, store, key, write)
    ctx.say(
        f"Saved and verified {key} to {target} (raft index {report.meta.index}, sha256 {sha256})"
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
    key = store.resolve(args.cluster, args.snapshot)
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
    store_options(command, env, cluster_required=True)
    snapshot_argument(command)
    consul_options(command, env)
    command.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def restore(ctx: Context, args: argparse.Namespace) -> int:
    consul = ctx.consul(args)  # address, token and CA bundle checked before S3 is asked
    store = ctx.store(args)
    key = readable_key(store, args)
    report, sha256, first = verify_object(ctx, store, key)
    version = first.get("VersionId")
    size = int(first["ContentLength"])
    ctx.say(
        f"Verified {key}: raft index {report.meta.index}, term {report.meta.term}, "
        f"{human_bytes(size)}"
    )
    if not args.yes:
        prompt = (
            f"Restore it into Consul at {consul.base_url}? This replaces the cluster's "
            "whole state. Type 'restore' to go on: "
        )
        if ctx.ask(prompt).strip() != "restore":
            raise NotConfirmedError("restore not confirmed; nothing was sent to Consul")
    # The same version that was verified, streamed again: never held in memory.
    second = store.open(key, version_id=version if version not in (None, "null") else None)
    progress = Progress("restoring", size, ctx.err)
    digest = hashlib.sha256()

    def observe(data: bytes) -> None:
        digest.update(data)
        progress(data)

    try:
        consul.restore_snapshot(TeeReader(second["Body"], observe), size=size)
    finally:
        progress.finish()
        second["Body"].close()
    if digest.hexdigest() != sha256:
        raise ArchiveError("the object changed between verification and restore")
    ctx.say(f"Restored {key} (raft index {report.meta.index}) into {consul.base_url}")
    return ExitCode.OK
