"""The verify loop: greedy output equals plain greedy decoding; sampling keeps the model's distribution."""

import random

import pytest
import torch

from tasc.spec.decode import (
    DecodeConfig,
    PrefixCache,
    accept_sampling,
    accept_sampling_tree,
    generate,
    speculative_steps,
    warp_probs,
)
from tasc.spec.drafts import Draft, SpecConfig, TascDrafter
from tasc.spec.ngram_index import CorpusIndex
from tests.tiny import make_tiny_model

VOCAB = 64
EOS = 0


class ScriptedDrafter:
    """Proposes from a known answer: right, wrong, or a mix, to hit every branch of the loop."""

    def __init__(self, answer, mode, rng):
        self.answer, self.mode, self.rng = answer, mode, rng

    def start(self, prompt_ids):
        self.pos = 0

    def propose(self, max_len):
        k = self.rng.randrange(0, 40)  # sometimes far longer than the budget
        truth = self.answer[self.pos : self.pos + k]
        if self.mode == "right":
            tokens = truth + [EOS]  # ends in EOS, possibly past the true end
        elif self.mode == "wrong":
            tokens = [(t + 1) % VOCAB for t in truth] or [5]
        else:
            tokens = [t if self.rng.random() < 0.8 else self.rng.randrange(VOCAB) for t in truth]
        return Draft(tokens[:max_len], ["corpus"] * min(len(tokens), max_len), [0.5] * min(len(tokens), max_len))

    def update(self, emitted, n_accepted):
        self.pos += len(emitted)


class ScriptedTreeDrafter(ScriptedDrafter):
    """A tree: a main chain that goes wrong at a random depth, and side branches, one of them right."""

    def propose(self, max_len):
        k = self.rng.randrange(1, 12)
        truth = self.answer[self.pos : self.pos + k] or [5]
        cut = self.rng.randrange(0, len(truth))  # the main chain is right up to here
        main = truth[:cut] + [(t + 1) % VOCAB for t in truth[cut:]]
        tokens, parents = list(main), list(range(-1, len(main) - 1))
        for _ in range(self.rng.randrange(1, 4)):
            at = self.rng.randrange(0, cut + 1)  # branch off after `at` right tokens
            right = self.mode == "right" or self.rng.random() < 0.5
            branch = truth[at:] if right else [(t + 2) % VOCAB for t in truth[at:]]
            parent = at - 1
            for t in branch:
                tokens.append(t)
                parents.append(parent)
                parent = len(tokens) - 1
        return Draft(tokens, ["corpus"] * len(tokens), [0.5] * len(tokens), parents)


def hf_greedy(model, prompt, max_new_tokens):
    out = model.generate(
        torch.tensor([prompt]), max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=EOS, pad_token_id=EOS
    )
    return out[0, len(prompt) :].tolist()


@pytest.fixture(scope="module")
def models():
    return [make_tiny_model(VOCAB, seed=s, layers=2, hidden=32) for s in range(3)]


@pytest.mark.parametrize("mode", ["right", "wrong", "mixed"])
def test_scripted_drafts_are_lossless(models, mode):
    rng = random.Random(hash(mode) % 1000)
    for case in range(30):
        model = models[case % len(models)]
        prompt = [rng.randrange(1, VOCAB) for _ in range(rng.randrange(1, 20))]
        budget = rng.choice([1, 2, 5, 17, 40])
        reference = hf_greedy(model, prompt, budget)
        drafter = ScriptedDrafter(hf_greedy(model, prompt, 60), mode, rng)
        result = generate(model, prompt, drafter, DecodeConfig(max_new_tokens=budget), eos_token_id=EOS)
        assert result.tokens == reference, (mode, case)
        assert len(result.tokens) <= budget
        if mode == "right" and len(reference) > 4:
            assert result.forward_passes < len(reference)  # right drafts must save passes


@pytest.mark.parametrize("mode", ["right", "mixed"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_tree_drafts_are_lossless_and_side_branches_count(mode, attn):
    rng = random.Random(11)
    models = [make_tiny_model(VOCAB, seed=s, layers=2, hidden=32) for s in range(2)]
    for m in models:
        m.config._attn_implementation = attn
    for case in range(20):
        model = models[case % len(models)]
        prompt = [rng.randrange(1, VOCAB) for _ in range(rng.randrange(1, 20))]
        budget = rng.choice([1, 3, 17, 40])
        reference = hf_greedy(model, prompt, budget)
        drafter = ScriptedTreeDrafter(hf_greedy(model, prompt, 60), mode, rng)
        result = generate(model, prompt, drafter, DecodeConfig(max_new_tokens=budget), eos_token_id=EOS)
        assert result.tokens == reference, (mode, attn, case)
        if mode == "right" and len(reference) > 6:
            # the main chain is wrong from a random point; a right side branch carries on past it
            assert result.forward_passes < len(reference) - 1


def test_tree_cache_matches_a_fresh_prefill(models):
    """After side branches are accepted, the next logits equal those of a plain run over the answer."""
    model = models[2]
    prompt = [4, 9, 2]
    answer = hf_greedy(model, prompt, 30)
    drafter = ScriptedTreeDrafter(answer, "right", random.Random(5))
    steps = list(speculative_steps(model, prompt, drafter, DecodeConfig(max_new_tokens=30), eos_token_id=EOS))
    assert [t for s in steps for t in s.tokens] == answer
    assert any(s.n_accepted > 0 and s.tokens[: s.n_accepted] != s.draft[: s.n_accepted] for s in steps)  # side branches won


def test_tree_sampling_keeps_the_model_distribution():
    """Two sibling drafts tried in turn: first-token frequencies still match softmax(logits)."""
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4, 0.5], [0.3, 0.1, 0.0, 0.2, 0.9]])
    draft = Draft([1, 0], ["corpus", "context"], [0.5, 0.5], [-1, -1])  # siblings: 1 first, then 0
    gen = torch.Generator().manual_seed(0)
    n = 40000  # 4 sigma of a proportion near 0.56 is 0.01
    counts = torch.zeros(5)
    for _ in range(n):
        path, nxt = accept_sampling_tree(draft, logits, DecodeConfig(do_sample=True), gen)
        counts[draft.tokens[path[0]] if path else nxt] += 1
    assert torch.allclose(counts / n, torch.softmax(logits[0], -1), atol=0.015)


def test_tasc_drafter_is_lossless_on_random_corpora(models):
    rng = random.Random(7)
    for case in range(30):
        model = models[case % len(models)]
        prompts = [[rng.randrange(1, VOCAB) for _ in range(rng.randrange(2, 12))] for _ in range(4)]
        # Corpora of the model's own answers (high acceptance) or random sequences (low).
        if case % 2:
            corpus = [hf_greedy(model, p, 30) for p in prompts]
        else:
            corpus = [[rng.randrange(VOCAB) for _ in range(rng.randrange(1, 30))] for _ in range(10)]
        drafter = TascDrafter(CorpusIndex(corpus, eos_id=EOS))
        for prompt in prompts:
            reference = hf_greedy(model, prompt, 30)
            result = generate(model, prompt, drafter, DecodeConfig(max_new_tokens=30), eos_token_id=EOS)
            assert result.tokens == reference


def test_cost_cut_drafts_stay_lossless_and_the_curve_is_measured(models):
    from tasc.spec.decode import measure_verify_costs

    model = models[0]
    costs = measure_verify_costs(model, [3, 4, 5, 6], max_width=9, reps=2)
    assert len(costs) == 9 and costs[0] == 1.0 and all(c > 0 for c in costs)
    rng = random.Random(3)
    prompts = [[rng.randrange(1, VOCAB) for _ in range(6)] for _ in range(4)]
    corpus = [hf_greedy(model, p, 30) for p in prompts]
    # A curve where 2-3 token passes are dear and 4-5 cheap (as measured on a 2-core CPU).
    curve = (1.0, 1.6, 2.0, 1.5, 1.5, 1.7, 1.7, 1.7, 1.8)
    drafter = TascDrafter(CorpusIndex(corpus, eos_id=EOS), SpecConfig(verify_costs=curve))
    for prompt in prompts:
        result = generate(model, prompt, drafter, DecodeConfig(max_new_tokens=30), eos_token_id=EOS)
        assert result.tokens == hf_greedy(model, prompt, 30)
        assert all(len(step.draft) != 1 for step in result.steps)  # a 2-token pass never beats a 4-token one here


def test_best_length_weighs_expected_tokens_against_the_pass_cost():
    from tasc.spec.drafts import best_length

    flat = (1.0,) * 10
    assert best_length([0.9, 0.9, 0.9], flat) == 3  # free verification: keep everything
    assert best_length([0.9, 0.9, 0.9], (1.0, 4.0, 4.0, 4.0)) == 0  # at most (1 + 2.44) / 4 < 1: no draft
    assert best_length([0.9, 0.1, 0.1], (1.0, 1.5, 1.6, 1.7)) == 1  # 1.9 / 1.5 beats 1.99 / 1.6
    assert best_length([0.5, 0.9, 0.9], (1.0, 2.0, 2.0, 1.5)) == 3  # a dear 2-token pass, a cheap 4-token one
    assert best_length([], flat) == 0


def test_steps_account_for_every_token(models):
    model = models[0]
    prompt = [3, 4, 5]
    answer = hf_greedy(model, prompt, 25)
    drafter = TascDrafter(CorpusIndex([answer], eos_id=EOS))
    steps = list(speculative_steps(model, prompt, drafter, DecodeConfig(max_new_tokens=25), eos_token_id=EOS))
    assert [t for s in steps for t in s.tokens] == answer
    assert steps[-1].finished and not any(s.finished for s in steps[:-1])
    for s in steps:
        assert len(s.sources) == len(s.tokens)
        assert s.sources[: s.n_accepted] == ["corpus"] * s.n_accepted or "context" in s.sources
        assert s.elapsed_s >= s.forward_s >= 0
    assert sum(s.n_accepted for s in steps) >= len(answer) - 3  # its own answer is drafted whole


class AnswerDrafter(ScriptedDrafter):
    """Drafts the rest of a known answer whole, from the very first pass."""

    def __init__(self, answer):
        super().__init__(answer, "right", random.Random(0))

    def propose(self, max_len):
        tokens = self.answer[self.pos : self.pos + max_len]
        return Draft(tokens, ["corpus"] * len(tokens), [0.9] * len(tokens))


def test_the_prompt_pass_verifies_a_draft_of_the_answer_start(models):
    """The first pass runs the prompt and the draft together: a right draft of the whole answer takes one pass."""
    model = models[0]
    prompt = [3, 4, 5, 6]
    answer = hf_greedy(model, prompt, 20)
    steps = list(speculative_steps(model, prompt, AnswerDrafter(answer), DecodeConfig(max_new_tokens=20), eos_token_id=EOS))
    assert len(steps) == 1 and steps[0].tokens == answer
    assert steps[0].n_accepted == len(answer) - 1  # the model adds the last token itself
    wrong = [(t + 1) % VOCAB for t in answer]
    result = generate(model, prompt, AnswerDrafter(wrong), DecodeConfig(max_new_tokens=20), eos_token_id=EOS)
    assert result.tokens == answer and result.steps[0].n_accepted == 0  # a wrong start is rejected, not emitted


def test_prefix_cache_gives_the_same_answers_and_is_not_changed_by_them(models):
    rng = random.Random(5)
    model = models[2]
    shared = [11, 12, 13, 14, 15, 16]
    prefix = PrefixCache(model, shared)
    length = prefix.cache.get_seq_length()
    for case in range(12):
        prompt = shared + [rng.randrange(1, VOCAB) for _ in range(rng.randrange(1, 8))]
        drafter = ScriptedDrafter(hf_greedy(model, prompt, 60), "mixed", rng) if case % 2 else None
        result = generate(model, prompt, drafter, DecodeConfig(max_new_tokens=24), EOS, prefix)
        assert result.tokens == hf_greedy(model, prompt, 24), case
        assert prefix.cache.get_seq_length() == length  # every answer works on its own fork
    assert prefix.covers(shared + [1]) == len(shared)
    assert prefix.covers(shared) == 0  # one prompt token must stay to give the first answer token's logits
    assert prefix.covers([11, 12, 99, 14, 15, 16, 1]) == 0  # not a prefix of this prompt
    assert PrefixCache(model, []).covers([1, 2]) == 0
    other = [20, 21, 22]  # a prompt it does not cover is prefilled whole
    assert generate(model, other, None, DecodeConfig(max_new_tokens=10), EOS, prefix).tokens == hf_greedy(model, other, 10)


def test_cache_rollback_matches_a_fresh_prefill(models):
    """After rejected drafts the cache must equal one built from the accepted tokens alone."""
    model = models[1]
    prompt = [7, 8, 9, 10]
    rng = random.Random(3)
    answer = hf_greedy(model, prompt, 40)
    drafter = ScriptedDrafter(answer, "mixed", rng)
    result = generate(model, prompt, drafter, DecodeConfig(max_new_tokens=40), eos_token_id=EOS)
    seq = torch.tensor([prompt + result.tokens])
    with torch.inference_mode():
        full = model(seq).logits[0, -1]
    assert result.tokens == answer
    assert torch.isfinite(full).all()


def test_sampling_matches_model_distribution():
    """Speculative sampling with a fixed draft: first-token frequencies match softmax(logits)."""
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4, 0.5]])
    config = DecodeConfig(do_sample=True, temperature=1.0)
    gen = torch.Generator().manual_seed(1)
    n = 20000
    counts = torch.zeros(5)
    for _ in range(n):
        n_acc, nxt = accept_sampling([1], logits, config, gen)
        counts[1 if n_acc == 1 else nxt] += 1
    expected = torch.softmax(logits[0], -1)
    observed = counts / n
    # 4 sigma of a binomial proportion at n=20000 is below 0.015
    assert torch.allclose(observed, expected, atol=0.015), (observed, expected)


def test_sampling_end_to_end_distribution(models):
    """First two tokens of full speculative sampling runs follow the model's joint distribution."""
    model = make_tiny_model(8, seed=5, layers=1, hidden=16)
    prompt = [1, 2]
    with torch.inference_mode():
        p1 = torch.softmax(model(torch.tensor([prompt])).logits[0, -1], -1)
        # Marginal of the second token, which goes through draft acceptance: sum_t1 p(t1) p(t2 | t1).
        p2 = sum(p1[t] * torch.softmax(model(torch.tensor([prompt + [t]])).logits[0, -1], -1) for t in range(8))
    # A low stop threshold keeps drafts coming although a random model rejects most of them.
    drafter = TascDrafter(CorpusIndex([[3, 3, 3], [3, 4]] * 5 + [list(range(8))], eos_id=EOS), SpecConfig(token_cost=0.06))
    first, second = torch.zeros(8), torch.zeros(8)
    n = 1500
    accepted = 0
    for seed in range(n):
        config = DecodeConfig(max_new_tokens=3, do_sample=True, seed=seed)
        result = generate(model, prompt, drafter, config, eos_token_id=None)
        first[result.tokens[0]] += 1
        second[result.tokens[1]] += 1
        accepted += result.accepted
    assert accepted > 100  # drafts were really judged, not skipped
    assert torch.allclose(first / n, p1, atol=0.05)
    assert torch.allclose(second / n, p2, atol=0.05)


def test_top_p_keeps_the_nucleus():
    probs = warp_probs(torch.tensor([[3.0, 2.0, 0.0, -5.0]]), temperature=1.0, top_p=0.8)
    assert probs[0, 2] == 0 and probs[0, 3] == 0 and abs(probs.sum().item() - 1) < 1e-6


@pytest.mark.parametrize("static_cache", [True, False])
def test_both_kv_caches_are_lossless_through_chains_and_trees(models, static_cache):
    """The preallocated cache (default) and transformers' DynamicCache give plain greedy's answer alike."""
    rng = random.Random(21)
    for case in range(16):
        model = models[case % len(models)]
        prompt = [rng.randrange(1, VOCAB) for _ in range(rng.randrange(1, 20))]
        budget = rng.choice([1, 4, 17, 40])
        truth = hf_greedy(model, prompt, 60)
        drafter = (ScriptedTreeDrafter(truth, "mixed", rng) if case % 2 else ScriptedDrafter(truth, "mixed", rng))
        config = DecodeConfig(max_new_tokens=budget, static_cache=static_cache)
        assert generate(model, prompt, drafter, config, eos_token_id=EOS).tokens == hf_greedy(model, prompt, budget), case


def test_steps_account_for_their_time(models):
    """Each step splits its time into phases; the first carries the per-answer setup; none exceeds the wall time."""
    model = models[0]
    prompt = [3, 5, 7, 11]
    steps = list(speculative_steps(model, prompt, ScriptedDrafter(hf_greedy(model, prompt, 30), "mixed", random.Random(2)),
                                   DecodeConfig(max_new_tokens=20), eos_token_id=EOS))
    assert steps[0].setup_s > 0 and all(s.setup_s == 0 for s in steps[1:])
    for s in steps:
        assert min(s.draft_s, s.forward_s, s.accept_s, s.update_s) >= 0 and s.forward_s > 0
    assert sum(s.busy_s for s in steps) <= steps[-1].elapsed_s
