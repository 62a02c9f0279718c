"""Background jobs: run a long library function in a thread, keep its progress, cancel it.

The app starts fine-tunes, enrichment and benchmarks as jobs so that a request handler can stream
their progress (`Job.follow`) and a Stop button can cancel them (`Job.cancel`). Any function that
takes `on_progress` and `cancel` keyword arguments (the convention of every long function in
`tasc/`) runs as a job unchanged. Nothing is lost when a job fails: its progress events, its error
message and the traceback (in the server log) are all kept.

A job may need a *slot*: a named semaphore that bounds how many jobs of a kind run at once in the
whole process (one fine-tune at a time on a shared machine); until it gets one it is "queued".
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from tasc.core.errors import Cancelled, TascError
from tasc.core.progress import Progress

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


@dataclass(frozen=True)
class JobConfig:
    """Bounds of one job."""

    max_events: int = 10_000  # progress events kept; beyond, every other old event is dropped
    poll_s: float = 0.2  # how often `follow` looks at the job when nothing new arrives


_SLOTS: dict[str, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


def set_slots(name: str, n: int) -> None:
    """Allow at most `n` jobs with this slot name to run at once (process-wide)."""
    if n < 1:
        raise ValueError(f"slots for {name!r} must be at least 1, got {n}")
    with _SLOTS_LOCK:
        _SLOTS[name] = threading.BoundedSemaphore(n)


def _slot(name: str) -> threading.BoundedSemaphore:
    """The semaphore of a slot name (one slot unless `set_slots` said otherwise)."""
    with _SLOTS_LOCK:
        return _SLOTS.setdefault(name, threading.BoundedSemaphore(1))


class Job:
    """A function running in a background thread, with its progress, status, result and error.

    Args:
        kind: what it is ("finetune", "enrich", "bench"); shown to users.
        fn: called as `fn(*args, on_progress=..., cancel=..., **kwargs)`.
        slot: name of the process-wide slot it must hold while running (None: runs at once).
        config: its bounds.
        clock: what every time reading of the job calls (created, started, finished, elapsed), in
            seconds; wall time by default, a fake clock in tests.
    """

    def __init__(self, kind: str, fn: Callable[..., Any], *args: Any, slot: str | None = None,
                 config: JobConfig | None = None, clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        self.kind = kind
        self.id = secrets.token_hex(8)
        self.config = config or JobConfig()
        self.clock = clock
        self.status = QUEUED
        self.result: Any = None
        self.error: str | None = None  # a message for the user
        self.created_at = clock()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.cancel_event = threading.Event()
        self._events: list[Progress] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._version = 0  # bumped on every event or status change, so `follow` knows what is new
        self._slot = slot
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._thread = threading.Thread(target=self._run, name=f"tasc-job-{kind}-{self.id}", daemon=True)

    def start(self) -> "Job":
        """Start the thread; returns self."""
        self._thread.start()
        return self

    # -- inside the thread ------------------------------------------------------------------
    def _record(self, event: Progress) -> None:
        """The job's `on_progress`: keep the event (thinning old ones past max_events)."""
        with self._changed:
            self._events.append(event)
            if len(self._events) > self.config.max_events:
                half = self.config.max_events // 2
                self._events = self._events[:half:2] + self._events[half:]  # keep the recent half intact
            self._version += 1
            self._changed.notify_all()

    def _set_status(self, status: str) -> None:
        with self._changed:
            self.status = status
            if status == RUNNING:
                self.started_at = self.clock()
            if status in FINISHED:
                self.finished_at = self.clock()
            self._version += 1
            self._changed.notify_all()

    def _run(self) -> None:
        slot = _slot(self._slot) if self._slot else None
        if slot is not None:
            while not slot.acquire(timeout=self.config.poll_s):  # queued: wait for a free slot
                if self.cancel_event.is_set():
                    self.error = "cancelled before it started"
                    self._set_status(CANCELLED)
                    return
        try:
            if self.cancel_event.is_set():
                raise Cancelled("cancelled before it started")
            self._set_status(RUNNING)
            self.result = self._fn(*self._args, on_progress=self._record, cancel=self.cancel_event, **self._kwargs)
            self._set_status(DONE)
        except Cancelled as exc:
            self.error = str(exc)
            self._set_status(CANCELLED)
        except TascError as exc:  # the user's input was wrong: the message says how
            self.error = str(exc)
            self._set_status(FAILED)
        except Exception as exc:  # a bug or a resource problem: keep the details in the log
            log.error("job %s (%s) failed:\n%s", self.id, self.kind, traceback.format_exc())
            self.error = f"{self.kind} failed: {type(exc).__name__}: {exc}"
            self._set_status(FAILED)
        finally:
            if slot is not None:
                slot.release()

    # -- from any thread --------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the job to stop; it stops at its next cancel check (library functions check often)."""
        self.cancel_event.set()

    @property
    def finished(self) -> bool:
        """True once done, failed or cancelled."""
        return self.status in FINISHED

    @property
    def events(self) -> list[Progress]:
        """A copy of the progress events so far."""
        with self._lock:
            return list(self._events)

    @property
    def latest(self) -> Progress | None:
        """The last progress event, if any."""
        with self._lock:
            return self._events[-1] if self._events else None

    def elapsed_s(self) -> float:
        """Seconds since the job started running (0 while queued)."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else self.clock()
        return end - self.started_at

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished; True if it did within `timeout`."""
        self._thread.join(timeout)
        return self.finished

    def follow(self, poll_s: float | None = None, min_interval_s: float = 0.25) -> Iterator["Job"]:
        """Yield the job whenever something changed (or every `poll_s`), last after it finished.

        At most one yield per `min_interval_s` while the job runs: a fast job (a tiny model trains
        hundreds of steps a second) would otherwise flood a browser with plot updates and freeze it.
        """
        poll_s = self.config.poll_s if poll_s is None else poll_s
        seen = -1
        while True:
            with self._changed:
                if self._version == seen:
                    self._changed.wait(poll_s)
                seen = self._version
                finished = self.status in FINISHED
            yield self
            if finished:
                return
            with self._changed:  # returns early when the job finishes, so the end is never delayed
                self._changed.wait_for(lambda: self.status in FINISHED, timeout=min_interval_s)


def start_job(kind: str, fn: Callable[..., Any], *args: Any, slot: str | None = None, **kwargs: Any) -> Job:
    """Create and start a `Job` (see its arguments; `config` and `clock` are the job's, the rest go to `fn`)."""
    return Job(kind, fn, *args, slot=slot, **kwargs).start()
