"""One thread runs all of the app's tensor math: races, model loading, fine-tunes, benchmarks.

Why: PyTorch's CPU kernels run on an OpenMP team per calling thread, and GNU OpenMP spins only ~100
times (instead of ~300,000) before sleeping at every barrier as soon as more OpenMP threads are alive in
the process than there are cores (`gomp_throttled_spin_count_var`). On 2 cores, one Gradio worker
thread that had run a torch op beside the one that races was enough: every pass then paid a futex wake
per kernel and ran ~1.6x slower (22.7 ms against 37 ms for a SmolLM2-135M decode step; the cores half
idle). Gradio runs each handler on any of its worker threads, so which threads held a team, and so the
speed of a race, depended on what the page had done in the last seconds. Here every torch call of the
app goes to one long-lived thread, so the process holds one OpenMP team and it spins as it should.

Two queues: *urgent* work (what a visitor waits for: a race's steps, a model load, a benchmark) and
*jobs* (fine-tunes), which run one after another when no urgent work waits. A job that runs for
minutes lets urgent work through between its steps: `studio.foreground`'s pause points call
`serve_urgent`, so a race still pauses a fine-tune, now on the same thread.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from tasc.core.errors import Cancelled


@dataclass(eq=False)  # found in a queue by identity
class _Task:
    """One call waiting for (or running on) the model thread."""

    fn: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    started: bool = False
    result: Any = None
    error: BaseException | None = None

    def run(self) -> None:
        """Call it, keeping its result or exception for the caller."""
        self.started = True
        try:
            self.result = self.fn()
        except BaseException as exc:  # handed to the waiting caller, who raises it
            self.error = exc
        finally:
            self.done.set()


class ModelThread:
    """A daemon thread with an urgent queue and a job queue; started on first use (in a forked child too)."""

    def __init__(self, name: str = "tasc-model") -> None:
        self.name = name
        self._reset()
        if hasattr(os, "register_at_fork"):
            # a forked child (ZeroGPU's worker) has neither the parent's thread nor its waiting callers
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        """No thread, nothing queued (at creation, and in a forked child)."""
        self._cond = threading.Condition()
        self._urgent: deque[_Task] = deque()
        self._jobs: deque[_Task] = deque()
        self._thread: threading.Thread | None = None

    def on_thread(self) -> bool:
        """True when called from the model thread itself."""
        return self._thread is not None and threading.current_thread() is self._thread

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn(*args, **kwargs)` on the model thread as urgent work and return its result (or raise its error).

        From the model thread itself it just calls `fn` (a job's own model loads, a race inside a pause point).
        """
        if self.on_thread():
            return fn(*args, **kwargs)
        task = _Task(lambda: fn(*args, **kwargs))
        self._submit(self._urgent, task)
        return self._wait(task, None, self._urgent)

    def run_job(self, fn: Callable[[], Any], cancel: threading.Event | None = None,
                on_start: Callable[[], None] | None = None, urgent: bool = False) -> Any:
        """Run a long function on the model thread after the work queued before it; its result or error.

        `on_start` is called on the model thread when it starts (a job shows "queued" until then);
        `cancel` set while it is still queued takes it off the queue (`Cancelled`); `urgent` puts it
        with the urgent work (a benchmark, which pauses fine-tunes as a race does).
        """
        def started() -> Any:
            if on_start is not None:
                on_start()
            return fn()

        if self.on_thread():
            return started()
        queue = self._urgent if urgent else self._jobs
        task = _Task(started)
        self._submit(queue, task)
        return self._wait(task, cancel, queue)

    def has_urgent(self) -> bool:
        """True while urgent work waits."""
        with self._cond:
            return bool(self._urgent)

    def serve_urgent(self, wait_s: float = 0.0, linger_s: float = 0.0) -> int:
        """On the model thread: run the urgent work waiting (waiting up to `wait_s` for some); how many ran.

        `linger_s`: after running some, wait that long for more before returning (a race sends its next
        chunk after updating its page). Elsewhere it does nothing (returns 0): a pause point off the model
        thread just waits.
        """
        if not self.on_thread():
            return 0
        ran = 0
        while True:
            with self._cond:
                if not self._urgent:
                    wait = linger_s if ran else wait_s
                    if wait > 0:
                        self._cond.wait(wait)
                if not self._urgent:
                    return ran
                task = self._urgent.popleft()
            task.run()
            ran += 1

    def serving_at_reports(self, fn: Callable[..., Any], linger_s: float = 1.0) -> Callable[..., Any]:
        """`fn` (a long function taking `on_progress`, run on this thread) that runs the urgent work waiting
        at each of its progress reports: a benchmark lets other visitors' races through between two prompts,
        outside its timed answers, instead of holding the thread for minutes."""

        def run(*args: Any, on_progress: Callable[[Any], None] | None = None, **kwargs: Any) -> Any:
            def report(progress: Any) -> None:
                if on_progress is not None:
                    on_progress(progress)
                self.serve_urgent(linger_s=linger_s)

            return fn(*args, on_progress=report, **kwargs)

        return run

    # -- internals --------------------------------------------------------------------------
    def _submit(self, queue: deque[_Task], task: _Task) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            queue.append(task)
            self._cond.notify_all()

    def _wait(self, task: _Task, cancel: threading.Event | None, queue: deque[_Task]) -> Any:
        while not task.done.wait(0.25 if cancel is not None else None):
            if cancel is not None and cancel.is_set():
                with self._cond:
                    if not task.started and task in queue:
                        queue.remove(task)
                        raise Cancelled("cancelled before it started")
        if task.error is not None:
            raise task.error
        return task.result

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._urgent and not self._jobs:
                    self._cond.wait()
                task = (self._urgent or self._jobs).popleft()
            task.run()


MODEL_THREAD = ModelThread()  # the process's one thread of tensor math
