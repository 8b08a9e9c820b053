"""The CLI's exit codes: declared once; the help text and the README are made from here.

Every status a user can see is one of these, argparse's own usage exit (2)
and the broken-pipe exit (141) included: ``errors.EXIT_CODES`` maps every
failure onto them, so a script can branch on the number alone.
"""

from __future__ import annotations

from enum import IntEnum

# Set to 1 (or true, yes, on) and a failure's traceback follows its one line.
DEBUG_VARIABLE = "CONSUL_BACKUP_DEBUG"


class ExitCode(IntEnum):
    """What ``consul-backup`` returns, so that scripts and pipelines can branch on it."""

    OK = 0
    DEFECTIVE = 1
    USAGE = 2
    NOT_FOUND = 3
    REMOTE = 4
    NOT_CONFIRMED = 5
    ARCHIVED = 6
    UNHEALTHY = 7
    LOCAL_FILE = 8
    WRONG_TARGET = 9
    INTERNAL = 70  # sysexits.h EX_SOFTWARE: never 1, which says "defective snapshot"
    INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
    BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a writer whose reader left

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "done",
    ExitCode.DEFECTIVE: "the snapshot is defective",
    ExitCode.USAGE: "usage or configuration error: a flag, a setting, the stack outputs, no such "
    "bucket, AWS credentials or region missing (argparse's own usage errors too)",
    ExitCode.NOT_FOUND: "snapshot not found",
    ExitCode.REMOTE: "AWS or Consul refused or could not be reached",
    ExitCode.NOT_CONFIRMED: "restore not confirmed",
    ExitCode.ARCHIVED: "the snapshot is archived: thaw it first",
    ExitCode.UNHEALTHY: "status: a cluster is behind its schedule or an alarm is firing",
    ExitCode.WRONG_TARGET: "restore refused: the snapshot was taken from another cluster or "
    "datacenter than the target (`--into-other-cluster` restores it all the same)",
    ExitCode.LOCAL_FILE: "a local file could not be read or written (the message names it)",
    ExitCode.INTERNAL: "unexpected error, a bug: the message names it; "
    f"`{DEBUG_VARIABLE}=1` adds the traceback",
    ExitCode.INTERRUPTED: "interrupted",
    ExitCode.BROKEN_PIPE: "the output's reader went away (`head`, say): stopped, silently",
}


def exit_code_summary() -> str:
    """One line: ``0 done, 1 the snapshot is defective, ...``."""
    return ", ".join(f"{code.value} {code.meaning}" for code in ExitCode)
