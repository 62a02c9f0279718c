"""The model's own earlier answers as a draft source (`tasc.spec.history`)."""

from tasc.spec.drafts import CORPUS, HISTORY, SpecConfig, TascDrafter
from tasc.spec.history import AnswerHistory
from tasc.spec.ngram_index import CorpusIndex

SYSTEM = [1, 2, 3]  # a shared system turn: every prompt has it


def test_nearest_answers_are_those_of_the_most_alike_prompts_never_the_same_prompt():
    history = AnswerHistory(max_answers=3)
    history.add(SYSTEM + [40, 41], [7, 7, 0])
    history.add(SYSTEM + [50, 51], [8, 8, 0])
    history.add(SYSTEM + [50, 52], [9, 9, 0])
    weight = lambda token: 0.0 if token in SYSTEM else 1.0  # noqa: E731
    assert history.nearest(SYSTEM + [50, 52, 53], 2, weight) == [[9, 9, 0], [8, 8, 0]]
    assert history.nearest(SYSTEM + [50, 52], 2, weight) == [[8, 8, 0]]  # its own earlier answer is left out
    assert history.nearest(SYSTEM + [60], 2, weight) == []  # nothing weighted in common
    history.add(SYSTEM + [60], [6, 0])
    assert len(history) == 3 and history.nearest(SYSTEM + [40, 41, 42], 3, weight) == []  # the oldest went out


def answer(drafter, prompt, tokens, chunk=2):
    """Feed the drafter one answer as a verify loop would (no draft token accepted)."""
    drafter.start(prompt)
    for i in range(0, len(tokens), chunk):
        drafter.propose(8)
        drafter.update(tokens[i : i + chunk], 0)


def test_a_finished_answer_drafts_for_the_next_alike_prompt():
    corpus = CorpusIndex([[90, 91, 92]] * 5, eos_id=0)  # the references say something else
    drafter = TascDrafter(corpus, SpecConfig(use_context=False, neighbours=0))
    answer(drafter, SYSTEM + [70, 71, 72], [30, 31, 32, 33, 34, 0])
    drafter.start(SYSTEM + [70, 71, 73])
    draft = drafter.propose(8)
    assert draft.tokens[:6] == [30, 31, 32, 33, 34, 0] and draft.sources[0] == HISTORY
    drafter.start(SYSTEM + [70, 71, 72])  # the same prompt again: its own answer is not a draft
    assert drafter.propose(8).sources[:1] == [CORPUS]


def test_history_off_or_an_unfinished_answer_keeps_nothing():
    corpus = CorpusIndex([[90, 91, 92]] * 5, eos_id=0)
    off = TascDrafter(corpus, SpecConfig(use_context=False, neighbours=0, history=0))
    answer(off, SYSTEM + [70], [30, 31, 0])
    off.start(SYSTEM + [71])
    assert off.history is None and HISTORY not in off.propose(8).sources
    on = TascDrafter(corpus, SpecConfig(use_context=False, neighbours=0))
    answer(on, SYSTEM + [70], [30, 31, 32])  # cut by the token budget: no stop token
    assert on.history is not None and len(on.history) == 0
    answer(on, SYSTEM + [70], [30, 31, 0, 5, 5])  # tokens after the stop token are not part of it
    on.start(SYSTEM + [71])
    assert on.propose(8).tokens[:3] == [30, 31, 0]


def test_context_only_drafting_keeps_no_history():
    """Prompt-lookup-like drafting (no corpus) stays what it says: the model's answers are a corpus source."""
    drafter = TascDrafter(None, SpecConfig(use_corpus=False))
    assert drafter.history is None


def test_a_new_weight_rescores_the_kept_prompts():
    """Each kept prompt's norm is cached under the weight it was computed with, never reused for another."""
    history = AnswerHistory()
    history.add(SYSTEM + [50, 60, 61, 62], [1, 0])
    history.add(SYSTEM + [50, 70], [2, 0])
    flat = lambda token: 0.0 if token in SYSTEM else 1.0  # noqa: E731
    no_60s = lambda token: 0.0 if token in SYSTEM or 60 <= token < 70 else 1.0  # noqa: E731
    assert history.nearest(SYSTEM + [50], 2, flat) == [[2, 0], [1, 0]]  # norms 2 and 1.41: the shorter prompt is nearer
    assert history.nearest(SYSTEM + [50], 2, no_60s) == [[1, 0], [2, 0]]  # norms 1 and 1.41 now
    assert history.nearest(SYSTEM + [50], 2, flat) == [[2, 0], [1, 0]]
