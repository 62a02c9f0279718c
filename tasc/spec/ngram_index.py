"""Token n-gram indexes that predict the next token of a sequence: the corpus and the context.

Pure Python over lists of ints: no torch, no model, so the drafting logic can be driven from a test
with hand-written token lists.

Why a suffix automaton for the corpus: it is built online in O(n) over all corpus tokens, finds the
longest suffix of the current sequence that occurs in the corpus, and — the part drafting needs —
moves that match forward by one token in amortised O(1) (one dict lookup, plus suffix links when
the match breaks). After building, each state stores its most frequent continuation and that
continuation's share, so a corpus prediction is two list reads. A suffix array gives the same
matches in less memory, but every extension is a binary search; an n-gram hash table caps the match
length and costs one tuple per (position, n) to build. Memory is at most 2n states (a dict each):
~100 MB for the 330k tokens of SNIPS train, built in about a second.

The context index (prompt + text so far) is small and grows by one token per step, so it is a hash
of the last-seen position of each n-gram up to `max_ngram`, keyed by *normalised* tokens: "miles"
after a JSON quote and " miles" in the prompt are different BPE tokens of the same word.

The context's longest match, past the n-gram keys, comes from `LongMatch`: an online suffix automaton
over the same keys (a few-shot answer copying an example repeats 4-grams of every example, so only
the whole match tells which one is being copied, and how long the copy has held).

The neighbour index finds the corpus rows whose *inputs* are most like a prompt (an inverted index
with IDF weights); the drafter indexes their answers as a third, prompt-specific source.
"""

from __future__ import annotations

import gc
import heapq
import math
import weakref
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

SEP = -1  # separates corpus outputs inside the automaton; never queried
START = -2  # marks the start of an answer: the corpus is queried with START + answer so far


@dataclass(frozen=True)
class Prediction:
    """A next-token guess of one index.

    Attributes:
        token: the predicted token id.
        share: fraction of the matched occurrences that continue with `token` (1.0 for a copy).
        match_len: length of the suffix that matched (tokens); longer is more reliable.
        support: number of occurrences behind the guess.
    """

    token: int
    share: float
    match_len: int
    support: int


def _token_stream(sequences: Iterable[Sequence[int]], eos_id: int | None) -> tuple[list[int], int]:
    """All sequences as one stream, each as START + tokens + [eos] (when given) + SEP; and how many there were."""
    stream: list[int] = []
    n_sequences = 0
    for seq in sequences:
        stream.append(START)
        stream.extend(seq)
        if eos_id is not None:
            stream.append(eos_id)
        stream.append(SEP)
        n_sequences += 1
    return stream, n_sequences


def _suffix_automaton(stream: Sequence[int]) -> tuple[list[dict[int, int]], list[int], list[int], list[int]]:
    """Online suffix-automaton construction (Blumer et al.), inlined: this loop is the build cost.

    Returns:
        (transitions, suffix links, lengths, counts) per state; a count is 1 for states created as
        "last" and 0 for clones, before `_sum_counts_along_links`.
    """
    nxt: list[dict[int, int]] = [{}]
    link = [-1]
    length = [0]
    count = [0]
    last = 0
    for token in stream:
        cur = len(nxt)
        nxt.append({})
        length.append(length[last] + 1)
        link.append(0)
        count.append(1)
        p = last
        while p != -1 and token not in nxt[p]:
            nxt[p][token] = cur
            p = link[p]
        if p != -1:
            q = nxt[p][token]
            if length[p] + 1 == length[q]:
                link[cur] = q
            else:
                clone = len(nxt)
                nxt.append(nxt[q].copy())
                length.append(length[p] + 1)
                link.append(link[q])
                count.append(0)
                while p != -1 and nxt[p].get(token) == q:
                    nxt[p][token] = clone
                    p = link[p]
                link[q] = clone
                link[cur] = clone
        last = cur
    return nxt, link, length, count


def _sum_counts_along_links(link: list[int], length: list[int], count: list[int]) -> None:
    """Turn `count` into occurrence counts, in place.

    A state's count is the number of positions where its strings end, i.e. its own plus those of
    every state whose suffix link points to it. States are bucketed by length (counting sort) so
    links are processed longest first.
    """
    by_length: list[list[int]] = [[] for _ in range(max(length) + 1)]
    for state in range(1, len(length)):
        by_length[length[state]].append(state)
    for bucket in reversed(by_length):
        for state in bucket:
            count[link[state]] += count[state]


def _best_continuations(nxt: list[dict[int, int]], count: list[int]) -> tuple[list[int], list[int], list[int]]:
    """Per state: its most frequent continuation, that continuation's count and the total (SEP is never one)."""
    best_token = [SEP] * len(nxt)
    best_count = [0] * len(nxt)
    total = [0] * len(nxt)
    for state, edges in enumerate(nxt):
        bt, bc, tot = SEP, 0, 0
        for token, target in edges.items():
            if token == SEP:
                continue
            c = count[target]
            tot += c
            if c > bc:
                bt, bc = token, c
        best_token[state], best_count[state], total[state] = bt, bc, tot
    return best_token, best_count, total


class CorpusIndex:
    """Suffix automaton over the token sequences of a corpus's outputs.

    Each output is stored as START + tokens + [eos] (when given) + SEP, so "start of an answer"
    and "end of an answer" are matchable like any other token.

    Example:
        >>> idx = CorpusIndex([[5, 6, 7], [5, 6, 8], [5, 6, 7]])
        >>> state = idx.walk(idx.start_state(), [5, 6])
        >>> idx.predict(state)
        Prediction(token=7, share=0.6666666666666666, match_len=3, support=3)
    """

    def __init__(self, sequences: Iterable[Sequence[int]], eos_id: int | None = None) -> None:
        self.eos_id = eos_id
        self.neighbours: "NeighbourIndex | None" = None  # set by drafts.build_corpus_index when inputs are known
        self.value_starts: Any = None  # a tasc.spec.value_copy.ValueStarts, set there too
        # Set by drafts.build_corpus_index under a token budget: the corpus rows indexed (None: all of them)
        # out of how many.
        self.rows: list[int] | None = None
        self.rows_total: int | None = None
        # The build allocates ~2 dicts per token; pausing the cyclic GC (nothing here forms cycles)
        # stops it rescanning them over and over, which otherwise doubles the build time.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._build(sequences, eos_id)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _build(self, sequences: Iterable[Sequence[int]], eos_id: int | None) -> None:
        """Construct the automaton, occurrence counts and best continuations."""
        stream, n_sequences = _token_stream(sequences, eos_id)
        nxt, link, length, count = _suffix_automaton(stream)
        _sum_counts_along_links(link, length, count)
        best_token, best_count, total = _best_continuations(nxt, count)

        self._next = nxt
        self._count = count
        self._top: dict[int, list[tuple[int, int]]] = {}  # state -> its 2 most frequent (token, count), on demand
        self._link = link
        self._length = length
        self._best_token = best_token
        self._best_count = best_count
        self._total = total
        self.n_tokens = len(stream) - 2 * n_sequences - (n_sequences if eos_id is not None else 0)
        self.n_sequences = n_sequences
        self.stream_tokens = len(stream)  # tokens + the marks around each sequence: what the automaton's size follows

    @property
    def n_states(self) -> int:
        """Number of automaton states (at most twice the corpus length)."""
        return len(self._next)

    def start_state(self) -> tuple[int, int]:
        """Matcher state at the start of an answer: (automaton state, match length)."""
        return self.advance((0, 0), START)

    def advance(self, state: tuple[int, int], token: int) -> tuple[int, int]:
        """Move the match forward by one token, shortening it via suffix links when it breaks."""
        s, m = state
        nxt, link, length = self._next, self._link, self._length
        while s and token not in nxt[s]:
            s = link[s]
            m = length[s]
        target = nxt[s].get(token)
        if target is None:
            return 0, 0
        return target, m + 1

    def walk(self, state: tuple[int, int], tokens: Iterable[int]) -> tuple[int, int]:
        """Advance over several tokens."""
        for token in tokens:
            state = self.advance(state, token)
        return state

    def predict(self, state: tuple[int, int]) -> Prediction | None:
        """Most frequent next token after the current match, or None when nothing matched."""
        s, m = state
        if m == 0 or self._total[s] == 0:
            return None
        return Prediction(self._best_token[s], self._best_count[s] / self._total[s], m, self._total[s])

    def predict_runner_up(self, state: tuple[int, int]) -> Prediction | None:
        """Second most frequent next token after the current match (the alternative a tree drafts)."""
        s, m = state
        if m == 0 or self._total[s] == 0:
            return None
        top = self._top.get(s)
        if top is None:
            count = self._count
            top = heapq.nlargest(2, ((count[t], token) for token, t in self._next[s].items() if token != SEP))
            top = self._top[s] = [(token, c) for c, token in top]
        for token, c in top:  # the best one that is not `predict`'s (ties may come in either order)
            if token != self._best_token[s]:
                return Prediction(token, c / self._total[s], m, self._total[s])
        return None


class ContextIndex:
    """Last position of each n-gram (n <= max_ngram) of a growing token sequence.

    Keys are normalised token ids (`key_of[token]`), so tokens that differ only by a leading
    space or case match; predictions are the real tokens that followed.

    Example:
        >>> ctx = ContextIndex(max_ngram=3)
        >>> ctx.extend([1, 2, 3, 4, 1, 2])
        >>> ctx.predict(ctx.tail_keys())
        Prediction(token=3, share=1.0, match_len=2, support=1)
    """

    def __init__(self, max_ngram: int = 4, key_of: Sequence[int] | None = None) -> None:
        self.max_ngram = max_ngram
        self.key_of = key_of
        self.tokens: list[int] = []
        self.keys: list[int] = []
        self._continuation: dict[tuple[int, ...], int] = {}  # n-gram keys -> index of next token

    def key(self, token: int) -> int:
        """Normalised key of a token (the token itself when no normalisation is set)."""
        key_of = self.key_of
        return key_of[token] if key_of is not None and 0 <= token < len(key_of) else token

    def extend(self, tokens: Iterable[int]) -> None:
        """Append tokens; each n-gram ending just before a new token now points at it."""
        keys, cont, max_n = self.keys, self._continuation, self.max_ngram
        for token in tokens:
            i = len(self.tokens)
            for n in range(1, min(max_n, i) + 1):
                cont[tuple(keys[i - n : i])] = i
            self.tokens.append(token)
            keys.append(self.key(token))

    def tail_keys(self) -> tuple[int, ...]:
        """The last `max_ngram` keys: the matcher state for the sequence as it stands."""
        return tuple(self.keys[-self.max_ngram :])

    def advance(self, state: tuple[int, ...], token: int) -> tuple[int, ...]:
        """Matcher state after a (drafted) token, without adding it to the index."""
        return (state + (self.key(token),))[-self.max_ngram :]

    def predict(self, state: tuple[int, ...]) -> Prediction | None:
        """Token that followed the most recent earlier occurrence of the longest matching suffix."""
        cont = self._continuation
        for n in range(len(state), 0, -1):
            i = cont.get(state[-n:])
            if i is not None:
                return Prediction(self.tokens[i], 1.0, n, 1)
        return None


RECENT_DEPTH = 16  # suffix-link steps per append that refresh the latest occurrences (bounds the append's cost)


class LongMatch:
    """The longest earlier match of a growing sequence's suffix, however long: an online suffix automaton.

    The context index keys n-grams up to `max_ngram` tokens, so a 40-token copy of an example answer
    looks like any 4-token match and its next token comes from the 4-gram's most recent occurrence, which
    may be another example. This automaton (over the same normalised keys) follows the longest match
    wherever it is and knows its length, so the drafter can tell a long copy, which a model keeps
    following, from a short one. Appending a token and moving a match by one token are amortised O(1).
    A prediction copies from the match's *most recent* earlier occurrence (a model that copies an example
    mostly copies the last one, and the context index does the same): each state keeps its last two end
    positions, refreshed for the `RECENT_DEPTH` longest suffixes at every append (shorter, deeper ones may
    keep an older occurrence; they are the context index's business anyway).

    Example:
        >>> lm = LongMatch()
        >>> lm.extend([1, 2, 3, 4, 5, 9, 1, 2, 3])
        >>> lm.predict(lm.state)
        Prediction(token=4, share=1.0, match_len=3, support=1)
    """

    def __init__(self, key_of: Sequence[int] | None = None) -> None:
        self.key_of = key_of
        self.tokens: list[int] = []
        self._next: list[dict[int, int]] = [{}]
        self._link = [-1]
        self._length = [0]
        self._recent = [-1]  # per state: the end position of its latest occurrence
        self._before = [-1]  # and of the one before it (the latest may be the sequence's own end)
        self._last = 0  # the state of the whole sequence
        self.state: tuple[int, int] = (0, 0)  # longest suffix of the sequence that also ends earlier in it

    def _key(self, token: int) -> int:
        """Normalised key of a token (as `ContextIndex.key`)."""
        key_of = self.key_of
        return key_of[token] if key_of is not None and 0 <= token < len(key_of) else token

    def extend(self, tokens: Iterable[int]) -> None:
        """Append tokens; `state` keeps the longest suffix that occurred before (matched before each token is added)."""
        for token in tokens:
            key = self._key(token)
            self.state = self.advance(self.state, token)
            self._append(key)
            s, m = self.state
            while s > 0 and m <= self._length[self._link[s]]:  # a clone now holds the shorter strings of `s`
                s = self._link[s]
            self.state = (s, m)
            self.tokens.append(token)

    def _append(self, key: int) -> None:
        """One step of the online construction (Blumer et al.), recording first end positions."""
        nxt, link, length, recent, before = self._next, self._link, self._length, self._recent, self._before
        pos = len(self.tokens)
        cur = len(nxt)
        nxt.append({})
        length.append(length[self._last] + 1)
        link.append(0)
        recent.append(pos)
        before.append(-1)
        p = self._last
        while p != -1 and key not in nxt[p]:
            nxt[p][key] = cur
            p = link[p]
        if p != -1:
            q = nxt[p][key]
            if length[p] + 1 == length[q]:
                link[cur] = q
            else:
                clone = len(nxt)
                nxt.append(nxt[q].copy())
                length.append(length[p] + 1)
                link.append(link[q])
                recent.append(recent[q])
                before.append(before[q])
                while p != -1 and nxt[p].get(key) == q:
                    nxt[p][key] = clone
                    p = link[p]
                link[q] = link[cur] = clone
        self._last = cur
        s = link[cur]
        for _ in range(RECENT_DEPTH):  # the longest suffixes now also end here
            if s <= 0:
                break
            if recent[s] != pos:
                before[s], recent[s] = recent[s], pos
            s = link[s]

    def advance(self, state: tuple[int, int], token: int) -> tuple[int, int]:
        """The match after one more (drafted) token, shortened along suffix links when it breaks."""
        key = self._key(token)
        s, m = state
        nxt, link, length = self._next, self._link, self._length
        while s and key not in nxt[s]:
            s = link[s]
            m = length[s]
        target = nxt[s].get(key)
        return (0, 0) if target is None else (target, m + 1)

    def predict(self, state: tuple[int, int]) -> Prediction | None:
        """The token after the match's most recent earlier occurrence (a shorter match where none has a next token)."""
        s, m = state
        n = len(self.tokens)
        for _ in range(RECENT_DEPTH):  # bounded: a match that keeps ending at the sequence's end is a loop, not a copy
            if s <= 0:
                break
            end = self._recent[s] if self._recent[s] + 1 < n else self._before[s]  # the latest may be the sequence's end
            if 0 <= end and end + 1 < n:
                return Prediction(self.tokens[end + 1], 1.0, m, 1)
            s = self._link[s]
            m = self._length[s]
        return None


class NeighbourIndex:
    """The corpus rows whose inputs share the most informative tokens with a prompt.

    The corpus index knows what answers *usually* say; the neighbours' answers know what answers to
    *similar inputs* say: the intent and slot names a SNIPS request needs are the ones of the
    training requests that use its words. Scoring is an inverted index over input token ids with
    IDF weights (BM25 without length saturation, which these short inputs do not need), normalised
    by each row's own weight so a short row covered by the prompt ranks above a long one that
    merely overlaps. Tokens in over `max_df` of the inputs (the prompt template, "the", "to") are
    skipped: they say nothing and their postings are the long ones.
    """

    def __init__(self, inputs: Sequence[Sequence[int]], outputs: Sequence[Sequence[int]], max_df: float = 0.1) -> None:
        if len(inputs) != len(outputs):
            raise ValueError(f"need one output per input, got {len(inputs)} inputs and {len(outputs)} outputs")
        postings: dict[int, list[int]] = {}
        for row, ids in enumerate(inputs):
            for token in set(ids):
                postings.setdefault(token, []).append(row)
        n = max(len(inputs), 1)
        limit = max(1, int(max_df * n))
        self._idf = {t: math.log(1.0 + n / len(rows)) for t, rows in postings.items() if len(rows) <= limit}
        # Row arrays, so a query's scores are a few vectorised adds (one per query token), not a loop over rows.
        self._postings = {t: np.asarray(rows, dtype=np.int64) for t, rows in postings.items() if t in self._idf}
        self._common = frozenset(t for t, rows in postings.items() if len(rows) > limit)
        self._unseen = math.log(1.0 + n)  # a token no corpus input has (a new name): rarer than any
        self._weight = np.array([math.sqrt(sum(self._idf.get(t, 0.0) for t in set(ids))) or 1.0 for ids in inputs])
        self.outputs = [list(o) for o in outputs]

    def token_weight(self, token: int) -> float:
        """How much sharing `token` says about two inputs: its IDF; 0 for the common tokens skipped; most for unseen ones."""
        idf = self._idf.get(token)
        if idf is not None:
            return idf
        return 0.0 if token in self._common else self._unseen

    def __len__(self) -> int:
        return len(self.outputs)

    def nearest(self, query: Sequence[int], k: int = 8) -> list[list[int]]:
        """Outputs of the (up to) k rows most similar to `query`, best first (ties: the earlier row)."""
        scores = np.zeros(len(self.outputs))
        for token in set(query):
            w = self._idf.get(token)
            if w is not None:
                scores[self._postings[token]] += w  # a row holds a token once: no repeated index within an add
        hit = np.flatnonzero(scores)
        if k <= 0 or not hit.size:
            return []
        ratio = scores[hit] / self._weight[hit]
        best = hit[np.lexsort((hit, -ratio))[:k]]  # highest ratio first, then the lower row index
        return [self.outputs[row] for row in best.tolist()]


_WORD_STARTS: "weakref.WeakKeyDictionary[Any, frozenset[int]]" = weakref.WeakKeyDictionary()


def word_start_ids(tokenizer: Any) -> frozenset[int]:
    """Ids of the tokens whose text starts a new word (a leading space or newline); decoded once per tokenizer."""
    try:
        return _WORD_STARTS[tokenizer]
    except (KeyError, TypeError):  # TypeError: an object that cannot be weakly referenced is decoded every time
        pass
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    starts = frozenset(i for i, text in enumerate(texts) if text[:1] in (" ", "\n"))
    try:
        _WORD_STARTS[tokenizer] = starts
    except TypeError:
        pass
    return starts


def normalised_keys(tokenizer) -> list[int]:
    """Map each token id to a key shared by tokens with the same stripped, lower-cased text."""
    vocab_size = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(vocab_size)])
    key_ids: dict[str, int] = {}
    keys = []
    for i, text in enumerate(texts):
        norm = text.strip().lower()
        # Tokens that are only whitespace or decode to nothing keep their own identity.
        keys.append(key_ids.setdefault(norm, len(key_ids)) if norm else vocab_size + i)
    return keys
