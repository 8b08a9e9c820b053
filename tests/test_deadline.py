"""The deadline: one object for every wait, every byte, and a stalled stream."""

from __future__ import annotations

import threading
import time

import pytest

from snapshot_backup.deadline import (
    DEADLINE_MARGIN_SECONDS,
    MIN_WAIT_SECONDS,
    Deadline,
    DeadlineError,
)


class Context:
    def __init__(self, remaining_s: float) -> None:
        self.remaining_s = remaining_s

    def get_remaining_time_in_millis(self) -> int:
        return int(self.remaining_s * 1000)


def test_without_a_lambda_context_there_is_no_deadline():
    deadline = Deadline.from_context(None)
    assert deadline.at is None
    assert deadline.remaining() is None
    deadline.check()  # never raises
    assert deadline.run_within(lambda: "done", "a call") == "done"


def test_the_margin_is_kept_back_from_lambdas_own_limit():
    deadline = Deadline.from_context(Context(DEADLINE_MARGIN_SECONDS + 60))
    assert deadline.at is not None
    assert 59 < deadline.at - time.monotonic() <= 60


def test_remaining_counts_down_and_goes_negative_once_past():
    remaining = Deadline(time.monotonic() + 10).remaining()
    assert remaining is not None and 9 < remaining <= 10
    past = Deadline(time.monotonic() - 5).remaining()
    assert past is not None and past < -4


def test_a_call_that_overruns_the_deadline_is_left_behind_at_the_deadline():
    # boto3 may retry for minutes; the run must not wait for it past the deadline.
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(DeadlineError, match="reading a secret did not finish before the deadline"):
        Deadline(started + 0.5).run_within(lambda: release.wait(30), "reading a secret")
    assert 0.4 < time.monotonic() - started < 2
    release.set()


def test_a_call_within_the_deadline_returns_or_raises_as_it_would():
    deadline = Deadline(time.monotonic() + 30)
    assert deadline.run_within(lambda: 42, "a call") == 42
    with pytest.raises(ValueError, match="invalid literal"):
        deadline.run_within(lambda: int("not a number"), "a call")


def test_no_call_starts_without_time_left_for_it():
    started: list[bool] = []
    almost_past = Deadline(time.monotonic() + MIN_WAIT_SECONDS / 2)
    with pytest.raises(DeadlineError, match="no time left for reading a secret"):
        almost_past.run_within(lambda: started.append(True), "reading a secret")
    assert not started


def test_check_raises_once_the_deadline_passed_and_says_how_far_it_got():
    Deadline(time.monotonic() + 60).check(10)
    with pytest.raises(DeadlineError, match="after 4096 bytes: raise the function's timeout"):
        Deadline(time.monotonic() - 1).check(4096)


def test_the_guard_interrupts_a_stalled_stream_at_the_deadline():
    interrupted = threading.Event()

    class Stream:
        def interrupt(self) -> None:
            interrupted.set()

    guard = Deadline(time.monotonic() + 0.05).guard(Stream())
    assert interrupted.wait(5)
    assert guard.stop() is True


def test_a_guard_stopped_in_time_never_fires():
    class Stream:
        def interrupt(self) -> None:
            raise AssertionError("cut a stream that was done")

    guard = Deadline(time.monotonic() + 30).guard(Stream())
    assert guard.stop() is False
