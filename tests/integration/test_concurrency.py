"""Concurrency: 8 simultaneous Arena requests through gradio_client while a fine-tune job runs.

Reports p50/p95 time to first token (printed, and written as JSON under pytest's temp folder), and
checks that clients who disconnect mid-stream free what their generations held: no generation left
running, no KV cache left alive, memory back near its baseline.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import threading
import time
import uuid
import warnings

import httpx
import pytest
from gradio_client import Client

import app
from studio import app_state, tab_arena
from tests.app_harness import running_app

N_CLIENTS = 8
PROMPT = "city[Oslo], condition[snow], high[2], low[-4]"


def rss_mb() -> float:
    """This process's resident memory in MB (the app runs in-process)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def live_caches() -> int:
    """KV caches alive in this process, other than the models' shared prompt-prefix caches (one per model and format)."""
    from transformers import DynamicCache

    from tasc.spec.decode import _SHARED_PREFIXES

    gc.collect()
    shared = {id(p.cache) for caches in _SHARED_PREFIXES.values() for p in caches.values()}
    with warnings.catch_warnings():  # isinstance on every object pokes deprecated torch module attributes
        warnings.simplefilter("ignore")
        return sum(isinstance(o, DynamicCache) and id(o) not in shared for o in gc.get_objects())


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def arena_ttft(url: str, results: list, errors: list, start: threading.Barrier) -> None:
    """One client: load the example, then time its Arena request to the first streamed token."""
    try:
        c = Client(url, verbose=False)
        c.predict("weather_reports.jsonl", api_name="/use_example")
        start.wait(60)
        t0 = time.perf_counter()
        job = c.submit(PROMPT, "tasc-spec", None, 48, 2, api_name="/arena")
        ttft = None
        for update in job:
            if ttft is None and (update[0] or update[2]):
                ttft = time.perf_counter() - t0
        final = job.result()
        results.append({"ttft_s": ttft, "total_s": time.perf_counter() - t0, "verdict": final[4]})
    except Exception as exc:  # reported by the test
        errors.append(repr(exc))


def disconnect_mid_stream(url: str) -> None:
    """Start an Arena request over the raw HTTP API and drop the connection after the first update."""
    session = uuid.uuid4().hex
    r = httpx.post(f"{url}gradio_api/call/arena", json={"data": [PROMPT, "tasc-context", None, 256, 0],
                                                         "session_hash": session}, timeout=30)
    event_id = r.json()["event_id"]
    with httpx.stream("GET", f"{url}gradio_api/call/arena/{event_id}", timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and "token" in line:
                break  # first streamed update: hang up


@pytest.fixture
def model_dir(request):
    """The tiny model, or the real one with TASC_CONCURRENCY_MODEL=smollm2-135m (for realistic latencies)."""
    if os.environ.get("TASC_CONCURRENCY_MODEL") == "smollm2-135m":
        return request.getfixturevalue("real_model_dir")
    return request.getfixturevalue("tiny_model_dir")


def test_eight_arena_clients_during_a_finetune(model_dir, tmp_path):
    with running_app(model_dir, tmp_path / "app") as ra:
        owner = Client(ra.url, verbose=False)
        owner.predict("weather_reports.jsonl", api_name="/use_example")
        owner.submit(PROMPT, "tasc-spec", None, 16, 2, api_name="/arena").result()  # warm-up
        base_caches = live_caches()

        ft = owner.submit(str(model_dir), "LoRA (fast)", 1000, None, api_name="/finetune")
        for update in ft:
            if "Step" in update[0]:
                break
        results: list[dict] = []
        errors: list[str] = []
        start = threading.Barrier(N_CLIENTS)
        threads = [threading.Thread(target=arena_ttft, args=(ra.url, results, errors, start)) for _ in range(N_CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        (ft_session,) = [s for s in app.store()._sessions.values() if "finetune" in s.jobs]
        still_training = ft_session.jobs["finetune"].status == "running"

        owner.predict(api_name="/finetune_stop")
        ft_session.jobs["finetune"].wait(60)

        # Clients that hang up mid-stream: two rounds, memory measured around the second
        for round_ in range(2):
            if round_ == 1:
                base_rss = rss_mb()
            hangers = [threading.Thread(target=disconnect_mid_stream, args=(ra.url,)) for _ in range(4)]
            for t in hangers:
                t.start()
            for t in hangers:
                t.join(120)
            deadline = time.time() + 60
            while tab_arena.ACTIVE_GENERATIONS and time.time() < deadline:
                time.sleep(0.1)
        leftover_generations = dict(tab_arena.ACTIVE_GENERATIONS)
        caches, rss = live_caches(), rss_mb()

    assert not errors, errors
    assert len(results) == N_CLIENTS
    assert all("identical output ✓" in r["verdict"] for r in results)
    assert still_training, "the fine-tune was not running while the Arena requests were served"
    ttfts = [r["ttft_s"] for r in results]
    report = {"clients": N_CLIENTS, "generation_limit": app_state.generation_limit(), "finetune_running": still_training,
              "ttft_p50_s": round(statistics.median(ttfts), 3), "ttft_p95_s": round(percentile(ttfts, 95), 3),
              "total_p50_s": round(statistics.median(r["total_s"] for r in results), 3),
              "rss_baseline_mb": round(base_rss), "rss_after_mb": round(rss),
              "kv_caches_baseline": base_caches, "kv_caches_after": caches}
    (tmp_path / "concurrency.json").write_text(json.dumps(report, indent=2))
    print(f"\nconcurrency: {json.dumps(report)}\nwritten to {tmp_path / 'concurrency.json'}")
    assert leftover_generations == {}, "a disconnected client's generation is still running"
    assert caches <= base_caches, "KV caches of finished or abandoned generations are still alive"
    assert rss - base_rss < 50, f"memory grew by {rss - base_rss:.0f} MB after clients hung up"
