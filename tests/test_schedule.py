"""EventBridge schedule expressions: what AWS accepts, and the interval between runs."""

from __future__ import annotations

import re

import pytest

from components.schedule import ScheduleError, schedule_interval_minutes


@pytest.mark.parametrize(
    ("expression", "minutes"),
    [
        ("rate(1 minute)", 1),
        ("rate(15 minutes)", 15),
        ("rate(1 hour)", 60),
        ("rate(2 days)", 2880),
        ("cron(0/15 * * * ? *)", None),
        ("cron(15 */6 ? * MON-FRI *)", None),
        ("cron(0 3 L * ? 2027)", None),
    ],
)
def test_valid_schedules(expression, minutes):
    assert schedule_interval_minutes(expression) == minutes


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("rate(1 week)", "is not an EventBridge rate() or cron() expression"),
        ("rate(-1 minutes)", "is not an EventBridge"),
        ("rate(1hour)", "is not an EventBridge"),
        ("rate(1 hours)", "AWS wants rate(1 hour), not rate(1 hours)"),
        ("rate(5 minute)", "AWS wants rate(5 minutes), not rate(5 minute)"),
        ("rate(0 minutes)", "a rate must be at least 1"),
        ("cron(0 3 * * *)", "has 6 fields"),
        ("cron(0 3 * * * *)", "needs '?' in exactly one of day-of-month and day-of-week"),
        ("cron(61 * * * ? *)", "cron minutes value 61 is outside 0-59"),
        ("cron(0 24 * * ? *)", "cron hours value 24 is outside 0-23"),
    ],
)
def test_invalid_schedules_say_what_aws_would(expression, message):
    with pytest.raises(ScheduleError, match=re.escape(message)):
        schedule_interval_minutes(expression)
