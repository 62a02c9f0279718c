"""The Arena's race: two decoders answer the same prompt, step by step, on one machine.

Each contestant is a `speculative_steps` stream. `race` interleaves them so that the one that has
used *less compute time so far* takes the next step; both therefore advance at the pace they would
have alone, and the display shows them side by side as if they ran at once, without the two
fighting over the CPU. A `Lane` folds its Steps into what the Arena shows: the text with each
accepted draft token labelled by its source, and the figures (tokens/s, forward passes, tokens per
pass, per-step latency, cumulative tokens over time).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from tasc.spec.decode import Step
from tasc.spec.drafts import MODEL


@dataclass
class Lane:
    """One contestant's answer so far.

    Attributes:
        name: label shown over its pane.
        tokens: emitted token ids.
        sources: per token, "corpus" / "context" (accepted draft) or "model".
        step_lengths: tokens emitted by each forward pass.
        step_s: compute seconds of each forward pass (drafting included; the first is the prefill).
        compute_s: total compute seconds so far.
        finished: True after its last step.
    """

    name: str
    tokens: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    step_lengths: list[int] = field(default_factory=list)
    step_s: list[float] = field(default_factory=list)
    compute_s: float = 0.0
    finished: bool = False
    _text: "TokenText | None" = field(default=None, repr=False)  # the decoded pieces so far, grown per step

    def add(self, step: Step) -> None:
        """Fold one Step in."""
        self.tokens.extend(step.tokens)
        self.sources.extend(step.sources)
        self.step_lengths.append(len(step.tokens))
        self.step_s.append(step.busy_s)
        self.compute_s += step.busy_s
        self.finished = step.finished

    @property
    def passes(self) -> int:
        """Forward passes so far (the prefill included)."""
        return len(self.step_lengths)

    def accepted_by_source(self) -> dict[str, int]:
        """Accepted draft tokens per source."""
        counts: dict[str, int] = {}
        for src in self.sources:
            if src != MODEL:
                counts[src] = counts.get(src, 0) + 1
        return counts

    def timeline(self) -> list[tuple[float, int]]:
        """(compute seconds, tokens so far) after each pass, from (0, 0)."""
        points, t, n = [(0.0, 0)], 0.0, 0
        for s, k in zip(self.step_s, self.step_lengths, strict=False):
            t, n = t + s, n + k
            points.append((t, n))
        return points

    def stats(self) -> dict[str, float]:
        """Tokens, passes, tokens/s, mean tokens per pass and accepted draft tokens."""
        n = len(self.tokens)
        return {
            "tokens": n,
            "passes": self.passes,
            "seconds": round(self.compute_s, 4),
            "tokens_per_s": round(n / self.compute_s, 2) if self.compute_s > 0 else 0.0,
            "tokens_per_pass": round(n / self.passes, 3) if self.passes else 0.0,
            "accepted": n - self.sources.count(MODEL),
        }

    def spans(self, tokenizer: Any, skip: Iterable[int] = ()) -> list[tuple[str, str | None]]:
        """The text as (piece, label) runs: label = source of accepted draft tokens, None for model tokens.

        `skip` ids (EOS) are left out.
        """
        skip = set(skip)
        kept = [(t, None if src == MODEL else src) for t, src in zip(self.tokens, self.sources, strict=False) if t not in skip]
        decode = functools.partial(tokenizer.decode, skip_special_tokens=True)
        return labelled_spans(decode, [t for t, _ in kept], [label for _, label in kept], merge=True)

    def token_pieces(self, tokenizer: Any, skip: Iterable[int] = ()) -> list[tuple[str, str | None]]:
        """The text as one (piece, label) per token (`skip` ids left out), decoded incrementally:
        each call decodes only the tokens added since the last one."""
        if self._text is None:
            self._text = TokenText(functools.partial(tokenizer.decode, skip_special_tokens=True), frozenset(skip))
        self._text.extend(self.tokens[self._text.seen:], self.sources[self._text.seen:])
        return self._text.pieces()


@dataclass
class TokenText:
    """A growing answer's text cut into one piece per token, as `labelled_spans(merge=False)` cuts it.

    `extend` decodes each new token's prefix once, so following a stream costs one decode per token
    in all, not one per token per update.
    """

    decode: Callable[[list[int]], str]
    skip: frozenset[int] = frozenset()
    seen: int = 0  # tokens fed so far (skipped ones included)
    ids: list[int] = field(default_factory=list)
    _pieces: list[list[Any]] = field(default_factory=list)  # [piece, label] per kept token
    _prev: str = ""

    def extend(self, ids: Sequence[int], sources: Sequence[str]) -> None:
        """Add tokens with their sources ("model" for the model's own)."""
        for t, src in zip(ids, sources, strict=True):
            self.seen += 1
            if t in self.skip:
                continue
            self.ids.append(t)
            text = self.decode(self.ids)
            common = len(os.path.commonprefix([self._prev, text]))
            _take_back(self._pieces, len(self._prev) - common)
            self._pieces.append([text[common:], None if src == MODEL else src])
            self._prev = text

    def pieces(self) -> list[tuple[str, str | None]]:
        """(piece, label) per kept token."""
        return [(p, label) for p, label in self._pieces]


def _take_back(pieces: list[list[Any]], excess: int) -> None:
    """Remove `excess` characters from the end of the pieces, last piece first (text that decoded as
    U+FFFD until a later token completed its character)."""
    k = len(pieces) - 1
    while excess and k >= 0:
        cut = min(excess, len(pieces[k][0]))
        pieces[k][0] = pieces[k][0][: len(pieces[k][0]) - cut]
        excess -= cut
        k -= 1


def labelled_spans(decode: Callable[[list[int]], str], ids: Sequence[int], labels: Sequence[Any],
                   merge: bool = True) -> list[tuple[str, Any]]:
    """Cut the decoded text of `ids` into pieces carrying each token's label.

    Pieces come from decodes of growing prefixes, so a character spelt by several tokens is never
    shown broken: while incomplete it decodes to U+FFFD, and once complete it is taken back from
    the earlier pieces and given to the token that completed it. With `merge`, neighbouring tokens
    with the same label form one piece (one decode per run instead of per token).

    Example: ids [a, b, x1, x2] with labels [None, None, "corpus", "corpus"], where x1 x2 spell
    "é", give [("ab", None), ("é", "corpus")].
    """
    if len(ids) != len(labels):
        raise ValueError(f"{len(ids)} ids but {len(labels)} labels")
    ends: list[tuple[Any, int]] = []  # (label, end index) of each piece to cut
    for i, label in enumerate(labels):
        if merge and ends and ends[-1][0] == label:
            ends[-1] = (label, i + 1)
        else:
            ends.append((label, i + 1))
    out: list[list[Any]] = []  # [piece, label]
    prev = ""
    for label, end in ends:
        text = decode(list(ids[:end]))
        common = len(os.path.commonprefix([prev, text]))
        _take_back(out, len(prev) - common)  # shown as U+FFFD until now; without merge, emptied pieces stay
        if merge:
            out = [p for p in out if p[0]]
        piece = text[common:]
        if merge and out and out[-1][1] == label and piece:
            out[-1][0] += piece
        elif piece or not merge:
            out.append([piece, label])
        prev = text
    return [(piece, label) for piece, label in out]


def race(lanes: list[Lane], streams: Sequence[Iterator[Step]]) -> Iterator[list[Lane]]:
    """Advance the unfinished lane with the least compute time by one step; yield all lanes each time."""
    if len(lanes) != len(streams):
        raise ValueError(f"{len(lanes)} lanes but {len(streams)} step streams")
    while True:
        live = [i for i, lane in enumerate(lanes) if not lane.finished]
        if not live:
            return
        i = min(live, key=lambda k: lanes[k].compute_s)
        step = next(streams[i], None)
        if step is None:  # a stream that ended without a finished step
            lanes[i].finished = True
        else:
            lanes[i].add(step)
        yield lanes
