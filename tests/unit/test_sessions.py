"""Server-side sessions: unguessable tokens, owner binding, expiry, a bounded store, cleanup."""

from __future__ import annotations

import threading
import time

import pytest

from tasc.errors import TascError
from tasc.jobs import start_job
from tasc.sessions import SessionConfig, SessionModel, SessionStore


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
    store = SessionStore(tmp_path, SessionConfig(ttl_s=0.05))
    s = store.new()
    s.workdir.mkdir(parents=True)
    (s.workdir / "f").write_text("x")
    time.sleep(0.1)
    assert store.get(s.token) is None
    assert not s.workdir.exists()


def test_store_is_bounded_by_dropping_the_least_recently_used(tmp_path):
    store = SessionStore(tmp_path, SessionConfig(max_sessions=3))
    a, b, c = store.new(), store.new(), store.new()
    store.get(a.token)  # a is now more recent than b
    d = store.new()
    assert len(store) == 3
    assert store.get(b.token) is None
    assert all(store.get(x.token) is not None for x in (a, c, d))


def test_a_full_store_of_busy_sessions_refuses_new_ones(tmp_path):
    store = SessionStore(tmp_path, SessionConfig(max_sessions=1))
    s = store.new()
    gate = threading.Event()
    s.jobs["finetune"] = start_job("finetune", lambda *, on_progress, cancel: gate.wait(5))
    with pytest.raises(TascError, match="busy"):
        store.new()
    gate.set()
    s.jobs["finetune"].wait(5)
    assert store.new() is not None


def test_drop_cancels_jobs_then_removes_the_folder(tmp_path):
    store = SessionStore(tmp_path)
    s = store.new()
    s.workdir.mkdir(parents=True)

    def slow(*, on_progress, cancel):
        while not cancel.is_set():
            time.sleep(0.01)
        (s.workdir / "checkpoint").write_text("saved on cancel")

    job = s.jobs["finetune"] = start_job("finetune", slow)
    store.drop(s.token)
    assert job.wait(5) and job.status == "done"  # the function returned after seeing cancel
    for _ in range(100):
        if not s.workdir.exists():
            break
        time.sleep(0.02)
    assert not s.workdir.exists()
    store.drop(None)  # harmless


def test_set_corpus_clears_derived_objects_and_models_of_kind(tmp_path):
    s = SessionStore(tmp_path).new()
    s.cache["index"] = object()
    s.set_corpus("c", "t", "h")
    assert s.cache == {} and (s.corpus, s.train, s.heldout) == ("c", "t", "h")
    s.models["a"] = SessionModel("a", tmp_path, "finetuned")
    s.models["b"] = SessionModel("b", tmp_path, "enriched")
    assert [m.label for m in s.models_of("finetuned")] == ["a"]


def test_close_drops_every_session_and_waits_for_jobs(tmp_path):
    store = SessionStore(tmp_path)
    s = store.new()

    def until_cancelled(*, on_progress, cancel):
        while not cancel.is_set():
            time.sleep(0.01)

    job = s.jobs["x"] = start_job("x", until_cancelled)
    store.close(wait_s=5)
    assert len(store) == 0 and job.finished
