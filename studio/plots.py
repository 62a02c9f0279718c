"""Plotly figures that only the app draws: the mined strings and the compression of each round.

Data in, figure out, like `tasc.bench.plots` (which draws the benchmark and decoding figures).
"""

from __future__ import annotations

from typing import Any, Sequence

NEW_TOKEN_COLOUR = "#27ae60"


def shown(text: str) -> str:
    """A mined string as the UI shows it: spaces at either end as ␣, line breaks as ⏎, so none hides."""
    core = text.strip(" ")
    lead, trail = len(text) - len(text.lstrip(" ")), len(text) - len(text.rstrip(" "))
    if not core:
        return "␣" * len(text)
    return ("␣" * lead + core + "␣" * trail).replace("\n", "⏎").replace("\t", "⇥")


def mined_bars(tokens: Sequence[Any], top: int = 25):
    """Horizontal bars of the `top` mined strings by tokens saved (tasc.ft.ngrams.Candidate objects)."""
    import plotly.graph_objects as go

    best = sorted(tokens, key=lambda c: c.saved, reverse=True)[:top][::-1]  # largest at the top
    fig = go.Figure(go.Bar(
        x=[c.saved for c in best], y=[shown(c.text) for c in best], orientation="h", marker_color=NEW_TOKEN_COLOUR,
        text=[f"{c.count}× · {c.base_tokens} → 1 token" for c in best], textposition="auto",
    ))
    fig.update_layout(title=f"Top {len(best)} mined strings by tokens saved on the corpus", xaxis_title="tokens saved",
                      template="plotly_white", height=max(300, 22 * len(best) + 120), margin={"l": 10})
    fig.update_yaxes(automargin=True)
    return fig


def compression_rounds(rounds: Sequence[dict]):
    """Compression (base tokens / tokens) after each mining round, on the corpus and on held-out answers."""
    import plotly.graph_objects as go

    xs = [r["round"] for r in rounds]
    fig = go.Figure(go.Scatter(x=xs, y=[r["compression"] for r in rounds], mode="lines+markers", name="training outputs"))
    if rounds and "heldout_compression" in rounds[0]:
        fig.add_trace(go.Scatter(x=xs, y=[r["heldout_compression"] for r in rounds], mode="lines+markers",
                                 name="held-out outputs", line_dash="dash"))
    fig.update_layout(title="Compression per round (base tokens ÷ enriched tokens)", xaxis_title="round (0 = base tokenizer)",
                      yaxis_title="compression (×)", template="plotly_white")
    return fig
