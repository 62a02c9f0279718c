"""The Arena's race and lanes: fair interleaving, figures, labelled spans, lossless on a tiny model."""

from __future__ import annotations

import pytest

from studio.arena import Lane, race
from tasc.spec.decode import DecodeConfig, Step, speculative_steps
from tasc.spec.drafts import build_corpus_index, tasc_drafter


def step(tokens, sources, seconds, finished=False, n_accepted=None):
    n_acc = sum(s != "model" for s in sources) if n_accepted is None else n_accepted
    return Step(tokens, n_acc, sources, [], 0.0, seconds, 0.0, finished)


def test_lane_folds_steps_into_figures():
    lane = Lane("x")
    lane.add(step([1], ["model"], 0.5))
    lane.add(step([2, 3, 4], ["corpus", "context", "model"], 0.25, finished=True))
    st = lane.stats()
    assert st == {"tokens": 4, "passes": 2, "seconds": 0.75, "tokens_per_s": pytest.approx(5.33, abs=0.01),
                  "tokens_per_pass": 2.0, "accepted": 2}
    assert lane.accepted_by_source() == {"corpus": 1, "context": 1}
    assert lane.timeline() == [(0.0, 0), (0.5, 1), (0.75, 4)]
    assert lane.finished and lane.step_lengths == [1, 3]


def test_race_advances_the_lane_with_less_compute_time():
    slow = iter([step([1], ["model"], 1.0), step([1], ["model"], 1.0, finished=True)])
    fast = iter([step([1], ["model"], 0.1)] * 5 + [step([1], ["model"], 0.1, finished=True)])
    lanes = [Lane("slow"), Lane("fast")]
    order = []
    for ls in race(lanes, [slow, fast]):
        order.append((ls[0].passes, ls[1].passes))
    # slow takes one step, then fast catches up (six 0.1 s steps) before slow takes its second
    assert order[0] == (1, 0) and order[-1] == (2, 6)
    assert order.index((1, 6)) < order.index((2, 6))


def test_race_ends_a_stream_that_stops_without_finishing():
    lanes = [Lane("a")]
    assert len(list(race(lanes, [iter([step([1], ["model"], 0.1)])]))) == 2
    assert lanes[0].finished
    with pytest.raises(ValueError, match="1 lanes but 2"):
        next(race([Lane("a")], [iter([]), iter([])]))


class FakeTokenizer:
    """Decodes ids to letters; id 9 is half of the two-token character 'é' (shown broken alone)."""

    def decode(self, ids, skip_special_tokens=True):
        out = ""
        i = 0
        while i < len(ids):
            if ids[i] == 9:
                out += "é" if i + 1 < len(ids) and ids[i + 1] == 10 else "\ufffd"
                i += 2 if i + 1 < len(ids) and ids[i + 1] == 10 else 1
            else:
                out += "abcdefgh"[ids[i]]
                i += 1
        return out


def test_spans_label_accepted_runs_and_never_break_a_character():
    lane = Lane("x")
    lane.add(step([0, 1], ["model", "model"], 0.1))
    lane.add(step([2, 3, 9], ["corpus", "corpus", "model"], 0.1))
    lane.add(step([10, 4], ["context", "model"], 0.1))
    spans = lane.spans(FakeTokenizer())
    assert "".join(p for p, _ in spans) == "abcdéè"[:5] + "e"
    assert spans[0] == ("ab", None) and spans[1] == ("cd", "corpus")
    assert "\ufffd" not in "".join(p for p, _ in spans)
    assert lane.spans(FakeTokenizer(), skip=[4])[-1][0].endswith("é")


def test_race_of_greedy_and_tasc_spec_on_a_tiny_model_is_lossless(tiny_lm):
    lm = tiny_lm
    corpus = ['{"intent": "PlayMusic", "slots": {"artist": "miles davis"}}'] * 5
    index = build_corpus_index(lm.tokenizer, corpus)
    ids = lm.prompt_format.prompt_ids(lm.tokenizer, "play some jazz by miles davis")
    config = DecodeConfig(max_new_tokens=40)
    streams = [speculative_steps(lm.model, ids, None, config, lm.eos_token_id),
               speculative_steps(lm.model, ids, tasc_drafter(lm.tokenizer, index), config, lm.eos_token_id)]
    lanes = [Lane("greedy"), Lane("spec")]
    for _ in race(lanes, streams):
        pass
    assert lanes[0].tokens == lanes[1].tokens and len(lanes[0].tokens) > 0
    assert lanes[1].passes <= lanes[0].passes
    text = "".join(p for p, _ in lanes[1].spans(lm.tokenizer))
    assert text == lm.tokenizer.decode(lanes[1].tokens, skip_special_tokens=True)


def test_labelled_spans_one_piece_per_token_without_merge():
    from studio.arena import labelled_spans

    tok = FakeTokenizer()
    pieces = labelled_spans(tok.decode, [0, 9, 10, 1], ["a", "b", "a", "b"], merge=False)
    assert pieces == [("a", "a"), ("", "b"), ("é", "a"), ("b", "b")]  # the completing token carries "é"
    with pytest.raises(ValueError, match="2 ids but 1 labels"):
        labelled_spans(tok.decode, [0, 1], ["a"])


def test_a_session_carries_acceptance_statistics_between_races_but_keeps_no_drafter(tiny_lm):
    """Each race gets a new drafter (no corpus index is pinned by the session) that learns on from the last one,
    and drafts from the answers of this session's earlier races, never another session's."""
    import threading
    import types

    from studio.tab_arena import session_drafter
    from tasc.methods import METHODS, Resources
    from tasc.spec.drafts import build_corpus_index

    session = types.SimpleNamespace(lock=threading.RLock(), acceptance={}, answers={})
    other = types.SimpleNamespace(lock=threading.RLock(), acceptance={}, answers={})
    index = build_corpus_index(tiny_lm.tokenizer, ['{"intent": "PlayMusic"}'] * 4)
    res = Resources(tiny_lm, index=index)
    first = session_drafter(session, METHODS["tasc-spec"], tiny_lm, res)
    second = session_drafter(session, METHODS["tasc-spec"], tiny_lm, res)
    assert first is not second and second.acceptance is first.acceptance and second.history is first.history
    assert list(session.acceptance) == list(session.answers) == [("tasc-spec", tiny_lm.name)]
    assert session_drafter(other, METHODS["tasc-spec"], tiny_lm, res).history is not first.history
    assert session_drafter(session, METHODS["hybrid"], tiny_lm, res) is None  # not our loop: builds its own


def test_an_arena_race_runs_its_passes_on_the_model_thread_and_closes_its_streams_there(tiny_lm, monkeypatch):
    """The handler's thread only sends panes; every pass (and the streams' clean-up) runs on the app's one
    thread of tensor math, so the process holds one OpenMP team (studio.model_thread)."""
    import threading

    from studio import tab_arena
    from studio.model_thread import ModelThread
    from tasc import methods

    mt = ModelThread("test-arena-model")
    monkeypatch.setattr(tab_arena, "MODEL_THREAD", mt)
    seen: list[str] = []
    closed: list[str] = []

    def stream(n: int):
        try:
            for i in range(n):
                seen.append(threading.current_thread().name)
                yield Step(tokens=[5 + i], n_accepted=0, sources=["model"], draft=[], draft_s=0.0, forward_s=0.001,
                           elapsed_s=0.001 * (i + 1), finished=i == n - 1)
        finally:
            closed.append(threading.current_thread().name)

    streams = [stream(3), stream(2)]
    race_ = tab_arena.Race(methods.get("tasc-spec"), (tiny_lm, tiny_lm), streams)
    updates = list(tab_arena.run_race(race_))
    assert seen == ["test-arena-model"] * 5
    assert closed == ["test-arena-model"] * 2
    assert len(updates) >= 2 and updates[-1][4] != "*generating…*"
