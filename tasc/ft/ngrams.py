"""Mine a task corpus for frequent multi-token strings that deserve a token of their own (TASC-ft).

A candidate is a span of consecutive tokens of the corpus *as it is tokenised right now*: base
tokens in round 1, base tokens and the strings added so far in later rounds, so candidates grow
round by round (`{"` `intent` `":` ` "` → `{"intent": "` → `{"intent": "PlayMusic", "slots": {"`).
Whole-word n-grams (with their leading space, as BPE tokens carry it) and punctuation/JSON runs
(`"}}`, `", "`) are such spans; each candidate is tagged with its `kind`, and `MiningConfig.kinds`
can restrict the miner to some kinds.

Savings are overlap-aware at two levels:
1. Within a round, candidates are picked greedily by tokens saved, count × (tokens − 1), where the
   count includes only occurrences that overlap neither each other nor an occurrence claimed by a
   candidate picked before (lazy greedy: a candidate's saving can only fall as others are picked).
2. After each round the corpus is re-tokenised by the real tokenizer with the picks (through a
   `Segmenter`, see `tasc.ft.vocab.TokenizerSegmenter`), so the next round mines, and scores, the
   corpus as the enriched tokenizer really cuts it. Picks that the corpus no longer uses (longer
   picks took their occurrences) are dropped and their budget goes to later rounds.

The span counting is vectorised with numpy (a rolling hash per span length, sorted once): a round
over the ~490k tokens of SNIPS train takes about a second, most of it re-tokenising, and a 300-token
budget in 10 rounds about 10 s on 2 CPU cores. The selection is the function `pick_spans` over a
`SpanIndex` built from lists of token ids; tests drive it with a character-level segmenter.

Example (characters as tokens, see tests/unit/test_ngrams.py):
    corpus ["abcd", "abcd", "abce"], budget 1, one round: spans "ab", "bc", "abc" occur 3 times;
    "abc" saves 3 × (3 − 1) = 6 tokens, more than "ab" or "bc" (3 each), so it is picked.
"""

from __future__ import annotations

import heapq
import math
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Protocol, Sequence, cast

import numpy as np

from tasc.core.progress import check_cancel

KINDS = ("word", "punct", "span")
_MUL = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier of the rolling hash (wraps mod 2**64)


@dataclass
class MiningConfig:
    """How many strings to add and which spans qualify."""

    budget: int = 300  # new tokens in all (the paper adds up to ~500)
    rounds: int = 10  # mine → pick → re-tokenise cycles; later rounds build on earlier picks
    max_base_tokens: int = 16  # longest candidate, in base tokens
    max_span: int = 8  # longest span mined per round, in current tokens (spans grow over rounds)
    max_chars: int = 64  # longest candidate, in characters
    min_count: int = 3  # fewer (non-overlapping) occurrences: not worth a row of the embedding matrix
    kinds: tuple[str, ...] = KINDS  # candidate kinds allowed: "word", "punct", "span"
    whole_values: bool = True  # never fuse part of a quoted value with its quotes (see `splits_a_value`)
    one_field: bool = True  # never fuse two JSON "key": "value" fields into one token (see `joins_two_fields`)
    # Names the outputs copy from their inputs (E2E's name[...] and near[...]; `tasc.core.corpus.entity_names`):
    # no candidate may hold a word of one (see `holds_an_entity`).
    entities: tuple[str, ...] = ()

    def check(self) -> None:
        """Raise ValueError naming the first bad setting."""
        for name in ("budget", "rounds", "min_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"MiningConfig.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_base_tokens", "max_span", "max_chars"):
            if getattr(self, name) < 2:
                raise ValueError(f"MiningConfig.{name} must be at least 2, got {getattr(self, name)}")
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ValueError(f"MiningConfig.kinds must be a non-empty subset of {KINDS}, got {self.kinds}")


@dataclass
class Candidate:
    """A string worth a token of its own.

    Attributes:
        text: the exact string (leading space included).
        kind: "word" (whole words), "punct" (no letters or digits) or "span" (anything else:
            word pieces, JSON keys with their quotes...).
        count: non-overlapping occurrences in the corpus when it was picked, not counting those
            taken by the candidates picked before it.
        tokens: its length in tokens when it was picked (base tokens and earlier picks).
        base_tokens: its length in base tokens.
        saved: tokens it saved on the corpus when picked: count × (tokens − 1).
        round: the mining round that picked it (1-based).
        uses: its occurrences in the corpus as finally tokenised (longer picks may take some).
    """

    text: str
    kind: str
    count: int
    tokens: int
    base_tokens: int
    saved: int
    round: int = 0
    uses: int = 0

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)


@dataclass
class MiningResult:
    """The strings to add (in token-id order) and the compression after each round.

    Attributes:
        tokens: the added strings with their figures; token i gets id `base_size + i`.
        rounds: one dict per round, round 0 being the base tokenizer (see `measure`).
        dropped: strings picked and later dropped (unused on the corpus, or not exact in a round trip).
        wall_s: seconds spent.
    """

    tokens: list[Candidate]
    rounds: list[dict]
    dropped: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def texts(self) -> list[str]:
        """The added strings in token-id order."""
        return [c.text for c in self.tokens]


class Segmenter(Protocol):
    """Tokenises texts with a base vocabulary plus a list of added strings (`tasc.ft.vocab`)."""

    base_size: int  # added string i has token id base_size + i

    def set_added(self, texts: list[str]) -> list[str]:
        """Use these added strings from now on; return those refused (kept: the rest, in order)."""

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens."""

    def piece(self, token_id: int) -> bytes | None:
        """The bytes a token stands for; None for special tokens (spans never cross them)."""

    def base_length(self, text: str) -> int:
        """Number of base tokens of a text."""

    def acceptable(self, text: str) -> bool:
        """Whether the string can be added and still decode to itself."""


def splits_a_value(text: str) -> bool:
    """Whether a candidate fuses part of a quoted (JSON) value with the quote that opens or closes it.

    `", "artist": "j` or `a"}}` would make a value's spelling depend on its neighbours: the model
    could no longer copy "jazz" from the prompt token by token (a SNIPS model enriched with such
    tokens wrote "explicada" for "escapada" and "ub" for "gastropub"). Keys (`object_name": "`)
    and whole values (`", "service": "youtube"}}`) stay allowed.
    """
    first = text.find('"')
    if first < 0:
        return False
    if any(c.isalnum() for c in text[text.rfind('"') + 1 :]):
        return True  # opens a value and takes its first characters
    # Letters before the first quote end a key when a colon follows, else they end a value.
    return any(c.isalnum() for c in text[:first]) and not text[first + 1 :].startswith(":")


_STRING_FIELD = re.compile(r'":\s*"')  # a key's closing quote, its colon, the string value's opening quote


def joins_two_fields(text: str) -> bool:
    """Whether a candidate holds the key of one JSON string field and the key of another.

    `music_item": "artist", "artist": "` or `", "playlist_owner": "my", "playlist": "` make one token
    of several decisions (a value, and which slot comes next), each seen less often than its parts.
    A SNIPS model enriched with such tokens dropped or swapped slots twice as often as the base
    fine-tune (387 missing slots against 196 on SNIPS valid). One key with its whole value
    (`", "service": "youtube"}}`) and the intent header (`{"intent": "PlayMusic", "slots": {"`, whose
    second key opens an object) stay allowed.
    """
    return len(_STRING_FIELD.findall(text)) >= 2


_ARTICLES = frozenset({"The", "A", "An", "the", "a", "an", "of", "and", "&", "in", "on", "at"})


def entity_words(entities: Sequence[str]) -> frozenset[str]:
    """The words of entity names that identify them (articles and the like left out)."""
    return frozenset(w for e in entities for w in re.findall(r"[^\W_]+", e) if w not in _ARTICLES)


def holds_an_entity(text: str, words: frozenset[str]) -> bool:
    """Whether a candidate holds a word of an entity name (`entity_words`), or a piece of one where it starts
    or ends (`The Wrest`, ` near Bur`: a name cut short is still a name).

    A token like `Browns Cambridge` or ` near Burger King` is a name the model then writes whole: an E2E
    model enriched with such tokens wrote "Browns Cambridge" for the unseen *The Cambridge Blue* (BLEU 35.6
    against the base fine-tune's 60.3 on held-out names). Names stay spelt token by token, copied from the input.
    """
    if not words:
        return False
    found = re.findall(r"[^\W_]+", text)
    if any(w in words for w in found):
        return True
    last = found[-1] if found and text[-1:].isalnum() else ""  # ends inside a word
    first = found[0] if found and text[:1].isalnum() else ""  # may start inside one
    return (len(last) >= 2 and last[0].isupper() and any(e.startswith(last) for e in words)) or (
        len(first) >= 3 and any(e.endswith(first) and e != first for e in words))


def classify(text: str, before: str = "", after: str = "") -> str:
    """Kind of a candidate given the characters around one of its occurrences.

    "punct": no letters or digits (`", "`, `"}}`). "word": whole words, with the leading space
    they carry, neither starting nor ending inside a word (` is a`, `Alimentum`). "span": the rest.
    """
    if not any(c.isalnum() for c in text):
        return "punct"
    words = text.replace("-", "").replace("'", "")
    wordish = all(c.isalnum() or c == " " for c in words) and "  " not in text and text[-1].isalnum()
    starts = text[0] == " " or not before[-1:].isalnum()
    ends = not after[:1].isalnum()
    return "word" if wordish and starts and ends else "span"


class SpanIndex:
    """Counts of every span of 2..max_span tokens of a tokenised corpus, found by rolling hashes.

    Args:
        sequences: token ids per corpus text; ids < 0 are barriers no span crosses.
        unit_len: base-token length of each token id (0 or less: a barrier, e.g. a special token).
        max_span: longest span in tokens.
        max_base: longest span in base tokens.
        min_count: spans occurring fewer times (overlaps included) are not candidates.
    """

    def __init__(self, sequences: Sequence[Sequence[int]], unit_len: np.ndarray, max_span: int,
                 max_base: int, min_count: int) -> None:
        lengths = [len(s) + 1 for s in sequences]
        flat = np.full(sum(lengths), -1, dtype=np.int64)  # texts joined by -1 barriers
        ends = np.cumsum(lengths)
        for seq, end in zip(sequences, ends, strict=True):
            flat[end - 1 - len(seq): end - 1] = seq
        barrier = flat < 0
        ulen = np.where(barrier, 0, unit_len[np.where(barrier, 0, flat)])
        barrier |= ulen <= 0
        self.flat = flat
        self.min_count = min_count
        # Per span length n: sorted hashes of the valid windows, and the window start of each.
        self._sorted: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        h = (flat + 1).astype(np.uint64)
        blen = ulen.astype(np.int64)
        ok = ~barrier
        for n in range(2, max_span + 1):
            m = len(flat) - n + 1
            if m <= 0:
                break
            h = h[:m] * _MUL + (flat[n - 1:] + 1).astype(np.uint64)  # hash of flat[i : i + n]
            blen = blen[:m] + ulen[n - 1:]
            ok = ok[:m] & ~barrier[n - 1:]
            starts = np.flatnonzero(ok & (blen <= max_base))
            if not len(starts):
                break
            order = np.argsort(h[starts], kind="stable")
            self._sorted[n] = (h[starts][order], starts[order])

    def ranked(self) -> Iterator[tuple[int, tuple[int, ...], int]]:
        """Spans occurring at least min_count times, by raw saving count × (n − 1), best first.

        Yields (raw saving, span, first start); the raw saving counts overlapping occurrences, so
        it bounds the real saving from above.
        """
        scores, lengths, firsts = [], [], []
        for n, (hashes, starts) in self._sorted.items():
            bounds = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1], True])
            counts = np.diff(bounds)
            keep = counts >= self.min_count
            scores.append(counts[keep] * (n - 1))
            lengths.append(np.full(int(keep.sum()), n))
            firsts.append(starts[bounds[:-1][keep]])
        if not scores:
            return
        all_scores, all_lengths, all_firsts = np.concatenate(scores), np.concatenate(lengths), np.concatenate(firsts)
        for i in np.argsort(-all_scores, kind="stable"):
            n, p = int(all_lengths[i]), int(all_firsts[i])
            yield int(all_scores[i]), tuple(int(t) for t in self.flat[p: p + n]), p

    def occurrences(self, span: tuple[int, ...]) -> np.ndarray:
        """Sorted start positions of `span` in the flat corpus (hash hits checked token by token)."""
        n = len(span)
        hashes, starts = self._sorted[n]
        h = _hash(span)
        lo, hi = np.searchsorted(hashes, h, "left"), np.searchsorted(hashes, h, "right")
        pos = np.sort(starts[lo:hi])
        if len(pos):
            windows = self.flat[pos[:, None] + np.arange(n)]
            pos = pos[(windows == np.asarray(span)).all(axis=1)]
        return pos


def _hash(span: Sequence[int]) -> np.uint64:
    """The rolling hash SpanIndex gives the window holding exactly `span`."""
    with np.errstate(over="ignore"):
        h = np.uint64(span[0] + 1)
        for t in span[1:]:
            h = h * _MUL + np.uint64(t + 1)
    return h


def free_occurrences(pos: np.ndarray, n: int, taken: np.ndarray) -> np.ndarray:
    """Starts among `pos` (sorted) whose n-token window overlaps no taken position nor a kept window."""
    if not len(pos):
        return pos
    pos = pos[~taken[pos[:, None] + np.arange(n)].any(axis=1)]
    if len(pos) > 1 and (np.diff(pos) < n).any():  # self-overlaps ("a a" in "a a a"): keep leftmost
        kept, last = [], -n
        for p in pos.tolist():
            if p >= last + n:
                kept.append(p)
                last = p
        pos = np.asarray(kept, dtype=np.int64)
    return pos


def pick_spans(index: SpanIndex, k: int,
               describe: Callable[[tuple[int, ...], int], Candidate | None]) -> list[Candidate]:
    """Pick up to k spans by tokens saved, each counted after the spans picked before it.

    Lazy greedy: spans wait in a heap under an upper bound of their saving (at first the raw
    count × (n − 1) of `SpanIndex.ranked`); the best is re-scored on the occurrences still free
    and picked if it still beats every other bound, else pushed back with its new score. Raw
    bounds are pulled from the ranking only as far as the heap's best, so few spans are ever scored.

    Args:
        index: the corpus's span counts.
        k: how many to pick.
        describe: (span, first start) -> Candidate with text, kind and lengths, or None to skip it.
    """
    taken = np.zeros(len(index.flat) + 1, dtype=bool)
    ranked = index.ranked()
    upcoming = next(ranked, None)
    heap: list[tuple[int, int, tuple[int, ...], int]] = []
    picked: list[Candidate] = []
    described: dict[tuple[int, ...], Candidate | None] = {}
    seen = 0
    while len(picked) < k:
        while upcoming is not None and (not heap or upcoming[0] >= -heap[0][0]):
            score, span, p = upcoming
            heapq.heappush(heap, (-score, seen, span, p))  # seen: tie-break, first ranked first
            seen += 1
            upcoming = next(ranked, None)
        if not heap:
            break
        _, i, span, p = heapq.heappop(heap)
        if span not in described:
            described[span] = describe(span, p)
        cand = described[span]
        if cand is None:
            continue
        free = free_occurrences(index.occurrences(span), len(span), taken)
        saving = len(free) * (len(span) - 1)
        if len(free) < index.min_count:
            continue
        if (heap and saving < -heap[0][0]) or (upcoming is not None and saving < upcoming[0]):
            heapq.heappush(heap, (-saving, i, span, p))  # another bound is higher: score that first
            continue
        taken[(free[:, None] + np.arange(len(span))).ravel()] = True
        cand.count, cand.tokens, cand.saved = len(free), len(span), saving
        picked.append(cand)
    return picked


def measure(seqs: Sequence[Sequence[int]], base_counts: Sequence[int]) -> dict:
    """Tokens, tokens per output and compression (base tokens / tokens) of a tokenised text set."""
    tokens, base = sum(map(len, seqs)), sum(base_counts)
    n = max(len(seqs), 1)
    return {
        "tokens": tokens,
        "tokens_per_output": tokens / n,
        "base_tokens_per_output": base / n,
        "compression": base / tokens if tokens else 1.0,
        "reduction": 1 - tokens / base if base else 0.0,  # share of tokens saved
    }


def _usage(seqs: Sequence[Sequence[int]], base_size: int, n_added: int) -> np.ndarray:
    """How often each added token (id base_size + i) occurs in tokenised texts."""
    flat = np.fromiter((t for s in seqs for t in s), dtype=np.int64)
    return np.bincount(flat, minlength=base_size + n_added)[base_size: base_size + n_added]


def mine(texts: Sequence[str], segmenter: Segmenter, config: MiningConfig | None = None, *,
         heldout: Sequence[str] | None = None, on_round: Callable[[dict], None] | None = None,
         cancel: threading.Event | None = None) -> MiningResult:
    """Pick up to `config.budget` strings to add to the tokenizer, in rounds (see module docstring).

    Args:
        texts: corpus outputs to mine.
        segmenter: tokenises with the base vocabulary plus added strings; left holding the result.
        config: budget, rounds and candidate limits.
        heldout: texts only measured, never mined (compression on unseen answers).
        on_round: called with each round's figures (the dicts of `MiningResult.rounds`).
        cancel: set it to stop with `tasc.core.errors.Cancelled` (checked after tokenising, and twice a round).
    """
    config = config or MiningConfig()
    config.check()
    texts = list(texts)
    if not texts:
        raise ValueError("mine() needs at least one text")
    t0 = time.perf_counter()
    segmenter.set_added([])
    seqs = segmenter.encode(texts)
    base_counts = [len(s) for s in seqs]
    held_base = [len(s) for s in segmenter.encode(heldout)] if heldout else None
    check_cancel(cancel)  # tokenising a big corpus takes a while
    chosen: list[Candidate] = []
    dropped: list[str] = []
    base_len: dict[str, int] = {}

    def report(r: int) -> dict:
        row = {"round": r, "added": len(chosen), **measure(seqs, base_counts)}
        if heldout and held_base is not None:  # held_base is set exactly when there are held-out texts
            row.update({f"heldout_{k}": v for k, v in measure(segmenter.encode(heldout), held_base).items()})
        row["elapsed_s"] = round(time.perf_counter() - t0, 3)
        return row

    rounds = [report(0)]
    if on_round:
        on_round(rounds[0])
    r = 0
    while len(chosen) < config.budget and r < config.rounds + 2:  # 2 extra rounds refill dropped picks
        check_cancel(cancel)
        r += 1
        k = math.ceil((config.budget - len(chosen)) / max(config.rounds - r + 1, 1))
        picks = _mine_round(seqs, segmenter, config, chosen, set(dropped), base_len, k, r)
        if not picks:
            break
        check_cancel(cancel)  # before re-tokenising the corpus with the picks
        chosen, seqs = _apply_picks(texts, segmenter, config.min_count, chosen + picks, dropped)
        rounds.append(report(r))
        if on_round:
            on_round(rounds[-1])
    for c, u in zip(chosen, _usage(seqs, segmenter.base_size, len(chosen)), strict=True):
        c.uses = int(u)
    return MiningResult(chosen, rounds, dropped, round(time.perf_counter() - t0, 3))


def _apply_picks(texts: list[str], segmenter: Segmenter, min_count: int, chosen: list[Candidate],
                 dropped: list[str]) -> tuple[list[Candidate], list[list[int]]]:
    """Give the segmenter the chosen strings and re-tokenise the texts: the strings kept and the new token lists.

    Strings the segmenter refuses, or that the corpus no longer uses `min_count` times (longer picks
    took their occurrences), are dropped and appended to `dropped`.
    """
    refused = set(segmenter.set_added([c.text for c in chosen]))
    chosen = [c for c in chosen if c.text not in refused]
    seqs = segmenter.encode(texts)
    # Drop picks the corpus no longer uses: longer picks took their occurrences.
    uses = _usage(seqs, segmenter.base_size, len(chosen))
    unused = {c.text for c, u in zip(chosen, uses, strict=True) if u < min_count}
    if refused or unused:
        dropped += sorted(refused) + [c.text for c in chosen if c.text in unused]
        chosen = [c for c in chosen if c.text not in unused]
        segmenter.set_added([c.text for c in chosen])
        seqs = segmenter.encode(texts)
    return chosen, seqs


def _mine_round(seqs: list[list[int]], segmenter: Segmenter, config: MiningConfig, chosen: list[Candidate],
                blocked: set[str], base_len: dict[str, int], k: int, r: int) -> list[Candidate]:
    """One round: index the spans of the corpus as tokenised now and pick up to k of them."""
    size = segmenter.base_size + len(chosen)
    unit_len = np.ones(size, dtype=np.int64)
    pieces: dict[int, bytes | None] = {}
    for i, c in enumerate(chosen):
        unit_len[segmenter.base_size + i] = c.base_tokens
    for t in {t for s in seqs for t in s if t < segmenter.base_size}:
        pieces[t] = segmenter.piece(t)
        if pieces[t] is None:
            unit_len[t] = 0  # special token: a barrier
    for i, c in enumerate(chosen):
        pieces[segmenter.base_size + i] = c.text.encode("utf-8")
    index = SpanIndex(seqs, unit_len, config.max_span, config.max_base_tokens, config.min_count)
    known = {c.text for c in chosen} | blocked
    names = entity_words(config.entities)

    def describe(span: tuple[int, ...], p: int) -> Candidate | None:
        try:
            # cast: spans never cross a special token (None piece), they are barriers in the index
            text = b"".join(cast(bytes, pieces[t]) for t in span).decode("utf-8")
        except UnicodeDecodeError:
            return None  # cuts a character in two
        if text in known or len(text) > config.max_chars or not segmenter.acceptable(text):
            return None
        if (config.whole_values and splits_a_value(text)) or (config.one_field and joins_two_fields(text)):
            return None
        if holds_an_entity(text, names):
            return None
        flat = index.flat
        before = pieces[int(flat[p - 1])] if p > 0 and flat[p - 1] >= 0 else b""
        after = pieces[int(flat[p + len(span)])] if flat[p + len(span)] >= 0 else b""
        kind = classify(text, (before or b"")[-4:].decode("utf-8", "ignore"),
                        (after or b"")[:4].decode("utf-8", "ignore"))
        if kind not in config.kinds:
            return None
        if text not in base_len:
            base_len[text] = segmenter.base_length(text)
        if not 2 <= base_len[text] <= config.max_base_tokens:
            return None  # already one base token, or too long
        return Candidate(text, kind, 0, len(span), base_len[text], 0, r)

    return pick_spans(index, k, describe)
