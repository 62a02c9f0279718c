"""Foreground work first: background training pauses between its steps while an Arena race or a benchmark runs.

On a small CPU machine a race timed beside a fine-tune measures the fight for the cores, not the
method (two PyTorch thread pools on 2 cores slow each other many times over). So a race or a
benchmark enters `Foreground.running()`, which waits (boundedly) until every background trainer has
parked at the end of its current step; trainers call `pause_point` after each step (`pausable` wraps
any `tasc/` training function so its progress callback does) and wait there until no foreground work
is left, or until they are cancelled. A trainer parked on the app's model thread (`studio.model_thread`)
runs the urgent work queued there meanwhile (the race's steps, a model load): that is how a race and a
fine-tune share the one thread of tensor math.
"""

from __future__ import annotations

import functools
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from studio.model_thread import MODEL_THREAD, ModelThread

if TYPE_CHECKING:
    from studio.jobs import Job

SETTLE_S = 30.0  # longest a race waits for trainers to finish their step (a CPU step of batch 8 takes seconds)


class Foreground:
    """Counts foreground work and parked background trainers."""

    def __init__(self, worker: ModelThread | None = None) -> None:
        self.worker = worker  # the thread whose urgent work a parked trainer runs
        self._cond = threading.Condition()
        self._active = 0  # races and benchmarks running
        self._trainers = 0  # background trainers running
        self._parked = 0  # of those, the ones waiting at a pause point

    @contextmanager
    def running(self, settle_s: float = SETTLE_S) -> Iterator[float]:
        """Mark foreground work; yields the seconds spent waiting for trainers to park (at most `settle_s`)."""
        t0 = time.perf_counter()
        with self._cond:
            self._active += 1
            self._cond.wait_for(lambda: self._parked >= self._trainers, timeout=settle_s)
        try:
            yield time.perf_counter() - t0
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    @contextmanager
    def trainer(self) -> Iterator[None]:
        """Mark a background trainer for as long as it runs."""
        with self._cond:
            self._trainers += 1
        try:
            yield
        finally:
            with self._cond:
                self._trainers -= 1
                self._cond.notify_all()

    def pause_point(self, cancel: threading.Event | None = None, poll_s: float = 0.5) -> float:
        """Between two training steps: stay here while foreground work runs or urgent work waits for the
        model thread (running that work, when this is the model thread), or until `cancel`; seconds paused."""
        worker = self.worker if self.worker is not None and self.worker.on_thread() else None
        with self._cond:
            if not self._must_park(worker):
                return 0.0
            t0 = time.perf_counter()
            self._parked += 1
            self._cond.notify_all()
        try:
            while not (cancel is not None and cancel.is_set()):
                if worker is not None:
                    worker.serve_urgent(wait_s=0.05)  # returns at once when work arrives
                with self._cond:
                    if not self._must_park(worker):
                        break
                    if worker is None:
                        self._cond.wait(poll_s)
        finally:
            with self._cond:
                self._parked -= 1
        return time.perf_counter() - t0

    def _must_park(self, worker: ModelThread | None) -> bool:
        """Foreground work runs, or (on the model thread) urgent work waits there. Called with the lock held."""
        return self._active > 0 or (worker is not None and worker.has_urgent())

    @property
    def busy(self) -> bool:
        """True while foreground work runs."""
        with self._cond:
            return self._active > 0


FOREGROUND = Foreground(MODEL_THREAD)  # the process's one gate


def pausable(fn: Callable[..., Any], gate: Foreground = FOREGROUND) -> Callable[..., Any]:
    """`fn` (a `tasc/` training function taking `on_progress` and `cancel`) that pauses at each progress report
    while the gate has foreground work."""

    @functools.wraps(fn)
    def run(*args: Any, on_progress: Callable[[Any], None] | None = None, cancel: threading.Event | None = None,
            **kwargs: Any) -> Any:
        def report(progress: Any) -> None:
            if on_progress is not None:
                on_progress(progress)
            gate.pause_point(cancel)

        with gate.trainer():
            return fn(*args, on_progress=report, cancel=cancel, **kwargs)

    return run


def in_foreground(fn: Callable[..., Any], gate: Foreground = FOREGROUND) -> Callable[..., Any]:
    """`fn` run as foreground work (a benchmark job): background trainers park while it runs."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with gate.running():
            return fn(*args, **kwargs)

    return run


def start_trainer(kind: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Job:
    """Start a training job of the app (`studio.jobs.start_job`): `fn` pausable, run on the model thread."""
    from studio.jobs import start_job  # looked up when called, as every handler does

    return start_job(kind, pausable(fn), *args, runner=MODEL_THREAD.run_job, **kwargs)
