"""The verify loop: greedy output equals plain greedy decoding; sampling keeps the model's distribution."""

import random

import pytest
import torch

from tasc.decode import DecodeConfig, accept_sampling, generate, speculative_steps, warp_probs
from tasc.drafts import Draft, TascDrafter
from tasc.ngram_index import CorpusIndex
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
    drafter = TascDrafter(CorpusIndex([[3, 3, 3], [3, 4]] * 5 + [list(range(8))], eos_id=EOS))
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
