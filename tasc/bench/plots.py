"""Plotly figures drawn from benchmark reports and decoding steps (data in, figure out)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

SOURCE_COLOURS = {"corpus": "#2f80ed", "history": "#e67e22", "context": "#27ae60", "model": "#9b9b9b"}


def speedup_bars(report: dict[str, Any]):
    """Bar chart of each method's speed-up over greedy, annotated with tokens per pass."""
    import plotly.graph_objects as go

    names = list(report["methods"])
    figures = [report["methods"][n] for n in names]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=[f["speedup"] for f in figures],
            text=[f"{f['speedup']:.2f}x<br>{f['mean_accepted']:.1f} tok/pass" for f in figures],
            textposition="outside",
            marker_color=["#9b9b9b" if n.startswith("greedy") else "#2f80ed" for n in names],
        )
    )
    fig.add_hline(y=1.0, line_dash="dot", line_color="#555")
    fig.update_layout(title=f"Speed-up over greedy ({report['model']}, {report['device']}, {report['n_prompts']} prompts)", yaxis_title="speed-up (x)", template="plotly_white")
    return fig


def acceptance_histogram(step_lengths: dict[str, Sequence[int]], title: str = "Tokens per forward pass"):
    """Tokens emitted per forward pass as one small panel per method, in % of that method's passes.

    Shares, not counts, and a panel each: 96 one-token greedy passes beside 14 long speculative
    ones would leave the speculative bars invisible on a shared axis.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(step_lengths)
    fig = make_subplots(rows=1, cols=max(1, len(names)), subplot_titles=names, shared_yaxes=True)
    for i, name in enumerate(names, start=1):
        lengths = step_lengths[name]
        counts = Counter(lengths)
        xs = sorted(counts)
        mean = sum(lengths) / len(lengths) if lengths else 0.0
        fig.add_trace(go.Bar(x=xs, y=[100 * counts[x] / len(lengths) for x in xs], name=name, showlegend=False,
                             hovertemplate="%{x} tokens in one pass: %{y:.0f}% of passes<extra></extra>"),
                      row=1, col=i)
        fig.add_vline(x=mean, line_dash="dot", line_color="#555", row=1, col=i,
                      annotation_text=f"mean {mean:.1f}", annotation_position="top right")
        fig.update_xaxes(title_text="tokens in one pass", row=1, col=i)
    fig.update_yaxes(title_text="% of passes", row=1, col=1)
    fig.update_layout(title=title, template="plotly_white", bargap=0.15)
    return fig


def cumulative_tokens(timelines: dict[str, Sequence[tuple[float, int]]], title: str = "Tokens over time"):
    """Cumulative tokens against time, one line per method: (elapsed_s, tokens so far) points."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, points in timelines.items():
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers", name=name, line_shape="hv"))
    fig.update_layout(title=title, xaxis_title="seconds of compute", yaxis_title="tokens written", template="plotly_white",
                      legend={"orientation": "h", "y": -0.25})
    return fig


def step_latency(latencies: dict[str, Sequence[float]], title: str = "Latency per forward pass"):
    """Per-step forward latency in milliseconds, one line per method."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, values in latencies.items():
        fig.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=[v * 1000 for v in values], mode="lines+markers", name=name))
    fig.update_layout(title=title, xaxis_title="forward pass", yaxis_title="ms", template="plotly_white",
                      legend={"orientation": "h", "y": -0.25})
    return fig


def write_bench_html(report: dict[str, Any], path: str | Path) -> Path:
    """Save the speed-up bars and the acceptance histogram as one self-contained HTML file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hist = acceptance_histogram({n: f["step_lengths"] for n, f in report["methods"].items() if not n.startswith("greedy")})
    parts = [speedup_bars(report).to_html(full_html=False, include_plotlyjs=True), hist.to_html(full_html=False, include_plotlyjs=False)]
    path.write_text("<html><head><meta charset='utf-8'><title>TASC bench</title></head><body>" + "".join(parts) + "</body></html>", encoding="utf-8")
    return path
