"""The bucketed static path (CUDA graphs on a GPU) on the CPU: its padding and rollback keep greedy lossless."""

import random

import pytest
import torch

from tasc.spec.decode import DecodeConfig, PrefixCache, generate, use_graphs
from tasc.spec.graphs import BUCKETS, StaticVerifier, bucket_for, graphs_available, padded
from tests.tiny import make_tiny_model
from tests.unit.test_decode import EOS, VOCAB, ScriptedDrafter, ScriptedTreeDrafter, hf_greedy


@pytest.fixture(scope="module")
def model():
    return make_tiny_model(VOCAB, seed=4, layers=2, hidden=32)


def test_buckets_and_padding():
    assert [bucket_for(w) for w in (1, 2, 3, 5, 9, 17, 33, 48)] == [1, 2, 4, 8, 16, 32, 48, 48]
    assert bucket_for(max(BUCKETS) + 1) is None  # wider passes (a long prefill) run eagerly
    assert padded([5, 6, 7], 8, pad_id=1) == [5, 6, 7, 1, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="do not fit"):
        padded([1, 2, 3], 2, 0)


def test_graphs_are_on_only_for_cuda_models_unless_asked(model):
    assert not graphs_available(model)  # a CPU model
    assert not use_graphs(model, DecodeConfig()) and use_graphs(model, DecodeConfig(graphs=True))


def test_padded_static_passes_give_the_unpadded_logits(model):
    verifier = StaticVerifier(model, max_len=64, pad_id=0)
    with torch.inference_mode():
        logits = verifier.forward([3, 9, 4, 11, 2], logits_to_keep=5)  # padded to 8
        ref = model(torch.tensor([[3, 9, 4, 11, 2]])).logits[0]
        torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-4)
        verifier.crop(-2)  # reject two: the next pass writes over them and over the pads
        nxt = verifier.forward([7, 8], logits_to_keep=2)
        ref = model(torch.tensor([[3, 9, 4, 7, 8]])).logits[0, -2:]
        torch.testing.assert_close(nxt, ref, rtol=1e-4, atol=1e-4)
    assert verifier.get_seq_length() == 5


@pytest.mark.parametrize("tree", [False, True])
def test_bucketed_static_path_is_lossless(model, tree):
    rng = random.Random(7 + tree)
    for case in range(12):
        prompt = [rng.randrange(1, VOCAB) for _ in range(rng.randrange(1, 20))]
        budget = rng.choice([1, 5, 17, 40])
        truth = hf_greedy(model, prompt, 60)
        drafter = ScriptedTreeDrafter(truth, "mixed", rng) if tree else ScriptedDrafter(truth, "mixed", rng)
        result = generate(model, prompt, drafter, DecodeConfig(max_new_tokens=budget, graphs=True), eos_token_id=EOS)
        assert result.tokens == hf_greedy(model, prompt, budget), case


def test_bucketed_path_starts_from_a_prompt_prefix(model):
    prompt = [5, 6, 7, 8, 9, 10, 11]
    prefix = PrefixCache(model, prompt[:4])
    result = generate(model, prompt, None, DecodeConfig(max_new_tokens=12, graphs=True), EOS, prefix)
    assert result.tokens == hf_greedy(model, prompt, 12)
    assert prefix.cache.get_seq_length() == 4  # the shared prefix is copied, not written


def test_a_failing_compiled_pass_falls_back_to_eager(model, caplog):
    calls = []

    def broken(**kwargs):
        calls.append(1)
        raise RuntimeError("capture failed")

    verifier = StaticVerifier(model, max_len=32, pad_id=0, forward=broken)
    with torch.inference_mode():
        logits = verifier.forward([3, 9, 4], logits_to_keep=3)
        again = verifier.forward([5], logits_to_keep=1)
        ref = model(torch.tensor([[3, 9, 4, 5]])).logits[0]
    torch.testing.assert_close(torch.cat([logits, again]), ref, rtol=1e-4, atol=1e-4)
    assert calls == [1] and "running eagerly" in caplog.text  # tried once, then eager for good
