"""Draft sources for speculative decoding: the strategy interface, the corpus/context mixer.

A draft source proposes the tokens it expects the model to write next; the verify loop
(`tasc.spec.decode`) checks them in one forward pass. The interface is three verbs, in the spirit of
transformers' `CandidateGenerator`:

    start(prompt_ids)            a new answer begins after this prompt
    propose(max_len) -> Draft    tokens expected next (an empty draft means a plain decoding step)
    update(emitted, n_accepted)  the tokens the model emitted, of which the first n_accepted were draft

`TascDrafter` builds the draft one token at a time: at each position it asks every n-gram index
(corpus, context) for its next-token guess, scores each guess by an acceptance probability that it
learns online per (source, match length, frequency share), takes the best, and stops when the
chance that the whole draft survives falls below the cost of verifying one more token. So drafts
switch source mid-way — JSON structure from the corpus, a slot value copied from the prompt, back to
the corpus — and grow long only where they are likely to be accepted. A context match longer than the
n-gram keys is followed by `LongMatch` wherever it really is, and its length counts as evidence: a
copy that has held for m tokens (an answer copying its prompt) is trusted like m + 1 : 1 odds, so
such drafts run to the pass's cap, at least as far as prompt lookup's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Protocol, Sequence

from tasc.core.prompts import PromptFormat
from tasc.spec.history import AnswerHistory
from tasc.spec.ngram_index import ContextIndex, CorpusIndex, LongMatch, NeighbourIndex, Prediction, normalised_keys, word_start_ids
from tasc.spec.spelling import SpellingCopy, spelling_copy_for
from tasc.spec.value_copy import WORD, NextValueCopy, ValueStarts, next_value_copy_for

CORPUS, CONTEXT, MODEL = "corpus", "context", "model"
NEIGHBOURS = "neighbours"  # the corpus rows with inputs like the prompt; reported as "corpus"
HISTORY = "history"  # the model's own earlier answers to prompts like this one (`tasc.spec.history`); reported as such
SPELLING = "spelling"  # prompt words copied in the answer's own tokens (`tasc.spec.spelling`); reported as "context"
VALUE = "value"  # the prompt word a JSON value starts with (`tasc.spec.value_copy`); reported as "context"
SPELLING_TAIL = 8  # answer tokens whose text the spelling copy looks up
KEY = "key"  # the key of the value the next prompt word starts (`tasc.spec.value_copy`); reported as "corpus"
REPORTED_AS = {NEIGHBOURS: CORPUS, SPELLING: CONTEXT, VALUE: CONTEXT, KEY: CORPUS}  # internal sources as a Step reports them


@dataclass
class Draft:
    """Tokens proposed for one verify pass: a chain, or a tree of alternatives.

    Attributes:
        tokens: the proposed token ids.
        sources: per token, the index it came from ("corpus" or "context").
        probs: per token, the estimated chance it is accepted given its ancestors were.
        parents: None for a chain (token i follows token i - 1); for a tree, per token the index of
            the token it follows, -1 for the first position. Parents come before their children, and
            the main chain (0, 1, 2, ...) comes first, so a chain's verdict is a prefix of it.
    """

    tokens: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    parents: list[int] | None = None

    def __len__(self) -> int:
        return len(self.tokens)

    def parent_list(self) -> list[int]:
        """Parents of every token (a chain's are i - 1)."""
        return list(range(-1, len(self.tokens) - 1)) if self.parents is None else list(self.parents)

    def depths(self) -> list[int]:
        """1-based depth of every token (its position in the answer after the pending token)."""
        depth: list[int] = []
        for parent in self.parent_list():
            depth.append(1 if parent < 0 else depth[parent] + 1)
        return depth

    def limit_depth(self, max_depth: int) -> "Draft":
        """The draft without tokens deeper than `max_depth` (no more can be emitted)."""
        if max_depth <= 0:
            return Draft()
        if self.parents is None:
            return Draft(self.tokens[:max_depth], self.sources[:max_depth], self.probs[:max_depth])
        keep = [i for i, d in enumerate(self.depths()) if d <= max_depth]
        new_index = {old: new for new, old in enumerate(keep)}
        return Draft([self.tokens[i] for i in keep], [self.sources[i] for i in keep], [self.probs[i] for i in keep],
                     [new_index.get(self.parents[i], -1) for i in keep])

    def main_chain(self) -> "Draft":
        """The first chain of the draft (tokens 0, 1, 2, ... while each follows the one before)."""
        if self.parents is None:
            return self
        n = 0
        while n < len(self.parents) and self.parents[n] == n - 1:
            n += 1
        return Draft(self.tokens[:n], self.sources[:n], self.probs[:n])

    def children(self) -> dict[int, list[int]]:
        """Indices of each token's children, in draft order (-1: the tokens at the first position)."""
        children: dict[int, list[int]] = {}
        for i, parent in enumerate(self.parent_list()):
            children.setdefault(parent, []).append(i)
        return children

    def walk(self, token_after: Callable[[int, int], int | None]) -> list[int]:
        """Indices of the tokens on the path that, from the root, always follows the child whose token
        is `token_after(node, depth)` (node -1 is the root); the path ends where no child matches."""
        children = self.children()
        path: list[int] = []
        node = -1
        while True:
            wanted = token_after(node, len(path))
            child = next((c for c in children.get(node, ()) if self.tokens[c] == wanted), None)
            if child is None:
                return path
            path.append(child)
            node = child

    def path_of(self, accepted: Sequence[int]) -> list[int]:
        """Indices of the draft tokens that spell `accepted`, walking from the root."""
        return self.walk(lambda node, depth: accepted[depth] if depth < len(accepted) else None)


class DraftSource(Protocol):
    """What the verify loop needs from a drafter."""

    def start(self, prompt_ids: Sequence[int]) -> None:
        """Begin a new answer after `prompt_ids`."""

    def propose(self, max_len: int) -> Draft:
        """Propose up to `max_len` next tokens, as a chain or a tree (empty: take a plain step)."""

    def update(self, emitted: Sequence[int], n_accepted: int) -> None:
        """Record the tokens the model emitted; the first `n_accepted` were draft tokens (one path of a tree)."""


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

    The stop rule: keep extending while the estimated P(every draft token so far is accepted) >
    token_cost. One more draft token is worth its chance of acceptance and costs a share of a
    single-token pass (2 CPU cores, SmolLM2-135M: about 0.04 per extra token; on a GPU near 0). The
    estimates run high when multiplied down a chain (SNIPS, 300 passes: an estimated survival of
    0.1-0.2 was accepted 2% of the time, 0.5-0.6 26%), so the threshold sits above the true cost:
    0.2 against 0.06 gave +4.7% tokens/s on SNIPS and +3.6% on E2E with held-out names, 0.35 -12% on E2E.
    """

    max_draft: int = 32  # hard cap on tokens per verify pass
    token_cost: float = 0.2  # stop when the estimated whole-draft acceptance chance drops below this
    use_corpus: bool = True  # draw on the task corpus index
    use_context: bool = True  # draw on n-grams of the prompt and the answer so far
    context_ngram: int = 4  # longest context n-gram used as a key
    normalise_context: bool = True  # match context tokens ignoring leading space and case
    prior_strength: float = 4.0  # pseudo-observations behind each prior acceptance estimate
    corpus_weight: float = 1.0  # multiplies corpus guesses' scores (mixer weight)
    context_weight: float = 1.0  # multiplies context guesses' scores (mixer weight)
    max_branches: int = 0  # side branches of a tree draft (0: a chain); each starts at a runner-up guess
    neighbours: int = 8  # corpus rows with inputs like the prompt whose answers are a source (0: off)
    neighbour_window: int = 64  # the prompt's last tokens, where the task input is, that find them
    spelling: bool = True  # continue a copied prompt word across tokenisations (`tasc.spec.spelling`; needs use_context)
    copy_values: bool = True  # inside a JSON value copied from the prompt, drop guesses the prompt does not continue (needs spelling)
    value_starts: bool = True  # guess the prompt word a JSON value starts with, and its key (`tasc.spec.value_copy`; needs use_context, corpus inputs)
    history: int = 256  # the model's finished answers kept as a draft source (`tasc.spec.history`; 0: off; needs use_corpus)
    history_neighbours: int = 8  # of those, the answers to the prompts most like this one that draft
    # Measured cost of a verify pass of n tokens (index n - 1), relative to one token
    # (`decode.measure_verify_costs`). When set, a chain draft is cut where expected tokens per unit
    # of cost peak, instead of by `token_cost`.
    verify_costs: tuple[float, ...] | None = None

    def check(self) -> "SpecConfig":
        """Raise ValueError naming the first setting out of its range; return self."""
        whole = {"max_draft": (1, 256), "context_ngram": (1, 64), "max_branches": (0, 16), "neighbours": (0, 256),
                 "neighbour_window": (1, 4096), "history": (0, 65536), "history_neighbours": (0, 256)}
        for name, (lo, hi) in whole.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"TASC-spec {name} must be a whole number from {lo} to {hi}, got {value!r}")
        if not 0 <= self.token_cost < 1 or not self.prior_strength > 0:
            raise ValueError(f"TASC-spec token_cost must be in [0, 1) and prior_strength above 0, "
                             f"got {self.token_cost!r} and {self.prior_strength!r}")
        return self


LONG_COPY = 4  # context matches longer than this come from `LongMatch` (the context index keys n-grams up to 4 tokens)
LONG_COPY_LEARNT = 17  # context matches this long have acceptance statistics of their own
COST_FLOOR = 0.01
COPY_KEY_RATE = 0.9  # a key whose corpus values start with a word of their input this often holds copies (SNIPS: ~1.0 or 0.0)  # with a verify-cost curve, chains grow while their survival chance beats this, then are cut


def best_length(probs: Sequence[float], verify_costs: Sequence[float]) -> int:
    """Draft tokens to keep: the k maximising expected tokens per pass (1 + survival sum) over the pass's cost.

    `probs` are the chain's per-token acceptance estimates; a pass of k draft tokens verifies k + 1
    tokens and costs `verify_costs[k]` (past the curve's end: its last value).
    """
    best_k, best_value, expected, survival = 0, 1.0 / verify_costs[0], 1.0, 1.0
    for k, p in enumerate(probs, start=1):
        survival *= p
        expected += survival
        cost = verify_costs[min(k, len(verify_costs) - 1)]
        if expected / cost > best_value:
            best_k, best_value = k, expected / cost
    return best_k


def _len_bucket(match_len: int) -> int:
    """Coarse match-length class: 1, 2, 3-4, 5-8, 9-16, 17+."""
    return 0 if match_len <= 1 else 1 if match_len == 2 else 2 if match_len <= 4 else 3 if match_len <= 8 else 4 if match_len <= 16 else 5


def _share_bucket(share: float) -> int:
    """Coarse frequency-share class of a corpus guess."""
    return 0 if share < 0.3 else 1 if share < 0.6 else 2 if share < 0.9 else 3 if share < 0.99 else 4


def _support_bucket(support: int) -> int:
    """Coarse count of the occurrences behind a guess: 1, 2-3, 4-15, 16+."""
    return 0 if support <= 1 else 1 if support <= 3 else 2 if support <= 15 else 3


Cell = tuple[str, int, int, int, int]  # (source, match length class, share class, support class, starts a word)


def prior_acceptance(source: str, pred: Prediction) -> float:
    """Acceptance chance assumed before any observation, from match length and share."""
    if source in (VALUE, KEY):
        return pred.share  # the corpus's rate of this word starting a value
    reliability = 1.0 - 0.5 ** pred.match_len  # 0.5, 0.75, 0.88, ... longer matches agree more
    if source in (CONTEXT, SPELLING):
        if pred.match_len > LONG_COPY:  # a verbatim copy that has held for m tokens goes on with odds m + 1 : 1 (Laplace)
            return 1.0 - 1.0 / (pred.match_len + 2)
        return 0.2 + 0.6 * reliability
    return pred.share * reliability


class AcceptanceModel:
    """Online estimate of P(draft token accepted) per cell: source, match length, share, support, word start.

    Each cell starts from `prior_acceptance` worth `prior_strength` observations and then counts
    what the verifier did with the tokens proposed from that cell: accepted, or rejected (tokens
    after the first rejection were never judged and are not counted).

    Support (corpus sources) and word starts (copies) split cells that behave apart. A corpus guess with share 1.0 from one row
    (inside a slot value the corpus happened to contain: `"old school` -> ` metal`) is right far less
    often than one from hundreds of rows (JSON structure). A copy that continues inside a word (`dig` ->
    `ging`) is almost always right, one that starts the next word (`nuba` -> ` to`) is where a copied
    value ends. Splitting both ways cut simulated pass time 8% on SNIPS and 3% on E2E (stop 29).

    Args:
        prior_strength: pseudo-observations behind each cell's prior.
        word_starts: token ids whose text starts a new word (a leading space or newline).
    """

    def __init__(self, prior_strength: float = 4.0, word_starts: Collection[int] = frozenset()) -> None:
        self.prior_strength = prior_strength
        self.word_starts = word_starts
        self._accepted: dict[Cell, float] = {}
        self._proposed: dict[Cell, float] = {}

    def cell(self, source: str, pred: Prediction) -> Cell:
        """The statistics cell a guess falls in."""
        length, share = pred.match_len, _share_bucket(pred.share)
        if source == CONTEXT and length > LONG_COPY:
            # Medium context matches are often template text repeating (few-shot examples): they learn as one
            # cell, so a few failed copies of an example teach them all at once. Long copies learn by their
            # length's doubling: a 40-token copy is not judged by the 17-token template matches that broke.
            if length < LONG_COPY_LEARNT:
                return source, _len_bucket(LONG_COPY + 1), share, 0, 0
            return source, _len_bucket(LONG_COPY_LEARNT) + (length // LONG_COPY_LEARNT).bit_length() - 1, share, 0, 0
        if source in (CONTEXT, SPELLING):  # copies: one occurrence each, so the word start is what tells them apart
            return source, _len_bucket(length), share, 0, int(pred.token in self.word_starts)
        return source, _len_bucket(length), share, _support_bucket(pred.support), 0

    def estimate(self, source: str, pred: Prediction) -> float:
        """Posterior mean acceptance chance of a guess."""
        cell = self.cell(source, pred)
        k = self.prior_strength
        return (self._accepted.get(cell, 0.0) + k * prior_acceptance(source, pred)) / (self._proposed.get(cell, 0.0) + k)

    def observe(self, cell: Cell, accepted: bool) -> None:
        """Count one verified draft token."""
        self._proposed[cell] = self._proposed.get(cell, 0.0) + 1.0
        if accepted:
            self._accepted[cell] = self._accepted.get(cell, 0.0) + 1.0


class TascDrafter:
    """TASC-spec drafter: corpus n-grams mixed with context n-grams, adaptive length, optional tree.

    Four indexes guess the next token: the whole corpus (what answers usually say), the answers of
    the corpus rows whose inputs are most like this prompt (when the corpus has inputs), the model's
    own answers to earlier prompts like this one (`tasc.spec.history`), and the context (prompt and
    answer so far). Drafted tokens of the first two are reported as "corpus", of the third as "history".

    Args:
        corpus_index: index of the task's outputs (None: context only, like prompt lookup).
        config: drafting parameters.
        context_keys: normalised key per token id (see `ngram_index.normalised_keys`).
        stop_ids: tokens that end an answer (default: the corpus index's EOS); a draft ends with one,
            since the verify loop would discard whatever follows it.
        spelling: the cross-tokenisation copy of prompt words (None: off).
        values: the guesser of the prompt word a JSON value starts with (None: off).
        word_starts: token ids that start a word (`ngram_index.word_start_ids`), a feature of the acceptance cells.
    """

    def __init__(
        self,
        corpus_index: CorpusIndex | None,
        config: SpecConfig | None = None,
        context_keys: Sequence[int] | None = None,
        stop_ids: Collection[int] | None = None,
        spelling: SpellingCopy | None = None,
        values: NextValueCopy | None = None,
        word_starts: Collection[int] = frozenset(),
    ) -> None:
        self.config = config or SpecConfig()
        if stop_ids is None:
            stop_ids = () if corpus_index is None or corpus_index.eos_id is None else (corpus_index.eos_id,)
        self.stop_ids = frozenset(stop_ids)
        self.corpus = corpus_index if self.config.use_corpus else None
        self.context_keys = context_keys if self.config.normalise_context else None
        self.acceptance = AcceptanceModel(self.config.prior_strength, word_starts)
        self.context = ContextIndex(self.config.context_ngram, self.context_keys)
        self.long = LongMatch(self.context_keys)  # the context's longest match, for copies past `context_ngram`
        self.near: CorpusIndex | None = None  # this prompt's neighbours' answers
        # The model's answers are a task corpus that grows: off with the corpus (context-only drafting, as prompt lookup).
        keep = self.config.history if self.config.use_corpus else 0
        self.history = AnswerHistory(keep, self.config.neighbour_window) if keep > 0 else None
        self.past: CorpusIndex | None = None  # the model's answers to earlier prompts like this one
        self._prompt: list[int] = []
        self._answer: list[int] | None = None  # this answer's tokens so far; None once it is in the history
        self.spelling = spelling if self.config.use_context and self.config.spelling else None
        self.values = values if self.config.use_context and self.config.value_starts else None
        self._answer_text = ""  # the emitted answer's text, for the value guesser's used words
        self._value_memo: dict[tuple[int, ...], Any] = {}
        self._key_memo: dict[tuple[int, ...], Any] = {}
        # Matcher states: corpus, neighbours, context, the answer's last tokens (spelling copy), history.
        self._states: tuple[Any, Any, Any, tuple[int, ...], Any] = ((0, 0), (0, 0), ((), (0, 0)), (), (0, 0))
        self._last_cells: list[Cell] = []
        self._last_draft: Draft | None = None
        self._depth: list[int] = []  # depth of each token of the draft being built

    def start(self, prompt_ids: Sequence[int]) -> None:
        """Index the prompt, find its neighbours; the corpus matches start at "start of answer"."""
        self.context = ContextIndex(self.config.context_ngram, self.context_keys)
        self.context.extend(prompt_ids)
        self.long = LongMatch(self.context_keys)
        if self.config.use_context:
            self.long.extend(prompt_ids)
        neighbours = getattr(self.corpus, "neighbours", None)
        self.near = None
        if neighbours is not None and self.corpus is not None and self.config.neighbours > 0:  # neighbours imply a corpus
            query = list(prompt_ids)[-self.config.neighbour_window :]  # not few-shot examples further up
            self.near = CorpusIndex(neighbours.nearest(query, self.config.neighbours), eos_id=self.corpus.eos_id)
        self._start_history(prompt_ids, neighbours)
        if self.spelling is not None:
            self.spelling.start(prompt_ids)
        if self.values is not None:
            self.values.start(prompt_ids)
            self._answer_text, self._value_memo, self._key_memo = "", {}, {}
        self._states = (self.corpus.start_state() if self.corpus else (0, 0),
                        self.near.start_state() if self.near else (0, 0), (self.context.tail_keys(), self.long.state), (),
                        self.past.start_state() if self.past else (0, 0))
        self._last_cells, self._last_draft = [], None

    def _start_history(self, prompt_ids: Sequence[int], neighbours: NeighbourIndex | None) -> None:
        """Index the model's answers to the earlier prompts most like this one (scored by the corpus's IDF when it has one)."""
        self._prompt, self._answer, self.past = list(prompt_ids), [], None
        if self.history is None or not len(self.history):
            return
        weight = neighbours.token_weight if neighbours is not None else (lambda token: 1.0)
        rows = self.history.nearest(prompt_ids, self.config.history_neighbours, weight)
        if rows:
            self.past = CorpusIndex(rows)  # the answers end with their own stop token

    def _remember(self, emitted: Sequence[int]) -> None:
        """Add the emitted tokens to this answer; once it ends with a stop token, keep it in the history."""
        if self.history is None or self._answer is None:
            return
        self._answer.extend(emitted)
        end = next((i for i, token in enumerate(self._answer) if token in self.stop_ids), None)
        if end is not None:
            self.history.add(self._prompt, self._answer[: end + 1])
            self._answer = None

    def _advance(self, states: tuple[Any, ...], token: int) -> tuple[Any, ...]:
        """Matcher states after one (drafted) token."""
        corpus_state, near_state, context_state, tail, past_state = states
        return (self.corpus.advance(corpus_state, token) if self.corpus is not None else corpus_state,
                self.near.advance(near_state, token) if self.near is not None else near_state,
                (self.context.advance(context_state[0], token), self.long.advance(context_state[1], token)),
                (tail + (token,))[-SPELLING_TAIL:], self.past.advance(past_state, token) if self.past is not None else past_state)

    def _guesses(self, states: tuple[Any, ...]) -> list[tuple[float, str, Prediction]]:
        """Scored next-token guesses of every enabled index, best first."""
        cfg = self.config
        corpus_state, near_state, context_state, tail, past_state = states
        guesses = []
        if self.corpus is not None:
            pred = self.corpus.predict(corpus_state)
            if pred is not None:
                guesses.append((cfg.corpus_weight * self.acceptance.estimate(CORPUS, pred), CORPUS, pred))
                # A tree may branch to the corpus's second choice where its first is unsure.
                runner = self.corpus.predict_runner_up(corpus_state) if cfg.max_branches and pred.share < 0.9 else None
                if runner is not None:
                    guesses.append((cfg.corpus_weight * self.acceptance.estimate(CORPUS, runner), CORPUS, runner))
        if self.near is not None:
            pred = self.near.predict(near_state)
            if pred is not None:
                guesses.append((cfg.corpus_weight * self.acceptance.estimate(NEIGHBOURS, pred), NEIGHBOURS, pred))
        if self.past is not None:
            pred = self.past.predict(past_state)
            if pred is not None:
                guesses.append((cfg.corpus_weight * self.acceptance.estimate(HISTORY, pred), HISTORY, pred))
        if cfg.use_context:
            pred = self._context_guess(context_state)
            if pred is not None:
                guesses.append((cfg.context_weight * self.acceptance.estimate(CONTEXT, pred), CONTEXT, pred))
        if self.spelling is not None and tail:
            following, matched = self.spelling.continuation(tail)
            if following:
                pred = Prediction(following[0], 1.0, matched, 1)
                guesses.append((cfg.context_weight * self.acceptance.estimate(SPELLING, pred), SPELLING, pred))
        if self.values is not None and tail:
            pred = self._value_guess(tail)
            if pred is not None:
                guesses.append((cfg.context_weight * self.acceptance.estimate(VALUE, pred), VALUE, pred))
            pred = self._key_guess(tail, corpus_state)
            if pred is not None:
                guesses.append((cfg.corpus_weight * self.acceptance.estimate(KEY, pred), KEY, pred))
        if self.spelling is not None and cfg.copy_values and tail:
            guesses = [g for g in guesses if self.spelling.keeps_copy(tail, g[2].token, self._answer_text)]
        guesses.sort(key=lambda g: g[0], reverse=True)
        return guesses

    def _context_guess(self, state: tuple[Any, tuple[int, int]]) -> Prediction | None:
        """The context's next token: the longest match's when it is longer than the n-gram keys, else the n-gram's.

        Past `context_ngram` tokens the copy is followed where it really is (not at the most recent
        occurrence of its last n-gram), and its length tells the acceptance model how long it has held.
        """
        tail, long_state = state
        if long_state[1] > self.config.context_ngram:
            pred = self.long.predict(long_state)
            if pred is not None and pred.match_len > self.config.context_ngram:
                return pred
        return self.context.predict(tail)

    def _key_guess(self, tail: tuple[int, ...], corpus_state: Any) -> Prediction | None:
        """The key guesser's first token after `tail`, when the corpus has seen it continue this match."""
        if tail not in self._key_memo:
            guess = self.values.guess_key(self._answer_text + "\n" + self.values.decode(tail))  # type: ignore[union-attr]
            ok = guess is not None and (self.corpus is None or self.corpus.advance(corpus_state, guess[0])[1] > corpus_state[1])
            self._key_memo[tail] = Prediction(guess[0], guess[1], 1, 1) if ok and guess else None
        return self._key_memo[tail]

    def _value_guess(self, tail: tuple[int, ...]) -> Prediction | None:
        """The value guesser's first token after `tail` (memoised per tail while the emitted answer stays the same)."""
        if tail not in self._value_memo:
            guess = self.values.guess(self._answer_text + "\n" + self.values.decode(tail))  # type: ignore[union-attr]
            self._value_memo[tail] = None if guess is None else Prediction(guess[0], guess[1], 1, 1)
        return self._value_memo[tail]

    def _add(self, draft: Draft, cells: list[Cell], token_source: tuple[str, Prediction], p: float,
             parent: int, depth: int) -> None:
        """Append one token to the draft under construction."""
        source, pred = token_source
        draft.tokens.append(pred.token)
        draft.sources.append(REPORTED_AS.get(source, source))
        draft.probs.append(p)
        draft.parents.append(parent)  # type: ignore[union-attr]
        cells.append(self.acceptance.cell(source, pred))
        self._depth.append(depth)

    def _extend(self, states: tuple[Any, ...], survival: float, max_len: int, draft: Draft,
                cells: list[Cell], parent: int, forks: list[tuple[float, int, int, Any]] | None,
                floor: float | None = None) -> None:
        """Append a chain to `draft` below `parent` while its survival chance beats the verify cost.

        With `forks`, every runner-up guess met on the way is recorded as (value, depth, parent,
        (source, guess, states)) for a side branch: value is the chance that the branch's first token
        is the one the model writes (the path up to it survives, the chain's own guess there does not).
        """
        cfg = self.config
        floor = cfg.token_cost if floor is None else floor
        depth = 0 if parent < 0 else self._depth[parent]
        for _ in range(max_len):
            guesses = self._guesses(states)
            if not guesses:
                break
            score, source, pred = guesses[0]
            # When several indexes guess the same token, any being right is enough.
            for other_score, _, other in guesses[1:]:
                if other.token == pred.token:
                    score = 1.0 - (1.0 - min(score, 1.0)) * (1.0 - min(other_score, 1.0))
            p = min(score, 0.999)
            stop = survival * p < floor
            if forks is not None:
                runners = [g for g in guesses[1:] if g[2].token != pred.token]
                if stop:  # the chain ends here: its own guess is a branch candidate like the others
                    runners = [(score, source, pred)] + runners
                miss = 1.0 if stop else 1.0 - p
                for r_score, r_source, r_pred in runners:
                    forks.append((survival * miss * min(r_score, 0.999), depth, parent, (r_source, r_pred, states)))
            if stop:
                break
            survival *= p
            depth += 1
            self._add(draft, cells, (source, pred), p, parent, depth)
            parent = len(draft.tokens) - 1
            states = self._advance(states, pred.token)
            if pred.token in self.stop_ids:
                break  # e.g. the prompt's own end-of-turn token, which the context would continue past

    def propose(self, max_len: int) -> Draft:
        """The most likely chain, plus (with `max_branches`) side branches at the likeliest runner-up guesses."""
        cfg = self.config
        limit = min(max_len, cfg.max_draft)
        draft = Draft(parents=[])
        cells: list[Cell] = []
        self._depth = []
        forks: list[tuple[float, int, int, Any]] | None = [] if cfg.max_branches > 0 else None
        by_cost = cfg.verify_costs is not None and forks is None
        self._extend(self._states, 1.0, limit, draft, cells, -1, forks, COST_FLOOR if by_cost else cfg.token_cost)
        if by_cost:
            assert cfg.verify_costs is not None  # by_cost says so
            keep = best_length(draft.probs, cfg.verify_costs)
            draft, cells, self._depth = draft.limit_depth(keep), cells[:keep], self._depth[:keep]
        seen = {(parent, token) for parent, token in zip(draft.parents or [], draft.tokens, strict=False)}
        for value, depth, parent, (source, pred, states) in sorted(forks or [], key=lambda f: -f[0])[: cfg.max_branches]:
            if value < cfg.token_cost or depth >= limit or (parent, pred.token) in seen:
                continue
            seen.add((parent, pred.token))
            # The branch's first token, then its own most likely chain.
            self._add(draft, cells, (source, pred), value, parent, depth + 1)
            if pred.token not in self.stop_ids:
                self._extend(self._advance(states, pred.token), value, limit - depth - 1, draft, cells, len(draft.tokens) - 1, None)
        if forks is None or len(draft) == len(draft.main_chain()):
            draft.parents = None  # a plain chain
        self._last_draft, self._last_cells = draft, cells
        return draft

    def update(self, emitted: Sequence[int], n_accepted: int) -> None:
        """Learn from the verdict on the last draft and index the emitted tokens.

        Judged tokens are those whose parent was accepted (or that start the draft): accepted when on
        the accepted path, rejected otherwise; tokens below a rejection were never judged.
        """
        draft = self._last_draft
        if draft is not None and self._last_cells:
            path = set(draft.path_of(emitted[:n_accepted]))
            for i, (parent, cell) in enumerate(zip(draft.parent_list(), self._last_cells, strict=False)):
                if parent < 0 or parent in path:
                    self.acceptance.observe(cell, accepted=i in path)
        self._last_draft, self._last_cells = None, []
        self._remember(emitted)
        self.context.extend(emitted)
        if self.config.use_context:
            self.long.extend(emitted)
        if self.values is not None:
            self._answer_text += self.values.decode(emitted)
            self._value_memo, self._key_memo = {}, {}
        corpus_state, near_state, _, tail, past_state = self._states
        self._states = (self.corpus.walk(corpus_state, emitted) if self.corpus is not None else corpus_state,
                        self.near.walk(near_state, emitted) if self.near is not None else near_state,
                        (self.context.tail_keys(), self.long.state), (tail + tuple(emitted))[-SPELLING_TAIL:],
                        self.past.walk(past_state, emitted) if self.past is not None else past_state)


MARKS_PER_ROW = 3  # START, EOS and SEP around each output in the corpus automaton (`ngram_index._token_stream`)


def rows_within_budget(tokenizer: Any, outputs: Sequence[str], max_tokens: int,
                       seed: int = 0) -> tuple[list[int], list[list[int]]]:
    """The rows whose outputs fit in `max_tokens` automaton tokens (tokens + `MARKS_PER_ROW` each), and their ids.

    Rows are tried in a random order fixed by `seed` (so a sample spreads over the whole corpus and the
    same corpus always gives the same sample); one that does not fit is skipped. Outputs are tokenised in
    batches about the size of the room left, and the search gives up once it has tokenised `max_tokens`
    tokens that did not fit: the work stays about twice the budget however big the corpus is.

    Returns:
        (row indices in ascending order, their token ids).
    """
    order = list(range(len(outputs)))
    random.Random(seed).shuffle(order)
    chosen: dict[int, list[int]] = {}
    used = wasted = pos = 0
    while pos < len(order) and used < max_tokens and wasted <= max_tokens:
        batch: list[int] = []
        chars = 0
        while pos < len(order) and (not batch or chars < max_tokens - used):  # a token mostly spans 1+ characters
            batch.append(order[pos])
            chars += len(outputs[order[pos]])
            pos += 1
        for row, ids in zip(batch, tokenizer([outputs[i] for i in batch], add_special_tokens=False)["input_ids"],
                            strict=True):
            cost = len(ids) + MARKS_PER_ROW
            if used + cost <= max_tokens:
                chosen[row] = ids
                used += cost
            else:
                wasted += cost
    rows = sorted(chosen)
    return rows, [chosen[i] for i in rows]


def build_corpus_index(tokenizer: Any, outputs: Sequence[str], inputs: Sequence[str] | None = None,
                       prompt_format: PromptFormat | None = None, max_tokens: int | None = None) -> CorpusIndex:
    """Tokenise corpus outputs with the target's tokenizer and index them (EOS marks an answer's end).

    With the rows' `inputs`, the index also finds the rows whose inputs are like a prompt
    (`index.neighbours`, see `NeighbourIndex`); pass the model's `prompt_format` so that inputs are
    encoded as its prompts are (an enriched model's prompts keep the base vocabulary).

    `max_tokens` bounds the index's size (its memory is about proportional to it): a corpus whose
    outputs need more is sampled by rows (`rows_within_budget`), and `index.rows` / `index.rows_total`
    say which rows of how many were indexed (`index.rows` is None when all were).
    """
    rows_total = len(outputs)
    rows: list[int] | None = None
    if max_tokens is None:
        sequences = tokenizer(list(outputs), add_special_tokens=False)["input_ids"] if outputs else []
    else:
        picked, sequences = rows_within_budget(tokenizer, outputs, max_tokens)
        if len(picked) < rows_total:  # sampled: the neighbours and value starts see the same rows
            rows = picked
            if inputs is not None and len(inputs) == rows_total:
                inputs = [inputs[i] for i in picked]
            outputs = [outputs[i] for i in picked]
    index = CorpusIndex(sequences, eos_id=tokenizer.eos_token_id)
    index.rows, index.rows_total = rows, rows_total
    if inputs is not None and len(inputs) == len(outputs) and len(outputs):
        fmt = prompt_format or PromptFormat()
        index.neighbours = NeighbourIndex(fmt.encode(tokenizer, list(inputs)), sequences)
        index.value_starts = ValueStarts(inputs, outputs, WORD.findall(fmt.render(tokenizer, "")))
    return index


def tasc_drafter(
    tokenizer: Any,
    corpus_index: CorpusIndex | None = None,
    config: SpecConfig | None = None,
    context_keys: Sequence[int] | None = None,
) -> TascDrafter:
    """A TASC drafter over the corpus index and the context, as `config` switches its sources.

    Which sources a named method uses is decided in `tasc.methods`; here only whether they can work.
    """
    config = config or SpecConfig()
    if config.use_corpus and corpus_index is None:
        raise ValueError("TASC-spec's corpus drafts need a corpus index (or SpecConfig(use_corpus=False))")
    if not config.use_corpus:
        corpus_index = None
    if context_keys is None and config.use_context and config.normalise_context:
        context_keys = normalised_keys(tokenizer)
    stop_ids = () if tokenizer.eos_token_id is None else (tokenizer.eos_token_id,)
    starts = getattr(corpus_index, "value_starts", None)
    copies_key = (lambda key: starts.key_rate(key) >= COPY_KEY_RATE) if starts is not None and starts.active else None
    spelling = spelling_copy_for(tokenizer, copies_key) if config.use_context and config.spelling else None
    values = next_value_copy_for(tokenizer, starts) if config.use_context and config.value_starts and starts is not None and starts.active else None
    return TascDrafter(corpus_index, config, context_keys, stop_ids, spelling, values, word_start_ids(tokenizer))
