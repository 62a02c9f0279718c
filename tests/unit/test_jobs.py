"""Background jobs: progress kept, results, cancel, failures with nothing lost, process-wide slots."""

from __future__ import annotations

import threading
import time

import pytest

from studio.jobs import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Job, JobConfig, set_slots, start_job
from tasc.core.errors import Cancelled, CorpusError
from tasc.core.progress import Progress, check_cancel
from tests.waiting import FakeClock, wait_for_event, wait_until


def counting(n, *, on_progress, cancel, pause=0.0, fail_at=None, exc=RuntimeError):
    """A job-shaped function: n steps with progress, cancellable, optionally failing."""
    for i in range(n):
        check_cancel(cancel)
        if fail_at == i:
            raise exc(f"broke at {i}")
        time.sleep(pause)
        on_progress(Progress("count", i + 1, n, 0.01 * (i + 1), {"loss": 1.0 / (i + 1)}))
    return {"counted": n}


def test_job_runs_and_keeps_every_event():
    clock = FakeClock(1000.0)

    def counting_for_3_s(n, **kwargs):
        clock.advance(3.0)  # on the job's clock, the work takes 3 s
        return counting(n, **kwargs)

    job = start_job("count", counting_for_3_s, 5, clock=clock)
    assert job.wait(10)
    assert job.status == DONE and job.result == {"counted": 5} and job.error is None
    assert [e.done for e in job.events] == [1, 2, 3, 4, 5]
    assert job.latest.metrics["loss"] == pytest.approx(0.2)
    assert (job.created_at, job.started_at, job.finished_at) == (1000.0, 1000.0, 1003.0) and job.finished
    clock.advance(60.0)
    assert job.elapsed_s() == 3.0  # a finished job's time stands still


def test_follow_yields_until_finished_and_ends_with_the_final_state():
    job = start_job("count", counting, 4, pause=0.02)
    seen = [j.status for j in job.follow(poll_s=0.01)]
    assert seen[-1] == DONE and all(s in (QUEUED, RUNNING, DONE) for s in seen)
    assert len(job.events) == 4


def test_follow_throttles_a_fast_job_but_not_its_end():
    """Thousands of events a second must reach a browser as a few updates; the end arrives at once."""
    job = start_job("count", counting, 20_000, pause=0.00005)
    t0 = time.perf_counter()
    seen = [j.status for j in job.follow(poll_s=0.01, min_interval_s=0.25)]
    wall = time.perf_counter() - t0
    assert seen[-1] == DONE and job.latest.done == 20_000
    assert len(seen) <= wall / 0.25 + 3  # one yield per interval at most, plus the first and the last


def test_cancel_stops_a_running_job():
    job = start_job("count", counting, 10_000, pause=0.005)
    wait_until(lambda: job.events, what="the job's first progress event")
    job.cancel()
    assert job.wait(10)
    assert job.status == CANCELLED and "cancelled" in job.error
    assert 0 < len(job.events) < 10_000  # progress made before the cancel is kept


@pytest.mark.parametrize("exc, message", [(CorpusError, "broke at 2"), (KeyError, "count failed: KeyError")])
def test_failure_keeps_progress_and_a_message(exc, message, caplog):
    job = start_job("count", counting, 5, fail_at=2, exc=exc)
    assert job.wait(10)
    assert job.status == FAILED and message in job.error
    assert [e.done for e in job.events] == [1, 2]
    if exc is KeyError:  # an unexpected error's traceback goes to the log
        assert "Traceback" in caplog.text


def test_cancelled_exception_from_the_function_means_cancelled():
    def fn(*, on_progress, cancel):
        raise Cancelled("stopped at step 3; checkpoint saved")

    job = start_job("x", fn)
    assert job.wait(5)
    assert job.status == CANCELLED and "checkpoint" in job.error


def test_events_are_bounded():
    job = Job("count", counting, 300, config=JobConfig(max_events=100)).start()
    assert job.wait(10)
    events = job.events
    assert len(events) <= 100
    assert events[-1].done == 300  # the latest is never thinned away


class _NoticedEvent(threading.Event):
    """A cancel event that tells the test when the job first looked at it."""

    def __init__(self) -> None:
        super().__init__()
        self.looked = threading.Event()

    def is_set(self) -> bool:
        self.looked.set()
        return super().is_set()


def _blocker(started: threading.Event, gate: threading.Event, result: str = "first"):
    """A job function that says it runs, then holds its slot until the test opens `gate`."""

    def fn(*, on_progress, cancel):
        started.set()
        if not gate.wait(10):
            raise RuntimeError("the test never opened the gate")
        return result

    return fn


def test_slot_queues_a_second_job_until_the_first_ends():
    set_slots("test-slot", 1)
    clock = FakeClock(1000.0)
    started, gate = threading.Event(), threading.Event()
    first = start_job("a", _blocker(started, gate), slot="test-slot", clock=clock)
    wait_for_event(started, what="the first job to start running")
    assert first.status == RUNNING
    gate_open_when_run = []  # whether the first job had let go of the slot when the second one ran
    second = Job("b", lambda *, on_progress, cancel: gate_open_when_run.append(gate.is_set()) or "second",
                 slot="test-slot", config=JobConfig(poll_s=0.01), clock=clock)
    second.cancel_event = _NoticedEvent()
    second.start()
    # A queued job looks at its cancel event each time its wait for the slot times out: once it
    # has, it has tried the slot while the first job (blocked on our gate) held it.
    wait_for_event(second.cancel_event.looked, what="the second job to find the slot taken")
    assert second.status == QUEUED and gate_open_when_run == [] and second.started_at is None
    clock.advance(4.0)
    assert (first.elapsed_s(), second.elapsed_s()) == (4.0, 0.0)  # running time counts, queued time does not
    gate.set()
    assert first.wait(5) and second.wait(5)
    assert (first.result, second.status, second.result) == ("first", DONE, "second")
    assert gate_open_when_run == [True]  # it ran only after the first job let go of the slot


def test_cancel_while_queued_never_runs():
    set_slots("test-slot-2", 1)
    started, gate = threading.Event(), threading.Event()
    first = start_job("a", _blocker(started, gate), slot="test-slot-2")
    wait_for_event(started, what="the first job to take the slot")  # so the second one is surely queued
    ran = []
    second = start_job("b", lambda *, on_progress, cancel: ran.append(1), slot="test-slot-2")
    second.cancel()
    assert second.wait(5) and second.status == CANCELLED and ran == []
    assert second.error == "cancelled before it started" and second.started_at is None
    gate.set()
    assert first.wait(5) and first.status == DONE


def test_set_slots_rejects_zero():
    with pytest.raises(ValueError, match="at least 1"):
        set_slots("x", 0)
