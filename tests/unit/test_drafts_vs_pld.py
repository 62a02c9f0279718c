"""Long context copies: TASC-spec drafts at least what prompt lookup would, and follows the copy where it is."""

import random

import pytest

from tasc.spec.drafts import CONTEXT, SpecConfig, TascDrafter, prior_acceptance
from tasc.spec.ngram_index import CorpusIndex, LongMatch, Prediction


def pld_draft(seq: list[int], ngram: int = 2, num_tokens: int = 10) -> list[int]:
    """transformers' prompt lookup: the tokens after the earliest earlier match of the last n-gram (n from `ngram` down)."""
    for n in range(ngram, 0, -1):
        tail = seq[-n:]
        for start in range(len(seq) - n):
            if seq[start : start + n] == tail:
                return seq[start + n : start + n + num_tokens]
    return []


def longest_earlier_match(query: list[int], seq: list[int]) -> tuple[int, int | None]:
    """Brute force: the longest suffix of `query` that ends before `seq`'s last token, and the token after its latest such end."""
    for length in range(len(query), 0, -1):
        suffix = query[-length:]
        ends = [e for e in range(length - 1, len(seq) - 1) if seq[e - length + 1 : e + 1] == suffix]
        if ends:
            return length, seq[max(ends) + 1]
    return 0, None


def test_long_match_agrees_with_brute_force():
    rng = random.Random(0)
    for _ in range(400):
        seq = [rng.randint(0, 3) for _ in range(rng.randint(1, 30))]
        lm = LongMatch()
        lm.extend(seq)
        state, query = lm.state, list(seq)
        for _ in range(5):
            length, token = longest_earlier_match(query, seq)
            pred = lm.predict(state)
            assert (pred.match_len, pred.token) == (length, token) if length else pred is None
            t = rng.randint(0, 3)
            state, query = lm.advance(state, t), query + [t]


def copy_case() -> tuple[list[int], list[int], list[int]]:
    """A prompt with two example answers sharing their 4-gram structure, and an answer that copies the first one."""
    rng = random.Random(1)
    structure = [40, 41, 42, 43]  # e.g. '", "priority": "' in both examples
    first = [50, 51] + structure + [rng.randint(100, 900) for _ in range(30)] + [60]
    second = [52, 53] + structure + [rng.randint(100, 900) for _ in range(30)] + [61]
    prompt = [1, 2, 3] + first + [9, 9] + second + [9, 9, 70, 71, 72]
    answer = first[:6]  # the model copies the first example up to the end of the structure both share
    return prompt, answer, first


def test_long_copy_is_followed_and_drafted_at_least_as_far_as_prompt_lookup():
    prompt, answer, copied = copy_case()
    # A corpus that knows the structure, with values of its own: its guesses must not pull the draft away.
    drafter = TascDrafter(CorpusIndex([[50, 51, 40, 41, 42, 43, v, v + 1] for v in range(5, 25, 2)], eos_id=0), SpecConfig())
    drafter.start(prompt)
    drafter.update(answer, 0)
    draft = drafter.propose(32)
    pld = pld_draft(prompt + answer)
    expected = copied[len(answer):]
    assert len(draft) >= len(pld)
    assert draft.tokens[: len(expected)] == expected[: len(draft)]  # the copy, from where it really is
    assert set(draft.sources[: len(pld)]) == {CONTEXT}


def test_long_copies_are_trusted_more_than_short_matches():
    short = prior_acceptance(CONTEXT, Prediction(5, 1.0, 4, 1))
    long = prior_acceptance(CONTEXT, Prediction(5, 1.0, 20, 1))
    assert long > 0.9 > short


def test_very_long_copies_learn_apart_from_broken_template_matches():
    from tasc.spec.drafts import AcceptanceModel

    model = AcceptanceModel()
    template = Prediction(5, 1.0, 20, 1)  # 20-token matches of an example that the model left, again and again
    for _ in range(20):
        model.observe(model.cell(CONTEXT, template), accepted=False)
    assert model.estimate(CONTEXT, template) < 0.3
    assert model.estimate(CONTEXT, Prediction(5, 1.0, 48, 1)) > 0.9  # a 48-token copy is other evidence
    assert model.cell(CONTEXT, Prediction(5, 1.0, 6, 1)) == model.cell(CONTEXT, Prediction(5, 1.0, 16, 1))  # one medium cell


def test_context_drafts_unchanged_for_short_matches():
    # Below the long-copy length the context index answers as before: the most recent 4-gram occurrence.
    drafter = TascDrafter(None, SpecConfig(use_corpus=False))
    drafter.start([5, 6, 7, 1, 9, 5, 6, 7, 2, 9, 5, 6])
    assert drafter.propose(1).tokens == [7]
    drafter.update([7], 0)
    assert drafter.propose(1).tokens == [2]


@pytest.mark.slow
@pytest.mark.real_model
def test_support_tickets_tasc_spec_not_below_prompt_lookup(real_lm):
    """The Arena's setting: base model, 2 examples in the prompt, a fresh drafter per prompt; per prompt >= pld."""
    from dataclasses import replace

    from tasc.bench.runs import method_runner
    from tasc.core.corpus import load_example, split_by_input
    from tasc.methods import Resources, get
    from tasc.spec.decode import DecodeConfig
    from tasc.spec.drafts import build_corpus_index

    train, held = split_by_input(load_example("support_tickets.jsonl"), 0.1, seed=0)
    index = build_corpus_index(real_lm.tokenizer, train.outputs, train.inputs, real_lm.prompt_format)
    lm = replace(real_lm, prompt_format=real_lm.prompt_format.with_shots(train.pairs()[:2]))
    res, config = Resources(lm, index), DecodeConfig(128)
    for text in list(dict.fromkeys(held.inputs or []))[:5]:
        ids = lm.prompt_format.prompt_ids(lm.tokenizer, text)
        pld = method_runner(get("pld"), res, config)(ids)
        spec = method_runner(get("tasc-spec"), res, config)(ids)  # a new drafter per prompt, as the Arena's
        assert len(spec.tokens) / spec.forward_passes >= len(pld.tokens) / pld.forward_passes, text
