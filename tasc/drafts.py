"""Draft sources for speculative decoding: the strategy interface, the corpus/context mixer.

A draft source proposes the tokens it expects the model to write next; the verify loop
(`tasc.decode`) checks them in one forward pass. The interface is three verbs, in the spirit of
transformers' `CandidateGenerator`:

    start(prompt_ids)            a new answer begins after this prompt
    propose(max_len) -> Draft    tokens expected next (an empty draft means a plain decoding step)
    update(emitted, n_accepted)  the tokens the model emitted, of which the first n_accepted were draft

`TascDrafter` builds the draft one token at a time: at each position it asks every n-gram index
(corpus, context) for its next-token guess, scores each guess by an acceptance probability that it
learns online per (source, match length, frequency share), takes the best, and stops when the
chance that the whole draft survives falls below the cost of verifying one more token. So drafts
switch source mid-way — JSON structure from the corpus, a slot value copied from the prompt, back to
the corpus — and grow long only where they are likely to be accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Collection, Protocol, Sequence

from tasc.ngram_index import CorpusIndex, ContextIndex, Prediction, normalised_keys

CORPUS, CONTEXT, MODEL = "corpus", "context", "model"


@dataclass
class Draft:
    """Tokens proposed for one verify pass.

    Attributes:
        tokens: the proposed token ids, in order.
        sources: per token, the index it came from ("corpus" or "context").
        probs: per token, the estimated chance it is accepted given all earlier ones were.
    """

    tokens: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tokens)


class DraftSource(Protocol):
    """What the verify loop needs from a drafter."""

    def start(self, prompt_ids: Sequence[int]) -> None:
        """Begin a new answer after `prompt_ids`."""

    def propose(self, max_len: int) -> Draft:
        """Propose up to `max_len` next tokens (empty: take a plain step)."""

    def update(self, emitted: Sequence[int], n_accepted: int) -> None:
        """Record the tokens the model emitted; the first `n_accepted` were draft tokens."""


class NoDraft:
    """Plain decoding: never proposes anything."""

    def start(self, prompt_ids: Sequence[int]) -> None:
        """Nothing to prepare."""

    def propose(self, max_len: int) -> Draft:
        """Always the empty draft."""
        return Draft()

    def update(self, emitted: Sequence[int], n_accepted: int) -> None:
        """Nothing to learn."""


@dataclass
class SpecConfig:
    """How TASC-spec drafts.

    The stop rule: keep extending while P(every draft token so far is accepted) > token_cost,
    because one more draft token is worth its expected acceptance and costs `token_cost` of a
    single-token forward pass (measured on 2 CPU cores for SmolLM2-135M: a 16-token verify pass
    costs about 1.6-2.3 single passes, i.e. 0.04-0.08 per extra token; on a GPU it is near 0).
    """

    max_draft: int = 32  # hard cap on tokens per verify pass
    token_cost: float = 0.06  # stop when the whole-draft acceptance chance drops below this
    use_corpus: bool = True  # draw on the task corpus index
    use_context: bool = True  # draw on n-grams of the prompt and the answer so far
    context_ngram: int = 4  # longest context n-gram used as a key
    normalise_context: bool = True  # match context tokens ignoring leading space and case
    prior_strength: float = 4.0  # pseudo-observations behind each prior acceptance estimate
    corpus_weight: float = 1.0  # multiplies corpus guesses' scores (mixer weight)
    context_weight: float = 1.0  # multiplies context guesses' scores (mixer weight)


def _len_bucket(match_len: int) -> int:
    """Coarse match-length class: 1, 2, 3-4, 5-8, 9-16, 17+."""
    return 0 if match_len <= 1 else 1 if match_len == 2 else 2 if match_len <= 4 else 3 if match_len <= 8 else 4 if match_len <= 16 else 5


def _share_bucket(share: float) -> int:
    """Coarse frequency-share class of a corpus guess."""
    return 0 if share < 0.3 else 1 if share < 0.6 else 2 if share < 0.9 else 3 if share < 0.99 else 4


def prior_acceptance(source: str, pred: Prediction) -> float:
    """Acceptance chance assumed before any observation, from match length and share."""
    reliability = 1.0 - 0.5 ** pred.match_len  # 0.5, 0.75, 0.88, ... longer matches agree more
    if source == CONTEXT:
        return 0.2 + 0.6 * reliability
    return pred.share * reliability


class AcceptanceModel:
    """Online estimate of P(draft token accepted) per (source, match length, share) cell.

    Each cell starts from `prior_acceptance` worth `prior_strength` observations and then counts
    what the verifier did with the tokens proposed from that cell: accepted, or rejected (tokens
    after the first rejection were never judged and are not counted).
    """

    def __init__(self, prior_strength: float = 4.0) -> None:
        self.prior_strength = prior_strength
        self._accepted: dict[tuple[str, int, int], float] = {}
        self._proposed: dict[tuple[str, int, int], float] = {}

    @staticmethod
    def cell(source: str, pred: Prediction) -> tuple[str, int, int]:
        """The statistics cell a guess falls in."""
        return source, _len_bucket(pred.match_len), _share_bucket(pred.share)

    def estimate(self, source: str, pred: Prediction) -> float:
        """Posterior mean acceptance chance of a guess."""
        cell = self.cell(source, pred)
        k = self.prior_strength
        return (self._accepted.get(cell, 0.0) + k * prior_acceptance(source, pred)) / (self._proposed.get(cell, 0.0) + k)

    def observe(self, cell: tuple[str, int, int], accepted: bool) -> None:
        """Count one verified draft token."""
        self._proposed[cell] = self._proposed.get(cell, 0.0) + 1.0
        if accepted:
            self._accepted[cell] = self._accepted.get(cell, 0.0) + 1.0


class TascDrafter:
    """TASC-spec drafter: corpus n-grams mixed with context n-grams, adaptive length.

    Args:
        corpus_index: index of the task's outputs (None: context only, like prompt lookup).
        config: drafting parameters.
        context_keys: normalised key per token id (see `ngram_index.normalised_keys`).
        stop_ids: tokens that end an answer (default: the corpus index's EOS); a draft ends with one,
            since the verify loop would discard whatever follows it.
    """

    def __init__(
        self,
        corpus_index: CorpusIndex | None,
        config: SpecConfig | None = None,
        context_keys: Sequence[int] | None = None,
        stop_ids: Collection[int] | None = None,
    ) -> None:
        self.config = config or SpecConfig()
        if stop_ids is None:
            stop_ids = () if corpus_index is None or corpus_index.eos_id is None else (corpus_index.eos_id,)
        self.stop_ids = frozenset(stop_ids)
        self.corpus = corpus_index if self.config.use_corpus else None
        self.context_keys = context_keys if self.config.normalise_context else None
        self.acceptance = AcceptanceModel(self.config.prior_strength)
        self.context = ContextIndex(self.config.context_ngram, self.context_keys)
        self._corpus_state: tuple[int, int] = (0, 0)
        self._last_cells: list[tuple[str, int, int]] = []

    def start(self, prompt_ids: Sequence[int]) -> None:
        """Index the prompt; the corpus match starts at "start of answer"."""
        self.context = ContextIndex(self.config.context_ngram, self.context_keys)
        self.context.extend(prompt_ids)
        self._corpus_state = self.corpus.start_state() if self.corpus else (0, 0)
        self._last_cells = []

    def _guesses(self, corpus_state: tuple[int, int], context_state: tuple[int, ...]) -> list[tuple[float, str, Prediction]]:
        """Scored next-token guesses of every enabled index, best first."""
        cfg = self.config
        guesses = []
        if self.corpus is not None:
            pred = self.corpus.predict(corpus_state)
            if pred is not None:
                guesses.append((cfg.corpus_weight * self.acceptance.estimate(CORPUS, pred), CORPUS, pred))
        if cfg.use_context:
            pred = self.context.predict(context_state)
            if pred is not None:
                guesses.append((cfg.context_weight * self.acceptance.estimate(CONTEXT, pred), CONTEXT, pred))
        guesses.sort(key=lambda g: g[0], reverse=True)
        return guesses

    def propose(self, max_len: int) -> Draft:
        """Extend a draft token by token while its survival chance beats the verify cost."""
        cfg = self.config
        draft = Draft()
        cells: list[tuple[str, int, int]] = []
        corpus_state = self._corpus_state
        context_state = self.context.tail_keys()
        survival = 1.0
        for _ in range(min(max_len, cfg.max_draft)):
            guesses = self._guesses(corpus_state, context_state)
            if not guesses:
                break
            score, source, pred = guesses[0]
            # When both indexes guess the same token, either being right is enough.
            for other_score, _, other in guesses[1:]:
                if other.token == pred.token:
                    score = 1.0 - (1.0 - min(score, 1.0)) * (1.0 - min(other_score, 1.0))
            p = min(score, 0.999)
            if survival * p < cfg.token_cost:
                break
            survival *= p
            draft.tokens.append(pred.token)
            draft.sources.append(source)
            draft.probs.append(p)
            cells.append(self.acceptance.cell(source, pred))
            if self.corpus is not None:
                corpus_state = self.corpus.advance(corpus_state, pred.token)
            context_state = self.context.advance(context_state, pred.token)
            if pred.token in self.stop_ids:
                break  # e.g. the prompt's own end-of-turn token, which the context would continue past
        self._last_cells = cells
        return draft

    def update(self, emitted: Sequence[int], n_accepted: int) -> None:
        """Learn from the verdict on the last draft and index the emitted tokens."""
        for i, cell in enumerate(self._last_cells[: n_accepted + 1]):
            self.acceptance.observe(cell, accepted=i < n_accepted)
        self._last_cells = []
        if self.corpus is not None:
            self._corpus_state = self.corpus.walk(self._corpus_state, emitted)
        self.context.extend(emitted)


def build_corpus_index(tokenizer: Any, outputs: Sequence[str]) -> CorpusIndex:
    """Tokenise corpus outputs with the target's tokenizer and index them (EOS marks an answer's end)."""
    sequences = tokenizer(list(outputs), add_special_tokens=False)["input_ids"] if outputs else []
    return CorpusIndex(sequences, eos_id=tokenizer.eos_token_id)


def make_drafter(
    method: str,
    tokenizer: Any,
    corpus_index: CorpusIndex | None = None,
    config: SpecConfig | None = None,
    context_keys: Sequence[int] | None = None,
) -> DraftSource:
    """A drafter by method name: "greedy" (none), "tasc-spec", "tasc-corpus", "tasc-context"."""
    config = config or SpecConfig()
    if method == "greedy":
        return NoDraft()
    if method in ("tasc-spec", "tasc-corpus") and corpus_index is None:
        raise ValueError(f"method {method!r} needs a corpus index")
    if method == "tasc-corpus":
        config = SpecConfig(**{**config.__dict__, "use_context": False})
    elif method == "tasc-context":
        config = SpecConfig(**{**config.__dict__, "use_corpus": False})
    elif method != "tasc-spec":
        raise ValueError(f"unknown draft method {method!r}")
    if context_keys is None and config.use_context and config.normalise_context:
        context_keys = normalised_keys(tokenizer)
    stop_ids = () if tokenizer.eos_token_id is None else (tokenizer.eos_token_id,)
    return TascDrafter(corpus_index, config, context_keys, stop_ids)
