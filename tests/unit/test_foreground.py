"""The foreground gate: background training parks between steps while a race or a benchmark runs."""

from __future__ import annotations

import threading

from studio.foreground import Foreground, in_foreground, pausable
from tests.waiting import wait_for_event, wait_until


def fake_training(steps: int, step_done: threading.Event, release_step: threading.Event):
    """A `tasc/`-style training function: reports progress after each step; each step waits for the test."""

    def train(*, on_progress=None, cancel=None):
        done = 0
        for _ in range(steps):
            release_step.wait(10)
            release_step.clear()
            done += 1
            step_done.set()
            if on_progress:
                on_progress(done)
            if cancel is not None and cancel.is_set():
                break
        return done

    return train


def test_a_trainer_parks_at_its_next_step_while_foreground_work_runs_and_resumes_after():
    gate = Foreground()
    step_done, release = threading.Event(), threading.Event()
    reports: list[int] = []
    result: list[int] = []
    train = pausable(fake_training(3, step_done, release), gate)
    t = threading.Thread(target=lambda: result.append(train(on_progress=reports.append)))
    t.start()
    entered = threading.Event()
    left = threading.Event()

    def race():
        with gate.running(settle_s=10):  # waits for the trainer to finish its step and park
            entered.set()
            left.wait(10)

    r = threading.Thread(target=race)
    r.start()
    assert not entered.wait(0.2), "the race started while the trainer was mid-step"
    release.set()  # step 1 ends: the trainer reports, then parks
    wait_for_event(entered, what="the race to enter once the trainer parked")
    assert reports == [1]
    step_done.clear()
    release.set()  # step 2 may start only after the race: the trainer stays parked
    assert not step_done.wait(0.3) and reports == [1] and gate._parked == 1
    left.set()
    r.join(10)
    wait_until(lambda: reports == [1, 2], what="step 2 after the race")
    release.set()
    t.join(10)
    assert not t.is_alive() and result == [3] and reports == [1, 2, 3]


def test_a_cancelled_trainer_does_not_stay_parked():
    gate = Foreground()
    cancel = threading.Event()
    step_done, release = threading.Event(), threading.Event()
    train = pausable(fake_training(5, step_done, release), gate)
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(train(cancel=cancel)))
    t.start()
    with gate.running(settle_s=0.1):  # the trainer is mid-step: give up waiting quickly
        release.set()
        wait_until(lambda: gate._parked == 1, what="the trainer to park")
        cancel.set()  # Stop while parked: it wakes, and its loop stops after reporting
        t.join(10)
    assert not t.is_alive() and result == [1]


def test_foreground_work_without_trainers_does_not_wait_and_in_foreground_marks_it():
    gate = Foreground()
    with gate.running(settle_s=5) as waited:
        assert waited < 1.0 and gate.busy
    assert not gate.busy
    seen: list[bool] = []
    in_foreground(lambda: seen.append(gate.busy), gate)()
    assert seen == [True] and not gate.busy
    assert gate.pause_point() == 0.0  # nothing in the foreground: no pause
