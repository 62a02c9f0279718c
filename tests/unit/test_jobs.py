"""Background jobs: progress kept, results, cancel, failures with nothing lost, process-wide slots."""

from __future__ import annotations

import threading
import time

import pytest

from tasc.errors import Cancelled, CorpusError
from tasc.jobs import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Job, JobConfig, set_slots, start_job
from tasc.progress import Progress, check_cancel


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
    job = start_job("count", counting, 5)
    assert job.wait(10)
    assert job.status == DONE and job.result == {"counted": 5} and job.error is None
    assert [e.done for e in job.events] == [1, 2, 3, 4, 5]
    assert job.latest.metrics["loss"] == pytest.approx(0.2)
    assert job.elapsed_s() >= 0 and job.finished


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
    while not job.events:
        time.sleep(0.005)
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
    job.wait(5)
    assert job.status == CANCELLED and "checkpoint" in job.error


def test_events_are_bounded():
    job = Job("count", counting, 300, config=JobConfig(max_events=100)).start()
    job.wait(10)
    events = job.events
    assert len(events) <= 100
    assert events[-1].done == 300  # the latest is never thinned away


def test_slot_queues_a_second_job_until_the_first_ends():
    set_slots("test-slot", 1)
    gate = threading.Event()

    def blocker(*, on_progress, cancel):
        gate.wait(10)
        return "first"

    first = start_job("a", blocker, slot="test-slot")
    while first.status != RUNNING:
        time.sleep(0.005)
    second = start_job("b", counting, 1, slot="test-slot")
    time.sleep(0.3)
    assert second.status == QUEUED
    gate.set()
    assert first.wait(5) and second.wait(5)
    assert (first.result, second.status) == ("first", DONE)


def test_cancel_while_queued_never_runs():
    set_slots("test-slot-2", 1)
    gate = threading.Event()
    first = start_job("a", lambda *, on_progress, cancel: gate.wait(10), slot="test-slot-2")
    ran = []
    second = start_job("b", lambda *, on_progress, cancel: ran.append(1), slot="test-slot-2")
    second.cancel()
    assert second.wait(5) and second.status == CANCELLED and ran == []
    gate.set()
    first.wait(5)


def test_set_slots_rejects_zero():
    with pytest.raises(ValueError, match="at least 1"):
        set_slots("x", 0)
