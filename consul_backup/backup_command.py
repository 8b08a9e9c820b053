"""``consul-backup backup``: invoke the deployed function, or run its handler here (``--local``).

A local run is the real handler, and after storing it retires the snapshots
beyond the floor. The floor must be the stack's: a default of the function's
could retire snapshots the stack keeps. So ``--local`` takes it from
``--keep-latest``, else from the stack outputs (``--outputs``: keepLatest and
contentDropPercent), else from ``KEEP_LATEST``, and refuses to run without one.
It reaches the handler through the function's own environment contract.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.outputs import ClusterOutputs
from snapshot_backup.backup import handler as backup_handler
from snapshot_backup.environment import EnvVar
from snapshot_backup.keys import DEFAULT_PREFIX, normalize_prefix
from snapshot_backup.retention import MAX_KEEP_LATEST

from .context import Context
from .errors import RemoteFailureError, UsageError
from .exit_codes import ExitCode
from .files import outputs_of, read_outputs
from .options import consul_options, env_option, store_options, whole_number


def backup_arguments(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    store_options(command, env, cluster_required=True, prefix_fallback=None)
    env_option(
        command,
        env,
        "--function-name",
        EnvVar.BACKUP_FUNCTION_NAME,
        "deployed function to invoke (stack output functionName)",
    )
    command.add_argument(
        "--outputs",
        type=Path,
        help="stack outputs (`pulumi stack output clusters --json`; '-': stdin): the cluster's "
        "bucket, prefix and function, and for --local its floor (keepLatest, contentDropPercent)",
    )
    command.add_argument(
        "--local",
        action="store_true",
        help=f"run the backup handler in this process against --consul-addr "
        f"(env {EnvVar.CONSUL_HTTP_ADDR}); needs the stack's floor",
    )
    command.add_argument(
        "--keep-latest",
        type=whole_number(1, MAX_KEEP_LATEST),
        help=f"with --local: the newest N snapshots never expire (1 to {MAX_KEEP_LATEST}); "
        f"default: the stack outputs' keepLatest, else env {EnvVar.KEEP_LATEST}",
    )
    consul_options(command, env)


@dataclass(frozen=True)
class Destination:
    bucket: str | None
    prefix: str


def destination(args: argparse.Namespace, outputs: ClusterOutputs | None) -> Destination:
    """Bucket and prefix from the flags (or environment), else the outputs; never two answers."""
    if outputs is None:
        return Destination(args.bucket, normalize_prefix(args.prefix or DEFAULT_PREFIX))
    for flag, given, stack in (
        ("--bucket", args.bucket, outputs.bucket),
        ("--prefix", args.prefix and normalize_prefix(args.prefix), outputs.prefix),
    ):
        if given and given != stack:
            raise UsageError(
                f"{flag} {given} differs from the stack outputs' {stack} for cluster "
                f"{outputs.cluster}: the floor of one must not be applied to the other; "
                "drop one of them"
            )
    return Destination(outputs.bucket, outputs.prefix)


def floor_environment(
    ctx: Context, args: argparse.Namespace, outputs: ClusterOutputs | None
) -> dict[str, str]:
    """The stack's floor, in the function's variables; refused when nobody said what it is."""
    floor: dict[str, str]
    if args.keep_latest is not None:
        floor = {EnvVar.KEEP_LATEST: str(args.keep_latest)}
    elif outputs is not None:
        floor = {EnvVar.KEEP_LATEST: str(outputs.keep_latest)}
    elif ctx.env.get(EnvVar.KEEP_LATEST):
        floor = {EnvVar.KEEP_LATEST: ctx.env[EnvVar.KEEP_LATEST]}  # the handler checks it
    else:
        raise UsageError(
            "backup --local retires the snapshots beyond the stack's floor: give it with "
            "--outputs clusters.json (`pulumi stack output clusters --json`), --keep-latest N "
            f"or {EnvVar.KEEP_LATEST} (a default could retire snapshots the stack keeps)"
        )
    if outputs is not None:
        floor[EnvVar.CONTENT_DROP_PERCENT] = str(outputs.content_drop_percent)
    return floor


def run_locally(
    ctx: Context, args: argparse.Namespace, outputs: ClusterOutputs | None
) -> dict[str, Any]:
    where = destination(args, outputs)
    if not where.bucket:
        raise UsageError(f"no bucket: pass --bucket or --outputs, or set {EnvVar.BACKUP_BUCKET}")
    floor = floor_environment(ctx, args, outputs)
    ctx.consul(args)  # address, token and CA bundle checked before anything is stored
    env = ctx.consul_env(args)
    env.update(
        {
            EnvVar.CLUSTER_NAME: args.cluster,
            EnvVar.BACKUP_BUCKET: where.bucket,
            EnvVar.BACKUP_PREFIX: where.prefix,
            **floor,
        }
    )
    summary: dict[str, Any] = backup_handler({}, None, env=env)
    return summary


def invoke(ctx: Context, args: argparse.Namespace, outputs: ClusterOutputs | None) -> Any:
    """Run the deployed function once, as its schedule would; its summary."""
    if args.keep_latest is not None:
        raise UsageError("--keep-latest applies to --local: the deployed function keeps its own")
    name = args.function_name or (outputs.function_name if outputs else None)
    if not name:
        raise UsageError(
            "no function: pass --function-name (stack output functionName), --outputs or --local"
        )
    region = args.region or (outputs.region if outputs else None)
    response = ctx.client("lambda", region).invoke(FunctionName=name, Payload=b"{}")
    payload = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        message = payload.get("errorMessage") if isinstance(payload, dict) else payload
        raise RemoteFailureError(f"the backup function {name} failed: {message}")
    return payload


def backup(ctx: Context, args: argparse.Namespace) -> int:
    outputs = None
    if args.outputs is not None:
        outputs = outputs_of(read_outputs(args.outputs, sys.stdin), args.cluster, args.outputs)
    summary = run_locally(ctx, args, outputs) if args.local else invoke(ctx, args, outputs)
    ctx.say(json.dumps(summary, indent=2, default=str))
    return ExitCode.OK
