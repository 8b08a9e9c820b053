"""The CLI's exit codes: declared once; the help text and the README are made from here."""

from __future__ import annotations

from enum import IntEnum


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
    INTERRUPTED = 130

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "done",
    ExitCode.DEFECTIVE: "the snapshot is defective",
    ExitCode.USAGE: "usage or configuration error",
    ExitCode.NOT_FOUND: "snapshot not found",
    ExitCode.REMOTE: "AWS or Consul refused or could not be reached",
    ExitCode.NOT_CONFIRMED: "restore not confirmed",
    ExitCode.ARCHIVED: "the snapshot is archived: thaw it first",
    ExitCode.UNHEALTHY: "status: a cluster is behind its schedule or an alarm is firing",
    ExitCode.INTERRUPTED: "interrupted",
}


def exit_code_summary() -> str:
    """One line: ``0 done, 1 the snapshot is defective, ...``."""
    return ", ".join(f"{code.value} {code.meaning}" for code in ExitCode)
