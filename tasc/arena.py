"""The Arena's race: two decoders answer the same prompt, step by step, on one machine.

Each contestant is a `speculative_steps` stream. `race` interleaves them so that the one that has
used *less compute time so far* takes the next step; both therefore advance at the pace they would
have alone, and the display shows them side by side as if they ran at once, without the two
fighting over the CPU. A `Lane` folds its Steps into what the Arena shows: the text with each
accepted draft token labelled by its source, and the figures (tokens/s, forward passes, tokens per
pass, per-step latency, cumulative tokens over time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from tasc.decode import Step
from tasc.drafts import MODEL


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

    def add(self, step: Step) -> None:
        """Fold one Step in."""
        self.tokens.extend(step.tokens)
        self.sources.extend(step.sources)
        self.step_lengths.append(len(step.tokens))
        self.step_s.append(step.draft_s + step.forward_s)
        self.compute_s += step.draft_s + step.forward_s
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
        for s, k in zip(self.step_s, self.step_lengths):
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

        Pieces are cut from decodes of growing prefixes, so a character split over several tokens
        is never shown broken. `skip` ids (EOS) are left out.
        """
        skip = set(skip)
        runs: list[tuple[str | None, int]] = []  # (label, end index) of maximal same-label runs
        for i, src in enumerate(self.sources):
            label = None if src == MODEL else src
            if runs and runs[-1][0] == label:
                runs[-1] = (label, i + 1)
            else:
                runs.append((label, i + 1))
        out: list[list[Any]] = []  # [piece, label]
        prev = ""
        for label, end in runs:
            text = tokenizer.decode([t for t in self.tokens[:end] if t not in skip], skip_special_tokens=True)
            common = len(os.path.commonprefix([prev, text]))
            excess = len(prev) - common  # a character completed only now was shown as U+FFFD: take it back
            while excess and out:
                cut = min(excess, len(out[-1][0]))
                out[-1][0] = out[-1][0][: len(out[-1][0]) - cut]
                excess -= cut
                if not out[-1][0]:
                    out.pop()
            piece = text[common:]
            if piece:
                if out and out[-1][1] == label:
                    out[-1][0] += piece
                else:
                    out.append([piece, label])
            prev = text
        return [(piece, label) for piece, label in out]


def race(lanes: list[Lane], streams: list[Iterator[Step]]) -> Iterator[list[Lane]]:
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
