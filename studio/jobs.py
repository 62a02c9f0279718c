"""Background jobs: run a long library function in a thread, keep its progress, cancel it.

The app starts fine-tunes, enrichment and benchmarks as jobs so that a request handler can stream
their progress (`Job.follow`) and a Stop button can cancel them (`Job.cancel`). Any function that
takes `on_progress` and `cancel` keyword arguments (the convention of every long function in
`tasc/`) runs as a job unchanged. Nothing is lost when a job fails: its progress events, its error
message and the traceback (in the server log) are all kept.

A job may need a *slot*: a named, first-come-first-served bound on how many jobs of a kind run at
once in the whole process (one fine-tune at a time on a shared machine); until it gets one it is
"queued", and `Job.ahead` says how many jobs are before it.

Every job `start_job` starts is also counted by a `JobBoard`: the whole server holds at most
`JobLimits.max_jobs` queued plus running jobs (and `max_per_kind` of one kind); beyond, `start_job`
raises `JobsFull`, whose message the user sees. The app sets the process-wide board's limits from its
settings (`studio.app_state`); the app also ties each job to the client that started it (the event's
generator cancels the job when Gradio closes it), so a client that leaves frees its place.
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


class Slot:
    """A bound on how many jobs of one kind run at once; queued jobs take their turn in the order they started.

    Args:
        name: what the slot is for ("finetune").
        capacity: jobs that may hold it at once (at least 1).
    """

    def __init__(self, name: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"slots for {name!r} must be at least 1, got {capacity}")
        self.name, self.capacity = name, capacity
        self._cond = threading.Condition()
        self._running = 0
        self._waiting: list[Job] = []  # queued jobs, first come first

    def enqueue(self, job: "Job") -> None:
        """Put a job at the back of the queue (when it starts, before its thread waits its turn)."""
        with self._cond:
            self._waiting.append(job)

    def wait_turn(self, job: "Job", poll_s: float) -> bool:
        """Block until `job` may run (True: it now holds a place) or is cancelled while queued (False)."""
        with self._cond:
            try:
                while self._waiting.index(job) >= self.capacity - self._running:
                    if job.cancel_event.is_set():
                        return False
                    self._cond.wait(poll_s)
                self._running += 1
                return True
            finally:
                self._waiting.remove(job)
                self._cond.notify_all()

    def release(self) -> None:
        """A job that held a place has finished."""
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def ahead(self, job: "Job") -> int:
        """Jobs before a queued one: those running plus those queued earlier (0 once it is not queued)."""
        with self._cond:
            if job not in self._waiting:
                return 0
            return self._running + self._waiting.index(job)


_SLOTS: dict[str, Slot] = {}
_SLOTS_LOCK = threading.Lock()


def set_slots(name: str, n: int) -> None:
    """Allow at most `n` jobs with this slot name to run at once (process-wide; for jobs created afterwards)."""
    slot = Slot(name, n)
    with _SLOTS_LOCK:
        _SLOTS[name] = slot


def _slot(name: str) -> Slot:
    """The slot of a name (one place unless `set_slots` said otherwise)."""
    with _SLOTS_LOCK:
        return _SLOTS.setdefault(name, Slot(name, 1))


class Job:
    """A function running in a background thread, with its progress, status, result and error.

    Args:
        kind: what it is ("finetune", "enrich", "bench"); shown to users.
        fn: called as `fn(*args, on_progress=..., cancel=..., **kwargs)`.
        slot: name of the process-wide slot it must hold while running (None: runs at once).
        config: its bounds.
        clock: what every time reading of the job calls (created, started, finished, elapsed), in
            seconds; wall time by default, a fake clock in tests.
        runner: where `fn` runs: None in the job's own thread; else called as
            `runner(call, cancel=..., on_start=...)` from it (`studio.model_thread.ModelThread.run_job`:
            the tensor math on the app's one model thread), and the job stays queued until `on_start`.
    """

    def __init__(self, kind: str, fn: Callable[..., Any], *args: Any, slot: str | None = None,
                 config: JobConfig | None = None, clock: Callable[[], float] = time.time,
                 runner: Callable[..., Any] | None = None, **kwargs: Any) -> None:
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
        self._slot = _slot(slot) if slot else None
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._runner = runner
        self.waiting_for_runner = False  # queued behind other work on the runner (the model thread)
        self._thread = threading.Thread(target=self._run, name=f"tasc-job-{kind}-{self.id}", daemon=True)

    def start(self) -> "Job":
        """Join its slot's queue (if it has one) and start the thread; returns self."""
        if self._slot is not None:
            self._slot.enqueue(self)
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
        slot = self._slot
        if slot is not None and not slot.wait_turn(self, self.config.poll_s):  # queued: wait for a free place
            self.error = "cancelled before it started"
            self._set_status(CANCELLED)
            return
        try:
            if self.cancel_event.is_set():
                raise Cancelled("cancelled before it started")
            def call() -> Any:
                return self._fn(*self._args, on_progress=self._record, cancel=self.cancel_event, **self._kwargs)

            if self._runner is None:
                self._set_status(RUNNING)
                self.result = call()
            else:
                def started() -> None:
                    self.waiting_for_runner = False
                    self._set_status(RUNNING)

                self.waiting_for_runner = True
                self.result = self._runner(call, cancel=self.cancel_event, on_start=started)
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
            self.waiting_for_runner = False
            if slot is not None:
                slot.release()

    # -- from any thread --------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the job to stop; it stops at its next cancel check (library functions check often)."""
        self.cancel_event.set()

    def ahead(self) -> int:
        """While queued for its slot: how many jobs are before it (running ones included); else 0."""
        if self._slot is None or self.status != QUEUED:
            return 0
        return self._slot.ahead(self)

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


KIND_LABELS = {"finetune": "fine-tune", "compare": "draft/hybrid training", "enrich": "enrichment",
               "mine": "mining", "bench": "benchmark"}  # how messages name a job kind


@dataclass(frozen=True)
class JobLimits:
    """How many jobs the whole server holds at once, queued and running together."""

    max_jobs: int = 8  # of every kind and every user together
    max_per_kind: int = 4  # of one kind ("finetune", "compare", "enrich", "mine", "bench")

    def check(self) -> "JobLimits":
        """ValueError unless both bounds are at least 1; returns self."""
        if self.max_jobs < 1 or self.max_per_kind < 1:
            raise ValueError(f"job limits must be at least 1, got {self}")
        return self


class JobsFull(TascError):
    """The server holds as many jobs as its limits allow; the message says so and when to retry."""


class JobBoard:
    """The live (queued or running) jobs of the whole server, bounded by `JobLimits`.

    Finished jobs leave on their own: the board only counts jobs that are not finished.
    """

    def __init__(self, limits: JobLimits | None = None) -> None:
        self.limits = (limits or JobLimits()).check()
        self._jobs: list[Job] = []
        self._lock = threading.Lock()

    def live(self, kind: str | None = None) -> list[Job]:
        """Queued and running jobs (of one kind, or all)."""
        with self._lock:
            self._jobs = [j for j in self._jobs if not j.finished]
            return [j for j in self._jobs if kind is None or j.kind == kind]

    def admit(self, job: Job) -> None:
        """Count a job about to start; `JobsFull` when the server already holds its maximum."""
        with self._lock:
            self._jobs = [j for j in self._jobs if not j.finished]
            limits = self.limits
            if len(self._jobs) >= limits.max_jobs:
                raise JobsFull(f"The server runs at most {limits.max_jobs} jobs at once (all users together, "
                               "queued ones included) and has no room for yours; please try again in a few minutes.")
            of_kind = sum(j.kind == job.kind for j in self._jobs)
            if of_kind >= limits.max_per_kind:
                label = KIND_LABELS.get(job.kind, job.kind)
                raise JobsFull(f"The server runs at most {limits.max_per_kind} {label} jobs at once (queued ones "
                               "included) and all are taken; please try again in a few minutes.")
            self._jobs.append(job)


_BOARD = JobBoard()


def job_board() -> JobBoard:
    """The process-wide board every `start_job` counts its job on."""
    return _BOARD


def set_job_limits(limits: JobLimits) -> None:
    """Bound the process-wide board (the app calls it with its settings)."""
    _BOARD.limits = limits.check()


def start_job(kind: str, fn: Callable[..., Any], *args: Any, slot: str | None = None, board: JobBoard | None = None,
              **kwargs: Any) -> Job:
    """Create, admit (`JobsFull` when the board is full) and start a `Job`.

    Args: see `Job` (`config`, `clock` and `runner` are the job's, the rest go to `fn`); `board` counts it
    (the process-wide one by default).
    """
    job = Job(kind, fn, *args, slot=slot, **kwargs)
    (board or _BOARD).admit(job)
    return job.start()
