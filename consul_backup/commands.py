"""The CLI's commands, as a table: name, help, the flags it takes, the function that runs it.

Adding a command is one entry here plus its two functions, in a module of
its own or beside its kin (``snapshots``)::

    def inspect_arguments(command: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
        store_options(command, env, cluster_required=True)   # options.py: shared flags
        snapshot_argument(command)

    def inspect(ctx: Context, args: argparse.Namespace) -> int:
        ...                        # raise an errors.* exception to fail; the table maps it
        return ExitCode.OK

    Command("inspect", "what a snapshot holds", inspect_arguments, inspect),

``cli.build_parser`` makes a subcommand of each entry and ``cli.run`` calls its
function; a failure it raises becomes an exit code through
``errors.EXIT_CODES``, so a command never prints errors or exits by itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import backup_command, inspect_command, snapshots, status_command
from .context import Context
from .exit_codes import ExitCode


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser, Mapping[str, str]], None]
    run: Callable[[Context, argparse.Namespace], int]


COMMANDS: tuple[Command, ...] = (
    Command(
        "list",
        "snapshots, newest first",
        snapshots.list_arguments,
        snapshots.list_snapshots,
    ),
    Command(
        "verify",
        "stream a snapshot from S3 through the verifier",
        snapshots.verify_arguments,
        snapshots.verify,
    ),
    Command(
        "download",
        "download a snapshot, verified, into a file only you can read",
        snapshots.download_arguments,
        snapshots.download,
    ),
    Command(
        "restore",
        "verify a snapshot, then restore it into Consul (PUT /v1/snapshot)",
        snapshots.restore_arguments,
        snapshots.restore,
    ),
    Command(
        "inspect",
        "what a snapshot holds, as consul snapshot inspect shows it (from its manifest, or read)",
        inspect_command.inspect_arguments,
        inspect_command.inspect,
    ),
    Command(
        "diff",
        "what changed between two snapshots: counts, KV keys, services, nodes (never values)",
        inspect_command.diff_arguments,
        inspect_command.diff,
    ),
    Command(
        "hold",
        "keep a snapshot beyond keepLatest until it is released (the floor never retires it)",
        snapshots.hold_arguments,
        snapshots.hold,
    ),
    Command(
        "release",
        "end a hold: the floor may retire the snapshot again (list shows holds)",
        snapshots.release_arguments,
        snapshots.release,
    ),
    Command(
        "thaw",
        "restore an archived snapshot (GLACIER, DEEP_ARCHIVE) so that it reads again",
        snapshots.thaw_arguments,
        snapshots.thaw,
    ),
    Command(
        "status",
        "every cluster's newest snapshot (bucket and replica) and alarms; "
        f"exit {ExitCode.UNHEALTHY.value} when one is behind or an alarm fires",
        status_command.status_arguments,
        status_command.status,
    ),
    Command(
        "backup",
        "take a backup now: invoke the deployed function, or run its handler here (--local)",
        backup_command.backup_arguments,
        backup_command.backup,
    ),
)


def command_named(name: str) -> Command:
    """The table's entry for ``name`` (argparse has already refused any other)."""
    return next(command for command in COMMANDS if command.name == name)
