"""Hostile visitors through the HTTP API (loopback, tiny model): one client must not lock out, evict or exhaust
everyone else.

- case 1: clients that start a long fine-tune and hang up after its first update. Each one's job must stop
  (it keeps a checkpoint) instead of piling up until the store is full of "busy" sessions; a queued job
  says how many are ahead of it; new visitors still get in.
- case 2: a flood of new sessions from one address. It is rate-limited, and evicts only sessions without
  work: the victim's fine-tuned model survives; a session that was evicted, or expired, is told so.
- case 6: mining runs as a job with progress per round; a client that hangs up, or cancels, stops it.

Each test ends with an ordinary Arena request that must still succeed. Limits come from the app's
environment settings, small so that the tests are quick.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Callable

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

import app
from studio import jobs
from tests.app_harness import running_app, slow_training
from tests.waiting import wait_until

EXAMPLE = "weather_reports.jsonl"
PROMPT = "city[Oslo], condition[snow], high[2], low[-4]"
LORA = "LoRA (fast)"


@pytest.fixture
def started_jobs(monkeypatch) -> list:
    """Every job the app starts during the test, in order (the handlers import `start_job` when they run)."""
    started: list = []
    start_job = jobs.start_job

    def recording(*args, **kwargs):
        job = start_job(*args, **kwargs)
        started.append(job)
        return job

    monkeypatch.setattr(jobs, "start_job", recording)
    return started


def call(url: str, api_name: str, data: list, session: str,
         hang_up: Callable[[str, str], bool] | None = None) -> list[tuple[str, str]]:
    """One raw API call under a session hash: its (SSE event, data) pairs, read to the end, or until
    `hang_up(event, data)` says to drop the connection."""
    r = httpx.post(f"{url}gradio_api/call/{api_name}", json={"data": data, "session_hash": session}, timeout=30)
    r.raise_for_status()
    event_id = r.json()["event_id"]
    seen: list[tuple[str, str]] = []
    event = ""
    with httpx.stream("GET", f"{url}gradio_api/call/{api_name}/{event_id}", timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: ") and event != "heartbeat":
                seen.append((event, line[len("data: "):]))
                if event in ("complete", "error") or (hang_up is not None and hang_up(event, seen[-1][1])):
                    break  # leaving the `with` closes the connection: a hang-up
    return seen


def texts(data: str) -> str:
    """The text outputs of one SSE data line (a JSON list of outputs, or an error), joined: for matching."""
    value = json.loads(data)
    items = value if isinstance(value, list) else [value]
    return " ".join(item if isinstance(item, str) else json.dumps(item, ensure_ascii=False) for item in items)


def arena_still_works(url: str) -> None:
    """An ordinary visitor: load the example, race TASC-spec; the answer must match greedy."""
    c = Client(url, verbose=False)
    c.predict(EXAMPLE, api_name="/use_example")
    final = c.submit(PROMPT, "tasc-spec", None, 16, 2, api_name="/arena").result()
    assert "identical output ✓" in final[4]


def first_update(event: str, data: str) -> bool:
    return event == "generating"


def test_finetune_clients_that_hang_up_stop_their_jobs_and_never_lock_others_out(tiny_model_dir, tmp_path, monkeypatch,
                                                                                started_jobs):
    """Case 1: before, each hung-up fine-tune kept its job, its session counted as busy, and after ~66 of them
    every new visitor was told "the server is busy with other users' jobs" for hours."""
    slow_training(monkeypatch, 0.05)  # 1000 steps would take a minute: nothing ends on its own during the test
    env = {"TASC_APP_MAX_SESSIONS": "6", "TASC_APP_MAX_JOBS": "3", "TASC_APP_NEW_SESSIONS_PER_MINUTE": "0"}
    with running_app(tiny_model_dir, tmp_path / "app", **env) as ra:
        refused = []
        for _ in range(8):  # more hostile sessions than the store holds
            session = uuid.uuid4().hex
            assert call(ra.url, "use_example", [EXAMPLE], session)[-1][0] == "complete"  # never "busy"
            event, data = call(ra.url, "finetune", [str(tiny_model_dir), LORA, 1000, None], session,
                               hang_up=first_update)[0]
            if event == "error":  # the stopping jobs still fill the server's places: a clear refusal
                refused.append(texts(data))
            assert sum(not j.finished for j in started_jobs) <= 3  # the server-wide bound holds whatever happens
        assert len(started_jobs) + len(refused) == 8 and len(started_jobs) >= 4
        assert all("The server runs at most 3 jobs at once" in r for r in refused)
        wait_until(lambda: all(j.finished for j in started_jobs), timeout_s=30,
                   what="the hung-up clients' fine-tunes to stop")
        assert all(j.cancel_event.is_set() and j.status == "cancelled" for j in started_jobs)

        # a new visitor gets in; while one fine-tune runs, a second training job learns its place in the queue
        owner = Client(ra.url, verbose=False)
        owner.predict(EXAMPLE, api_name="/use_example")
        ft = owner.submit(str(tiny_model_dir), LORA, 1000, None, api_name="/finetune")
        for update in ft:
            if "Step" in update[0]:
                break
        other = Client(ra.url, verbose=False)
        other.predict(EXAMPLE, api_name="/use_example")
        queued = other.submit("Draft model", 100, api_name="/train_compare")
        status = next(iter(queued))[0]
        assert "Queued: **1 job ahead of yours**" in status
        queued.cancel()
        owner.predict(api_name="/finetune_stop")
        wait_until(lambda: all(j.finished for j in started_jobs), timeout_s=30, what="the last jobs to stop")
        arena_still_works(ra.url)


def test_a_session_flood_is_rate_limited_and_never_evicts_a_sessions_models(tiny_model_dir, tmp_path):
    """Case 2: before, 64 new sessions in 2.4 s evicted the victim's session, fine-tuned model included."""
    env = {"TASC_APP_MAX_SESSIONS": "6", "TASC_APP_NEW_SESSIONS_PER_MINUTE": "10"}
    with running_app(tiny_model_dir, tmp_path / "app", **env) as ra:
        victim = Client(ra.url, verbose=False)
        victim.predict(EXAMPLE, api_name="/use_example")
        status, _, _, ft_model, _ = victim.predict(str(tiny_model_dir), LORA, 3, None, api_name="/finetune")
        assert status.startswith("✓ Done: 3 steps")
        label = ft_model["value"] if isinstance(ft_model, dict) else ft_model

        flood = [uuid.uuid4().hex for _ in range(70)]  # more than the default store holds (64)
        results = [call(ra.url, "use_example", [EXAMPLE], session)[-1] for session in flood]

        # the flood evicted its own oldest sessions, never the victim's: its model is still there
        final = victim.submit(PROMPT, "tasc-ft", label, 16, 0, api_name="/arena").result()
        assert "tokens/s" in final[3] and "fine-tuned" in final[4]

        accepted = [s for s, (event, _) in zip(flood, results, strict=True) if event == "complete"]
        refused = [texts(data) for event, data in results if event == "error"]
        # 10 a minute from this address, the victim's included (one more if the flood outlasts its minute)
        assert 9 <= len(accepted) <= 10 and len(accepted) + len(refused) == len(flood)
        assert all("Too many new sessions from your address (at most 10 a minute)" in r for r in refused)
        assert len(app.store()) <= 6
        # an evicted session hears why, once
        event, data = call(ra.url, "arena", [PROMPT, "tasc-spec", None, 16, 0, None], accepted[0])[-1]
        assert event == "error" and "Your session was removed to make room for new visitors" in texts(data)


def test_an_expired_session_says_so_instead_of_no_model(tiny_model_dir, tmp_path):
    env = {"TASC_APP_NEW_SESSIONS_PER_MINUTE": "0"}
    with running_app(tiny_model_dir, tmp_path / "app", **env) as ra:
        victim = Client(ra.url, verbose=False)
        victim.predict(EXAMPLE, api_name="/use_example")
        store = app.store()
        store.clock = lambda: time.time() + 5 * 3600  # five hours later
        try:
            with pytest.raises(AppError, match="Your session expired after 4 hours idle: its corpus, jobs and models"):
                victim.predict(PROMPT, "tasc-ft", None, 16, 0, api_name="/arena")
        finally:
            store.clock = time.time
        arena_still_works(ra.url)


def test_mining_is_a_job_that_a_hang_up_or_a_cancel_stops(tiny_model_dir, tmp_path, monkeypatch, started_jobs):
    """Case 6: before, /mine on a 20 MB corpus ran for minutes with no progress and no Stop."""
    from tasc.ft import ngrams

    mine_round = ngrams._mine_round

    def slow_round(*args, **kwargs):  # a big corpus's round takes seconds; the example's takes milliseconds
        time.sleep(0.5)
        return mine_round(*args, **kwargs)

    monkeypatch.setattr(ngrams, "_mine_round", slow_round)
    env = {"TASC_APP_NEW_SESSIONS_PER_MINUTE": "0"}
    with running_app(tiny_model_dir, tmp_path / "app", **env) as ra:
        session = uuid.uuid4().hex
        call(ra.url, "use_example", [EXAMPLE], session)
        seen = call(ra.url, "mine", [500, 10], session, hang_up=lambda event, data: "round 1:" in texts(data))
        assert seen[-1][0] == "generating" and "Mining… round 1:" in texts(seen[-1][1])  # progress per round
        assert [j.kind for j in started_jobs] == ["mine"]
        hung_up = started_jobs[0]
        wait_until(lambda: hung_up.finished, timeout_s=15, what="the hung-up client's mining to stop")
        assert hung_up.status == "cancelled" and hung_up.latest.done < 10

        c = Client(ra.url, verbose=False)
        c.predict(EXAMPLE, api_name="/use_example")
        job = c.submit(500, 10, api_name="/mine")
        for update in job:
            if "Mining…" in update[3]:
                break
        job.cancel()  # what the tab's Stop button does
        stopped = started_jobs[-1]
        wait_until(lambda: stopped.finished, timeout_s=15, what="the cancelled mining to stop")
        assert stopped is not hung_up and stopped.status == "cancelled"
        arena_still_works(ra.url)
