"""TASC-spec's corpus indexes, shared by every session of the app and bounded in memory.

An index costs memory in proportion to the tokens it holds, so one index has a budget (a corpus whose
training outputs need more is sampled by rows), and indexes are shared by content (identical corpora,
such as the examples, cost once) in one cache bounded in total tokens.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

# Measured: an index costs memory in proportion to the tokens it holds (measured on long JSON outputs
# with inputs: ~510 B per token steady and ~630 B while it is built with SmolLM2's tokenizer, ~540 / ~660 B
# with the tests' tiny one), so it has a budget: a corpus whose training outputs need more is sampled by rows.
# Indexes are shared by content (identical corpora cost once) in one cache bounded in total.
# tests/unit/test_text_and_budgets.py holds these figures; the README states them.
INDEX_MAX_TOKENS = 400_000  # tokens in one index: ~200 MB, at most 280 MB; ~5 s to build on 2 CPU cores
INDEX_CACHE_TOKENS = 1_200_000  # tokens in all cached indexes together (~620 MB), least recently used out first
INDEX_BYTES_PER_TOKEN = 700  # bound on an index's memory per token, build peak included


class IndexCache:
    """TASC-spec corpus indexes shared by every session, keyed by what they index, bounded in total tokens.

    Two sessions with the same corpus (the examples) share one index; beyond `max_tokens` tokens in all, the
    least recently used indexes are dropped (a request still using one keeps it until it ends; its session
    rebuilds it when asked again). One index is built at a time, so at most one build's peak is in memory.
    """

    MIN_CHARGE = 1_000  # tokens an index is charged at least (its fixed parts), so tiny ones cannot pile up

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._building = threading.Lock()

    @staticmethod
    def charge(index: Any) -> int:
        """Tokens an index counts for."""
        return max(int(index.stream_tokens), IndexCache.MIN_CHARGE)

    def tokens(self) -> int:
        """Tokens held by the cached indexes together."""
        with self._lock:
            return sum(self.charge(i) for i in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def _cached(self, key: str) -> Any:
        with self._lock:
            index = self._entries.get(key)
            if index is not None:
                self._entries.move_to_end(key)
            return index

    def get(self, key: str, build: Any) -> Any:
        """The index under `key`, built by `build()` when it is not cached."""
        index = self._cached(key)
        if index is not None:
            return index
        with self._building:
            index = self._cached(key)  # another request may have built it meanwhile
            if index is None:
                index = build()
                with self._lock:
                    self._entries[key] = index
                    while len(self._entries) > 1 and sum(map(self.charge, self._entries.values())) > self.max_tokens:
                        self._entries.popitem(last=False)  # the newest one stays, even over the bound alone
        return index

    def clear(self) -> None:
        """Drop every cached index."""
        with self._lock:
            self._entries.clear()


INDEXES = IndexCache(INDEX_CACHE_TOKENS)


def corpus_key(lm, corpus, max_tokens: int) -> str:
    """What an index of `corpus`'s rows in `lm`'s tokens depends on, as a hash (equal corpora, equal keys)."""
    h = hashlib.sha256(f"{lm.name}\0{lm.prompt_format!r}\0{max_tokens}\0{corpus.inputs is not None}".encode())
    for column in (corpus.outputs, corpus.inputs or ()):
        h.update(len(column).to_bytes(8, "little"))
        for text in column:
            data = text.encode("utf-8", "surrogatepass")
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
    return h.hexdigest()


def corpus_index_for(session, lm):
    """TASC-spec's index of the session's training outputs in this model's tokens, from the shared cache.

    At most INDEX_MAX_TOKENS tokens: a bigger corpus is sampled by rows (`index.rows`, `sample_note`).
    """
    from tasc.spec.drafts import build_corpus_index

    with session.lock:
        train = session.train
    budget = INDEX_MAX_TOKENS
    return INDEXES.get(corpus_key(lm, train, budget), lambda: build_corpus_index(
        lm.tokenizer, train.outputs, train.inputs, lm.prompt_format, max_tokens=budget))


def sample_note(index) -> str:
    """A line saying that the index holds a sample of the corpus ("" when it holds all of it)."""
    if index is None or index.rows is None:
        return ""
    return (f"TASC-spec drafted from a sample of the corpus: {len(index.rows):,} of {index.rows_total:,} training rows "
            f"({index.n_tokens:,} tokens; an index holds at most {INDEX_MAX_TOKENS:,}).")
