"""Server-wide job limits: a bounded board of queued + running jobs, queue positions, jobs tied to their client.

No sleeps: jobs block on events the test opens, and their clocks are fake.
"""

from __future__ import annotations

import threading

import pytest

from studio import app_state
from studio.jobs import CANCELLED, DONE, QUEUED, RUNNING, Job, JobBoard, JobConfig, JobLimits, JobsFull, set_slots, start_job
from studio.tab_finetune import finetune_stream, queued_text
from studio.tab_vocab import mine_job, mined_rounds
from tasc.core.errors import Cancelled
from tasc.ft.ngrams import MiningConfig
from tests.unit.test_ngrams import CharSegmenter
from tests.waiting import FakeClock, wait_for_event


def gated(gate: threading.Event, started: threading.Event | None = None):
    """A job function that runs until the test opens `gate` (or the job is cancelled)."""

    def fn(*, on_progress, cancel):
        if started is not None:
            started.set()
        while not gate.wait(0.01):
            if cancel.is_set():
                return "cancelled"
            continue
        return "done"

    return fn


# --- the board: a bound on queued + running jobs of the whole server ---------------------------

def test_the_board_bounds_jobs_per_kind_and_in_all():
    board = JobBoard(JobLimits(max_jobs=3, max_per_kind=2))
    gate = threading.Event()
    clock = FakeClock()
    a = start_job("finetune", gated(gate), board=board, clock=clock)
    b = start_job("finetune", gated(gate), board=board, clock=clock)
    with pytest.raises(JobsFull, match="at most 2 fine-tune jobs at once .* try again in a few minutes"):
        start_job("finetune", gated(gate), board=board, clock=clock)
    c = start_job("mine", gated(gate), board=board, clock=clock)
    with pytest.raises(JobsFull, match="at most 3 jobs at once .*all users together"):
        start_job("bench", gated(gate), board=board, clock=clock)
    assert {j.id for j in board.live()} == {a.id, b.id, c.id} and len(board.live("finetune")) == 2
    gate.set()
    assert all(j.wait(10) for j in (a, b, c))
    assert board.live() == []  # finished jobs leave by themselves
    d = start_job("bench", gated(gate), board=board, clock=clock)
    assert d.wait(10) and d.status == DONE


def test_a_cancelled_job_frees_its_place_once_it_has_stopped():
    board = JobBoard(JobLimits(max_jobs=1, max_per_kind=1))
    gate = threading.Event()
    first = start_job("finetune", gated(gate), board=board)
    with pytest.raises(JobsFull):
        start_job("finetune", gated(gate), board=board)
    first.cancel()  # its client left
    assert first.wait(10)
    second = start_job("finetune", gated(gate), board=board)
    gate.set()
    assert second.wait(10) and second.status == DONE


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        JobBoard(JobLimits(max_jobs=0))


# --- the queue: first come first served, and each queued job knows its place ------------------

def test_queued_jobs_know_how_many_are_ahead_and_run_in_order():
    set_slots("test-queue", 1)
    clock, gate, started = FakeClock(), threading.Event(), threading.Event()
    board = JobBoard(JobLimits(max_jobs=10, max_per_kind=10))
    order: list[str] = []

    def recording(name: str):
        def fn(*, on_progress, cancel):
            order.append(name)
            return name
        return fn

    first = start_job("finetune", gated(gate, started), slot="test-queue", board=board, clock=clock)
    wait_for_event(started, what="the first job to hold the slot")
    queued = [Job("finetune", recording(n), slot="test-queue", config=JobConfig(poll_s=0.01), clock=clock)
              for n in ("b", "c", "d")]
    for job in queued:
        board.admit(job)
        job.start()
    b, c, d = queued
    assert first.status == RUNNING and all(j.status == QUEUED for j in queued)
    assert (b.ahead(), c.ahead(), d.ahead()) == (1, 2, 3)  # the running one, then those queued earlier
    assert "**3 jobs ahead of yours**" in queued_text(d, "fine-tune")
    assert "**1 job ahead of yours**" in queued_text(b, "fine-tune")
    assert "one fine-tune runs at a time" in queued_text(d, "fine-tune")

    c.cancel()  # its client left while it waited
    assert c.wait(10) and c.status == CANCELLED and c.error == "cancelled before it started"
    assert d.ahead() == 2
    gate.set()
    assert all(j.wait(10) for j in (first, b, d))
    assert order == ["b", "d"] and first.ahead() == 0 and d.ahead() == 0


def test_a_slot_of_two_runs_two_and_queues_the_third():
    set_slots("test-queue-2", 2)
    gate = threading.Event()
    s1, s2 = threading.Event(), threading.Event()
    a = start_job("x", gated(gate, s1), slot="test-queue-2", board=JobBoard())
    b = start_job("x", gated(gate, s2), slot="test-queue-2", board=JobBoard())
    wait_for_event(s1, what="the first job to run")
    wait_for_event(s2, what="the second job to run beside it")
    c = start_job("x", gated(gate), slot="test-queue-2", board=JobBoard())
    assert c.status == QUEUED and c.ahead() == 2
    gate.set()
    assert all(j.wait(10) and j.status == DONE for j in (a, b, c))


# --- jobs tied to their client -----------------------------------------------------------------

def test_a_client_that_leaves_cancels_its_finetune():
    """Gradio closes the event's generator when the client goes: the job must stop (and save its checkpoint)."""
    gate = threading.Event()
    job = start_job("finetune", gated(gate), board=JobBoard())
    stream = finetune_stream(None, job, lambda *args, **kwargs: None)
    first = next(stream)
    assert first[0]  # a status line
    stream.close()  # the client hung up
    assert job.wait(10) and job.cancel_event.is_set()


def test_mining_reports_each_round_and_stops_when_cancelled():
    texts = ['{"a": "x"}', '{"a": "y"}', '{"a": "z"}'] * 20 + ['{"b": "x"}'] * 10
    seg = CharSegmenter("".join(texts))
    job = start_job("mine", mine_job, texts, seg, MiningConfig(budget=6, rounds=3), board=JobBoard())
    assert job.wait(10) and job.status == DONE
    rows = mined_rounds(job)
    assert [r["round"] for r in rows][:4] == [0, 1, 2, 3] and all("compression" in r for r in rows)
    assert job.result.tokens and job.latest.total == 3

    cancel, events = threading.Event(), []

    def on_progress(event):
        events.append(event)
        if event.done >= 1:
            cancel.set()  # Stop pressed, or the client left, during round 1

    with pytest.raises(Cancelled):
        mine_job(texts, CharSegmenter("".join(texts)), MiningConfig(budget=30, rounds=10), on_progress=on_progress,
                 cancel=cancel)
    assert max(e.done for e in events) == 1


# --- the app's settings --------------------------------------------------------------------------

def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("TASC_APP_MAX_SESSIONS", "10")
    monkeypatch.setenv("TASC_APP_SESSION_TTL_HOURS", "0.5")
    monkeypatch.setenv("TASC_APP_NEW_SESSIONS_PER_MINUTE", "0")
    monkeypatch.setenv("TASC_APP_MAX_JOBS", "3")
    monkeypatch.setenv("TASC_APP_MAX_JOBS_PER_KIND", "2")
    config = app_state.session_config()
    assert (config.max_sessions, config.ttl_s, config.new_per_minute) == (10, 1800.0, 0)
    assert app_state.job_limits(config.max_sessions) == JobLimits(max_jobs=3, max_per_kind=2)
    monkeypatch.setenv("TASC_APP_MAX_JOBS", "50")  # never as many live jobs as sessions: jobs alone cannot fill the store
    assert app_state.job_limits(10).max_jobs == 9
    monkeypatch.setenv("TASC_APP_MAX_SESSIONS", "many")
    with pytest.raises(ValueError, match="TASC_APP_MAX_SESSIONS must be a number"):
        app_state.session_config()


def test_defaults_without_settings(monkeypatch):
    for name in ("TASC_APP_MAX_SESSIONS", "TASC_APP_SESSION_TTL_HOURS", "TASC_APP_NEW_SESSIONS_PER_MINUTE",
                 "TASC_APP_MAX_JOBS", "TASC_APP_MAX_JOBS_PER_KIND"):
        monkeypatch.delenv(name, raising=False)
    config = app_state.session_config()
    assert (config.max_sessions, config.ttl_s, config.new_per_minute) == (64, 4 * 3600.0, 30)
    assert app_state.job_limits(64) == JobLimits(max_jobs=8, max_per_kind=4)


def test_client_address_of_a_request():
    import gradio as gr

    assert app_state.client_address(None) is None
    assert app_state.client_address(gr.Request(client={"host": "203.0.113.7", "port": 1})) == "203.0.113.7"
    assert app_state.client_address(gr.Request()) is None


def test_mining_has_its_own_queue_and_the_tabs_stop_button_stops_it():
    import app

    demo = app.build_demo()
    by_name = {d.api_name: d for d in demo.fns.values()}
    assert (by_name["mine"].concurrency_id, by_name["mine"].concurrency_limit) == ("mine", 1)
    cancelled = {demo.fns[i].api_name for d in demo.fns.values() if d.cancels for i in d.cancels}
    assert {"mine", "enrich", "finetune", "finetune_resume", "train_compare"} <= cancelled
