"""The app's one thread of tensor math: urgent calls, queued jobs, and urgent work served by a parked trainer."""

from __future__ import annotations

import threading

import pytest

from studio.foreground import Foreground, pausable
from studio.jobs import CANCELLED, DONE, Job
from studio.model_thread import ModelThread
from tasc.core.errors import Cancelled
from tests.waiting import wait_for_event, wait_until


def test_call_runs_on_the_one_model_thread_and_returns_or_raises():
    mt = ModelThread("test-model")
    names = {mt.call(lambda: threading.current_thread().name) for _ in range(3)}
    assert names == {"test-model"}
    assert mt.call(lambda a, b=0: a + b, 2, b=3) == 5
    with pytest.raises(ZeroDivisionError):
        mt.call(lambda: 1 / 0)
    # from the model thread itself a call runs inline (no deadlock)
    assert mt.call(lambda: mt.call(lambda: threading.current_thread().name)) == "test-model"


def test_urgent_work_goes_before_queued_jobs():
    mt = ModelThread("test-order")
    gate, order = threading.Event(), []
    blocker = threading.Thread(target=mt.run_job, args=(lambda: gate.wait(10),))
    blocker.start()
    wait_until(lambda: mt._thread is not None and not mt._jobs, what="the first job to start")
    job = threading.Thread(target=mt.run_job, args=(lambda: order.append("job"),))
    job.start()
    wait_until(lambda: len(mt._jobs) == 1, what="the second job to queue")
    urgent = threading.Thread(target=mt.call, args=(lambda: order.append("urgent"),))
    urgent.start()
    wait_until(lambda: len(mt._urgent) == 1, what="the urgent call to queue")
    gate.set()
    for t in (blocker, job, urgent):
        t.join(10)
    assert order == ["urgent", "job"]


def test_a_job_cancelled_while_queued_never_runs_and_on_start_marks_the_start():
    mt = ModelThread("test-cancel")
    gate, ran, started = threading.Event(), [], []
    blocker = threading.Thread(target=mt.run_job, args=(lambda: gate.wait(10),))
    blocker.start()
    wait_until(lambda: mt._thread is not None and not mt._jobs, what="the first job to start")
    cancel = threading.Event()
    errors: list[BaseException] = []

    def queued():
        try:
            mt.run_job(lambda: ran.append(1), cancel=cancel, on_start=lambda: started.append(1))
        except Cancelled as exc:
            errors.append(exc)

    t = threading.Thread(target=queued)
    t.start()
    wait_until(lambda: len(mt._jobs) == 1, what="the job to queue")
    cancel.set()
    t.join(10)
    gate.set()
    blocker.join(10)
    assert len(errors) == 1 and not ran and not started and not mt._jobs
    assert mt.run_job(lambda: "ok", on_start=lambda: started.append(2)) == "ok" and started == [2]


def test_a_trainer_on_the_model_thread_serves_a_race_while_parked():
    """A fine-tune holds the model thread for minutes; a race's steps (urgent calls) run at its pause points,
    and it resumes once the race has left the foreground."""
    mt = ModelThread("test-park")
    gate = Foreground(mt)
    release, step_done, steps = threading.Event(), threading.Event(), []

    def train(*, on_progress=None, cancel=None):
        for i in range(3):
            release.wait(10)
            release.clear()
            steps.append(threading.current_thread().name)
            step_done.set()
            on_progress(i)
        return len(steps)

    job = Job("finetune", pausable(train, gate), runner=mt.run_job).start()
    wait_until(lambda: job.status == "running", what="the trainer to start on the model thread")
    served: list[str] = []
    entered, left = threading.Event(), threading.Event()

    def race():
        with gate.running(settle_s=10):  # waits for the trainer to end its step and park
            entered.set()
            for _ in range(3):  # three chunks of a race, each run on the model thread by the parked trainer
                served.append(mt.call(lambda: threading.current_thread().name))
            left.wait(10)

    r = threading.Thread(target=race)
    r.start()
    assert not entered.wait(0.2), "the race started while the trainer was mid-step"
    release.set()  # step 1 ends: the trainer reports, parks, and serves the race
    wait_until(lambda: len(served) == 3, what="the race's chunks to run")
    step_done.clear()
    release.set()  # step 2 may not start while the race is in the foreground
    assert not step_done.wait(0.3) and steps == ["test-park"]
    left.set()
    r.join(10)
    wait_for_event(step_done, what="step 2 after the race")
    release.set()
    assert job.wait(10) and job.status == DONE and job.result == 3
    assert served == ["test-park"] * 3 and steps == ["test-park"] * 3


def test_a_job_with_a_runner_shows_queued_until_the_model_thread_takes_it():
    mt = ModelThread("test-queued")
    gate = threading.Event()
    first = Job("finetune", lambda *, on_progress, cancel: gate.wait(10), runner=mt.run_job).start()
    wait_until(lambda: first.status == "running", what="the first job to run")
    second = Job("finetune", lambda *, on_progress, cancel: "done", runner=mt.run_job).start()
    wait_until(lambda: len(mt._jobs) == 1, what="the second job to queue on the model thread")
    assert second.status == "queued" and second.waiting_for_runner and not first.waiting_for_runner
    from studio.tab_finetune import queued_text

    assert "another job" in queued_text(second, "fine-tune")
    second.cancel()
    assert second.wait(10) and second.status == CANCELLED
    gate.set()
    assert first.wait(10) and first.status == DONE


def test_a_long_job_serving_at_its_reports_lets_urgent_work_through_between_steps():
    """A benchmark holds the model thread for minutes; another visitor's race runs between two of its prompts."""
    mt = ModelThread("test-serving")
    release, started, reports, order = threading.Event(), threading.Event(), [], []

    def bench(*, on_progress=None):
        started.set()
        for i in range(3):
            release.wait(10)
            release.clear()
            order.append(f"prompt {i}")
            on_progress(i)
        return "report"

    result: list[str] = []
    t = threading.Thread(target=lambda: result.append(mt.run_job(
        lambda: mt.serving_at_reports(bench, linger_s=0.05)(on_progress=reports.append), urgent=True)))
    t.start()
    # The benchmark itself says it runs: peeking at the queue could see it empty before the benchmark was
    # even queued, and then take the benchmark for the queued race.
    assert started.wait(10), "the benchmark did not start"
    race = threading.Thread(target=lambda: order.append(mt.call(lambda: "race chunk")))
    race.start()
    wait_until(lambda: len(mt._urgent) == 1, what="the race to queue")
    release.set()  # prompt 0 ends: its report runs the race's chunk before prompt 1
    race.join(10)
    assert order == ["prompt 0", "race chunk"]
    release.set()
    wait_until(lambda: len(order) == 3, what="prompt 1")
    release.set()
    t.join(10)
    assert result == ["report"] and reports == [0, 1, 2] and order[-1] == "prompt 2"


def test_a_forked_child_starts_its_own_model_thread_with_nothing_of_the_parents_queued():
    """ZeroGPU runs a handler in a forked process: the model thread there is new and its queues empty."""
    import os

    mt = ModelThread("test-fork")
    assert mt.call(lambda: 1) == 1  # the parent's thread is running
    mt._jobs.append(object())  # as if a job were queued in the parent at the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running pytest's teardown
        ok = not mt._jobs and mt._thread is None and mt.call(lambda: threading.current_thread().name) == "test-fork"
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    mt._jobs.clear()
    assert answer == b"1"
