"""The background task model, end to end on the tiny model: a corpus with inputs starts one shared,
cached LoRA fine-tune; once ready the Arena answers with it by default; nobody left using a run stops it."""

from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import Client

from studio import task_model
from studio.jobs import job_board
from tests.app_harness import running_app
from tests.panes import pane_text
from tests.waiting import wait_until

PROMPT = "city[Oslo], condition[snow], high[2], low[-4]"


@pytest.fixture(scope="module")
def served(tiny_model_dir, tmp_path_factory):
    """The app on the tiny model with the task model on."""
    with running_app(tiny_model_dir, tmp_path_factory.mktemp("app"), TASC_APP_TASK_MODEL="auto") as ra:
        yield ra


def runs() -> list[task_model.TaskModel]:
    with task_model._LOCK:
        return list(task_model._RUNS.values())


def arena(client, model=None):
    """The Arena's final outputs for PROMPT with TASC-spec."""
    return client.submit(PROMPT, "tasc-spec", model, 24, 2, api_name="/arena").result()


def test_one_shared_run_trains_and_then_the_arena_answers_with_it(served):
    a, b = Client(served.url, verbose=False), Client(served.url, verbose=False)
    a.predict("weather_reports.jsonl", api_name="/use_example")
    b.predict("weather_reports.jsonl", api_name="/use_example")  # the same rows: joins, does not start another
    assert len(runs()) == 1 and len(runs()[0].users) == 2
    assert len(job_board().live(task_model.KIND)) <= 1
    before = arena(a)  # meanwhile the base model answers
    assert "the base model, shown examples" in before[4]
    tm = wait_until(lambda: runs()[0] if runs()[0].ready else None, timeout_s=240, what="the task model to be ready")
    wait_until(lambda: tm.job is not None and tm.job.finished, what="the job to wind up")
    assert tm.job.status == "done" and tm.path.is_relative_to(served.cache)
    after = arena(a)  # no model named: the task model, on both panes
    assert "Both panes: the task model" in after[4] and "identical output ✓" in after[4]
    assert pane_text(after[0]) == pane_text(after[2])
    based = arena(a, "base")  # the base model stays on offer
    assert "the base model, shown examples" in based[4]
    with pytest.raises(Exception, match="Unknown model"):
        arena(a, "no-such-model")


def test_a_finished_task_model_is_found_on_disk_and_a_run_nobody_uses_stops(served):
    c = Client(served.url, verbose=False)
    c.predict("weather_reports.jsonl", api_name="/use_example")  # trained by the test before: ready at once
    ready = [tm for tm in runs() if tm.ready]
    assert ready and all(tm.job is None or tm.job.status == "done" for tm in ready)
    c.predict("support_tickets.jsonl", api_name="/use_example")  # starts a run for the other corpus
    support = wait_until(lambda: [tm for tm in runs() if not tm.ready and tm.job is not None], what="a second run")[0]
    assert len(support.users) == 1
    c.predict("weather_reports.jsonl", api_name="/use_example")  # its only user leaves it: it stops
    wait_until(lambda: support.job.finished, timeout_s=60, what="the unused run to stop")
    assert support.job.status in ("cancelled", "done")


def test_asking_again_for_the_same_corpus_neither_restarts_nor_stops_its_run(served):
    d = Client(served.url, verbose=False)
    d.predict("support_tickets.jsonl", api_name="/use_example")
    run = wait_until(lambda: [tm for tm in runs() if not tm.ready and tm.job is not None and not tm.job.finished],
                     what="a live run")[0]
    job = run.job
    status, *_ = d.predict(None, api_name="/task_model_train")  # its only user asks again: same run goes on
    assert run.job is job and not job.cancel_event.is_set() and "Task model" in status
    assert "No task model" not in d.predict(api_name="/task_model_stop")  # Stop: the run saves and stops
    wait_until(lambda: job.finished, timeout_s=60, what="the stopped run to end")
    d.predict(None, api_name="/task_model_train")  # Train again: it continues from its checkpoint
    assert run.job is not job and run.job is not None


def test_the_task_model_folder_stays_bounded(tmp_path, monkeypatch):
    """Unused task models beyond MAX_ON_DISK are deleted oldest first; one in use never is."""
    import os

    root = tmp_path / task_model.FOLDER
    folders = []
    for i in range(5):
        f = root / f"m{i}"
        f.mkdir(parents=True)
        (f / "tasc.json").write_text("{}")
        os.utime(f, (1000 + i, 1000 + i))
        folders.append(f)
    in_use = task_model.TaskModel("m0", folders[0], users={"someone"})
    monkeypatch.setitem(task_model._RUNS, folders[0], in_use)
    keep = root / "new"
    with task_model._LOCK:
        task_model._prune(keep)
    left = sorted(p.name for p in root.iterdir())
    assert left == ["m0", "m3", "m4"]  # m0 is used; m1, m2 were the oldest unused


def test_the_status_line_names_the_loss_only_once_the_trainer_logged_one():
    from types import SimpleNamespace

    from tasc.core.progress import Progress

    job = SimpleNamespace(status="running", error=None, finished=False, latest=Progress("finetune", 3, 80, 6.0))
    session = SimpleNamespace(task_model=Path("/nowhere"))
    tm = task_model.TaskModel("k", Path("/nowhere"))
    tm.job = job
    with task_model._LOCK:
        task_model._RUNS[tm.path] = tm
    try:
        first = task_model.status(session)
        job.latest = Progress("finetune", 5, 80, 10.0, metrics={"loss": 1.25})
        later = task_model.status(session)
    finally:
        with task_model._LOCK:
            task_model._RUNS.pop(tm.path, None)
    assert "step 3/80" in first and "loss" not in first and "nan" not in first
    assert "step 5/80" in later and "loss 1.250" in later
