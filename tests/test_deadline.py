"""The deadline: one object for the read timeout, every byte, and a stalled stream."""

from __future__ import annotations

import threading
import time

import pytest

from snapshot_backup.deadline import DEADLINE_MARGIN_SECONDS, Deadline, DeadlineError


class Context:
    def __init__(self, remaining_s: float) -> None:
        self.remaining_s = remaining_s

    def get_remaining_time_in_millis(self) -> int:
        return int(self.remaining_s * 1000)


def test_without_a_lambda_context_there_is_no_deadline():
    deadline = Deadline.from_context(None)
    assert deadline.at is None
    assert deadline.clamp(300) == 300
    deadline.check()  # never raises


def test_the_margin_is_kept_back_from_lambdas_own_limit():
    deadline = Deadline.from_context(Context(DEADLINE_MARGIN_SECONDS + 60))
    assert deadline.at is not None
    assert 59 < deadline.at - time.monotonic() <= 60


def test_a_wait_is_clamped_to_the_time_left_but_never_below_a_second():
    assert 9 < Deadline(time.monotonic() + 10).clamp(300) <= 10
    assert Deadline(time.monotonic() - 5).clamp(300) == 1.0


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
