"""consul-backup: list, verify, download and restore Consul snapshots; run a backup.

Reads the same environment as the backup function (``snapshot_backup.environment``),
through the same loader; flags override it. The token is never a flag, so that
it stays out of shell history and process lists. The commands are a table
(``commands.COMMANDS``); every failure becomes one line on standard error and
an exit code (``errors.EXIT_CODES``, ``exit_codes``), never a traceback unless
``CONSUL_BACKUP_DEBUG=1`` asks for one.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from typing import NoReturn, TextIO

from snapshot_backup.settings import TRUE_WORDS

from .commands import COMMANDS, command_named
from .context import Context, ask_on_terminal
from .errors import UsageError, failure_of
from .exit_codes import DEBUG_VARIABLE, ExitCode, exit_code_summary


class _Parser(argparse.ArgumentParser):
    """argparse, whose usage errors are reported like every other failure, not by exiting."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.partition(" ")[2]  # "consul-backup status" -> "status"
        where = f"{command}: " if command else ""
        raise UsageError(f"{where}{message}", usage=self.format_usage())


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """A subcommand per entry of the command table, its flags' defaults taken from ``env``."""
    parser = _Parser(
        prog="consul-backup",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=f"Exit codes: {exit_code_summary()}.",
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = subcommands.add_parser(command.name, help=command.help, description=command.help)
        command.arguments(sub, env)
    return parser


def run(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    ask: Callable[[str], str] | None = None,
) -> int:
    """Parse ``argv``, run the command, and return its exit code; raises nothing."""
    env = os.environ if env is None else env
    err = err or sys.stderr
    try:
        args = build_parser(env).parse_args(argv)
        context = Context(env, out or sys.stdout, err, ask or ask_on_terminal)
        return command_named(args.command).run(context, args)
    except SystemExit as exc:  # --help, printed by argparse; its errors raise UsageError
        return ExitCode.OK if exc.code in (0, None) else ExitCode.USAGE
    except BaseException as exc:  # noqa: BLE001 - every failure is one line and an exit code
        return report_failure(exc, err, debug=_debug_asked(env))


def report_failure(exc: BaseException, err: TextIO, debug: bool = False) -> int:
    """Say in one line what failed (the traceback too with ``debug``); the exit code."""
    failure, line = failure_of(exc)
    if failure.silent:
        return failure.code
    with suppress(OSError):  # standard error gone too: the exit code still says it
        usage = getattr(exc, "usage", None)
        if usage:
            err.write(usage)
        print(f"consul-backup: {line}", file=err, flush=True)
        if debug:
            traceback.print_exception(exc, file=err)
    return failure.code


def _debug_asked(env: Mapping[str, str]) -> bool:
    return (env.get(DEBUG_VARIABLE) or "").strip().lower() in TRUE_WORDS


def _stdout_to_devnull() -> None:
    """After the reader of standard output left: the interpreter's last flush must not fail.

    Python's documented way (the signal module's "Note on SIGPIPE"): point the
    file descriptor at /dev/null, so that no "Exception ignored" line follows.
    """
    with suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main() -> None:
    code = run()
    if code == ExitCode.BROKEN_PIPE:
        _stdout_to_devnull()
    sys.exit(code)
