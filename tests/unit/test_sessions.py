"""Server-side sessions: unguessable tokens, owner binding, expiry, a bounded store, cleanup."""

from __future__ import annotations

import threading

import pytest

from studio.jobs import start_job
from studio.sessions import SessionConfig, SessionModel, SessionStore
from tasc.core.errors import TascError
from tests.waiting import FakeClock, wait_for_event, wait_until


def until_cancelled(*, on_progress, cancel):
    """A job that runs until it is cancelled (and fails, rather than hang, if it never is)."""
    if not cancel.wait(10):
        raise RuntimeError("never cancelled")


def test_tokens_are_unique_and_long(tmp_path):
    store = SessionStore(tmp_path)
    tokens = {store.new().token for _ in range(50)}
    assert len(tokens) == 50 and all(len(t) >= 40 for t in tokens)


def test_get_by_token_and_unknown_tokens(tmp_path):
    store = SessionStore(tmp_path)
    s = store.new("hash-a")
    assert store.get(s.token, "hash-a") is s
    for bad in (None, "", "nope", s.token[:-1], 123):
        assert store.get(bad, "hash-a") is None


def test_a_token_presented_under_another_session_hash_is_refused(tmp_path):
    store = SessionStore(tmp_path)
    s = store.new("victim-hash")
    assert store.get(s.token, "attacker-hash") is None
    other = store.resolve(s.token, "attacker-hash")  # gets a fresh, empty session instead
    assert other is not s and other.corpus is None
    assert store.get(s.token, "victim-hash") is s  # the victim's session is untouched


def test_session_hash_alone_never_finds_a_session(tmp_path):
    store = SessionStore(tmp_path)
    s = store.new("same-hash")
    assert store.resolve(None, "same-hash") is not s


def test_idle_sessions_expire_and_lose_their_folder(tmp_path):
    clock = FakeClock(1000.0)
    store = SessionStore(tmp_path, SessionConfig(ttl_s=60.0), clock=clock)
    s = store.new()
    assert (s.created_at, s.last_seen) == (1000.0, 1000.0)
    s.workdir.mkdir(parents=True)
    (s.workdir / "f").write_text("x")
    clock.advance(59.5)
    assert store.get(s.token) is s and s.last_seen == 1059.5  # a visit restarts the idle time
    clock.advance(60.0)
    assert store.get(s.token) is s  # idle exactly ttl_s: still alive
    clock.advance(60.5)
    assert store.get(s.token) is None
    assert not s.workdir.exists() and len(store) == 0


def test_expire_drops_idle_sessions_but_not_busy_ones(tmp_path):
    clock = FakeClock(1000.0)
    store = SessionStore(tmp_path, SessionConfig(ttl_s=60.0), clock=clock)
    idle, busy, recent = store.new(), store.new(), store.new()
    started, gate = threading.Event(), threading.Event()
    busy.jobs["finetune"] = start_job("finetune", lambda *, on_progress, cancel: started.set() or gate.wait(10))
    wait_for_event(started, what="the busy session's job to start")
    clock.advance(30.0)
    store.get(recent.token)
    clock.advance(31.0)  # idle and busy: idle 61 s; recent: 31 s
    assert store.expire() == 1
    assert store.get(idle.token) is None and store.get(busy.token) is busy and store.get(recent.token) is recent
    gate.set()
    assert busy.jobs["finetune"].wait(5)


def test_store_is_bounded_by_dropping_the_least_recently_used(tmp_path):
    clock = FakeClock(1000.0)
    store = SessionStore(tmp_path, SessionConfig(max_sessions=3), clock=clock)
    sessions = []
    for _ in range(3):  # created one second apart
        sessions.append(store.new())
        clock.advance(1.0)
    a, b, c = sessions
    store.get(a.token)  # a is now more recent than b
    clock.advance(1.0)
    d = store.new()
    assert len(store) == 3
    assert store.get(b.token) is None
    assert all(store.get(x.token) is not None for x in (a, c, d))


def test_a_full_store_of_busy_sessions_refuses_new_ones(tmp_path):
    store = SessionStore(tmp_path, SessionConfig(max_sessions=1))
    s = store.new()
    gate = threading.Event()
    s.jobs["finetune"] = start_job("finetune", lambda *, on_progress, cancel: gate.wait(10))
    with pytest.raises(TascError, match="busy"):
        store.new()
    gate.set()
    assert s.jobs["finetune"].wait(5)
    assert store.new() is not None


def test_drop_cancels_jobs_then_removes_the_folder(tmp_path):
    store = SessionStore(tmp_path)
    s = store.new()
    s.workdir.mkdir(parents=True)

    def slow(*, on_progress, cancel):
        until_cancelled(on_progress=on_progress, cancel=cancel)
        (s.workdir / "checkpoint").write_text("saved on cancel")

    job = s.jobs["finetune"] = start_job("finetune", slow)
    store.drop(s.token)
    assert job.wait(5) and job.status == "done"  # the function returned after seeing cancel
    wait_until(lambda: not s.workdir.exists(), what="the dropped session's folder to be removed")
    store.drop(None)  # harmless


def test_set_corpus_clears_derived_objects_and_models_of_kind(tmp_path):
    s = SessionStore(tmp_path).new()
    s.indexes["m"] = object()
    s.mining = object()
    s.set_corpus("c", "t", "h")
    assert s.indexes == {} and s.mining is None and (s.corpus, s.train, s.heldout) == ("c", "t", "h")
    s.models["a"] = SessionModel("a", tmp_path, "finetuned")
    s.models["b"] = SessionModel("b", tmp_path, "enriched")
    assert [m.label for m in s.models_of("finetuned")] == ["a"]


def test_close_drops_every_session_and_waits_for_jobs(tmp_path):
    store = SessionStore(tmp_path)
    s = store.new()
    job = s.jobs["x"] = start_job("x", until_cancelled)
    store.close(wait_s=5)
    assert len(store) == 0 and job.finished
