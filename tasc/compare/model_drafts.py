"""Draft sources backed by a trained draft model, alone or mixed with TASC's n-gram drafts.

`DraftModelDrafter` is the classic assistant of speculative decoding (transformers'
`AssistedCandidateGenerator`) behind our three-verb interface: it keeps its own KV cache over the
prompt and the answer so far, drafts greedily token by token, and stops at `max_draft` tokens, when
its own confidence in the token it just drafted falls below `min_confidence` (the rule of
transformers' `assistant_confidence_threshold`), or when the calibrated chance that the whole draft
survives falls below `stop_cost` (one more draft pass is then not worth its cost). After the verifier's verdict its cache is cropped
back to the longest prefix that is still right. The probabilities its drafts carry are calibrated
online (`Calibration`): a draft model's softmax says little about acceptance until it has been
compared with the target's choices, and the mixer compares them with TASC's calibrated estimates.

`MixedDrafter` ("draft-model+tasc") asks the n-gram drafter first, because its drafts cost no
forward pass: when their expected accepted length (from TASC's calibrated per-token acceptance
estimates) reaches `ngram_first` tokens, they are verified as they are and the draft model is not
run at all. Otherwise the draft model drafts too, and the draft with the larger expected accepted
length is verified. On a CPU a draft-model pass costs a fair share of a target pass, so skipping it
where the corpus already knows the continuation (JSON structure, copied slot values) is the point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from tasc.spec.drafts import Draft, DraftSource

DRAFT_MODEL = "draft-model"


@dataclass
class AssistConfig:
    """How a draft model drafts and how it is mixed with n-gram drafts."""

    max_draft: int = 8  # tokens per proposal (transformers uses 20; on a CPU each one is a draft pass)
    min_confidence: float = 0.4  # stop after a token whose draft probability is below this (transformers' default)
    stop_cost: float = 0.15  # stop when P(whole draft accepted) < this: a 2x256 draft pass costs ~0.13 SmolLM2 passes on CPU
    ngram_first: float = 2.0  # mixer: verify the n-gram draft without running the draft model when it expects this many accepted tokens
    calibration_buckets: int = 10  # draft-probability classes whose acceptance rate is learnt
    prior_strength: float = 4.0  # pseudo-observations behind each class's prior (its raw probability)


def expected_accepted(probs: Sequence[float]) -> float:
    """Expected number of accepted tokens of a draft whose token i survives with probs[i] given the earlier ones.

    Example:
        probs [0.9, 0.5] -> 0.9 + 0.9 * 0.5 = 1.35.
    """
    total, survival = 0.0, 1.0
    for p in probs:
        survival *= p
        total += survival
    return total


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Calibration:
    """Online P(accepted | draft-model probability class); each class starts at its raw probability."""

    def __init__(self, buckets: int = 10, prior_strength: float = 4.0) -> None:
        self.buckets = buckets
        self.prior_strength = prior_strength
        self.accepted = [0.0] * buckets
        self.judged = [0.0] * buckets

    def _bucket(self, p: float) -> int:
        return min(int(p * self.buckets), self.buckets - 1)

    def estimate(self, p: float) -> float:
        """Calibrated acceptance chance of a token the draft model gave probability `p`."""
        b = self._bucket(p)
        return (self.accepted[b] + self.prior_strength * p) / (self.judged[b] + self.prior_strength)

    def observe(self, p: float, accepted: bool) -> None:
        """Count one verdict on a token drafted with probability `p`."""
        b = self._bucket(p)
        self.judged[b] += 1.0
        self.accepted[b] += float(accepted)


class DraftModelDrafter:
    """Greedy drafts from a small causal LM sharing the target's vocabulary.

    Args:
        model: the draft model (transformers causal LM, eval mode, on its device).
        config: draft length and confidence stop.
        eos_token_id: id(s) after which nothing is drafted.
    """

    def __init__(self, model: Any, config: AssistConfig | None = None, eos_token_id: int | Sequence[int] | None = None) -> None:
        self.model = model
        self.config = config or AssistConfig()
        self.eos = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id or ())
        self._ids: list[int] = []  # prompt + emitted answer: the text the target has committed to
        self._cached: list[int] = []  # the tokens whose keys and values are in the cache
        self._cache: Any = None
        self._last: tuple[list[int], list[float]] = ([], [])  # the last draft and its raw probabilities
        self.calibration = Calibration(self.config.calibration_buckets, self.config.prior_strength)
        self.passes = 0  # draft-model forward passes so far (for cost accounting)

    def start(self, prompt_ids: Sequence[int]) -> None:
        """Forget the previous answer; the prompt is run at the first proposal."""
        from transformers import DynamicCache

        self._ids = list(prompt_ids)
        self._cached = []
        self._cache = DynamicCache(config=self.model.config)
        self._last = ([], [])

    def _sync(self) -> list[int]:
        """Crop the cache to its longest prefix that agrees with the committed text; return the tokens to feed."""
        keep = common_prefix(self._cached, self._ids)
        if keep == len(self._ids):  # everything is cached: re-run the last token to get its logits
            keep -= 1
        if keep < len(self._cached):
            self._cache.crop(-(len(self._cached) - keep))  # transformers 5: a negative count removes that many
            self._cached = self._cached[:keep]
        return self._ids[keep:]

    def propose(self, max_len: int) -> Draft:
        """Draft greedily up to `max_len` tokens, stopping at EOS or a low-confidence token."""
        import torch

        draft = Draft()
        raw: list[float] = []
        k = min(max_len, self.config.max_draft)
        if k <= 0 or not self._ids:
            return draft
        feed = self._sync()
        survival = 1.0
        with torch.inference_mode():
            for _ in range(k):
                inputs = torch.tensor([feed], device=self.model.device)  # (1, T)
                logits = self.model(inputs, past_key_values=self._cache, use_cache=True, logits_to_keep=1).logits[0, -1]  # (V,)
                self.passes += 1
                self._cached.extend(feed)
                top_p, top_id = torch.softmax(logits.float(), -1).max(-1)
                token, p = int(top_id), float(top_p)
                draft.tokens.append(token)
                draft.sources.append(DRAFT_MODEL)
                estimate = self.calibration.estimate(p)
                draft.probs.append(estimate)
                raw.append(p)
                survival *= estimate
                # The pass that drafted this token is spent, so the token is kept; the next pass must pay off.
                if token in self.eos or p < self.config.min_confidence or survival < self.config.stop_cost:
                    break
                feed = [token]
        self._last = (list(draft.tokens), raw)
        return draft

    def update(self, emitted: Sequence[int], n_accepted: int) -> None:
        """Commit the emitted tokens and learn from them; the cache is cropped lazily at the next proposal.

        The verdict is read from the emitted tokens themselves (the draft would have kept its common
        prefix with them), so the calibration also learns when a mixer verified another draft.
        """
        tokens, raw = self._last
        n = common_prefix(tokens, emitted)
        for i, p in enumerate(raw[: n + 1]):
            if i < len(emitted):  # a token past the emitted ones was never judged
                self.calibration.observe(p, accepted=i < n)
        self._last = ([], [])
        self._ids.extend(emitted)


class MixedDrafter:
    """"draft-model+tasc": n-gram drafts when they are confident, else the likelier of both.

    Args:
        ngram: a TASC n-gram drafter (`tasc.spec.drafts.TascDrafter`).
        model: a `DraftModelDrafter`.
        config: `ngram_first` threshold.
    """

    def __init__(self, ngram: DraftSource, model: DraftModelDrafter, config: AssistConfig | None = None) -> None:
        self.ngram = ngram
        self.model = model
        self.config = config or model.config
        self._ngram_draft = Draft()

    def start(self, prompt_ids: Sequence[int]) -> None:
        """Start both drafters on the prompt."""
        self.ngram.start(prompt_ids)
        self.model.start(prompt_ids)

    def propose(self, max_len: int) -> Draft:
        """The n-gram draft if it expects >= ngram_first accepted tokens, else the likelier of the two."""
        ngram = self.ngram.propose(max_len)
        self._ngram_draft = ngram
        ngram_expected = expected_accepted(ngram.main_chain().probs)  # a tree's side branches only add to it
        if ngram_expected >= self.config.ngram_first:
            return ngram
        model = self.model.propose(max_len)
        return model if expected_accepted(model.probs) >= ngram_expected else ngram

    def update(self, emitted: Sequence[int], n_accepted: int) -> None:
        """Tell both drafters what was emitted.

        The n-gram drafter learns from its own draft even when the model's was verified: the emitted
        tokens are the target's greedy choices, so its draft would have kept exactly its common
        prefix with them.
        """
        self.ngram.update(emitted, len(self._ngram_draft.path_of(emitted)))
        self.model.update(emitted, n_accepted)
        self._ngram_draft = Draft()
