"""Waiting in tests without hanging them: a polling helper with a deadline, and a clock the test moves."""

from __future__ import annotations

import threading
import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout_s: float = 10.0, what: str = "the condition", poll_s: float = 0.005) -> T:
    """Poll `predicate` until it returns something truthy, and return that; fail the test after `timeout_s`.

    Args:
        predicate: called repeatedly (from the test's thread).
        timeout_s: generous real seconds before giving up (a loaded machine is slow, never stuck).
        what: what is awaited, for the failure message ("the job to start running").
        poll_s: pause between two calls.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(poll_s)


def wait_for_event(event: threading.Event, timeout_s: float = 10.0, what: str = "the event") -> None:
    """Block until `event` is set; fail the test with a clear message after `timeout_s`."""
    if not event.wait(timeout_s):
        raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


class FakeClock:
    """A clock that stands still until the test advances it (thread-safe); call it to read it."""

    def __init__(self, start: float = 1_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds`."""
        with self._lock:
            self._now += seconds
