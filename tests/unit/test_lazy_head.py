"""The lazy output head: the same accepted tokens as full logits, the head run only where acceptance reaches."""

import random

import pytest
import torch

from tasc.spec.decode import DecodeConfig, accept_greedy, generate
from tasc.spec.lazy_head import FIRST_ROWS, LazyLogits, accept_greedy_lazy, body_forward, lazy_head_supported
from tests.tiny import make_tiny_model
from tests.unit.test_decode import EOS, VOCAB, ScriptedDrafter, hf_greedy


class CountingHead(torch.nn.Module):
    """A linear head that records how many rows each call computed."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight, self.rows = weight, []

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        self.rows.append(hidden.shape[0])
        return hidden @ self.weight.T


def test_lazy_acceptance_equals_full_acceptance_and_stops_early():
    """On random states and drafts (right, wrong at any depth), the answer is accept_greedy's; rows past the
    first batch are computed only when the first batch is accepted whole."""
    rng = random.Random(5)
    torch.manual_seed(5)
    for case in range(200):
        k = rng.randrange(0, 40)
        head = CountingHead(torch.randn(VOCAB, 16))
        hidden = torch.randn(k + 1, 16)
        full = head(hidden)
        preds = full.argmax(-1).tolist()
        cut = rng.randrange(0, k + 1)  # the draft equals the model's argmax up to here
        draft = preds[:cut] + [(p + 1) % VOCAB for p in preds[cut:k]]
        head.rows.clear()
        lazy = LazyLogits(hidden, head)
        assert accept_greedy_lazy(draft, lazy) == accept_greedy(draft, full) == (cut, preds[cut]), case
        assert sum(head.rows) <= k + 1
        assert len(head.rows) == (1 if cut < FIRST_ROWS else 2), (case, cut, head.rows)


@pytest.fixture(scope="module")
def models():
    return [make_tiny_model(VOCAB, seed=s, layers=2, hidden=32) for s in range(3)]


def test_body_and_head_rows_equal_the_models_logits(models):
    """The lazy pass's rows are the logits the model's own forward returns for the same positions."""
    model = models[0]
    ids = torch.tensor([[3, 9, 4, 17, 22, 5, 8, 30, 2, 11, 12, 40]])
    with torch.inference_mode():
        full = model(ids, logits_to_keep=10).logits[0]
        lazy = body_forward(model, ids, None, 10)
        rows = lazy.head(lazy.hidden)
    torch.testing.assert_close(rows, full)


@pytest.mark.parametrize("mode", ["right", "mixed"])
def test_lazy_head_is_lossless_and_changes_no_step(models, mode):
    """With long drafts (second batches of rows included), lazy and full heads emit the same steps as plain greedy."""
    rng = random.Random(11)
    for case in range(24):
        model = models[case % len(models)]
        prompt = [rng.randrange(1, VOCAB) for _ in range(rng.randrange(1, 20))]
        budget = rng.choice([5, 17, 40])
        truth = hf_greedy(model, prompt, 60)
        runs = []
        for lazy in (True, False):
            drafter = ScriptedDrafter(truth, mode, random.Random(case))
            result = generate(model, prompt, drafter, DecodeConfig(max_new_tokens=budget, lazy_head=lazy), eos_token_id=EOS)
            runs.append((result.tokens, [(s.tokens, s.n_accepted) for s in result.steps]))
        assert runs[0] == runs[1], (mode, case)
        assert runs[0][0] == hf_greedy(model, prompt, budget), (mode, case)


def test_only_plain_head_models_take_the_lazy_path(models):
    """Llama-family models on a CPU do; a soft-capped head or an unknown family keeps the full forward."""
    model = models[0]
    assert lazy_head_supported(model)
    model.config.final_logit_softcapping = 30.0
    try:
        assert not lazy_head_supported(model)
    finally:
        model.config.final_logit_softcapping = None
    model_type = model.config.model_type
    try:
        model.config.model_type = "gemma2"
        assert not lazy_head_supported(model)
    finally:
        model.config.model_type = model_type
