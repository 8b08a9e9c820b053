"""EventBridge schedule expressions: checked at preview, and how long a miss may last.

AWS rejects a bad expression only at ``pulumi up``; this catches the same
mistakes (``rate(1 hours)``, ``rate(0 minutes)``, a cron with both day fields
set) when the program starts.
"""

from __future__ import annotations

import re

_RATE = re.compile(r"rate\((?P<value>\d+) (?P<unit>minutes?|hours?|days?)\)")
_CRON = re.compile(r"cron\((?P<fields>[^()]*)\)")
_UNIT_MINUTES = {"minute": 1, "hour": 60, "day": 1440}
# Field: allowed characters and the numeric range of plain values.
_CRON_FIELDS = (
    ("minutes", r"[0-9,\-*/]+", 0, 59),
    ("hours", r"[0-9,\-*/]+", 0, 23),
    ("day-of-month", r"[0-9,\-*/?LW]+", 1, 31),
    ("month", r"[0-9A-Za-z,\-*/]+", 1, 12),
    ("day-of-week", r"[0-9A-Za-z,\-*/?L#]+", 1, 7),
    ("year", r"[0-9,\-*/]+", 1970, 2199),
)
DAILY_MINUTES = 1440
DEFAULT_SCHEDULE = "rate(1 hour)"
DEFAULT_VERIFY_SCHEDULE = "rate(1 day)"
# CloudWatch alarms evaluate at most seven days of data.
MAX_ALARM_WINDOW_MINUTES = 7 * DAILY_MINUTES
MIN_ALARM_WINDOW_MINUTES = 10


class ScheduleError(ValueError):
    pass


def _check_rate(value: int, unit: str) -> int:
    if value < 1:
        raise ScheduleError("a rate must be at least 1")
    singular = unit.rstrip("s")
    if value == 1 and unit != singular:
        raise ScheduleError(f"AWS wants rate(1 {singular}), not rate(1 {unit})")
    if value > 1 and unit == singular:
        raise ScheduleError(f"AWS wants rate({value} {singular}s), not rate({value} {unit})")
    return value * _UNIT_MINUTES[singular]


def _check_cron(fields_text: str) -> None:
    fields = fields_text.split()
    if len(fields) != 6:
        raise ScheduleError(
            "a cron() expression has 6 fields (minutes hours day-of-month month "
            f"day-of-week year), not {len(fields)}"
        )
    for value, (name, pattern, low, high) in zip(fields, _CRON_FIELDS, strict=True):
        if not re.fullmatch(pattern, value):
            raise ScheduleError(f"cron {name} field {value!r} is not valid")
        for number in re.findall(r"(?<![#/])\b\d+\b", value):
            if not low <= int(number) <= high:
                raise ScheduleError(f"cron {name} value {number} is outside {low}-{high}")
    day_of_month, day_of_week = fields[2], fields[4]
    if (day_of_month == "?") == (day_of_week == "?"):
        raise ScheduleError(
            "a cron() expression needs '?' in exactly one of day-of-month and day-of-week"
        )


def schedule_interval_minutes(expression: str) -> int | None:
    """Minutes between runs for ``rate()``; None for ``cron()``. Raises if invalid."""
    if rate := _RATE.fullmatch(expression):
        return _check_rate(int(rate["value"]), rate["unit"])
    if cron := _CRON.fullmatch(expression):
        _check_cron(cron["fields"])
        return None
    raise ScheduleError(f"{expression!r} is not an EventBridge rate() or cron() expression")


def interval_or_none(expression: str) -> int | None:
    """Minutes between runs; None for ``cron()`` and for an expression already reported."""
    try:
        return schedule_interval_minutes(expression)
    except ScheduleError:
        return None


def default_alarm_window(expression: str) -> int:
    """How long without a success before the missed-run alarm fires: two intervals.

    A miss is one run that did not succeed: alarm when two intervals pass
    without a success (a daily cron gets two days).
    """
    interval = interval_or_none(expression)
    window = 2 * (interval if interval is not None else DAILY_MINUTES)
    return max(MIN_ALARM_WINDOW_MINUTES, min(window, MAX_ALARM_WINDOW_MINUTES))


# What `consul-backup status` judges a cluster by when no stack outputs say otherwise.
DEFAULT_ALARM_WINDOW_MINUTES = default_alarm_window(DEFAULT_SCHEDULE)
