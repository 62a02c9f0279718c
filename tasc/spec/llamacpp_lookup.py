"""llama.cpp's lookup decoding (`examples/lookup`, `common/ngram-cache.cpp`), ported to Python as a draft model.

llama-cpp-python 0.3.x exposes no `llama_ngram_cache`, so the `llamacpp-lookup-corpus` baseline runs this port
inside llama-cpp-python's own speculative loop (`Llama(draft_model=...)`). The algorithm and its constants are
llama.cpp's: three n-gram caches map the last 1-4 tokens to counts of the token that followed,
    static   2-grams of the task corpus (what `llama-lookup-create` writes and `-lcs` loads)
    context  1- to 4-grams of this prompt and answer so far
    dynamic  the context caches of earlier answers, merged (llama-lookup's `-lcd`)
and each draft token is the context's, else the dynamic cache's, best continuation (longest n-gram first, its
count weighted by the static cache's, above llama.cpp's sample-size and share thresholds), else the static
cache's own; drafting stops at the first position none of them passes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Sequence

NGRAM_MIN, NGRAM_MAX, NGRAM_STATIC = 1, 4, 2  # LLAMA_NGRAM_MIN, LLAMA_NGRAM_MAX, LLAMA_NGRAM_STATIC
MIN_SAMPLES_LAX, MIN_PERCENT_LAX = (2, 2, 1, 1), (66, 50, 50, 50)  # per n-gram size 1..4
MIN_SAMPLES_STRICT, MIN_PERCENT_STRICT = (4, 3, 2, 2), (75, 66, 66, 66)

Cache = dict[tuple[int, ...], Counter]


def update_cache(cache: Cache, tokens: Sequence[int], n_min: int, n_max: int, n_new: int) -> None:
    """Count, for each n-gram size, the token after every n-gram that ends in the last `n_new` tokens."""
    for n in range(n_min, n_max + 1):
        for i in range(max(len(tokens) - n_new, n), len(tokens)):
            cache.setdefault(tuple(tokens[i - n:i]), Counter())[tokens[i]] += 1


def _from_static(static: Cache, ngram: tuple[int, ...]) -> int | None:
    """The static cache's best continuation of a 2-gram, if frequent and dominant enough."""
    part = static.get(ngram)
    if not part:
        return None
    token, best = part.most_common(1)[0]
    total = sum(part.values())
    ok = total >= MIN_SAMPLES_LAX[NGRAM_STATIC - 1] and 100 * best >= MIN_PERCENT_LAX[NGRAM_STATIC - 1] * total
    return token if ok else None


def _from_primary(primary: Cache, ngrams: list[tuple[int, ...]], static_part: Counter,
                  min_samples: Sequence[int], min_percent: Sequence[int]) -> int | None:
    """The best continuation of the longest n-gram in `primary` that passes the thresholds (static counts weigh in)."""
    for i in range(len(ngrams) - 1, -1, -1):
        part = primary.get(ngrams[i])
        if not part:
            continue
        best_token, best_p, best_s, total = None, 0, 0, 0
        for token, count in part.items():  # insertion order, as llama.cpp's map iteration is its own
            weight = 100 * static_part[token] if token in static_part else 1
            if count * weight > best_p * best_s:
                best_token, best_p, best_s = token, count, weight
            total += count
        if total >= min_samples[i] and 100 * best_p >= min_percent[i] * total:
            return best_token
    return None


def draft_tokens(inp: Sequence[int], n_draft: int, context: Cache, dynamic: Cache, static: Cache) -> list[int]:
    """`common_ngram_cache_draft`: up to `n_draft` tokens after `inp`."""
    draft: list[int] = []
    if len(inp) < NGRAM_STATIC:
        return draft
    while len(draft) < n_draft:
        seq = list(inp[-NGRAM_MAX:]) + draft
        static_ngram = tuple(seq[-NGRAM_STATIC:])
        static_part = static.get(static_ngram, Counter())
        ngrams = [tuple(seq[-n:]) for n in range(NGRAM_MIN, NGRAM_MAX + 1) if len(seq) >= n]
        token = _from_primary(context, ngrams, static_part, MIN_SAMPLES_LAX, MIN_PERCENT_LAX)
        if token is None:
            token = _from_primary(dynamic, ngrams, static_part, MIN_SAMPLES_STRICT, MIN_PERCENT_STRICT)
        if token is None:
            token = _from_static(static, static_ngram)
        if token is None:
            break
        draft.append(token)
    return draft


class CorpusLookup:
    """A llama-cpp-python draft model (`__call__(input_ids) -> draft`) running llama.cpp's lookup with a corpus cache."""

    def __init__(self, corpus_ids: Iterable[Sequence[int]], n_draft: int = 8) -> None:
        self.n_draft = n_draft
        self.static: Cache = {}
        for ids in corpus_ids:
            update_cache(self.static, list(ids), NGRAM_STATIC, NGRAM_STATIC, len(ids))
        self.dynamic: Cache = {}
        self.context: Cache = {}
        self.seen: list[int] = []  # the sequence the context cache indexes

    def _follow(self, tokens: list[int]) -> None:
        """Index the new tokens; a sequence that does not extend the last one is a new answer."""
        if tokens[:len(self.seen)] != self.seen:
            for ngram, part in self.context.items():  # llama-lookup merges the context into the dynamic cache
                self.dynamic.setdefault(ngram, Counter()).update(part)
            self.context, self.seen = {}, []
        update_cache(self.context, tokens, NGRAM_MIN, NGRAM_MAX, len(tokens) - len(self.seen))
        self.seen = tokens

    def __call__(self, input_ids: Any, /, **kwargs: Any) -> Any:
        """Draft after `input_ids` (prompt and answer so far, as numpy ints)."""
        import numpy as np

        tokens = [int(t) for t in input_ids]
        self._follow(tokens)
        return np.array(draft_tokens(tokens, self.n_draft, self.context, self.dynamic, self.static), dtype=np.intc)
