"""The shared model pool: one load per spec even under concurrent requests, bounded, base kept."""

from __future__ import annotations

import threading
import time

from studio.model_pool import ModelPool
from tests.waiting import wait_until


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


def test_a_load_on_the_model_thread_cannot_deadlock_with_a_request_waiting_for_it():
    """A request loads model X through the model thread while the model thread's current work (a race's start)
    also asks the pool for X: with the whole load on the model thread, both get the one copy."""
    import threading

    from studio.model_thread import ModelThread

    mt = ModelThread("test-pool")
    loads: list[str] = []
    pool = ModelPool("base", loader=lambda spec: loads.append(spec) or f"model:{spec}", call=mt.call)
    busy, release = threading.Event(), threading.Event()

    def race_start():  # model-thread work that needs X after a pause
        busy.set()
        release.wait(10)
        return pool.get("X")

    got: list[str] = []
    t_race = threading.Thread(target=lambda: got.append(mt.call(race_start)))
    t_race.start()
    busy.wait(10)
    t_request = threading.Thread(target=lambda: got.append(pool.get("X")))  # queued behind the race's start
    t_request.start()
    wait_until(lambda: len(mt._urgent) == 1, what="the request's load to queue on the model thread")
    release.set()
    t_race.join(10)
    t_request.join(10)
    assert not t_race.is_alive() and not t_request.is_alive(), "deadlock"
    assert got == ["model:X", "model:X"] and loads == ["X"]
