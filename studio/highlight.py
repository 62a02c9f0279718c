"""An answer as the Arena shows it: one continuous text, each accepted draft token on its source's colour.

The text is exactly what the model wrote (JSON stays JSON: every space, quote and line break as
generated, `white-space: pre-wrap`), cut into one `<span>` per token with no margin or padding, so
highlighting never opens a gap. A legend above the answer names the sources that drafted some of
it, and only when some did. Token boundaries are drawn on demand: the page's "token boundaries"
switch puts `show-tokens` on the panes' container, and `ANSWER_CSS` draws an inset line (which takes
no room) at the end of each token.
"""

from __future__ import annotations

import html
from typing import Sequence

# Light backgrounds, so the text stays readable; the legend and the plots use the strong ones.
SOURCE_BACKGROUNDS = {"corpus": "#cfe2fb", "history": "#fde7c8", "context": "#cdeed8", "draft-model": "#e8d8f3"}
SOURCE_COLOURS = {"corpus": "#2f80ed", "history": "#e67e22", "context": "#27ae60", "draft-model": "#9b59b6"}
SOURCE_MEANING = {"corpus": "drafted from the task corpus",
                  "history": "drafted from the model's own answers to earlier, alike prompts of this session",
                  "context": "copied from the prompt or the answer so far", "draft-model": "drafted by the trained draft model"}
PANES_ID = "arena-panes"  # the container the token-boundary switch marks
ANSWER_CSS = """
.tasc-answer { white-space: pre-wrap; overflow-wrap: anywhere; font-family: ui-monospace, SFMono-Regular, Menlo,
  Consolas, monospace; font-size: 14px; line-height: 1.6; min-height: 4.8em; padding: 8px 10px;
  border: 1px solid var(--border-color-primary); border-radius: 6px; background: var(--background-fill-primary); }
.tasc-answer .tk { margin: 0; padding: 0; border-radius: 0; }
.show-tokens .tasc-answer .tk { box-shadow: inset -1px 0 0 rgba(0, 0, 0, 0.55); }
.tasc-legend { font-size: 13px; margin: 0 0 4px 0; min-height: 1.4em; }
.tasc-legend .swatch { display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.3em 0 0.8em;
  vertical-align: -0.1em; border-radius: 2px; }
.tasc-legend .swatch:first-child { margin-left: 0; }
"""


def legend_html(counts: dict[str, int]) -> str:
    """The sources that drafted accepted tokens, with their counts; empty where no draft was accepted."""
    items = [(src, n) for src, n in counts.items() if n]
    if not items:
        return '<div class="tasc-legend"></div>'  # keeps the pane's height, says nothing
    parts = [f'<span class="swatch" style="background:{SOURCE_BACKGROUNDS.get(src, "#eee")};'
             f'border:1px solid {SOURCE_COLOURS.get(src, "#999")}"></span>'
             f'<span title="{html.escape(SOURCE_MEANING.get(src, src))}"><b>{html.escape(src)}</b> {n}</span>'
             for src, n in sorted(items, key=lambda kv: -kv[1])]
    return '<div class="tasc-legend">' + "".join(parts) + " · accepted draft tokens; plain: written by the model</div>"


def answer_html(pieces: Sequence[tuple[str, str | None]]) -> str:
    """The answer as HTML: the legend (only where drafts were accepted) over the continuous text.

    Args:
        pieces: (text, source) per token, in order; source None for a token the model wrote itself.
            Empty pieces (a byte of a character that a later token completes) are left out.
    """
    counts: dict[str, int] = {}
    spans = []
    for piece, source in pieces:
        if source is not None:
            counts[source] = counts.get(source, 0) + 1
        if not piece:
            continue
        if source is None:
            spans.append(f'<span class="tk">{html.escape(piece)}</span>')
        else:
            spans.append(f'<span class="tk d" data-src="{html.escape(source)}" '
                         f'style="background:{SOURCE_BACKGROUNDS.get(source, "#eee")}">{html.escape(piece)}</span>')
    return legend_html(counts) + '<div class="tasc-answer">' + "".join(spans) + "</div>"
