"""Server-side sessions: unguessable tokens, owner binding, expiry, a bounded store, cleanup; and what one client
cannot do to others: flood the store (rate limit per address), evict sessions that hold work, or leave a user
guessing why their session is gone."""

from __future__ import annotations

import threading

import pytest

from studio.jobs import start_job
from studio.sessions import (
    NewSessionLimit,
    SessionConfig,
    SessionGone,
    SessionModel,
    SessionRefused,
    SessionStore,
    duration,
)
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
    with pytest.raises(SessionRefused, match="The server is full: all 1 sessions hold other users' models or running jobs"):
        store.new()
    gate.set()
    assert s.jobs["finetune"].wait(5)
    assert store.new() is not None  # a finished job protects nothing: the session went to make room


def with_model(store: SessionStore, tmp_path, owner: str | None = None):
    """A session holding a fine-tuned model."""
    s = store.new(owner)
    s.models["fine-tuned #1"] = SessionModel("fine-tuned #1", tmp_path / "m", "finetuned")
    return s


def test_sessions_with_work_survive_a_flood_and_idle_ones_go_least_recent_first(tmp_path):
    clock = FakeClock(1000.0)
    store = SessionStore(tmp_path, SessionConfig(max_sessions=4, new_per_minute=0), clock=clock)
    victim = with_model(store, tmp_path, "victim")
    clock.advance(1.0)
    gate = threading.Event()
    busy = store.new("busy")
    busy.jobs["enrich"] = start_job("enrich", lambda *, on_progress, cancel: gate.wait(10))
    clock.advance(1.0)
    older, newer = store.new("older"), None
    clock.advance(1.0)
    newer = store.new("newer")
    clock.advance(1.0)
    flood = store.new("flood-0")  # full: the least recently used session without work goes
    assert store.get(older.token) is None and store.get(newer.token) is newer
    for i in range(1, 64):  # a flood of new sessions evicts only sessions without work
        clock.advance(0.01)
        store.new(f"flood-{i}")
    assert len(store) == 4 and store.get(flood.token) is None and store.get(newer.token) is None
    assert store.get(victim.token, "victim") is victim and victim.models
    assert store.get(busy.token, "busy") is busy
    gate.set()
    assert busy.jobs["enrich"].wait(5)


def test_a_store_full_of_work_refuses_rather_than_evicting(tmp_path):
    clock = FakeClock(1000.0)
    store = SessionStore(tmp_path, SessionConfig(max_sessions=2, ttl_s=7200.0), clock=clock)
    a, b = with_model(store, tmp_path), with_model(store, tmp_path)
    with pytest.raises(SessionRefused, match=r"all 2 sessions hold .*\(idle sessions expire after 2 hours\)"):
        store.new()
    assert store.get(a.token) is a and store.get(b.token) is b
    clock.advance(7201.0)  # idle past the ttl, models or not: they expire, and their room is free again
    assert store.new() is not None and store.get(a.token) is None


def test_new_sessions_are_rate_limited_per_client_address(tmp_path):
    clock = FakeClock(1000.0)
    store = SessionStore(tmp_path, SessionConfig(new_per_minute=3), clock=clock)
    for _ in range(3):
        store.new(client="203.0.113.7")
        clock.advance(10.0)
    with pytest.raises(SessionRefused, match=r"Too many new sessions from your address \(at most 3 a minute\); please wait 30 s"):
        store.new(client="203.0.113.7")
    assert store.new(client="198.51.100.1") is not None  # another address is not held back
    assert store.new(client=None) is not None  # no address (outside a request): not limited
    clock.advance(29.5)
    with pytest.raises(SessionRefused, match="wait 1 s"):
        store.new(client="203.0.113.7")
    clock.advance(1.0)  # the first of the three is a minute old now
    assert store.new(client="203.0.113.7") is not None
    assert len(store) == 6  # refusals made nothing


def test_a_refused_token_owner_keeps_the_limit_but_a_known_token_is_never_limited(tmp_path):
    store = SessionStore(tmp_path, SessionConfig(new_per_minute=1), clock=FakeClock())
    s = store.resolve(None, "hash-a", "203.0.113.7")
    assert store.resolve(s.token, "hash-a", "203.0.113.7") is s  # the user's own requests never count
    with pytest.raises(SessionRefused, match="Too many new sessions"):
        store.resolve(None, "hash-b", "203.0.113.7")


def test_the_rate_limit_tracks_a_bounded_number_of_addresses():
    limit = NewSessionLimit(per_window=1, window_s=60.0, max_clients=3)
    for i in range(10):
        limit.record(f"10.0.0.{i}", 1000.0 + i)
    assert len(limit._stamps) == 3 and limit.wait_s("10.0.0.9", 1010.0) == pytest.approx(59.0)
    assert limit.wait_s("10.0.0.0", 1010.0) == 0.0  # forgotten: allowed again
    assert NewSessionLimit(0).wait_s("x", 0.0) == 0.0  # 0: no limit


def test_an_expired_session_tells_its_owner_what_happened_once(tmp_path):
    clock = FakeClock(1000.0)
    store = SessionStore(tmp_path, SessionConfig(ttl_s=4 * 3600.0), clock=clock)
    victim = with_model(store, tmp_path, "victim-hash")
    clock.advance(4 * 3600.0 + 1)
    assert store.get(victim.token, "victim-hash") is None  # refreshes learn nothing, and say nothing
    with pytest.raises(SessionGone, match="Your session expired after 4 hours idle: its corpus, jobs and models were "
                                          "deleted. Load a corpus"):
        store.resolve(victim.token, "victim-hash")
    fresh = store.resolve(victim.token, "victim-hash")  # said once: the next request starts afresh
    assert fresh is not victim and not fresh.models


def test_an_evicted_session_tells_its_owner_it_made_room(tmp_path):
    clock = FakeClock(1000.0)
    store = SessionStore(tmp_path, SessionConfig(max_sessions=2), clock=clock)
    victim = store.new("victim-hash")
    clock.advance(1.0)
    store.new()
    store.new()  # evicts the victim, the least recently used without work
    with pytest.raises(SessionGone, match="removed to make room for new visitors .*at most 2 sessions"):
        store.resolve(victim.token, "victim-hash")


def test_only_the_owner_hears_about_a_gone_session_and_the_memory_is_bounded(tmp_path):
    clock = FakeClock(1000.0)
    store = SessionStore(tmp_path, SessionConfig(ttl_s=60.0, remember_gone=2), clock=clock)
    sessions = [store.new(f"hash-{i}") for i in range(3)]
    clock.advance(61.0)
    assert store.expire() == 3
    assert store.gone_message(sessions[1].token, "someone-else") is None  # another session hash: told nothing
    assert store.gone_message(sessions[0].token, "hash-0") is None  # the oldest memory went (2 kept)
    assert "expired after 1 minute idle" in store.gone_message(sessions[2].token, "hash-2")
    store.drop(store.new("closed").token)  # a tab closed: nothing to tell anyone later
    assert len(store._gone) <= 2


@pytest.mark.parametrize("seconds, text", [(4 * 3600.0, "4 hours"), (3600.0, "1 hour"), (5400.0, "1.5 hours"),
                                           (60.0, "1 minute"), (150.0, "2.5 minutes"), (1.0, "1 second"), (30.0, "30 seconds")])
def test_duration(seconds, text):
    assert duration(seconds) == text


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
    s.mining = object()
    s.set_corpus("c", "t", "h")
    assert s.mining is None and (s.corpus, s.train, s.heldout) == ("c", "t", "h")
    s.models["a"] = SessionModel("a", tmp_path, "finetuned")
    s.models["b"] = SessionModel("b", tmp_path, "enriched")
    assert [m.label for m in s.models_of("finetuned")] == ["a"]


def test_close_drops_every_session_and_waits_for_jobs(tmp_path):
    store = SessionStore(tmp_path)
    s = store.new()
    job = s.jobs["x"] = start_job("x", until_cancelled)
    store.close(wait_s=5)
    assert len(store) == 0 and job.finished
