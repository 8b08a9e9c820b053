"""The invocation's deadline: one object for every check a run makes against it.

A run stops ``DEADLINE_MARGIN_SECONDS`` before Lambda would kill it, so that there
is time to abort the upload and to log the failure: a killed run leaves an open
upload (lifecycle removes it a day later) and no log line. Everything that waits
answers to the deadline: each attempt to reach Consul (its connect and read
timeouts, and the backoff before a retry), the calls to Secrets Manager, every
byte that arrives, and a stream that stops sending altogether.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

DEADLINE_MARGIN_SECONDS = 20.0
# The least time worth a network call: with less left, one is not started (it
# could only time out), and a retry that would leave less is not made.
MIN_WAIT_SECONDS = 0.1
TOO_SLOW = "raise the function's timeout or memory"
STALLED = "Consul stopped sending the snapshot"

T = TypeVar("T")


class DeadlineError(TimeoutError):
    """The invocation is about to run out of time."""


class Interruptible(Protocol):
    def interrupt(self) -> None: ...


class Deadline:
    """A monotonic point in time to finish by; ``Deadline(None)`` never expires (local runs)."""

    def __init__(self, at: float | None) -> None:
        self.at = at

    @classmethod
    def from_context(cls, context: Any) -> Deadline:
        """From a Lambda context, less the margin; without one (run elsewhere), none."""
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        if remaining_ms is None:
            return cls(None)
        return cls(time.monotonic() + remaining_ms() / 1000 - DEADLINE_MARGIN_SECONDS)

    def remaining(self) -> float | None:
        """Seconds left before the deadline (negative once past); None without a deadline."""
        return None if self.at is None else self.at - time.monotonic()

    def check(self, done_bytes: int = 0, why: str = TOO_SLOW) -> None:
        """Raise ``DeadlineError`` once the deadline has passed."""
        if self.at is not None and time.monotonic() > self.at:
            raise self.error(done_bytes, why)

    def error(self, done_bytes: int, why: str) -> DeadlineError:
        return DeadlineError(f"the invocation is about to time out after {done_bytes} bytes: {why}")

    def expired(self, what: str) -> DeadlineError:
        """The error for a wait the deadline ended, or left no time to start."""
        return DeadlineError(f"the invocation is about to time out: {what}")

    def run_within(self, call: Callable[[], T], what: str) -> T:
        """``call()``, or ``DeadlineError`` naming ``what`` if it has not returned by the deadline.

        For a call whose own timeouts this code does not set (boto3's, for one:
        botocore may retry for minutes). It runs on a thread of its own; one the
        deadline overtakes is left to finish in the background, and its result
        is dropped. Without a deadline, ``call`` runs here.
        """
        at = self.at
        if at is None:
            return call()
        if at - time.monotonic() < MIN_WAIT_SECONDS:
            raise self.expired(f"no time left for {what}")
        outcome: list[tuple[bool, Any]] = []
        done = threading.Event()

        def run() -> None:
            try:
                outcome.append((True, call()))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                outcome.append((False, exc))
            finally:
                done.set()

        threading.Thread(target=run, name=f"deadline: {what}", daemon=True).start()
        if not done.wait(max(0.0, at - time.monotonic())):
            raise self.expired(f"{what} did not finish before the deadline")
        returned, value = outcome[0]
        if returned:
            return value
        raise value

    def guard(self, stream: Interruptible) -> StallGuard:
        """Cut ``stream`` at the deadline, should a read still be waiting on it then."""
        return StallGuard(self.at, stream)


class StallGuard:
    """At the deadline, unblocks a read still waiting on a stalled stream.

    Every byte that arrives is checked against the deadline, but a stream that
    stops sending would hold the read for the whole read timeout, past the
    deadline: Lambda would then kill the run before it aborts and logs.
    """

    def __init__(self, at: float | None, stream: Interruptible) -> None:
        self.fired = False
        self._timer: threading.Timer | None = None
        if at is not None:
            delay = max(0.0, at - time.monotonic())
            self._timer = threading.Timer(delay, self._fire, args=(stream,))
            self._timer.daemon = True
            self._timer.start()

    def _fire(self, stream: Interruptible) -> None:
        self.fired = True
        stream.interrupt()

    def stop(self) -> bool:
        """Stop the timer; True when it had already cut the stream.

        Should it fire while this runs, it cuts a stream that was read to its
        end already, which changes nothing: the answer given here stands.
        """
        if self._timer is not None:
            self._timer.cancel()
        return self.fired
