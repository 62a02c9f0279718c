"""The shared model pool: one load per spec even under concurrent requests, bounded, base kept."""

from __future__ import annotations

import threading
import time

from studio.model_pool import ModelPool


def fake_loader(calls):
    def load(spec):
        calls.append(spec)
        time.sleep(0.05)  # slow enough for concurrent requests to overlap
        return f"model:{spec}"
    return load


def test_concurrent_requests_load_a_model_once():
    calls = []
    pool = ModelPool("base", loader=fake_loader(calls))
    got = []
    threads = [threading.Thread(target=lambda: got.append(pool.get())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["base"] and got == ["model:base"] * 8


def test_extra_models_are_bounded_and_the_base_stays():
    calls = []
    pool = ModelPool("base", max_extra=2, loader=fake_loader(calls))
    pool.get()
    for spec in ("a", "b", "c"):
        pool.get(spec)
    assert pool.loaded() == ["base", "b", "c"]  # "a" was the least recently used extra
    pool.get("b")
    pool.get("d")
    assert pool.loaded() == ["base", "b", "d"]
    pool.forget("base")
    pool.forget("d")
    assert pool.loaded() == ["base", "b"]
