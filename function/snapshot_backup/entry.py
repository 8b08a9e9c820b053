"""How both Lambda entry points open and close: one deadline, one JSON line, no token.

``handler.handler`` (a backup) and ``handler.verify_handler`` (the daily
re-verification) differ only in their work and in the metrics of their line;
everything around the work is here, once: the invocation's deadline, the
record printed for every run, success or failure (CloudWatch EMF, which the
alarms watch), and the token redactor over every record and every error, so
that whatever carries a token's bytes (a header error, an echo in a proxy's
answer) is logged and raised without them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from .deadline import Deadline
from .environment import EnvVar
from .telemetry import emit
from .token_source import token_redactor

Work = Callable[[Mapping[str, str], Deadline], dict[str, Any]]
Record = Callable[[str, bool, float, dict[str, Any]], dict[str, Any]]


def run_entry(
    env: Mapping[str, str] | None, context: Any, work: Work, record: Record
) -> dict[str, Any]:
    """Run ``work`` within the invocation's deadline; print its line; return or raise, cleaned.

    A failure is raised outside the ``except`` block, so that a stand-in for an
    error that could not be cleaned does not carry the original as its context.
    """
    env = os.environ if env is None else env
    started = time.monotonic()
    cluster = env.get(EnvVar.CLUSTER_NAME, "") or "unknown"
    try:
        summary = work(env, Deadline.from_context(context))
    except Exception as exc:  # noqa: BLE001 - logged, then raised below
        redactor = token_redactor()
        failure = redactor.exception(exc)
        notes = "".join(f" ({note})" for note in getattr(failure, "__notes__", ()))
        details = {"error": redactor.text(f"{type(failure).__name__}: {failure}{notes}")}
        emit(record(cluster, False, time.monotonic() - started, details))
    else:
        summary = token_redactor().record(summary)
        emit(record(cluster, True, time.monotonic() - started, summary))
        return summary
    raise failure
