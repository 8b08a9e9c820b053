"""``consul-backup status``: its flags, where each cluster's snapshots are, and the report.

The judgement itself (age against the window, alarms) is ``status.cluster_status``;
this module finds the clusters (the stack outputs, read through
``components.outputs``, or one from flags) and the regions to ask: ``--region``
is the bucket's, the replica keeps its own from the outputs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components import schedule
from components.outputs import ClusterOutputs
from snapshot_backup.environment import EnvVar
from snapshot_backup.keys import DEFAULT_PREFIX
from snapshot_backup.retention import describe_drop

from .context import Context
from .errors import UsageError
from .exit_codes import ExitCode
from .files import outputs_of, read_outputs
from .options import cluster_option, env_option, region_option, whole_number
from .progress import human_bytes
from .status import ClusterStatus, ClusterTarget, cluster_status


def status_arguments(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    command.add_argument(
        "--outputs",
        type=Path,
        help="stack outputs: `pulumi stack output clusters --json > clusters.json` ('-': stdin)",
    )
    env_option(
        command, env, "--bucket", EnvVar.BACKUP_BUCKET, "snapshot bucket (without --outputs)"
    )
    env_option(command, env, "--prefix", EnvVar.BACKUP_PREFIX, "key prefix", DEFAULT_PREFIX)
    region_option(
        command,
        "the bucket's region (default: the stack's, from --outputs, else asked of S3); "
        "a replica keeps its own region from the outputs",
    )
    cluster_option(command, env, "only this cluster", required=False)
    low, high = schedule.MIN_ALARM_WINDOW_MINUTES, schedule.MAX_ALARM_WINDOW_MINUTES
    command.add_argument(
        "--window-minutes",
        type=whole_number(low, high, "minutes"),
        default=schedule.DEFAULT_ALARM_WINDOW_MINUTES,
        help=f"age that counts as behind, without --outputs ({low} to {high}, as the stack's "
        "missedBackupWindowMinutes; default %(default)s)",
    )
    command.add_argument("--json", action="store_true", help="one JSON object per cluster")


@dataclass(frozen=True)
class Place:
    """One cluster to judge, and the regions its bucket and alarms are read in."""

    target: ClusterTarget
    bucket_region: str | None
    alarm_region: str | None


def _from_outputs(outputs: ClusterOutputs, region: str | None) -> Place:
    """The bucket in ``--region``, else the stack's; the alarms in the stack's region."""
    target = ClusterTarget.from_outputs(outputs)
    return Place(target, region or outputs.region or None, outputs.region or region)


def places(ctx: Context, args: argparse.Namespace) -> list[Place]:
    """The clusters to judge: every one of the stack outputs (or ``--cluster``), or the flags'."""
    if args.outputs is not None:
        outputs = read_outputs(args.outputs, sys.stdin)
        chosen = [outputs_of(outputs, args.cluster, args.outputs)] if args.cluster else None
        return [_from_outputs(o, args.region) for o in chosen or outputs.values()]
    if not (args.bucket and args.cluster):
        raise UsageError(
            f"status needs --outputs, or --bucket and --cluster (or {EnvVar.BACKUP_BUCKET} "
            f"and {EnvVar.CLUSTER_NAME})"
        )
    target = ClusterTarget(args.cluster, args.bucket, args.prefix, args.window_minutes)
    region = args.region or ctx.bucket_region(args.bucket)
    return [Place(target, region, region)]


def judge(ctx: Context, place: Place) -> ClusterStatus:
    def s3_for(region: str | None) -> Any:
        # None is the bucket's own; a replica's region comes from the outputs.
        return ctx.client("s3", region or place.bucket_region)

    # No alarms, no CloudWatch client: flags alone need no region for it.
    cloudwatch = ctx.client("cloudwatch", place.alarm_region) if place.target.alarm_names else None
    return cluster_status(place.target, s3_for, cloudwatch)


def status(ctx: Context, args: argparse.Namespace) -> int:
    statuses = [judge(ctx, place) for place in places(ctx, args)]
    for one in statuses:
        if args.json:
            ctx.say(json.dumps(one.as_dict(), default=str))
        else:
            _report(ctx, one)
    return ExitCode.OK if all(s.healthy for s in statuses) else ExitCode.UNHEALTHY


def _report(ctx: Context, status: ClusterStatus) -> None:
    verdict = "OK" if status.healthy else "BEHIND OR ALARMING"
    ctx.say(f"{status.cluster}: {verdict} (window {status.window_minutes} min)")
    for name, place in status.places.items():
        if place.key is None:
            ctx.say(f"  {name:<8} s3://{place.bucket}: no snapshot")
            continue
        behind = " (BEHIND)" if place.behind else ""
        ctx.say(
            f"  {name:<8} {place.age_minutes:.0f} min old{behind}, "
            f"raft index {place.raft_index}, {human_bytes(place.bytes or 0)}, "
            f"{place.storage_class}{', ' + place.lock if place.lock else ''}  {place.key}"
        )
        if place.content_drop:
            ctx.say(f"  {'':<8} FLAGGED: content dropped ({describe_drop(place.content_drop)})")
        if place.manifest_problem:
            ctx.say(f"  {'':<8} its manifest cannot be read: {place.manifest_problem}")
        for key in place.held:
            ctx.say(f"  {'':<8} held: {key} (consul-backup release it once it is not needed)")
    for alarm, state in sorted(status.alarms.items()):
        ctx.say(f"  alarm    {state:<17} {alarm}")
