"""The model's own earlier answers: a draft source that learns the task while it is served.

The corpus says what the task's references say; this model, fine-tuned or not, has its own habits
("located in riverside", never "in Riverside"), and requests about the same entities come back. So
every answer the model finishes is kept (bounded, oldest out first), and a new prompt's drafts also
come from the answers to the earlier prompts most like it: the idea of SuffixDecoding (Oliaro et al.,
2024), on the neighbour scoring the corpus already has (`ngram_index.NeighbourIndex`).

Drafts never change an answer (the verify loop keeps the model's own tokens), so the history only
changes speed. An answer is never a draft for its own prompt asked again: a benchmark's warm-up must
not hand a timed prompt its answer. Each holder keeps its own history: the bench one per method run,
the Arena one per browser session, so no visitor's answers reach another's drafts.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import deque
from typing import Callable, Sequence


class _Row:
    """One kept answer: its prompt's hash and window, the answer, and the window's norm under the last weight asked."""

    __slots__ = ("key", "tokens", "answer", "norm", "norm_of")

    def __init__(self, key: int, tokens: frozenset[int], answer: array) -> None:
        self.key, self.tokens, self.answer = key, tokens, answer
        self.norm: float = 1.0
        self.norm_of: Callable[[int], float] | None = None  # computed at the first `nearest` with a weight, then reused

    def norm_under(self, weight: Callable[[int], float]) -> float:
        """Square root of the window's summed weight (1 when it has none); cached while the weight stays the same."""
        if self.norm_of != weight:  # `!=`, not `is not`: a bound method is a new object each time, but equal
            self.norm, self.norm_of = math.sqrt(sum(weight(t) for t in self.tokens)) or 1.0, weight
        return self.norm


class AnswerHistory:
    """The last `max_answers` finished answers with the prompts that asked for them.

    Args:
        max_answers: answers kept (the oldest go first).
        window: a prompt's last tokens that say what it asks (the task input, not a shared system turn).
    """

    def __init__(self, max_answers: int = 256, window: int = 64) -> None:
        self.window = window
        # the prompt's hash, its window's tokens, the answer as 4-byte ints: ~1 KB per SNIPS answer
        self._rows: deque[_Row] = deque(maxlen=max_answers)

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, prompt_ids: Sequence[int], answer: Sequence[int]) -> None:
        """Keep a finished answer (ending with its stop token) and the prompt it answers."""
        if answer:
            self._rows.append(_Row(hash(tuple(prompt_ids)), frozenset(prompt_ids[-self.window :]), array("i", answer)))

    def nearest(self, prompt_ids: Sequence[int], k: int, weight: Callable[[int], float]) -> list[list[int]]:
        """The answers of the (up to) k earlier prompts sharing the most `weight` with this one, best first.

        Scores are the weights of the shared tokens over the square root of the earlier prompt's own
        weight (as `NeighbourIndex` scores corpus rows); prompts sharing nothing weighted, and this very
        prompt, are left out. Per answer it costs a set intersection: the query's weights are looked up
        once and each kept prompt's norm is computed once.
        """
        if not self._rows or k <= 0:
            return []
        own = hash(tuple(prompt_ids))
        query = {t: weight(t) for t in set(prompt_ids[-self.window :])}
        keys = query.keys()
        scored = []
        for i, row in enumerate(self._rows):
            if row.key == own:
                continue
            common = keys & row.tokens
            if not common:
                continue
            shared = sum(query[t] for t in common)
            if shared > 0:
                scored.append((shared / row.norm_under(weight), i, row.answer))
        return [answer.tolist() for _, _, answer in heapq.nlargest(k, scored, key=lambda row: row[:2])]
